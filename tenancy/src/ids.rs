//! Identifier newtypes parsed at the boundary, so no bare `String`/`Uuid` identifier crosses a
//! module line. Everything that concerns a tenant carries a [`TenantId`].

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) id.
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an id read from storage.
            #[must_use]
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The raw UUID, for binding into queries.
            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses a textual UUID.
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::parse_str(s).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A tenant's id (UUIDv7); the key of every tenant-scoped row, cache entry and log field.
    TenantId
);
uuid_id!(
    /// A registered database server's id.
    DbServerId
);
uuid_id!(
    /// A tenant API key's id (not the secret).
    ApiKeyId
);
uuid_id!(
    /// A user of a tenant.
    UserId
);
uuid_id!(
    /// A sign-in session (a device): its refresh tokens form one family.
    SessionId
);
uuid_id!(
    /// A role of a tenant (built-in or custom).
    RoleId
);
uuid_id!(
    /// A long-running operation (a placement move) in the control plane.
    OperationId
);

/// Names that can never be tenant slugs: they are, or may become, hosts of the platform itself.
pub const RESERVED_SLUGS: &[&str] = &[
    "www",
    "api",
    "admin",
    "app",
    "mail",
    "smtp",
    "imap",
    "pop",
    "ftp",
    "static",
    "assets",
    "cdn",
    "status",
    "docs",
    "help",
    "support",
    "billing",
    "auth",
    "login",
    "sso",
    "id",
    "oauth",
    "dashboard",
    "console",
    "internal",
    "system",
    "root",
    "platform",
    "localhost",
    "test",
    "dev",
    "staging",
    "prod",
    "blog",
    "webhooks",
    "metrics",
    "health",
    "ns1",
    "ns2",
];

/// Why a slug was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("a slug must be 3 to 63 characters long")]
    Length,
    #[error("a slug may contain only lowercase letters a-z, digits and hyphens")]
    Characters,
    #[error("a slug cannot start or end with a hyphen")]
    Hyphen,
    #[error("'{0}' is a reserved name")]
    Reserved(String),
}

/// A tenant slug: a DNS label (`a-z0-9-`, 3..=63, no leading/trailing hyphen), not reserved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantSlug(String);

impl TenantSlug {
    /// Validates a slug as given by a user. Case is not folded: `Acme` is refused, not rewritten.
    pub fn parse(s: &str) -> Result<Self, SlugError> {
        if !(3..=63).contains(&s.len()) {
            return Err(SlugError::Length);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(SlugError::Characters);
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(SlugError::Hyphen);
        }
        if RESERVED_SLUGS.contains(&s) {
            return Err(SlugError::Reserved(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// Wraps a slug read from the catalog (validated when it was written).
    #[must_use]
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a custom domain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(
        "a domain must be a valid host name of at most 253 characters with at least two labels"
    )]
    Invalid,
    #[error("a custom domain cannot be under the platform's base domain")]
    UnderBaseDomain,
}

/// An email address, normalised (trimmed, lowercase) and checked for shape only: ownership is
/// proven by verification. A user's address within a tenant is unique in this form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

/// The text is not an email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid email address")]
pub struct InvalidEmail;

impl EmailAddress {
    /// Normalises and checks an address: `local@domain.tld`, at most 254 characters, no
    /// whitespace or control characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let e = raw.trim().to_lowercase();
        let ok = e.len() <= 254
            && e.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
            })
            && !e.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok { Ok(Self(e)) } else { Err(InvalidEmail) }
    }

