//! Platform schedules: cron-like intervals held in the control plane (`job_schedules`). Each
//! instance checks them every `tick`; the instance whose `UPDATE` moves a schedule's
//! `next_run_at` past now owns that slot, so a slot runs once across instances. A platform job
//! has no tenant: what it does per tenant it does by enqueueing a tenant job (which then runs
//! under that tenant's context, like any other).

use std::sync::Arc;
use std::time::Duration;

use tenancy::bootstrap::Tenancy;

use crate::enqueue::{NewJob, enqueue};
use crate::kind::JobKind;

/// The schedules whose slot came due, claimed for this instance.
pub async fn claim_due(tenancy: &Tenancy) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE job_schedules SET last_run_at = now(),
                next_run_at = now() + make_interval(secs => interval_seconds)
         WHERE next_run_at <= now() RETURNING name",
    )
    .fetch_all(tenancy.catalog.pool())
    .await
}

/// Runs a platform schedule's slot: fans out one tenant job of the same name to every live
/// tenant, unique per slot (a slot run twice enqueues nothing more).
pub async fn run_slot(tenancy: &Tenancy, name: &str) -> Result<usize, anyhow_free::SlotError> {
    let kind = JobKind::parse(name).map_err(|_| anyhow_free::SlotError::BadName)?;
    let slot = time::OffsetDateTime::now_utc().unix_timestamp() / 60;
    let mut after = None;
    let mut n = 0;
    loop {
        let page = tenancy.catalog.list_tenants(after, 200).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for t in page {
            let mut tx = tenancy.dataplane.connect(&t).await?.begin();
            let job = NewJob::new(kind.clone(), serde_json::json!({}))
                .priority(-10)
                .unique(format!("{name}:{slot}"), Duration::from_secs(3600));
            if enqueue(&mut tx, job).await?.is_some() {
                n += 1;
            }
            tx.commit()
                .await
                .map_err(crate::enqueue::EnqueueError::from)?;
        }
    }
    Ok(n)
}

/// Errors of a schedule slot.
pub mod anyhow_free {
    /// A schedule slot failed.
    #[derive(Debug, thiserror::Error)]
    pub enum SlotError {
        #[error("the schedule's name is not a job kind")]
        BadName,
        #[error(transparent)]
        Catalog(#[from] tenancy::catalog::CatalogError),
        #[error(transparent)]
        Connect(#[from] tenancy::dataplane::ConnectError),
        #[error(transparent)]
        Enqueue(#[from] crate::enqueue::EnqueueError),
    }
}

/// Checks the schedules every `tick` until dropped.
pub async fn run(tenancy: Arc<Tenancy>, tick: Duration) {
    let mut every = tokio::time::interval(tick);
    loop {
        every.tick().await;
        match claim_due(&tenancy).await {
            Ok(names) => {
                for name in names {
                    match run_slot(&tenancy, &name).await {
                        Ok(n) => tracing::info!(schedule = %name, tenants = n, "schedule ran"),
                        Err(e) => {
                            tracing::warn!(schedule = %name, error = %e, "schedule failed");
                            let _ = sqlx::query(
                                "UPDATE job_schedules SET last_error = $2 WHERE name = $1",
                            )
                            .bind(&name)
                            .bind(e.to_string())
                            .execute(tenancy.catalog.pool())
                            .await;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "claiming due schedules failed"),
        }
    }
}
