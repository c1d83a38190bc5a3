//! Route handlers, one file per area: `admin/` (operator API), `api/` (tenant API), `health`,
//! `wellknown` (JWKS), `sso` (the browser side of SSO).

pub mod admin;
pub mod api;
pub mod health;
pub(crate) mod shared;
pub mod sso;
pub mod stripe_webhook;
pub mod test_panic;
pub mod tracking;
pub mod unsubscribe;
pub mod webhooks;
pub mod wellknown;

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;

/// RFC 3339 timestamps in responses.
pub(crate) fn ts(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Checks a required human-readable text field.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<String, crate::error::ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(crate::error::ApiError::unprocessable(format!(
            "`{field}` must not be empty"
        )));
    }
    if v.chars().count() > max || v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(crate::error::ApiError::unprocessable(format!(
            "`{field}` must be at most {max} characters, without control characters"
        )));
    }
    Ok(v.to_owned())
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`) in a PATCH.
pub(crate) fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
