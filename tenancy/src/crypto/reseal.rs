//! Re-sealing the values of the [`registry`](super::registry) under a scope's current data key,
//! so older key versions can be destroyed without destroying a secret. Walks a column in key
//! order, in batches; each value is replaced only if it is unchanged since it was read (a
//! concurrent writer, which seals with the current key anyway, wins). A value that does not open
//! (already lost to a destroyed key, or tampered) is counted and left alone: rotation must not
//! stall on it, and destroying a key cannot make it any less readable.

use base64::Engine as _;
use tokio_postgres::Client;

use super::keyring::sealed_version;
use super::registry::{Database, SealedColumn};
use super::{KeyError, Keyring, Scope};
use crate::catalog::{Catalog, CatalogError};
use crate::ids::TenantId;

/// Rows read and updated per batch (one transaction per batch in a tenant database).
const BATCH: i64 = 200;

/// What a walk found, per column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Values re-sealed under the current key.
    pub resealed: u64,
    /// Values already at or above the version asked for.
    pub current: u64,
    /// Values that do not open (their key is gone, or they were tampered with).
    pub unreadable: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.resealed += o.resealed;
        self.current += o.current;
        self.unreadable += o.unreadable;
    }
}

/// Re-sealing failed (nothing is destroyed on failure: rerun it).
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("re-sealing {column} in a tenant database failed")]
    Database {
        column: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

enum Outcome {
    Current,
    Resealed(Vec<u8>),
    Unreadable,
}

/// Opens `sealed` with the first purpose that fits and seals it again if it is below `below`.
async fn reseal_value(
    keyring: &Keyring,
    scope: Scope,
    col: &SealedColumn,
    purpose_arg: Option<&str>,
    sealed: &[u8],
    below: u32,
) -> Result<Outcome, KeyError> {
    if sealed_version(sealed).is_some_and(|v| v >= below) {
        return Ok(Outcome::Current);
    }
    for purpose in col.purpose.candidates(purpose_arg) {
        match keyring.open(scope, &purpose, sealed).await {
            Ok(plain) => {
                return Ok(Outcome::Resealed(
                    keyring.seal(scope, &purpose, &plain).await?,
                ));
            }
            Err(KeyError::Open { .. }) => {}
            Err(KeyError::Malformed { .. } | KeyError::NoKey { .. }) => {
                return Ok(Outcome::Unreadable);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Outcome::Unreadable)
}

/// Re-seals, under the scope's current key, every value of a catalog column below version
/// `below`: of one tenant, or (with `None`) of the platform.
pub async fn catalog_column(
    keyring: &Keyring,
    catalog: &Catalog,
    col: &SealedColumn,
    tenant: Option<TenantId>,
    below: u32,
) -> Result<Tally, ResealError> {
    debug_assert_eq!(col.database, Database::Catalog);
    let mut tally = Tally::default();
    let mut after: Option<String> = None;
    loop {
        let rows = catalog
            .sealed_rows(col, tenant, after.as_deref(), BATCH)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(tally);
        };
        after = Some(last.key.clone());
        for row in rows {
            let scope = row
                .tenant
                .map_or(Scope::Platform, |t| Scope::Tenant(TenantId::from_uuid(t)));
            match reseal_value(
                keyring,
                scope,
                col,
                row.purpose_arg.as_deref(),
                &row.sealed,
                below,
            )
            .await?
            {
                Outcome::Current => tally.current += 1,
                Outcome::Unreadable => tally.unreadable += 1,
                Outcome::Resealed(new) => {
                    if catalog
                        .replace_sealed(col, &row.key, &row.sealed, &new)
                        .await?
                    {
                        tally.resealed += 1;
                    } else {
                        // Changed meanwhile: the writer sealed with the current key.
                        tally.current += 1;
                    }
                }
            }
        }
    }
}

/// The `app.audit` context of re-sealing transactions: the row updates are audited as the
/// system's key rotation, not as an anonymous change.
fn audit_context() -> String {
    base64::engine::general_purpose::STANDARD
        .encode(br#"{"actor_type":"system","actor_id":"key-rotation","route":"keys rotate-dek"}"#)
}

/// Re-seals every value of `tenant` below version `below` in a tenant-database column, over an
/// owner connection to the database holding the tenant's rows (RLS is bypassed: every statement
/// is scoped to the tenant).
pub async fn tenant_column(
    keyring: &Keyring,
    client: &mut Client,
    col: &SealedColumn,
    tenant: TenantId,
    below: u32,
) -> Result<Tally, ResealError> {
    debug_assert_eq!(col.database, Database::Tenant);
    let db = |source| ResealError::Database {
        column: col.name(),
        source,
    };
    let select = format!(
        "SELECT {table}.{key}::text AS k, {column} AS v FROM {table} WHERE tenant_id = $1 AND {column} IS NOT NULL \
         AND ($2::text IS NULL OR {table}.{key} > $2::text::{key_type}) ORDER BY {table}.{key} LIMIT {BATCH}",
        key = col.key,
        key_type = col.key_type,
        column = col.column,
        table = col.table,
    );
    let update = format!(
        "UPDATE {table} SET {column} = $3 WHERE tenant_id = $1 AND {key} = $2::text::{key_type} AND {column} = $4",
        table = col.table,
        column = col.column,
        key = col.key,
        key_type = col.key_type,
    );
    let scope = Scope::Tenant(tenant);
    let tenant_uuid = tenant.as_uuid();
    scope_session(client, tenant).await.map_err(db)?;
    let mut tally = Tally::default();
    let mut after: Option<String> = None;
    loop {
        let rows = client
            .query(&select, &[&tenant_uuid, &after])
            .await
            .map_err(db)?;
        let Some(last) = rows.last() else {
            return Ok(tally);
        };
        after = Some(last.get(0));
        let mut changes = Vec::new();
        for r in &rows {
            let key: String = r.get(0);
            let sealed: Vec<u8> = r.get(1);
            match reseal_value(keyring, scope, col, None, &sealed, below).await? {
                Outcome::Current => tally.current += 1,
                Outcome::Unreadable => tally.unreadable += 1,
                Outcome::Resealed(new) => changes.push((key, sealed, new)),
            }
        }
        if changes.is_empty() {
            continue;
        }
        let tx = client.transaction().await.map_err(db)?;
        // Both values are generated here (a UUID and base64), never caller text.
        tx.batch_execute(&format!(
            "SET LOCAL app.tenant_id = '{tenant}'; SET LOCAL app.audit = '{}'",
            audit_context()
        ))
        .await
        .map_err(db)?;
        let stmt = tx.prepare(&update).await.map_err(db)?;
        for (key, old, new) in &changes {
            let n = tx
                .execute(&stmt, &[&tenant_uuid, key, new, old])
                .await
                .map_err(db)?;
            if n == 1 {
                tally.resealed += 1;
            } else {
                tally.current += 1;
            }
        }
        tx.commit().await.map_err(db)?;
    }
}

/// Scopes an owner session to `tenant` (in case the owner is subject to row-level security
/// too); every statement also names the tenant.
async fn scope_session(client: &Client, tenant: TenantId) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "SELECT set_config('app.tenant_id', $1, false)",
            &[&tenant.to_string()],
        )
        .await
        .map(drop)
}

/// How many values of a catalog column are sealed under each key version (`None`: not a
/// well-formed sealed value), for one tenant or every row.
pub async fn catalog_versions(
    catalog: &Catalog,
    col: &SealedColumn,
    tenant: Option<TenantId>,
) -> Result<std::collections::BTreeMap<Option<u32>, u64>, CatalogError> {
    let mut out = std::collections::BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let rows = catalog
            .sealed_rows(col, tenant, after.as_deref(), 1000)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(out);
        };
        after = Some(last.key.clone());
        for r in rows {
            *out.entry(sealed_version(&r.sealed)).or_default() += 1;
        }
    }
}

/// How many values of a tenant-database column of `tenant` are sealed under each key version.
pub async fn tenant_versions(
    client: &Client,
    col: &SealedColumn,
    tenant: TenantId,
) -> Result<std::collections::BTreeMap<Option<u32>, u64>, tokio_postgres::Error> {
    // The version is bytes 1..5 of a v2 value (see `keyring`); anything else is malformed.
    let sql = format!(
        "SELECT CASE WHEN get_byte({c}, 0) = 2 AND length({c}) >= 33 \
                THEN (get_byte({c}, 1)::bigint << 24) | (get_byte({c}, 2) << 16) | (get_byte({c}, 3) << 8) | get_byte({c}, 4) END, \
                count(*) FROM {t} WHERE tenant_id = $1 AND {c} IS NOT NULL GROUP BY 1",
        c = col.column,
        t = col.table,
    );
    scope_session(client, tenant).await?;
    let rows = client.query(&sql, &[&tenant.as_uuid()]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let v: Option<i64> = r.get(0);
            let n: i64 = r.get(1);
            (
                v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0),
                u64::try_from(n).unwrap_or_default(),
            )
        })
        .collect())
}
