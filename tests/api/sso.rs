//! SSO end to end against real identity providers started by the test (see
//! `tests/support/peers.rs`): a tenant admin configures connections through the API; users log
//! in through the provider and get the same tokens and sessions as password users, with roles
//! mapped from attributes; linking never takes over an account; "enforce SSO" stops password
//! logins except for owners. The SAML attack corpus is in `sso_attacks.rs`.

use axum::http::Method;
use platform_tests::peers::{Browser, OidcPeer};
use platform_tests::{Req, TestApp, TestResponse, TestTenant};
use serde_json::{Value, json};

use crate::auth::{PASSWORD, TestUser, as_user, login, public, user_with_role};

pub const CALLBACK: &str = "/sso/oidc/callback";

/// `GET /api/v1/me` with an access token.
pub async fn whoami(app: &TestApp, t: &TestTenant, access: &str) -> TestResponse {
    as_user(app, t, access, Method::GET, "/api/v1/me", None).await
}

/// The security events of `kind` recorded in the tenant's database (newest last).
pub async fn events(app: &TestApp, t: &TestTenant, kind: &str) -> Vec<Value> {
    let db = app.tenant_db(t).await;
    db.query(
        "SELECT detail FROM security_events WHERE tenant_id = $1::text::uuid AND kind = $2 ORDER BY id",
        &[&t.id, &kind],
    )
    .await
    .expect("events")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Asserts a refused SSO login: a 4xx problem and one more `sso.rejected` event with `reason`.
pub async fn assert_refused(
    app: &TestApp,
    t: &TestTenant,
    r: &TestResponse,
    before: usize,
    reason: &str,
) {
    assert!(
        r.status.is_client_error(),
        "expected a 4xx, got {}: {}",
        r.status,
        r.text
    );
    r.assert_problem(r.status.as_u16());
    assert_eq!(r.body["type"], "/problems/sso-refused", "{}", r.text);
    let ev = events(app, t, "sso.rejected").await;
    assert_eq!(ev.len(), before + 1, "one new security event: {ev:?}");
    assert_eq!(ev[before]["reason"], reason, "{:?}", ev[before]);
}

/// An OIDC connection on `t` to `peer` (client `platform` / `s3cret`), made by `admin`.
async fn oidc_connection(
    app: &TestApp,
    t: &TestTenant,
    admin: &TestUser,
    peer: &OidcPeer,
) -> Value {
    let r = as_user(
        app,
        t,
        &admin.access,
        Method::POST,
        "/api/v1/sso/connections",
        Some(json!({
            "kind": "oidc",
            "name": "Corporate OIDC",
            "issuer": peer.issuer,
            "client_id": "platform",
            "client_secret": "s3cret-client-secret",
            "scopes": ["groups"],
            "role_attribute": "groups",
            "role_mapping": [{"value": "platform-admins", "role": "admin"}, {"value": "staff", "role": "member"}],
            "default_role": "viewer",
        })),
    )
    .await;
    r.assert_status(201);
    r.body.clone()
}

fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@acme.test", "email_verified": true, "name": "Alice", "groups": ["staff", "platform-admins"]},
        "bob": {"email": "bob@acme.test", "email_verified": false, "name": "Bob", "groups": []},
        "carol-unverified": {"email": "carol@acme.test", "email_verified": false, "name": "Carol"},
        "carol-verified": {"email": "carol@acme.test", "email_verified": true, "name": "Carol", "groups": ["staff"]},
    })
}

async fn peer_for(t: &TestTenant) -> OidcPeer {
    OidcPeer::start(
        json!([{
            "client_id": "platform",
            "client_secret": "s3cret-client-secret",
            "redirect_uris": [format!("https://{}{CALLBACK}", t.host())],
        }]),
        accounts(),
    )
    .await
}

