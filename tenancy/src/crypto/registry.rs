//! The registry of every sealed value: which column of which table holds bytes sealed by the
//! keyring, whose data key seals them, for which purpose, and how rows are
//! enumerated. Key rotation (`reseal`), tenant purges and `platformctl keys status` walk
//! this one list, so a secret added without an entry here is caught by a test (it enumerates
//! every `bytea` column of both schemas) instead of being destroyed by the next rotation.
//!
//! The purpose strings live here too: sealing code in `identity` and `sso` names them from
//! [`purpose`], so the string a value was sealed with and the one rotation opens it with are
//! one constant.

/// Sealing purposes (bound into each ciphertext as associated data). Changing one makes every
/// value sealed under it unreadable: add a new purpose instead.
pub mod purpose {
    /// A dedicated tenant's data-plane URL (catalog `tenants`, and a move's target URL).
    pub const TENANT_DB_URL: &str = "tenant.db_url";
    /// A user's TOTP secret.
    pub const TOTP_SECRET: &str = "auth.totp_secret";
    /// The successor of a just-rotated refresh token (kept for the retry grace window).
    pub const REFRESH_SUCCESSOR: &str = "auth.refresh_successor";
    /// An SSO connection's OIDC/OAuth2 client secret.
    pub const SSO_CLIENT_SECRET: &str = "sso.client_secret";
    /// The pending state (nonce, PKCE verifier) of an OIDC login in flight.
    pub const SSO_OIDC_REQUEST: &str = "sso.oidc_request";
    /// The pending state of a GitHub login in flight.
    pub const SSO_GITHUB_REQUEST: &str = "sso.github_request";
    /// An outbox message's body (it may carry a single-use token), kept until it expires.
    pub const OUTBOX_BODY: &str = "outbox.body";
    /// A tenant's DKIM signing key for its own sending domain (`email_domains`).
    pub const EMAIL_DOMAIN_KEY: &str = "email.domain_dkim_key";
    /// Prefix of a database server's admin URL purpose (followed by the server's name).
    pub const SERVER_ADMIN_URL_PREFIX: &str = "db_server.admin_url:";
    /// Prefix of a JWT signing key's purpose (followed by its `kid`).
    pub const JWT_SIGNING_KEY_PREFIX: &str = "jwt.signing_key:";

    /// The purpose of a database server's admin URL.
    #[must_use]
    pub fn server_admin_url(name: &str) -> String {
        format!("{SERVER_ADMIN_URL_PREFIX}{name}")
    }

    /// The purpose of a JWT signing key's private half.
    #[must_use]
    pub fn jwt_signing_key(kid: &str) -> String {
        format!("{JWT_SIGNING_KEY_PREFIX}{kid}")
    }
}

/// Which database holds a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database {
    /// The control plane (catalog).
    Catalog,
    /// Every tenant database (the shared one and each dedicated one: one schema everywhere).
    Tenant,
}

/// Whose data key seals a column's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeOf {
    /// The platform's key.
    Platform,
    /// The key of the tenant named by this (uuid) column of the row.
    Tenant(&'static str),
}

/// The purpose a column's values were sealed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurposeOf {
    /// One purpose for every row.
    Fixed(&'static str),
    /// One of these, by what the row is for (tried in turn: a wrong purpose never opens).
    AnyOf(&'static [&'static str]),
    /// `prefix` followed by the text of a column of the row.
    Column {
        prefix: &'static str,
        column: &'static str,
    },
}

impl PurposeOf {
    /// The purposes to try for a row whose purpose column (if any) holds `value`.
    #[must_use]
    pub fn candidates(&self, value: Option<&str>) -> Vec<String> {
        match self {
            Self::Fixed(p) => vec![(*p).to_owned()],
            Self::AnyOf(ps) => ps.iter().map(|p| (*p).to_owned()).collect(),
            Self::Column { prefix, .. } => vec![format!("{prefix}{}", value.unwrap_or_default())],
        }
    }

    /// The column the purpose is read from, if any.
    #[must_use]
    pub fn column(&self) -> Option<&'static str> {
        match self {
            Self::Column { column, .. } => Some(column),
            _ => None,
        }
    }
}

