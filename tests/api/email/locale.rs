//! A user's own locale (`PATCH /api/v1/me`): a BCP 47 tag, normalised, refused with 400
//! otherwise; the next message to that user is written in it (the `fr` templates), and clearing
//! it returns to English.

use platform_tests::smtp::SmtpSink;
use serde_json::json;

use super::smtp_app;

#[tokio::test]
async fn a_user_sets_their_locale_and_their_next_mail_uses_it() {
    let sink = SmtpSink::start().await;
    let app = smtp_app(&sink, &[]).await;
    let t = app.tenant("loc", "shared", None).await;
    let u = app.user(&t, "amelie@loc.test", "member").await;
    // Her invitation (sent before she had a locale) arrives first.
    sink.wait_for(&u.email, 1).await;
    assert_eq!(u.api.me().await.body["locale"], json!(null));

    for bad in [
        json!({"locale": "french"}),
        json!({"locale": "fr-"}),
        json!({"locale": "en-US-u-ca-gregory"}),
        json!({"locale": "<script>"}),
        json!({"locale": ""}),
    ] {
        u.api.patch("/api/v1/me", bad).await.assert_problem(400);
    }
    // Not a string, or an unknown field: refused as the body's shape (422).
    for bad in [json!({"locale": 7}), json!({"language": "fr"})] {
        u.api.patch("/api/v1/me", bad).await.assert_problem(422);
    }
    assert_eq!(u.api.me().await.body["locale"], json!(null));

    let r = u.api.patch("/api/v1/me", json!({"locale": "fr-ca"})).await;
    r.assert_status(200);
    assert_eq!(r.str("locale"), "fr-CA");
    assert_eq!(r.str("email"), "amelie@loc.test");
    assert_eq!(u.api.me().await.str("locale"), "fr-CA");
    // A PATCH without the field changes nothing.
    assert_eq!(
        u.api.patch("/api/v1/me", json!({})).await.str("locale"),
        "fr-CA"
    );

    // The next message to the user is French (fr-CA falls back to the `fr` templates).
    let before = sink.to(&u.email).len();
    t.anon.forgot_password(&u.email).await.assert_status(202);
    let m = sink.wait_for(&u.email, before + 1).await;
    assert_eq!(m.subject(), "Réinitialisez votre mot de passe Tenant loc");
    assert!(
        m.text().contains("Choisir un nouveau mot de passe"),
        "{}",
        m.text()
    );

    // Cleared: back to the default (English).
    let r = u.api.patch("/api/v1/me", json!({"locale": null})).await;
    r.assert_status(200);
    assert_eq!(r.body["locale"], json!(null));
    t.anon.forgot_password(&u.email).await.assert_status(202);
    let m = sink.wait_for(&u.email, before + 2).await;
    assert_eq!(m.subject(), "Reset your Tenant loc password");
    app.finish().await;
}
