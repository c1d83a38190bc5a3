//! Transactional email (issue 17). Every message is sent by an `email.*` job enqueued in the
//! transaction that causes it (the `jobs` crate); this crate is what those jobs do:
//!
//! - [`kinds`]: the message kinds and their categories (what may withhold them).
//! - [`templates`]: one source per kind rendered to HTML (escaped) and text, localised, branded.
//! - [`compose`]: MIME with `List-Unsubscribe`, signed with DKIM ([`keys`]: the platform's sealed
//!   key; [`domain`]: a tenant's own sending domain and its sealed key, once verified in DNS).
//! - [`transport`]: the provider's HTTP API with failover to SMTP, SMTP alone, or `.eml` files.
//! - [`send`]: the job handler: idempotent per message, checks the suppression list first.
//! - [`store`]: messages, events, suppressions and branding in the tenant's database.
//! - [`tracking`]: open tracking (off by default), a 1×1 image per message;
//! - [`unsubscribe`]: RFC 8058 one-click tokens; [`webhook`]: the provider's bounce, complaint,
//!   delivery and open events, normalised into events and suppressions.

pub mod compose;
pub mod domain;
pub mod keys;
pub mod kinds;
pub mod locale;
pub mod send;
pub mod store;
pub mod templates;
pub mod tracking;
pub mod transport;
pub mod unsubscribe;
pub mod webhook;

use std::sync::Arc;

use tenancy::bootstrap::Tenancy;
use tenancy::catalog::Catalog;
use tenancy::crypto::Keyring;
use tenancy::dataplane::{DataPlane, TenantTx};
use tenancy::ids::TenantId;
use tenancy::resolve::Resolver;
use tenancy::settings::EmailSettings;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

pub use kinds::{Category, KINDS, Kind};
pub use send::register;
pub use templates::{Branding, Rendered, Templates};

/// The email service: configuration, templates, transports and keys (cheap to clone).
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    settings: EmailSettings,
    templates: Templates,
    transports: transport::Transports,
    catalog: Catalog,
    keyring: Keyring,
    dataplane: DataPlane,
    resolver: Resolver,
    signer: OnceCell<Arc<compose::Signer>>,
    unsubscribe_key: OnceCell<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("transport", &self.inner.transports.first())
            .finish_non_exhaustive()
    }
}

