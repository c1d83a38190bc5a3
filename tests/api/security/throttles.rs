//! Throttles cannot be raced or sidestepped (issue 14, hole 5): a code check takes its place in
//! the throttle before it is evaluated, so concurrent wrong codes are not all evaluated before
//! the first failure counts; per-address limits key an IPv6 client by its /64; and every code
//! check (MFA verify, TOTP confirm, turning TOTP off) is throttled.

use axum::http::Method;
use futures_util::future::join_all;
use identity::mfa::code_at;
use platform_tests::{Client, PASSWORD, TestApp, TestResponse, TestTenant};
use serde_json::json;

/// Failed code checks allowed per account before the throttle refuses (identity's throttle).
const FREE: usize = 5;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A six-digit code that is wrong for `secret` now and for a minute either side.
fn wrong_code(secret: &str) -> String {
    let t = now();
    let valid: Vec<String> = [t - 60, t - 30, t, t + 30, t + 60]
        .iter()
        .filter_map(|s| code_at(secret, *s))
        .collect();
    (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| !valid.contains(c))
        .expect("a wrong code")
}

fn statuses(rs: &[TestResponse]) -> (usize, usize) {
    for r in rs {
        assert!(
            matches!(r.status.as_u16(), 401 | 429),
            "unexpected answer: {}",
            r.text
        );
    }
    let evaluated = rs.iter().filter(|r| r.status.as_u16() == 401).count();
    (evaluated, rs.len() - evaluated)
}

/// Enrols the user (not confirmed); returns the secret.
async fn start_enrolment(api: &Client) -> String {
    let e = api.enrol_totp().await;
    e.assert_status(200);
    e.str("secret")
}

/// Enrols and confirms the user; returns the secret.
async fn enrol(api: &Client) -> String {
    let secret = start_enrolment(api).await;
    api.confirm_totp(&code_at(&secret, now()).expect("code"))
        .await
        .assert_status(200);
    secret
}

async fn mfa_token(t: &TestTenant, email: &str) -> String {
    let l = t.anon.login(email, PASSWORD).await;
    l.assert_status(200);
    l.str("mfa_token")
}

#[tokio::test]
async fn fifty_concurrent_wrong_codes_from_one_64_are_not_all_evaluated() {
    // The per-address request rate is out of reach here: this is about the code throttle.
    let app = TestApp::spawn_with(&[
        ("PLATFORM_TRUSTED_PROXIES", "10.0.0.0/8"),
        ("PLATFORM_RATE_LIMIT_SENSITIVE_IP", "1000/1000"),
    ])
    .await;
    let t = app.tenant("acme", "shared", None).await;
    let u = app.user(&t, "owner@acme.test", "owner").await;
    let secret = enrol(&u.api).await;
    let token = mfa_token(&t, &u.email).await;
    let wrong = wrong_code(&secret);
    let attempts = (1..=50).map(|i| {
        app.send(
            t.anon
                .req(Method::POST, "/api/v1/auth/mfa/verify")
                .peer("10.0.0.1:443")
                .header("x-forwarded-for", &format!("2001:db8:aa:1::{i:x}"))
                .json(&json!({"mfa_token": token, "code": wrong})),
        )
    });
    let answers = join_all(attempts).await;
    let (evaluated, refused) = statuses(&answers);
    let recorded: i64 = app
        .shared_owner()
        .await
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'auth.mfa_verify'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert!(
        evaluated <= FREE && recorded as usize <= FREE,
        "{evaluated} of 50 concurrent wrong codes were evaluated ({recorded} recorded), at most {FREE} allowed"
    );
    assert_eq!(evaluated + refused, 50);
    for r in answers.iter().filter(|r| r.status.as_u16() == 429) {
        r.assert_problem(429);
    }
    app.finish().await;
}

#[tokio::test]
async fn per_address_limits_key_ipv6_by_its_64() {
    let app = TestApp::spawn_with(&[
        ("PLATFORM_TRUSTED_PROXIES", "10.0.0.0/8"),
        ("PLATFORM_RATE_LIMIT_SENSITIVE_IP", "1000/1000"),
    ])
    .await;
    let t = app.tenant("acme", "shared", None).await;
    let login = |from: String, n: usize| {
        app.send(
            t.anon
                .req(Method::POST, "/api/v1/auth/login")
                .peer("10.0.0.1:443")
                .header("x-forwarded-for", &from)
                .json(&json!({"email": format!("user{n}@acme.test"), "password": "wrong"})),
        )
    };
    // Password spraying over many accounts, each attempt from a fresh address of one /64: the
    // address throttle (20 failures) holds for the whole /64.
    let mut first_refusal = None;
    for n in 0..30 {
        let r = login(format!("2001:db8:bb:1::{:x}", n + 1), n).await;
        if r.status.as_u16() == 429 {
            first_refusal = Some(n);
            break;
        }
        r.assert_problem(401);
    }
    assert_eq!(
        first_refusal,
        Some(20),
        "30 addresses of one /64 were throttled as 30 clients"
    );
    // Another /64 is another client.
    login("2001:db8:bb:2::1".to_owned(), 99)
        .await
        .assert_problem(401);
    app.finish().await;
}

#[tokio::test]
async fn the_request_rate_per_address_keys_ipv6_by_its_64() {
    let app = TestApp::spawn_with(&[
        ("PLATFORM_TRUSTED_PROXIES", "10.0.0.0/8"),
        ("PLATFORM_RATE_LIMIT_SENSITIVE_IP", "1/2"),
    ])
    .await;
    let t = app.tenant("acme", "shared", None).await;
    let forgot = |from: &str| {
        app.send(
            t.anon
                .req(Method::POST, "/api/v1/auth/password/forgot")
                .peer("10.0.0.1:443")
                .header("x-forwarded-for", from)
                .json(&json!({"email": "nobody@acme.test"})),
        )
    };
    forgot("2001:db8:cc:1::1").await.assert_status(202);
    forgot("2001:db8:cc:1::2").await.assert_status(202);
    forgot("2001:db8:cc:1:ffff::3").await.assert_problem(429);
    forgot("2001:db8:cc:2::1").await.assert_status(202);
    app.finish().await;
}

#[tokio::test]
async fn confirming_and_turning_off_totp_are_throttled_code_checks() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;

    // Confirming an enrolment: concurrent wrong codes, at most FREE evaluated; then even the
    // right code waits.
    let a = app.user(&t, "a@acme.test", "member").await;
    let secret = start_enrolment(&a.api).await;
    let wrong = wrong_code(&secret);
    let answers = join_all((0..20).map(|_| a.api.confirm_totp(&wrong))).await;
    let (evaluated, _) = statuses(&answers);
    assert!(
        evaluated <= FREE,
        "{evaluated} of 20 concurrent wrong confirmation codes were evaluated"
    );
    a.api
        .confirm_totp(&code_at(&secret, now()).expect("code"))
        .await
        .assert_problem(429);

    // Turning TOTP off needs a code: the same throttle.
    let b = app.user(&t, "b@acme.test", "member").await;
    let secret = enrol(&b.api).await;
    let wrong = wrong_code(&secret);
    for _ in 0..FREE {
        b.api.disable_totp(&wrong).await.assert_problem(401);
    }
    b.api.disable_totp(&wrong).await.assert_problem(429);
    app.finish().await;
}
