//! The tenant API (`/api/v1`): every route declares what it needs where it is registered
//! ([`crate::authz::TenantRoutes::at`]) and reaches tenant data only through
//! [`crate::extract::tenant::TenantDb`], a connection that carries the tenant.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod flags;
pub mod invitations;
pub mod jobs;
pub mod mail;
pub mod me;
pub mod members;
pub mod projects;
pub mod roles;
pub mod sso;
mod store;
pub mod tasks;
pub mod users;
