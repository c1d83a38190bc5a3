//! Billing with Stripe (issue 19). No HTTP: the platform's routes call into this crate.
//!
//! - [`webhook`]: `Stripe-Signature` checked over the raw body (every `v1`, both secrets during a
//!   roll, 300 s), then the event applied in one control-plane transaction with its id recorded,
//!   so a redelivery changes nothing; an event older than the state held triggers a refetch of
//!   the object, so the state converges to Stripe's newest whatever the arrival order.
//! - [`account`]: the billing account (control plane, `billing_accounts`) and the entitlements
//!   derived from plan and subscription state: full, grace, restricted (read-only), suspended.
//! - [`gate`]: the standing on the request path (cached per tenant) and what each standing
//!   allows.
//! - [`dunning`]: the customer-facing side of a failed payment: one email job per step and
//!   past-due cycle, enqueued in the tenant transaction that records the notice.
//! - [`api`]: the calls to Stripe's API (checkout, portal, plan change, preview, refetch).
//! - [`usage`]: the metered dimension (tasks created), reported per closed period by a job.
//! - [`quota`]: the plan's quota on it (tasks per month), checked where a task is created.
//! - [`reconcile`]: undelivered events fetched from `GET /v1/events` after an outage.
//! - [`jobs`]: the job kinds this crate registers.

pub mod account;
pub mod api;
pub mod dunning;
pub mod gate;
pub mod jobs;
pub mod manage;
pub mod quota;
pub mod reconcile;
pub mod usage;
pub mod webhook;

use std::sync::Arc;

use tenancy::bootstrap::Tenancy;
use tenancy::settings::StripeSettings;

pub use account::{Account, Entitlement, Standing};
pub use webhook::{Applied, WebhookError};

/// The billing services: the control-plane pool (through `tenancy`), the Stripe client (when a
/// secret key is configured) and the webhook secrets.
#[derive(Clone)]
pub struct Billing {
    tenancy: Arc<Tenancy>,
    stripe: Option<stripe::Client>,
    secrets: Vec<String>,
    gate: gate::GateCache,
    quotas: quota::QuotaCache,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing")
            .field("stripe", &self.stripe.is_some())
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// Building the Stripe client failed.
#[derive(Debug, thiserror::Error)]
#[error("building the Stripe client: {0}")]
pub struct SetupError(String);

impl Billing {
    /// The services over a started tenancy core (Stripe settings from `tenancy.stripe`).
    pub fn new(tenancy: Arc<Tenancy>) -> Result<Self, SetupError> {
        let settings: &StripeSettings = &tenancy.stripe;
        let stripe = match &settings.secret_key {
            None => None,
            Some(key) => {
                let mut b = stripe::ClientBuilder::new(key.expose())
                    .timeout(std::time::Duration::from_secs(20));
                if let Some(base) = &settings.api_base {
                    b = b.url(base.clone());
                }
                Some(b.build().map_err(|e| SetupError(e.to_string()))?)
            }
        };
        let secrets = settings
            .webhook_secrets
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        Ok(Self {
            tenancy,
            stripe,
            secrets,
            gate: gate::GateCache::new(),
            quotas: quota::QuotaCache::new(),
        })
    }

    /// The control-plane pool.
    fn pool(&self) -> &sqlx::PgPool {
        self.tenancy.catalog.pool()
    }

    /// The Stripe client, if billing through Stripe is configured.
    fn stripe(&self) -> Result<&stripe::Client, api::StripeCallError> {
        self.stripe
            .as_ref()
            .ok_or(api::StripeCallError::NotConfigured)
    }
}
