//! Error tracking: the real `platform` binary with `SENTRY_DSN` pointing at an envelope receiver
//! in the harness. A panic in a (test-only) tenant route arrives as a Sentry event tagged with
//! the request id, route and tenant, and carries none of the request's Authorization header,
//! body, cookies, the user's email or the client's IP address (the route's panic message names
//! three of them, as careless code might: the scrubber masks them).

use platform_tests::TestApp;
use platform_tests::process::Platform;
use platform_tests::sentry::SentryReceiver;

#[tokio::test]
async fn a_panic_reaches_sentry_tagged_and_scrubbed() {
    let app = TestApp::spawn().await;
    let sentry = SentryReceiver::start().await;
    let t = app.tenant("sentry-a", "shared", None).await;
    let user = app.user(&t, "ada.sentry@example.com", "member").await;
    let p = Platform::start_with(
        &app,
        &[
            ("SENTRY_DSN", sentry.dsn()),
            ("PLATFORM_TEST_PANIC_ROUTE", "true"),
        ],
    )
    .await;
    let r = p
        .request(reqwest::Method::POST, "/_test/panic")
        .header("host", t.host())
        .bearer_auth(&user.access)
        .header("cookie", "sid=cookie-secret-8c1f")
        .header("x-request-id", "sentry-req-1")
        .header("content-type", "application/json")
        .body(r#"{"note":"body-secret-42ad","email":"ada.sentry@example.com"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 500);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );

    let (envelope, event) = sentry
        .wait_for_event(|e| e["tags"]["request_id"] == "sentry-req-1")
        .await;
    assert_eq!(event["tags"]["route"], "/_test/panic");
    assert_eq!(event["tags"]["tenant_id"], t.id.as_str());
    let exception = event["exception"]["values"][0]["value"]
        .as_str()
        .unwrap_or_default();
    // The route's panic message named the email, the address and the credential: masked.
    assert!(
        exception.contains("test panic route")
            && exception.contains("[email] from [ip] with Bearer [token]"),
        "{event:#}"
    );
    for secret in [
        user.access.as_str(),
        "cookie-secret-8c1f",
        "body-secret-42ad",
        "ada.sentry@example.com",
    ] {
        assert!(
            !envelope.raw.contains(secret),
            "{secret} was sent: {}",
            envelope.raw
        );
    }
    // The envelope header names the DSN's host; the event itself names no address.
    let text = event.to_string();
    assert!(
        !text.contains("127.0.0.1"),
        "an IP address was sent: {text}"
    );
    assert!(event.get("user").is_none() && event.get("request").is_none());
    // One event for the panic: the 5xx line of the same request is not reported twice.
    let same = sentry
        .envelopes()
        .iter()
        .flat_map(|e| e.events.clone())
        .filter(|e| e["tags"]["request_id"] == "sentry-req-1")
        .count();
    assert_eq!(same, 1);
    p.stop().await;
}

/// A 5xx that is not a panic (an unexpected database error, turned into a 500 by the handler's
/// `?`) is reported too, from the request's own hub: tagged, scrubbed, once. Traces are on and
/// sample nothing, so the request runs under the subscriber without the trace layer, which must
/// report it as well.
#[tokio::test]
async fn a_server_error_without_a_panic_reaches_sentry_tagged_and_scrubbed() {
    let app = TestApp::spawn().await;
    let sentry = SentryReceiver::start().await;
    let otlp = platform_tests::otlp::OtlpReceiver::start().await;
    let t = app.tenant("sentry-b", "shared", None).await;
    let user = app.user(&t, "bo.sentry@example.com", "member").await;
    let p = Platform::start_with(
        &app,
        &[
            ("SENTRY_DSN", sentry.dsn()),
            ("PLATFORM_TEST_PANIC_ROUTE", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint()),
            ("OTEL_TRACES_SAMPLER", "always_off"),
        ],
    )
    .await;
    let r = p
        .request(reqwest::Method::POST, "/_test/fail")
        .header("host", t.host())
        .bearer_auth(&user.access)
        .header("cookie", "sid=cookie-secret-77e0")
        .header("x-request-id", "sentry-req-2")
        .header("content-type", "application/json")
        .body(r#"{"note":"body-secret-5d1c","email":"bo.sentry@example.com"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 500);
    let body = r.text().await.expect("body");
    // The client learns nothing of the cause.
    assert!(
        !body.contains("integer") && !body.contains("bo.sentry"),
        "{body}"
    );

    let (envelope, event) = sentry
        .wait_for_event(|e| e["tags"]["request_id"] == "sentry-req-2")
        .await;
    assert_eq!(event["tags"]["route"], "/_test/fail");
    assert_eq!(event["tags"]["tenant_id"], t.id.as_str());
    // The database's message is there for the on-call engineer, with the email masked.
    let text = event.to_string();
    assert!(
        text.contains("invalid input syntax for type integer"),
        "{event:#}"
    );
    for secret in [
        user.access.as_str(),
        "cookie-secret-77e0",
        "body-secret-5d1c",
        "bo.sentry@example.com",
    ] {
        assert!(
            !envelope.raw.contains(secret),
            "{secret} was sent: {}",
            envelope.raw
        );
    }
    assert!(event.get("user").is_none() && event.get("request").is_none());
    let same = sentry
        .envelopes()
        .iter()
        .flat_map(|e| e.events.clone())
        .filter(|e| e["tags"]["request_id"] == "sentry-req-2")
        .count();
    assert_eq!(same, 1);
    p.stop().await;
}
