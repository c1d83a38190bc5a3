//! The keyring: data-encryption keys per scope (the platform, or one tenant), wrapped by the
//! KEK in the catalog, unwrapped on demand and cached briefly (zeroized when dropped).
//!
//! Sealed format (version 2):
//! `0x02 | DEK version (u32, big-endian) | nonce (12 bytes) | AES-256-GCM ciphertext + tag`.
//! The associated data is `platform-secret/v2 \0 scope \0 purpose \0 DEK version`, so a
//! ciphertext only opens for the scope (tenant) and purpose (field) it was sealed for.

use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use moka::future::Cache;
use rand::RngCore;
use zeroize::Zeroizing;

use super::{CryptoError, KeyProvider};
use crate::catalog::keys::WrappedKey;
use crate::catalog::{Catalog, CatalogError};
use crate::ids::TenantId;

const FORMAT_V2: u8 = 2;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const TAG_LEN: usize = 16;
/// How long an unwrapped DEK stays in memory without use.
const DEK_TTL: Duration = Duration::from_secs(300);

/// Whose key seals a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Platform-level secrets (database server credentials, the data-plane role's password).
    Platform,
    /// A tenant's secrets.
    Tenant(TenantId),
}

impl Scope {
    fn key(self) -> String {
        match self {
            Self::Platform => "platform".to_owned(),
            Self::Tenant(t) => t.to_string(),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Platform => f.write_str("the platform"),
            Self::Tenant(t) => write!(f, "tenant {t}"),
        }
    }
}

/// A sealing or key operation failed. Always names the owner and purpose; never a panic.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("sealed {purpose} of {scope} is malformed")]
    Malformed { scope: Scope, purpose: String },
    #[error(
        "sealed {purpose} of {scope} needs data key version {version}, which does not exist (shredded or never created)"
    )]
    NoKey {
        scope: Scope,
        purpose: String,
        version: u32,
    },
    #[error(
        "sealed {purpose} of {scope} does not open (tampered, or sealed for another tenant or purpose)"
    )]
    Open { scope: Scope, purpose: String },
    #[error("the data key of {scope} cannot be unwrapped: {source}")]
    Unwrap { scope: Scope, source: CryptoError },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

type Dek = Arc<Zeroizing<[u8; 32]>>;

/// Seals and opens secrets with per-scope data keys.
#[derive(Clone)]
pub struct Keyring {
    provider: Arc<dyn KeyProvider>,
    catalog: Catalog,
    deks: Cache<(Scope, u32), Dek>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

fn aad(scope: Scope, purpose: &str, version: u32) -> Vec<u8> {
    format!("platform-secret/v2\0{}\0{purpose}\0{version}", scope.key()).into_bytes()
}

fn wrap_purpose(scope: Scope, version: u32) -> String {
    format!("dek:{}:{version}", scope.key())
}

impl Keyring {
    #[must_use]
    pub fn new(provider: Arc<dyn KeyProvider>, catalog: Catalog) -> Self {
        Self {
            provider,
            catalog,
            deks: Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(DEK_TTL)
                .support_invalidation_closures()
                .build(),
        }
    }

    /// The KEK provider.
    #[must_use]
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// Creates the first DEK of `scope` if it has none (provisioning calls this for each tenant).
    pub async fn ensure_key(&self, scope: Scope) -> Result<u32, KeyError> {
        Ok(self.current(scope).await?.0)
    }

    /// Seals `plaintext` for `scope` and `purpose` with the scope's current DEK.
    pub async fn seal(
        &self,
        scope: Scope,
        purpose: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let (version, dek) = self.current(scope).await?;
        let cipher = Aes256Gcm::new_from_slice(&**dek).expect("32-byte key");
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad(scope, purpose, version),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.push(FORMAT_V2);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a value sealed by [`Keyring::seal`] for the same scope and purpose.
    pub async fn open(
        &self,
        scope: Scope,
        purpose: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let version = sealed_version(sealed).ok_or_else(|| KeyError::Malformed {
            scope,
            purpose: purpose.to_owned(),
        })?;
        let dek = self
            .dek(scope, version)
            .await?
            .ok_or_else(|| KeyError::NoKey {
                scope,
                purpose: purpose.to_owned(),
                version,
            })?;
        let (nonce, ct) = sealed[5..].split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new_from_slice(&**dek).expect("32-byte key");
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &aad(scope, purpose, version),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Open {
                scope,
                purpose: purpose.to_owned(),
            })
    }

    /// Opens a sealed UTF-8 string.
    pub async fn open_string(
        &self,
        scope: Scope,
        purpose: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<String>, KeyError> {
        let bytes = self.open(scope, purpose, sealed).await?;
        String::from_utf8(bytes.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Malformed {
                scope,
                purpose: purpose.to_owned(),
            })
    }

    /// The newest DEK of `scope`, created if there is none.
    async fn current(&self, scope: Scope) -> Result<(u32, Dek), KeyError> {
        loop {
            if let Some(k) = self.catalog.current_data_key(&scope.key()).await? {
                let version = u32::try_from(k.version).unwrap_or_default();
                return Ok((version, self.unwrap_cached(scope, &k).await?));
            }
            // None yet: create version 1; if another writer got there first, read theirs.
            self.insert_new(scope, 1).await?;
        }
    }

    async fn insert_new(&self, scope: Scope, version: u32) -> Result<bool, KeyError> {
        let mut dek = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *dek);
        let wrapped = self.provider.wrap(&wrap_purpose(scope, version), &*dek);
        let row = WrappedKey {
            scope: scope.key(),
            version: i32::try_from(version).unwrap_or(i32::MAX),
            kek_id: self.provider.current_id().to_owned(),
            wrapped,
        };
        Ok(self.catalog.insert_data_key(&row).await?)
    }

