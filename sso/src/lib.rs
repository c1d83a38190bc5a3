//! Enterprise SSO per tenant: a SAML 2.0 service provider (samael over xmlsec) and an OpenID
//! Connect relying party (openidconnect, code flow with PKCE, `state` and `nonce`). Connections
//! are tenant data (the tenant's database, secrets sealed with the tenant's key); login requests
//! in flight and the SAML replay cache live there too, so they survive a restart and move with
//! the tenant. Every refusal is recorded as a security event of the tenant. No HTTP server code:
//! `platform` maps [`SsoError`] to problem responses. The crate is separate from `tenancy` so that
//! samael's native dependencies (libxml2, xmlsec1, OpenSSL) are built only for what needs them.

pub mod connections;
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
    base_domain: String,
}

impl Sso {
    /// Builds the SSO services (installs the rustls crypto provider if none is installed).
    pub fn new(base_domain: &str) -> Result<Self, SsoError> {
        Ok(Self {
            http: http::HttpClient::new()?,
            base_domain: base_domain.to_owned(),
        })
    }

    /// Downloads IdP metadata from `url` (at connection set-up only).
    pub async fn fetch_metadata(&self, url: &str) -> Result<String, SsoError> {
        if !url.starts_with("https://")
            && !url.starts_with("http://127.0.0.1")
            && !url.starts_with("http://localhost")
        {
            return Err(SsoError::Invalid(
                "`idp_metadata_url` must be an https URL".into(),
            ));
        }
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
