//! The provider's HTTP API, in Postmark's documented shapes: `POST /email` with the server token
//! in `X-Postmark-Server-Token`, answered `{"MessageID", "ErrorCode", "Message", ...}`; error
//! code 406 is an inactive recipient. `Metadata` carries our tenant and message ids: webhooks
//! echo them (to find the tenant), and `GET /messages/outbound?metadata_message=` finds a message
//! an earlier, interrupted run already sent (so a retried job never sends twice).

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tenancy::ids::TenantId;
use uuid::Uuid;

use crate::compose::Outgoing;
use crate::transport::{Accepted, Provider, SendError, TransportError, Via};

/// A Postmark-shaped API.
#[derive(Clone)]
pub struct Postmark {
    base: String,
    token: String,
    http: reqwest::Client,
    /// The tenant of the message being sent, for `Metadata` (set per send).
    tenant: Option<TenantId>,
}

impl std::fmt::Debug for Postmark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postmark")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendResponse {
    #[serde(rename = "MessageID", default)]
    message_id: Option<String>,
    #[serde(default)]
    error_code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SearchResponse {
    total_count: i64,
    messages: Vec<SearchHit>,
}

#[derive(Deserialize)]
struct SearchHit {
    #[serde(rename = "MessageID")]
    message_id: String,
}

impl Postmark {
    /// The API at `base` with `token`; each call may take `timeout`.
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<Self, TransportError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| TransportError::Provider(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
            tenant: None,
        })
    }

    /// This client, sending for `tenant` (its id goes in `Metadata`).
    #[must_use]
    pub fn for_tenant(&self, tenant: TenantId) -> Self {
        Self {
            tenant: Some(tenant),
            ..self.clone()
        }
    }

    fn transient(e: &reqwest::Error) -> SendError {
        SendError::Transient(if e.is_timeout() {
            "the provider timed out".into()
        } else {
            format!("the provider is unreachable: {e}")
        })
    }

    /// The provider's id of the message we sent as `id`, if it has one.
    pub async fn find(&self, id: Uuid) -> Result<Option<String>, SendError> {
        let mut url = url::Url::parse(&format!("{}/messages/outbound", self.base))
            .map_err(|e| SendError::Refused(format!("the provider URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("count", "1")
            .append_pair("offset", "0")
            .append_pair("metadata_message", &id.to_string());
        let r = self
            .http
            .get(url)
            .header("X-Postmark-Server-Token", &self.token)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| Self::transient(&e))?;
        if !r.status().is_success() {
            return Err(SendError::Transient(format!(
                "the provider's message search answered {}",
                r.status()
            )));
        }
        let body: SearchResponse = r
            .json()
            .await
            .map_err(|e| SendError::Transient(format!("the provider's search answer: {e}")))?;
        Ok((body.total_count > 0)
            .then(|| body.messages.into_iter().next().map(|m| m.message_id))
            .flatten())
    }
}

impl Provider for Postmark {
    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let headers: Vec<_> = m
            .headers
            .iter()
            .map(|(n, v)| json!({"Name": n, "Value": v}))
            .collect();
        let mut metadata = json!({ "message": m.id.to_string() });
        if let Some(t) = self.tenant {
            metadata["tenant"] = json!(t.to_string());
        }
        let body = json!({
            "From": m.from,
            "To": m.to,
            "Subject": m.subject,
            "HtmlBody": m.html,
            "TextBody": m.text,
            "Headers": headers,
            "MessageStream": "outbound",
            "Metadata": metadata,
        });
        let r = self
            .http
            .post(format!("{}/email", self.base))
            .header("X-Postmark-Server-Token", &self.token)
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| Self::transient(&e))?;
        let status = r.status();
        if status.is_server_error() {
            return Err(SendError::Transient(format!(
                "the provider answered {status}"
            )));
        }
        let parsed: Option<SendResponse> = r.json().await.ok();
        match parsed {
            Some(SendResponse {
                message_id: Some(id),
                error_code: 0,
                ..
            }) if status.is_success() => Ok(Accepted {
                via: Via::Provider,
                provider_message_id: id,
            }),
            Some(SendResponse {
                error_code: 406,
                message,
                ..
            }) => Err(SendError::Inactive(message)),
            Some(SendResponse {
                error_code,
                message,
                ..
            }) => Err(SendError::Refused(format!(
                "the provider answered {status} (error {error_code}: {message})"
            ))),
            None => Err(SendError::Refused(format!(
                "the provider answered {status} without a readable body"
            ))),
        }
    }
}
