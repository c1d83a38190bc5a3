//! The platform's email secrets, generated on first use and kept sealed (envelope encryption) in
//! the control plane's `platform_secrets`, so every instance signs with the same keys and key
//! rotation re-seals them with the rest: the DKIM signing key (ed25519, RFC 8463; one per
//! selector) and the key of unsubscribe tokens.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use tenancy::catalog::Catalog;
use tenancy::crypto::{KeyError, Keyring, Scope};
use zeroize::Zeroizing;

/// The platform secret holding the unsubscribe-token key.
pub const UNSUBSCRIBE_KEY: &str = "email.unsubscribe_key";

/// The platform secret holding the DKIM key of `selector`.
#[must_use]
pub fn dkim_secret_name(selector: &str) -> String {
    format!("email.dkim_key:{selector}")
}

/// Loading or creating a key failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Catalog(#[from] tenancy::catalog::CatalogError),
    #[error("the stored key `{0}` is malformed")]
    Malformed(String),
}

/// The 32 random bytes stored under `name`, created (and sealed) if absent. Concurrent first
/// uses agree: the first insert wins and the others read it.
pub async fn platform_key(
    catalog: &Catalog,
    keyring: &Keyring,
    name: &str,
) -> Result<Zeroizing<[u8; 32]>, KeysError> {
    let sealed = match catalog.platform_secret(name).await? {
        Some(s) => s,
        None => {
            let mut fresh = Zeroizing::new([0u8; 32]);
            rand::thread_rng().fill_bytes(&mut *fresh);
            let b64 = Zeroizing::new(STANDARD.encode(*fresh));
            let sealed = keyring.seal(Scope::Platform, name, b64.as_bytes()).await?;
            catalog.put_platform_secret_if_absent(name, &sealed).await?
        }
    };
    let b64 = keyring.open_string(Scope::Platform, name, &sealed).await?;
    let bytes = Zeroizing::new(
        STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| KeysError::Malformed(name.to_owned()))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(KeysError::Malformed(name.to_owned()));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}
