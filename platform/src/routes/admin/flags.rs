//! `/admin/v1/flags`: operators author flags (one flag in Unleash's feature shape, checked
//! strictly), import Unleash documents (leniently), test rules with `evaluate`, and pull the kill
//! switches. Every change is audited (before and after) and reaches every instance within about a
//! second (`platform_flags` notification).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use flags::document::{FlagDefinition, parse_import};
use flags::store::{self, ImportMode, StoredFlag};
use flags::{FlagContext, Flags};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenancy::catalog::Catalog;
use unleash_types::client_features::Context;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::admin::Operator;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::shared::flags::{Toggles, refresh};

/// Flag names the routes below use as path segments.
const RESERVED: &[&str] = &["import", "evaluate", "kill-switch"];

/// A stored flag: Unleash's feature shape plus `owner`, `staleAfter`, `tenantOptIn`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlagView {
    pub environment: String,
    /// `release`, `experiment`, `ops` or `permission` (from the feature's `type`).
    pub kind: String,
    pub enabled: bool,
    #[schema(value_type = Object)]
    pub definition: Value,
}

impl From<StoredFlag> for FlagView {
    fn from(f: StoredFlag) -> Self {
        Self {
            environment: f.environment,
            kind: f.kind,
            enabled: f.enabled,
            definition: f.definition,
        }
    }
}

/// `?environment=` (default: `production`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EnvQuery {
    /// The flag environment (default `production`).
    pub environment: Option<String>,
}

fn environment(e: Option<String>) -> Result<String, ApiError> {
    let e = e.unwrap_or_else(|| "production".into());
    if store::valid_environment(&e) {
        Ok(e)
    } else {
        Err(ApiError::bad_request(
            "`environment` is 1 to 32 characters of a-z, 0-9, `-` and `_`",
        ))
    }
}

