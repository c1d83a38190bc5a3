//! Verifying a move without holding the fence for the whole tenant.
//!
//! Each move keeps a schema of its own (named like its slot) in both databases: a change log
//! (`changes`: table, primary key, writing transaction id), filled by triggers on every tenant
//! table for this tenant's rows, and a `marks` table that is published with the tenant's rows.
//!
//! Before the fence ([`precheck`]) the whole tenant is compared at a consistent point: a
//! repeatable-read snapshot S of the source; a mark written after it, whose arrival on the target
//! proves that every transaction visible in S has been applied there; then a snapshot T of the
//! target. Keys written on the source after S (the log entries S cannot see) may legitimately
//! differ between S and T and are left out; every other row must match. A second, short round
//! then compares only the keys changed since the first round, at a newer pair of snapshots, so
//! that what is left for the fence is only what was written during a short round.
//!
//! Under the fence ([`verify_since`]) only the keys logged after the verified point on either side
//! are compared: a key outside that set has not changed on the source since S, nor on the target
//! since T (the target's log catches every write there, replicated or not), and it matched at
//! (S, T). So the switch still happens only if the target holds exactly the source's rows at the
//! fence, and the time under the fence depends on the writes since the point, not on the tenant's
//! size. Tables without a primary key (none today) cannot be tracked by key and are compared in
//! full under the fence.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::{Client, Config};

use super::error::MoveError;
use crate::ids::TenantId;
use crate::pg::{self, quote_ident, tenant_tables};

/// The tenant's tables (fences aside) with their primary-key columns (empty: no primary key).
pub(super) type Tables = Vec<(String, Vec<String>)>;

/// Changed primary keys (as canonical `jsonb` text) per table.
type Keys = BTreeMap<String, BTreeSet<String>>;

/// A pair of snapshots at which both copies were verified equal (outside the keys written after
/// them). Stored in the operation's progress, so a resumed runner verifies from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Point {
    source: String,
    target: String,
}

impl Point {
    pub(super) fn to_json(&self) -> Value {
        json!({"source": self.source, "target": self.target})
    }

    pub(super) fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            source: v["source"].as_str()?.to_owned(),
            target: v["target"].as_str()?.to_owned(),
        })
    }
}

/// What a precheck found.
pub(super) struct Precheck {
    pub point: Point,
    /// Rows compared in the full round.
    pub rows: i64,
    /// Keys compared in the catch-up round.
    pub catch_up_keys: usize,
}

/// The tenant tables of a database with their primary-key columns.
pub(super) async fn tables(c: &Client) -> Result<Tables, tokio_postgres::Error> {
    let pks: HashMap<String, Vec<String>> = c
        .query(
            "SELECT c.relname::text, array_agg(a.attname::text ORDER BY k.ord)
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE i.indisprimary AND n.nspname = 'public'
             GROUP BY c.relname",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(tenant_tables(c)
        .await?
        .into_iter()
        .filter(|t| t != "tenant_fences")
        .map(|t| {
            let pk = pks.get(&t).cloned().unwrap_or_default();
            (t, pk)
        })
        .collect())
}

/// Creates the move's schema in a database (idempotent): the change log, the trigger function
/// that fills it, and the marks table. Triggers are attached later, by [`attach`].
pub(super) async fn create_log(c: &Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    let s = quote_ident(schema);
    c.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.marks (id uuid PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS {s}.changes (
             xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
             tbl text NOT NULL,
             key jsonb NOT NULL
         );
         CREATE OR REPLACE FUNCTION {s}.log_change() RETURNS trigger
             LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
         BEGIN
             IF TG_OP <> 'INSERT' THEN
                 INSERT INTO {s}.changes (tbl, key)
                 SELECT TG_TABLE_NAME, jsonb_object_agg(e.key, e.value)
                 FROM jsonb_each(to_jsonb(OLD)) e WHERE e.key = ANY (TG_ARGV);
             END IF;
             IF TG_OP <> 'DELETE' THEN
                 INSERT INTO {s}.changes (tbl, key)
                 SELECT TG_TABLE_NAME, jsonb_object_agg(e.key, e.value)
                 FROM jsonb_each(to_jsonb(NEW)) e WHERE e.key = ANY (TG_ARGV);
             END IF;
             RETURN NULL;
         END $f$;
         REVOKE ALL ON FUNCTION {s}.log_change() FROM PUBLIC;"
    ))
    .await
}

