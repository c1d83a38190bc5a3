//! Secrets at rest, by envelope encryption.
//!
//! - A key-encryption key (KEK, [`MasterKey`]) comes from a [`KeyProvider`]: the default reads
//!   `PLATFORM_MASTER_KEY` (or a key file) and knows previous KEKs too, so rotation is online. The
//!   trait is where a cloud KMS would plug in.
//! - Each tenant, and the platform itself, has a data-encryption key (DEK), stored in the catalog
//!   only wrapped by a KEK (see [`keyring`]).
//! - Secrets are sealed with the DEK in a versioned, self-describing format; the associated data
//!   binds each ciphertext to its owner and purpose, so a ciphertext copied to another tenant or
//!   field fails to open.
//!
//! This file holds the KEK primitive (AES-256-GCM seal/open with purpose binding) used to wrap
//! DEKs, and small token helpers.

pub mod keyring;
pub mod registry;
pub mod reseal;

pub use keyring::{KeyError, Keyring, Scope};

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Format version byte of a sealed value.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why a key could not be loaded or a value not opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the master key must be base64 of exactly 32 bytes")]
    MalformedKey,
    #[error("sealed value for {purpose} is malformed")]
    Malformed { purpose: String },
    #[error("sealed value for {purpose} was sealed by key {key_id}, which is not loaded")]
    UnknownKey { purpose: String, key_id: String },
    #[error("sealed value for {purpose} does not open (wrong key, wrong purpose, or tampered)")]
    Open { purpose: String },
}

/// A 256-bit key-encryption key. Never printed; zeroized when dropped.
#[derive(Clone)]
pub struct MasterKey {
    key: zeroize::Zeroizing<[u8; 32]>,
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Parses base64 (standard or URL-safe) of 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, CryptoError> {
        let s = s.trim();
        let bytes = STANDARD
            .decode(s)
            .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
            .map_err(|_| CryptoError::MalformedKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::MalformedKey)?;
        Ok(Self::from_bytes(key))
    }

    /// Wraps raw key bytes.
    #[must_use]
    pub fn from_bytes(key: [u8; 32]) -> Self {
        // The key id is a short fingerprint, so a sealed value names the key that sealed it
        // without revealing anything about it.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("hmac takes any key length");
        mac.update(b"platform key id v1");
        let id = hex8(&mac.finalize().into_bytes());
        Self {
            key: zeroize::Zeroizing::new(key),
            id,
        }
    }

    /// A fresh random key (the embedded default writes one into its data dir).
    #[must_use]
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self::from_bytes(key)
    }

    /// Base64 encoding, for writing the key file. Handle the result as a secret.
    #[must_use]
    pub fn to_base64(&self) -> String {
        STANDARD.encode(*self.key)
    }

    /// The key's public fingerprint.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext`; `purpose` (e.g. `db_server.url:<id>`) is bound as associated data.
    #[must_use]
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new_from_slice(&*self.key).expect("32-byte key");
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let id = self.id.as_bytes();
        let aad = aad(id, purpose);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        // version | key id length | key id | nonce | ciphertext+tag
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + ct.len());
        out.push(FORMAT_V1);
        out.push(u8::try_from(id.len()).expect("key ids are short"));
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a value sealed by [`MasterKey::seal`] for the same `purpose`.
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let malformed = || CryptoError::Malformed {
            purpose: purpose.to_owned(),
        };
        let (&version, rest) = sealed.split_first().ok_or_else(malformed)?;
        if version != FORMAT_V1 {
            return Err(malformed());
        }
        let (&id_len, rest) = rest.split_first().ok_or_else(malformed)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN + 16 {
            return Err(malformed());
        }
        let (id, rest) = rest.split_at(id_len);
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        if id != self.id.as_bytes() {
            return Err(CryptoError::UnknownKey {
                purpose: purpose.to_owned(),
                key_id: String::from_utf8_lossy(id).into_owned(),
            });
        }
        let cipher = Aes256Gcm::new_from_slice(&*self.key).expect("32-byte key");
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &aad(id, purpose),
                },
            )
            .map_err(|_| CryptoError::Open {
                purpose: purpose.to_owned(),
            })
    }
}

