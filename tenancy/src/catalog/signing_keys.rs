//! The platform's JWT signing keys in the catalog: the private half sealed with the platform data
//! key, the public half in clear (it is published in the JWKS).

use time::OffsetDateTime;

use super::{Catalog, CatalogError};

/// A signing key row.
#[derive(Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub private_sealed: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// Keys that are current or retired after `since` (still verifying), newest first.
    pub async fn signing_keys(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<SigningKeyRow>, CatalogError> {
        Ok(sqlx::query_as(
            "SELECT kid, private_sealed, public_key, created_at, retired_at FROM jwt_signing_keys
             WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC, kid DESC",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes `kid` the current key: retires every other current key, in one transaction.
    pub async fn insert_signing_key(
        &self,
        kid: &str,
        private_sealed: &[u8],
        public_key: &[u8],
        retire_others: bool,
    ) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        // Serialises concurrent first starts: only one instance creates the first key.
        sqlx::query("LOCK TABLE jwt_signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        if !retire_others {
            let any: Option<(String,)> =
                sqlx::query_as("SELECT kid FROM jwt_signing_keys WHERE retired_at IS NULL LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await?;
            if any.is_some() {
                return Ok(());
            }
        }
        sqlx::query("UPDATE jwt_signing_keys SET retired_at = now() WHERE retired_at IS NULL")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO jwt_signing_keys (kid, alg, private_sealed, public_key) VALUES ($1, 'EdDSA', $2, $3)",
        )
        .bind(kid)
        .bind(private_sealed)
        .bind(public_key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
