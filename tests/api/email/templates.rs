//! `GET /api/v1/email/templates/{kind}/preview`: every kind renders, localised with fallback, in
//! the tenant's branding, with values escaped in HTML.

use axum::http::Method;
use platform_tests::TestApp;
use serde_json::json;

#[tokio::test]
async fn previews_render_localised_in_the_tenants_branding() {
    let app = TestApp::spawn().await;
    let t = app.tenant("brand", "shared", None).await;
    for kind in [
        "invitation",
        "password_reset",
        "verification",
        "new_device_sign_in",
        "billing_payment_failed",
        "billing_reminder",
        "billing_final_notice",
        "billing_restored",
    ] {
        let r = app
            .api(
                &t,
                Method::GET,
                &format!("/api/v1/email/templates/{kind}/preview"),
                None,
            )
            .await;
        r.assert_status(200);
        assert!(!r.str("subject").is_empty(), "{kind}");
        assert!(r.str("html").contains("Tenant brand"), "{kind}");
    }
    app.api(
        &t,
        Method::PUT,
        "/api/v1/email/branding",
        Some(json!({"logo_url": "https://cdn.brand.test/logo.png", "primary_color": "#ff6600"})),
    )
    .await
    .assert_status(204);
    let r = app
        .api(
            &t,
            Method::GET,
            "/api/v1/email/templates/invitation/preview?locale=fr-CA",
            None,
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.str("locale"), "fr");
    assert_eq!(r.str("subject"), "Invitation à rejoindre Tenant brand");
    assert!(r.str("html").contains("#ff6600"));
    assert!(
        r.str("html")
            .replace("&#x2f;", "/")
            .contains("src=\"https://cdn.brand.test/logo.png\"")
    );
    assert!(
        r.str("text")
            .contains("https://acme.example.com/accept-invitation?token=inv_sample")
    );
    let r = app
        .api(
            &t,
            Method::GET,
            "/api/v1/email/templates/billing_reminder/preview?locale=de",
            None,
        )
        .await;
    assert_eq!(r.str("locale"), "en");

    // Bad input: 4xx problems.
    app.api(
        &t,
        Method::GET,
        "/api/v1/email/templates/nope/preview",
        None,
    )
    .await
    .assert_problem(404);
    app.api(
        &t,
        Method::GET,
        "/api/v1/email/templates/invitation/preview?locale=%3Cx%3E",
        None,
    )
    .await
    .assert_problem(400);
    app.api(
        &t,
        Method::PUT,
        "/api/v1/email/branding",
        Some(json!({"logo_url": "javascript:alert(1)"})),
    )
    .await
    .assert_problem(422);
    app.finish().await;
}
