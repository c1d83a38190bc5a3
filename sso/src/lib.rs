//! Enterprise SSO per tenant: a SAML 2.0 service provider (samael over xmlsec) and an OpenID
//! Connect relying party (openidconnect, code flow with PKCE, `state` and `nonce`). Connections
//! are tenant data (the tenant's database, secrets sealed with the tenant's key); login requests
//! in flight and the SAML replay cache live there too, so they survive a restart and move with
//! the tenant. Every refusal is recorded as a security event of the tenant. No HTTP server code:
//! `platform` maps [`SsoError`] to problem responses. The crate is separate from `tenancy` so that
//! samael's native dependencies (libxml2, xmlsec1, OpenSSL) are built only for what needs them.

pub mod connections;
pub mod domains;
pub mod egress;
pub mod error;
pub mod github;
mod http;
pub mod oidc;
pub mod provision;
pub mod requests;
pub mod saml;

pub use error::{Rejection, SsoError};

use tenancy::catalog::Tenant;

/// SSO services shared by all tenants: the outbound HTTP client (OIDC discovery and token
/// exchange, IdP metadata download) and the base domain the tenant hosts hang off.
#[derive(Clone, Debug)]
pub struct Sso {
    http: http::HttpClient,
    egress: egress::Egress,
    discovery: moka::future::Cache<String, openidconnect::core::CoreProviderMetadata>,
    base_domain: String,
    domains: domains::Domains,
}

impl Sso {
    /// Builds the SSO services (installs the rustls crypto provider if none is installed).
    /// `egress` says whether tenant-configured URLs may reach private networks (see [`egress`]).
    pub fn new(
        base_domain: &str,
        egress: egress::Egress,
        domains: domains::Domains,
    ) -> Result<Self, SsoError> {
        Ok(Self {
            http: http::HttpClient::new(egress)?,
            egress,
            discovery: oidc::discovery_cache(),
            base_domain: base_domain.to_owned(),
            domains,
        })
    }

    /// The tenants' verified email domains.
    #[must_use]
    pub fn domains(&self) -> &domains::Domains {
        &self.domains
    }

    /// Checks a URL a tenant administrator configures (`field` names it in the problem): https,
    /// and a host that is (or resolves to) a public address unless private networks are allowed.
    pub async fn check_url(&self, url: &str, field: &str) -> Result<(), SsoError> {
        self.egress.check_url(url, field).await.map(|_| ())
    }

    /// Downloads IdP metadata from `url` (at connection set-up only).
    pub async fn fetch_metadata(&self, url: &str) -> Result<String, SsoError> {
        self.check_url(url, "idp_metadata_url").await?;
        self.http.get_text(url).await
    }

    /// Reads one field of an `application/x-www-form-urlencoded` body or query string.
    #[must_use]
    pub fn form_field(body: &[u8], name: &str) -> Option<String> {
        url::form_urlencoded::parse(body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// `https://{slug}.{base}`: where this tenant's SSO endpoints live.
    #[must_use]
    pub fn tenant_origin(&self, tenant: &Tenant) -> String {
        format!("https://{}.{}", tenant.slug.as_str(), self.base_domain)
    }
}
