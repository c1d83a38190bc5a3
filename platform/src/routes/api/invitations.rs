//! `POST /api/v1/invitations`: a tenant member with `members:manage` (and a verified address)
//! invites someone with a role. The operator's variant (the first owner) shares the logic.

use identity::Identity;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use identity::users;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::{Authenticated, Principal, TenantDb};
use crate::routes::shared::grantor;
use crate::routes::shared::invitations::{Invitation, InviteBody, create};

/// Invite someone to the tenant.
#[utoipa::path(post, path = "/api/v1/invitations", tag = "members", request_body = InviteBody,
    responses((status = 201, body = Invitation), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn invite(
    db: TenantDb,
    auth: Authenticated,
    State(t): State<Identity>,
    ApiJson(body): ApiJson<InviteBody>,
) -> ApiResult<(StatusCode, Json<Invitation>)> {
    let invited_by = match auth.principal {
        Principal::User { id, .. } => {
            let mut tx = db.begin().await?;
            let verified = users::get(&mut tx, id)
                .await?
                .is_some_and(|u| u.email_verified);
            tx.commit().await?;
            if !verified {
                return Err(ApiError::forbidden(
                    "verify your email address before inviting anyone",
                ));
            }
            Some(id)
        }
        Principal::ApiKey { .. } => None,
    };
    let inv = create(&t, &auth.tenant, &body, invited_by, grantor(&auth)).await?;
    Ok((StatusCode::CREATED, Json(inv)))
}
