//! `/api/v1/email/domain`: the tenant's own sending domain. An administrator names it and gets
//! the DKIM TXT record to publish (the key is generated and sealed by the platform), then asks
//! for the DNS check; once the record is found with this key, the tenant's mail goes out `From`
//! that domain, signed for it. Until then the platform's domain signs (see `email::domain`).

use axum::Json;
use axum::extract::State;
use email::Mailer;
use email::domain::{self, SendingDomain};
use serde::{Deserialize, Serialize};
use sso::Sso;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::TenantDb;

/// The sending domain and the DNS record that publishes its key.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendingDomainView {
    pub selector: String,
    pub domain: String,
    /// `<selector>._domainkey.<domain>`.
    pub txt_name: String,
    /// `v=DKIM1; k=ed25519; p=...`.
    pub txt_value: String,
    /// Whether the record was found in DNS: only then does mail go out from this domain.
    pub verified: bool,
}

fn view(d: &SendingDomain) -> SendingDomainView {
    SendingDomainView {
        selector: d.selector.clone(),
        domain: d.domain.clone(),
        txt_name: d.txt_name(),
        txt_value: d.txt_value(),
        verified: d.verified_at.is_some(),
    }
}

/// Body of `PUT /api/v1/email/domain`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendingDomainBody {
    /// A host name such as `mail.acme.com`, outside the platform's own domain.
    pub domain: String,
}

/// Set this tenant's sending domain (the same domain again keeps its key and verification;
/// another domain gets a new key and must be verified again).
#[utoipa::path(put, path = "/api/v1/email/domain", tag = "email", request_body = SendingDomainBody,
    responses((status = 200, body = SendingDomainView), (status = 422, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn put(
    db: TenantDb,
    State(mailer): State<Mailer>,
    ApiJson(b): ApiJson<SendingDomainBody>,
) -> ApiResult<Json<SendingDomainView>> {
    let domain = mailer.parse_sending_domain(&b.domain).ok_or_else(|| {
        ApiError::unprocessable(
            "`domain` must be a host name such as `mail.acme.com` outside the platform's own domain",
        )
    })?;
    let mut tx = db.begin().await?;
    let d = mailer
        .set_sending_domain(&mut tx, &domain)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(Json(view(&d)))
}

/// This tenant's sending domain and its DKIM record.
#[utoipa::path(get, path = "/api/v1/email/domain", tag = "email",
    responses((status = 200, body = SendingDomainView), (status = 404, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn get(db: TenantDb) -> ApiResult<Json<SendingDomainView>> {
    let mut tx = db.begin().await?;
    let d = domain::get(&mut tx).await?;
    tx.commit().await?;
    let d = d.ok_or_else(|| {
        ApiError::not_found("no sending domain is configured: mail is sent from the platform's")
    })?;
    Ok(Json(view(&d)))
}

/// Look the DKIM record up in DNS and mark the domain verified when it publishes this key (422
/// with the record to publish when it does not; 502 when DNS fails).
#[utoipa::path(post, path = "/api/v1/email/domain/verify", tag = "email",
    responses((status = 200, body = SendingDomainView), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem),
              (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn verify(db: TenantDb, State(sso): State<Sso>) -> ApiResult<Json<SendingDomainView>> {
    let mut tx = db.begin().await?;
    let d = domain::get(&mut tx).await?;
    tx.commit().await?;
    let mut d = d.ok_or_else(|| ApiError::not_found("no sending domain is configured"))?;
    if d.verified_at.is_some() {
        return Ok(Json(view(&d)));
    }
    // No transaction (no connection) is held across the DNS lookup.
    let records = sso
        .domains()
        .resolver()
        .txt(&d.txt_name())
        .await
        .map_err(|e| ApiError::bad_gateway("the DNS lookup failed; try again", e))?;
    if !d.published_in(&records) {
        return Err(ApiError::unprocessable(format!(
            "no TXT record `{}` with the value `{}` was found; publish it and verify again",
            d.txt_name(),
            d.txt_value()
        )));
    }
    let mut tx = db.begin().await?;
    if !domain::mark_verified(&mut tx, &d).await? {
        return Err(ApiError::conflict(
            "the sending domain was changed meanwhile; verify the new one",
        ));
    }
    tx.commit().await?;
    d.verified_at = Some(time::OffsetDateTime::now_utc());
    Ok(Json(view(&d)))
}
