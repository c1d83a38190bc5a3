//! SQL helpers for moving a tenant with logical replication: connection strings, publications
//! with row filters, slots, subscriptions, fences, secondary indexes deferred on a fresh target,
//! row deletion and checksums.

use tokio_postgres::{Client, Config};

use crate::ids::TenantId;
use crate::pg::{quote_ident, tenant_tables};

/// A libpq connection string for `c` (what a subscription connects with).
pub fn conninfo(c: &Config) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = Vec::new();
    if let Some(tokio_postgres::config::Host::Tcp(h)) = c.get_hosts().first() {
        parts.push(format!("host={}", q(h)));
    }
    if let Some(p) = c.get_ports().first() {
        parts.push(format!("port={p}"));
    }
    if let Some(u) = c.get_user() {
        parts.push(format!("user={}", q(u)));
    }
    if let Some(p) = c.get_password() {
        parts.push(format!("password={}", q(&String::from_utf8_lossy(p))));
    }
    if let Some(d) = c.get_dbname() {
        parts.push(format!("dbname={}", q(d)));
    }
    parts.join(" ")
}

/// Creates the publication of the tenant's rows (row filters) and of the move's marks table
/// (which [`super::verify`] creates in the schema named like the move), and its slot, if missing.
pub async fn publish(
    client: &Client,
    name: &str,
    tenant: TenantId,
) -> Result<(), tokio_postgres::Error> {
    if client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
        .await?
        .is_none()
    {
        let tables = tenant_tables(client).await?;
        let mut list: Vec<String> = tables
            .iter()
            .map(|t| format!("{} WHERE (tenant_id = '{tenant}')", quote_ident(t)))
            .collect();
        list.push(format!("{}.marks", quote_ident(name)));
        client
            .batch_execute(&format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                quote_ident(name),
                list.join(", ")
            ))
            .await?;
    }
    if client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await?
        .is_none()
    {
        client
            .query(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&name],
            )
            .await?;
    }
    Ok(())
}

/// Creates the subscription on the target, on the slot made by [`publish`] (a slot created by the
/// subscription itself would hang when both databases share a cluster). `binary`: changes travel
/// in the types' binary form (no text formatting and parsing on the apply path); `streaming`: a
/// large transaction is sent while it runs instead of spilled to disk on the source until its
/// commit.
pub async fn subscribe(
    target: &Client,
    name: &str,
    source: &Config,
) -> Result<(), tokio_postgres::Error> {
    if target
        .query_opt("SELECT 1 FROM pg_subscription WHERE subname = $1", &[&name])
        .await?
        .is_some()
    {
        return Ok(());
    }
    let conn = conninfo(source).replace('\'', "''");
    target
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION {n} CONNECTION '{conn}' PUBLICATION {n} WITH (create_slot = false, slot_name = '{name}', copy_data = true, binary = true, streaming = on)",
            n = quote_ident(name)
        ))
        .await
}

/// Whether every table of the subscription has finished its initial copy.
pub async fn copy_done(target: &Client, name: &str) -> Result<bool, tokio_postgres::Error> {
    let row = target
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE sr.srsubstate <> 'r')
             FROM pg_subscription_rel sr JOIN pg_subscription s ON s.oid = sr.srsubid WHERE s.subname = $1",
            &[&name],
        )
        .await?;
    Ok(row.get::<_, i64>(0) > 0 && row.get::<_, i64>(1) == 0)
}

/// How many bytes of the source's WAL the move's slot has not yet confirmed (`None` without the
/// slot, or before it has confirmed anything).
pub async fn slot_lag_bytes(
    source: &Client,
    slot: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = source
        .query_opt(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.and_then(|r| r.get::<_, Option<i64>>(0)))
}

/// Drops the subscription without touching the remote slot (dropped separately).
pub async fn unsubscribe(target: &Client, name: &str) -> Result<(), tokio_postgres::Error> {
    if target
        .query_opt("SELECT 1 FROM pg_subscription WHERE subname = $1", &[&name])
        .await?
        .is_none()
    {
        return Ok(());
    }
    let n = quote_ident(name);
    target
        .batch_execute(&format!("ALTER SUBSCRIPTION {n} DISABLE"))
        .await?;
    target
        .batch_execute(&format!("ALTER SUBSCRIPTION {n} SET (slot_name = NONE)"))
        .await?;
    target
        .batch_execute(&format!("DROP SUBSCRIPTION {n}"))
        .await
}

