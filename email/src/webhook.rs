//! The provider's webhooks (`POST /webhooks/email/postmark`): bounce, spam complaint, delivery
//! and open events in Postmark's documented shapes, authenticated by HTTP Basic credentials
//! (compared in constant time). Each event is normalised into the tenant's events (found by the
//! `Metadata` we sent) and, for hard bounces and complaints, its suppression list. An event is
//! recorded once under the provider's identity of it, so a replayed delivery changes nothing. A
//! soft bounce puts the message's job back in the queue (it is sent again, up to its attempts).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tenancy::ids::TenantId;
use uuid::Uuid;

use crate::store::{self, Reason};
use crate::{EmailError, Mailer};

/// What became of a webhook call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Recorded,
    /// The same event was recorded before.
    Replayed,
    /// Not about one of our messages, or a record type we do not use.
    Ignored,
}

/// The call is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the payload is not a Postmark event: {0}")]
    Payload(String),
    #[error(transparent)]
    Email(#[from] EmailError),
}

impl From<tokio_postgres::Error> for WebhookError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Email(e.into())
    }
}

/// A Postmark webhook event (the fields we use).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    record_type: String,
    #[serde(rename = "ID", default)]
    id: Option<serde_json::Value>,
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    #[serde(rename = "MessageID", default)]
    message_id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
    #[serde(default)]
    received_at: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// Bounce types that mean the address will never take mail.
const HARD: &[&str] = &["HardBounce", "BadEmailAddress", "ManuallyDeactivated"];

impl Mailer {
    /// Whether `authorization` carries the configured webhook credentials (constant time; no
    /// credentials configured: never).
    #[must_use]
    pub fn webhook_authorized(&self, authorization: Option<&str>) -> bool {
        let Some(expected) = &self.inner.settings.webhook_credentials else {
            return false;
        };
        let given = authorization
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .unwrap_or_default();
        let a = Sha256::digest(&given);
        let b = Sha256::digest(expected.expose().as_bytes());
        bool::from(a.ct_eq(&b))
    }

    /// Applies one Postmark event.
    pub async fn postmark_event(&self, body: serde_json::Value) -> Result<Outcome, WebhookError> {
        let e: Event =
            serde_json::from_value(body).map_err(|e| WebhookError::Payload(e.to_string()))?;
        let Some(tenant) = e
            .metadata
            .get("tenant")
            .and_then(|t| Uuid::parse_str(t).ok())
            .map(TenantId::from_uuid)
        else {
            return Ok(Outcome::Ignored);
        };
        let message = e
            .metadata
            .get("message")
            .and_then(|m| Uuid::parse_str(m).ok());
        let recipient = e
            .email
            .clone()
            .or_else(|| e.recipient.clone())
            .unwrap_or_default()
            .to_lowercase();
        let pm_id = e.message_id.clone().unwrap_or_default();
        let id_text = e.id.as_ref().map(ToString::to_string).unwrap_or_default();
        let (kind, replay_key) = match (e.record_type.as_str(), e.kind.as_deref()) {
            ("Bounce", Some(t)) if HARD.contains(&t) => ("bounced", format!("bounce:{id_text}")),
            ("Bounce", _) => ("soft_bounced", format!("bounce:{id_text}")),
            ("SpamComplaint", _) => ("complained", format!("complaint:{id_text}")),
            ("Delivery", _) => ("delivered", format!("delivery:{pm_id}")),
            ("Open", _) => (
                "opened",
                format!("open:{pm_id}:{}", e.received_at.clone().unwrap_or_default()),
            ),
            _ => return Ok(Outcome::Ignored),
        };
        if recipient.is_empty() || replay_key.ends_with(':') {
            return Err(WebhookError::Payload(
                "the event names no recipient or no id".into(),
            ));
        }
        let Some(mut tx) = self.begin(tenant).await? else {
            return Ok(Outcome::Ignored);
        };
        let detail = serde_json::json!({
            "provider": "postmark",
            "type": e.kind,
            "provider_message_id": e.message_id,
            "description": e.description,
        });
        if !store::event(
            &mut tx,
            message,
            &recipient,
            kind,
            Some(&replay_key),
            detail,
        )
        .await?
        {
            return Ok(Outcome::Replayed);
        }
        match kind {
            "bounced" => {
                store::suppress(&mut tx, &recipient, Reason::HardBounce, None).await?;
            }
            "complained" => {
                store::suppress(&mut tx, &recipient, Reason::Complaint, None).await?;
            }
            "soft_bounced" => {
                if let Some(m) = message {
                    tx.execute(
                        "UPDATE email_messages SET status = 'soft_bounced', updated_at = now()
                         WHERE id = $1 AND status = 'sent'",
                        &[&m],
                    )
                    .await?;
                    tx.execute(
                        "UPDATE jobs SET state = 'retrying', finished_at = NULL,
                                run_at = now() + interval '5 minutes', last_error = 'soft bounce'
                         WHERE id = $1 AND state = 'succeeded' AND attempts < max_attempts",
                        &[&m],
                    )
                    .await?;
                }
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(Outcome::Recorded)
    }
}
