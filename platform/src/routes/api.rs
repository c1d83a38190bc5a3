//! The tenant API (`/api/v1`): every route needs a credential of the resolved tenant and reaches
//! tenant data only through [`crate::extract::tenant::TenantDb`].

pub mod projects;
pub mod tasks;

use serde::{Deserialize, Deserializer};

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`) in a PATCH.
pub(crate) fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
