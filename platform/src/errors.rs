//! Error tracking with Sentry, on when `SENTRY_DSN` is set (`SENTRY_ENVIRONMENT` and
//! `SENTRY_RELEASE` optional). What is reported: every `error!` event (the 5xx log line of the
//! observe middleware among them) and every panic. A request's events carry its request id,
//! route and tenant id as tags: the observe middleware runs each request on a [`sentry::Hub`] of
//! its own ([`request_hub`]), the tenant extractor tags it ([`tag_tenant`]), and the panic hook
//! and the 5xx line report on it.
//!
//! Nothing personal leaves the process: [`scrub`] (the client's `before_send`) drops the request
//! (URL, headers, cookies, body), the user, breadcrumbs and any field named like a secret, and
//! masks emails, IP addresses and bearer tokens in every remaining string.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use sentry::Hub;
use sentry::protocol::{Context, Event, Value};
use tenancy::ids::TenantId;
use tracing_subscriber::Layer as _;

/// The target of the log line of a request that panicked: the panic hook has reported it
/// already, with its backtrace, so the Sentry layer skips this line.
pub const PANIC_TARGET: &str = "platform::panic";

/// Starts the Sentry client if `SENTRY_DSN` is set (before the async runtime starts); the guard
/// flushes pending events when dropped.
pub fn init(
    get: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<sentry::ClientInitGuard>> {
    let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
    let Some(dsn) = get("SENTRY_DSN") else {
        return Ok(None);
    };
    let dsn: sentry::types::Dsn = dsn
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("SENTRY_DSN: not a DSN ({e})"))?;
    // reqwest (the transport) is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut options = sentry::ClientOptions::new();
    options.dsn = Some(dsn);
    options.environment = get("SENTRY_ENVIRONMENT").map(Cow::Owned);
    options.release = Some(get("SENTRY_RELEASE").map_or(
        Cow::Borrowed(concat!("platform@", env!("CARGO_PKG_VERSION"))),
        Cow::Owned,
    ));
    options.send_default_pii = false;
    options.max_breadcrumbs = 0;
    options.before_send = Some(Arc::new(|e| Some(scrub(e))));
    let guard = sentry::init(options);
    anyhow::ensure!(
        guard.is_enabled(),
        "SENTRY_DSN: the Sentry client did not start"
    );
    Ok(Some(guard))
}

/// The `tracing` layer: `error!` events become Sentry events; nothing else is sent (no
/// breadcrumbs, no spans: the log and the traces have those).
pub fn layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    sentry::integrations::tracing::ErrorLayer::new().with_filter(
        tracing_subscriber::filter::filter_fn(|m| {
            m.is_event() && *m.level() == tracing::Level::ERROR && m.target() != PANIC_TARGET
        }),
    )
}

/// A hub for one request, tagged with its request id and route; `None` when Sentry is off.
#[must_use]
pub fn request_hub(request_id: &str, route: &str) -> Option<Arc<Hub>> {
    let current = Hub::current();
    current.client()?;
    let hub = Arc::new(Hub::new_from_top(current));
    hub.configure_scope(|s| {
        s.set_tag("request_id", request_id);
        s.set_tag("route", route);
    });
    Some(hub)
}

/// Tags the current request's hub with its tenant (no-op when Sentry is off).
pub fn tag_tenant(tenant: TenantId) {
    Hub::with_active(|hub| hub.configure_scope(|s| s.set_tag("tenant_id", tenant)));
}

