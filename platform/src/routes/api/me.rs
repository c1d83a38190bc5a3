//! `/api/v1/me`: the signed-in user's account (and their own settings: the locale of the mail
//! they get), sessions (devices) and second factor.

pub mod email;
pub mod mfa;
pub mod sessions;

use ::email::locale::Locale;
use axum::Json;
use identity::users;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::{Authenticated, TenantDb};
use crate::routes::{double_option, ts};

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
    /// The BCP 47 tag the user's mail is written in (falling back to the language, then `en`);
    /// `null`: the default.
    pub locale: Option<String>,
    pub session_id: Uuid,
    pub created_at: String,
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "me",
    responses((status = 200, body = Me), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn show(db: TenantDb, auth: Authenticated) -> ApiResult<Json<Me>> {
    let mut tx = db.begin().await?;
    let me = load(&auth, &mut tx).await?;
    tx.commit().await?;
    Ok(Json(me))
}

/// Body of `PATCH /api/v1/me`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MePatch {
    /// A BCP 47 language tag (`fr`, `fr-CA`, `zh-Hant-TW`, `es-419`): the user's mail is written
    /// in it (or its language, else `en`); `null` returns to the default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub locale: Option<Option<String>>,
}

/// Change the signed-in user's own settings (the locale of their mail).
#[utoipa::path(patch, path = "/api/v1/me", tag = "me", request_body = MePatch,
    responses((status = 200, body = Me), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn patch(
    db: TenantDb,
    auth: Authenticated,
    ApiJson(body): ApiJson<MePatch>,
) -> ApiResult<Json<Me>> {
    let (id, _) = auth.user()?;
    let locale = match &body.locale {
        Some(Some(raw)) => Some(Some(Locale::parse(raw).ok_or_else(|| {
            ApiError::bad_request(
                "`locale` must be a BCP 47 language tag such as `fr`, `fr-CA` or `zh-Hant-TW`",
            )
        })?)),
        Some(None) => Some(None),
        None => None,
    };
    let mut tx = db.begin().await?;
    if let Some(locale) = &locale
        && !::email::store::set_user_locale(&mut tx, id.as_uuid(), locale.as_ref()).await?
    {
        return Err(ApiError::unauthorized("the account no longer exists"));
    }
    let me = load(&auth, &mut tx).await?;
    tx.commit().await?;
    Ok(Json(me))
}

/// The signed-in user as `GET /api/v1/me` shows them.
async fn load(auth: &Authenticated, tx: &mut tenancy::dataplane::TenantTx) -> ApiResult<Me> {
    let (id, session) = auth.user()?;
    let u = users::get(tx, id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let locale = ::email::store::user_locale(tx, id.as_uuid()).await?;
    Ok(Me {
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
        locale,
        session_id: session.as_uuid(),
        created_at: ts(u.created_at),
    })
}
