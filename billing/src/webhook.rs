//! `POST /webhooks/stripe`, the domain side: verify, then apply once.
//!
//! Verification is async-stripe's (`stripe_webhook::Webhook`): the `Stripe-Signature` header's
//! `t=` and every `v1=`, HMAC-SHA256 over `t.body` compared in constant time, and a 300 s
//! tolerance; each configured secret is tried in turn, so both the old and the new secret work
//! during a roll. Only a verified body is parsed.
//!
//! Applying: one control-plane transaction records the event id (`stripe_events`) and makes the
//! event's change, so a redelivered event finds its id and changes nothing, and a failed apply
//! records nothing (Stripe retries). Subscription events carry the whole object: an event no
//! newer than the state held (`stripe_version`, the `created` of the newest event applied) is
//! not applied as is; the subscription is fetched from Stripe instead, so the stored state
//! converges to Stripe's newest whatever the arrival order. That fetch happens before the
//! transaction, never with the account's row locked: its result is applied only if the row is
//! unchanged since (`xmin`), else fetched again. Unknown types are acknowledged.

use stripe_webhook::{EventObject, Webhook};
use tenancy::ids::TenantId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Billing;
use crate::api::StripeCallError;

/// A webhook delivery refused or not applied.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No `Stripe-Signature` header.
    #[error("the Stripe-Signature header is missing")]
    MissingSignature,
    /// No configured secret produced a matching `v1` signature (wrong secret, tampered body,
    /// malformed header), or the signature is older than the tolerance.
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the signature's timestamp is outside the 300 s tolerance")]
    Stale,
    /// Signed, but not an event async-stripe can read.
    #[error("the event does not parse: {0}")]
    BadPayload(String),
    /// No webhook secret is configured: every delivery is refused.
    #[error("no webhook secret is configured")]
    NotConfigured,
    #[error("the control plane failed")]
    Db(#[from] sqlx::Error),
    #[error("refetching from Stripe failed")]
    Stripe(#[from] StripeCallError),
    /// An older subscription event's refetch kept being overtaken by changes of the account.
    #[error("the account kept changing while its subscription was fetched")]
    Contended,
}

/// What a delivery did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied now (the event's type).
    Applied(String),
    /// Seen before: nothing changed.
    Duplicate,
    /// Acknowledged and ignored (a type this platform does not act on, or no known tenant).
    Ignored(String),
}

/// An event, verified and parsed.
pub(crate) struct Verified {
    pub(crate) event: stripe_webhook::Event,
}

