//! Transports: the [`Provider`] trait and its implementations: the provider's HTTP API
//! ([`postmark`], the production path), SMTP ([`smtp`], development and fallback) and `.eml`
//! files ([`files`], the embedded default). [`Transports`] picks per configuration and fails over
//! from the API to SMTP when the API answers 5xx or times out (after retries with backoff).

pub mod files;
pub mod postmark;
pub mod smtp;

use std::future::Future;
use std::time::Duration;

use tenancy::settings::EmailSettings;

use crate::compose::Outgoing;

/// Where a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Provider,
    Smtp,
    File,
}

impl Via {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Smtp => "smtp",
            Self::File => "file",
        }
    }
}

/// A message accepted by a transport.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub via: Via,
    /// The provider's message id (the API's `MessageID`; for SMTP and files, our Message-ID).
    pub provider_message_id: String,
}

/// Why a transport did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying, or failing over: a 5xx, a timeout, a refused connection.
    #[error("transient: {0}")]
    Transient(String),
    /// The provider refuses this recipient (inactive: bounced or complained before).
    #[error("the provider refuses the recipient: {0}")]
    Inactive(String),
    /// Refused for good (bad request, bad credentials): retrying the same call will not help.
    #[error("refused: {0}")]
    Refused(String),
}

/// A way to send a message.
pub trait Provider: Send + Sync {
    /// Sends `m` once (no retries).
    fn send(&self, m: &Outgoing) -> impl Future<Output = Result<Accepted, SendError>> + Send;
}

/// The configured transports.
#[derive(Clone, Debug)]
pub struct Transports {
    pub provider: Option<postmark::Postmark>,
    pub smtp: Option<smtp::Smtp>,
    pub files: files::Files,
    /// Provider attempts before failing over.
    pub attempts: u32,
    pub backoff: Duration,
}

/// Building the transports failed (a configuration error, reported at startup).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("PLATFORM_SMTP_URL: {0}")]
    Smtp(String),
    #[error("PLATFORM_EMAIL_PROVIDER_URL: {0}")]
    Provider(String),
}

impl Transports {
    /// From the settings.
    pub fn new(s: &EmailSettings) -> Result<Self, TransportError> {
        Ok(Self {
            provider: match (&s.provider_url, &s.provider_token) {
                (Some(url), Some(token)) => Some(postmark::Postmark::new(
                    url,
                    token.expose(),
                    s.provider_timeout,
                )?),
                _ => None,
            },
            smtp: match &s.smtp_url {
                Some(url) => Some(smtp::Smtp::new(
                    url.expose(),
                    s.smtp_password.as_ref().map(|p| p.expose()),
                )?),
                None => None,
            },
            files: files::Files::new(s.file_dir.clone()),
            attempts: 3,
            backoff: Duration::from_millis(250),
        })
    }

    /// The transport a message goes out on first.
    #[must_use]
    pub fn first(&self) -> Via {
        if self.provider.is_some() {
            Via::Provider
        } else if self.smtp.is_some() {
            Via::Smtp
        } else {
            Via::File
        }
    }

    /// Sends `m`: through the provider (retrying transient failures with backoff), failing over
    /// to SMTP if the provider stays unavailable; through SMTP alone; or to a file.
    pub async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        if let Some(p) = &self.provider {
            let mut delay = self.backoff;
            let mut last = None;
            for attempt in 1..=self.attempts {
                match p.send(m).await {
                    Ok(a) => return Ok(a),
                    Err(SendError::Transient(e)) => {
                        tracing::warn!(email.id = %m.id, attempt, error = %e, "the email provider failed");
                        last = Some(e);
                        if attempt < self.attempts {
                            tokio::time::sleep(delay).await;
                            delay *= 4;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(smtp) = &self.smtp else {
                return Err(SendError::Transient(last.unwrap_or_default()));
            };
            tracing::warn!(email.id = %m.id, "failing over to SMTP");
            return smtp.send(m).await;
        }
        if let Some(smtp) = &self.smtp {
            return smtp.send(m).await;
        }
        self.files.send(m).await
    }
}
