//! Hole 11: login answers tell nothing about an account. An SSO-only user (no password) costs
//! the same argon2 work as a wrong password or an unknown email, and with SSO enforced every
//! refused login gets the same answer whether or not the password was right.

use platform_tests::{PASSWORD, TestApp, TestResponse, TestTenant};
use serde_json::json;

/// The argon2 verifications the platform has done so far.
fn verifications(app: &TestApp) -> u64 {
    app.app.identity.auth.password_verifications()
}

/// Logs in and returns the answer with the argon2 work it cost.
async fn login(app: &TestApp, t: &TestTenant, email: &str, password: &str) -> (TestResponse, u64) {
    let before = verifications(app);
    let r = t.anon.login(email, password).await;
    (r, verifications(app) - before)
}

/// Status and body (the whole problem document).
fn answer(r: &TestResponse) -> (u16, serde_json::Value) {
    (r.status.as_u16(), r.body.clone())
}

#[tokio::test]
async fn an_sso_only_user_costs_the_same_hash_work_as_an_unknown_email() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = app.user(&t, "sso@acme.test", "member").await;
    let db = app.tenant_db(&t).await;
    db.execute(
        "UPDATE users SET password_hash = '!sso' WHERE id = $1::text::uuid",
        &[&u.id],
    )
    .await
    .expect("make the user SSO-only");

    let (sso_only, sso_work) = login(&app, &t, &u.email, PASSWORD).await;
    let (unknown, unknown_work) = login(&app, &t, "nobody@acme.test", PASSWORD).await;
    assert_eq!(unknown_work, 1, "an unknown email is hashed once");
    assert_eq!(
        sso_work, 1,
        "an SSO-only user is hashed once, like an unknown email"
    );
    sso_only.assert_problem(401);
    assert_eq!(answer(&sso_only), answer(&unknown));
    app.finish().await;
}

#[tokio::test]
async fn with_sso_enforced_the_answer_does_not_depend_on_the_password() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let m = app.user(&t, "m@acme.test", "member").await;
    let owner = app.user(&t, "o@acme.test", "owner").await;
    t.api
        .create_sso_connection(json!({"kind": "oidc", "name": "corp",
            "issuer": "http://127.0.0.1:9", "client_id": "c"}))
        .await
        .assert_status(201);
    t.api
        .put_sso_settings(json!({"enforce_sso": true}))
        .await
        .assert_status(200);

    let (right, right_work) = login(&app, &t, &m.email, PASSWORD).await;
    let (wrong, wrong_work) = login(&app, &t, &m.email, "not the password at all").await;
    let (unknown, unknown_work) = login(&app, &t, "nobody@acme.test", PASSWORD).await;
    right.assert_problem(403);
    assert_eq!(answer(&right), answer(&wrong), "right vs wrong password");
    assert_eq!(answer(&right), answer(&unknown), "known vs unknown email");
    assert_eq!((right_work, wrong_work, unknown_work), (1, 1, 1));
    // Owners keep password login (break-glass), and only with the right password.
    let (owner_wrong, _) = login(&app, &t, &owner.email, "not the password at all").await;
    assert_eq!(answer(&owner_wrong), answer(&wrong));
    login(&app, &t, &owner.email, PASSWORD)
        .await
        .0
        .assert_status(200);
    app.finish().await;
}
