//! Reconciliation after an outage: the events Stripe holds (`GET /v1/events`, 30 days) that
//! were never applied here are applied now, oldest first, through the same once-only path as a
//! webhook delivery (an event already recorded changes nothing). Run hourly by the
//! `billing.reconcile` schedule ([`Billing::reconcile_scheduled`]: one run per slot across the
//! tenant jobs it fans out to, from the last successful run's start), and by operators on demand
//! (`POST /admin/v1/billing/reconcile`).

use stripe_webhook::Webhook;

use crate::Billing;
use crate::api::StripeCallError;
use crate::webhook::{Applied, WebhookError};

/// What a reconciliation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Events Stripe listed.
    pub listed: usize,
    /// Applied now (they had been missed).
    pub applied: usize,
}

/// Reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Stripe(#[from] StripeCallError),
    #[error(transparent)]
    Apply(#[from] WebhookError),
    #[error("the control plane failed")]
    Db(#[from] sqlx::Error),
}

impl Billing {
    /// Applies every event created after `since` (Unix seconds; default: 5 minutes before the
    /// newest event recorded, or 3 days ago) that is not recorded yet.
    pub async fn reconcile(&self, since: Option<i64>) -> Result<Reconciled, ReconcileError> {
        let since = match since {
            Some(s) => s,
            None => {
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT max(created) FROM stripe_events")
                        .fetch_one(self.pool())
                        .await?;
                newest.map_or_else(
                    || time::OffsetDateTime::now_utc().unix_timestamp() - 3 * 86_400,
                    |n| n - 300,
                )
            }
        };
        let mut events = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_events(since, after.as_deref()).await?;
            after = page.data.last().map(|e| e.id.as_str().to_owned());
            let more = page.has_more && after.is_some();
            events.extend(page.data);
            if !more {
                break;
            }
        }
        events.sort_by_key(|e| e.created);
        let mut out = Reconciled {
            listed: events.len(),
            applied: 0,
        };
        for e in events {
            let Some(event) = to_webhook_event(&e) else {
                tracing::warn!(stripe.event = %e.id.as_str(), "listed event does not parse; skipped");
                continue;
            };
            if let Applied::Applied(_) | Applied::Ignored(_) = self.apply(event).await? {
                out.applied += 1;
            }
        }
        tracing::info!(
            listed = out.listed,
            applied = out.applied,
            "Stripe events reconciled"
        );
        Ok(out)
    }
}

/// The listed event in the webhook's typed shape. The API's answer is already trusted (fetched
/// with our key over TLS); async-stripe's only public parser for typed event objects is the
/// webhook's, so the body is signed here with a throwaway key and parsed by it.
fn to_webhook_event(e: &stripe_shared::Event) -> Option<stripe_webhook::Event> {
    let object: serde_json::Value =
        serde_json::from_str(&miniserde::json::to_string(&e.data.object)).ok()?;
    let body = serde_json::json!({
        "id": e.id.as_str(),
        "object": "event",
        "api_version": e.api_version,
        "created": e.created,
        "livemode": e.livemode,
        "pending_webhooks": e.pending_webhooks,
        "type": e.type_.as_str(),
        "data": { "object": object },
    })
    .to_string();
    let key = uuid::Uuid::now_v7().to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let header = Webhook::generate_test_header(&body, &key, Some(now));
    Webhook::construct_event_with_timestamp(&body, &header, &key, now).ok()
}

/// How far before the last run's start the next one lists (Stripe's clock and ours differ, and
/// an event may be created while a run lists).
const OVERLAP_SECONDS: i64 = 300;

impl Billing {
    /// The scheduled reconciliation, run by a tenant job of the `billing.reconcile` schedule
    /// (`job`: its id). The first job of a slot claims the run (a lease in
    /// `billing_reconciliation`) and lists the events created since the last successful run's
    /// start; the slot's other jobs, and any job within half an interval of a successful run,
    /// do nothing (`None`). A failed run frees its claim and fails the job, which is retried.
    pub async fn reconcile_scheduled(
        &self,
        job: uuid::Uuid,
    ) -> Result<Option<Reconciled>, ReconcileError> {
        let claim: Option<(Option<i64>, i64)> = sqlx::query_as(
            "UPDATE billing_reconciliation SET claimed_by = $1,
                    claimed_until = now() + interval '10 minutes'
             WHERE (claimed_until < now() OR claimed_by = $1)
               AND (last_run_at IS NULL OR last_run_at < now() - make_interval(secs =>
                    COALESCE((SELECT interval_seconds FROM job_schedules
                              WHERE name = 'billing.reconcile'), 3600) / 2))
             RETURNING watermark, extract(epoch FROM now())::bigint",
        )
        .bind(job)
        .fetch_optional(self.pool())
        .await?;
        let Some((watermark, started)) = claim else {
            return Ok(None);
        };
        match self.reconcile(watermark.map(|w| w - OVERLAP_SECONDS)).await {
            Ok(r) => {
                sqlx::query(
                    "UPDATE billing_reconciliation SET claimed_by = NULL, claimed_until = '-infinity',
                        watermark = $2, last_run_at = now(), last_listed = $3, last_applied = $4
                     WHERE claimed_by = $1",
                )
                .bind(job)
                .bind(started)
                .bind(i32::try_from(r.listed).unwrap_or(i32::MAX))
                .bind(i32::try_from(r.applied).unwrap_or(i32::MAX))
                .execute(self.pool())
                .await?;
                Ok(Some(r))
            }
            Err(e) => {
                sqlx::query(
                    "UPDATE billing_reconciliation SET claimed_by = NULL, claimed_until = '-infinity'
                     WHERE claimed_by = $1",
                )
                .bind(job)
                .execute(self.pool())
                .await?;
                Err(e)
            }
        }
    }
}
