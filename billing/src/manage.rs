//! What tenant admins and operators do: start a subscription (Checkout), manage payment
//! methods (Billing Portal), change plan (upgrade now with proration, downgrade at period end,
//! preview first), and an operator's grant of a plan without Stripe.

use tenancy::ids::TenantId;
use time::OffsetDateTime;

use crate::Billing;
use crate::api::{Preview, Proration, StripeCallError};

/// A billing action refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("no such plan")]
    UnknownPlan,
    #[error("that plan has no Stripe price for this interval")]
    NoPrice,
    #[error("the tenant has no Stripe subscription")]
    NoSubscription,
    #[error("the tenant has no Stripe customer yet")]
    NoCustomer,
    #[error("the tenant is already on that plan")]
    SamePlan,
    #[error("no such tenant")]
    UnknownTenant,
    #[error(transparent)]
    Stripe(#[from] StripeCallError),
    #[error("the control plane failed")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Catalog(#[from] tenancy::catalog::CatalogError),
}

/// A plan's price and rank.
#[derive(Clone, Debug, sqlx::FromRow)]
struct PlanPrice {
    price: Option<String>,
    rank: i32,
}

/// A planned plan change.
#[derive(Clone, Debug)]
pub struct PlanChange {
    pub plan: String,
    pub proration: Proration,
    /// When it takes effect (now for an upgrade, the period end for a downgrade).
    pub effective_at: Option<OffsetDateTime>,
}

impl Billing {
    async fn plan_price(&self, plan: &str, interval: &str) -> Result<PlanPrice, ManageError> {
        sqlx::query_as::<_, PlanPrice>(
            "SELECT CASE WHEN $2 = 'yearly' THEN stripe_price_yearly ELSE stripe_price_monthly END AS price,
                    rank FROM plans WHERE name = $1",
        )
        .bind(plan)
        .bind(interval)
        .fetch_optional(self.pool())
        .await?
        .ok_or(ManageError::UnknownPlan)
    }

    /// The account's Stripe customer, created (with the billing contact) on first use.
    async fn ensure_customer(
        &self,
        tenant: TenantId,
        contact_email: &str,
    ) -> Result<String, ManageError> {
        if let Some(c) = self
            .account(tenant)
            .await
            .map_err(|e| ManageError::Db(e.0))?
            .and_then(|a| a.stripe_customer_id)
        {
            return Ok(c);
        }
        let t = self
            .tenancy
            .catalog
            .tenant(tenant)
            .await?
            .ok_or(ManageError::UnknownTenant)?;
        let customer = self.create_customer(tenant, contact_email, &t.name).await?;
        sqlx::query(
            "INSERT INTO billing_accounts (tenant_id, stripe_customer_id, contact_email, plan)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id) DO UPDATE SET
                stripe_customer_id = COALESCE(billing_accounts.stripe_customer_id, EXCLUDED.stripe_customer_id),
                contact_email = COALESCE(billing_accounts.contact_email, EXCLUDED.contact_email)",
        )
        .bind(tenant.as_uuid())
        .bind(&customer)
        .bind(contact_email)
        .bind(&t.plan)
        .execute(self.pool())
        .await?;
        self.invalidate(Some(tenant));
        Ok(customer)
    }

