//! Tenant users and how they prove who they are: argon2id passwords, data-driven roles and
//! permissions, sessions with rotating refresh tokens, EdDSA access tokens (JWT), TOTP second
//! factor with recovery codes, single-use tokens (email verification, password reset) and the
//! outbox their messages go to, and API keys ([`credentials`]). Everything a tenant owns lives in
//! its database (it moves with the tenant); only the platform's JWT signing keys live in the
//! catalog. No HTTP here; this crate sits on the tenancy core and below `sso` and `platform`.
//! Every change to what the auth caches hold goes through [`Auth::changed`] ([`changes`]).

pub mod changes;
pub mod credentials;
pub mod grants;
pub mod jwt;
pub mod mfa;
pub mod onetime;
pub mod password;
pub mod permissions;
pub mod seats;
pub mod sessions;
pub mod throttle;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use tenancy::bootstrap::{Change, Tenancy};
use tenancy::catalog::{Catalog, CatalogError, Tenant};
use tenancy::crypto::{KeyError, Keyring};
use tenancy::dataplane::{ConnectError, DataPlane, TenantTx};
use tenancy::ids::{DomainName, TenantId};

pub use changes::AuthChange;
pub use grants::Grantor;
pub use jwt::{AccessClaims, JwtKeys};
pub use permissions::{Permission, PermissionSet};
pub use sessions::SessionPrincipal;

/// An auth operation failed. The variants a client may learn about are explicit; the rest are
/// infrastructure failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("the token is invalid or expired")]
    InvalidToken,
    #[error("a refresh token was reused; the session is revoked")]
    TokenReused,
    #[error("the code is invalid")]
    InvalidCode,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("{0}")]
    Invalid(String),
    #[error("a role can only be given permissions you hold yourself")]
    NotGrantable,
    #[error("only an owner may grant or take away `owner`")]
    OwnerOnly,
    #[error("no such role")]
    NoSuchRole,
    #[error("a role with this name already exists")]
    RoleNameTaken,
    #[error("built-in roles cannot be changed or deleted")]
    BuiltinRole,
    /// The role still reaches someone; the reason says through what.
    #[error("{0}")]
    RoleInUse(&'static str),
    #[error("TOTP is already enabled")]
    TotpAlreadyEnabled,
    /// The plan's seats (users and pending invitations) are all taken.
    #[error(
        "the plan allows {0} members (users and pending invitations): upgrade the plan or remove someone first"
    )]
    SeatLimit(i64),
    #[error("too many failed attempts; retry in {0} s")]
    Throttled(u64),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Signing, hashing or a secret's key material failed (never the caller's fault).
    #[error("{what} failed")]
    Crypto {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

/// What a tenant handler needs to reach the tenant's users and their credentials: the data
/// plane it reads them through, the auth services (keys, caches, throttles) and the API-key
/// verifier. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Identity {
    pub auth: Auth,
    pub api_keys: credentials::ApiKeys,
    pub dataplane: DataPlane,
    /// The platform's base domain: links in messages point at `https://{slug}.{base_domain}`.
    pub base_domain: DomainName,
}

impl Identity {
    /// Builds the identity services over the tenancy core and loads the JWT signing keys
    /// (creating the first one).
    pub async fn start(t: &Tenancy) -> Result<Self, AuthError> {
        let auth = Auth::new(t.catalog.clone(), t.keyring.clone());
        auth.jwt.init().await?;
        Ok(Self {
            auth,
            api_keys: credentials::ApiKeys::new(),
            dataplane: t.dataplane.clone(),
            base_domain: t.resolver.base_domain().clone(),
        })
    }

    /// The tenant's public base URL (`https://{slug}.{base_domain}`).
    #[must_use]
    pub fn base_url(&self, tenant: &Tenant) -> String {
        format!(
            "https://{}.{}",
            tenant.slug.as_str(),
            self.base_domain.as_str()
        )
    }

    /// Drops every cache entry of `tenant` (or of all tenants) after a catalog change.
    pub fn invalidate(&self, tenant: Option<TenantId>) {
        self.api_keys.invalidate_tenant_or_all(tenant);
        self.auth.invalidate(tenant);
    }

    /// Applies what the notification listener heard: a catalog change drops every entry of the
    /// tenant (or of all tenants, after a reconnection); an auth change published by
    /// [`Auth::changed`] on any instance drops the tenant's session checks and role permissions
    /// only. Other channels are not this crate's.
    pub fn apply(&self, change: Change<'_>) {
        match change {
            Change::Catalog(tenant) => self.invalidate(tenant),
            Change::Published { channel, tenant } if channel == changes::CHANNEL => {
                self.auth.invalidate(tenant);
            }
            Change::Published { .. } => {}
        }
    }
}

impl AuthError {
    pub(crate) fn crypto(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::Crypto {
            what,
            source: source.into(),
        }
    }
}

/// A role's name and permissions.
pub type RoleGrants = Arc<(String, PermissionSet)>;

/// Everything auth needs besides the data plane: signing keys, caches and throttles.
#[derive(Clone)]
pub struct Auth {
    pub jwt: JwtKeys,
    /// The control plane (seat limits).
    catalog: Catalog,
    pub throttle: throttle::Throttle,
    keyring: Keyring,
    principals:
        Cache<(TenantId, tenancy::ids::SessionId), changes::Stamped<Option<Arc<SessionPrincipal>>>>,
    roles: Cache<(TenantId, Option<tenancy::ids::RoleId>), changes::Stamped<RoleGrants>>,
    /// When each tenant's auth state last changed (entries loaded before are stale).
    freshness: Arc<changes::Freshness>,
    dummy_hash: Arc<tokio::sync::OnceCell<String>>,
    password_verifications: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth")
    }
}

/// How long a session check (and the principal's permissions) is trusted before the database is
/// asked again. Only a safety net: a change reaches every instance by push ([`Auth::changed`],
/// the listener drops everything when it reconnects), so this bounds only a change whose publish
/// failed (logged). A minute keeps that bound short while a busy session costs the database one
/// look-up a minute per instance.
pub const SESSION_CHECK_TTL: Duration = Duration::from_secs(60);

impl Auth {
    /// Builds the auth services over the catalog (signing keys) and the keyring.
    #[must_use]
    pub fn new(catalog: Catalog, keyring: Keyring) -> Self {
        Self {
            jwt: JwtKeys::new(catalog.clone(), keyring.clone()),
            catalog,
            throttle: throttle::Throttle::new(),
            keyring,
            principals: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(SESSION_CHECK_TTL)
                .build(),
            roles: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(SESSION_CHECK_TTL)
                .build(),
            freshness: Arc::default(),
            dummy_hash: Arc::new(tokio::sync::OnceCell::new()),
            password_verifications: Arc::default(),
        }
    }

    /// The keyring (TOTP secrets are sealed with the tenant's key).
    #[must_use]
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Starts a transaction for `tenant`. Nothing is written here: built-in roles are seeded by
    /// provisioning and by migration, so a fenced or read-only database still serves reads.
    pub async fn begin(&self, dp: &DataPlane, tenant: &Tenant) -> Result<TenantTx, AuthError> {
        Ok(dp.connect(tenant).await?.begin())
    }
}
