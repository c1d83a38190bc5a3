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
//! converges to Stripe's newest whatever the arrival order. Unknown types are acknowledged.

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
    pub(crate) async fn apply(
        &self,
        event: stripe_webhook::Event,
    ) -> Result<Applied, WebhookError> {
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
            return Ok(Applied::Duplicate);
        }
        let mut effects = Effects::default();
        let tenant = match event.data.object {
            EventObject::CustomerSubscriptionCreated(s)
            | EventObject::CustomerSubscriptionUpdated(s)
            | EventObject::CustomerSubscriptionDeleted(s)
            | EventObject::CustomerSubscriptionPaused(s)
            | EventObject::CustomerSubscriptionResumed(s) => {
                self.apply_subscription(&mut tx, *s, created).await?
            }
            EventObject::InvoicePaymentFailed(i) => {
                self.payment_failed(&mut tx, &i, &mut effects).await?
            }
            EventObject::InvoicePaid(i) => self.invoice_paid(&mut tx, &i, &mut effects).await?,
            _ => None,
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
        tracing::info!(stripe.event = %id, stripe.type = %kind, outcome, "Stripe event");
        // The customer-facing side runs after the state is committed; a failure here is caught
        // up by the dunning schedule (the notices are keyed, so nothing is sent twice).
        if let Some(t) = tenant
            && effects.dunning
            && let Err(e) = self.run_dunning(t).await
        {
            tracing::warn!(tenant.id = %t, error = %e, "dunning after a Stripe event failed; the schedule retries");
        }
        Ok(if tenant.is_some() {
            Applied::Applied(kind)
        } else {
            Applied::Ignored(kind)
        })
    }

    /// Converges the stored subscription to `sub` if `created` is newer than what is held, or
    /// to Stripe's current object otherwise.
    async fn apply_subscription(
        &self,
        tx: &mut sqlx::PgConnection,
        sub: stripe_shared::Subscription,
        created: i64,
    ) -> Result<Option<TenantId>, WebhookError> {
        let customer = sub.customer.id().as_str().to_owned();
        let Some((tenant, held)) = lock_by_customer(tx, &customer).await? else {
            tracing::warn!(stripe.customer = %customer, "subscription event for an unknown customer");
            return Ok(None);
        };
        let (sub, version) = if held > 0 && created <= held {
            // Older than (or as old as) what is held: the event's copy may be stale.
            let current = self.fetch_subscription(sub.id.as_str()).await?;
            (current, held)
        } else {
            (sub, created)
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
        Ok(Some(tenant))
    }

    /// A payment failed: past due, with the grace and restriction deadlines of the plan (set
    /// once per past-due cycle; a retry that fails again moves nothing).
    async fn payment_failed(
        &self,
        tx: &mut sqlx::PgConnection,
        invoice: &stripe_shared::Invoice,
        effects: &mut Effects,
    ) -> Result<Option<TenantId>, WebhookError> {
        let Some(customer) = invoice
            .customer
            .as_ref()
            .map(|c| c.id().as_str().to_owned())
        else {
            return Ok(None);
        };
        let Some((tenant, _)) = lock_by_customer(tx, &customer).await? else {
            return Ok(None);
        };
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
        effects.dunning = true;
        Ok(Some(tenant))
    }

    /// An invoice was paid: full access at once, deadlines cleared.
    async fn invoice_paid(
        &self,
        tx: &mut sqlx::PgConnection,
        invoice: &stripe_shared::Invoice,
        effects: &mut Effects,
    ) -> Result<Option<TenantId>, WebhookError> {
        let Some(customer) = invoice
            .customer
            .as_ref()
            .map(|c| c.id().as_str().to_owned())
        else {
            return Ok(None);
        };
        let Some((tenant, _)) = lock_by_customer(tx, &customer).await? else {
            return Ok(None);
        };
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
        effects.dunning = was_past_due.is_some();
        Ok(Some(tenant))
    }
}

/// What to do after commit.
#[derive(Default)]
struct Effects {
    dunning: bool,
}

/// The account of a Stripe customer, locked for this transaction, with its held version.
async fn lock_by_customer(
    tx: &mut sqlx::PgConnection,
    customer: &str,
) -> Result<Option<(TenantId, i64)>, sqlx::Error> {
    let row: Option<(Uuid, i64)> = sqlx::query_as(
        "SELECT tenant_id, stripe_version FROM billing_accounts
         WHERE stripe_customer_id = $1 FOR UPDATE",
    )
    .bind(customer)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|(t, v)| (TenantId::from_uuid(t), v)))
}

/// The tenant's catalog plan (which drives its rate limits and retention) follows the plan in
/// effect; the catalog's trigger audits and publishes the change.
pub(crate) async fn sync_catalog_plan(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
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
    .await?;
    Ok(())
}
