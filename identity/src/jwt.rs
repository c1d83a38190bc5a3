//! Access tokens: JWTs signed with Ed25519 (`EdDSA`), each naming its key with `kid`. The private
//! keys live in the catalog sealed with the platform data key; the public keys are published as a
//! JWKS. Rotation inserts a new current key and retires the old one, which keeps verifying (and
//! stays in the JWKS) until every token it signed has expired. Only `EdDSA` is accepted: `alg:
//! none`, HMAC (the classic public-key-as-secret confusion) and everything else are refused before
//! any key is looked at.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::RwLock;

use super::AuthError;
use tenancy::catalog::Catalog;
use tenancy::crypto::{Keyring, Scope};

/// Lifetime of an access token.
pub const ACCESS_TTL: Duration = Duration::from_secs(10 * 60);
/// The issuer of every access token.
pub const ISSUER: &str = "urn:platform:auth";
/// The audience: the tenant API.
pub const AUDIENCE: &str = "urn:platform:api";
/// How often an instance re-reads the keys (a rotation elsewhere is picked up within this time;
/// retired keys stay valid longer than that, so nothing signed in between is refused).
const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 30;

/// The claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user.
    pub sub: String,
    /// The tenant.
    pub tid: String,
    /// The session.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    /// Role names at issue time (informational: permissions are checked against the database,
    /// cached for a few seconds).
    pub roles: Vec<String>,
}

fn purpose(kid: &str) -> String {
    tenancy::crypto::registry::purpose::jwt_signing_key(kid)
}

struct Loaded {
    current: Option<(String, EncodingKey)>,
    verify: HashMap<String, (DecodingKey, Vec<u8>)>,
    at: Instant,
}

/// The signing keys, loaded from the catalog and refreshed periodically.
#[derive(Clone)]
pub struct JwtKeys {
    catalog: Catalog,
    keyring: Keyring,
    loaded: Arc<RwLock<Loaded>>,
    /// Tokens already verified, by their exact text (so the same header, claims and signature),
    /// until they expire: a client presents the same access token on every request for minutes,
    /// and an Ed25519 verification costs tens of microseconds. Emptied whenever a key stops
    /// verifying.
    verified: moka::future::Cache<String, Arc<AccessClaims>>,
}

/// Most verified tokens remembered per instance.
const VERIFIED_CAPACITY: u64 = 100_000;

impl JwtKeys {
    #[must_use]
    pub fn new(catalog: Catalog, keyring: Keyring) -> Self {
        Self {
            catalog,
            keyring,
            loaded: Arc::new(RwLock::new(Loaded {
                current: None,
                verify: HashMap::new(),
                at: Instant::now(),
            })),
            verified: moka::future::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(ACCESS_TTL + Duration::from_secs(LEEWAY_SECS))
                .build(),
        }
    }

