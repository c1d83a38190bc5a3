//! `/api/v1/flags`: the flags as they evaluate for the calling user (front ends), and a tenant
//! admin's opt-in/out where a flag allows it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use flags::store;
use flags::{FlagContext, Flags};
use serde::Deserialize;
use tenancy::catalog::Catalog;
use utoipa::ToSchema;

use crate::audit::ClientIp;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::Authenticated;
use crate::extract::{ApiJson, ApiPath};
use crate::routes::shared::flags::{Toggles, refresh};

/// Every flag for the calling user, with the tenant's id, plan and placement in the context.
#[utoipa::path(get, path = "/api/v1/flags", tag = "flags",
    responses((status = 200, body = Toggles), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    auth: Authenticated,
    State(flags): State<Arc<Flags>>,
    ip: Option<axum::Extension<ClientIp>>,
) -> ApiResult<Json<Toggles>> {
    let (user, session) = auth.user()?;
    let mut ctx = FlagContext::for_tenant(&auth.tenant)
        .user(user)
        .session(session)
        .environment(flags.environment());
    if let Some(axum::Extension(ClientIp(Some(a)))) = ip {
        ctx = ctx.remote_address(a);
    }
    Ok(Json(Toggles {
        toggles: flags.evaluate(None, &ctx, None),
    }))
}

/// Body of `PUT /api/v1/flags/{name}/choice`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChoiceBody {
    /// `in`, `out`, or `default` (the flag's own rules).
    pub choice: String,
}

/// Opt this tenant in or out of a flag that allows it (`tenantOptIn`).
#[utoipa::path(put, path = "/api/v1/flags/{name}/choice", tag = "flags",
    params(("name" = String, Path)),
    request_body = ChoiceBody,
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn choose(
    auth: Authenticated,
    State(flags): State<Arc<Flags>>,
    State(catalog): State<Catalog>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ChoiceBody>,
) -> ApiResult<StatusCode> {
    let choice = match body.choice.as_str() {
        "in" => Some(true),
        "out" => Some(false),
        "default" => None,
        _ => {
            return Err(ApiError::unprocessable(
                "`choice` is `in`, `out` or `default`",
            ));
        }
    };
    store::set_tenant_choice(
        catalog.pool(),
        flags.environment(),
        &name,
        auth.tenant.id,
        choice,
    )
    .await?;
    refresh(&flags, &catalog).await?;
    Ok(StatusCode::NO_CONTENT)
}
