//! Verified email domains of a tenant (control plane, `sso_domains`): a tenant admin claims a
//! domain and gets a token to publish as the TXT record `_platform-verify.<domain>`; the check
//! looks the record up through a [`dns::TxtResolver`] and marks the domain verified. An operator
//! may mark a domain verified directly. A domain is verified for one tenant at most (a partial
//! unique index, so two verifications racing cannot both win). SSO logins use
//! [`Domains::verified`]: a connection asserts identities only for addresses in these domains.

pub mod dns;

use std::sync::Arc;

use sqlx::Row as _;
use tenancy::catalog::{Catalog, CatalogError};
use tenancy::ids::{DomainName, TenantId};
use time::OffsetDateTime;

use crate::SsoError;

/// The label the TXT record is published under.
pub const RECORD_LABEL: &str = "_platform-verify";

/// How a domain was verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Dns,
    Operator,
}

impl Method {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Operator => "operator",
        }
    }
}

/// A domain a tenant claimed, verified or not.
#[derive(Clone, Debug)]
pub struct DomainClaim {
    pub domain: DomainName,
    /// The value to publish (public by design: it is in DNS).
    pub token: String,
    pub verified_at: Option<OffsetDateTime>,
    /// `dns` or `operator` once verified.
    pub method: Option<String>,
    pub created_at: OffsetDateTime,
}

impl DomainClaim {
    /// The name the TXT record goes under.
    #[must_use]
    pub fn record_name(&self) -> String {
        format!("{RECORD_LABEL}.{}", self.domain.as_str())
    }
}

/// Verified domains: the catalog and the resolver of the DNS check.
#[derive(Clone, Debug)]
pub struct Domains {
    catalog: Catalog,
    resolver: Arc<dyn dns::TxtResolver>,
    base_domain: Option<DomainName>,
}

const COLUMNS: &str = "domain, token, verified_at, method, created_at";

fn claim(r: &sqlx::postgres::PgRow) -> Option<DomainClaim> {
    Some(DomainClaim {
        domain: DomainName::from_host_header(r.get::<&str, _>(0))?,
        token: r.get(1),
        verified_at: r.get(2),
        method: r.get(3),
        created_at: r.get(4),
    })
}

fn db(e: sqlx::Error) -> SsoError {
    SsoError::Catalog(CatalogError(e))
}

fn taken(e: sqlx::Error) -> SsoError {
    match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("sso_domains_verified_once") => {
            SsoError::DomainTaken
        }
        _ => db(e),
    }
}

impl Domains {
    /// Over the control plane, checking TXT records with `resolver`. Domains under
    /// `base_domain` (the platform's own) are refused.
    #[must_use]
    pub fn new(catalog: Catalog, resolver: Arc<dyn dns::TxtResolver>, base_domain: &str) -> Self {
        Self {
            catalog,
            resolver,
            base_domain: DomainName::from_host_header(base_domain),
        }
    }

    /// The same, checking TXT records with another resolver.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Arc<dyn dns::TxtResolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// The resolver of the DNS checks (email sending domains are checked with it too).
    #[must_use]
    pub fn resolver(&self) -> &Arc<dyn dns::TxtResolver> {
        &self.resolver
    }

    /// Parses a domain an admin gives: a host name with a dot, outside the platform's domain.
    pub fn parse(&self, raw: &str) -> Result<DomainName, SsoError> {
        let invalid = || {
            SsoError::Invalid("`domain` must be a domain name such as `acme.com` outside the platform's own domain".into())
        };
        match &self.base_domain {
            Some(base) => DomainName::parse_custom(raw, base).map_err(|_| invalid()),
            None => DomainName::from_host_header(raw)
                .filter(|d| d.as_str().contains('.'))
                .ok_or_else(invalid),
        }
    }