    async fn create_key(&self, retire_others: bool) -> Result<(), AuthError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *seed);
        let key = SigningKey::from_bytes(&seed);
        let public = key.verifying_key().to_bytes().to_vec();
        let kid = format!("k{}", uuid::Uuid::now_v7().simple());
        let sealed = self
            .keyring
            .seal(Scope::Platform, &purpose(&kid), &*seed)
            .await?;
        self.catalog
            .insert_signing_key(&kid, &sealed, &public, retire_others)
            .await?;
        Ok(())
    }

    /// Creates the first key if there is none, and loads the keys.
    pub async fn init(&self) -> Result<(), AuthError> {
        self.create_key(false).await?;
        self.reload().await
    }

    /// Rotates: a new current key; the previous one keeps verifying until its tokens expire.
    pub async fn rotate(&self) -> Result<String, AuthError> {
        self.create_key(true).await?;
        self.reload().await?;
        Ok(self
            .loaded
            .read()
            .await
            .current
            .as_ref()
            .map(|c| c.0.clone())
            .unwrap_or_default())
    }

    /// Re-reads the keys from the catalog.
    pub async fn reload(&self) -> Result<(), AuthError> {
        let since = OffsetDateTime::now_utc()
            - ACCESS_TTL
            - RELOAD_EVERY
            - Duration::from_secs(LEEWAY_SECS);
        let rows = self.catalog.signing_keys(since).await?;
        let mut current = None;
        let mut verify = HashMap::new();
        for row in rows {
            if row.retired_at.is_none() && current.is_none() {
                let seed = self
                    .keyring
                    .open(Scope::Platform, &purpose(&row.kid), &row.private_sealed)
                    .await?;
                let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| {
                    AuthError::crypto("loading a signing key", "the key is malformed")
                })?;
                let der = SigningKey::from_bytes(&seed)
                    .to_pkcs8_der()
                    .map_err(|e| AuthError::crypto("loading a signing key", e))?;
                current = Some((row.kid.clone(), EncodingKey::from_ed_der(der.as_bytes())));
            }
            let x = URL_SAFE_NO_PAD.encode(&row.public_key);
            let dk = DecodingKey::from_ed_components(&x)
                .map_err(|e| AuthError::crypto("loading a signing key", e))?;
            verify.insert(row.kid, (dk, row.public_key));
        }
        let mut loaded = self.loaded.write().await;
        if loaded.verify.keys().any(|kid| !verify.contains_key(kid)) {
            // A key no longer verifies: nothing it signed may be served from the cache.
            self.verified.invalidate_all();
        }
        *loaded = Loaded {
            current,
            verify,
            at: Instant::now(),
        };
        Ok(())
    }

    async fn fresh(&self) -> Result<(), AuthError> {
        let stale = {
            let l = self.loaded.read().await;
            l.current.is_none() || l.at.elapsed() > RELOAD_EVERY
        };
        if stale {
            self.reload().await?;
        }
        Ok(())
    }

    /// Signs an access token.
    pub async fn issue(&self, claims: &AccessClaims) -> Result<String, AuthError> {
        self.fresh().await?;
        let l = self.loaded.read().await;
        let (kid, key) = l
            .current
            .as_ref()
            .ok_or_else(|| AuthError::crypto("signing a token", "no signing key"))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, key)
            .map_err(|e| AuthError::crypto("signing a token", e))
    }

    /// Verifies an access token: algorithm, key, signature, issuer, audience, expiry.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, AuthError> {
        if let Some(claims) = self.verified.get(token).await {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            // The same expiry rule as `Validation` (with its leeway).
            if claims.exp.saturating_add(LEEWAY_SECS.cast_signed()) > now {
                return Ok((*claims).clone());
            }
            self.verified.invalidate(token).await;
            return Err(AuthError::InvalidToken);
        }
        let claims = self.verify_signed(token).await?;
        self.verified
            .insert(token.to_owned(), Arc::new(claims.clone()))
            .await;
        Ok(claims)
    }

    /// [`Self::verify`] without the cache of verified tokens (what a first presentation costs).
    pub async fn verify_signed(&self, token: &str) -> Result<AccessClaims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::InvalidToken);
        }
        let kid = header.kid.ok_or(AuthError::InvalidToken)?;
        self.fresh().await?;
        let known = self.loaded.read().await.verify.contains_key(&kid);
        if !known {
            // A key made by another instance moments ago: look once more, at most every second.
            let recent = self.loaded.read().await.at.elapsed() < Duration::from_secs(1);
            if !recent {
                self.reload().await?;
            }
        }
        let l = self.loaded.read().await;
        let (key, _) = l.verify.get(&kid).ok_or(AuthError::InvalidToken)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[ISSUER]);
        v.leeway = LEEWAY_SECS;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<AccessClaims>(token, key, &v)
            .map(|d| d.claims)
            .map_err(|_| AuthError::InvalidToken)
    }

    /// The public keys as a JWKS document.
    pub async fn jwks(&self) -> Result<serde_json::Value, AuthError> {
        self.fresh().await?;
        let l = self.loaded.read().await;
        let mut keys: Vec<_> = l
            .verify
            .iter()
            .map(|(kid, (_, public))| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                    "kid": kid, "x": URL_SAFE_NO_PAD.encode(public),
                })
            })
            .collect();
        keys.sort_by(|a, b| b["kid"].as_str().cmp(&a["kid"].as_str()));
        Ok(serde_json::json!({ "keys": keys }))
    }
}
