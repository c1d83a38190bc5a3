//! Traces: the real `platform` binary, configured only by the standard OpenTelemetry variables,
//! exports over OTLP/HTTP to a receiver that decodes the protobuf with the OpenTelemetry
//! project's own message types. One request sent with a W3C `traceparent` (and a `baggage`
//! header that must be ignored) gives a server span in the caller's trace, database spans under
//! it carrying statement templates (never values), the trace id in the JSON log line, and a job
//! span linked to the request that enqueued the job.

use platform_tests::TestApp;
use platform_tests::otlp::{OtlpReceiver, Received};
use platform_tests::process::Platform;
use serde_json::Value;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const UNSAMPLED_TRACE: &str = "7a3c1b2d4e5f60718293a4b5c6d7e8f9";
const INVITEE: &str = "invitee.trace@example.com";
const BAGGAGE: &str = "user.email=baggage.secret@example.com";

/// Span kinds in OTLP: 2 server, 3 client.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn ancestors_reach(spans: &[Received], from: &Received, target: &str) -> bool {
    let mut at = from.parent_id();
    for _ in 0..32 {
        if at == target {
            return true;
        }
        match spans.iter().find(|s| s.span_id() == at) {
            Some(p) => at = p.parent_id(),
            None => return false,
        }
    }
    false
}

#[tokio::test]
async fn a_callers_trace_continues_through_the_request_its_statements_and_the_job_it_enqueues() {
    let app = TestApp::spawn().await;
    // The binary's worker runs the job (its spans are the ones exported).
    app.app.stop_jobs();
    let otlp = OtlpReceiver::start().await;
    let t = app.tenant("otel-a", "shared", None).await;
    let p = Platform::start_with(
        &app,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint()),
            ("OTEL_SERVICE_NAME", "platform-under-test"),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("PLATFORM_LOG_FORMAT", "json"),
            ("PLATFORM_LOG", "info"),
        ],
    )
    .await;
    let invite = |trace: &str, flags: &str, email: &str| {
        p.request(reqwest::Method::POST, "/api/v1/invitations")
            .header("host", t.host())
            .bearer_auth(&t.key)
            .header("traceparent", format!("00-{trace}-{PARENT}-{flags}"))
            .header("baggage", BAGGAGE)
            .header("content-type", "application/json")
            .body(serde_json::json!({"email": email, "role": "member"}).to_string())
            .send()
    };
    // The caller did not sample this one: parent-based sampling exports nothing of it.
    let r = invite(UNSAMPLED_TRACE, "00", "unsampled@example.com")
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
    let r = invite(TRACE, "01", INVITEE).await.expect("request");
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);

    // The server span: in the caller's trace, a child of the caller's span.
    let server = otlp
        .wait_for("of the request", |s| {
            s.trace_id() == TRACE && s.span.kind == SERVER
        })
        .await;
    assert_eq!(server.parent_id(), PARENT);
    assert_eq!(server.service, "platform-under-test");
    assert_eq!(server.span.name, "POST /api/v1/invitations");
    assert_eq!(server.attr("route").as_deref(), Some("/api/v1/invitations"));
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("201")
    );
    assert_eq!(server.attr("tenant.id").as_deref(), Some(t.id.as_str()));

    // Database spans under it: statement templates, never the values.
    let job_insert = otlp
        .wait_for("of the job insert", |s| {
            s.trace_id() == TRACE
                && s.attr("db.query.text")
                    .is_some_and(|q| q.contains("INSERT INTO jobs"))
        })
        .await;
    let spans = otlp.spans();
    let db: Vec<&Received> = spans
        .iter()
        .filter(|s| s.trace_id() == TRACE && s.attr("db.system.name").is_some())
        .collect();
    assert!(db.len() >= 2, "statements of the request: {db:#?}");
    for s in &db {
        assert_eq!(s.span.kind, CLIENT);
        assert_eq!(s.attr("db.system.name").as_deref(), Some("postgresql"));
        assert!(ancestors_reach(&spans, s, &server.span_id()), "{s:#?}");
    }
    let q = job_insert.attr("db.query.text").unwrap_or_default();
    assert!(q.contains("$1"), "a template with placeholders: {q}");
    assert_eq!(
        job_insert.attr("db.operation.name").as_deref(),
        Some("INSERT")
    );
    // No value of the request in any attribute of its trace, and the caller's baggage nowhere.
    for s in spans.iter().filter(|s| s.trace_id() == TRACE) {
        for kv in &s.span.attributes {
            let v = format!("{:?}", kv.value);
            assert!(!v.contains(INVITEE), "{} carries a value: {v}", kv.key);
            assert!(!v.contains("baggage.secret"), "baggage read: {}", kv.key);
        }
    }
    assert!(
        spans.iter().all(|s| s.trace_id() != UNSAMPLED_TRACE),
        "an unsampled caller's request was exported"
    );

    // The log line of each request carries its trace id and its span's fields, the unsampled
    // one's too (its request runs under the subscriber without the trace layer).
    for trace in [TRACE, UNSAMPLED_TRACE] {
        let mut line = None;
        platform_tests::eventually(std::time::Duration::from_secs(10), || {
            line = p.stdout().into_iter().find_map(|l| {
                let v: Value = serde_json::from_str(&l).ok()?;
                (v["message"] == "request finished"
                    && v["span"]["route"] == "/api/v1/invitations"
                    && v["span"]["tenant.id"] == t.id.as_str()
                    && v["trace_id"] == trace)
                    .then_some(v)
            });
            std::future::ready(line.is_some())
        })
        .await;
        assert!(
            line.is_some(),
            "no log line with the trace id {trace}: {:#?}",
            p.stdout()
        );
    }

    // The invitation email job runs later, in a trace of its own, linked to the request.
    let links_to_request = |s: &Received| {
        s.span
            .links
            .iter()
            .any(|l| platform_tests::otlp::hex(&l.trace_id) == TRACE)
    };
    let job = otlp
        .wait_for("of the job", |s| {
            s.span.name == "job email.invitation" && links_to_request(s)
        })
        .await;
    assert_ne!(job.trace_id(), TRACE);
    let link = job
        .span
        .links
        .iter()
        .find(|l| platform_tests::otlp::hex(&l.trace_id) == TRACE)
        .unwrap_or_else(|| panic!("the job span links to the request: {job:#?}"));
    let linked = platform_tests::otlp::hex(&link.span_id);
    assert!(
        linked == server.span_id() || spans.iter().any(|s| s.span_id() == linked),
        "the link points at a span of the request"
    );
    p.stop().await;
}
