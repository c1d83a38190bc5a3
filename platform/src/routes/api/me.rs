//! `/api/v1/me`: the signed-in user's account, sessions (devices) and second factor.

pub mod email;
pub mod mfa;
pub mod sessions;

use identity::Identity;

use axum::Json;
use axum::extract::State;
use identity::users;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::Authenticated;
use crate::routes::ts;

/// The signed-in user.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    pub session_id: Uuid,
    pub created_at: String,
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "me",
    responses((status = 200, body = Me), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn show(auth: Authenticated, State(t): State<Identity>) -> ApiResult<Json<Me>> {
    let (id, session) = auth.user()?;
    let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
    let u = users::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    tx.commit().await?;
    Ok(Json(Me {
        id: u.id.as_uuid(),
        tenant_id: auth.tenant.id.as_uuid(),
        email: u.email,
        name: u.name,
        role: u.role,
        permissions: auth
            .grants
            .permissions
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        email_verified: u.email_verified,
        mfa_enabled: u.mfa_enabled,
        session_id: session.as_uuid(),
        created_at: ts(u.created_at),
    }))
}