    async fn dek(&self, scope: Scope, version: u32) -> Result<Option<Dek>, KeyError> {
        if let Some(d) = self.deks.get(&(scope, version)).await {
            return Ok(Some(d));
        }
        let Ok(v) = i32::try_from(version) else {
            return Ok(None);
        };
        match self.catalog.data_key(&scope.key(), v).await? {
            Some(k) => Ok(Some(self.unwrap_cached(scope, &k).await?)),
            None => Ok(None),
        }
    }

    async fn unwrap_cached(&self, scope: Scope, k: &WrappedKey) -> Result<Dek, KeyError> {
        let version = u32::try_from(k.version).unwrap_or_default();
        if let Some(d) = self.deks.get(&(scope, version)).await {
            return Ok(d);
        }
        let raw = self
            .provider
            .unwrap(&wrap_purpose(scope, version), &k.wrapped)
            .map_err(|source| KeyError::Unwrap { scope, source })?;
        let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| KeyError::Unwrap {
            scope,
            source: CryptoError::Malformed {
                purpose: wrap_purpose(scope, version),
            },
        })?;
        let dek: Dek = Arc::new(Zeroizing::new(bytes));
        self.deks.insert((scope, version), Arc::clone(&dek)).await;
        Ok(dek)
    }

    /// Re-wraps every DEK not under the current KEK (no secret is re-encrypted). Resumable and
    /// safe beside running servers: each key is swapped atomically and only if still under its
    /// old KEK. Returns how many were re-wrapped.
    pub async fn rotate_kek(&self) -> Result<u64, KeyError> {
        let current = self.provider.current_id().to_owned();
        let mut done = 0;
        loop {
            let batch = self.catalog.keys_not_under(&current, 100).await?;
            if batch.is_empty() {
                return Ok(done);
            }
            for k in batch {
                let scope = scope_of(&k.scope);
                let version = u32::try_from(k.version).unwrap_or_default();
                let raw = self
                    .provider
                    .unwrap(&wrap_purpose(scope, version), &k.wrapped)
                    .map_err(|source| KeyError::Unwrap { scope, source })?;
                let rewrapped = WrappedKey {
                    wrapped: self.provider.wrap(&wrap_purpose(scope, version), &raw),
                    kek_id: current.clone(),
                    ..k.clone()
                };
                if self.catalog.rewrap_data_key(&rewrapped, &k.kek_id).await? {
                    done += 1;
                }
            }
        }
    }

    /// Adds a new DEK version for `scope` and makes it current. Returns the new version.
    pub async fn new_version(&self, scope: Scope) -> Result<u32, KeyError> {
        loop {
            let latest = self
                .catalog
                .current_data_key(&scope.key())
                .await?
                .map_or(0, |k| u32::try_from(k.version).unwrap_or_default());
            if self.insert_new(scope, latest + 1).await? {
                return Ok(latest + 1);
            }
        }
    }

    /// Destroys the DEK versions of `scope` below `keep_from` (every version with `None`:
    /// crypto-shredding). Their ciphertexts, wherever copies survive, no longer open.
    pub async fn destroy(&self, scope: Scope, keep_from: Option<u32>) -> Result<u64, KeyError> {
        let keep = keep_from.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
        let n = self.catalog.delete_data_keys(&scope.key(), keep).await?;
        let _ = self.deks.invalidate_entries_if(move |(s, v), _| {
            *s == scope && keep_from.is_none_or(|k| *v < k)
        });
        self.deks.run_pending_tasks().await;
        Ok(n)
    }

    /// The versions of `scope`'s data key that exist (older ones were destroyed).
    pub async fn versions(&self, scope: Scope) -> Result<Vec<u32>, KeyError> {
        Ok(self
            .catalog
            .data_key_versions(&scope.key())
            .await?
            .into_iter()
            .filter_map(|v| u32::try_from(v).ok())
            .collect())
    }

    /// Forgets every unwrapped key held in memory.
    pub fn forget_cached(&self) {
        self.deks.invalidate_all();
    }

    /// How many DEKs each KEK wraps, with whether this process knows that KEK.
    pub async fn status(&self) -> Result<Vec<(String, i64, bool)>, KeyError> {
        let known = self.provider.known_ids();
        Ok(self
            .catalog
            .keys_per_kek()
            .await?
            .into_iter()
            .map(|(id, n)| {
                let k = known.contains(&id);
                (id, n, k)
            })
            .collect())
    }
}

/// The DEK version a sealed value names, if it is a well-formed v2 value.
#[must_use]
pub fn sealed_version(sealed: &[u8]) -> Option<u32> {
    if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != FORMAT_V2 {
        return None;
    }
    let v = u32::from_be_bytes(sealed[1..5].try_into().ok()?);
    (v > 0).then_some(v)
}

fn scope_of(key: &str) -> Scope {
    TenantId::parse(key).map_or(Scope::Platform, Scope::Tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_parse_as_a_bigger_version_than_they_hold(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            // The parser is total: any input gives Some(version) only for a well-formed header.
            if let Some(v) = sealed_version(&bytes) {
                proptest::prop_assert!(bytes.len() >= HEADER_LEN + TAG_LEN);
                proptest::prop_assert_eq!(bytes[0], FORMAT_V2);
                proptest::prop_assert!(v > 0);
            }
        }

        #[test]
        fn master_key_open_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let key = super::super::MasterKey::from_bytes([7u8; 32]);
            proptest::prop_assert!(key.open("p", &bytes).is_err());
        }
    }
}
