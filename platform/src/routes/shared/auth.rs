//! What the password and SSO logins share: the token response, the caller's client information,
//! and the verification message sent at sign-up and on an address change.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use identity::Identity;
use identity::onetime::{self, Purpose};
use identity::sessions::Tokens;
use identity::users;
use serde::Serialize;
use tenancy::catalog::Tenant;
use tenancy::dataplane::TenantTx;
use tenancy::ids::{EmailAddress, UserId};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};

/// Tokens issued by login, MFA verification and refresh.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<Tokens> for TokenResponse {
    fn from(t: Tokens) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            token_type: "Bearer".into(),
            expires_in: t.expires_in,
        }
    }
}

/// The caller's user agent and address (for sessions and throttling).
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub user_agent: Option<String>,
    pub ip: Option<IpAddr>,
}

impl ClientInfo {
    pub(crate) fn ip_text(&self) -> Option<String> {
        self.ip.map(|i| i.to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            user_agent: parts
                .headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            // Worked out once per request (socket peer, or X-Forwarded-For behind a trusted
            // proxy); the socket peer when the route layer did not run.
            ip: match parts.extensions.get::<crate::audit::ClientIp>() {
                Some(c) => c.0,
                None => parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip()),
            },
        })
    }
}

/// Writes a verification message for `email` to the outbox.
pub(crate) async fn send_verification(
    tx: &mut TenantTx,
    tenant: &Tenant,
    t: &Identity,
    user: UserId,
    email: &EmailAddress,
) -> ApiResult<()> {
    let token = onetime::create(tx, user, Purpose::VerifyEmail, serde_json::json!({})).await?;
    let link = format!("{}/verify-email?token={token}", t.base_url(tenant));
    users::outbox(
        tx,
        t.auth.keyring(),
        users::Message {
            kind: "verify_email",
            recipient: email,
            subject: "Confirm your email address",
            body: &format!("Confirm your address: {link}\nverification token: {token}\n"),
            lifetime: Purpose::VerifyEmail.ttl(),
        },
    )
    .await?;
    Ok(())
}
