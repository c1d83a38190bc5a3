//! The sealer: links audit events into each tenant's hash chain after their transactions commit.
//!
//! Writers only append event rows, unlinked (tenant V8): no chain-head lock, no hashing in the
//! writing transaction, so one tenant's writers never queue on each other. Here, per tenant and
//! batch, in one transaction: take the chain's advisory lock (another instance sealing the same
//! chain makes this one skip it), read the head, read the committed unlinked events oldest first
//! (MVCC keeps uncommitted ones out; the partial index finds a late committer's event whenever it
//! commits, so nothing is skipped), compute SHA-256 in Rust ([`crate::chain::event_hash`]) and
//! call `platform_audit_link`, which checks the head did not move, assigns the per-tenant seq
//! numbers and moves the head once for the batch. A crash before the commit leaves the batch
//! unlinked and the next run starts again from the head: no gaps, no duplicates.
//!
//! Where there is work comes from post-commit hints of this instance's data plane (a committed
//! transaction that wrote names its tenant), gathered for [`DEBOUNCE`] and sealed in one batch per
//! tenant, plus a slow sweep ([`SWEEP_EVERY`]) for events written elsewhere (ops, another
//! instance that stopped before sealing): the sweep is one query per shared database and one per
//! dedicated database, never a poll of every database per batch.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenancy::catalog::{Catalog, Placement, Tenant, TenantStatus};
use tenancy::dataplane::DataPlane;
use tenancy::ids::TenantId;
use tenancy::resolve::Resolver;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::AuditError;
use super::chain::event_hash;
use super::events::{AuditEvent, UNLINKED_COLUMNS};

/// Events linked per transaction at most.
pub const BATCH: i64 = 1000;
/// How long hints are gathered before sealing (batches the head move under load).
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often every database is swept for events no hint announced.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Advisory lock class of a chain (with `hashtext(tenant id)`); fences use 2037.
const LOCK_CLASS: i32 = 2038;
const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Links every committed unlinked event of the tenant, in batches of [`BATCH`]; returns how many
/// it linked (0 also when another sealer holds the chain).
pub async fn seal_tenant(dp: &DataPlane, tenant: &Tenant) -> Result<u64, AuditError> {
    let mut total = 0;
    loop {
        let n = seal_batch(dp, tenant, BATCH).await?;
        total += n;
        if n < u64::try_from(BATCH).unwrap_or(u64::MAX) {
            return Ok(total);
        }
    }
}

/// Links up to `limit` of the tenant's oldest committed unlinked events in one transaction.
pub async fn seal_batch(dp: &DataPlane, tenant: &Tenant, limit: i64) -> Result<u64, AuditError> {
    let id = tenant.id.as_uuid();
    let mut tx = dp.connect(tenant).await?.begin();
    let locked: bool = tx
        .query_opt(
            "SELECT pg_try_advisory_xact_lock($1, hashtext($2::uuid::text))",
            &[&LOCK_CLASS, &id],
        )
        .await?
        .is_some_and(|r| r.get(0));
    if !locked {
        tx.commit().await?;
        return Ok(0);
    }
    let (head_seq, head_hash): (i64, String) = tx
        .query_opt("SELECT seq, hash FROM audit_chain", &[])
        .await?
        .map_or_else(|| (0, ZERO_HASH.to_owned()), |r| (r.get(0), r.get(1)));
    // `seq`, `prev_hash` and `hash` of unlinked events are NULL: filled in below.
    let rows = tx
        .query(
            &format!(
                "SELECT {UNLINKED_COLUMNS} FROM audit_events WHERE seq IS NULL
                 ORDER BY occurred_at, id LIMIT $1"
            ),
            &[&limit],
        )
        .await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let (mut seq, mut prev) = (head_seq, head_hash);
    let mut ids: Vec<Uuid> = Vec::with_capacity(rows.len());
    let mut hashes: Vec<String> = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut e = AuditEvent::from_row(r);
        seq += 1;
        e.seq = seq;
        e.prev_hash = prev;
        let h = event_hash(&e);
        ids.push(e.id);
        hashes.push(h.clone());
        prev = h;
    }
    tx.query_opt(
        "SELECT platform_audit_link($1, $2, $3, $4)",
        &[&id, &head_seq, &ids, &hashes],
    )
    .await?;
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// How far behind the sealer is: for each tenant with committed but unsealed events this
/// process announced, since when (its first unsealed commit's hint), and in which database once
/// the sealer has resolved it. Recorded by the commit hint itself, so the lag keeps growing when
/// the sealer is stuck or stopped. Cheap to clone and to read (one short lock, no query).
#[derive(Clone, Debug, Default)]
pub struct SealLag(Arc<Mutex<HashMap<TenantId, Unsealed>>>);

#[derive(Clone, Debug)]
struct Unsealed {
    since: Instant,
    database: Option<String>,
}

impl SealLag {
    fn pending(&self, t: TenantId) {
        if let Ok(mut m) = self.0.lock() {
            m.entry(t).or_insert_with(|| Unsealed {
                since: Instant::now(),
                database: None,
            });
        }
    }

