//! A typed client of the tenant API, as one caller (anonymous, an API key or a user's token) on
//! one tenant's host: one method per endpoint, each returning the status and the parsed body, so
//! a test reads like the API. The verb helpers (`get`, `post`, ...) and [`Client::req`] stay for
//! routes and inputs that have no method here (malformed bodies, extra headers).

use axum::Router;
use axum::http::Method;
use serde_json::{Value, json};

use crate::requests::{Req, TestResponse};

/// Requests as one caller on one host.
#[derive(Clone)]
pub struct Client {
    router: Router,
    host: Option<String>,
    bearer: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("credential", &self.bearer.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    #[must_use]
    pub fn new(router: &Router, host: Option<String>, bearer: Option<String>) -> Self {
        Self {
            router: router.clone(),
            host,
            bearer,
        }
    }

    /// The same caller with another credential (`None`: anonymous).
    #[must_use]
    pub fn with_bearer(&self, bearer: Option<&str>) -> Self {
        Self {
            bearer: bearer.map(str::to_owned),
            ..self.clone()
        }
    }

    /// A raw request with this caller's host and credential, to finish by hand.
    #[must_use]
    pub fn req(&self, method: Method, path: &str) -> Req {
        let mut r = Req::new(method, path);
        if let Some(h) = &self.host {
            r = r.host(h.clone());
        }
        if let Some(b) = &self.bearer {
            r = r.bearer(b.clone());
        }
        r
    }

    pub async fn send(&self, req: Req) -> TestResponse {
        req.send(&self.router).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(r).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> TestResponse {
        self.call(Method::POST, path, Some(body)).await
    }
    /// A POST without a body.
    pub async fn post_empty(&self, path: &str) -> TestResponse {
        self.call(Method::POST, path, None).await
    }
    pub async fn put(&self, path: &str, body: Value) -> TestResponse {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> TestResponse {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> TestResponse {
        self.call(Method::DELETE, path, None).await
    }

    // Authentication (anonymous callers).

    pub async fn signup(&self, email: &str, password: &str, name: &str) -> TestResponse {
        self.post(
            "/api/v1/auth/signup",
            json!({"email": email, "password": password, "name": name}),
        )
        .await
    }
    pub async fn login(&self, email: &str, password: &str) -> TestResponse {
        self.post(
            "/api/v1/auth/login",
            json!({"email": email, "password": password}),
        )
        .await
    }
    /// The second login step: a TOTP or recovery code for the first step's `mfa_token`.
    pub async fn verify_mfa(&self, mfa_token: &str, code: &str) -> TestResponse {
        self.post(
            "/api/v1/auth/mfa/verify",
            json!({"mfa_token": mfa_token, "code": code}),
        )
        .await
    }
    pub async fn refresh(&self, refresh_token: &str) -> TestResponse {
        self.post(
            "/api/v1/auth/token/refresh",
            json!({"refresh_token": refresh_token}),
        )
        .await
    }
    pub async fn logout(&self, refresh_token: &str) -> TestResponse {
        self.post(
            "/api/v1/auth/logout",
            json!({"refresh_token": refresh_token}),
        )
        .await
    }
    pub async fn accept_invitation(&self, token: &str, password: &str, name: &str) -> TestResponse {
        self.post(
            "/api/v1/auth/invitations/accept",
            json!({"token": token, "password": password, "name": name}),
        )
        .await
    }
    pub async fn verify_email(&self, token: &str) -> TestResponse {
        self.post("/api/v1/auth/email/verify", json!({"token": token}))
            .await
    }
    pub async fn forgot_password(&self, email: &str) -> TestResponse {
        self.post("/api/v1/auth/password/forgot", json!({"email": email}))
            .await
    }
    pub async fn reset_password(&self, token: &str, password: &str) -> TestResponse {
        self.post(
            "/api/v1/auth/password/reset",
            json!({"token": token, "password": password}),
        )
        .await
    }

    // The signed-in user.

    pub async fn me(&self) -> TestResponse {
        self.get("/api/v1/me").await
    }
    pub async fn sessions(&self) -> TestResponse {
        self.get("/api/v1/me/sessions").await
    }
    pub async fn revoke_session(&self, session_id: &str) -> TestResponse {
        self.delete(&format!("/api/v1/me/sessions/{session_id}"))
            .await
    }
    pub async fn revoke_other_sessions(&self) -> TestResponse {
        self.post_empty("/api/v1/me/sessions/revoke-others").await
    }
    pub async fn request_email_verification(&self) -> TestResponse {
        self.post_empty("/api/v1/me/email/verification").await
    }
    pub async fn enrol_totp(&self) -> TestResponse {
        self.post_empty("/api/v1/me/mfa/totp").await
    }
    pub async fn confirm_totp(&self, code: &str) -> TestResponse {
        self.post("/api/v1/me/mfa/totp/confirm", json!({"code": code}))
            .await
    }
    pub async fn disable_totp(&self, code: &str) -> TestResponse {
        self.call(
            Method::DELETE,
            "/api/v1/me/mfa/totp",
            Some(json!({"code": code})),
        )
        .await
    }

    // Members, invitations, roles, API keys, audit.

    pub async fn users(&self) -> TestResponse {
        self.get("/api/v1/users").await
    }
    pub async fn set_role(&self, user_id: &str, role: &str) -> TestResponse {
        self.patch(&format!("/api/v1/users/{user_id}"), json!({"role": role}))
            .await
    }
    pub async fn revoke_user_sessions(&self, user_id: &str) -> TestResponse {
        self.delete(&format!("/api/v1/users/{user_id}/sessions"))
            .await
    }
    pub async fn invite(&self, email: &str, role: &str) -> TestResponse {
        self.post("/api/v1/invitations", json!({"email": email, "role": role}))
            .await
    }
    pub async fn roles(&self) -> TestResponse {
        self.get("/api/v1/roles").await
    }
    pub async fn create_role(&self, name: &str, permissions: &[&str]) -> TestResponse {
        self.post(
            "/api/v1/roles",
            json!({"name": name, "permissions": permissions}),
        )
        .await
    }
    pub async fn update_role(&self, role_id: &str, permissions: &[&str]) -> TestResponse {
        self.patch(
            &format!("/api/v1/roles/{role_id}"),
            json!({"permissions": permissions}),
        )
        .await
    }
    pub async fn delete_role(&self, role_id: &str) -> TestResponse {
        self.delete(&format!("/api/v1/roles/{role_id}")).await
    }
    /// `body`: `name` and optionally `role`.
    pub async fn create_api_key(&self, body: Value) -> TestResponse {
        self.post("/api/v1/api-keys", body).await
    }
    pub async fn api_keys(&self) -> TestResponse {
        self.get("/api/v1/api-keys").await
    }
    pub async fn revoke_api_key(&self, key_id: &str) -> TestResponse {
        self.delete(&format!("/api/v1/api-keys/{key_id}")).await
    }
    /// `query`: the query string without `?` (filters, `limit`, `cursor`).
    pub async fn audit_events(&self, query: &str) -> TestResponse {
        self.get(&with_query("/api/v1/audit-events", query)).await
    }

    // The reference domain: projects, their members and tasks.

    pub async fn create_project(&self, name: &str) -> TestResponse {
        self.post("/api/v1/projects", json!({"name": name})).await
    }
    pub async fn projects(&self) -> TestResponse {
        self.get("/api/v1/projects").await
    }
    pub async fn project(&self, id: &str) -> TestResponse {
        self.get(&format!("/api/v1/projects/{id}")).await
    }
    pub async fn rename_project(&self, id: &str, name: &str) -> TestResponse {
        self.patch(&format!("/api/v1/projects/{id}"), json!({"name": name}))
            .await
    }
    pub async fn delete_project(&self, id: &str) -> TestResponse {
        self.delete(&format!("/api/v1/projects/{id}")).await
    }
    pub async fn members(&self, project: &str) -> TestResponse {
        self.get(&format!("/api/v1/projects/{project}/members"))
            .await
    }
    pub async fn add_member(&self, project: &str, user_id: &str, role: &str) -> TestResponse {
        self.post(
            &format!("/api/v1/projects/{project}/members"),
            json!({"user_id": user_id, "role": role}),
        )
        .await
    }
    pub async fn set_member_role(&self, project: &str, user_id: &str, role: &str) -> TestResponse {
        self.patch(
            &format!("/api/v1/projects/{project}/members/{user_id}"),
            json!({"role": role}),
        )
        .await
    }
    pub async fn remove_member(&self, project: &str, user_id: &str) -> TestResponse {
        self.delete(&format!("/api/v1/projects/{project}/members/{user_id}"))
            .await
    }
    pub async fn create_task(&self, project: &str, title: &str) -> TestResponse {
        self.post(
            &format!("/api/v1/projects/{project}/tasks"),
            json!({"title": title}),
        )
        .await
    }
    pub async fn tasks(&self, project: &str) -> TestResponse {
        self.get(&format!("/api/v1/projects/{project}/tasks")).await
    }
    pub async fn task(&self, project: &str, task: &str) -> TestResponse {
        self.get(&format!("/api/v1/projects/{project}/tasks/{task}"))
            .await
    }
    pub async fn update_task(&self, project: &str, task: &str, body: Value) -> TestResponse {
        self.patch(&format!("/api/v1/projects/{project}/tasks/{task}"), body)
            .await
    }
    pub async fn delete_task(&self, project: &str, task: &str) -> TestResponse {
        self.delete(&format!("/api/v1/projects/{project}/tasks/{task}"))
            .await
    }

    // Single sign-on configuration.

    pub async fn create_sso_connection(&self, body: Value) -> TestResponse {
        self.post("/api/v1/sso/connections", body).await
    }
    pub async fn update_sso_connection(&self, id: &str, body: Value) -> TestResponse {
        self.patch(&format!("/api/v1/sso/connections/{id}"), body)
            .await
    }
    pub async fn delete_sso_connection(&self, id: &str) -> TestResponse {
        self.delete(&format!("/api/v1/sso/connections/{id}")).await
    }
    pub async fn put_sso_settings(&self, body: Value) -> TestResponse {
        self.put("/api/v1/sso/settings", body).await
    }
    pub async fn claim_sso_domain(&self, domain: &str) -> TestResponse {
        self.post("/api/v1/sso/domains", json!({ "domain": domain }))
            .await
    }
    pub async fn check_sso_domain(&self, domain: &str) -> TestResponse {
        self.post_empty(&format!("/api/v1/sso/domains/{domain}/check"))
            .await
    }
    pub async fn sso_domains(&self) -> TestResponse {
        self.get("/api/v1/sso/domains").await
    }
    pub async fn remove_sso_domain(&self, domain: &str) -> TestResponse {
        self.delete(&format!("/api/v1/sso/domains/{domain}")).await
    }
    pub async fn link_sso_identity(&self, conn: &str, subject: &str, user: &str) -> TestResponse {
        self.post(
            &format!("/api/v1/sso/connections/{conn}/links"),
            json!({ "subject": subject, "user_id": user }),
        )
        .await
    }
}

/// `path` with `query` (without `?`; none when empty).
pub(crate) fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}
