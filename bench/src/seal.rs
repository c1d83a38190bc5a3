//! Audit seal latency under load: while a POST cell runs, a sampler polls the tenant databases the
//! cell writes to (as the owner, every 25 ms) for events not linked yet, and follows each sampled
//! event until the sealer has linked it. The latency of an event is the database clock when it was
//! first seen linked minus its `occurred_at` (its transaction's start): an upper bound of commit →
//! sealed, by the request's own duration plus up to one poll interval. Events linked before any
//! poll saw them unlinked are not sampled, so the figures lean high, never low.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

const POLL: Duration = Duration::from_millis(25);
/// Sampled events followed at once, per database.
const MAX_PENDING: usize = 2_000;

/// A running sampler (see the module docs).
pub struct SealSampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<f64>>,
}

impl SealSampler {
    /// Starts sampling the databases at `urls` (owner URLs).
    pub async fn start(urls: &[String]) -> anyhow::Result<Self> {
        let mut dbs = Vec::new();
        for url in urls {
            dbs.push(crate::world::connect(url).await?);
        }
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut pending: Vec<HashSet<(Uuid, Uuid)>> = vec![HashSet::new(); dbs.len()];
            let mut latencies = Vec::new();
            let mut tick = tokio::time::interval(POLL);
            // After the stop, follow what was sampled for up to 10 s more (the sealer's bound
            // is 1 s), so the slowest events of the cell are counted rather than dropped.
            let mut deadline: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped, if deadline.is_none() => {
                        deadline = Some(tokio::time::Instant::now() + Duration::from_secs(10));
                    }
                }
                for (db, pending) in dbs.iter().zip(pending.iter_mut()) {
                    if deadline.is_none()
                        && pending.len() < MAX_PENDING
                        && let Ok(rows) = db
                            .query(
                                "SELECT tenant_id, id FROM audit_events WHERE seq IS NULL
                                  ORDER BY occurred_at DESC LIMIT 20",
                                &[],
                            )
                            .await
                    {
                        pending.extend(rows.iter().map(|r| (r.get(0), r.get(1))));
                    }
                    if pending.is_empty() {
                        continue;
                    }
                    let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = pending.iter().copied().unzip();
                    if let Ok(rows) = db
                        .query(
                            "SELECT e.tenant_id, e.id,
                                    extract(epoch FROM clock_timestamp() - e.occurred_at)::float8 * 1000
                               FROM audit_events e
                               JOIN unnest($1::uuid[], $2::uuid[]) AS s(tenant_id, id)
                                 ON e.tenant_id = s.tenant_id AND e.id = s.id
                              WHERE e.seq IS NOT NULL",
                            &[&tenants, &ids],
                        )
                        .await
                    {
                        for r in &rows {
                            pending.remove(&(r.get(0), r.get(1)));
                            latencies.push(r.get::<_, f64>(2));
                        }
                    }
                }
                if let Some(d) = deadline
                    && (tokio::time::Instant::now() >= d || pending.iter().all(HashSet::is_empty))
                {
                    break;
                }
            }
            latencies
        });
        Ok(Self { stop, task })
    }

    /// Stops sampling and returns the latencies (ms) of the events seen sealed.
    pub async fn stop(self) -> Vec<f64> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// The `q` quantile of `v` (sorted in place); `None` if empty.
#[must_use]
pub fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}
