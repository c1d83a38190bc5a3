//! The per-database rows of a run, written in batches in the background: a database started
//! (`running`), or ended (`ok` | `failed`, versions before/after, timing, error). Batching keeps the
//! control plane's share of a large run small; the versions reached are recorded in the same
//! transaction.

use time::OffsetDateTime;
use uuid::Uuid;

use super::versions::record_version_in;
use crate::catalog::{Catalog, CatalogError};
use crate::migrate::inventory::DbKey;

/// How one database of a run ended, waiting to be written.
#[derive(Clone, Debug)]
pub struct Done {
    pub key: DbKey,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub error: Option<String>,
    pub finished_at: OffsetDateTime,
}

/// What the ledger writer is told: a database started, or ended.
enum Entry {
    Running(DbKey, OffsetDateTime),
    Done(Done),
}

/// How long a started or finished database may wait before the ledger says so: states are written
/// in batches (one transaction for many databases), which keeps the control plane's share of a
/// large run small (a per-database round trip and commit on the control plane costs about as much
/// server CPU as a tenth of the migration itself). A runner killed in between loses at most this
/// much: a finished database still says `running` (reaped as interrupted) or `pending`, and the
/// next run finds it at the target under the lock.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
const FLUSH_MAX: usize = 256;

/// Writes the states of a run's databases in batches, in the background.
pub struct DoneWriter {
    tx: tokio::sync::mpsc::UnboundedSender<Entry>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for DoneWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoneWriter").finish_non_exhaustive()
    }
}

impl DoneWriter {
    /// Starts the writer of `run`.
    #[must_use]
    pub fn start(catalog: Catalog, run: Uuid) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Entry>();
        let task = tokio::spawn(async move {
            let mut batch = Vec::new();
            let mut due_at = tokio::time::Instant::now();
            loop {
                let open = tokio::select! {
                    got = rx.recv() => match got {
                        Some(d) => {
                            if batch.is_empty() {
                                due_at = tokio::time::Instant::now() + FLUSH_EVERY;
                            }
                            batch.push(d);
                            true
                        }
                        None => false,
                    },
                    () = tokio::time::sleep_until(due_at), if !batch.is_empty() => true,
                };
                let due =
                    !open || batch.len() >= FLUSH_MAX || tokio::time::Instant::now() >= due_at;
                if due && !batch.is_empty() {
                    if let Err(e) = write_done(&catalog, run, &batch).await {
                        tracing::warn!(error = %e, count = batch.len(), "cannot record migration results in the ledger");
                    }
                    batch.clear();
                }
                if !open {
                    return;
                }
            }
        });
        Self { tx, task }
    }

    /// Queues "this database is being migrated".
    pub fn running(&self, key: DbKey) {
        if self
            .tx
            .send(Entry::Running(key, OffsetDateTime::now_utc()))
            .is_err()
        {
            tracing::warn!("the ledger writer stopped; a start was not recorded");
        }
    }

    /// Queues a result.
    pub fn send(&self, done: Done) {
        if self.tx.send(Entry::Done(done)).is_err() {
            tracing::warn!("the ledger writer stopped; a result was not recorded");
        }
    }

    /// Writes what is queued and stops.
    pub async fn finish(self) {
        drop(self.tx);
        self.task.await.ok();
    }
}

/// Records a batch of starts, results and the versions reached, in one transaction.
async fn write_done(catalog: &Catalog, run: Uuid, entries: &[Entry]) -> Result<(), CatalogError> {
    let mut tx = catalog.pool().begin().await?;
    // Starts first: a database's start is always queued before its end, so within a batch its
    // end must be written last.
    let (started, times): (Vec<String>, Vec<OffsetDateTime>) = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Running(key, at) => Some((key.to_string(), *at)),
            Entry::Done(_) => None,
        })
        .unzip();
    if !started.is_empty() {
        sqlx::query(
            "UPDATE migration_ledger l SET state = 'running', started_at = u.t
               FROM unnest($2::text[], $3::timestamptz[]) AS u(k, t)
              WHERE l.run_id = $1 AND l.db_key = u.k",
        )
        .bind(run)
        .bind(&started)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
    }
    let batch: Vec<&Done> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Done(d) => Some(d),
            Entry::Running(..) => None,
        })
        .collect();
    let keys: Vec<String> = batch.iter().map(|d| d.key.to_string()).collect();
    let befores: Vec<Option<i64>> = batch.iter().map(|d| d.before).collect();
    let afters: Vec<Option<i64>> = batch.iter().map(|d| d.after).collect();
    let errors: Vec<Option<String>> = batch.iter().map(|d| d.error.clone()).collect();
    let times: Vec<OffsetDateTime> = batch.iter().map(|d| d.finished_at).collect();
    sqlx::query(
        "UPDATE migration_ledger l
            SET state = CASE WHEN u.err IS NULL THEN 'ok' ELSE 'failed' END,
                version_before = COALESCE(u.b, l.version_before), version_after = u.a,
                finished_at = u.t, error = u.err
           FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::timestamptz[]) AS u(k, b, a, err, t)
          WHERE l.run_id = $1 AND l.db_key = u.k",
    )
    .bind(run)
    .bind(&keys)
    .bind(&befores)
    .bind(&afters)
    .bind(&errors)
    .bind(&times)
    .execute(&mut *tx)
    .await?;
    let (mut ids, mut versions) = (Vec::new(), Vec::new());
    for d in batch {
        match (d.key, d.after) {
            (DbKey::Tenant(id), Some(v)) => {
                ids.push(id.as_uuid());
                versions.push(v);
            }
            (DbKey::Shared, Some(v)) => record_version_in(&mut tx, &DbKey::Shared, v).await?,
            (_, None) => {}
        }
    }
    if !ids.is_empty() {
        // Tenants whose recorded version rose are published, so every instance refreshes them.
        sqlx::query(
            "WITH changed AS (
                 UPDATE tenants t SET schema_version = u.v, epoch = t.epoch + 1, updated_at = now()
                   FROM unnest($1::uuid[], $2::bigint[]) AS u(id, v)
                  WHERE t.id = u.id AND (t.schema_version IS NULL OR t.schema_version < u.v)
                  RETURNING t.id)
             SELECT pg_notify($3, id::text) FROM changed",
        )
        .bind(&ids)
        .bind(&versions)
        .bind(crate::catalog::CHANNEL)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
