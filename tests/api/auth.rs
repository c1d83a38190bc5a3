//! Auth: accounts, invitations, login, access tokens (JWT), refresh rotation and reuse detection,
//! sessions, revocation and role changes pushed to every instance, and the helpers other auth
//! tests share.

use std::time::Duration;

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use platform_tests::{ADMIN_TOKEN, Req, TestApp, TestResponse, TestTenant, eventually};
use serde_json::{Value, json};

pub use platform_tests::tenants::{as_user, public};
pub use platform_tests::{PASSWORD, TestUser, token_in};

mod accounts;
mod login;
mod push;
mod refresh;
mod sessions;
mod tokens;

/// The operator invites `email` with `role`; the invitee accepts; returns the signed-in user.
pub async fn user_with_role(app: &TestApp, t: &TestTenant, email: &str, role: &str) -> TestUser {
    app.user(t, email, role).await
}

/// A password login on the tenant's host.
pub async fn login(app: &TestApp, t: &TestTenant, email: &str, password: &str) -> TestResponse {
    app.send(
        Req::new(Method::POST, "/api/v1/auth/login")
            .host(t.host())
            .json(&json!({"email": email, "password": password})),
    )
    .await
}

async fn refresh(app: &TestApp, t: &TestTenant, token: &str) -> TestResponse {
    public(
        app,
        t,
        Method::POST,
        "/api/v1/auth/token/refresh",
        json!({"refresh_token": token}),
    )
    .await
}

fn decode_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("jwt part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}
