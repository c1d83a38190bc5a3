//! Password login: no account enumeration, per-account slow-down.

use super::*;

#[tokio::test]
async fn login_answers_alike_for_unknown_email_and_wrong_password() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let ok = login(&app, &t, &u.email, PASSWORD).await;
    ok.assert_status(200);
    assert!(
        ok.body["expires_in"]
            .as_u64()
            .is_some_and(|s| (300..=900).contains(&s))
    );
    let wrong = login(&app, &t, &u.email, "not the password at all").await;
    let unknown = login(&app, &t, "nobody@acme.test", "not the password at all").await;
    wrong.assert_problem(401);
    unknown.assert_problem(401);
    assert_eq!(wrong.body, unknown.body);
    app.finish().await;
}

#[tokio::test]
async fn repeated_login_failures_are_slowed_down_per_account() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    for _ in 0..5 {
        login(&app, &t, &u.email, "wrong wrong wrong")
            .await
            .assert_problem(401);
    }
    // Even the right password must now wait.
    let r = login(&app, &t, &u.email, PASSWORD).await;
    r.assert_problem(429);
    assert!(r.headers.get("retry-after").is_some());
    // Other accounts are not affected.
    let v = user_with_role(&app, &t, "other@acme.test", "viewer").await;
    login(&app, &t, &v.email, PASSWORD).await.assert_status(200);
    app.finish().await;
}