/// A failure of the email service outside a job (a route maps it).
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error(transparent)]
    Keys(#[from] keys::KeysError),
    #[error(transparent)]
    Key(#[from] tenancy::crypto::KeyError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Connect(#[from] tenancy::dataplane::ConnectError),
    #[error("looking the tenant up failed")]
    Catalog,
    #[error(transparent)]
    Render(#[from] templates::RenderError),
}

/// The DNS record that publishes the platform's DKIM key.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DkimRecord {
    pub selector: String,
    pub domain: String,
    pub txt_name: String,
    pub txt_value: String,
}

impl Mailer {
    /// The service over the tenancy core, with the transports its settings configure.
    pub fn new(t: &Tenancy) -> Result<Self, transport::TransportError> {
        // reqwest is built without a default crypto provider: ring, as everywhere here (an
        // error only means another part of the process installed it first).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            inner: Arc::new(Inner {
                transports: transport::Transports::new(&t.email)?,
                settings: t.email.clone(),
                templates: Templates::new(),
                catalog: t.catalog.clone(),
                keyring: t.keyring.clone(),
                dataplane: t.dataplane.clone(),
                resolver: t.resolver.clone(),
                signer: OnceCell::new(),
                unsubscribe_key: OnceCell::new(),
            }),
        })
    }

    /// The same service with other provider retry timing (tests of failover).
    #[must_use]
    pub fn with_provider_backoff(&self, attempts: u32, backoff: std::time::Duration) -> Self {
        let mut transports = self.inner.transports.clone();
        transports.attempts = attempts.max(1);
        transports.backoff = backoff;
        Self {
            inner: Arc::new(Inner {
                transports,
                settings: self.inner.settings.clone(),
                templates: self.inner.templates.clone(),
                catalog: self.inner.catalog.clone(),
                keyring: self.inner.keyring.clone(),
                dataplane: self.inner.dataplane.clone(),
                resolver: self.inner.resolver.clone(),
                signer: OnceCell::new(),
                unsubscribe_key: OnceCell::new(),
            }),
        }
    }

    /// The templates.
    #[must_use]
    pub fn templates(&self) -> &Templates {
        &self.inner.templates
    }

    /// The transports.
    #[must_use]
    pub fn transports(&self) -> &transport::Transports {
        &self.inner.transports
    }

    /// The sender's domain: the DKIM signing domain.
    #[must_use]
    pub fn domain(&self) -> &str {
        self.inner
            .settings
            .from
            .rsplit_once('@')
            .map_or("localhost", |(_, d)| d)
    }

    /// The DKIM key (generated and sealed on first use).
    pub async fn signer(&self) -> Result<Arc<compose::Signer>, keys::KeysError> {
        self.inner
            .signer
            .get_or_try_init(|| async {
                let selector = self.inner.settings.dkim_selector.clone();
                let seed = keys::platform_key(
                    &self.inner.catalog,
                    &self.inner.keyring,
                    &keys::dkim_secret_name(&selector),
                )
                .await?;
                Ok(Arc::new(compose::Signer {
                    domain: self.domain().to_owned(),
                    selector,
                    seed,
                }))
            })
            .await
            .cloned()
    }

    /// The record to publish for the DKIM key.
    pub async fn dkim_record(&self) -> Result<DkimRecord, keys::KeysError> {
        let s = self.signer().await?;
        let (txt_name, txt_value) = s.txt_record();
        Ok(DkimRecord {
            selector: s.selector.clone(),
            domain: s.domain.clone(),
            txt_name,
            txt_value,
        })
    }

    async fn unsubscribe_key(&self) -> Result<&Zeroizing<[u8; 32]>, keys::KeysError> {
        self.inner
            .unsubscribe_key
            .get_or_try_init(|| {
                keys::platform_key(
                    &self.inner.catalog,
                    &self.inner.keyring,
                    keys::UNSUBSCRIBE_KEY,
                )
            })
            .await
    }

    /// A tenant transaction outside any request or job (its own commit).
    async fn begin(&self, tenant: TenantId) -> Result<Option<TenantTx>, EmailError> {
        let Some(t) = self
            .inner
            .resolver
            .tenant(tenant)
            .await
            .map_err(|_| EmailError::Catalog)?
        else {
            return Ok(None);
        };
        Ok(Some(self.inner.dataplane.connect(&t).await?.begin()))
    }

    /// Renders `kind` with sample values in the tenant's branding (the preview route).
    pub async fn preview(
        &self,
        tx: &mut TenantTx,
        tenant_name: &str,
        kind: &str,
        locale: Option<&str>,
    ) -> Result<Rendered, EmailError> {
        let brand = store::branding(tx, tenant_name).await?;
        Ok(self.inner.templates.preview(kind, locale, &brand)?)
    }

    /// The one-click unsubscribe token of `u` (what `POST /u/{token}` takes).
    pub async fn unsubscribe_token(
        &self,
        u: &unsubscribe::Unsubscribe,
    ) -> Result<String, keys::KeysError> {
        Ok(unsubscribe::sign(self.unsubscribe_key().await?, u))
    }

    /// Honours a one-click unsubscribe: `None` if the token is not genuine or names no tenant;
    /// else what it unsubscribed (recorded at once, idempotent).
    pub async fn unsubscribe(
        &self,
        token: &str,
    ) -> Result<Option<unsubscribe::Unsubscribe>, EmailError> {
        let key = self.unsubscribe_key().await?;
        let Some(u) = unsubscribe::verify(key, token) else {
            return Ok(None);
        };
        let Some(mut tx) = self.begin(u.tenant).await? else {
            return Ok(None);
        };
        if store::suppress(
            &mut tx,
            &u.recipient,
            store::Reason::Unsubscribe,
            Some(u.category),
        )
        .await?
        {
            store::event(
                &mut tx,
                None,
                &u.recipient,
                "unsubscribed",
                None,
                serde_json::json!({ "category": u.category.as_str() }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(u))
    }
}
