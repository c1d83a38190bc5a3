//! `POST /api/v1/invitations`: a tenant member with `members:manage` (and a verified address)
//! invites someone with a role. The operator's variant (the first owner) shares the logic.

use identity::Identity;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use identity::users;
use serde::{Deserialize, Serialize};
use tenancy::catalog::Tenant;
use tenancy::ids::UserId;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::{Authenticated, Principal};
use crate::routes::ts;

/// Body of an invitation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    pub email: String,
    pub role: String,
}

/// An invitation, with its token (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    pub token: String,
    pub url: String,
    pub expires_at: String,
}

/// Creates an invitation and writes its message to the outbox.
pub(crate) async fn create(
    t: &Identity,
    tenant: &Tenant,
    body: &InviteBody,
    invited_by: Option<UserId>,
    may_grant_owner: bool,
) -> ApiResult<Invitation> {
    let email = users::parse_email(&body.email)?;
    if body.role == "owner" && !may_grant_owner {
        return Err(ApiError::forbidden("only an owner may invite an owner"));
    }
    let role = t.auth.role_named(&t.dataplane, tenant, &body.role).await?;
    let mut tx = t.auth.begin(&t.dataplane, tenant).await?;
    if users::credentials(&mut tx, &email).await?.is_some() {
        return Err(ApiError::conflict("this address already has an account"));
    }
    let (id, token, expires) = users::invite(&mut tx, &email, role, invited_by).await?;
    let url = format!("{}/accept-invitation?token={token}", t.base_url(tenant));
    users::outbox(
        &mut tx,
        "invitation",
        &email,
        &format!("You are invited to {}", tenant.name),
        &format!("Accept the invitation: {url}\ninvitation token: {token}\n"),
    )
    .await?;
    tx.commit().await?;
    Ok(Invitation {
        id,
        email,
        role: body.role.clone(),
        token,
        url,
        expires_at: ts(expires),
    })
}

/// Invite someone to the tenant.
#[utoipa::path(post, path = "/api/v1/invitations", tag = "members", request_body = InviteBody,
    responses((status = 201, body = Invitation), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn invite(
    auth: Authenticated,
    State(t): State<Identity>,
    ApiJson(body): ApiJson<InviteBody>,
) -> ApiResult<(StatusCode, Json<Invitation>)> {
    let invited_by = match auth.principal {
        Principal::User { id, .. } => {
            let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
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
    let owner = auth.grants.role == "owner";
    let inv = create(&t, &auth.tenant, &body, invited_by, owner).await?;
    Ok((StatusCode::CREATED, Json(inv)))
}
