//! The slow sweep, for crash recovery: each database is asked once which of its tenants have
//! work due (a hint lost with a crashed instance, a timer lost with it, a lease to rescue), and
//! how deep its queues are (for the metrics).

use std::time::Duration;

use tenancy::catalog::{Placement, Tenant};
use tenancy::ids::TenantId;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::{Event, Shared};
use crate::stats::Tally;

/// Asks every database once which of its tenants have work due within `horizon`.
pub(super) async fn sweep(
    shared: &Shared,
    events: &mpsc::UnboundedSender<Event>,
    horizon: Duration,
) -> Result<(), tenancy::catalog::CatalogError> {
    shared.load_weights().await;
    shared.load_pauses().await;
    shared.load_budgets().await;
    let mut shared_tenants: Vec<Tenant> = Vec::new();
    let mut tally = Tally::default();
    let mut after = None;
    loop {
        let page = shared.tenancy.catalog.list_tenants(after, 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for t in page {
            match t.placement {
                Placement::Shared => shared_tenants.push(t),
                Placement::Dedicated { .. } => {
                    let only = std::collections::HashSet::from([t.id]);
                    due_in(shared, &t, &only, horizon, events).await;
                    depth_in(shared, &t, &only, &mut tally).await;
                }
            }
        }
    }
    // One query for the whole shared database, through any of its tenants' connections.
    if let Some(first) = shared_tenants.first() {
        let ids: std::collections::HashSet<TenantId> =
            shared_tenants.iter().map(|t| t.id).collect();
        due_in(shared, first, &ids, horizon, events).await;
        depth_in(shared, first, &ids, &mut tally).await;
    }
    shared
        .stats
        .replace(tally.finish(OffsetDateTime::now_utc()));
    Ok(())
}

/// Adds the queue depth of `via`'s database (its tenants among `placed_here`) to `tally`.
async fn depth_in(
    shared: &Shared,
    via: &Tenant,
    placed_here: &std::collections::HashSet<TenantId>,
    tally: &mut Tally,
) {
    let rows = match shared.tenancy.dataplane.connect(via).await {
        Ok(conn) => {
            conn.begin()
                .query_and_commit(
                    "SELECT tenant_id, kind, state, jobs, oldest_due FROM platform_jobs_depth()",
                    &[],
                )
                .await
        }
        Err(e) => {
            tracing::warn!(tenant.id = %via.id, error = %e, "job depth cannot connect");
            return;
        }
    };
    let now = OffsetDateTime::now_utc();
    match rows {
        Ok(rows) => {
            for r in rows {
                if placed_here.contains(&TenantId::from_uuid(r.get(0))) {
                    tally.add(r.get(1), r.get(2), r.get(3), r.get(4), now);
                }
            }
        }
        Err(e) => tracing::warn!(tenant.id = %via.id, error = %e, "job depth query failed"),
    }
}

/// Hints the tenants of `via`'s database (among `placed_here`) with work due within `horizon`.
async fn due_in(
    shared: &Shared,
    via: &Tenant,
    placed_here: &std::collections::HashSet<TenantId>,
    horizon: Duration,
    events: &mpsc::UnboundedSender<Event>,
) {
    let rows = match shared.tenancy.dataplane.connect(via).await {
        Ok(conn) => {
            conn.begin()
                .query_and_commit(
                    "SELECT tenant_id, next_at FROM platform_jobs_due(make_interval(secs => $1))",
                    &[&horizon.as_secs_f64()],
                )
                .await
        }
        Err(e) => {
            tracing::warn!(tenant.id = %via.id, error = %e, "job sweep cannot connect");
            return;
        }
    };
    match rows {
        Ok(rows) => {
            for r in rows {
                let tenant = TenantId::from_uuid(r.get(0));
                // Rows of a tenant placed elsewhere (a move's source copy) are not its jobs.
                if placed_here.contains(&tenant) {
                    let at: OffsetDateTime = r.get(1);
                    let _ = at;
                    events.send(Event::Hint(tenant)).ok();
                }
            }
        }
        Err(e) => tracing::warn!(tenant.id = %via.id, error = %e, "job sweep query failed"),
    }
}
