//! What more than one handler file uses: response views, and the operations behind two routes
//! (an invitation by a tenant admin or by the operator; tokens from a password or an SSO login).
//! Handler files import from here, never from each other.

pub mod api_keys;
pub mod auth;
pub mod invitations;
