//! `POST /webhooks/stripe`: Stripe's event deliveries. No credential: the `Stripe-Signature`
//! header over the raw body is the proof (checked by the `billing` crate). A refused delivery
//! is a 400 problem and changes nothing; an applied, duplicate or ignored one is a 200.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use billing::{Applied, Billing, WebhookError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};

/// The acknowledgement.
#[derive(Debug, Serialize, ToSchema)]
pub struct Received {
    /// `applied`, `duplicate` or `ignored`.
    pub outcome: &'static str,
}

/// Receive a Stripe event.
#[utoipa::path(post, path = "/webhooks/stripe", tag = "billing",
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, body = Received), (status = 400, body = Problem), (status = 413, body = Problem), (status = 503, body = Problem)))]
pub async fn stripe(
    State(billing): State<Arc<Billing>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Received>> {
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large("the body is over the size limit")
        } else {
            ApiError::bad_request("the body could not be read")
        }
    })?;
    let payload =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = match billing.handle_webhook(payload, signature).await {
        Ok(Applied::Applied(_)) => "applied",
        Ok(Applied::Duplicate) => "duplicate",
        Ok(Applied::Ignored(_)) => "ignored",
        Err(
            e @ (WebhookError::MissingSignature
            | WebhookError::BadSignature
            | WebhookError::Stale
            | WebhookError::BadPayload(_)),
        ) => return Err(ApiError::bad_request(e.to_string())),
        Err(WebhookError::NotConfigured) => {
            return Err(ApiError::unavailable(
                "Stripe webhooks are not configured on this server",
                "PLATFORM_STRIPE_WEBHOOK_SECRET unset",
            ));
        }
        Err(e) => {
            return Err(ApiError::unavailable(
                "the event could not be applied now; Stripe retries",
                e,
            ));
        }
    };
    Ok(Json(Received { outcome }))
}
