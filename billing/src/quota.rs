//! Usage quotas: how many tasks (the metered dimension) a tenant may create per period, a
//! calendar month in UTC (the period [`crate::usage`] reports to Stripe). The limit is
//! `plans.tasks_per_month` (control-plane V14; NULL, or a plan the catalog does not list:
//! unlimited) of the plan the entitlement names, so a past-due tenant keeps its plan's quota
//! during grace, a canceled one has the free plan's and a grant gives the granted plan's.
//!
//! One rule in one place: [`Billing::admit_task`] runs in the transaction that creates the task,
//! before its insert, and needs a [`TaskQuota`], which only [`Billing::task_quota`] makes.
//!
//! Usage is the append-only `usage_events` (a trigger adds one per task created): no counter row,
//! so a tenant's writers do not queue on one lock while it is far from its quota. The check:
//! - unlimited: nothing at all;
//! - fast path, no database work: this instance's count of the period (an exact count, trusted
//!   for [`FRESH`], plus what this instance admitted since) is more than [`MARGIN`] below the
//!   limit;
//! - otherwise one exact count (which refreshes the cached one); still more than [`MARGIN`]
//!   below: admitted;
//! - near the limit: a transaction-scoped advisory lock per tenant, then the exact count: the
//!   creations near the limit are serialised, and each sees every one committed before it.
//!
//! The guarantee, on one instance: a count near the limit misses only fast-path creations still
//! in flight, and the fast path stops [`MARGIN`] below the limit, so the quota is exact unless a
//! fast-path creation stays uncommitted while `MARGIN` minus the connections in flight (at least
//! 48 with the default pool of 16) later ones commit; the overshoot is then at most the stalled
//! ones (at most the pool's size). With several instances, what the others created within the
//! last [`FRESH`] is unseen by a fast-path decision: the overshoot is at most the tenant's
//! creations on the other instances in one second beyond [`MARGIN`] (the per-plan request rate
//! bounds those).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use tenancy::catalog::CatalogError;
use tenancy::dataplane::TenantTx;
use tenancy::ids::TenantId;
use time::OffsetDateTime;

use crate::Billing;
use crate::account::AccountError;
use crate::usage::{METRIC, Period};

/// How far below its quota (by this instance's cached count) a tenant must be for a creation to
/// be admitted without an exact count: more than the creations of one tenant one instance can
/// have in flight at once (each holds a connection; a pool has 16 by default).
pub const MARGIN: i64 = 64;

/// How long a count is trusted on the fast path: the longest that what other instances created
/// goes unseen.
pub const FRESH: Duration = Duration::from_secs(1);

/// A backstop for the plans' quotas (invalidated by the catalog channel, like the accounts).
const PLANS_TTL: Duration = Duration::from_secs(60);

/// The cached plan quotas and per-tenant counts of the period.
#[derive(Clone)]
pub(crate) struct QuotaCache {
    plans: Cache<String, Option<i64>>,
    counts: Cache<(TenantId, String), Arc<Counted>>,
    generation: Arc<AtomicU64>,
}

/// An exact count of the period's usage, and the creations this instance admitted on the fast
/// path since.
#[derive(Debug)]
struct Counted {
    counted: i64,
    admitted: AtomicI64,
}

impl QuotaCache {
    pub(crate) fn new() -> Self {
        Self {
            plans: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(PLANS_TTL)
                .build(),
            counts: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FRESH)
                .build(),
            generation: Arc::default(),
        }
    }

    /// Drops the plans' quotas (a plan changed).
    pub(crate) fn invalidate_plans(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.plans.invalidate_all();
    }
}

/// A tenant's task quota as its plan in effect sets it. Only [`Billing::task_quota`] makes one,
/// and [`Billing::admit_task`] needs one, so the creation path cannot skip the plan.
#[derive(Clone, Debug)]
pub struct TaskQuota {
    tenant: TenantId,
    plan: String,
    limit: Option<i64>,
}

impl TaskQuota {
    /// The plan whose quota this is.
    #[must_use]
    pub fn plan(&self) -> &str {
        &self.plan
    }

    /// Tasks allowed per period (`None`: unlimited).
    #[must_use]
    pub fn limit(&self) -> Option<i64> {
        self.limit
    }
}

/// A period's usage of the metered dimension against its quota.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaUsage {
    /// The metered dimension (`tasks_created`).
    pub metric: &'static str,
    /// The plan whose quota applies.
    pub plan: String,
    /// Allowed per period (`None`: unlimited).
    pub limit: Option<i64>,
    /// Used in the current period.
    pub used: i64,
    /// The current period, `YYYY-MM` (UTC).
    pub period: String,
    /// When the next period starts (the usage starts again from zero).
    pub resets_at: OffsetDateTime,
}

