//! Creating an invitation, shared by the tenant's route (`POST /api/v1/invitations`) and the
//! operator's (`POST /admin/v1/tenants/{tenant}/invitations`, the first owner).

use identity::{Grantor, Identity, grants, users};
use serde::{Deserialize, Serialize};
use tenancy::catalog::Tenant;
use tenancy::ids::UserId;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
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
    grantor: Grantor<'_>,
) -> ApiResult<Invitation> {
    let email = users::parse_email(&body.email)?;
    let seats = t.auth.seats(tenant.id).await?;
    let mut tx = t.auth.begin(&t.dataplane, tenant).await?;
    let role = grants::grantable_role(&mut tx, &grantor, &body.role).await?;
    if users::credentials(&mut tx, &email).await?.is_some() {
        return Err(ApiError::conflict("this address already has an account"));
    }
    let (id, token, expires) = users::invite(&mut tx, seats, &email, role, invited_by).await?;
    let url = format!("{}/accept-invitation?token={token}", t.base_url(tenant));
    users::outbox(
        &mut tx,
        t.auth.keyring(),
        users::Message {
            kind: "invitation",
            recipient: &email,
            subject: &format!("You are invited to {}", tenant.name),
            body: &format!("Accept the invitation: {url}\ninvitation token: {token}\n"),
            lifetime: std::time::Duration::from_secs(
                u64::try_from(users::INVITATION_TTL_DAYS).unwrap_or(7) * 86_400,
            ),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Invitation {
        id,
        email: email.as_str().to_owned(),
        role: body.role.clone(),
        token,
        url,
        expires_at: ts(expires),
    })
}
