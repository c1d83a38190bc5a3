//! Open tracking: off by default (no image in the mail); enabled per tenant with
//! `PUT /api/v1/email/settings`, the HTML part ends with a 1×1 image at `/o/{token}`, and fetching
//! it (as a mail client shows images: a plain GET, no cookie) records one `opened` event for the
//! message however often it is fetched. Another tenant's mail stays untracked; a forged token is
//! a 404.

use axum::http::Method;
use platform_tests::Req;
use platform_tests::smtp::SmtpSink;
use serde_json::json;

use super::{announce, smtp_app, wait_status};

/// The tracking image's URL in `html`, if any.
fn pixel(html: &str) -> Option<String> {
    let start = html.find("/o/")?;
    let from = html[..start].rfind("src=\"")? + 5;
    let end = start + html[start..].find('"')?;
    Some(html[from..end].to_owned())
}

#[tokio::test]
async fn open_tracking_is_off_by_default_and_counts_the_first_open_once_enabled() {
    let sink = SmtpSink::start().await;
    let app = smtp_app(&sink, &[]).await;
    let t = app.tenant("tracked", "shared", None).await;
    let other = app.tenant("untracked", "shared", None).await;

    let s = t.api.get("/api/v1/email/settings").await;
    s.assert_status(200);
    assert_eq!(s.body["open_tracking"], json!(false));
    announce(&app, &t, "first@reader.test", "Untracked").await;
    let m = sink.wait_for("first@reader.test", 1).await;
    assert_eq!(pixel(&m.html_decoded()), None, "{}", m.html());

    t.api
        .put("/api/v1/email/settings", json!({"open_tracking": "yes"}))
        .await
        .assert_problem(422);
    let on = t
        .api
        .put("/api/v1/email/settings", json!({"open_tracking": true}))
        .await;
    on.assert_status(200);
    assert_eq!(on.body["open_tracking"], json!(true));

    let id = announce(&app, &t, "reader@reader.test", "Tracked").await;
    wait_status(&app, id, "sent").await;
    let m = sink.wait_for("reader@reader.test", 1).await;
    let url = pixel(&m.html_decoded()).unwrap_or_else(|| panic!("no image in {}", m.html()));
    let path = url
        .strip_prefix("https://tracked.localhost")
        .unwrap_or_else(|| panic!("{url}"));
    assert!(!m.text().contains("/o/"), "the text part has no image");

    // Another tenant's mail is not tracked.
    announce(&app, &other, "reader@other.test", "Other").await;
    let o = sink.wait_for("reader@other.test", 1).await;
    assert_eq!(pixel(&o.html_decoded()), None);

    // A mail client shows the image twice: one `opened` event.
    for _ in 0..2 {
        let r = app
            .send(Req::new(Method::GET, path).host("tracked.localhost"))
            .await;
        r.assert_status(200);
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("image/gif")
        );
    }
    let events = t
        .api
        .get(&format!("/api/v1/email/events?message_id={id}"))
        .await;
    events.assert_status(200);
    let kinds: Vec<&str> = events.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(kinds, vec!["sent", "opened"], "{}", events.text);

    // A forged or altered token.
    let forged = format!("{}A", &path[..path.len() - 1]);
    app.send(Req::new(Method::GET, &forged))
        .await
        .assert_problem(404);
    app.send(Req::new(Method::GET, "/o/nope"))
        .await
        .assert_problem(404);
    app.finish().await;
}
