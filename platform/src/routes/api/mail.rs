//! `/api/v1/email`: a tenant's view of its email: template previews in its branding, the
//! branding itself, message events, and the suppression list (an administrator's removal is
//! audited by the table's trigger), ([`domain`]) the tenant's own sending domain and
//! ([`settings`]) open tracking. Thin: the
//! work is the `email` crate's.

pub mod domain;
pub mod settings;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use email::Mailer;
use email::store;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::{Authenticated, TenantDb};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{PageQuery, Paged};
use crate::routes::ts;

/// A rendered template.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    pub kind: String,
    /// The locale used (after fallback to `en`).
    pub locale: String,
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Query of the preview.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PreviewQuery {
    /// `en`, `fr`, `fr-CA`...; falls back to the language, then `en`.
    pub locale: Option<String>,
}

/// Preview a message kind with sample values in this tenant's branding.
#[utoipa::path(get, path = "/api/v1/email/templates/{kind}/preview", tag = "email",
    params(("kind" = String, Path), PreviewQuery),
    responses((status = 200, body = Preview), (status = 404, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn preview(
    db: TenantDb,
    auth: Authenticated,
    State(mailer): State<Mailer>,
    ApiPath(kind): ApiPath<String>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> ApiResult<Json<Preview>> {
    if email::Kind::find(&kind).is_none() {
        return Err(ApiError::not_found("no such message kind"));
    }
    if q.locale
        .as_deref()
        .is_some_and(|l| l.len() > 16 || !l.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'))
    {
        return Err(ApiError::bad_request(
            "`locale` is a language tag such as `fr-CA`",
        ));
    }
    let mut tx = db.begin().await?;
    let r = mailer
        .preview(&mut tx, &auth.tenant.name, &kind, q.locale.as_deref())
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(Json(Preview {
        kind,
        locale: r.locale,
        subject: r.subject,
        html: r.html,
        text: r.text,
    }))
}

/// Body of `PUT /api/v1/email/branding`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingBody {
    /// An `https://` image URL.
    pub logo_url: Option<String>,
    /// `#rrggbb`.
    pub primary_color: Option<String>,
}

/// Set the logo and colour of this tenant's messages.
#[utoipa::path(put, path = "/api/v1/email/branding", tag = "email", request_body = BrandingBody,
    responses((status = 204), (status = 422, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn put_branding(
    db: TenantDb,
    ApiJson(b): ApiJson<BrandingBody>,
) -> ApiResult<StatusCode> {
    if b.logo_url
        .as_deref()
        .is_some_and(|u| !u.starts_with("https://") || u.len() > 2048 || url_has_space(u))
    {
        return Err(ApiError::unprocessable(
            "`logo_url` must be an https:// URL",
        ));
    }
    if b.primary_color.as_deref().is_some_and(|c| {
        c.len() != 7 || !c.starts_with('#') || !c[1..].bytes().all(|x| x.is_ascii_hexdigit())
    }) {
        return Err(ApiError::unprocessable("`primary_color` must be `#rrggbb`"));
    }
    let mut tx = db.begin().await?;
    store::set_branding(&mut tx, b.logo_url.as_deref(), b.primary_color.as_deref()).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

fn url_has_space(u: &str) -> bool {
    u.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>')
}

/// A message event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: Uuid,
    pub message_id: Option<Uuid>,
    pub recipient: String,
    /// `sent`, `delivered`, `bounced`, `soft_bounced`, `complained`, `opened`, `suppressed`,
    /// `unsubscribed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: serde_json::Value,
    pub occurred_at: String,
}

/// Filters of the event list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventQuery {
    pub message_id: Option<Uuid>,
    pub recipient: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// This tenant's message events, oldest first.
#[utoipa::path(get, path = "/api/v1/email/events", tag = "email", params(EventQuery),
    responses((status = 200, body = Paged<EventView>), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn events(
    db: TenantDb,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<Paged<EventView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let mut tx = db.begin().await?;
    let rows = store::events(
        &mut tx,
        q.message_id,
        q.recipient.as_deref(),
        page.after,
        page.limit + 1,
    )
    .await?;
    tx.commit().await?;
    let items = rows
        .into_iter()
        .map(|e| EventView {
            id: e.id,
            message_id: e.message_id,
            recipient: e.recipient,
            kind: e.kind,
            detail: e.detail,
            occurred_at: ts(e.occurred_at),
        })
        .collect();
    Ok(Json(Paged::from_rows(items, page.limit, |e| e.id)))
}

/// A suppressed address.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionView {
    pub id: Uuid,
    pub recipient: String,
    /// `hard_bounce`, `complaint`, `unsubscribe` or `manual`.
    pub reason: String,
    /// The category it withholds (`*`: every kind).
    pub category: String,
    pub created_at: String,
}

/// Filters of the suppression list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SuppressionQuery {
    pub recipient: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// This tenant's suppression list, oldest first.
#[utoipa::path(get, path = "/api/v1/email/suppressions", tag = "email", params(SuppressionQuery),
    responses((status = 200, body = Paged<SuppressionView>), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn suppressions(
    db: TenantDb,
    ApiQuery(q): ApiQuery<SuppressionQuery>,
) -> ApiResult<Json<Paged<SuppressionView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let mut tx = db.begin().await?;
    let rows =
        store::suppressions(&mut tx, q.recipient.as_deref(), page.after, page.limit + 1).await?;
    tx.commit().await?;
    let items = rows
        .into_iter()
        .map(|s| SuppressionView {
            id: s.id,
            recipient: s.recipient,
            reason: s.reason,
            category: s.category,
            created_at: ts(s.created_at),
        })
        .collect();
    Ok(Json(Paged::from_rows(items, page.limit, |s| s.id)))
}

/// Body of `POST /api/v1/email/suppressions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressBody {
    /// The address no mail of this tenant may go to.
    pub recipient: String,
}

/// Add an address to the suppression list by hand (reason `manual`: no mail at all; audited).
#[utoipa::path(post, path = "/api/v1/email/suppressions", tag = "email", request_body = SuppressBody,
    responses((status = 201, body = SuppressionView), (status = 422, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn suppress(
    db: TenantDb,
    ApiJson(b): ApiJson<SuppressBody>,
) -> ApiResult<(StatusCode, Json<SuppressionView>)> {
    let email = identity::users::parse_email(&b.recipient)?;
    let mut tx = db.begin().await?;
    store::suppress(&mut tx, email.as_str(), store::Reason::Manual, None).await?;
    let row = store::suppressions(&mut tx, Some(email.as_str()), None, 100)
        .await?
        .into_iter()
        .find(|s| s.reason == "manual")
        .ok_or_else(|| ApiError::internal("the suppression was not recorded"))?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(SuppressionView {
            id: row.id,
            recipient: row.recipient,
            reason: row.reason,
            category: row.category,
            created_at: ts(row.created_at),
        }),
    ))
}

/// Remove an address from the suppression list (audited).
#[utoipa::path(delete, path = "/api/v1/email/suppressions/{suppression_id}", tag = "email",
    params(("suppression_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn unsuppress(db: TenantDb, ApiPath(id): ApiPath<Uuid>) -> ApiResult<StatusCode> {
    let mut tx = db.begin().await?;
    if !store::unsuppress(&mut tx, id).await? {
        return Err(ApiError::not_found("no such suppression"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