/// Logs `account` in through the provider: our login route, the provider's pages, our callback.
async fn oidc_login(
    app: &TestApp,
    t: &TestTenant,
    conn: &str,
    account: &str,
) -> (TestResponse, String) {
    let start = app
        .send(Req::new(Method::GET, format!("/sso/oidc/login?connection={conn}")).host(t.host()))
        .await;
    start.assert_status(303);
    let to_idp = start.headers["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let back = Browser::new()
        .oidc_login(&to_idp, account, &format!("https://{}{CALLBACK}", t.host()))
        .await;
    let path = back
        .strip_prefix(&format!("https://{}", t.host()))
        .expect("our callback")
        .to_owned();
    (
        app.send(Req::new(Method::GET, &path).host(t.host())).await,
        path,
    )
}

#[tokio::test]
async fn oidc_login_through_a_real_provider_gives_password_grade_tokens_and_mapped_roles() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let peer = peer_for(&t).await;
    let conn = oidc_connection(&app, &t, &admin, &peer).await;
    // The secret went in and never comes back out; it is sealed in the database.
    assert!(!conn.to_string().contains("s3cret"), "{conn}");
    assert_eq!(conn["oidc"]["has_client_secret"], true);
    assert_eq!(
        conn["oidc"]["redirect_uri"],
        format!("https://acme.localhost{CALLBACK}")
    );
    let sealed: Vec<u8> = app
        .tenant_db(&t)
        .await
        .query_one("SELECT secret_sealed FROM sso_connections", &[])
        .await
        .expect("row")
        .get(0);
    assert!(!String::from_utf8_lossy(&sealed).contains("s3cret"));
    let id = conn["id"].as_str().expect("id").to_owned();

    // Alice: verified email, mapped to admin by her groups. Tokens like a password login's.
    let (r, callback) = oidc_login(&app, &t, &id, "alice").await;
    r.assert_status(200);
    assert_eq!(r.body["token_type"], "Bearer");
    let access = r.str("access_token");
    let me = whoami(&app, &t, &access).await;
    me.assert_status(200);
    assert_eq!(me.str("email"), "alice@acme.test");
    assert_eq!(me.str("role"), "admin");
    assert_eq!(me.body["email_verified"], true);
    let sessions = as_user(&app, &t, &access, Method::GET, "/api/v1/me/sessions", None).await;
    sessions.assert_status(200);
    assert_eq!(
        sessions.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        sessions.text
    );
    let refreshed = public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/token/refresh",
        json!({"refresh_token": r.str("refresh_token")}),
    )
    .await;
    refreshed.assert_status(200);
    // An SSO-made account has no password.
    login(&app, &t, "alice@acme.test", PASSWORD)
        .await
        .assert_status(401);

    // The same callback again: the state is single-use.
    let before = events(&app, &t, "sso.rejected").await.len();
    let again = app
        .send(Req::new(Method::GET, &callback).host(t.host()))
        .await;
    assert_refused(&app, &t, &again, before, "replay").await;
    // A forged state is unknown.
    let forged = app
        .send(Req::new(Method::GET, format!("{CALLBACK}?code=abc&state=forged")).host(t.host()))
        .await;
    assert_refused(&app, &t, &forged, before + 1, "unknown_state").await;

    // Bob: no group maps, so the connection's default role; unverified email stays unverified.
    let (r, _) = oidc_login(&app, &t, &id, "bob").await;
    r.assert_status(200);
    let me = whoami(&app, &t, &r.str("access_token")).await;
    assert_eq!(me.str("role"), "viewer");
    assert_eq!(me.body["email_verified"], false);
    assert_eq!(events(&app, &t, "sso.login").await.len(), 2);
    app.finish().await;
}

#[tokio::test]
async fn an_identity_links_to_an_existing_account_only_on_a_verified_email() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let carol = user_with_role(&app, &t, "carol@acme.test", "member").await;
    let peer = peer_for(&t).await;
    let conn = oidc_connection(&app, &t, &admin, &peer).await;
    let id = conn["id"].as_str().expect("id").to_owned();

    let before = events(&app, &t, "sso.rejected").await.len();
    let (r, _) = oidc_login(&app, &t, &id, "carol-unverified").await;
    r.assert_status(403);
    assert_refused(&app, &t, &r, before, "link_refused").await;

    let (r, _) = oidc_login(&app, &t, &id, "carol-verified").await;
    r.assert_status(200);
    let me = whoami(&app, &t, &r.str("access_token")).await;
    assert_eq!(me.str("id"), carol.id, "the same account, linked");
    // Her password still works (SSO is not enforced here).
    login(&app, &t, "carol@acme.test", PASSWORD)
        .await
        .assert_status(200);
    app.finish().await;
}

