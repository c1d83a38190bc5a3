//! `POST /webhooks/email/{provider}`: the email provider's bounce, complaint, delivery and open
//! events (Postmark's shapes), authenticated by HTTP Basic credentials
//! (`PLATFORM_EMAIL_WEBHOOK_CREDENTIALS`, compared in constant time). A replayed event is
//! accepted and changes nothing. Served on any host: the event names its tenant.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use email::Mailer;
use email::webhook::{Outcome, WebhookError};

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath};

/// Receive one provider event.
#[utoipa::path(post, path = "/webhooks/email/{provider}", tag = "email",
    params(("provider" = String, Path, description = "`postmark`")),
    request_body(content = serde_json::Value, description = "A Postmark webhook event"),
    responses((status = 200, body = serde_json::Value, description = "`{\"outcome\": \"recorded\" | \"replayed\" | \"ignored\"}`"),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 400, body = Problem)))]
pub async fn receive(
    State(mailer): State<Mailer>,
    ApiPath(provider): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<serde_json::Value>> {
    if provider != "postmark" {
        return Err(ApiError::not_found("no such email provider"));
    }
    let auth = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !mailer.webhook_authorized(auth) {
        return Err(ApiError::unauthorized("the webhook credentials are wrong"));
    }
    let outcome = match mailer.postmark_event(body).await {
        Ok(o) => o,
        Err(WebhookError::Payload(detail)) => return Err(ApiError::bad_request(detail)),
        Err(WebhookError::Email(e)) => return Err(ApiError::internal(e)),
    };
    let outcome = match outcome {
        Outcome::Recorded => "recorded",
        Outcome::Replayed => "replayed",
        Outcome::Ignored => "ignored",
    };
    Ok(Json(serde_json::json!({ "outcome": outcome })))
}