/// Where key-encryption keys come from. The default ([`LocalKeys`]) holds them in memory from
/// the environment or a key file; a cloud KMS would implement `wrap`/`unwrap` by calling out
/// (unwrapped data keys are cached by the [`Keyring`], so such calls are rare).
pub trait KeyProvider: Send + Sync + std::fmt::Debug {
    /// The id of the KEK new wraps use.
    fn current_id(&self) -> &str;
    /// Wraps `dek` under the current KEK, bound to `purpose`.
    fn wrap(&self, purpose: &str, dek: &[u8]) -> Vec<u8>;
    /// Unwraps with whichever known KEK wrapped it.
    fn unwrap(
        &self,
        purpose: &str,
        wrapped: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError>;
    /// Ids of every KEK this provider can unwrap with.
    fn known_ids(&self) -> Vec<String>;
}

/// KEKs held in memory: the current one and any previous ones still needed to unwrap.
#[derive(Clone, Debug)]
pub struct LocalKeys {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl LocalKeys {
    #[must_use]
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self { current, previous }
    }

    /// The current KEK.
    #[must_use]
    pub fn current(&self) -> &MasterKey {
        &self.current
    }
}

impl KeyProvider for LocalKeys {
    fn current_id(&self) -> &str {
        self.current.id()
    }

    fn wrap(&self, purpose: &str, dek: &[u8]) -> Vec<u8> {
        self.current.seal(purpose, dek)
    }

    fn unwrap(
        &self,
        purpose: &str,
        wrapped: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
        let mut last = None;
        for k in std::iter::once(&self.current).chain(&self.previous) {
            match k.open(purpose, wrapped) {
                Ok(v) => return Ok(zeroize::Zeroizing::new(v)),
                Err(e @ CryptoError::UnknownKey { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(CryptoError::Malformed {
            purpose: purpose.to_owned(),
        }))
    }

    fn known_ids(&self) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|k| k.id().to_owned())
            .collect()
    }
}

fn aad(key_id: &[u8], purpose: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(key_id.len() + purpose.len() + 1);
    aad.extend_from_slice(key_id);
    aad.push(0);
    aad.extend_from_slice(purpose.as_bytes());
    aad
}

fn hex8(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a credential, the only form in which API keys and similar tokens are stored.
#[must_use]
pub fn hash_token(token: &str) -> Vec<u8> {
    use sha2::Digest as _;
    Sha256::digest(token.as_bytes()).to_vec()
}

/// `n` random bytes, base64url encoded: for tokens shown once.
#[must_use]
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_purpose() {
        let key = MasterKey::generate();
        let sealed = key.seal("db_server.url:a", b"postgres://u:p@h/db");
        assert_eq!(
            key.open("db_server.url:a", &sealed).expect("opens"),
            b"postgres://u:p@h/db"
        );
        assert!(matches!(
            key.open("db_server.url:b", &sealed),
            Err(CryptoError::Open { .. })
        ));
        let other = MasterKey::generate();
        assert!(matches!(
            other.open("db_server.url:a", &sealed),
            Err(CryptoError::UnknownKey { .. })
        ));
    }

    #[test]
    fn tampering_is_detected_and_garbage_never_panics() {
        let key = MasterKey::generate();
        let sealed = key.seal("p", b"secret");
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(
                key.open("p", &t).is_err(),
                "flipping byte {i} must be detected"
            );
        }
        for len in 0..64 {
            let junk = vec![1u8; len];
            assert!(key.open("p", &junk).is_err());
        }
    }

    #[test]
    fn master_keys_parse_strictly() {
        let k = MasterKey::generate();
        let again = MasterKey::from_base64(&k.to_base64()).expect("round trip");
        assert_eq!(again.id(), k.id());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
    }
}
