//! `Idempotency-Key` records: a retry of a creating POST with the same key and body gets the
//! first response again; the same key with another body is refused; a retry while the first
//! request is still running is told so.

use serde_json::Value;

use super::{Catalog, CatalogError};

/// A response remembered for a key.
#[derive(Clone, Debug)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Value,
}

/// What to do with a request that carries an idempotency key.
#[derive(Debug)]
pub enum IdempotencyOutcome {
    /// First time: run it, then [`Catalog::finish_idempotent`] (or `abandon_idempotent`).
    Proceed,
    /// Seen with the same body: answer this.
    Replay(StoredResponse),
    /// Seen with another body.
    Mismatch,
    /// The first request with this key has not finished.
    InFlight,
}

impl Catalog {
    /// Claims `key` in `scope` for a request whose body hashes to `request_hash`.
    pub async fn begin_idempotent(
        &self,
        scope: &str,
        key: &str,
        request_hash: &[u8],
    ) -> Result<IdempotencyOutcome, CatalogError> {
        // Keys are kept for 24 hours; a claim left by a crashed request is released after
        // 5 minutes, so a retry can proceed.
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = $1
               AND (created_at < now() - interval '24 hours'
                    OR (key = $2 AND status IS NULL AND created_at < now() - interval '5 minutes'))",
        )
        .bind(scope)
        .bind(key)
        .execute(&self.pool)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            return Ok(IdempotencyOutcome::Proceed);
        }
        let row: Option<(Vec<u8>, Option<i32>, Option<Value>)> =
            sqlx::query_as("SELECT request_hash, status, response FROM idempotency_keys WHERE scope = $1 AND key = $2")
                .bind(scope)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            // Abandoned between our insert attempt and this read: treat as in flight; a retry proceeds.
            None => IdempotencyOutcome::InFlight,
            Some((hash, _, _)) if hash != request_hash => IdempotencyOutcome::Mismatch,
            Some((_, Some(status), Some(body))) => IdempotencyOutcome::Replay(StoredResponse {
                status: u16::try_from(status).unwrap_or(500),
                body,
            }),
            Some(_) => IdempotencyOutcome::InFlight,
        })
    }

    /// Remembers the response for a claimed key.
    pub async fn finish_idempotent(
        &self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $3, response = $4 WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .bind(i32::from(response.status))
        .bind(&response.body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Releases a claimed key whose request failed in a way worth retrying (e.g. a 5xx).
    pub async fn abandon_idempotent(&self, scope: &str, key: &str) -> Result<(), CatalogError> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL",
        )
        .bind(scope)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
