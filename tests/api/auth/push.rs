//! Auth changes are pushed to every instance: a session revoked or signed out, or a permission
//! taken from a role, through one instance's API is refused by another instance (the real binary
//! on the same control plane) within seconds, while its cached checks would live for the 60 s
//! safety-net TTL (`identity::SESSION_CHECK_TTL`) without the push.

use platform_tests::process::Platform;

use super::*;

/// Well under `identity::SESSION_CHECK_TTL`: only the push meets it.
const PUSHED_WITHIN: Duration = Duration::from_secs(5);

/// The status of `GET path` on the other instance as a bearer of `token`, on the tenant's host.
async fn status_on(other: &Platform, t: &TestTenant, token: &str, path: &str) -> u16 {
    other
        .request(reqwest::Method::GET, path)
        .header("host", t.host())
        .bearer_auth(token)
        .send()
        .await
        .expect("request to the other instance")
        .status()
        .as_u16()
}

/// Waits until the other instance answers `GET path` with `want`; how long it took.
async fn answers(
    other: &Platform,
    t: &TestTenant,
    token: &str,
    path: &str,
    want: u16,
) -> Option<Duration> {
    eventually(PUSHED_WITHIN, || async {
        status_on(other, t, token, path).await == want
    })
    .await
}

#[tokio::test]
async fn a_session_revoked_or_signed_out_on_one_instance_stops_working_on_another_within_seconds() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = app.user(&t, "owner@acme.test", "owner").await;
    let laptop = t.anon.login(&u.email, PASSWORD).await;
    laptop.assert_status(200);
    let laptop_access = laptop.str("access_token");
    let other = Platform::start(&app).await;
    // Both sessions work there, and the other instance now holds both checks in its cache.
    assert_eq!(
        status_on(&other, &t, &laptop_access, "/api/v1/me").await,
        200
    );
    assert_eq!(status_on(&other, &t, &u.access, "/api/v1/me").await, 200);

    // The laptop is signed out through this instance's API.
    let sid = decode_part(&laptop_access, 1)["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    u.api.revoke_session(&sid).await.assert_status(204);
    let took = answers(&other, &t, &laptop_access, "/api/v1/me", 401).await;
    assert!(
        took.is_some(),
        "the other instance still accepts the revoked session after {PUSHED_WITHIN:?}"
    );
    eprintln!("revocation reached the other instance in {took:?}");
    // Only that session: the user's other one still works there (and is cached again).
    assert_eq!(status_on(&other, &t, &u.access, "/api/v1/me").await, 200);

    // Logout through this instance ends the other session there too.
    t.anon.logout(&u.refresh).await.assert_status(204);
    let took = answers(&other, &t, &u.access, "/api/v1/me", 401).await;
    assert!(
        took.is_some(),
        "the other instance still accepts a signed-out session after {PUSHED_WITHIN:?}"
    );
    eprintln!("logout reached the other instance in {took:?}");
    other.stop().await;
    app.finish().await;
}

#[tokio::test]
async fn a_permission_taken_from_a_role_on_one_instance_is_refused_on_another_within_seconds() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let role = t
        .api
        .create_role("people", &["projects:read", "users:read"])
        .await;
    role.assert_status(201);
    // A user (their session's cached principal) and an API key (the cached role) hold the role.
    let u = app.user(&t, "people@acme.test", "people").await;
    let key = t
        .api
        .create_api_key(json!({"name": "people", "role": "people"}))
        .await;
    key.assert_status(201);
    let key = key.str("key");
    let other = Platform::start(&app).await;
    for token in [&u.access, &key] {
        assert_eq!(status_on(&other, &t, token, "/api/v1/users").await, 200);
    }

    // `users:read` is taken from the role through this instance's API.
    t.api
        .update_role(&role.str("id"), &["projects:read"])
        .await
        .assert_status(200);
    for (who, token) in [("the user", &u.access), ("the API key", &key)] {
        let took = answers(&other, &t, token, "/api/v1/users", 403).await;
        assert!(
            took.is_some(),
            "the other instance still lets {who} read users after {PUSHED_WITHIN:?}"
        );
        eprintln!("the role change reached the other instance ({who}) in {took:?}");
        // What the role still grants is still granted there.
        assert_eq!(status_on(&other, &t, token, "/api/v1/projects").await, 200);
    }
    other.stop().await;
    app.finish().await;
}
