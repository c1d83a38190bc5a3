//! The billing account (control plane) and what it entitles the tenant to.
//!
//! Entitlements are separate from payment status: a tenant keeps its plan's entitlements while
//! `active`/`trialing`, and while `past_due` until `grace_until`; then it is restricted (reads
//! work, writes answer 402 with a link to pay) until `suspend_at`, then suspended. A canceled
//! subscription falls back to the free plan. Deadlines are stored values compared with the
//! database's `now()`, so moving one (an operator's extension, a test's clock) is one UPDATE.

use serde::Serialize;
use tenancy::ids::TenantId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Billing;

/// A tenant's billing account, as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Account {
    pub tenant_id: Uuid,
    pub stripe_customer_id: Option<String>,
    pub contact_email: Option<String>,
    pub subscription_id: Option<String>,
    pub subscription_item_id: Option<String>,
    pub status: String,
    pub plan: String,
    pub billing_interval: String,
    pub current_period_end: Option<OffsetDateTime>,
    pub cancel_at_period_end: bool,
    pub scheduled_plan: Option<String>,
    pub scheduled_at: Option<OffsetDateTime>,
    pub grant_until: Option<OffsetDateTime>,
    pub past_due_since: Option<OffsetDateTime>,
    pub grace_until: Option<OffsetDateTime>,
    pub suspend_at: Option<OffsetDateTime>,
    pub amount_due: Option<i64>,
    pub currency: Option<String>,
    pub pay_url: Option<String>,
    /// The past-due cycle that a paid invoice ended (its `restored` notice is due).
    pub restored_cycle: Option<String>,
    pub stripe_version: i64,
}

/// Where a tenant stands, derived from its account and the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// The plan's entitlements (active, trialing, granted, or no paid subscription: free).
    Full,
    /// Past due, inside the grace period: full access, with warnings.
    Grace,
    /// Past due after grace: reads work, writes answer 402.
    Restricted,
    /// Past due after the restriction period: only billing routes work.
    Suspended,
}

/// What the tenant may do now.
#[derive(Clone, Debug)]
pub struct Entitlement {
    pub standing: Standing,
    /// The plan whose entitlements apply (free after a cancellation took effect).
    pub plan: String,
    /// Where to pay, for the 402 problem.
    pub pay_url: Option<String>,
}

/// Reading the account failed.
#[derive(Debug, thiserror::Error)]
#[error("reading the billing account failed")]
pub struct AccountError(#[from] pub sqlx::Error);

/// The columns of [`Account`].
pub(crate) const COLUMNS: &str = "tenant_id, stripe_customer_id, contact_email, subscription_id, \
    subscription_item_id, status, plan, billing_interval, current_period_end, cancel_at_period_end, \
    scheduled_plan, scheduled_at, grant_until, past_due_since, grace_until, suspend_at, amount_due, \
    currency, pay_url, restored_cycle, stripe_version";

impl Account {
    /// The plan in effect at `now`: a scheduled downgrade applies from its date, an ended grant
    /// or a canceled subscription leaves the free plan.
    #[must_use]
    pub fn effective_plan(&self, now: OffsetDateTime) -> String {
        if self.status == "canceled" || self.status == "incomplete_expired" {
            return "free".into();
        }
        if self.status == "granted" && self.grant_until.is_some_and(|u| now >= u) {
            return "free".into();
        }
        if let (Some(p), Some(at)) = (&self.scheduled_plan, self.scheduled_at)
            && now >= at
        {
            return p.clone();
        }
        self.plan.clone()
    }

    /// Where the tenant stands at `now`.
    #[must_use]
    pub fn standing(&self, now: OffsetDateTime) -> Standing {
        if !matches!(self.status.as_str(), "past_due" | "unpaid") {
            return Standing::Full;
        }
        match (self.grace_until, self.suspend_at) {
            (_, Some(s)) if now >= s => Standing::Suspended,
            (Some(g), _) if now >= g => Standing::Restricted,
            _ => Standing::Grace,
        }
    }

    /// The entitlement at `now`.
    #[must_use]
    pub fn entitlement(&self, now: OffsetDateTime) -> Entitlement {
        Entitlement {
            standing: self.standing(now),
            plan: self.effective_plan(now),
            pay_url: self.pay_url.clone(),
        }
    }
}

impl Billing {
    /// The tenant's account, if it has one (a tenant without one is on its catalog plan, in
    /// full standing).
    pub async fn account(&self, tenant: TenantId) -> Result<Option<Account>, AccountError> {
        Ok(sqlx::query_as::<_, Account>(&format!(
            "SELECT {COLUMNS} FROM billing_accounts WHERE tenant_id = $1"
        ))
        .bind(tenant.as_uuid())
        .fetch_optional(self.pool())
        .await?)
    }

    /// The members a plan allows (`None`: unbounded).
    pub async fn seats(&self, plan: &str) -> Result<Option<i32>, AccountError> {
        Ok(
            sqlx::query_scalar("SELECT seats FROM plans WHERE name = $1")
                .bind(plan)
                .fetch_optional(self.pool())
                .await?
                .flatten(),
        )
    }

    /// The database's clock (deadlines are compared with it).
    pub async fn now(&self) -> Result<OffsetDateTime, AccountError> {
        Ok(sqlx::query_scalar("SELECT now()")
            .fetch_one(self.pool())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(status: &str) -> Account {
        Account {
            tenant_id: Uuid::nil(),
            stripe_customer_id: None,
            contact_email: None,
            subscription_id: None,
            subscription_item_id: None,
            status: status.into(),
            plan: "pro".into(),
            billing_interval: "monthly".into(),
            current_period_end: None,
            cancel_at_period_end: false,
            scheduled_plan: None,
            scheduled_at: None,
            grant_until: None,
            past_due_since: None,
            grace_until: None,
            suspend_at: None,
            amount_due: None,
            currency: None,
            pay_url: None,
            restored_cycle: None,
            stripe_version: 0,
        }
    }

    #[test]
    fn past_due_goes_from_grace_to_restricted_to_suspended() {
        let now = OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let mut a = account("past_due");
        a.grace_until = Some(now + day);
        a.suspend_at = Some(now + 2 * day);
        assert_eq!(a.standing(now), Standing::Grace);
        assert_eq!(a.standing(now + day), Standing::Restricted);
        assert_eq!(a.standing(now + 2 * day), Standing::Suspended);
        assert_eq!(account("active").standing(now + 9 * day), Standing::Full);
    }

    #[test]
    fn the_plan_in_effect_follows_schedules_grants_and_cancellation() {
        let now = OffsetDateTime::now_utc();
        let mut a = account("active");
        a.scheduled_plan = Some("free".into());
        a.scheduled_at = Some(now + time::Duration::hours(1));
        assert_eq!(a.effective_plan(now), "pro");
        assert_eq!(a.effective_plan(now + time::Duration::hours(2)), "free");
        let mut g = account("granted");
        g.grant_until = Some(now);
        assert_eq!(g.effective_plan(now), "free");
        assert_eq!(account("canceled").effective_plan(now), "free");
    }
}
