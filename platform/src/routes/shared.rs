//! What more than one handler file uses: response views, and the operations behind two routes
//! (an invitation by a tenant admin or by the operator; tokens from a password or an SSO login).
//! Handler files import from here, never from each other.

pub mod api_keys;
pub mod auth;
pub mod flags;
pub mod invitations;

use identity::Grantor;

use crate::extract::tenant::Authenticated;

/// Who gives a role in a tenant request: the caller, with its role and permissions (the rule
/// itself is `identity::grants`).
pub(crate) fn grantor(auth: &Authenticated) -> Grantor<'_> {
    Grantor::Principal {
        role: &auth.grants.role,
        permissions: &auth.grants.permissions,
    }
}