impl Billing {
    /// Checks `signature` over the raw `payload` against each configured secret.
    pub(crate) fn verify(
        &self,
        payload: &str,
        signature: Option<&str>,
    ) -> Result<Verified, WebhookError> {
        let signature = signature.ok_or(WebhookError::MissingSignature)?;
        if self.secrets.is_empty() {
            return Err(WebhookError::NotConfigured);
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut last = WebhookError::BadSignature;
        for secret in &self.secrets {
            match Webhook::construct_event_with_timestamp(payload, signature, secret, now) {
                Ok(event) => return Ok(Verified { event }),
                Err(stripe_webhook::WebhookError::BadTimestamp(_)) => last = WebhookError::Stale,
                Err(stripe_webhook::WebhookError::BadParse(e)) => {
                    return Err(WebhookError::BadPayload(e));
                }
                Err(_) => {}
            }
        }
        Err(last)
    }

    /// Verifies and applies one delivery.
    #[tracing::instrument(skip_all)]
    pub async fn handle_webhook(
        &self,
        payload: &str,
        signature: Option<&str>,
    ) -> Result<Applied, WebhookError> {
        let Verified { event } = self.verify(payload, signature)?;
        self.apply(event).await
    }

    /// Applies a verified event once (also the reconciliation's entry point).
    ///
    /// A subscription event older than the state held needs Stripe's current object: it is
    /// fetched first, outside any transaction, and applied only if the account has not changed
    /// since it was read (its row version, `xmin`); otherwise it is fetched again. So no Stripe
    /// call ever waits with the account's row locked, and the state still converges.
    pub(crate) async fn apply(
        &self,
        event: stripe_webhook::Event,
    ) -> Result<Applied, WebhookError> {
        for _ in 0..APPLY_ATTEMPTS {
            let prefetched = self.prefetch(&event).await?;
            if let Step::Done(applied) = self.apply_once(&event, prefetched).await? {
                return Ok(applied);
            }
        }
        Err(WebhookError::Contended)
    }

    /// Stripe's current subscription, if `event` is a subscription event not yet recorded and
    /// no newer than the state held, with the account's row version when it was read.
    async fn prefetch(
        &self,
        event: &stripe_webhook::Event,
    ) -> Result<Option<Prefetched>, WebhookError> {
        let Some(sub) = subscription_of(&event.data.object) else {
            return Ok(None);
        };
        let held: Option<(i64, String, bool)> = sqlx::query_as(
            "SELECT stripe_version, xmin::text, EXISTS (SELECT 1 FROM stripe_events WHERE id = $2)
             FROM billing_accounts WHERE stripe_customer_id = $1",
        )
        .bind(sub.customer.id().as_str())
        .bind(event.id.as_str())
        .fetch_optional(self.pool())
        .await?;
        match held {
            Some((held, row_version, false)) if held > 0 && event.created <= held => {
                let current = self.fetch_subscription(sub.id.as_str()).await?;
                Ok(Some(Prefetched {
                    sub: current,
                    row_version,
                }))
            }
            _ => Ok(None),
        }
    }

    /// One attempt: records the event and makes its change in one transaction.
    async fn apply_once(
        &self,
        event: &stripe_webhook::Event,
        prefetched: Option<Prefetched>,
    ) -> Result<Step, WebhookError> {
        let id = event.id.as_str().to_owned();
        let kind = event.type_.as_str().to_owned();
        let created = event.created;
        let mut tx = self.pool().begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO stripe_events (id, type, created, outcome) VALUES ($1, $2, $3, 'pending')
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(&kind)
        .bind(created)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            tx.commit().await?;
            tracing::info!(stripe.event = %id, stripe.type = %kind, "duplicate Stripe event ignored");
            return Ok(Step::Done(Applied::Duplicate));
        }
        // Whether dunning is due after commit.
        let mut dunning = false;
        let tenant = if let Some(sub) = subscription_of(&event.data.object) {
            match self
                .apply_subscription(&mut tx, sub, created, prefetched)
                .await?
            {
                Converged::Applied(t) => Some(t),
                Converged::UnknownCustomer => None,
                Converged::Retry => {
                    tx.rollback().await?;
                    return Ok(Step::Retry);
                }
            }
        } else if let Some((invoice, paid)) = invoice_of(&event.data.object) {
            let tenant = lock_invoice_account(&mut tx, invoice).await?;
            if let Some(t) = tenant {
                dunning = if paid {
                    self.invoice_paid(&mut tx, t).await?
                } else {
                    self.payment_failed(&mut tx, t, invoice).await?;
                    true
                };
            }
            tenant
        } else {
            None
        };
        let outcome = if tenant.is_some() {
            "applied"
        } else {
            "ignored"
        };
        sqlx::query("UPDATE stripe_events SET outcome = $2, tenant_id = $3 WHERE id = $1")
            .bind(&id)
            .bind(outcome)
            .bind(tenant.map(|t| t.as_uuid()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // This instance at once (full access on the next request after `invoice.paid`); the
        // others by the catalog notification of the change.
        if tenant.is_some() {
            self.invalidate(tenant);
        }
        tracing::info!(stripe.event = %id, stripe.type = %kind, outcome, "Stripe event");
        // The customer-facing side runs after the state is committed; a failure here is caught
        // up by the dunning schedule (the notices are keyed, so nothing is sent twice).
        if let Some(t) = tenant
            && dunning
            && let Err(e) = self.run_dunning(t).await
        {
            tracing::warn!(tenant.id = %t, error = %e, "dunning after a Stripe event failed; the schedule retries");
        }
        Ok(Step::Done(if tenant.is_some() {
            Applied::Applied(kind)
        } else {
            Applied::Ignored(kind)
        }))
    }

    /// Converges the stored subscription to `sub` if `created` is newer than what is held, or
    /// to Stripe's current object (`prefetched`, if the account is as it was when that was
    /// fetched) otherwise; [`Converged::Retry`] if the current object is needed afresh.
    async fn apply_subscription(
        &self,
        tx: &mut sqlx::PgConnection,
        event_sub: &stripe_shared::Subscription,
        created: i64,
        prefetched: Option<Prefetched>,
    ) -> Result<Converged, WebhookError> {
        let customer = event_sub.customer.id().as_str().to_owned();
        let row: Option<(Uuid, i64, String)> = sqlx::query_as(
            "SELECT tenant_id, stripe_version, xmin::text FROM billing_accounts
             WHERE stripe_customer_id = $1 FOR UPDATE",
        )
        .bind(&customer)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((tenant, held, row_version)) = row else {
            tracing::warn!(stripe.customer = %customer, "subscription event for an unknown customer");
            return Ok(Converged::UnknownCustomer);
        };
        let tenant = TenantId::from_uuid(tenant);
        let (sub, version) = if held > 0 && created <= held {
            // Older than (or as old as) what is held: the event's copy may be stale. Stripe's
            // current copy is applied only if nothing changed the account since it was fetched.
            match &prefetched {
                Some(p) if p.row_version == row_version => (&p.sub, held),
                _ => return Ok(Converged::Retry),
            }
        } else {
            (event_sub, created)
        };
        let item = sub.items.data.first();
        let price = item.map(|i| i.price.id.as_str().to_owned());
        let period_end = item
            .map(|i| i.current_period_end)
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
        let plan: Option<(String, String)> = match &price {
            Some(p) => sqlx::query_as(
                "SELECT name, CASE WHEN stripe_price_yearly = $1 THEN 'yearly' ELSE 'monthly' END
                 FROM plans WHERE stripe_price_monthly = $1 OR stripe_price_yearly = $1",
            )
            .bind(p)
            .fetch_optional(&mut *tx)
            .await?,
            None => None,
        };
        let status = sub.status.as_str().to_owned();
        sqlx::query(
            "UPDATE billing_accounts SET
                subscription_id = $2, subscription_item_id = $3, status = $4,
                -- A scheduled downgrade keeps the current plan until its date.
                plan = CASE WHEN scheduled_plan IS NOT NULL AND scheduled_plan = $5
                            AND scheduled_at > now() THEN plan ELSE COALESCE($5, plan) END,
                billing_interval = COALESCE($6, billing_interval),
                current_period_end = $7, cancel_at_period_end = $8,
                past_due_since = CASE WHEN $4 IN ('past_due', 'unpaid') THEN past_due_since END,
                grace_until = CASE WHEN $4 IN ('past_due', 'unpaid') THEN grace_until END,
                suspend_at = CASE WHEN $4 IN ('past_due', 'unpaid') THEN suspend_at END,
                stripe_version = $9, updated_at = now()
             WHERE tenant_id = $1",
        )
        .bind(tenant.as_uuid())
        .bind(sub.id.as_str())
        .bind(item.map(|i| i.id.as_str().to_owned()))
        .bind(&status)
        .bind(plan.as_ref().map(|p| p.0.clone()))
        .bind(plan.as_ref().map(|p| p.1.clone()))
        .bind(period_end)
        .bind(sub.cancel_at_period_end)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        sync_catalog_plan(tx, tenant).await?;
        Ok(Converged::Applied(tenant))
    }

    /// A payment failed: past due, with the grace and restriction deadlines of the plan (set
    /// once per past-due cycle; a retry that fails again moves nothing).
    async fn payment_failed(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: TenantId,
        invoice: &stripe_shared::Invoice,
    ) -> Result<(), WebhookError> {
        sqlx::query(
            "UPDATE billing_accounts a SET
                status = CASE WHEN a.status IN ('active', 'trialing', 'none', 'incomplete') THEN 'past_due' ELSE a.status END,
                past_due_since = COALESCE(a.past_due_since, now()),
                grace_until = COALESCE(a.grace_until, now() + make_interval(days => p.grace_days)),
                suspend_at = COALESCE(a.suspend_at,
                    now() + make_interval(days => p.grace_days + p.restriction_days)),
                amount_due = $2, currency = $3, pay_url = COALESCE($4, a.pay_url),
                contact_email = COALESCE(a.contact_email, $5), updated_at = now()
             FROM (SELECT COALESCE((SELECT grace_days FROM plans WHERE name = b.plan), 7) AS grace_days,
                          COALESCE((SELECT restriction_days FROM plans WHERE name = b.plan), 14) AS restriction_days
                   FROM billing_accounts b WHERE b.tenant_id = $1) p
             WHERE a.tenant_id = $1",
        )
        .bind(tenant.as_uuid())
        .bind(invoice.amount_due)
        .bind(invoice.currency.to_string())
        .bind(invoice.hosted_invoice_url.as_deref())
        .bind(invoice.customer_email.as_deref())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// An invoice was paid: full access at once, deadlines cleared. Whether it ended a past-due
    /// cycle (its `restored` notice is due).
    async fn invoice_paid(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: TenantId,
    ) -> Result<bool, WebhookError> {
        let was_past_due: Option<OffsetDateTime> =
            sqlx::query_scalar("SELECT past_due_since FROM billing_accounts WHERE tenant_id = $1")
                .bind(tenant.as_uuid())
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query(
            "UPDATE billing_accounts SET
                status = CASE WHEN status IN ('past_due', 'unpaid', 'incomplete') THEN 'active' ELSE status END,
                past_due_since = NULL, grace_until = NULL, suspend_at = NULL,
                restored_cycle = COALESCE($2, restored_cycle), updated_at = now()
             WHERE tenant_id = $1",
        )
        .bind(tenant.as_uuid())
        .bind(was_past_due.map(crate::dunning::cycle_key))
        .execute(&mut *tx)
        .await?;
        Ok(was_past_due.is_some())
    }
}

/// How often an older subscription event is fetched afresh while the account keeps changing
/// before the delivery is refused (503: Stripe delivers it again later).
const APPLY_ATTEMPTS: usize = 3;

/// Stripe's current subscription, fetched before the transaction, and the account's row version
/// (`xmin`) when it was fetched.
struct Prefetched {
    sub: stripe_shared::Subscription,
    row_version: String,
}

/// Where an attempt ended.
enum Step {
    /// Finished (the delivery's answer).
    Done(Applied),
    /// The account changed after Stripe was asked: ask again.
    Retry,
}

/// Where converging a subscription ended.
enum Converged {
    Applied(TenantId),
    UnknownCustomer,
    /// The account changed after Stripe was asked (or Stripe was not asked): ask again.
    Retry,
}

/// The subscription a subscription event carries.
fn subscription_of(o: &EventObject) -> Option<&stripe_shared::Subscription> {
    match o {
        EventObject::CustomerSubscriptionCreated(s)
        | EventObject::CustomerSubscriptionUpdated(s)
        | EventObject::CustomerSubscriptionDeleted(s)
        | EventObject::CustomerSubscriptionPaused(s)
        | EventObject::CustomerSubscriptionResumed(s) => Some(&**s),
        _ => None,
    }
}

/// The invoice an invoice event carries, and whether it was paid (else its payment failed).
fn invoice_of(o: &EventObject) -> Option<(&stripe_shared::Invoice, bool)> {
    match o {
        EventObject::InvoicePaid(i) => Some((&**i, true)),
        EventObject::InvoicePaymentFailed(i) => Some((&**i, false)),
        _ => None,
    }
}

/// The account an invoice's customer maps to, locked for this transaction.
async fn lock_invoice_account(
    tx: &mut sqlx::PgConnection,
    invoice: &stripe_shared::Invoice,
) -> Result<Option<TenantId>, sqlx::Error> {
    let Some(customer) = invoice.customer.as_ref().map(|c| c.id()) else {
        return Ok(None);
    };
    let row: Option<Uuid> = sqlx::query_scalar(
        "SELECT tenant_id FROM billing_accounts WHERE stripe_customer_id = $1 FOR UPDATE",
    )
    .bind(customer.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(TenantId::from_uuid))
}

/// The tenant's catalog plan (which drives its rate limits, retention and seat limit) follows
/// the plan in effect; the catalog's trigger audits and publishes the change. Whether it changed.
pub(crate) async fn sync_catalog_plan(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE tenants t SET plan = e.plan FROM (
             SELECT CASE
                 WHEN status IN ('canceled', 'incomplete_expired') THEN 'free'
                 WHEN status = 'granted' AND grant_until IS NOT NULL AND grant_until <= now() THEN 'free'
                 WHEN scheduled_plan IS NOT NULL AND scheduled_at <= now() THEN scheduled_plan
                 ELSE plan END AS plan
             FROM billing_accounts WHERE tenant_id = $1) e
         WHERE t.id = $1 AND t.plan IS DISTINCT FROM e.plan",
    )
    .bind(tenant.as_uuid())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1)
}
