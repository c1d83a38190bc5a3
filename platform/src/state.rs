//! Application state with `FromRef` substates, so a handler names only what it uses.

use std::sync::Arc;

use axum::extract::FromRef;
use tenancy::bootstrap::Tenancy;
use tenancy::catalog::Catalog;
use tenancy::credentials::ApiKeys;
use tenancy::dataplane::DataPlane;
use tenancy::provision::Provisioner;
use tenancy::resolve::Resolver;

use crate::extract::admin::AdminToken;

/// The router's state.
#[derive(Clone, Debug)]
pub struct AppState {
    pub tenancy: Arc<Tenancy>,
    pub admin_token: AdminToken,
    pub sso: sso::Sso,
}

macro_rules! substate {
    ($ty:ty, |$s:ident| $e:expr) => {
        impl FromRef<AppState> for $ty {
            fn from_ref($s: &AppState) -> Self {
                $e
            }
        }
    };
}

substate!(Catalog, |s| s.tenancy.catalog.clone());
substate!(DataPlane, |s| s.tenancy.dataplane.clone());
substate!(Resolver, |s| s.tenancy.resolver.clone());
substate!(Provisioner, |s| s.tenancy.provisioner.clone());
substate!(ApiKeys, |s| s.tenancy.api_keys.clone());
substate!(tenancy::auth::Auth, |s| s.tenancy.auth.clone());
substate!(sso::Sso, |s| s.sso.clone());
substate!(AdminToken, |s| s.admin_token.clone());
substate!(Arc<Tenancy>, |s| Arc::clone(&s.tenancy));