    /// Records a billing action that changes no row here (a Checkout or Portal session handed
    /// out) in the operators' audit trail, with the request's context (the pool sets it).
    async fn audit_session(
        &self,
        tenant: TenantId,
        action: &str,
        summary: serde_json::Value,
    ) -> Result<(), ManageError> {
        sqlx::query(
            "SELECT platform_admin_audit_append($1, $2, 'tenant', $1::text, 'success', $3)",
        )
        .bind(tenant.as_uuid())
        .bind(action)
        .bind(summary)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A Checkout session for `plan` (`monthly`/`yearly`); returns its URL.
    pub async fn start_checkout(
        &self,
        tenant: TenantId,
        contact_email: &str,
        plan: &str,
        interval: &str,
        return_base: &str,
    ) -> Result<String, ManageError> {
        let price = self
            .plan_price(plan, interval)
            .await?
            .price
            .ok_or(ManageError::NoPrice)?;
        let customer = self.ensure_customer(tenant, contact_email).await?;
        let url = self
            .checkout_session(
                &customer,
                tenant,
                &price,
                &format!("{return_base}?checkout=success"),
                &format!("{return_base}?checkout=cancel"),
            )
            .await?;
        self.audit_session(
            tenant,
            "billing_checkout.started",
            serde_json::json!({ "plan": plan, "interval": interval }),
        )
        .await?;
        Ok(url)
    }

    /// A Billing Portal session; returns its URL.
    pub async fn open_portal(
        &self,
        tenant: TenantId,
        return_url: &str,
    ) -> Result<String, ManageError> {
        let customer = self
            .account(tenant)
            .await
            .map_err(|e| ManageError::Db(e.0))?
            .and_then(|a| a.stripe_customer_id)
            .ok_or(ManageError::NoCustomer)?;
        let url = self.portal_session(&customer, return_url).await?;
        // It changes nothing here, but hands out access to payment details.
        self.audit_session(tenant, "billing_portal.opened", serde_json::json!({}))
            .await?;
        Ok(url)
    }

    /// What a change to `plan` would be: direction, price, subscription ids.
    async fn plan_change(
        &self,
        tenant: TenantId,
        plan: &str,
    ) -> Result<(crate::Account, String, Proration), ManageError> {
        let a = self
            .account(tenant)
            .await
            .map_err(|e| ManageError::Db(e.0))?
            .filter(|a| a.subscription_id.is_some() && a.subscription_item_id.is_some())
            .ok_or(ManageError::NoSubscription)?;
        if a.plan == plan {
            return Err(ManageError::SamePlan);
        }
        let target = self.plan_price(plan, &a.billing_interval).await?;
        let current = self.plan_price(&a.plan, &a.billing_interval).await?;
        let price = target.price.ok_or(ManageError::NoPrice)?;
        let proration = if target.rank > current.rank {
            Proration::Now
        } else {
            Proration::AtPeriodEnd
        };
        Ok((a, price, proration))
    }

    /// The prorated amount of a change to `plan`, before it is made.
    pub async fn preview_plan(&self, tenant: TenantId, plan: &str) -> Result<Preview, ManageError> {
        let (a, price, proration) = self.plan_change(tenant, plan).await?;
        let (Some(customer), Some(sub), Some(item)) = (
            &a.stripe_customer_id,
            &a.subscription_id,
            &a.subscription_item_id,
        ) else {
            return Err(ManageError::NoSubscription);
        };
        Ok(self
            .preview_price(customer, sub, item, &price, proration)
            .await?)
    }

    /// Changes plan: an upgrade at once, prorated and invoiced now (`always_invoice`); a
    /// downgrade from the period end (Stripe: `proration_behavior=none`, so the new price is
    /// charged from the next invoice; here: the current plan stays in effect until then).
    pub async fn change_plan(
        &self,
        tenant: TenantId,
        plan: &str,
    ) -> Result<PlanChange, ManageError> {
        let (a, price, proration) = self.plan_change(tenant, plan).await?;
        let (Some(sub), Some(item)) = (&a.subscription_id, &a.subscription_item_id) else {
            return Err(ManageError::NoSubscription);
        };
        self.change_price(sub, item, &price, proration).await?;
        let mut tx = self.pool().begin().await?;
        let effective_at = match proration {
            Proration::Now => {
                sqlx::query(
                    "UPDATE billing_accounts SET plan = $2, scheduled_plan = NULL, scheduled_at = NULL,
                        updated_at = now() WHERE tenant_id = $1",
                )
                .bind(tenant.as_uuid())
                .bind(plan)
                .execute(&mut *tx)
                .await?;
                None
            }
            Proration::AtPeriodEnd => {
                sqlx::query(
                    "UPDATE billing_accounts SET scheduled_plan = $2,
                        scheduled_at = COALESCE(current_period_end, now()), updated_at = now()
                     WHERE tenant_id = $1",
                )
                .bind(tenant.as_uuid())
                .bind(plan)
                .execute(&mut *tx)
                .await?;
                a.current_period_end
            }
        };
        crate::webhook::sync_catalog_plan(&mut tx, tenant).await?;
        tx.commit().await?;
        self.invalidate(Some(tenant));
        if proration == Proration::AtPeriodEnd {
            // The downgrade applies at its date even if no event arrives then; the hourly
            // `billing.period_end` schedule catches up if this enqueue is lost.
            let at = effective_at.unwrap_or_else(OffsetDateTime::now_utc);
            if let Err(e) = self.enqueue_period_end(tenant, at).await {
                tracing::warn!(tenant.id = %tenant, error = %e, "the period-end job was not enqueued; the schedule catches up");
            }
        }
        Ok(PlanChange {
            plan: plan.to_owned(),
            proration,
            effective_at,
        })
    }

    /// An operator's grant of `plan` without Stripe (enterprise contract, trial), until a date
    /// or open-ended.
    pub async fn grant(
        &self,
        tenant: TenantId,
        plan: &str,
        until: Option<OffsetDateTime>,
    ) -> Result<(), ManageError> {
        self.plan_price(plan, "monthly").await?;
        if self.tenancy.catalog.tenant(tenant).await?.is_none() {
            return Err(ManageError::UnknownTenant);
        }
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO billing_accounts (tenant_id, status, plan, grant_until) VALUES ($1, 'granted', $2, $3)
             ON CONFLICT (tenant_id) DO UPDATE SET status = 'granted', plan = $2, grant_until = $3,
                past_due_since = NULL, grace_until = NULL, suspend_at = NULL,
                scheduled_plan = NULL, scheduled_at = NULL, updated_at = now()",
        )
        .bind(tenant.as_uuid())
        .bind(plan)
        .bind(until)
        .execute(&mut *tx)
        .await?;
        crate::webhook::sync_catalog_plan(&mut tx, tenant).await?;
        tx.commit().await?;
        self.invalidate(Some(tenant));
        Ok(())
    }