#[tokio::test]
async fn enforcing_sso_refuses_password_login_except_for_owners() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let owner = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let member = user_with_role(&app, &t, "member@acme.test", "member").await;
    // Not without a connection.
    as_user(
        &app,
        &t,
        &owner.access,
        Method::PUT,
        "/api/v1/sso/settings",
        Some(json!({"enforce_sso": true})),
    )
    .await
    .assert_problem(422);
    let peer = peer_for(&t).await;
    oidc_connection(&app, &t, &owner, &peer).await;
    // Members may not change it.
    as_user(
        &app,
        &t,
        &member.access,
        Method::PUT,
        "/api/v1/sso/settings",
        Some(json!({"enforce_sso": true})),
    )
    .await
    .assert_problem(403);
    as_user(
        &app,
        &t,
        &owner.access,
        Method::PUT,
        "/api/v1/sso/settings",
        Some(json!({"enforce_sso": true})),
    )
    .await
    .assert_status(200);
    login(&app, &t, &member.email, PASSWORD)
        .await
        .assert_problem(403);
    login(&app, &t, &owner.email, PASSWORD)
        .await
        .assert_status(200);
    // A wrong password is still a 401 (nothing learned about the account).
    login(&app, &t, &member.email, "wrong password")
        .await
        .assert_status(401);
    app.finish().await;
}

#[tokio::test]
async fn connections_are_validated_and_tenant_scoped() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let other = app.tenant("globex", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let post = |body: Value| {
        as_user(
            &app,
            &t,
            &admin.access,
            Method::POST,
            "/api/v1/sso/connections",
            Some(body),
        )
    };
    post(json!({"kind": "saml", "name": "x", "idp_metadata_xml": "<not-metadata/>"}))
        .await
        .assert_problem(422);
    post(json!({"kind": "oidc", "name": "x", "issuer": "http://evil.example", "client_id": "c"}))
        .await
        .assert_problem(422);
    // (An issuer the test policy accepts, so the role is what is refused.)
    let owner = post(json!({"kind": "oidc", "name": "x", "issuer": "http://127.0.0.1:9", "client_id": "c", "default_role": "owner"}))
        .await;
    owner.assert_problem(422);
    assert!(owner.text.contains("owner"), "{}", owner.text);
    post(json!({"kind": "ldap", "name": "x"}))
        .await
        .assert_problem(422);
    let google = post(
        json!({"kind": "google", "name": "Google", "client_id": "g.apps", "client_secret": "x"}),
    )
    .await;
    google.assert_status(201);
    assert_eq!(google.body["oidc"]["issuer"], "https://accounts.google.com");
    assert_eq!(google.body["oidc"]["preset"], "google");
    let id = google.str("id");
    // Another tenant cannot see it, even with a valid key of its own.
    app.api(
        &other,
        Method::GET,
        &format!("/api/v1/sso/connections/{id}"),
        None,
    )
    .await
    .assert_problem(404);
    let patched = as_user(
        &app,
        &t,
        &admin.access,
        Method::PATCH,
        &format!("/api/v1/sso/connections/{id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    patched.assert_status(200);
    assert_eq!(patched.body["enabled"], false);
    // A disabled connection cannot start a login.
    let r = app
        .send(Req::new(Method::GET, format!("/sso/oidc/login?connection={id}")).host(t.host()))
        .await;
    r.assert_problem(403);
    as_user(
        &app,
        &t,
        &admin.access,
        Method::DELETE,
        &format!("/api/v1/sso/connections/{id}"),
        None,
    )
    .await
    .assert_status(204);
    app.finish().await;
}

#[tokio::test]
async fn github_login_takes_the_primary_verified_email_only() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let callback = format!("https://{}/sso/github/callback", t.host());
    // oidc-provider as a GitHub Enterprise Server (see tests/peers/oidc/server.mjs).
    let peer = OidcPeer::start(
        json!([{
            "client_id": "gh-app",
            "client_secret": "gh-secret",
            "redirect_uris": [callback],
            "token_endpoint_auth_method": "client_secret_post",
        }]),
        json!({
            "octocat": {"github_id": 583_231, "name": "The Octocat", "github_emails": [
                {"email": "octo@private.test", "primary": false, "verified": true},
                {"email": "octocat@acme.test", "primary": true, "verified": true},
            ]},
            "unverified-cat": {"github_id": 2, "github_emails": [
                {"email": "cat@acme.test", "primary": true, "verified": false},
                {"email": "cat@other.test", "primary": false, "verified": true},
            ]},
        }),
    )
    .await;
    let conn = as_user(
        &app,
        &t,
        &admin.access,
        Method::POST,
        "/api/v1/sso/connections",
        Some(
            json!({"kind": "github", "name": "GitHub", "client_id": "gh-app",
                    "client_secret": "gh-secret", "github_base_url": peer.issuer}),
        ),
    )
    .await;
    conn.assert_status(201);
    assert_eq!(conn.body["github"]["redirect_uri"], callback.as_str());
    assert_eq!(
        conn.body["login_path"],
        format!("/sso/github/login?connection={}", conn.str("id"))
    );
    let login_as = |account: &'static str| {
        let (app, t, conn, callback) = (&app, &t, &conn, &callback);
        async move {
            let start = app
                .send(Req::new(Method::GET, conn.str("login_path")).host(t.host()))
                .await;
            start.assert_status(303);
            let to = start.headers["location"]
                .to_str()
                .expect("location")
                .to_owned();
            assert!(to.contains("/login/oauth/authorize?"), "{to}");
            let back = Browser::new().oidc_login(&to, account, callback).await;
            let path = back
                .strip_prefix(&format!("https://{}", t.host()))
                .expect("ours")
                .to_owned();
            app.send(Req::new(Method::GET, &path).host(t.host())).await
        }
    };
    let r = login_as("octocat").await;
    r.assert_status(200);
    let me = whoami(&app, &t, &r.str("access_token")).await;
    assert_eq!(me.str("email"), "octocat@acme.test");
    assert_eq!(me.str("name"), "The Octocat");
    assert_eq!(me.body["email_verified"], true);

    let before = events(&app, &t, "sso.rejected").await.len();
    let r = login_as("unverified-cat").await;
    assert_refused(&app, &t, &r, before, "no_email").await;
    app.finish().await;
}

