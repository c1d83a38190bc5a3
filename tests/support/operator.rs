//! The operator API (`/admin/v1`) as the platform's operator: one method per endpoint.

use axum::http::Method;
use serde_json::{Value, json};

use crate::app::{ADMIN_TOKEN, TestApp};
use crate::client::{Client, with_query};
use crate::requests::TestResponse;

/// The operator API with the admin token.
#[derive(Clone, Debug)]
pub struct Operator {
    pub client: Client,
}

impl TestApp {
    /// The operator of this instance.
    #[must_use]
    pub fn operator(&self) -> Operator {
        Operator {
            client: Client::new(self.router(), None, Some(ADMIN_TOKEN.to_owned())),
        }
    }

    /// An operator request.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        let mut r = self.operator().client.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(r).await
    }
}

impl Operator {
    /// `PUT /admin/v1/tenants/{tenant}/sso-domains/{domain}`: marks an email domain verified.
    pub async fn verify_sso_domain(&self, tenant: &str, domain: &str) -> TestResponse {
        self.client
            .put(
                &format!("/admin/v1/tenants/{tenant}/sso-domains/{domain}"),
                json!({}),
            )
            .await
    }
    /// `body`: `slug`, `name`, `plan`, optionally `placement` and `db_server`.
    pub async fn create_tenant(&self, body: Value) -> TestResponse {
        self.client.post("/admin/v1/tenants", body).await
    }
    pub async fn tenant(&self, tenant: &str) -> TestResponse {
        self.client
            .get(&format!("/admin/v1/tenants/{tenant}"))
            .await
    }
    /// `query`: the query string without `?`.
    pub async fn tenants(&self, query: &str) -> TestResponse {
        self.client
            .get(&with_query("/admin/v1/tenants", query))
            .await
    }
    pub async fn patch_tenant(&self, tenant: &str, body: Value) -> TestResponse {
        self.client
            .patch(&format!("/admin/v1/tenants/{tenant}"), body)
            .await
    }
    pub async fn delete_tenant(&self, tenant: &str) -> TestResponse {
        self.client
            .delete(&format!("/admin/v1/tenants/{tenant}"))
            .await
    }
    pub async fn add_domain(&self, tenant: &str, domain: &str) -> TestResponse {
        self.client
            .post(
                &format!("/admin/v1/tenants/{tenant}/domains"),
                json!({"domain": domain}),
            )
            .await
    }
    pub async fn remove_domain(&self, tenant: &str, domain: &str) -> TestResponse {
        self.client
            .delete(&format!("/admin/v1/tenants/{tenant}/domains/{domain}"))
            .await
    }
    /// `body`: `name` and optionally `role`.
    pub async fn create_api_key(&self, tenant: &str, body: Value) -> TestResponse {
        self.client
            .post(&format!("/admin/v1/tenants/{tenant}/api-keys"), body)
            .await
    }
    pub async fn revoke_api_key(&self, tenant: &str, key_id: &str) -> TestResponse {
        self.client
            .delete(&format!("/admin/v1/tenants/{tenant}/api-keys/{key_id}"))
            .await
    }
    pub async fn register_db_server(&self, name: &str, url: &str) -> TestResponse {
        self.client
            .post("/admin/v1/db-servers", json!({"name": name, "url": url}))
            .await
    }
    /// `body`: `placement` and optionally `db_server`.
    pub async fn change_placement(&self, tenant: &str, body: Value) -> TestResponse {
        self.client
            .post(&format!("/admin/v1/tenants/{tenant}/placement"), body)
            .await
    }
    pub async fn operation(&self, id: &str) -> TestResponse {
        self.client.get(&format!("/admin/v1/operations/{id}")).await
    }
    pub async fn cancel_operation(&self, id: &str) -> TestResponse {
        self.client
            .post_empty(&format!("/admin/v1/operations/{id}/cancel"))
            .await
    }
    pub async fn invite(&self, tenant: &str, email: &str, role: &str) -> TestResponse {
        self.client
            .post(
                &format!("/admin/v1/tenants/{tenant}/invitations"),
                json!({"email": email, "role": role}),
            )
            .await
    }
    pub async fn revoke_user_sessions(&self, tenant: &str, user_id: &str) -> TestResponse {
        self.client
            .delete(&format!(
                "/admin/v1/tenants/{tenant}/users/{user_id}/sessions"
            ))
            .await
    }
    pub async fn rotate_jwt_keys(&self) -> TestResponse {
        self.client.post_empty("/admin/v1/jwt-keys/rotate").await
    }
    pub async fn put_plan(&self, plan: &str, body: Value) -> TestResponse {
        self.client
            .put(&format!("/admin/v1/plans/{plan}"), body)
            .await
    }
    /// `query`: the query string without `?`.
    pub async fn audit_events(&self, query: &str) -> TestResponse {
        self.client
            .get(&with_query("/admin/v1/audit-events", query))
            .await
    }
}
