//! `/api/v1/sso/...`: a tenant admin manages the tenant's SSO connections (SAML, OIDC, Google)
//! and its SSO policy, its verified email domains (`domains`) and explicit links of identities to
//! users (`links`). Needs `sso:manage`. Client secrets go in and are never shown again.

pub mod domains;
mod input;
pub mod links;
mod views;

use identity::Identity;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sso::Sso;
use sso::connections::{self, ConnectionId, Protocol};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::{Authenticated, TenantDb};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::shared::grantor;
use input::{ConnectionBody, protocol, secret, settings};
use views::{ConnectionList, ConnectionView, view};

/// The tenant's SSO policy.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoSettingsBody {
    /// Refuse password login for everyone but owners (break-glass).
    pub enforce_sso: bool,
}

/// The tenant's SSO connections.
#[utoipa::path(get, path = "/api/v1/sso/connections", tag = "sso",
    responses((status = 200, body = ConnectionList), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn list(
    db: TenantDb,
    auth: Authenticated,
    State(sso): State<Sso>,
) -> ApiResult<Json<ConnectionList>> {
    let mut tx = db.begin().await?;
    let items = connections::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(ConnectionList {
        items: items
            .into_iter()
            .map(|c| view(&sso, &auth.tenant, c))
            .collect(),
    }))
}

/// Adds a connection.
#[utoipa::path(post, path = "/api/v1/sso/connections", tag = "sso", request_body = ConnectionBody,
    responses((status = 201, body = ConnectionView), (status = 403, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn create(
    db: TenantDb,
    auth: Authenticated,
    State(t): State<Identity>,
    State(sso): State<Sso>,
    ApiJson(mut body): ApiJson<ConnectionBody>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    let kind = body
        .kind
        .clone()
        .ok_or_else(|| ApiError::unprocessable("`kind` is required"))?;
    let protocol = protocol(&sso, &kind, &mut body, None).await?;
    if matches!(protocol, Protocol::Saml(_)) && body.client_secret.is_some() {
        return Err(ApiError::unprocessable(
            "a SAML connection has no `client_secret`",
        ));
    }
    let s = settings(&body, None)?;
    let mut tx = db.begin().await?;
    let c = connections::create(
        &mut tx,
        t.auth.keyring(),
        protocol,
        secret(&body)?,
        &s,
        &grantor(&auth),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view(&sso, &auth.tenant, c))))
}

/// One connection.
#[utoipa::path(get, path = "/api/v1/sso/connections/{connection_id}", tag = "sso",
    params(("connection_id" = Uuid, Path)),
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn show(
    db: TenantDb,
    auth: Authenticated,
    State(sso): State<Sso>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ConnectionView>> {
    let mut tx = db.begin().await?;
    let c = connections::get(&mut tx, ConnectionId::from_uuid(id))
        .await?
        .ok_or_else(|| ApiError::not_found("no such SSO connection"))?;
    tx.commit().await?;
    Ok(Json(view(&sso, &auth.tenant, c)))
}

/// Changes a connection (absent fields keep their value).
#[utoipa::path(patch, path = "/api/v1/sso/connections/{connection_id}", tag = "sso",
    params(("connection_id" = Uuid, Path)), request_body = ConnectionBody,
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn patch(
    db: TenantDb,
    auth: Authenticated,
    State(t): State<Identity>,
    State(sso): State<Sso>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(mut body): ApiJson<ConnectionBody>,
) -> ApiResult<Json<ConnectionView>> {
    if body.kind.is_some() {
        return Err(ApiError::unprocessable(
            "`kind` cannot change; make a new connection",
        ));
    }
    let id = ConnectionId::from_uuid(id);
    let mut tx = db.begin().await?;
    let current = connections::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such SSO connection"))?;
    tx.commit().await?;
    let kind = match &current.protocol {
        Protocol::Oidc(o) if o.preset.as_deref() == Some("google") => "google",
        p => p.kind(),
    };
    let protocol = protocol(&sso, kind, &mut body, Some(&current.protocol)).await?;
    let s = settings(&body, Some(&current))?;
    let mut tx = db.begin().await?;
    let c = connections::update(
        &mut tx,
        t.auth.keyring(),
        id,
        &protocol,
        secret(&body)?,
        &s,
        &grantor(&auth),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(view(&sso, &auth.tenant, c)))
}

/// Removes a connection and the identities linked through it (the users stay).
#[utoipa::path(delete, path = "/api/v1/sso/connections/{connection_id}", tag = "sso",
    params(("connection_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn delete(db: TenantDb, ApiPath(id): ApiPath<Uuid>) -> ApiResult<StatusCode> {
    let mut tx = db.begin().await?;
    connections::delete(&mut tx, ConnectionId::from_uuid(id)).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's SSO policy.
#[utoipa::path(get, path = "/api/v1/sso/settings", tag = "sso",
    responses((status = 200, body = SsoSettingsBody), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn show_settings(db: TenantDb) -> ApiResult<Json<SsoSettingsBody>> {
    let mut tx = db.begin().await?;
    let enforce_sso = connections::enforce_sso(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(SsoSettingsBody { enforce_sso }))
}

/// Sets the tenant's SSO policy.
#[utoipa::path(put, path = "/api/v1/sso/settings", tag = "sso", request_body = SsoSettingsBody,
    responses((status = 200, body = SsoSettingsBody), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn put_settings(
    db: TenantDb,
    ApiJson(body): ApiJson<SsoSettingsBody>,
) -> ApiResult<Json<SsoSettingsBody>> {
    let mut tx = db.begin().await?;
    connections::set_enforce_sso(&mut tx, body.enforce_sso).await?;
    tx.commit().await?;
    Ok(Json(body))
}
