//! The answer of flag evaluation, shared by the operator's `evaluate` and the tenant's list.

use flags::store;
use flags::{Flags, Toggle};
use serde::Serialize;
use tenancy::catalog::Catalog;
use utoipa::ToSchema;

/// `{"toggles": [{"name", "enabled", "variant": {"name", "enabled", "payload"?}}]}`, as
/// Unleash's frontend API answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Toggles {
    #[schema(value_type = Vec<Object>)]
    pub toggles: Vec<Toggle>,
}

/// Reloads this instance's snapshot after a change it made (read-your-writes here; the other
/// instances reload on the notification).
pub(crate) async fn refresh(
    flags: &Flags,
    catalog: &Catalog,
) -> Result<(), crate::error::ApiError> {
    flags.replace(store::load(catalog.pool()).await?);
    Ok(())
}