/// Drops the slot (waiting for its walsender to exit) and the publication, if present.
pub async fn unpublish(source: &Client, name: &str) -> Result<(), tokio_postgres::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let slot = source
            .query_opt(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&name],
            )
            .await?;
        match slot {
            None => break,
            Some(r) => {
                if let Some(pid) = r.get::<_, Option<i32>>(0) {
                    source
                        .query("SELECT pg_terminate_backend($1)", &[&pid])
                        .await?;
                }
                match source
                    .query("SELECT pg_drop_replication_slot($1)", &[&name])
                    .await
                {
                    Ok(_) => break,
                    Err(e)
                        if std::time::Instant::now() < deadline
                            && e.code()
                                == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    source
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)))
        .await
}

/// Secondary indexes (neither primary key nor unique) of the tenant tables: name and definition.
async fn secondary_indexes(c: &Client) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let tables = tenant_tables(c).await?;
    Ok(c.query(
        "SELECT ic.relname::text, pg_get_indexdef(i.indexrelid)
         FROM pg_index i
         JOIN pg_class ic ON ic.oid = i.indexrelid
         JOIN pg_class tc ON tc.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = tc.relnamespace
         WHERE n.nspname = 'public' AND NOT i.indisprimary AND NOT i.indisunique
           AND tc.relname = ANY($1)",
        &[&tables],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// On a fresh target, before the initial copy: drops the secondary indexes, so the copy writes
/// only the tables and their primary keys (which applying changes needs); [`restore_indexes`]
/// builds them once, in bulk, after the copy.
pub async fn defer_indexes(target: &Client) -> Result<(), tokio_postgres::Error> {
    for (name, _) in secondary_indexes(target).await? {
        target
            .batch_execute(&format!(
                "DROP INDEX IF EXISTS public.{}",
                quote_ident(&name)
            ))
            .await?;
    }
    Ok(())
}

/// Builds on the target every secondary index the source has and the target lacks (after
/// [`defer_indexes`] and the copy; a no-op otherwise). Returns how many were built.
pub async fn restore_indexes(
    source: &Client,
    target: &Client,
) -> Result<usize, tokio_postgres::Error> {
    let have: Vec<String> = secondary_indexes(target)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut built = 0;
    target
        .batch_execute("SET maintenance_work_mem = '512MB'")
        .await?;
    for (name, def) in secondary_indexes(source).await? {
        if !have.contains(&name) {
            target.batch_execute(&def).await?;
            built += 1;
        }
    }
    target.batch_execute("RESET maintenance_work_mem").await?;
    Ok(built)
}

/// Fences the tenant's writes in this database, after in-flight writers commit. The commit is
/// flushed at once even where `synchronous_commit` is off: replication sends only flushed WAL, and
/// `drain` (inside the write pause) waits for this row on the target.
pub async fn fence(
    client: &Client,
    tenant: TenantId,
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL app.tenant_id = '{tenant}'; SET LOCAL synchronous_commit = on;
             SELECT pg_advisory_xact_lock(2037, hashtext('{tenant}'));
             INSERT INTO tenant_fences (tenant_id, reason) VALUES ('{tenant}', {}) ON CONFLICT DO NOTHING;
             COMMIT;",
            quote_literal(reason)
        ))
        .await
}

/// Lifts the tenant's fence in this database.
pub async fn unfence(client: &Client, tenant: TenantId) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL app.tenant_id = '{tenant}'; DELETE FROM tenant_fences WHERE tenant_id = '{tenant}'; COMMIT;"
        ))
        .await
}

/// Whether the tenant is fenced in this database.
pub async fn fenced(client: &Client, tenant: TenantId) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM tenant_fences WHERE tenant_id = $1",
            &[&tenant.as_uuid()],
        )
        .await?
        .is_some())
}

/// Per table (fences aside): row count and an order-independent checksum of the tenant's rows:
/// the sum of each row's binary hash (`hash_record_extended`), which needs no text formatting and
/// so does not depend on session settings. It runs while the tenant's writes are fenced, so it
/// must be fast: about 0.5 s per million rows on this machine.
pub async fn checksums(
    client: &Client,
    tenant: TenantId,
) -> Result<Vec<(String, i64, String)>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for t in tenant_tables(client)
        .await?
        .into_iter()
        .filter(|t| t != "tenant_fences")
    {
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(sum(hash_record_extended(x, 0)), 0)::text FROM {} x WHERE tenant_id = $1",
                    quote_ident(&t)
                ),
                &[&tenant.as_uuid()],
            )
            .await?;
        out.push((t, row.get(0), row.get(1)));
    }
    Ok(out)
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
