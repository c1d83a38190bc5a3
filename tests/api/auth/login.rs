//! Password login: no account enumeration, per-account slow-down.

use super::*;

#[tokio::test]
async fn login_answers_alike_for_unknown_email_and_wrong_password() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = app.user(&t, "owner@acme.test", "owner").await;
    let ok = t.anon.login(&u.email, PASSWORD).await;
    ok.assert_status(200);
    assert!(
        ok.body["expires_in"]
            .as_u64()
            .is_some_and(|s| (300..=900).contains(&s))
    );
    let wrong = t.anon.login(&u.email, "not the password at all").await;
    let unknown = t
        .anon
        .login("nobody@acme.test", "not the password at all")
        .await;
    wrong.assert_problem(401);
    unknown.assert_problem(401);
    assert_eq!(wrong.body, unknown.body);
    app.finish().await;
}

#[tokio::test]
async fn repeated_login_failures_are_slowed_down_per_account() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = app.user(&t, "owner@acme.test", "owner").await;
    for _ in 0..5 {
        t.anon
            .login(&u.email, "wrong wrong wrong")
            .await
            .assert_problem(401);
    }
    // Even the right password must now wait.
    let r = t.anon.login(&u.email, PASSWORD).await;
    r.assert_problem(429);
    assert!(r.headers.get("retry-after").is_some());
    // Other accounts are not affected.
    let v = app.user(&t, "other@acme.test", "viewer").await;
    t.anon.login(&v.email, PASSWORD).await.assert_status(200);
    app.finish().await;
}
