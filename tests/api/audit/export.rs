//! Export streams in bounded chunks; expiry removes old segments and the rest still verifies.

use http_body_util::BodyExt as _;
use platform::routes::api::audit::EXPORT_CHUNK;
use platform_tests::TestApp;
use serde_json::json;
use tower::ServiceExt as _;

/// Twenty chunks' worth: what the test proves (every frame holds at most one chunk, and the export
/// takes as many frames as chunks) does not grow with the count, and seeding 100,000 events made
/// this the suite's slowest test.
const EVENTS: usize = 20 * EXPORT_CHUNK as usize;

#[tokio::test]
async fn an_export_of_20000_events_streams_in_bounded_chunks() {
    let app = TestApp::spawn().await;
    let t = app.tenant("bulk", "shared", None).await;
    let owner = app.shared_owner().await;
    owner
        .batch_execute(&format!(
            "BEGIN; SET LOCAL app.tenant_id = '{id}';
             SELECT platform_audit_append('{id}', 'bulk.event', 'thing', g::text, 'success', '{{\"n\": 1}}')
             FROM generate_series(1, {EVENTS}) g;
             COMMIT",
            id = t.id
        ))
        .await
        .expect("bulk events");
    // Written by the owner, past the data plane: no commit hint, so linked here (as the sweep would).
    let tenant = app
        .app
        .tenancy
        .catalog
        .tenant_by_slug("bulk")
        .await
        .expect("catalog")
        .expect("tenant");
    super::sealed(&app, &tenant).await;
    for (format, lines_expected_extra) in [("jsonl", 0usize), ("csv", 1usize)] {
        let req = axum::http::Request::builder()
            .uri(format!(
                "/api/v1/audit-events/export?format={format}&action=bulk.event"
            ))
            .header("host", t.host())
            .header("authorization", format!("Bearer {}", t.key))
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = app.router().clone().oneshot(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers().get("content-length").is_none(),
            "a streamed body has no length"
        );
        let mut body = resp.into_body();
        let (mut frames, mut lines, mut max_lines) = (0usize, 0usize, 0usize);
        let mut tail = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.expect("frame").into_data().expect("data");
            let n = data.iter().filter(|b| **b == b'\n').count();
            frames += 1;
            lines += n;
            max_lines = max_lines.max(n);
            tail = data.to_vec();
        }
        assert_eq!(lines, EVENTS + lines_expected_extra, "{format}");
        // Read and sent a chunk at a time: never more than one chunk (plus a CSV header) at once.
        let chunk = EXPORT_CHUNK as usize;
        assert!(frames >= EVENTS / chunk, "{format}: {frames} frames");
        assert!(
            max_lines <= chunk + 1,
            "{format}: a frame of {max_lines} lines"
        );
        let last = String::from_utf8_lossy(&tail);
        assert!(last.contains("bulk.event"), "{last}");
    }
    app.finish().await;
}

#[tokio::test]
async fn expiry_removes_old_segments_and_what_remains_still_verifies() {
    let app = TestApp::spawn().await;
    let t = app.tenant("aging", "shared", None).await;
    app.operator()
        .patch_tenant(&t.id, json!({"plan": "pro"}))
        .await
        .assert_status(200);
    for i in 0..3 {
        t.api
            .create_project(&format!("p{i}"))
            .await
            .assert_status(201);
    }
    let tenant = app
        .app
        .tenancy
        .catalog
        .tenant_by_slug("aging")
        .await
        .expect("catalog")
        .expect("tenant");
    // The pro plan keeps a year; the cut-off is the start of a UTC day.
    assert_eq!(tenant.audit_retention_days, Some(365));
    let now = time::OffsetDateTime::now_utc();
    let cut = audit::retention::cutoff(now, 365);
    assert_eq!((cut.hour(), cut.minute(), cut.second()), (0, 0, 0));
    super::sealed(&app, &tenant).await;
    let before = audit::verify_tenant(&app.app.tenancy.dataplane, &tenant)
        .await
        .expect("verify");
    assert!(before.ok() && before.events_checked >= 4);
    // Everything so far is "old": expire it (as the owner, on the controlled path).
    let owner = app.shared_owner().await;
    let (removed, checkpoint) =
        audit::retention::expire(&owner, tenant.id, now + time::Duration::seconds(1))
            .await
            .expect("expire");
    assert_eq!(removed, before.events_checked);
    assert_eq!(checkpoint, before.head_seq);
    // The chain goes on from the checkpoint and verifies.
    t.api.create_project("new").await.assert_status(201);
    super::sealed(&app, &tenant).await;
    let after = audit::verify_tenant(&app.app.tenancy.dataplane, &tenant)
        .await
        .expect("verify");
    assert!(after.ok(), "{after:?}");
    assert_eq!(after.checkpoint_seq, checkpoint);
    assert!(after.events_checked >= 1 && after.head_seq > checkpoint);
    app.finish().await;
}
