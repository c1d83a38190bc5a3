//! Dunning, the customer-facing side of a failed payment (Stripe's Smart Retries do the
//! charging). Each step (`payment_failed` at once, `reminder` from 3 days before the grace
//! deadline, `final_notice` from 1 day before it, `restored` when an invoice is paid) is sent once
//! per past-due cycle: the tenant transaction records the notice (`billing_notices`, keyed by
//! cycle and step) and enqueues its email job, so either both exist or neither. Run right after
//! a payment event and by the `billing.dunning` schedule (which catches up anything missed).

use std::time::Duration;

use jobs::{JobKind, NewJob};
use tenancy::ids::TenantId;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Billing;
use crate::account::Account;

/// The email job kinds (rendered by the email crate's templates).
pub const KINDS: [&str; 4] = [
    "email.billing_payment_failed",
    "email.billing_reminder",
    "email.billing_final_notice",
    "email.billing_restored",
];

/// A dunning run failed.
#[derive(Debug, thiserror::Error)]
pub enum DunningError {
    #[error(transparent)]
    Account(#[from] crate::account::AccountError),
    #[error(transparent)]
    Catalog(#[from] tenancy::catalog::CatalogError),
    #[error(transparent)]
    Connect(#[from] tenancy::dataplane::ConnectError),
    #[error("the tenant database failed")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Enqueue(#[from] jobs::EnqueueError),
}

/// The key of a past-due cycle: when it began.
#[must_use]
pub fn cycle_key(since: OffsetDateTime) -> String {
    since.unix_timestamp().to_string()
}

/// The steps due for `a` at `now`: (cycle, step, job kind).
fn due_steps(a: &Account, now: OffsetDateTime) -> Vec<(String, &'static str, &'static str)> {
    let mut out = Vec::new();
    if matches!(a.status.as_str(), "past_due" | "unpaid")
        && let Some(since) = a.past_due_since
    {
        let cycle = cycle_key(since);
        out.push((cycle.clone(), "payment_failed", KINDS[0]));
        if let Some(g) = a.grace_until {
            if now >= g - time::Duration::days(3) {
                out.push((cycle.clone(), "reminder", KINDS[1]));
            }
            if now >= g - time::Duration::days(1) {
                out.push((cycle, "final_notice", KINDS[2]));
            }
        }
    } else if let Some(cycle) = &a.restored_cycle {
        out.push((cycle.clone(), "restored", KINDS[3]));
    }
    out
}

impl Billing {
    /// Sends whatever dunning step is due for `tenant` and not sent yet; returns how many.
    pub async fn run_dunning(&self, tenant: TenantId) -> Result<usize, DunningError> {
        let Some(t) = self.tenancy.catalog.tenant(tenant).await? else {
            return Ok(0);
        };
        let mut tx = self.tenancy.dataplane.connect(&t).await?.begin();
        let n = self.dunning_in(&mut tx, &t.name).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// [`Self::run_dunning`] inside the caller's tenant transaction (the scheduled job's).
    pub async fn dunning_in(
        &self,
        tx: &mut tenancy::dataplane::TenantTx,
        tenant_name: &str,
    ) -> Result<usize, DunningError> {
        let tenant = tx.tenant();
        let Some(a) = self.account(tenant).await? else {
            return Ok(0);
        };
        let now = self.now().await?;
        let mut sent = 0;
        for (cycle, step, kind) in due_steps(&a, now) {
            let fresh = tx
                .execute(
                    "INSERT INTO billing_notices (tenant_id, cycle, step) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&tenant.as_uuid(), &cycle, &step],
                )
                .await?
                == 1;
            if !fresh {
                continue;
            }
            let Some(recipient) = a.contact_email.clone() else {
                tracing::warn!(tenant.id = %tenant, step, "no billing contact: dunning email skipped");
                continue;
            };
            let deadline = a
                .grace_until
                .and_then(|g| g.format(&Rfc3339).ok())
                .unwrap_or_default();
            let payload = serde_json::json!({
                "recipient": recipient,
                "vars": {
                    "tenant_name": tenant_name,
                    "amount": a.amount_due.map(format_amount).unwrap_or_default(),
                    "currency": a.currency.clone().unwrap_or_default(),
                    "deadline": deadline,
                    "pay_url": a.pay_url.clone().unwrap_or_default(),
                }
            });
            let kind = JobKind::parse(kind).expect("the dunning kinds are valid names");
            let job = NewJob::new(kind, payload).unique(
                format!("billing:{cycle}:{step}"),
                Duration::from_secs(86_400),
            );
            jobs::enqueue(tx, job).await?;
            sent += 1;
            tracing::info!(tenant.id = %tenant, step, "dunning email enqueued");
        }
        Ok(sent)
    }
}

/// Minor units as a decimal amount (`1999` -> `19.99`).
fn format_amount(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, (minor % 100).abs())
}