/// One column holding sealed values.
#[derive(Clone, Copy, Debug)]
pub struct SealedColumn {
    pub database: Database,
    pub table: &'static str,
    pub column: &'static str,
    /// The column rows are walked (ordered) and updated by: unique within a scope.
    pub key: &'static str,
    /// Its SQL type (`uuid` or `text`).
    pub key_type: &'static str,
    pub scope: ScopeOf,
    pub purpose: PurposeOf,
    /// What the value is, for `keys status`.
    pub what: &'static str,
    /// The row is cached by every instance (tenant resolution): a re-seal bumps its `epoch` and
    /// is published, so no instance keeps a ciphertext whose key version is later destroyed.
    pub cached: bool,
}

impl SealedColumn {
    /// `table.column`.
    #[must_use]
    pub fn name(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }

    /// Whether this column holds values of the platform's key (else of tenants' keys).
    #[must_use]
    pub fn is_platform(&self) -> bool {
        self.scope == ScopeOf::Platform
    }
}

/// Every column that holds values sealed by a data key.
pub const SEALED: &[SealedColumn] = &[
    // Control plane, platform key.
    SealedColumn {
        database: Database::Catalog,
        table: "db_servers",
        column: "admin_url_sealed",
        key: "id",
        key_type: "uuid",
        scope: ScopeOf::Platform,
        purpose: PurposeOf::Column {
            prefix: purpose::SERVER_ADMIN_URL_PREFIX,
            column: "name",
        },
        what: "database server admin URLs",
        cached: false,
    },
    SealedColumn {
        database: Database::Catalog,
        table: "platform_secrets",
        column: "sealed",
        key: "name",
        key_type: "text",
        scope: ScopeOf::Platform,
        purpose: PurposeOf::Column {
            prefix: "",
            column: "name",
        },
        what: "platform secrets (the data-plane role's password)",
        cached: false,
    },
    SealedColumn {
        database: Database::Catalog,
        table: "jwt_signing_keys",
        column: "private_sealed",
        key: "kid",
        key_type: "text",
        scope: ScopeOf::Platform,
        purpose: PurposeOf::Column {
            prefix: purpose::JWT_SIGNING_KEY_PREFIX,
            column: "kid",
        },
        what: "JWT signing keys",
        cached: false,
    },
    // Control plane, tenant keys.
    SealedColumn {
        database: Database::Catalog,
        table: "tenants",
        column: "db_url_sealed",
        key: "id",
        key_type: "uuid",
        scope: ScopeOf::Tenant("id"),
        purpose: PurposeOf::Fixed(purpose::TENANT_DB_URL),
        what: "dedicated tenants' database URLs",
        cached: true,
    },
    SealedColumn {
        database: Database::Catalog,
        table: "operations",
        column: "target_url_sealed",
        key: "id",
        key_type: "uuid",
        scope: ScopeOf::Tenant("tenant_id"),
        purpose: PurposeOf::Fixed(purpose::TENANT_DB_URL),
        what: "placement moves' target database URLs",
        cached: false,
    },
    // Tenant databases, tenant keys.
    SealedColumn {
        database: Database::Tenant,
        table: "users",
        column: "totp_secret_sealed",
        key: "id",
        key_type: "uuid",
        scope: ScopeOf::Tenant("tenant_id"),
        purpose: PurposeOf::Fixed(purpose::TOTP_SECRET),
        what: "TOTP secrets",
        cached: false,
    },
    SealedColumn {
        database: Database::Tenant,
        table: "refresh_tokens",
        column: "successor_sealed",
        key: "id",
        key_type: "uuid",
        scope: ScopeOf::Tenant("tenant_id"),
        purpose: PurposeOf::Fixed(purpose::REFRESH_SUCCESSOR),
        what: "refresh-token successors (retry grace window)",
        cached: false,
    },
    SealedColumn {
        database: Database::Tenant,
        table: "sso_connections",
        column: "secret_sealed",
        key: "id",
        key_type: "uuid",
        scope: ScopeOf::Tenant("tenant_id"),
        purpose: PurposeOf::Fixed(purpose::SSO_CLIENT_SECRET),
        what: "SSO client secrets",
        cached: false,
    },
    SealedColumn {
        database: Database::Tenant,
        table: "sso_login_requests",
        column: "secrets_sealed",
        key: "id",
        key_type: "uuid",
        scope: ScopeOf::Tenant("tenant_id"),
        purpose: PurposeOf::AnyOf(&[purpose::SSO_OIDC_REQUEST, purpose::SSO_GITHUB_REQUEST]),
        what: "SSO logins in flight",
        cached: false,
    },
    SealedColumn {
        database: Database::Tenant,
        table: "outbox",
        column: "body_sealed",
        key: "id",
        key_type: "uuid",
        scope: ScopeOf::Tenant("tenant_id"),
        purpose: PurposeOf::Fixed(purpose::OUTBOX_BODY),
        what: "outbox messages (single-use tokens)",
        cached: false,
    },
    SealedColumn {
        database: Database::Tenant,
        table: "jobs",
        column: "payload_sealed",
        key: "id",
        key_type: "uuid",
        scope: ScopeOf::Tenant("tenant_id"),
        // The outbox's purpose: its rows became jobs (tenant V9) with their sealed bodies as is.
        purpose: PurposeOf::Fixed(purpose::OUTBOX_BODY),
        what: "job payload secrets (single-use tokens in email jobs)",
        cached: false,
    },
    SealedColumn {
        database: Database::Tenant,
        table: "email_domains",
        column: "key_sealed",
        key: "id",
        key_type: "uuid",
        scope: ScopeOf::Tenant("tenant_id"),
        purpose: PurposeOf::Fixed(purpose::EMAIL_DOMAIN_KEY),
        what: "DKIM keys of tenants' sending domains",
        cached: false,
    },
];