    fn located(&self, tenant: &Tenant) {
        if let Ok(mut m) = self.0.lock()
            && let Some(u) = m.get_mut(&tenant.id)
        {
            u.database = Some(match &tenant.placement {
                Placement::Shared => "shared".to_owned(),
                Placement::Dedicated { database, .. } => database.clone(),
            });
        }
    }

    /// Everything of `t` committed before `started` is sealed (later commits stay pending).
    fn sealed(&self, t: TenantId, started: Instant) {
        if let Ok(mut m) = self.0.lock()
            && m.get(&t).is_some_and(|u| u.since <= started)
        {
            m.remove(&t);
        }
    }

    /// The age of the oldest unsealed commit per database (`shared`, a dedicated database's
    /// name, or `unresolved` before the sealer has looked the tenant up); databases with nothing
    /// unsealed are absent.
    #[must_use]
    pub fn by_database(&self) -> Vec<(String, Duration)> {
        let mut out: HashMap<String, Duration> = HashMap::new();
        if let Ok(m) = self.0.lock() {
            for u in m.values() {
                let db = u.database.clone().unwrap_or_else(|| "unresolved".into());
                let age = u.since.elapsed();
                let e = out.entry(db).or_default();
                *e = (*e).max(age);
            }
        }
        out.into_iter().collect()
    }
}

/// A running sealer (stopped on drop): hints in, linked chains out.
pub struct Sealer {
    task: tokio::task::JoinHandle<()>,
    lag: SealLag,
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    /// Installs the data plane's post-commit hint and starts sealing (one sealer per process; a
    /// second call finds the hint taken and returns a sealer that only sweeps).
    #[must_use]
    pub fn spawn(dp: DataPlane, resolver: Resolver, catalog: Catalog) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let lag = SealLag::default();
        let hinted = lag.clone();
        dp.set_commit_hint(Arc::new(move |t: TenantId| {
            hinted.pending(t);
            tx.send(t).ok();
        }));
        Self {
            task: tokio::spawn(run(dp, resolver, catalog, rx, lag.clone())),
            lag,
        }
    }

    /// How far behind sealing is (for the metrics).
    #[must_use]
    pub fn lag(&self) -> SealLag {
        self.lag.clone()
    }
}

async fn run(
    dp: DataPlane,
    resolver: Resolver,
    catalog: Catalog,
    mut hints: mpsc::UnboundedReceiver<TenantId>,
    lag: SealLag,
) {
    let mut pending: HashSet<TenantId> = HashSet::new();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            hint = hints.recv() => match hint {
                Some(t) => { pending.insert(t); }
                None => return,
            },
            _ = sweep.tick() => match unlinked_tenants(&dp, &catalog).await {
                Ok(found) => {
                    for &t in &found {
                        lag.pending(t);
                    }
                    pending.extend(found);
                }
                Err(e) => tracing::warn!(error = %e, "audit sealer sweep failed"),
            },
            () = tokio::time::sleep(Duration::from_secs(1)), if !pending.is_empty() => {}
        }
        if pending.is_empty() {
            continue;
        }
        // Gather the hints of the next moments, so a busy tenant's head moves once per batch.
        tokio::time::sleep(DEBOUNCE).await;
        while let Ok(t) = hints.try_recv() {
            pending.insert(t);
        }
        let mut retry = HashSet::new();
        for t in pending.drain() {
            let tenant = match resolver.tenant(t).await {
                Ok(Some(tenant)) => tenant,
                Ok(None) => {
                    lag.sealed(t, Instant::now());
                    continue;
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %t, error = %e, "audit sealer: tenant lookup failed");
                    retry.insert(t);
                    continue;
                }
            };
            lag.located(&tenant);
            let started = Instant::now();
            match seal_tenant(&dp, &tenant).await {
                Ok(n) => {
                    lag.sealed(t, started);
                    tracing::debug!(tenant.id = %t, linked = n, "audit events sealed");
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %t, error = %e, "audit sealer: sealing failed, retrying");
                    retry.insert(t);
                }
            }
        }
        pending = retry;
    }
}

/// The sweep: tenants with unlinked events, one query per database.
async fn unlinked_tenants(dp: &DataPlane, catalog: &Catalog) -> Result<Vec<TenantId>, AuditError> {
    let mut tenants = catalog
        .tenants_in_status(TenantStatus::Active)
        .await
        .map_err(|e| AuditError::Sweep(e.to_string()))?;
    tenants.extend(
        catalog
            .tenants_in_status(TenantStatus::Suspended)
            .await
            .map_err(|e| AuditError::Sweep(e.to_string()))?,
    );
    let mut found = Vec::new();
    let mut shared_done = false;
    for t in &tenants {
        let shared = matches!(t.placement, Placement::Shared);
        if shared && shared_done {
            continue;
        }
        let mut tx = dp.connect(t).await?.begin();
        let rows = tx
            .query("SELECT t FROM platform_audit_unlinked_tenants() AS t", &[])
            .await?;
        tx.commit().await?;
        for r in rows {
            let id: Uuid = r.get(0);
            found.push(TenantId::from_uuid(id));
        }
        shared_done |= shared;
    }
    Ok(found)
}
