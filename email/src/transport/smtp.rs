//! SMTP through `lettre`: `smtp://` (STARTTLS when the server offers it; add `?tls=required` to
//! insist), `smtps://` (implicit TLS); credentials in the URL or `PLATFORM_SMTP_PASSWORD`. The
//! signed MIME is sent as is (`send_raw`), so the DKIM signature survives.

use lettre::AsyncTransport as _;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::compose::Outgoing;
use crate::transport::{Accepted, Provider, SendError, TransportError, Via};

/// An SMTP relay.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").finish_non_exhaustive()
    }
}

impl Smtp {
    /// From `PLATFORM_SMTP_URL` (and `PLATFORM_SMTP_PASSWORD`).
    pub fn new(url: &str, password: Option<&str>) -> Result<Self, TransportError> {
        let mut parsed =
            url::Url::parse(url).map_err(|_| TransportError::Smtp("not a URL".into()))?;
        if parsed.scheme() == "smtp" && !parsed.query_pairs().any(|(k, _)| k == "tls") {
            parsed.query_pairs_mut().append_pair("tls", "opportunistic");
        }
        let user = parsed.username().to_owned();
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(parsed.as_str())
            .map_err(|e| TransportError::Smtp(e.to_string()))?
            .timeout(Some(std::time::Duration::from_secs(30)));
        if let Some(p) = password {
            if user.is_empty() {
                return Err(TransportError::Smtp(
                    "PLATFORM_SMTP_PASSWORD is set but the URL names no user".into(),
                ));
            }
            builder = builder.credentials(Credentials::new(user, p.to_owned()));
        }
        Ok(Self {
            transport: builder.build(),
        })
    }
}

impl Provider for Smtp {
    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        match self.transport.send_raw(&m.envelope, &m.raw).await {
            Ok(_) => Ok(Accepted {
                via: Via::Smtp,
                provider_message_id: m.id.to_string(),
            }),
            Err(e) if e.is_permanent() => Err(SendError::Refused(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::Transient(format!("SMTP: {e}"))),
        }
    }
}
