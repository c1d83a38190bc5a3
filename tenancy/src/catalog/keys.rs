//! Wrapped data keys and platform secrets in the catalog (the rows behind
//! [`crate::crypto::Keyring`]).

use super::{Catalog, CatalogError};
use crate::crypto::registry::{ScopeOf, SealedColumn};
use crate::ids::TenantId;

/// One wrapped data key.
#[derive(Clone, Debug)]
pub struct WrappedKey {
    pub scope: String,
    pub version: i32,
    pub kek_id: String,
    pub wrapped: Vec<u8>,
}

impl Catalog {
    /// The newest key of `scope`.
    pub async fn current_data_key(&self, scope: &str) -> Result<Option<WrappedKey>, CatalogError> {
        self.data_key_query("SELECT scope, version, kek_id, wrapped FROM data_keys WHERE scope = $1 ORDER BY version DESC LIMIT 1", scope, None)
            .await
    }

    /// A given version of `scope`'s key.
    pub async fn data_key(
        &self,
        scope: &str,
        version: i32,
    ) -> Result<Option<WrappedKey>, CatalogError> {
        self.data_key_query("SELECT scope, version, kek_id, wrapped FROM data_keys WHERE scope = $1 AND version = $2", scope, Some(version))
            .await
    }

    async fn data_key_query(
        &self,
        sql: &str,
        scope: &str,
        version: Option<i32>,
    ) -> Result<Option<WrappedKey>, CatalogError> {
        let mut q = sqlx::query_as::<_, (String, i32, String, Vec<u8>)>(sql).bind(scope);
        if let Some(v) = version {
            q = q.bind(v);
        }
        let row = q.fetch_optional(self.pool()).await?;
        Ok(row.map(|(scope, version, kek_id, wrapped)| WrappedKey {
            scope,
            version,
            kek_id,
            wrapped,
        }))
    }