#[tokio::test]
async fn discovery_is_cached_and_fetched_again_when_the_provider_rotates_its_keys() {
    let app = TestApp::spawn().await;
    let t = app.tenant("rotate", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@rotate.test", "admin").await;
    let mut peer = peer_for(&t).await;
    let conn = oidc_connection(&app, &t, &admin, &peer).await;
    let id = conn["id"].as_str().expect("id").to_owned();
    let (discovery_before, jwks_before) = peer.fetches().await;
    for _ in 0..3 {
        let (r, _) = oidc_login(&app, &t, &id, "alice").await;
        r.assert_status(200);
    }
    let (discovery, jwks) = peer.fetches().await;
    assert_eq!(
        (discovery - discovery_before, jwks - jwks_before),
        (1, 1),
        "three logins, one discovery document and one key set"
    );
    // The provider restarts with a new signing key: the cached keys no longer verify its
    // id_tokens, so the callback fetches the document again, once, and the login succeeds.
    peer.restart().await;
    let (discovery_before, jwks_before) = peer.fetches().await;
    let (r, _) = oidc_login(&app, &t, &id, "alice").await;
    r.assert_status(200);
    let (discovery, jwks) = peer.fetches().await;
    assert_eq!((discovery - discovery_before, jwks - jwks_before), (1, 1));
    app.finish().await;
}

#[tokio::test]
async fn tenant_configured_urls_cannot_reach_private_networks_by_default() {
    // The production default: no private or loopback addresses for tenant-configured URLs.
    let app = TestApp::spawn_with(&[("PLATFORM_SSO_ALLOW_PRIVATE_NETWORKS", "false")]).await;
    let t = app.tenant("ssrf", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@ssrf.test", "admin").await;
    // Loopback (where the other tests' identity providers listen), the cloud metadata endpoint,
    // private networks, by address, by a mapped IPv6 address and by name.
    for body in [
        json!({"kind": "oidc", "name": "a", "issuer": "http://127.0.0.1:8080", "client_id": "c"}),
        json!({"kind": "oidc", "name": "b", "issuer": "https://169.254.169.254/latest", "client_id": "c"}),
        json!({"kind": "oidc", "name": "c", "issuer": "https://[::ffff:10.0.0.1]/", "client_id": "c"}),
        json!({"kind": "oidc", "name": "d", "issuer": "https://localhost/", "client_id": "c"}),
        json!({"kind": "saml", "name": "e", "idp_metadata_url": "http://localhost:8080/metadata"}),
        json!({"kind": "saml", "name": "f", "idp_metadata_url": "https://127.0.0.1:5432/"}),
        json!({"kind": "github", "name": "g", "client_id": "c", "client_secret": "s",
               "github_base_url": "https://192.168.0.10"}),
    ] {
        let r = as_user(
            &app,
            &t,
            &admin.access,
            Method::POST,
            "/api/v1/sso/connections",
            Some(body.clone()),
        )
        .await;
        r.assert_problem(422);
        assert!(
            r.text.contains("non-public address") || r.text.contains("must be an https URL"),
            "{body}: {}",
            r.text
        );
    }
    // Nothing was stored.
    let list = as_user(
        &app,
        &t,
        &admin.access,
        Method::GET,
        "/api/v1/sso/connections",
        None,
    )
    .await;
    list.assert_status(200);
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(0),
        "{}",
        list.text
    );
    app.finish().await;
}
