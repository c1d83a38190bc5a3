//! Application state with `FromRef` substates, so a handler names only what it uses.

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::FromRef;
use identity::Identity;
use identity::credentials::ApiKeys;
use limits::RateLimits;
use tenancy::bootstrap::Tenancy;
use tenancy::catalog::Catalog;
use tenancy::dataplane::DataPlane;
use tenancy::provision::Provisioner;
use tenancy::resolve::Resolver;

use crate::extract::admin::AdminToken;

/// The router's state: one `Arc`, so the per-request clones that axum makes (every
/// `from_fn_with_state` layer, every `State` extractor) are one reference count each, not one
/// per cache and pool inside it.
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What the router's state holds.
#[derive(Clone, Debug)]
pub struct AppParts {
    pub tenancy: Arc<Tenancy>,
    pub identity: Identity,
    pub limits: RateLimits,
    pub admin_token: AdminToken,
    pub sso: sso::Sso,
    /// Feature flags in this instance's environment (kept current by `flags::store::listen`).
    pub flags: Arc<flags::Flags>,
    /// This instance's metrics (recorded by the observe middleware).
    pub metrics: crate::metrics::Metrics,
    /// Transactional email: templates, transports, DKIM, suppressions.
    pub mailer: email::Mailer,
    /// Billing with Stripe (the 402 gate, the billing routes, the webhook).
    pub billing: Arc<billing::Billing>,
}

impl AppState {
    /// The same state with other metrics (the benchmarks compare metrics off and on).
    #[must_use]
    pub fn with_metrics(&self, metrics: crate::metrics::Metrics) -> Self {
        let mut parts = (*self.0).clone();
        parts.metrics = metrics;
        Self(Arc::new(parts))
    }

    /// The state over a started tenancy core: the identity services (JWT keys loaded), the rate
    /// limiters and the SSO services.
    pub async fn build(tenancy: Arc<Tenancy>, admin_token: &str) -> anyhow::Result<Self> {
        Self::build_with_dns(
            tenancy,
            admin_token,
            Arc::new(sso::domains::dns::SystemResolver),
        )
        .await
    }

    /// [`Self::build`] with another TXT resolver for the verified-domain check.
    pub async fn build_with_dns(
        tenancy: Arc<Tenancy>,
        admin_token: &str,
        dns: Arc<dyn sso::domains::dns::TxtResolver>,
    ) -> anyhow::Result<Self> {
        let identity = Identity::start(&tenancy)
            .await
            .context("loading the JWT signing keys")?;
        let sso = sso::Sso::new(
            tenancy.resolver.base_domain().as_str(),
            sso::egress::Egress {
                allow_private_networks: tenancy.allow_private_egress,
            },
            sso::domains::Domains::new(
                tenancy.catalog.clone(),
                dns,
                tenancy.resolver.base_domain().as_str(),
            ),
        )
        .context("SSO services")?;
        let flags = Arc::new(flags::Flags::new(&tenancy.environment));
        let mailer = email::Mailer::new(&tenancy).context("email transports")?;
        Ok(Self(Arc::new(AppParts {
            mailer,
            billing: Arc::new(billing::Billing::new(Arc::clone(&tenancy)).context("billing")?),
            limits: RateLimits::new(tenancy.limits.clone()),
            identity,
            metrics: crate::metrics::Metrics::new(
                &tenancy.metrics,
                tenancy.dataplane.clone(),
                tenancy.catalog.pool().clone(),
                Arc::clone(&flags),
            ),
            flags,
            tenancy,
            admin_token: AdminToken::new(admin_token),
            sso,
        })))
    }
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
substate!(tenancy::placement::Mover, |s| s.tenancy.mover.clone());
substate!(ApiKeys, |s| s.identity.api_keys.clone());
substate!(identity::Auth, |s| s.identity.auth.clone());
substate!(Identity, |s| s.identity.clone());
substate!(RateLimits, |s| s.limits.clone());
substate!(sso::Sso, |s| s.sso.clone());
substate!(AdminToken, |s| s.admin_token.clone());
substate!(Arc<flags::Flags>, |s| Arc::clone(&s.flags));
substate!(Arc<Tenancy>, |s| Arc::clone(&s.tenancy));
substate!(tenancy::bootstrap::CatalogCaches, |s| s.tenancy.caches());
substate!(email::Mailer, |s| s.mailer.clone());
substate!(Arc<billing::Billing>, |s| Arc::clone(&s.billing));