    /// Inserts a key version; false if that version already exists (a concurrent writer won).
    pub async fn insert_data_key(&self, k: &WrappedKey) -> Result<bool, CatalogError> {
        let n = sqlx::query(
            "INSERT INTO data_keys (scope, version, kek_id, wrapped) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&k.scope)
        .bind(k.version)
        .bind(&k.kek_id)
        .bind(&k.wrapped)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Up to `limit` keys not wrapped by `kek_id`.
    pub async fn keys_not_under(
        &self,
        kek_id: &str,
        limit: i64,
    ) -> Result<Vec<WrappedKey>, CatalogError> {
        let rows: Vec<(String, i32, String, Vec<u8>)> = sqlx::query_as(
            "SELECT scope, version, kek_id, wrapped FROM data_keys WHERE kek_id <> $1 ORDER BY scope, version LIMIT $2",
        )
        .bind(kek_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(scope, version, kek_id, wrapped)| WrappedKey {
                scope,
                version,
                kek_id,
                wrapped,
            })
            .collect())
    }

    /// Replaces a key's wrapping if it is still wrapped by `old_kek` (safe to race and to resume).
    pub async fn rewrap_data_key(
        &self,
        k: &WrappedKey,
        old_kek: &str,
    ) -> Result<bool, CatalogError> {
        let n = sqlx::query("UPDATE data_keys SET wrapped = $4, kek_id = $3 WHERE scope = $1 AND version = $2 AND kek_id = $5")
            .bind(&k.scope)
            .bind(k.version)
            .bind(&k.kek_id)
            .bind(&k.wrapped)
            .bind(old_kek)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Deletes the versions of `scope` older than `keep_from` (or all, with `None`).
    pub async fn delete_data_keys(
        &self,
        scope: &str,
        keep_from: Option<i32>,
    ) -> Result<u64, CatalogError> {
        let n = sqlx::query(
            "DELETE FROM data_keys WHERE scope = $1 AND ($2::int IS NULL OR version < $2)",
        )
        .bind(scope)
        .bind(keep_from)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n)
    }

    /// How many data keys each KEK wraps.
    pub async fn keys_per_kek(&self) -> Result<Vec<(String, i64)>, CatalogError> {
        Ok(
            sqlx::query_as(
                "SELECT kek_id, count(*) FROM data_keys GROUP BY kek_id ORDER BY kek_id",
            )
            .fetch_all(self.pool())
            .await?,
        )
    }

    /// A sealed platform secret.
    pub async fn platform_secret(&self, name: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM platform_secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Stores a sealed platform secret unless one exists; returns the stored value.
    pub async fn put_platform_secret_if_absent(
        &self,
        name: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CatalogError> {
        sqlx::query(
            "INSERT INTO platform_secrets (name, sealed) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(sealed)
        .execute(self.pool())
        .await?;
        Ok(
            sqlx::query_scalar("SELECT sealed FROM platform_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Replaces a sealed platform secret.
    pub async fn set_platform_secret(&self, name: &str, sealed: &[u8]) -> Result<(), CatalogError> {
        sqlx::query("UPDATE platform_secrets SET sealed = $2, updated_at = now() WHERE name = $1")
            .bind(name)
            .bind(sealed)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// A [`SealedRow`] as read.
type SealedRowTuple = (String, Option<uuid::Uuid>, Option<String>, Vec<u8>);

/// One row of a sealed catalog column (see [`crate::crypto::registry`]).
#[derive(Clone, Debug)]
pub struct SealedRow {
    /// The row's walk key, as text.
    pub key: String,
    /// The tenant whose key sealed it (for tenant-scoped columns).
    pub tenant: Option<uuid::Uuid>,
    /// The text of the column the purpose is derived from, if any.
    pub purpose_arg: Option<String>,
    pub sealed: Vec<u8>,
}

impl Catalog {
    /// Up to `limit` non-null values of a registered catalog column, in key order after
    /// `after`, of one tenant (`tenant`) or of every row.
    pub async fn sealed_rows(
        &self,
        col: &SealedColumn,
        tenant: Option<TenantId>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SealedRow>, CatalogError> {
        let scope_col = match col.scope {
            ScopeOf::Tenant(c) => c.to_owned(),
            ScopeOf::Platform => "NULL::uuid".to_owned(),
        };
        let purpose_col = col
            .purpose
            .column()
            .map_or_else(|| "NULL::text".to_owned(), |c| format!("{c}::text"));
        let tenant_filter = match col.scope {
            ScopeOf::Tenant(c) => format!("($1::uuid IS NULL OR {c} = $1::uuid)"),
            ScopeOf::Platform => "($1::uuid IS NULL OR true)".to_owned(),
        };
        let sql = format!(
            "SELECT {table}.{key}::text AS k, {scope_col} AS s, {purpose_col} AS p, {column} AS v FROM {table} \
             WHERE {column} IS NOT NULL AND {tenant_filter} \
             AND ($2::text IS NULL OR {table}.{key} > $2::text::{key_type}) ORDER BY {table}.{key} LIMIT $3",
            key = col.key,
            key_type = col.key_type,
            column = col.column,
            table = col.table,
        );
        let rows: Vec<SealedRowTuple> = sqlx::query_as(&sql)
            .bind(tenant.map(|t| t.as_uuid()))
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(key, tenant, purpose_arg, sealed)| SealedRow {
                key,
                tenant,
                purpose_arg,
                sealed,
            })
            .collect())
    }

    /// Replaces one sealed value if it still holds `old` (a concurrent writer wins).
    pub async fn replace_sealed(
        &self,
        col: &SealedColumn,
        key: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, CatalogError> {
        let sql = format!(
            "UPDATE {table} SET {column} = $3{epoch} WHERE {key} = $1::text::{key_type} AND {column} = $2",
            table = col.table,
            column = col.column,
            key = col.key,
            key_type = col.key_type,
            epoch = if col.cached {
                ", epoch = epoch + 1"
            } else {
                ""
            },
        );
        let mut tx = self.pool().begin().await?;
        let n = sqlx::query(&sql)
            .bind(key)
            .bind(old)
            .bind(new)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 && col.cached {
            super::publish(&mut *tx, TenantId::parse(key)).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }
}

impl Catalog {
    /// The versions of `scope`'s data key that exist, oldest first.
    pub async fn data_key_versions(&self, scope: &str) -> Result<Vec<i32>, CatalogError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM data_keys WHERE scope = $1 ORDER BY version")
                .bind(scope)
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Whether a placement move of `tenant` is unfinished. Its copy of the tenant's rows is
    /// fenced or in flight, so key rotation waits for it (a re-seal could not reach every copy).
    pub async fn move_in_flight(&self, tenant: TenantId) -> Result<bool, CatalogError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM operations WHERE tenant_id = $1 AND state IN ('pending', 'running'))",
        )
        .bind(tenant.as_uuid())
        .fetch_one(self.pool())
        .await?)
    }
}
