//! The tenant API (`/api/v1`): every route declares what it needs in [`crate::authz::TABLE`] and
//! reaches tenant data only through a connection that carries the tenant.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod invitations;
pub mod me;
pub mod members;
pub mod projects;
pub mod roles;
pub mod sso;
mod store;
pub mod tasks;
pub mod users;

use serde::{Deserialize, Deserializer};

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`) in a PATCH.
pub(crate) fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
