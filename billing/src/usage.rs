//! Usage metering: tasks created per tenant. Counted in the tenant's database by a trigger in
//! the creating transaction (`usage_events`, append-only: no counter row, so a tenant's writers
//! never queue on one lock); reported to Stripe per closed month by the `billing.usage_report`
//! job as a meter event whose identifier (and idempotency key) is `usage:<tenant>:<metric>:<period>`.
//! The report is recorded (`usage_reports`) in the job's own transaction, which commits with the
//! job's completion: a failed call is retried by the job queue, and a call that succeeded but
//! whose commit was lost is repeated with the same identifier, which Stripe deduplicates. A
//! period already recorded is never reported again.

use jobs::{JobContext, JobFailure};
use time::OffsetDateTime;

use crate::Billing;

/// The metered dimension.
pub const METRIC: &str = "tasks_created";

/// The Stripe meter's event name for it.
pub const METER_EVENT: &str = "tasks_created";

/// A month, `YYYY-MM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period(String);

impl Period {
    /// Parses `YYYY-MM`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let (y, m) = s.split_once('-')?;
        let ok = y.len() == 4
            && m.len() == 2
            && y.bytes().all(|b| b.is_ascii_digit())
            && m.parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
        ok.then(|| Self(s.to_owned()))
    }

    /// The month containing `now` (UTC): the current period, which quotas limit.
    #[must_use]
    pub fn containing(now: OffsetDateTime) -> Self {
        let now = now.to_offset(time::UtcOffset::UTC);
        Self(format!("{:04}-{:02}", now.year(), u8::from(now.month())))
    }

    /// The month before the one containing `now`: the last closed period.
    #[must_use]
    pub fn previous(now: OffsetDateTime) -> Self {
        let (y, m) = if now.month() == time::Month::January {
            (now.year() - 1, 12)
        } else {
            (now.year(), u8::from(now.month()) - 1)
        };
        Self(format!("{y:04}-{m:02}"))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What one run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reported {
    /// Reported now.
    Sent { quantity: i64 },
    /// Recorded before: nothing sent.
    Already,
    /// No Stripe customer: nothing to report.
    NoCustomer,
}

impl Billing {
    /// Reports the tenant's usage for `period` once, inside the job's transaction.
    pub async fn report_usage(
        &self,
        ctx: &mut JobContext,
        period: &Period,
    ) -> Result<Reported, JobFailure> {
        let tenant = ctx.tenant;
        let done = ctx
            .tx
            .query_opt(
                "SELECT 1 FROM usage_reports WHERE tenant_id = $1 AND metric = $2 AND period = $3",
                &[&tenant.as_uuid(), &METRIC, &period.as_str()],
            )
            .await?;
        if done.is_some() {
            return Ok(Reported::Already);
        }
        let Some(customer) = self
            .account(tenant)
            .await
            .map_err(JobFailure::from)?
            .and_then(|a| a.stripe_customer_id)
        else {
            return Ok(Reported::NoCustomer);
        };
        let row = ctx
            .tx
            .query_opt(
                "SELECT count(*)::bigint, extract(epoch FROM LEAST(now(),
                        (($2 || '-01')::date + interval '1 month') - interval '1 second'))::bigint
                 FROM usage_events WHERE tenant_id = $1 AND metric = $3
                   AND occurred_at >= ($2 || '-01')::date
                   AND occurred_at < ($2 || '-01')::date + interval '1 month'",
                &[&tenant.as_uuid(), &period.as_str(), &METRIC],
            )
            .await?
            .ok_or_else(|| JobFailure("no count".into()))?;
        let quantity: i64 = row.get(0);
        let at: i64 = row.get(1);
        let identifier = format!("usage:{tenant}:{METRIC}:{}", period.as_str());
        self.report_meter_event(METER_EVENT, &customer, quantity, &identifier, at)
            .await
            .map_err(|e| JobFailure(e.to_string()))?;
        ctx.tx
            .execute(
                "INSERT INTO usage_reports (tenant_id, metric, period, quantity) VALUES ($1, $2, $3, $4)",
                &[&tenant.as_uuid(), &METRIC, &period.as_str(), &quantity],
            )
            .await?;
        tracing::info!(tenant.id = %tenant, period = period.as_str(), quantity, "usage reported to Stripe");
        Ok(Reported::Sent { quantity })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_months() {
        assert!(Period::parse("2026-11").is_some());
        for bad in ["2026-13", "2026-1", "26-11", "2026-11-01", "abcd-ef"] {
            assert!(Period::parse(bad).is_none(), "{bad}");
        }
        let day = |y, m, d| {
            time::Date::from_calendar_date(y, m, d)
                .expect("a date")
                .midnight()
                .assume_utc()
        };
        let jan = day(2027, time::Month::January, 15);
        assert_eq!(Period::previous(jan).as_str(), "2026-12");
        let nov = day(2026, time::Month::November, 28);
        assert_eq!(Period::previous(nov).as_str(), "2026-10");
        assert_eq!(Period::containing(nov).as_str(), "2026-11");
        assert_eq!(Period::containing(jan).as_str(), "2027-01");
    }
}