    /// Enqueues the tenant's `billing.period_end` job for `at`.
    async fn enqueue_period_end(
        &self,
        tenant: TenantId,
        at: OffsetDateTime,
    ) -> Result<(), crate::dunning::DunningError> {
        let Some(t) = self.tenancy.catalog.tenant(tenant).await? else {
            return Ok(());
        };
        let mut tx = self.tenancy.dataplane.connect(&t).await?.begin();
        let kind = jobs::JobKind::parse(PERIOD_END).expect("a valid kind name");
        jobs::enqueue(
            &mut tx,
            jobs::NewJob::new(kind, serde_json::json!({})).run_at(at),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies what a date brought: a scheduled plan change whose date has come becomes the
    /// account's plan, and the catalog's plan follows the plan in effect (an ended grant gives
    /// the free plan). Run by the `billing.period_end` job at a downgrade's date and by its
    /// hourly schedule for every tenant; returns whether anything changed.
    pub async fn apply_due_changes(&self, tenant: TenantId) -> Result<bool, ManageError> {
        let mut tx = self.pool().begin().await?;
        let folded = sqlx::query(
            "UPDATE billing_accounts SET plan = scheduled_plan, scheduled_plan = NULL,
                scheduled_at = NULL, updated_at = now()
             WHERE tenant_id = $1 AND scheduled_plan IS NOT NULL AND scheduled_at <= now()",
        )
        .bind(tenant.as_uuid())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let synced = crate::webhook::sync_catalog_plan(&mut tx, tenant).await?;
        tx.commit().await?;
        if folded || synced {
            self.invalidate(Some(tenant));
            tracing::info!(tenant.id = %tenant, "scheduled plan change applied");
        }
        Ok(folded || synced)
    }
}

/// The job kind that applies a scheduled plan change at its date.
pub const PERIOD_END: &str = "billing.period_end";
