//! Tenant API keys. A key is `plt_{tenant id}_{secret}`: the tenant id routes the request to the
//! tenant's database, where the key is stored only as a SHA-256 hash (keys are credentials the
//! tenant owns, so they move with it). Verification results are cached briefly per
//! (tenant, key hash); revocation invalidates the tenant's entries on every instance.

use std::time::Duration;

use moka::future::Cache;
use time::OffsetDateTime;
use uuid::Uuid;

use tenancy::catalog::Tenant;
use tenancy::crypto::{hash_token, random_token};
use tenancy::dataplane::{ConnectError, DataPlane};
use tenancy::ids::{ApiKeyId, RoleId, TenantId};

const PREFIX: &str = "plt_";

/// A key as listed (never the secret).
#[derive(Clone, Debug)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub prefix: String,
    /// The key's role (`admin` for keys made before roles existed).
    pub role: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A presented key, parsed: which tenant it claims and its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentedKey {
    pub tenant: TenantId,
    hash: Vec<u8>,
}

impl PresentedKey {
    /// Parses `plt_{32 hex}_{secret}`; anything else is not an API key.
    #[must_use]
    pub fn parse(token: &str) -> Option<Self> {
        let rest = token.strip_prefix(PREFIX)?;
        let (tenant, secret) = rest.split_once('_')?;
        if tenant.len() != 32 || secret.len() < 32 || secret.len() > 64 {
            return None;
        }
        let tenant = TenantId::from_uuid(Uuid::try_parse(tenant).ok()?);
        Some(Self {
            tenant,
            hash: hash_token(token),
        })
    }
}

/// An API key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// A verified key: its id and role (`None`: the built-in `admin`).
pub type VerifiedKey = (ApiKeyId, Option<RoleId>);

/// API key store and verification cache.
#[derive(Clone)]
pub struct ApiKeys {
    cache: Cache<(TenantId, Vec<u8>), Option<VerifiedKey>>,
}

impl Default for ApiKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeys")
    }
}

impl ApiKeys {
    #[must_use]
    pub fn new() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30))
                .support_invalidation_closures()
                .build(),
        }
    }

    /// Whether `key` was verified as live recently (answered from the cache, no database work):
    /// such a key is not held to the failed-authentication budgets.
    pub async fn known_live(&self, key: &PresentedKey) -> bool {
        matches!(
            self.cache.get(&(key.tenant, key.hash.clone())).await,
            Some(Some(_))
        )
    }

    /// The key's id and role (`None`: the built-in `admin`) if `key` is a live key of `tenant`.
    pub async fn verify(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        key: &PresentedKey,
    ) -> Result<Option<(ApiKeyId, Option<RoleId>)>, ApiKeyError> {
        if key.tenant != tenant.id {
            return Ok(None);
        }
        let dp = dp.clone();
        let tenant = tenant.clone();
        let hash = key.hash.clone();
        self.cache
            .try_get_with((tenant.id, key.hash.clone()), async move {
                let row = dp
                    .connect(&tenant)
                    .await?
                    .begin()
                    .query_opt_and_commit(
                        "SELECT id, role_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
                        &[&hash],
                    )
                    .await?;
                Ok(row.map(|r| {
                    (
                        ApiKeyId::from_uuid(r.get(0)),
                        r.get::<_, Option<uuid::Uuid>>(1).map(RoleId::from_uuid),
                    )
                }))
            })
            .await
            .map_err(|e: std::sync::Arc<ApiKeyError>| match &*e {
                ApiKeyError::Connect(ConnectError::SchemaBehind { have, need }) => {
                    ApiKeyError::Connect(ConnectError::SchemaBehind {
                        have: *have,
                        need: *need,
                    })
                }
                ApiKeyError::Connect(_) | ApiKeyError::Db(_) => {
                    ApiKeyError::Connect(ConnectError::Unavailable(e.clone() as _))
                }
            })
    }

    /// Creates a key; returns it with the secret, which is shown once and never stored.
    pub async fn create(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        name: &str,
        role: Option<(RoleId, String)>,
    ) -> Result<(ApiKey, String), ApiKeyError> {
        let secret = random_token(32);
        let token = format!("{PREFIX}{}_{secret}", tenant.id.as_uuid().simple());
        let id = ApiKeyId::new();
        let prefix = format!("{PREFIX}…{}", &secret[..6]);
        let row = dp
            .connect(tenant)
            .await?
            .begin()
            .query_and_commit(
                "INSERT INTO api_keys (tenant_id, id, name, prefix, key_hash, role_id) VALUES ($1, $2, $3, $4, $5, $6)
                 RETURNING created_at",
                &[&tenant.id.as_uuid(), &id.as_uuid(), &name, &prefix, &hash_token(&token), &role.as_ref().map(|r| r.0.as_uuid())],
            )
            .await?;
        let created_at = row
            .first()
            .map_or_else(OffsetDateTime::now_utc, |r| r.get(0));
        Ok((
            ApiKey {
                id,
                name: name.to_owned(),
                prefix,
                role: role.map_or_else(|| "admin".to_owned(), |r| r.1),
                created_at,
                revoked_at: None,
            },
            token,
        ))
    }

    /// Revokes a key; false if the tenant has no such live key. Takes effect on this instance at
    /// once; the caller publishes the change for the others.
    pub async fn revoke(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        id: ApiKeyId,
    ) -> Result<bool, ApiKeyError> {
        let n = dp
            .connect(tenant)
            .await?
            .begin()
            .execute_and_commit(
                "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
                &[&id.as_uuid()],
            )
            .await?;
        self.invalidate_tenant(tenant.id);
        Ok(n == 1)
    }

    /// Lists the tenant's keys.
    pub async fn list(&self, dp: &DataPlane, tenant: &Tenant) -> Result<Vec<ApiKey>, ApiKeyError> {
        let rows = dp
            .connect(tenant)
            .await?
            .begin()
            .query_and_commit(
                "SELECT k.id, k.name, k.prefix, k.created_at, k.revoked_at, COALESCE(r.name, 'admin')
                 FROM api_keys k LEFT JOIN roles r ON r.id = k.role_id ORDER BY k.id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ApiKey {
                id: ApiKeyId::from_uuid(r.get(0)),
                name: r.get(1),
                prefix: r.get(2),
                created_at: r.get(3),
                revoked_at: r.get(4),
                role: r.get(5),
            })
            .collect())
    }

    /// Drops cached verifications of `tenant`'s keys (or all).
    pub fn invalidate_tenant_or_all(&self, tenant: Option<TenantId>) {
        match tenant {
            Some(t) => self.invalidate_tenant(t),
            None => self.cache.invalidate_all(),
        }
    }

    fn invalidate_tenant(&self, tenant: TenantId) {
        // Closures are registered and applied by moka's housekeeping; lookups honour them at once.
        if self
            .cache
            .invalidate_entries_if(move |k, _| k.0 == tenant)
            .is_err()
        {
            self.cache.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_strictly() {
        let t = TenantId::new();
        let good = format!("plt_{}_{}", t.as_uuid().simple(), "a".repeat(43));
        assert_eq!(PresentedKey::parse(&good).map(|k| k.tenant), Some(t));
        assert!(PresentedKey::parse("plt_nothex_aaaa").is_none());
        assert!(
            PresentedKey::parse(&format!("xyz_{}_{}", t.as_uuid().simple(), "a".repeat(43)))
                .is_none()
        );
        assert!(PresentedKey::parse(&format!("plt_{}_short", t.as_uuid().simple())).is_none());
        assert!(PresentedKey::parse("").is_none());
    }
}
