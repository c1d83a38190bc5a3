//! `/api/v1/sso/connections/{connection_id}/links`: an admin links an identity of a connection
//! (its subject: SAML NameID, OIDC `sub`, GitHub user id) to an existing user explicitly, the
//! way past a refused automatic link, or removes a user's links. Linking is bounded by the grant
//! rule: the admin must be able to give the user's role (whoever holds the identity gets the
//! user's access), so only an owner links an owner. Each link and unlink is a row of
//! `sso_identities`, whose audit trigger records it with the acting admin.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sso::connections::ConnectionId;
use tenancy::ids::UserId;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::{Authenticated, TenantDb};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::shared::grantor;

/// Body of `POST .../links`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// The identity provider's stable subject for the user.
    pub subject: String,
    pub user_id: Uuid,
}

/// A link between an identity and a user.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    pub connection_id: Uuid,
    pub subject: String,
    pub user_id: Uuid,
}

/// Links an identity of the connection to a user (201; 200 when it was linked to them already).
#[utoipa::path(post, path = "/api/v1/sso/connections/{connection_id}/links", tag = "sso",
    params(("connection_id" = Uuid, Path)), request_body = LinkBody,
    responses((status = 201, body = LinkView), (status = 200, body = LinkView),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn link(
    db: TenantDb,
    auth: Authenticated,
    ApiPath(connection_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<LinkBody>,
) -> ApiResult<(StatusCode, Json<LinkView>)> {
    let subject = body.subject.trim();
    if subject.is_empty() || subject.len() > 512 {
        return Err(ApiError::unprocessable(
            "`subject` must be 1 to 512 characters",
        ));
    }
    let mut tx = db.begin().await?;
    let created = sso::provision::link(
        &mut tx,
        &grantor(&auth),
        ConnectionId::from_uuid(connection_id),
        subject,
        UserId::from_uuid(body.user_id),
    )
    .await?;
    tx.commit().await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(LinkView {
            connection_id,
            subject: subject.to_owned(),
            user_id: body.user_id,
        }),
    ))
}

/// Removes the user's identities through the connection (the user stays).
#[utoipa::path(delete, path = "/api/v1/sso/connections/{connection_id}/links/{user_id}", tag = "sso",
    params(("connection_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn unlink(
    db: TenantDb,
    ApiPath((connection_id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let mut tx = db.begin().await?;
    let n = sso::provision::unlink(
        &mut tx,
        ConnectionId::from_uuid(connection_id),
        UserId::from_uuid(user_id),
    )
    .await?;
    tx.commit().await?;
    if n == 0 {
        return Err(ApiError::not_found("no such link"));
    }
    Ok(StatusCode::NO_CONTENT)
}
