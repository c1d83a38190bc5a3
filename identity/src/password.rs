//! Password hashing: argon2id with at least OWASP's minimum parameters (19 MiB, 2 passes, 1 lane),
//! stored in the PHC string so they can be raised later without breaking old hashes. Hashing runs
//! on the blocking pool: it is deliberately slow.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Auth, AuthError};

/// OWASP Password Storage Cheat Sheet minimum for argon2id.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

fn hasher() -> Argon2<'static> {
    let params =
        Params::new(MEMORY_KIB, PASSES, LANES, None).expect("constant parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a new password against the policy (length only: NIST SP 800-63B).
pub fn check_policy(password: &str) -> Result<(), AuthError> {
    let n = password.chars().count();
    if !(10..=256).contains(&n) {
        return Err(AuthError::Invalid(
            "`password` must be 10 to 256 characters".into(),
        ));
    }
    Ok(())
}

/// Hashes a password (argon2id, random salt).
pub async fn hash(password: &str) -> Result<String, AuthError> {
    let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
    tokio::task::spawn_blocking(move || {
        hasher()
            .hash_password(&password)
            .map(|h: PasswordHash| h.to_string())
            .map_err(|e| AuthError::crypto("hashing a password", e.to_string()))
    })
    .await
    .map_err(|e| AuthError::crypto("hashing a password", e))?
}

/// Verifies a password against a stored PHC string; adds one to `done` for each argon2
/// verification actually run (a value that is no PHC string is refused without any work).
async fn verify(stored: &str, password: &str, done: &Arc<AtomicU64>) -> bool {
    let stored = stored.to_owned();
    let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
    let done = Arc::clone(done);
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|h| {
            done.fetch_add(1, Ordering::Relaxed);
            hasher().verify_password(&password, &h).is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

impl Auth {
    /// Checks `password` against an account's stored hash (`None`: no such account, or none
    /// with a password, which burns the same work as a real verification, so login takes about as long for an unknown
    /// email as for a wrong password).
    pub async fn verify_password(&self, stored: Option<&str>, password: &str) -> bool {
        // An account without a password (SSO-only, `!sso`) costs what an unknown one does.
        match stored.filter(|s| PasswordHash::new(s).is_ok()) {
            Some(hash) => verify(hash, password, &self.password_verifications).await,
            None => {
                let dummy = self.dummy_hash().await;
                verify(&dummy, password, &self.password_verifications).await;
                false
            }
        }
    }

    /// How many argon2 password verifications this process has run (a metric, and the seam
    /// tests use to prove that every login attempt costs the same work).
    #[must_use]
    pub fn password_verifications(&self) -> u64 {
        self.password_verifications.load(Ordering::Relaxed)
    }

    async fn dummy_hash(&self) -> String {
        self.dummy_hash
            .get_or_init(|| async {
                hash("dummy password that never matches")
                    .await
                    .unwrap_or_default()
            })
            .await
            .clone()
    }
}
