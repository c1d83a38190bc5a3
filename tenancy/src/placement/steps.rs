//! The steps of a move. Each is idempotent: run again after a crash, it finds what it already did
//! and goes on. Each returns progress to merge into the operation row.

use std::time::Instant;

use serde_json::{Value, json};

use super::error::MoveError;
use super::location::Location;
use super::replication as repl;
use super::verify;
use super::{COPY_DEADLINE, DRAIN_DEADLINE, Mover, slot_name};
use crate::catalog::DB_URL_PURPOSE;
use crate::catalog::operations::OperationRow;
use crate::catalog::operations::Step;
use crate::crypto::Scope;
use crate::ids::TenantId;
use crate::migrate;

impl Mover {
    pub(super) async fn execute(&self, op: &OperationRow, step: Step) -> Result<Value, MoveError> {
        let tenant = op.tenant_id;
        let (source, target) = (
            Location::from_json(&op.source),
            Location::from_json(&op.target),
        );
        let name = slot_name(op.id);
        match step {
            Step::Prepare => self.prepare(op, tenant, &source, &target).await,
            Step::Publish => {
                let (s, _) = self.conn(&source, tenant).await?;
                verify::create_log(&s, &name).await?;
                repl::publish(&s, &name, tenant).await?;
                Ok(json!({}))
            }
            Step::Subscribe => {
                let (t, _) = self.conn(&target, tenant).await?;
                if matches!(target, Location::Dedicated { .. }) {
                    // Created by this move in `prepare`: nothing but the copy uses it yet.
                    repl::defer_indexes(&t).await?;
                }
                verify::create_log(&t, &name).await?;
                let source_config = self.config(&source).await?;
                repl::subscribe(&t, &name, &source_config).await?;
                Ok(json!({}))
            }
            Step::Copy => {
                let (t, _) = self.conn(&target, tenant).await?;
                let (s, _) = self.conn(&source, tenant).await?;
                let start = Instant::now();
                let mut polls = 0_u32;
                while !repl::copy_done(&t, &name).await? {
                    if start.elapsed() > COPY_DEADLINE {
                        return Err(MoveError::Timeout("the initial copy"));
                    }
                    self.keep_lease(op).await?;
                    if self.cancel_requested(op).await? {
                        return Err(MoveError::Verify("cancelled".into()));
                    }
                    if polls.is_multiple_of(10) {
                        self.note_replication_lag(op, &s, &name).await?;
                    }
                    polls += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                let copied_ms = start.elapsed().as_millis();
                self.note_replication_lag(op, &s, &name).await?;
                let built = self
                    .leased(op, async { Ok(repl::restore_indexes(&s, &t).await?) })
                    .await?;
                // Fresh tables have no statistics: without them the comparisons would take an
                // index scan over every row.
                for table in crate::pg::tenant_tables(&t).await? {
                    t.batch_execute(&format!("ANALYZE {}", crate::pg::quote_ident(&table)))
                        .await?;
                }
                Ok(json!({"copy_data_ms": copied_ms, "indexes_built": built}))
            }
            Step::Precheck => {
                self.leased(op, async {
                    let ((s, sc), (t, tc)) = (
                        self.conn(&source, tenant).await?,
                        self.conn(&target, tenant).await?,
                    );
                    if !verify::marks_published(&s, &name).await? {
                        // Started before moves had marks: `verify` compares everything.
                        return Ok(json!({}));
                    }
                    let p = verify::precheck((&s, &sc), (&t, &tc), &name, tenant, DRAIN_DEADLINE)
                        .await?;
                    Ok(json!({
                        "verified_point": p.point.to_json(),
                        "precheck_rows": p.rows,
                        "catch_up_keys": p.catch_up_keys,
                    }))
                })
                .await
            }
            Step::Fence => {
                let (s, _) = self.conn(&source, tenant).await?;
                repl::fence(&s, tenant, &format!("move {}", op.id)).await?;
                Ok(json!({"fenced_at": now_ms()}))
            }
            Step::Drain => {
                // The fence row replicates like any write of the tenant: once the target has it,
                // every write committed before the fence has been applied there too.
                let (t, _) = self.conn(&target, tenant).await?;
                let start = Instant::now();
                while !repl::fenced(&t, tenant).await? {
                    if start.elapsed() > DRAIN_DEADLINE {
                        return Err(MoveError::Timeout("replication to drain"));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Ok(json!({"drained_at": now_ms()}))
            }
            Step::Verify => {
                self.leased(op, async {
                    let ((s, _), (t, _)) = (
                        self.conn(&source, tenant).await?,
                        self.conn(&target, tenant).await?,
                    );
                    if let Some(point) = verify::Point::from_json(&op.progress["verified_point"]) {
                        let keys = verify::verify_since(&s, &t, &name, tenant, &point).await?;
                        return Ok(json!({"verified_keys": keys}));
                    }
                    let (a, b) =
                        tokio::try_join!(repl::checksums(&s, tenant), repl::checksums(&t, tenant))?;
                    if a != b {
                        return Err(MoveError::Verify(format!(
                            "source {a:?} differs from target {b:?}"
                        )));
                    }
                    Ok(json!({"verified_rows": a.iter().map(|(_, n, _)| n).sum::<i64>()}))
                })
                .await
            }
            Step::Switch => self.leased(op, self.switch(op, tenant, &target)).await,
            Step::Cleanup => {
                let ((s, _), (t, _)) = (
                    self.conn(&source, tenant).await?,
                    self.conn(&target, tenant).await?,
                );
                repl::unpublish(&s, &name).await?;
                // After the switch, not during the write pause: dropping triggers locks tables.
                verify::drop_log(&t, &name).await?;
                verify::drop_log(&s, &name).await?;
                Ok(json!({}))
            }
            Step::Done => Ok(json!({})),
        }
    }

    async fn prepare(
        &self,
        op: &OperationRow,
        tenant: TenantId,
        source: &Location,
        target: &Location,
    ) -> Result<Value, MoveError> {
        let (s, _) = self.conn(source, tenant).await?;
        let wal: String = s.query_one("SHOW wal_level", &[]).await?.get(0);
        if wal != "logical" {
            return Err(MoveError::NoLogicalReplication);
        }
        let version: i64 = s
            .query_one(
                "SELECT coalesce(max(version), 0)::bigint FROM refinery_schema_history",
                &[],
            )
            .await?
            .get(0);
        let head = migrate::tenant_head_version();
        if version != head {
            return Err(MoveError::SourceVersion {
                found: version,
                head,
            });
        }
        match target {
            Location::Dedicated {
                server, database, ..
            } => {
                let server = self.server(*server).await?;
                let target_version = self
                    .servers
                    .create_tenant_database(&server, database)
                    .await?;
                self.catalog
                    .operation_progress(op.id, &json!({"target_version": target_version}))
                    .await?;
                let url = self.servers.app_url(&server, database);
                let sealed = self
                    .keyring
                    .seal(Scope::Tenant(tenant), DB_URL_PURPOSE, url.as_bytes())
                    .await?;
                self.catalog
                    .set_operation_target_url(op.id, &sealed)
                    .await?;
            }
            Location::Shared => {
                // A copy left in the shared database by an earlier promotion is stale (the
                // tenant lives elsewhere now): it goes, so the new copy does not clash with it.
                let (t, _) = self.conn(target, tenant).await?;
                crate::pg::delete_tenant_rows(&t, tenant).await?;
            }
        }
        Ok(json!({"source_version": version}))
    }

    async fn switch(
        &self,
        op: &OperationRow,
        tenant: TenantId,
        target: &Location,
    ) -> Result<Value, MoveError> {
        let (t, _) = self.conn(target, tenant).await?;
        // Nothing more reaches the target from the source (which is fenced anyway).
        repl::unsubscribe(&t, &slot_name(op.id)).await?;
        // Not yet routed to, so unfencing the target first cannot open a second writable copy.
        repl::unfence(&t, tenant).await?;
        let stored = self.catalog.operation(op.id).await?;
        // The version the target was migrated to in `prepare` (a shared target keeps the
        // shared database's, which the catalog derives).
        let target_version = stored
            .as_ref()
            .and_then(|o| o.progress["target_version"].as_i64());
        let sealed = self
            .catalog
            .operation(op.id)
            .await?
            .and_then(|o| o.target_url_sealed);
        loop {
            let current = self
                .catalog
                .tenant(tenant)
                .await?
                .ok_or(MoveError::NotFound)?;
            if target.is(&current.placement) {
                break;
            }
            let (server, database) = match target {
                Location::Shared => (None, None),
                Location::Dedicated {
                    server, database, ..
                } => (Some(server.as_uuid()), Some(database.as_str())),
            };
            let url = if database.is_some() {
                sealed.as_deref()
            } else {
                None
            };
            if self
                .catalog
                .switch_placement(tenant, current.epoch, server, database, url, target_version)
                .await?
            {
                break;
            }
        }
        let fenced_at = op.progress["fenced_at"].as_u64().unwrap_or_default();
        let now = now_ms();
        Ok(json!({"switched_at": now, "write_pause_ms": now.saturating_sub(fenced_at)}))
    }

    /// Renews the lease; [`MoveError::LeaseLost`] if another runner has taken it.
    /// Records how far the move's slot trails the source's WAL (bytes), for the operation
    /// metrics; an observation, so the time in step is left alone.
    async fn note_replication_lag(
        &self,
        op: &OperationRow,
        source: &tokio_postgres::Client,
        slot: &str,
    ) -> Result<(), MoveError> {
        if let Some(lag) = repl::slot_lag_bytes(source, slot).await? {
            self.catalog
                .operation_observe(op.id, &json!({"replication_lag_bytes": lag}))
                .await?;
        }
        Ok(())
    }

    async fn keep_lease(&self, op: &OperationRow) -> Result<(), MoveError> {
        if self
            .catalog
            .claim_operation(op.id, &self.owner, self.lease_seconds)
            .await?
        {
            Ok(())
        } else {
            Err(MoveError::LeaseLost)
        }
    }

    /// Runs a step that may take longer than the lease, renewing the lease every third of its
    /// length meanwhile. Should the lease be lost after all, the step is abandoned (every step is
    /// idempotent, and the runner that holds the lease now repeats it).
    async fn leased<T>(
        &self,
        op: &OperationRow,
        work: impl std::future::Future<Output = Result<T, MoveError>>,
    ) -> Result<T, MoveError> {
        let period = std::time::Duration::from_millis(
            u64::try_from(self.lease_seconds).unwrap_or(1) * 1000 / 3,
        );
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = renew.tick() => self.keep_lease(op).await?,
            }
        }
    }

    async fn cancel_requested(&self, op: &OperationRow) -> Result<bool, MoveError> {
        Ok(self
            .catalog
            .operation(op.id)
            .await?
            .is_some_and(|o| o.cancel_requested))
    }
}

fn now_ms() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or_default()
}