/// Attaches the change-log triggers for the tenant's rows to every table with a primary key
/// (idempotent). `ALWAYS`, so they also fire for the subscription's apply worker on the target.
/// One table at a time, so writers of other tenants wait for one short lock at most.
pub(super) async fn attach(
    c: &Client,
    schema: &str,
    tenant: TenantId,
    tables: &Tables,
) -> Result<(), tokio_postgres::Error> {
    let s = quote_ident(schema);
    for (t, pk) in tables.iter().filter(|(_, pk)| !pk.is_empty()) {
        let tq = format!("public.{}", quote_ident(t));
        let args: Vec<String> = pk.iter().map(|c| quote_literal(c)).collect();
        let args = args.join(", ");
        let mut sql = String::new();
        for (suffix, event, when) in [
            ("i", "INSERT", format!("NEW.tenant_id = '{tenant}'")),
            (
                "u",
                "UPDATE",
                format!("OLD.tenant_id = '{tenant}' OR NEW.tenant_id = '{tenant}'"),
            ),
            ("d", "DELETE", format!("OLD.tenant_id = '{tenant}'")),
        ] {
            let name = quote_ident(&format!("{schema}_{suffix}"));
            sql.push_str(&format!(
                "CREATE OR REPLACE TRIGGER {name} AFTER {event} ON {tq} FOR EACH ROW WHEN ({when})
                     EXECUTE FUNCTION {s}.log_change({args});
                 ALTER TABLE {tq} ENABLE ALWAYS TRIGGER {name};"
            ));
        }
        with_lock_timeout(c, &sql).await?;
    }
    Ok(())
}

/// Drops the move's schema: first its triggers, one table per transaction, then the log, the
/// marks and the trigger function.
///
/// Never one `DROP SCHEMA .. CASCADE` over the triggers: that takes an `ACCESS EXCLUSIVE` lock on
/// every tenant table in one transaction, while a writer's transaction (a task, then its audit
/// event and job through triggers) takes its row-exclusive locks table after table. Holding one
/// table and waiting for the next, each waits for the other: PostgreSQL breaks the deadlock by
/// failing one of them, and when the victim is the writer, on the live target right after the
/// switch, the request answers 500. One table per transaction holds no lock while waiting for
/// another, so no cycle can form; the short lock timeout, retried, keeps writers (every tenant's,
/// in a shared database) from queueing behind a drop that waits for a long transaction.
pub(super) async fn drop_log(c: &Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    let mut triggers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in c
        .query(
            "SELECT tc.relname::text, t.tgname::text
             FROM pg_trigger t
             JOIN pg_class tc ON tc.oid = t.tgrelid
             JOIN pg_namespace tn ON tn.oid = tc.relnamespace
             JOIN pg_proc p ON p.oid = t.tgfoid
             JOIN pg_namespace pn ON pn.oid = p.pronamespace
             WHERE pn.nspname = $1 AND tn.nspname = 'public'",
            &[&schema],
        )
        .await?
    {
        triggers.entry(r.get(0)).or_default().push(r.get(1));
    }
    for (table, names) in &triggers {
        let tq = format!("public.{}", quote_ident(table));
        let drops: String = names
            .iter()
            .map(|n| format!("DROP TRIGGER IF EXISTS {} ON {tq};", quote_ident(n)))
            .collect();
        with_lock_timeout(c, &drops).await?;
    }
    with_lock_timeout(
        c,
        &format!("DROP SCHEMA IF EXISTS {} CASCADE;", quote_ident(schema)),
    )
    .await
}