    /// Claims `domain` for `tenant` (idempotent: a second claim returns the first one's token).
    /// Refused when another tenant holds it verified.
    pub async fn claim(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainClaim, SsoError> {
        if self.holder(domain).await?.is_some_and(|h| h != tenant) {
            return Err(SsoError::DomainTaken);
        }
        sqlx::query(
            "INSERT INTO sso_domains (tenant_id, domain, token) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, domain) DO NOTHING",
        )
        .bind(tenant.as_uuid())
        .bind(domain.as_str())
        .bind(format!(
            "platform-verify={}",
            tenancy::crypto::random_token(24)
        ))
        .execute(self.catalog.pool())
        .await
        .map_err(db)?;
        self.get(tenant, domain)
            .await?
            .ok_or(SsoError::NoSuchDomain)
    }

    /// The tenant's claim of `domain`.
    pub async fn get(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<Option<DomainClaim>, SsoError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sso_domains WHERE tenant_id = $1 AND domain = $2"
        ))
        .bind(tenant.as_uuid())
        .bind(domain.as_str())
        .fetch_optional(self.catalog.pool())
        .await
        .map_err(db)?;
        Ok(row.as_ref().and_then(claim))
    }

    /// The tenant's claims, by domain.
    pub async fn list(&self, tenant: TenantId) -> Result<Vec<DomainClaim>, SsoError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sso_domains WHERE tenant_id = $1 ORDER BY domain"
        ))
        .bind(tenant.as_uuid())
        .fetch_all(self.catalog.pool())
        .await
        .map_err(db)?;
        Ok(rows.iter().filter_map(claim).collect())
    }

    /// The tenant's verified domains (what SSO logins are checked against).
    pub async fn verified(&self, tenant: TenantId) -> Result<Vec<String>, SsoError> {
        sqlx::query_scalar(
            "SELECT domain FROM sso_domains WHERE tenant_id = $1 AND verified_at IS NOT NULL",
        )
        .bind(tenant.as_uuid())
        .fetch_all(self.catalog.pool())
        .await
        .map_err(db)
    }

    /// Which tenant holds `domain` verified, if any.
    async fn holder(&self, domain: &DomainName) -> Result<Option<TenantId>, SsoError> {
        let t: Option<uuid::Uuid> = sqlx::query_scalar(
            "SELECT tenant_id FROM sso_domains WHERE domain = $1 AND verified_at IS NOT NULL",
        )
        .bind(domain.as_str())
        .fetch_optional(self.catalog.pool())
        .await
        .map_err(db)?;
        Ok(t.map(TenantId::from_uuid))
    }

    /// Checks the TXT record of the tenant's claim and marks the domain verified when one of
    /// the records is the claim's token. `Invalid` (with what to publish) when none is.
    pub async fn check(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainClaim, SsoError> {
        let c = self
            .get(tenant, domain)
            .await?
            .ok_or(SsoError::NoSuchDomain)?;
        if c.verified_at.is_some() {
            return Ok(c);
        }
        let records = self
            .resolver
            .txt(&c.record_name())
            .await
            .map_err(|e| SsoError::Upstream(e.to_string()))?;
        if !records.iter().any(|r| r.trim() == c.token) {
            return Err(SsoError::Invalid(format!(
                "no TXT record `{}` with the value `{}` was found; publish it and check again",
                c.record_name(),
                c.token
            )));
        }
        self.mark(tenant, domain, Method::Dns).await
    }

    /// Marks `domain` verified for `tenant` (claiming it first if needed).
    pub async fn mark(
        &self,
        tenant: TenantId,
        domain: &DomainName,
        method: Method,
    ) -> Result<DomainClaim, SsoError> {
        self.claim(tenant, domain).await?;
        sqlx::query(
            "UPDATE sso_domains SET verified_at = now(), method = $3
             WHERE tenant_id = $1 AND domain = $2 AND verified_at IS NULL",
        )
        .bind(tenant.as_uuid())
        .bind(domain.as_str())
        .bind(method.as_str())
        .execute(self.catalog.pool())
        .await
        .map_err(taken)?;
        self.get(tenant, domain)
            .await?
            .ok_or(SsoError::NoSuchDomain)
    }

    /// Removes the tenant's claim (verified or not). `NoSuchDomain` when there is none.
    pub async fn remove(&self, tenant: TenantId, domain: &DomainName) -> Result<(), SsoError> {
        let n = sqlx::query("DELETE FROM sso_domains WHERE tenant_id = $1 AND domain = $2")
            .bind(tenant.as_uuid())
            .bind(domain.as_str())
            .execute(self.catalog.pool())
            .await
            .map_err(db)?
            .rows_affected();
        if n == 0 {
            return Err(SsoError::NoSuchDomain);
        }
        Ok(())
    }
}

/// Whether `email`'s domain is one of `verified` (exact match: a verified `acme.com` does not
/// cover `eu.acme.com`, which is verified on its own).
#[must_use]
pub fn covers(verified: &[String], email: &str) -> bool {
    email
        .rsplit_once('@')
        .is_some_and(|(_, d)| verified.iter().any(|v| v.eq_ignore_ascii_case(d)))
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn only_exact_domains_are_covered() {
        let v = vec!["acme.com".to_owned()];
        assert!(covers(&v, "a@acme.com"));
        assert!(covers(&v, "a@ACME.com"));
        assert!(!covers(&v, "a@eu.acme.com"));
        assert!(!covers(&v, "a@evilacme.com"));
        assert!(!covers(&v, "a@acme.com.evil.test"));
        assert!(!covers(&v, "acme.com"));
    }
}
