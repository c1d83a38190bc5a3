//! TOTP MFA: enrolment, two-step login, replay refusal, recovery codes (single use, also under
//! concurrency), and the tenant policy that requires a second factor.

use std::time::Duration;

use identity::mfa::code_at;
use platform_tests::{Client, PASSWORD, TestApp, TestTenant, eventually};
use serde_json::json;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Enrols the caller in TOTP; returns (secret, recovery codes).
async fn enrol(api: &Client) -> (String, Vec<String>) {
    let e = api.enrol_totp().await;
    e.assert_status(200);
    let secret = e.str("secret");
    assert!(
        e.str("otpauth_uri").starts_with("otpauth://totp/"),
        "{}",
        e.text
    );
    assert!(e.str("otpauth_uri").contains(&secret));
    api.confirm_totp("000000").await.assert_problem(401);
    let code = code_at(&secret, now()).expect("code");
    let c = api.confirm_totp(&code).await;
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

/// The first login step of an enrolled user: an `mfa_token`, and no access token yet.
async fn mfa_token(t: &TestTenant, email: &str) -> String {
    let l = t.anon.login(email, PASSWORD).await;
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
    let u = app.user(&t, "owner@acme.test", "owner").await;
    let (secret, _) = enrol(&u.api).await;
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
    let token = mfa_token(&t, &u.email).await;
    // The mfa_token is not an access token.
    t.as_bearer(&token).me().await.assert_problem(401);
    t.anon
        .verify_mfa(&token, "123456x")
        .await
        .assert_problem(401);
    // The next step's code (within the ±1 tolerance; the current one was used to confirm).
    let code = code_at(&secret, now() + 30).expect("code");
    let v = t.anon.verify_mfa(&token, &code).await;
    v.assert_status(200);
    t.as_bearer(&v.str("access_token"))
        .me()
        .await
        .assert_status(200);
    // The mfa_token is single-use; the code is refused on replay with a fresh mfa_token.
    t.anon.verify_mfa(&token, &code).await.assert_problem(401);
    let token2 = mfa_token(&t, &u.email).await;
    t.anon.verify_mfa(&token2, &code).await.assert_problem(401);
    app.finish().await;
}

#[tokio::test]
async fn a_recovery_code_works_once_even_when_used_concurrently() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = app.user(&t, "owner@acme.test", "owner").await;
    let (_, codes) = enrol(&u.api).await;
    let (t1, t2) = (mfa_token(&t, &u.email).await, mfa_token(&t, &u.email).await);
    let (a, b) = futures_util::future::join(
        t.anon.verify_mfa(&t1, &codes[0]),
        t.anon.verify_mfa(&t2, &codes[0]),
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
    let t3 = mfa_token(&t, &u.email).await;
    t.anon.verify_mfa(&t3, &codes[1]).await.assert_status(200);
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
    let u = app.user(&t, "owner@acme.test", "owner").await;
    app.operator()
        .patch_tenant(&t.id, json!({"mfa_required": true}))
        .await
        .assert_status(200);
    let l = t.anon.login(&u.email, PASSWORD).await;
    let api = t.as_bearer(&l.str("access_token"));
    let refused = eventually(Duration::from_secs(10), || async {
        api.projects().await.status.as_u16() == 403
    })
    .await;
    assert!(refused.is_some());
    // The user can still see themselves and enrol.
    api.me().await.assert_status(200);
    let (secret, _) = enrol(&api).await;
    let token = mfa_token(&t, &u.email).await;
    let v = t
        .anon
        .verify_mfa(&token, &code_at(&secret, now() + 30).expect("code"))
        .await;
    v.assert_status(200);
    t.as_bearer(&v.str("access_token"))
        .projects()
        .await
        .assert_status(200);
    app.finish().await;
}