/// Keys whose values are never sent, whatever they hold.
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "password",
        "secret",
        "body",
        "email",
        "ip",
        "address",
        "api_key",
        "apikey",
        "session",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Removes what must never leave the process from an event (the client's `before_send`).
#[must_use]
pub fn scrub(mut event: Event<'static>) -> Event<'static> {
    event.request = None;
    event.user = None;
    event.breadcrumbs = Default::default();
    event.message = event.message.as_deref().map(mask);
    if let Some(l) = event.logentry.as_mut() {
        l.message = mask(&l.message);
        l.params.clear();
    }
    for e in &mut event.exception.values {
        e.value = e.value.as_deref().map(mask);
    }
    event.tags.retain(|k, _| !secret_key(k));
    for v in event.tags.values_mut() {
        *v = mask(v);
    }
    event.extra.retain(|k, _| !secret_key(k));
    for v in event.extra.values_mut() {
        scrub_value(v);
    }
    for c in event.contexts.values_mut() {
        if let Context::Other(map) = c {
            map.retain(|k, _| !secret_key(k));
            for v in map.values_mut() {
                scrub_value(v);
            }
        }
    }
    event
}

fn scrub_value(v: &mut Value) {
    match v {
        Value::String(s) => *s = mask(s),
        Value::Array(a) => a.iter_mut().for_each(scrub_value),
        Value::Object(o) => {
            o.retain(|k, _| !secret_key(k));
            o.values_mut().for_each(scrub_value);
        }
        _ => {}
    }
}

/// Masks emails, IP addresses (with or without a port) and the credential after `Bearer` /
/// `Basic` in free text.
#[must_use]
pub fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_scheme = false;
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let core = word.trim_matches(|c: char| "\"'(){}<>,;".contains(c));
        // In `key=value`, the value alone.
        let core = core.rsplit_once('=').map_or(core, |(_, v)| v);
        let replaced = if after_scheme && !core.is_empty() {
            Some("[token]")
        } else if is_email(core) {
            Some("[email]")
        } else if is_ip(core) {
            Some("[ip]")
        } else {
            None
        };
        after_scheme = ["bearer", "basic"]
            .iter()
            .any(|s| core.eq_ignore_ascii_case(s));
        match replaced {
            Some(r) => out.push_str(&word.replace(core, r)),
            None => out.push_str(word),
        }
    }
    out
}

fn is_email(w: &str) -> bool {
    // `user@host.tld`
    w.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
    })
}

fn is_ip(w: &str) -> bool {
    w.parse::<IpAddr>().is_ok()
        || w.parse::<std::net::SocketAddr>().is_ok()
        || w.trim_start_matches('[')
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<IpAddr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentry::protocol::{Exception, Request, User};

    #[test]
    fn masks_emails_ips_and_bearer_tokens() {
        assert_eq!(
            mask("login of ada@example.com from 203.0.113.7:5544 (Bearer abc.def) at [::1]:80"),
            "login of [email] from [ip] (Bearer [token]) at [ip]"
        );
        assert_eq!(
            mask("user=ada@example.com ip=10.0.0.1"),
            "user=[email] ip=[ip]"
        );
        assert_eq!(mask("GET /api/v1/projects 500"), "GET /api/v1/projects 500");
    }

    #[test]
    fn before_send_drops_request_user_and_secret_fields() {
        let mut e = Event::new();
        e.request = Some(Request {
            data: Some("{\"password\":\"hunter2\"}".into()),
            cookies: Some("sid=s3cr3t".into()),
            headers: [("Authorization".to_owned(), "Bearer tok".to_owned())]
                .into_iter()
                .collect(),
            ..Default::default()
        });
        e.user = Some(User {
            email: Some("ada@example.com".into()),
            ip_address: Some(sentry::protocol::IpAddress::Exact(
                "203.0.113.7".parse().expect("ip"),
            )),
            ..Default::default()
        });
        e.message = Some("failed for ada@example.com".into());
        e.exception.values.push(Exception {
            ty: "panic".into(),
            value: Some("token Bearer abcdef from 203.0.113.7".into()),
            ..Default::default()
        });
        e.tags.insert("request_id".into(), "r-1".into());
        e.tags.insert("route".into(), "/_test/panic".into());
        e.tags.insert("authorization".into(), "Bearer tok".into());
        e.extra.insert("cookie".into(), "sid=s3cr3t".into());
        e.extra
            .insert("error".into(), "duplicate key ada@example.com".into());
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("body".to_owned(), Value::from("{\"a\":1}"));
        fields.insert("status".to_owned(), Value::from(500));
        e.contexts
            .insert("Rust Tracing Fields".into(), Context::Other(fields));

        let e = scrub(e);
        let text = serde_json::to_string(&e).expect("json");
        for gone in [
            "hunter2",
            "s3cr3t",
            "Bearer tok",
            "ada@example.com",
            "203.0.113.7",
            "abcdef",
            "{\\\"a\\\":1}",
        ] {
            assert!(!text.contains(gone), "{gone} was sent: {text}");
        }
        assert_eq!(e.tags.get("request_id").map(String::as_str), Some("r-1"));
        assert_eq!(
            e.tags.get("route").map(String::as_str),
            Some("/_test/panic")
        );
        assert!(e.request.is_none() && e.user.is_none());
        assert_eq!(
            e.extra.get("error"),
            Some(&Value::from("duplicate key [email]"))
        );
    }
}