    /// Wraps an address read back from storage (it was checked when it was written).
    #[must_use]
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`.
    #[must_use]
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A normalised host name (lowercase, no port, no trailing dot).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DomainName(String);

impl DomainName {
    /// Normalises a `Host` header value: lowercase, port and trailing dot removed.
    /// Returns `None` for values that are not host names.
    #[must_use]
    pub fn from_host_header(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let host = if raw.starts_with('[') {
            return None; // IPv6 literal: never a tenant host
        } else {
            raw.rsplit_once(':').map_or(raw, |(h, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    raw
                }
            })
        };
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        Self::valid_host(&host).then_some(Self(host))
    }

    /// Validates a custom domain given by an operator (normalised the same way as a `Host`).
    pub fn parse_custom(s: &str, base_domain: &DomainName) -> Result<Self, DomainError> {
        let d = Self::from_host_header(s).ok_or(DomainError::Invalid)?;
        if d.0.contains(':') || !d.0.contains('.') || d.0.len() != s.trim_end_matches('.').len() {
            return Err(DomainError::Invalid);
        }
        if d.0 == base_domain.0 || d.0.ends_with(&format!(".{}", base_domain.0)) {
            return Err(DomainError::UnderBaseDomain);
        }
        Ok(d)
    }

    fn valid_host(h: &str) -> bool {
        !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// If this host is `{label}.{base}`, the label (a candidate slug).
    #[must_use]
    pub fn subdomain_of<'a>(&'a self, base: &DomainName) -> Option<&'a str> {
        let rest = self.0.strip_suffix(base.as_str())?.strip_suffix('.')?;
        (!rest.is_empty() && !rest.contains('.')).then_some(rest)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses_are_normalised_and_checked_for_shape() {
        let e = EmailAddress::parse("  Ann@Example.COM ").expect("valid");
        assert_eq!(e.as_str(), "ann@example.com");
        assert_eq!(e.domain(), "example.com");
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@example",
            "ann@.com",
            "a b@example.com",
            "a@b@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn slugs_follow_dns_label_rules() {
        assert!(TenantSlug::parse("acme").is_ok());
        assert!(TenantSlug::parse("a-1-b").is_ok());
        assert_eq!(TenantSlug::parse("ab"), Err(SlugError::Length));
        assert_eq!(TenantSlug::parse(&"a".repeat(64)), Err(SlugError::Length));
        assert_eq!(TenantSlug::parse("Acme"), Err(SlugError::Characters));
        assert_eq!(TenantSlug::parse("ac_me"), Err(SlugError::Characters));
        assert_eq!(TenantSlug::parse("-acme"), Err(SlugError::Hyphen));
        assert_eq!(TenantSlug::parse("acme-"), Err(SlugError::Hyphen));
        assert!(matches!(
            TenantSlug::parse("admin"),
            Err(SlugError::Reserved(_))
        ));
    }

    #[test]
    fn host_headers_normalise() {
        let d = DomainName::from_host_header("Acme.LocalHost:8080").expect("valid");
        assert_eq!(d.as_str(), "acme.localhost");
        let d = DomainName::from_host_header("acme.localhost.").expect("valid");
        assert_eq!(d.as_str(), "acme.localhost");
        assert!(DomainName::from_host_header("[::1]:80").is_none());
        assert!(DomainName::from_host_header("bad host").is_none());
        let base = DomainName::from_host_header("localhost").expect("valid");
        assert_eq!(d.subdomain_of(&base), Some("acme"));
        let deep = DomainName::from_host_header("a.b.localhost").expect("valid");
        assert_eq!(deep.subdomain_of(&base), None);
        assert_eq!(base.subdomain_of(&base), None);
    }

    #[test]
    fn custom_domains_are_validated() {
        let base = DomainName::from_host_header("localhost").expect("valid");
        assert!(DomainName::parse_custom("app.acme.com", &base).is_ok());
        assert_eq!(
            DomainName::parse_custom("x.localhost", &base),
            Err(DomainError::UnderBaseDomain)
        );
        assert_eq!(
            DomainName::parse_custom("nodot", &base),
            Err(DomainError::Invalid)
        );
        assert_eq!(
            DomainName::parse_custom("acme.com:80", &base),
            Err(DomainError::Invalid)
        );
    }
}
