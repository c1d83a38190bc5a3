//! The request's audit context: request id, route, client address, user agent, and the actor
//! once authentication has found one. It lives in a task-local for the duration of a request, so
//! the data plane and the catalog pool can hand it to PostgreSQL without every function between
//! the handler and the query taking it as a parameter (like the tracing span, it is ambient
//! request metadata, never state or configuration). Outside a request (ops tools, background
//! work) there is none and the triggers record the actor as `system`.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

tokio::task_local! {
    static CURRENT: Arc<AuditContext>;
}

/// Who acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// `user`, `api_key`, `operator`, `anonymous` (or `system`, outside requests).
    #[serde(rename = "actor_type")]
    pub kind: &'static str,
    #[serde(rename = "actor_id")]
    pub id: Option<String>,
}

impl Actor {
    #[must_use]
    pub fn anonymous() -> Self {
        Self {
            kind: "anonymous",
            id: None,
        }
    }
    #[must_use]
    pub fn user(id: impl ToString) -> Self {
        Self {
            kind: "user",
            id: Some(id.to_string()),
        }
    }
    #[must_use]
    pub fn api_key(id: impl ToString) -> Self {
        Self {
            kind: "api_key",
            id: Some(id.to_string()),
        }
    }
    #[must_use]
    pub fn operator() -> Self {
        Self {
            kind: "operator",
            id: Some("admin-token".into()),
        }
    }
}

/// What the audit triggers learn about the request.
#[derive(Debug)]
pub struct AuditContext {
    pub request_id: Option<String>,
    /// `METHOD /path/{template}` (or the raw path when no route matched).
    pub route: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    actor: Mutex<Actor>,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(flatten)]
    actor: &'a Actor,
    route: &'a str,
    client_ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_id: Option<&'a str>,
}

impl AuditContext {
    #[must_use]
    pub fn new(
        request_id: Option<String>,
        route: String,
        client_ip: Option<String>,
        user_agent: Option<String>,
    ) -> Self {
        Self {
            request_id,
            route,
            client_ip,
            user_agent: user_agent.map(|u| u.chars().take(512).collect()),
            actor: Mutex::new(Actor::anonymous()),
        }
    }

    /// Records who is acting (once authentication knows).
    pub fn set_actor(&self, actor: Actor) {
        *self
            .actor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = actor;
    }

    #[must_use]
    pub fn actor(&self) -> Actor {
        self.actor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The value of `app.audit`: base64 of a JSON object. Base64 needs no quoting, so the value
    /// can go into the `SET LOCAL` text of the pipelined `BEGIN` without any injection risk.
    #[must_use]
    pub fn encode(&self) -> String {
        let actor = self.actor();
        let wire = Wire {
            actor: &actor,
            route: &self.route,
            client_ip: self.client_ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            request_id: self.request_id.as_deref(),
        };
        STANDARD.encode(serde_json::to_vec(&wire).unwrap_or_default())
    }

    /// Runs `f` with this context as the current one.
    pub async fn scope<F: Future>(self: Arc<Self>, f: F) -> F::Output {
        CURRENT.scope(self, f).await
    }
}

/// The current request's context, if any.
#[must_use]
pub fn current() -> Option<Arc<AuditContext>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// `app.audit` for the current request, if any.
#[must_use]
pub fn current_encoded() -> Option<String> {
    CURRENT.try_with(|c| c.encode()).ok()
}

/// Records who is acting, for the rest of the current request (nothing outside a request).
pub fn set_actor(actor: Actor) {
    if let Some(ctx) = current() {
        ctx.set_actor(actor);
    }
}
