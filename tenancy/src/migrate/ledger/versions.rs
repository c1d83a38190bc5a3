//! The recorded schema version of every tenant database (`tenants.schema_version` for dedicated
//! databases, `shared_schema` for the shared one). Only ever raised, and each change is published so
//! every instance's caches see the new version.

use sqlx::PgConnection;

use crate::catalog::{Catalog, CatalogError, publish};
use crate::migrate::inventory::DbKey;

/// Records that a database reached `version` (never lowers a recorded version) and, if that
/// changed anything, tells every instance, whose caches then see the new version.
pub async fn record_version(
    catalog: &Catalog,
    key: &DbKey,
    version: i64,
) -> Result<(), CatalogError> {
    let mut tx = catalog.pool().begin().await?;
    record_version_in(&mut tx, key, version).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn record_version_in(
    tx: &mut PgConnection,
    key: &DbKey,
    version: i64,
) -> Result<(), CatalogError> {
    match key {
        DbKey::Tenant(id) => {
            let changed = sqlx::query(
                "UPDATE tenants SET schema_version = $2, epoch = epoch + 1, updated_at = now()
                  WHERE id = $1 AND (schema_version IS NULL OR schema_version < $2)",
            )
            .bind(id.as_uuid())
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed > 0 {
                publish(&mut *tx, Some(*id)).await?;
            }
        }
        DbKey::Shared => {
            let changed = sqlx::query(
                "INSERT INTO shared_schema (singleton, schema_version) VALUES (true, $1)
                 ON CONFLICT (singleton) DO UPDATE SET schema_version = EXCLUDED.schema_version, updated_at = now()
                  WHERE shared_schema.schema_version < EXCLUDED.schema_version",
            )
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed > 0 {
                // Every shared tenant's effective version changed.
                publish(&mut *tx, None).await?;
            }
        }
    }
    Ok(())
}
