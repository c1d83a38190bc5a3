//! The JSON log line (`PLATFORM_LOG_FORMAT=json`), written by a layer of its own rather than by
//! `tracing_subscriber::fmt`'s JSON formatter. That one keeps a span's fields as a JSON text and
//! parses it back into a map for every line logged inside the span, and again for every field
//! recorded later (the request span's `tenant.id`). Here a span's fields are rendered once, as
//! JSON values kept next to their names in the span's extensions (a later record replaces or
//! adds one), and a line is written straight from them and the event's fields: no parsing.
//!
//! The shape is the one the log has had: `timestamp` (RFC 3339, UTC), `level`, the event's
//! fields flattened (`message` among them), `target`, and `span` (the current span's fields
//! and its `name`) when the event is inside one.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The layer: one JSON object per event, one line, written with one `write_all`.
#[derive(Debug)]
pub struct JsonLog<W> {
    writer: W,
}

impl<W> JsonLog<W> {
    /// Writes to `writer` (standard output, or a file in the benchmark).
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

/// Fields as (name, value rendered as JSON), in the order they were first recorded.
#[derive(Debug, Default)]
struct Fields(Vec<(&'static str, String)>);

impl Fields {
    fn set(&mut self, name: &'static str, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Appends `"name":value` members (after a comma when `out` already has members).
    fn write_members(&self, out: &mut String, mut first: bool) {
        for (name, value) in &self.0 {
            if !first {
                out.push(',');
            }
            first = false;
            string(out, name);
            out.push(':');
            out.push_str(value);
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let mut v = String::with_capacity(value.len() + 2);
        string(&mut v, value);
        self.set(field.name(), v);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        let v = if value.is_finite() {
            value.to_string()
        } else {
            "null".to_owned()
        };
        self.set(field.name(), v);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        let mut v = String::with_capacity(text.len() + 2);
        string(&mut v, &text);
        self.set(field.name(), v);
    }
}

/// An event's fields, written straight into the line as `,"name":value` members (a span's
/// are kept as [`Fields`], since a later record may replace one; an event's are written once).
struct Members<'a>(&'a mut String);

impl Members<'_> {
    fn name(&mut self, field: &Field) -> &mut String {
        self.0.push(',');
        string(self.0, field.name());
        self.0.push(':');
        self.0
    }
}

impl Visit for Members<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        string(self.name(field), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field)
            .push_str(if value { "true" } else { "false" });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let _ = write!(self.name(field), "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let _ = write!(self.name(field), "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let out = self.name(field);
        // JSON has no NaN or infinity.
        if value.is_finite() {
            let _ = write!(out, "{value}");
        } else {
            out.push_str("null");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let out = self.name(field);
        out.push('"');
        let _ = write!(Escaping(out), "{value:?}");
        out.push('"');
    }
}

/// Writes what is formatted into it as the inside of a JSON string.
struct Escaping<'a>(&'a mut String);

impl std::fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Appends `s` as a JSON string.
fn string(out: &mut String, s: &str) {
    out.push('"');
    escape_into(out, s);
    out.push('"');
}

/// Where the first byte of `b` that JSON must escape is (a control character, `"` or `\`):
/// eight bytes at a time while none is, then byte by byte.
fn escape_at(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Some byte of `x` is below `n` (`n` <= 0x80): the high bit of that byte's difference is
    // set where the byte's own high bit is not (exact as to whether any byte is).
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x;
    let mut at = 0;
    for chunk in b.chunks_exact(8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        if (below(x, 0x20) | below(quote, 1) | below(backslash, 1)) & HIGHS != 0 {
            break;
        }
        at += 8;
    }
    b[at..]
        .iter()
        .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
        .map(|i| at + i)
}

/// Appends `s` escaped for the inside of a JSON string: the runs that need no escape are
/// copied whole.
fn escape_into(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(i) = escape_at(rest.as_bytes()) {
        out.push_str(&rest[..i]);
        // An ASCII byte: `i + 1` is a character boundary.
        match rest.as_bytes()[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c => {
                let _ = write!(out, "\\u{:04x}", c);
            }
        }
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

impl<S, W> Layer<S> for JsonLog<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        match ext.get_mut::<Fields>() {
            Some(fields) => values.record(fields),
            None => {
                let mut fields = Fields::default();
                values.record(&mut fields);
                ext.insert(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = String::with_capacity(320);
        line.push_str("{\"timestamp\":\"");
        let now = time::OffsetDateTime::now_utc();
        let _ = write!(
            line,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.microsecond()
        );
        line.push_str("\",\"level\":\"");
        line.push_str(event.metadata().level().as_str());
        line.push('"');
        event.record(&mut Members(&mut line));
        line.push_str(",\"target\":");
        string(&mut line, event.metadata().target());
        if let Some(span) = ctx.event_span(event) {
            line.push_str(",\"span\":{");
            let ext = span.extensions();
            let first = match ext.get::<Fields>() {
                Some(f) if !f.0.is_empty() => {
                    f.write_members(&mut line, true);
                    false
                }
                _ => true,
            };
            if !first {
                line.push(',');
            }
            line.push_str("\"name\":");
            string(&mut line, span.name());
            line.push('}');
        }
        line.push_str("}\n");
        // A log that cannot be written is not the request's failure.
        let _ = self
            .writer
            .make_writer_for(event.metadata())
            .write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// A line is one valid JSON object with the event's fields, the target, and the span's
    /// fields (one recorded after the span started included); text that needs escaping stays
    /// intact.
    #[test]
    fn a_line_carries_the_event_and_its_span() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLog::new(out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                request_id = "r-1",
                route = "/api/v1/x",
                tenant.id = tracing::field::Empty,
            );
            span.record("tenant.id", "t-1");
            let _entered = span.enter();
            tracing::info!(
                status = 200_u16,
                latency_ms = 1.5,
                ok = true,
                "said \"hi\"\n\tthere"
            );
        });
        tracing::info!("outside: not captured");
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("one JSON object");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "said \"hi\"\n\tthere");
        assert_eq!(v["status"], 200);
        assert_eq!(v["latency_ms"], 1.5);
        assert_eq!(v["ok"], true);
        assert_eq!(v["target"], module_path!());
        assert_eq!(v["span"]["name"], "request");
        assert_eq!(v["span"]["request_id"], "r-1");
        assert_eq!(v["span"]["route"], "/api/v1/x");
        assert_eq!(v["span"]["tenant.id"], "t-1");
        let ts = v["timestamp"].as_str().expect("timestamp");
        assert!(
            ts.len() == 27 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
            "{ts}"
        );
    }

    /// The eight-at-a-time scan finds the first byte to escape wherever it is, and none in
    /// text without one (every other byte value, next to each).
    #[test]
    fn the_scan_finds_the_first_byte_to_escape() {
        let plain: Vec<u8> = (0x20..=0xff_u8)
            .filter(|b| *b != b'"' && *b != b'\\')
            .collect();
        assert_eq!(escape_at(&plain), None);
        for len in 1..40 {
            for at in 0..len {
                for special in [0x00, 0x0a, 0x1f, b'"', b'\\'] {
                    let mut b: Vec<u8> = plain.iter().copied().cycle().skip(at).take(len).collect();
                    b[at] = special;
                    if at + 1 < len {
                        b[len - 1] = b'"';
                    }
                    assert_eq!(escape_at(&b), Some(at), "{b:?}");
                }
            }
        }
    }

    /// Every string comes back from a JSON parser as it went in: plain runs, each escape, other
    /// control characters, and text outside ASCII next to them.
    #[test]
    fn strings_round_trip_through_a_json_parser() {
        for s in [
            "",
            "plain",
            "\"",
            "a\\b",
            "x\u{1}y\u{1f}",
            "é\"ü\n\r\t漢\\",
            "ends with a quote\"",
            "0123456789abcdef\"",
            "abcdefgh\u{1f}ijklmnopqrstuvwx\\",
            "ÿÿÿÿÿÿÿÿ€€€€漢漢漢漢\n",
            "01234567012345670123456701234567",
            "\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}!",
        ] {
            let mut out = String::new();
            string(&mut out, s);
            let back: String = serde_json::from_str(&out).expect("a JSON string");
            assert_eq!(back, s, "{out}");
        }
    }
}
