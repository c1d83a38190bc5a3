//! `/api/v1/me/sessions`: the user's signed-in devices; sign one out, or every other one.

use identity::Identity;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tenancy::ids::SessionId;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiPath;
use crate::extract::tenant::Authenticated;
use crate::routes::ts;

/// A session (device).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: String,
    pub last_seen_at: String,
    /// The session of this request.
    pub current: bool,
}

/// The user's sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionView>,
}

/// The user's live sessions.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "me",
    responses((status = 200, body = SessionList), (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(auth: Authenticated, State(t): State<Identity>) -> ApiResult<Json<SessionList>> {
    let (user, current) = auth.user()?;
    let items = t
        .auth
        .sessions(&t.dataplane, &auth.tenant, user)
        .await?
        .into_iter()
        .map(|s| SessionView {
            id: s.id.as_uuid(),
            user_agent: s.user_agent,
            ip: s.ip,
            created_at: ts(s.created_at),
            last_seen_at: ts(s.last_seen_at),
            current: s.id == current,
        })
        .collect();
    Ok(Json(SessionList { items }))
}

/// Sign one of the user's sessions out.
#[utoipa::path(delete, path = "/api/v1/me/sessions/{session_id}", tag = "me",
    params(("session_id" = Uuid, Path)),
    responses((status = 204, description = "Signed out"), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn revoke(
    auth: Authenticated,
    State(t): State<Identity>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let (user, _) = auth.user()?;
    let n = t
        .auth
        .revoke_sessions(
            &t.dataplane,
            &auth.tenant,
            user,
            Some(SessionId::from_uuid(id)),
            None,
            "user",
        )
        .await?;
    if n == 0 {
        return Err(ApiError::not_found("no such live session"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Sign out everywhere else: every session but this one ends.
#[utoipa::path(post, path = "/api/v1/me/sessions/revoke-others", tag = "me",
    responses((status = 200, body = serde_json::Value, description = "`{\"revoked\": n}`")),
    security(("bearer" = [])))]
pub async fn revoke_others(
    auth: Authenticated,
    State(t): State<Identity>,
) -> ApiResult<Json<serde_json::Value>> {
    let (user, current) = auth.user()?;
    let n = t
        .auth
        .revoke_sessions(
            &t.dataplane,
            &auth.tenant,
            user,
            None,
            Some(current),
            "user_others",
        )
        .await?;
    Ok(Json(serde_json::json!({ "revoked": n })))
}