/// Binary columns that hold no value sealed by a data key, with the reason. Together with
/// [`SEALED`] this accounts for every `bytea` column of both schemas (a test checks), so a new
/// binary column must be classified when it is added.
pub const NOT_SEALED: &[(Database, &str, &str, &str)] = &[
    (
        Database::Catalog,
        "data_keys",
        "wrapped",
        "the data keys themselves, wrapped by a master key: `keys rotate-kek` re-wraps them",
    ),
    (
        Database::Catalog,
        "idempotency_keys",
        "request_hash",
        "a hash",
    ),
    (
        Database::Catalog,
        "jwt_signing_keys",
        "public_key",
        "public",
    ),
    (Database::Tenant, "api_keys", "key_hash", "a hash"),
    (Database::Tenant, "invitations", "token_hash", "a hash"),
    (Database::Tenant, "refresh_tokens", "token_hash", "a hash"),
    (Database::Tenant, "recovery_codes", "code_hash", "a hash"),
    (Database::Tenant, "one_time_tokens", "token_hash", "a hash"),
    (
        Database::Tenant,
        "sso_login_requests",
        "request_hash",
        "a hash",
    ),
];

/// The registered columns of one database.
pub fn columns(database: Database) -> impl Iterator<Item = &'static SealedColumn> {
    SEALED.iter().filter(move |c| c.database == database)
}

/// Whether `table.column` of `database` is accounted for (sealed, or known not to be).
#[must_use]
pub fn is_classified(database: Database, table: &str, column: &str) -> bool {
    SEALED
        .iter()
        .any(|c| c.database == database && c.table == table && c.column == column)
        || NOT_SEALED
            .iter()
            .any(|(d, t, c, _)| *d == database && *t == table && *c == column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_unique_and_purposes_resolve() {
        for (i, a) in SEALED.iter().enumerate() {
            assert!(
                SEALED[i + 1..]
                    .iter()
                    .all(|b| (a.database, a.table, a.column) != (b.database, b.table, b.column)),
                "{} twice",
                a.name()
            );
            assert!(!a.purpose.candidates(Some("x")).is_empty());
            assert!(matches!(a.key_type, "uuid" | "text"));
        }
        assert_eq!(
            purpose::server_admin_url("local"),
            "db_server.admin_url:local"
        );
        assert_eq!(purpose::jwt_signing_key("k1"), "jwt.signing_key:k1");
    }
}
