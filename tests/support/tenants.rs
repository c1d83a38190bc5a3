//! Tenants and users as tests meet them: a provisioned [`TestTenant`] with an API key, signed-in
//! [`TestUser`]s, each with a [`Client`] of the tenant API, and the mail the platform queued for
//! them (the outbox).

use axum::http::Method;
use serde_json::{Value, json};

use crate::app::TestApp;
use crate::client::Client;
use crate::requests::{Req, TestResponse};

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// A provisioned tenant with an API key.
#[derive(Clone, Debug)]
pub struct TestTenant {
    pub id: String,
    pub slug: String,
    pub key: String,
    /// The tenant API as its API key, on its host.
    pub api: Client,
    /// The tenant API with no credential, on its host (sign-up, login, SSO pages).
    pub anon: Client,
}

impl TestTenant {
    /// A tenant of `app` with this API key.
    #[must_use]
    pub fn new(app: &TestApp, id: &str, slug: &str, key: &str) -> Self {
        let host = format!("{slug}.localhost");
        Self {
            id: id.to_owned(),
            slug: slug.to_owned(),
            key: key.to_owned(),
            api: Client::new(app.router(), Some(host.clone()), Some(key.to_owned())),
            anon: Client::new(app.router(), Some(host), None),
        }
    }

    /// The same tenant, holding another of its API keys.
    #[must_use]
    pub fn with_key(&self, key: &str) -> Self {
        Self {
            key: key.to_owned(),
            api: self.as_bearer(key),
            ..self.clone()
        }
    }

    pub fn host(&self) -> String {
        format!("{}.localhost", self.slug)
    }

    /// The tenant API as a bearer of `token` (an access token or another key), on its host.
    #[must_use]
    pub fn as_bearer(&self, token: &str) -> Client {
        self.anon.with_bearer(Some(token))
    }
}

/// A signed-in user.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub access: String,
    pub refresh: String,
    /// The tenant API with this user's access token.
    pub api: Client,
}

impl TestApp {
    /// Provisions a tenant (`shared`, or `dedicated` on `server`) and gives it an API key.
    pub async fn tenant(&self, slug: &str, placement: &str, server: Option<&str>) -> TestTenant {
        let mut body = json!({ "slug": slug, "name": format!("Tenant {slug}"), "plan": "test", "placement": placement });
        if let Some(s) = server {
            body["db_server"] = Value::String(s.to_owned());
        }
        let operator = self.operator();
        let t = operator.create_tenant(body).await;
        t.assert_status(201);
        let id = t.str("id");
        let k = operator
            .create_api_key(&id, json!({"name": "test", "role": "admin"}))
            .await;
        k.assert_status(201);
        TestTenant::new(self, &id, slug, &k.str("key"))
    }

    /// The operator marks `domain` verified for the tenant: its SSO connections may then assert
    /// identities with addresses there.
    pub async fn verified_domain(&self, t: &TestTenant, domain: &str) {
        let r = self.operator().verify_sso_domain(&t.id, domain).await;
        r.assert_status(200);
        assert_eq!(r.body["verified"], true, "{}", r.text);
    }

    /// A tenant API request with the tenant's key and host.
    pub async fn api(
        &self,
        t: &TestTenant,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut r = Req::new(method, path).host(t.host()).bearer(&t.key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(r).await
    }

    /// The operator invites `email` with `role`; the invitee accepts; returns the signed-in user.
    pub async fn user(&self, t: &TestTenant, email: &str, role: &str) -> TestUser {
        let inv = self.operator().invite(&t.id, email, role).await;
        inv.assert_status(201);
        assert!(inv.str("url").contains(&inv.str("token")));
        let acc = t
            .anon
            .accept_invitation(&inv.str("token"), PASSWORD, "Test User")
            .await;
        acc.assert_status(201);
        let access = acc.str("access_token");
        let api = t.as_bearer(&access);
        let me = api.me().await;
        me.assert_status(200);
        assert_eq!(me.str("role"), role);
        TestUser {
            id: me.str("id"),
            email: email.to_owned(),
            access,
            refresh: acc.str("refresh_token"),
            api,
        }
    }

    /// The messages for `recipient` in the `email.*` jobs of the shared database (superuser
    /// view), withdrawn ones left out, their bodies opened with the tenant's key as the mail
    /// sender would.
    pub async fn outbox(&self, recipient: &str) -> Vec<String> {
        let rows = self
            .shared_owner()
            .await
            .query(
                "SELECT tenant_id, '', payload_sealed FROM jobs
                 WHERE kind LIKE 'email.%' AND payload->>'recipient' = $1 AND state <> 'cancelled'
                 ORDER BY id",
                &[&recipient],
            )
            .await
            .expect("email jobs");
        let mut bodies = Vec::new();
        for r in rows {
            let sealed: Option<Vec<u8>> = r.get(2);
            bodies.push(match sealed {
                None => r.get(1),
                Some(sealed) => {
                    let tenant = tenancy::ids::TenantId::from_uuid(r.get(0));
                    self.app
                        .tenancy
                        .keyring
                        .open_string(
                            tenancy::crypto::Scope::Tenant(tenant),
                            identity::users::OUTBOX_BODY_PURPOSE,
                            &sealed,
                        )
                        .await
                        .expect("open a sealed outbox message")
                        .to_string()
                }
            });
        }
        bodies
    }
}

/// The token after `label: ` in a message.
pub fn token_in(message: &str, label: &str) -> String {
    message
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{label}: ")))
        .unwrap_or_else(|| panic!("no {label} in {message}"))
        .to_owned()
}

/// A public (no credential) request on the tenant's host.
pub async fn public(
    app: &TestApp,
    t: &TestTenant,
    m: Method,
    path: &str,
    body: Value,
) -> TestResponse {
    app.send(Req::new(m, path).host(t.host()).json(&body)).await
}

/// A request with a user's access token on the tenant's host.
pub async fn as_user(
    app: &TestApp,
    t: &TestTenant,
    token: &str,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> TestResponse {
    let mut r = Req::new(m, path).host(t.host()).bearer(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    app.send(r).await
}
