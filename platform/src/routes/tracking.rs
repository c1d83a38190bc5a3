//! `GET /o/{token}`: the 1×1 image of open tracking (only in mail of tenants that enabled it).
//! The signed token is the whole authority (a mail client fetches it with no cookie); the first
//! fetch records an `opened` event, later ones change nothing. Limited per client address like
//! the other public email routes.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use email::Mailer;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiPath;

/// The tracking image of one message.
#[utoipa::path(get, path = "/o/{token}", tag = "email",
    params(("token" = String, Path)),
    responses((status = 200, content_type = "image/gif", description = "A transparent 1×1 GIF"),
              (status = 404, body = Problem)))]
pub async fn pixel(
    State(mailer): State<Mailer>,
    ApiPath(token): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    match mailer.opened(&token).await {
        Ok(true) => Ok((
            [
                (CONTENT_TYPE, "image/gif"),
                (CACHE_CONTROL, "no-store, max-age=0"),
            ],
            email::tracking::PIXEL_GIF,
        )),
        Ok(false) => Err(ApiError::not_found("no such message")),
        Err(e) => Err(ApiError::internal(e)),
    }
}
