//! TOTP MFA: enrolment, two-step login, replay refusal, recovery codes (single use, also under
//! concurrency), and the tenant policy that requires a second factor.

use axum::http::Method;
use identity::mfa::code_at;
use platform_tests::{TestApp, TestTenant};
use serde_json::json;

use crate::auth::{PASSWORD, TestUser, as_user, login, public, user_with_role};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Enrols `u` in TOTP; returns (secret, recovery codes).
async fn enrol(app: &TestApp, t: &TestTenant, u: &TestUser) -> (String, Vec<String>) {
    let e = as_user(app, t, &u.access, Method::POST, "/api/v1/me/mfa/totp", None).await;
    e.assert_status(200);
    let secret = e.str("secret");
    assert!(
        e.str("otpauth_uri").starts_with("otpauth://totp/"),
        "{}",
        e.text
    );
    assert!(e.str("otpauth_uri").contains(&secret));
    as_user(
        app,
        t,
        &u.access,
        Method::POST,
        "/api/v1/me/mfa/totp/confirm",
        Some(json!({"code": "000000"})),
    )
    .await
    .assert_problem(401);
    let code = code_at(&secret, now()).expect("code");
    let c = as_user(
        app,
        t,
        &u.access,
        Method::POST,
        "/api/v1/me/mfa/totp/confirm",
        Some(json!({"code": code})),
    )
    .await;
    c.assert_status(200);
    let codes: Vec<String> = c.body["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

async fn mfa_token(app: &TestApp, t: &TestTenant, email: &str) -> String {
    let l = login(app, t, email, PASSWORD).await;
    l.assert_status(200);
    assert_eq!(l.body["mfa_required"], json!(true));
    assert!(
        l.body.get("access_token").is_none(),
        "no token before the second factor"
    );
    l.str("mfa_token")
}

#[tokio::test]
async fn login_with_totp_is_two_steps_and_a_code_is_usable_once() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let (secret, _) = enrol(&app, &t, &u).await;
    // The secret is sealed at rest.
    let sealed: Vec<u8> = app
        .shared_owner()
        .await
        .query_one(
            "SELECT totp_secret_sealed FROM users WHERE email = 'owner@acme.test'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(sealed.first(), Some(&2), "not in the sealed format");
    let token = mfa_token(&app, &t, &u.email).await;
    // The mfa_token is not an access token.
    as_user(&app, &t, &token, Method::GET, "/api/v1/me", None)
        .await
        .assert_problem(401);
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/mfa/verify",
        json!({"mfa_token": token, "code": "123456x"}),
    )
    .await
    .assert_problem(401);
    // The next step's code (within the ±1 tolerance; the current one was used to confirm).
    let code = code_at(&secret, now() + 30).expect("code");
    let v = public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/mfa/verify",
        json!({"mfa_token": token, "code": code}),
    )
    .await;
    v.assert_status(200);
    as_user(
        &app,
        &t,
        &v.str("access_token"),
        Method::GET,
        "/api/v1/me",
        None,
    )
    .await
    .assert_status(200);
    // The mfa_token is single-use; the code is refused on replay with a fresh mfa_token.
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/mfa/verify",
        json!({"mfa_token": token, "code": code}),
    )
    .await
    .assert_problem(401);
    let token2 = mfa_token(&app, &t, &u.email).await;
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/mfa/verify",
        json!({"mfa_token": token2, "code": code}),
    )
    .await
    .assert_problem(401);
    app.finish().await;
}

#[tokio::test]
async fn a_recovery_code_works_once_even_when_used_concurrently() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let (_, codes) = enrol(&app, &t, &u).await;
    let (t1, t2) = (
        mfa_token(&app, &t, &u.email).await,
        mfa_token(&app, &t, &u.email).await,
    );
    let (a, b) = futures_util::future::join(
        public(
            &app,
            &t,
            Method::POST,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": t1, "code": codes[0]}),
        ),
        public(
            &app,
            &t,
            Method::POST,
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": t2, "code": codes[0]}),
        ),
    )
    .await;
    let ok = [a.status.as_u16(), b.status.as_u16()];
    assert_eq!(
        ok.iter().filter(|s| **s == 200).count(),
        1,
        "{} / {}",
        a.text,
        b.text
    );
    assert_eq!(
        ok.iter().filter(|s| **s == 401).count(),
        1,
        "{} / {}",
        a.text,
        b.text
    );
    // Another code still works; codes are stored hashed.
    let t3 = mfa_token(&app, &t, &u.email).await;
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/mfa/verify",
        json!({"mfa_token": t3, "code": codes[1]}),
    )
    .await
    .assert_status(200);
    let db = app.shared_owner().await;
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE code_hash = convert_to($1, 'UTF8')),
                    count(*) FILTER (WHERE code_hash = sha256(convert_to($1, 'UTF8')))
             FROM recovery_codes",
            &[&codes[2]],
        )
        .await
        .expect("count");
    let (plain, hashed): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((plain, hashed), (0, 1));
    app.finish().await;
}

#[tokio::test]
async fn a_tenant_can_require_mfa() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    app.admin(
        Method::PATCH,
        &format!("/admin/v1/tenants/{}", t.id),
        Some(json!({"mfa_required": true})),
    )
    .await
    .assert_status(200);
    let l = login(&app, &t, &u.email, PASSWORD).await;
    let tok = l.str("access_token");
    let refused = platform_tests::eventually(std::time::Duration::from_secs(10), || {
        let (app, t, tok) = (&app, &t, tok.clone());
        async move {
            as_user(app, t, &tok, Method::GET, "/api/v1/projects", None)
                .await
                .status
                .as_u16()
                == 403
        }
    })
    .await;
    assert!(refused.is_some());
    // The user can still see themselves and enrol.
    as_user(&app, &t, &tok, Method::GET, "/api/v1/me", None)
        .await
        .assert_status(200);
    let (secret, _) = enrol(
        &app,
        &t,
        &TestUser {
            access: tok.clone(),
            ..u.clone()
        },
    )
    .await;
    let token = mfa_token(&app, &t, &u.email).await;
    let v = public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/mfa/verify",
        json!({"mfa_token": token, "code": code_at(&secret, now() + 30).expect("code")}),
    )
    .await;
    v.assert_status(200);
    as_user(
        &app,
        &t,
        &v.str("access_token"),
        Method::GET,
        "/api/v1/projects",
        None,
    )
    .await
    .assert_status(200);
    app.finish().await;
}
