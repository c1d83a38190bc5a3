//! `POST /u/{token}`: RFC 8058 one-click unsubscribe, as a mail client sends it
//! (`List-Unsubscribe=One-Click` form body, no cookie, no confirmation). The signed token is the
//! whole authority; it is honoured at once and answering it again changes nothing.

use axum::extract::State;
use axum::http::StatusCode;
use email::Mailer;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiPath;

/// Unsubscribe the token's recipient from its category of mail.
#[utoipa::path(post, path = "/u/{token}", tag = "email",
    params(("token" = String, Path)),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`List-Unsubscribe=One-Click`"),
    responses((status = 200, description = "Unsubscribed"), (status = 404, body = Problem)))]
pub async fn one_click(
    State(mailer): State<Mailer>,
    ApiPath(token): ApiPath<String>,
) -> ApiResult<(StatusCode, &'static str)> {
    match mailer.unsubscribe(&token).await {
        Ok(Some(_)) => Ok((StatusCode::OK, "You are unsubscribed.\n")),
        Ok(None) => Err(ApiError::not_found("no such unsubscribe link")),
        Err(e) => Err(ApiError::internal(e)),
    }
}