/// List flags.
#[utoipa::path(get, path = "/admin/v1/flags", tag = "flags", params(EnvQuery),
    responses((status = 200, body = Vec<FlagView>), (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn list(
    _: Operator,
    State(catalog): State<Catalog>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> ApiResult<Json<Vec<FlagView>>> {
    let env = environment(q.environment)?;
    Ok(Json(
        store::list(catalog.pool(), Some(&env))
            .await?
            .into_iter()
            .map(FlagView::from)
            .collect(),
    ))
}

fn authored(body: &Value, name: Option<&str>) -> Result<FlagDefinition, ApiError> {
    let mut body = body.clone();
    if let (Some(n), Value::Object(map)) = (name, &mut body) {
        match map.get("name") {
            None => {
                map.insert("name".into(), Value::String(n.to_owned()));
            }
            Some(Value::String(b)) if b == n => {}
            Some(_) => {
                return Err(ApiError::unprocessable(
                    "the body's `name` differs from the flag named in the path",
                ));
            }
        }
    }
    let flag = FlagDefinition::from_json(&body).map_err(|e| ApiError::unprocessable(e.0))?;
    if RESERVED.contains(&flag.feature.name.as_str()) {
        return Err(ApiError::unprocessable(format!(
            "`{}` is reserved; choose another flag name",
            flag.feature.name
        )));
    }
    Ok(flag)
}

/// Create a flag (Unleash's feature shape; strict: unknown operators or strategies, variant
/// weights that do not sum to 1000 and dependency cycles are refused).
#[utoipa::path(post, path = "/admin/v1/flags", tag = "flags", params(EnvQuery),
    request_body(content = Object, description = "One flag in Unleash's feature shape"),
    responses((status = 201, body = FlagView), (status = 409, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn create(
    _: Operator,
    State(catalog): State<Catalog>,
    State(flags): State<Arc<Flags>>,
    ApiQuery(q): ApiQuery<EnvQuery>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<FlagView>)> {
    let env = environment(q.environment)?;
    let flag = authored(&body, None)?;
    if store::get(catalog.pool(), &env, &flag.feature.name)
        .await
        .is_ok()
    {
        return Err(ApiError::conflict(format!(
            "flag `{}` exists in `{env}`; PUT /admin/v1/flags/{{name}} replaces it",
            flag.feature.name
        )));
    }
    store::put(catalog.pool(), &env, &flag).await?;
    refresh(&flags, &catalog).await?;
    let stored = store::get(catalog.pool(), &env, &flag.feature.name).await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// One flag.
#[utoipa::path(get, path = "/admin/v1/flags/{name}", tag = "flags", params(("name" = String, Path), EnvQuery),
    responses((status = 200, body = FlagView), (status = 404, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn show(
    _: Operator,
    State(catalog): State<Catalog>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> ApiResult<Json<FlagView>> {
    let env = environment(q.environment)?;
    Ok(Json(store::get(catalog.pool(), &env, &name).await?.into()))
}

/// Create or replace a flag (strict, as `POST`).
#[utoipa::path(put, path = "/admin/v1/flags/{name}", tag = "flags", params(("name" = String, Path), EnvQuery),
    request_body(content = Object, description = "One flag in Unleash's feature shape"),
    responses((status = 200, body = FlagView), (status = 201, body = FlagView), (status = 422, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn put(
    _: Operator,
    State(catalog): State<Catalog>,
    State(flags): State<Arc<Flags>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<FlagView>)> {
    let env = environment(q.environment)?;
    let flag = authored(&body, Some(&name))?;
    let created = store::put(catalog.pool(), &env, &flag).await?;
    refresh(&flags, &catalog).await?;
    let stored = store::get(catalog.pool(), &env, &name).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored.into())))
}

/// Delete a flag.
#[utoipa::path(delete, path = "/admin/v1/flags/{name}", tag = "flags", params(("name" = String, Path), EnvQuery),
    responses((status = 204), (status = 404, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn delete(
    _: Operator,
    State(catalog): State<Catalog>,
    State(flags): State<Arc<Flags>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> ApiResult<StatusCode> {
    let env = environment(q.environment)?;
    store::delete(catalog.pool(), &env, &name).await?;
    refresh(&flags, &catalog).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /admin/v1/flags/{name}/disable` and `/enable`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchBody {
    /// Only for this tenant (every environment); absent: everywhere in the environment.
    pub tenant: Option<Uuid>,
}

/// The optional body: empty, or `{"tenant": id}`.
fn switch_body(
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Option<SwitchBody>, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large("the request body is larger than 1 MiB")
        } else {
            ApiError::bad_request(r.body_text())
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| ApiError::unprocessable(format!("the body is not `{{\"tenant\": id}}`: {e}")))
}

async fn switch(
    flags: &Flags,
    catalog: &Catalog,
    env: Option<String>,
    name: &str,
    body: Option<SwitchBody>,
    disabled: bool,
) -> ApiResult<StatusCode> {
    let env = environment(env)?;
    let tenant = body
        .unwrap_or_default()
        .tenant
        .map(tenancy::ids::TenantId::from_uuid);
    store::set_disabled(catalog.pool(), &env, name, tenant, disabled).await?;
    refresh(flags, catalog).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Kill switch for one flag: off everywhere in the environment, or for one tenant.
#[utoipa::path(post, path = "/admin/v1/flags/{name}/disable", tag = "flags", params(("name" = String, Path), EnvQuery),
    request_body(content = Option<SwitchBody>),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn disable(
    _: Operator,
    State(catalog): State<Catalog>,
    State(flags): State<Arc<Flags>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    switch(
        &flags,
        &catalog,
        q.environment,
        &name,
        switch_body(body)?,
        true,
    )
    .await
}

/// Undoes `disable` (everywhere in the environment, or for one tenant).
#[utoipa::path(post, path = "/admin/v1/flags/{name}/enable", tag = "flags", params(("name" = String, Path), EnvQuery),
    request_body(content = Option<SwitchBody>),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn enable(
    _: Operator,
    State(catalog): State<Catalog>,
    State(flags): State<Arc<Flags>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    switch(
        &flags,
        &catalog,
        q.environment,
        &name,
        switch_body(body)?,
        false,
    )
    .await
}

/// The global kill switch.
#[derive(Debug, Serialize, ToSchema)]
pub struct KillSwitchView {
    /// Whether every `experiment` and `release` flag is off.
    pub engaged: bool,
}

/// Engage the global kill switch: every flag of kind `experiment` or `release` is off until
/// lifted.
#[utoipa::path(post, path = "/admin/v1/flags/kill-switch", tag = "flags",
    responses((status = 200, body = KillSwitchView), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn kill(
    _: Operator,
    State(catalog): State<Catalog>,
    State(flags): State<Arc<Flags>>,
) -> ApiResult<Json<KillSwitchView>> {
    store::set_kill_switch(catalog.pool(), true).await?;
    refresh(&flags, &catalog).await?;
    Ok(Json(KillSwitchView { engaged: true }))
}

/// Lift the global kill switch.
#[utoipa::path(delete, path = "/admin/v1/flags/kill-switch", tag = "flags",
    responses((status = 200, body = KillSwitchView), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn lift(
    _: Operator,
    State(catalog): State<Catalog>,
    State(flags): State<Arc<Flags>>,
) -> ApiResult<Json<KillSwitchView>> {
    store::set_kill_switch(catalog.pool(), false).await?;
    refresh(&flags, &catalog).await?;
    Ok(Json(KillSwitchView { engaged: false }))
}

/// `?mode=merge|replace&environment=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `merge` (default: flags not in the document stay) or `replace`.
    pub mode: Option<String>,
    /// The flag environment (default `production`).
    pub environment: Option<String>,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    pub environment: String,
    pub mode: String,
    pub flags: usize,
}

/// Import an Unleash document (client-API features format, or the delta format), leniently, as
/// an Unleash client reads it.
#[utoipa::path(post, path = "/admin/v1/flags/import", tag = "flags", params(ImportQuery),
    request_body(content = Object, description = "`{\"version\", \"features\", \"segments\"}` or `{\"events\": [...]}`"),
    responses((status = 200, body = ImportResult), (status = 400, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn import(
    _: Operator,
    State(catalog): State<Catalog>,
    State(flags): State<Arc<Flags>>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    ApiJson(doc): ApiJson<Value>,
) -> ApiResult<Json<ImportResult>> {
    let env = environment(q.environment)?;
    let mode = match q.mode.as_deref() {
        None | Some("merge") => ImportMode::Merge,
        Some("replace") => ImportMode::Replace,
        Some(_) => return Err(ApiError::bad_request("`mode` is `merge` or `replace`")),
    };
    let imported = parse_import(&doc).map_err(|e| ApiError::unprocessable(e.0))?;
    if let Some(f) = imported
        .flags
        .iter()
        .find(|f| RESERVED.contains(&f.feature.name.as_str()))
    {
        return Err(ApiError::unprocessable(format!(
            "`{}` is reserved; rename the flag",
            f.feature.name
        )));
    }
    let n = store::import(catalog.pool(), &env, &imported, mode).await?;
    refresh(&flags, &catalog).await?;
    Ok(Json(ImportResult {
        environment: env,
        mode: if mode == ImportMode::Replace {
            "replace"
        } else {
            "merge"
        }
        .into(),
        flags: n,
    }))
}

/// Body of `POST /admin/v1/flags/evaluate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateBody {
    /// An Unleash context: userId, sessionId, remoteAddress, environment, appName, currentTime,
    /// properties (`tenantId`, `tenantPlan`, `tenantPlacement` target our strategies).
    #[schema(value_type = Object)]
    pub context: Value,
    /// Only these flags (default: every flag of the environment).
    pub toggles: Option<Vec<String>>,
}

/// Evaluate flags for a context, as this platform would (overrides included).
#[utoipa::path(post, path = "/admin/v1/flags/evaluate", tag = "flags", params(EnvQuery),
    request_body = EvaluateBody,
    responses((status = 200, body = Toggles), (status = 400, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn evaluate(
    _: Operator,
    State(flags): State<Arc<Flags>>,
    ApiQuery(q): ApiQuery<EnvQuery>,
    ApiJson(body): ApiJson<EvaluateBody>,
) -> ApiResult<Json<Toggles>> {
    let env = q
        .environment
        .unwrap_or_else(|| flags.environment().to_owned());
    let env = environment(Some(env))?;
    if !body.context.is_object() {
        return Err(ApiError::unprocessable("`context` must be an object"));
    }
    let ctx: Context = serde_json::from_value(body.context).map_err(|e| {
        ApiError::unprocessable(format!("`context` is not an Unleash context: {e}"))
    })?;
    let ctx = FlagContext::without_tenant("an operator testing a rule", ctx);
    Ok(Json(Toggles {
        toggles: flags.evaluate(Some(&env), &ctx, body.toggles.as_deref()),
    }))
}