/// How long a statement of the move waits for a table lock before it gives way to the writers
/// queued behind it (and tries again), and for how long it keeps trying.
const LOCK_TIMEOUT: &str = "100ms";
const LOCK_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `sql` in one transaction with a short lock timeout, again after each timeout (a pause
/// between attempts lets the writers queued behind the lock request through).
async fn with_lock_timeout(c: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    let sql = format!("BEGIN; SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; {sql} COMMIT;");
    let start = Instant::now();
    loop {
        match c.batch_execute(&sql).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                c.batch_execute("ROLLBACK").await.ok();
                if start.elapsed() > LOCK_DEADLINE
                    || e.code() != Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
                {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Whether the move's marks table is published (moves started before it existed are verified in
/// full under the fence).
pub(super) async fn marks_published(
    source: &Client,
    schema: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(source
        .query_opt(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $1 AND tablename = 'marks'",
            &[&schema],
        )
        .await?
        .is_some())
}

/// Compares the tenant's copies before the fence (a full round, then a catch-up round over the
/// keys changed meanwhile) and returns the point they were verified equal at.
pub(super) async fn precheck(
    source: (&Client, &Config),
    target: (&Client, &Config),
    schema: &str,
    tenant: TenantId,
    deadline: Duration,
) -> Result<Precheck, MoveError> {
    let tables = tables(source.0).await?;
    create_log(target.0, schema).await?;
    // Target first: from T on, every write there is logged; the source's triggers must be in
    // place before S.
    attach(target.0, schema, tenant, &tables).await?;
    attach(source.0, schema, tenant, &tables).await?;
    let (first, rows, _) = round(source, target, schema, tenant, &tables, None, deadline).await?;
    let (point, _, catch_up_keys) = round(
        source,
        target,
        schema,
        tenant,
        &tables,
        Some(&first),
        deadline,
    )
    .await?;
    Ok(Precheck {
        point,
        rows,
        catch_up_keys,
    })
}

/// One round: snapshot S of the source, a mark, its arrival on the target, snapshot T of the
/// target; then every row (or, `since` an earlier point, only the keys written on either side
/// after it, read after T) except the keys the source wrote after S is compared between S and T.
/// Returns the point, the rows and the keys compared.
async fn round(
    (source, source_config): (&Client, &Config),
    (target, target_config): (&Client, &Config),
    schema: &str,
    tenant: TenantId,
    tables: &Tables,
    since: Option<&Point>,
    deadline: Duration,
) -> Result<(Point, i64, usize), MoveError> {
    let s = quote_ident(schema);
    let src = snapshot_conn(source_config, tenant).await?;
    let snap_s = begin_snapshot(&src).await?;
    let mark = uuid::Uuid::now_v7();
    // Flushed at once (replication sends only flushed WAL), whatever `synchronous_commit` says.
    source
        .batch_execute(&format!(
            "BEGIN; SET LOCAL synchronous_commit = on; INSERT INTO {s}.marks (id) VALUES ('{mark}'); COMMIT;"
        ))
        .await?;
    let start = Instant::now();
    while target
        .query_opt(&format!("SELECT 1 FROM {s}.marks WHERE id = $1"), &[&mark])
        .await?
        .is_none()
    {
        if start.elapsed() > deadline {
            return Err(MoveError::Timeout("the verification mark to replicate"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let tgt = snapshot_conn(target_config, tenant).await?;
    let snap_t = begin_snapshot(&tgt).await?;
    // Read after T: every source transaction the target had applied by T is visible here.
    let excluded = changed_keys(source, schema, &snap_s).await?;
    let scope = match since {
        Some(p) => Some(changed_since(source, target, schema, p).await?),
        None => None,
    };
    let empty = BTreeSet::new();
    let (mut rows, mut keys_compared) = (0, 0);
    for (table, pk) in tables {
        let except = excluded.get(table).unwrap_or(&empty);
        let filter = match &scope {
            _ if pk.is_empty() => continue, // compared in full under the fence
            None => Filter::AllExcept(except),
            Some(keys) => {
                let only: BTreeSet<String> = keys
                    .get(table)
                    .map(|k| k.difference(except).cloned().collect())
                    .unwrap_or_default();
                if only.is_empty() {
                    continue;
                }
                keys_compared += only.len();
                Filter::Only(only)
            }
        };
        let (a, b) = tokio::try_join!(
            checksum(&src, table, pk, tenant, &filter),
            checksum(&tgt, table, pk, tenant, &filter)
        )?;
        if a != b {
            return Err(MoveError::Verify(format!(
                "before the fence, table {table}: source (rows, checksum) {a:?}, target {b:?}"
            )));
        }
        rows += a.0;
    }
    src.batch_execute("COMMIT").await?;
    tgt.batch_execute("COMMIT").await?;
    Ok((
        Point {
            source: snap_s,
            target: snap_t,
        },
        rows,
        keys_compared,
    ))
}

/// Under the fence, with replication drained: compares the keys written on either side since
/// `point` (and tables without a primary key in full). Returns the keys compared.
pub(super) async fn verify_since(
    source: &Client,
    target: &Client,
    schema: &str,
    tenant: TenantId,
    point: &Point,
) -> Result<usize, MoveError> {
    let tables = tables(source).await?;
    let changed = changed_since(source, target, schema, point).await?;
    let mut compared = 0;
    for (table, pk) in &tables {
        let filter = if pk.is_empty() {
            Filter::All
        } else {
            match changed.get(table) {
                Some(keys) if !keys.is_empty() => Filter::Only(keys.clone()),
                _ => continue,
            }
        };
        let (a, b) = tokio::try_join!(
            checksum(source, table, pk, tenant, &filter),
            checksum(target, table, pk, tenant, &filter)
        )?;
        if a != b {
            return Err(MoveError::Verify(format!(
                "under the fence, table {table}: source (rows, checksum) {a:?}, target {b:?}"
            )));
        }
        if let Filter::Only(k) = &filter {
            compared += k.len();
        }
    }
    Ok(compared)
}

/// Keys logged after `point` on the source or on the target.
async fn changed_since(
    source: &Client,
    target: &Client,
    schema: &str,
    point: &Point,
) -> Result<Keys, MoveError> {
    let (mut a, b) = tokio::try_join!(
        changed_keys(source, schema, &point.source),
        changed_keys(target, schema, &point.target)
    )?;
    for (t, keys) in b {
        a.entry(t).or_default().extend(keys);
    }
    Ok(a)
}

/// Keys of the log entries written by transactions `snapshot` does not see.
async fn changed_keys(
    c: &Client,
    schema: &str,
    snapshot: &str,
) -> Result<Keys, tokio_postgres::Error> {
    let mut out = Keys::new();
    for r in c
        .query(
            &format!(
                "SELECT DISTINCT tbl, key::text FROM {}.changes
                 WHERE NOT pg_visible_in_snapshot(xid, $1::text::pg_snapshot)",
                quote_ident(schema)
            ),
            &[&snapshot],
        )
        .await?
    {
        out.entry(r.get(0)).or_default().insert(r.get(1));
    }
    Ok(out)
}

/// Which rows of a table a checksum covers.
enum Filter<'a> {
    All,
    AllExcept(&'a BTreeSet<String>),
    Only(BTreeSet<String>),
}

/// Row count and order-independent checksum (sum of `hash_record_extended`) of the tenant's rows
/// of `table` that `filter` selects.
async fn checksum(
    c: &Client,
    table: &str,
    pk: &[String],
    tenant: TenantId,
    filter: &Filter<'_>,
) -> Result<(i64, String), tokio_postgres::Error> {
    let tq = format!("public.{}", quote_ident(table));
    let on: Vec<String> = pk
        .iter()
        .map(|c| format!("k.{q} = x.{q}", q = quote_ident(c)))
        .collect();
    let on = on.join(" AND ");
    let cols: Vec<String> = pk.iter().map(|c| quote_ident(c)).collect();
    let cols = cols.join(", ");
    let head = "SELECT count(*), coalesce(sum(hash_record_extended(x, 0)), 0)::text";
    let keys = |k: &BTreeSet<String>| {
        format!(
            "[{}]",
            k.iter().map(String::as_str).collect::<Vec<_>>().join(",")
        )
    };
    let row = match filter {
        Filter::All => {
            c.query_one(
                &format!("{head} FROM {tq} x WHERE x.tenant_id = $1"),
                &[&tenant.as_uuid()],
            )
            .await?
        }
        Filter::AllExcept(k) if k.is_empty() => {
            c.query_one(
                &format!("{head} FROM {tq} x WHERE x.tenant_id = $1"),
                &[&tenant.as_uuid()],
            )
            .await?
        }
        Filter::AllExcept(k) => {
            c.query_one(
                &format!(
                    "{head} FROM {tq} x WHERE x.tenant_id = $1 AND NOT EXISTS (
                         SELECT 1 FROM jsonb_populate_recordset(NULL::{tq}, $2::text::jsonb) k WHERE {on})"
                ),
                &[&tenant.as_uuid(), &keys(k)],
            )
            .await?
        }
        Filter::Only(k) => {
            c.query_one(
                &format!(
                    "{head} FROM {tq} x JOIN (
                         SELECT DISTINCT {cols} FROM jsonb_populate_recordset(NULL::{tq}, $2::text::jsonb)
                     ) k ON {on} WHERE x.tenant_id = $1"
                ),
                &[&tenant.as_uuid(), &keys(k)],
            )
            .await?
        }
    };
    Ok((row.get(0), row.get(1)))
}

/// A fresh owner connection for one repeatable-read snapshot.
async fn snapshot_conn(config: &Config, tenant: TenantId) -> Result<Client, MoveError> {
    let c = pg::connect(config).await?;
    c.batch_execute(&format!("SET app.tenant_id = '{tenant}'"))
        .await?;
    Ok(c)
}

/// Opens a read-only repeatable-read transaction and returns its snapshot (`pg_snapshot` text).
async fn begin_snapshot(c: &Client) -> Result<String, tokio_postgres::Error> {
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    Ok(c.query_one("SELECT pg_current_snapshot()::text", &[])
        .await?
        .get(0))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