/// Creating a task was refused, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The period's quota is used up (`limit` is set).
    #[error("the plan's quota of {} is used up for {}", .0.metric, .0.period)]
    Exceeded(QuotaUsage),
    #[error("reading the billing account or the plan failed")]
    Account(#[from] AccountError),
    #[error("reading the tenant's plan failed")]
    Catalog(#[from] Arc<CatalogError>),
    #[error("counting the usage failed")]
    Db(#[from] tokio_postgres::Error),
}

/// The period's usage in the tenant's database (at the database's clock, like the events'
/// `occurred_at`), the period and its end.
async fn count(
    tx: &mut TenantTx,
    tenant: TenantId,
) -> Result<(i64, String, OffsetDateTime), tokio_postgres::Error> {
    let row = tx
        .query_opt(
            "SELECT (SELECT count(*) FROM usage_events
                      WHERE tenant_id = $1 AND metric = $2 AND occurred_at >= p.start AT TIME ZONE 'UTC'),
                    to_char(p.start, 'YYYY-MM'),
                    (p.start + interval '1 month') AT TIME ZONE 'UTC'
             FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AS start) p",
            &[&tenant.as_uuid(), &METRIC],
        )
        .await?;
    Ok(row.map_or_else(
        || (0, String::new(), OffsetDateTime::now_utc()),
        |r| (r.get(0), r.get(1), r.get(2)),
    ))
}

impl Billing {
    /// The task quota of `tenant`'s plan in effect: the entitlement's plan (cached per tenant,
    /// like the standing), or the catalog's plan for a tenant without a billing account.
    pub async fn task_quota(&self, tenant: TenantId) -> Result<TaskQuota, QuotaError> {
        let plan = match self.entitlement(tenant).await? {
            Some(e) => e.plan,
            None => self
                .tenancy
                .resolver
                .tenant(tenant)
                .await?
                .map(|t| t.plan.clone())
                .unwrap_or_default(),
        };
        let limit = self.plan_task_quota(&plan).await?;
        Ok(TaskQuota {
            tenant,
            plan,
            limit,
        })
    }

    /// Admits one task creation in `tx` (the creating transaction, before its insert), or
    /// refuses it with [`QuotaError::Exceeded`] (the caller drops `tx`: nothing is written).
    pub async fn admit_task(&self, tx: &mut TenantTx, quota: &TaskQuota) -> Result<(), QuotaError> {
        let Some(limit) = quota.limit else {
            return Ok(());
        };
        let tenant = quota.tenant;
        let key = (
            tenant,
            Period::containing(OffsetDateTime::now_utc())
                .as_str()
                .to_owned(),
        );
        let near = match self.quotas.counts.get(&key).await {
            Some(c) => {
                let n = c.admitted.fetch_add(1, Ordering::AcqRel) + 1;
                if c.counted + n + MARGIN <= limit {
                    return Ok(());
                }
                c.admitted.fetch_sub(1, Ordering::AcqRel);
                true
            }
            None => false,
        };
        if !near {
            let (used, ..) = count(tx, tenant).await?;
            let counted = Arc::new(Counted {
                counted: used,
                admitted: AtomicI64::new(1),
            });
            self.quotas.counts.insert(key, counted).await;
            if used + 1 + MARGIN <= limit {
                return Ok(());
            }
        }
        // Near the limit: one at a time, each counting what the previous ones committed (the
        // lock is released at their commit, after their rows became visible).
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('platform.quota:tasks_created:' || $1::uuid::text, 0))",
            &[&tenant.as_uuid()],
        )
        .await?;
        let (used, period, resets_at) = count(tx, tenant).await?;
        if used >= limit {
            return Err(QuotaError::Exceeded(QuotaUsage {
                metric: METRIC,
                plan: quota.plan.clone(),
                limit: Some(limit),
                used,
                period,
                resets_at,
            }));
        }
        Ok(())
    }

    /// The current period's usage of `tenant` against `plan`'s quota, counted exactly in `tx`
    /// (a read: the billing views).
    pub async fn task_usage(
        &self,
        tx: &mut TenantTx,
        tenant: TenantId,
        plan: &str,
    ) -> Result<QuotaUsage, QuotaError> {
        let limit = self.plan_task_quota(plan).await?;
        let (used, period, resets_at) = count(tx, tenant).await?;
        Ok(QuotaUsage {
            metric: METRIC,
            plan: plan.to_owned(),
            limit,
            used,
            period,
            resets_at,
        })
    }

    /// Tasks `plan` allows per period (`None`: unlimited, or no such plan), cached.
    pub async fn plan_task_quota(&self, plan: &str) -> Result<Option<i64>, AccountError> {
        if let Some(q) = self.quotas.plans.get(plan).await {
            return Ok(q);
        }
        let generation = self.quotas.generation.load(Ordering::Acquire);
        let q: Option<i64> =
            sqlx::query_scalar("SELECT tasks_per_month FROM plans WHERE name = $1")
                .bind(plan)
                .fetch_optional(self.pool())
                .await?
                .flatten();
        if self.quotas.generation.load(Ordering::Acquire) == generation {
            self.quotas.plans.insert(plan.to_owned(), q).await;
        }
        Ok(q)
    }

    /// Every plan's task quota, from the control plane (the operators' plan listing).
    pub async fn plan_task_quotas(&self) -> Result<HashMap<String, Option<i64>>, AccountError> {
        let rows: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT name, tasks_per_month FROM plans")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// Sets `plan`'s task quota (`None`: unlimited). Every instance drops its cached quotas
    /// within about a second (the plans' change notification); this one at once.
    pub async fn set_plan_task_quota(
        &self,
        plan: &str,
        quota: Option<i64>,
    ) -> Result<(), AccountError> {
        sqlx::query("UPDATE plans SET tasks_per_month = $2, updated_at = now() WHERE name = $1")
            .bind(plan)
            .bind(quota)
            .execute(self.pool())
            .await?;
        self.quotas.invalidate_plans();
        Ok(())
    }
}
