//! SSO end to end against real identity providers started by the test (see
//! `tests/support/peers.rs`): a tenant admin configures connections through the API; users log
//! in through the provider and get the same tokens and sessions as password users, with roles
//! mapped from attributes; linking never takes over an account; "enforce SSO" stops password
//! logins except for owners. SAML, with its attack corpus, is in `sso/saml.rs`.

use axum::http::Method;
use platform_tests::peers::{Browser, OidcPeer};
use platform_tests::{Req, TestApp, TestResponse, TestTenant};
use serde_json::{Value, json};

use crate::auth::{PASSWORD, TestUser, as_user, login, public, user_with_role};

mod connections;
mod github;
mod oidc;
mod policy;
mod saml;

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
pub(crate) async fn oidc_connection(
    app: &TestApp,
    t: &TestTenant,
    admin: &TestUser,
    peer: &OidcPeer,
) -> Value {
    // The provider's accounts are at acme.test: the tenant holds that domain verified.
    app.verified_domain(t, "acme.test").await;
    oidc_connection_unverified(app, t, admin, peer).await
}

/// [`oidc_connection`] without verifying any domain for the tenant.
pub(crate) async fn oidc_connection_unverified(
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
        "boss-verified": {"email": "boss@acme.test", "email_verified": true, "name": "Boss"},
        "erin-verified": {"email": "erin@acme.test", "email_verified": true, "name": "Erin"},
    })
}

pub(crate) async fn peer_for(t: &TestTenant) -> OidcPeer {
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
pub(crate) async fn oidc_login(
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
