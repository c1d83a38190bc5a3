//! Job kinds: a name, its limits (attempts, lease, backoff), and the handler that runs it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tenancy::crypto::{KeyError, Keyring, Scope};
use tenancy::dataplane::TenantTx;
use tenancy::ids::TenantId;

use crate::store::JobId;

/// The keyring purpose of a job's sealed payload (the outbox's purpose: its rows became jobs).
pub const SEALED_PURPOSE: &str = tenancy::crypto::registry::purpose::OUTBOX_BODY;

/// A job kind's name: lower-case words joined by dots (`email.invitation`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKind(String);

/// The name is not a valid kind.
#[derive(Debug, thiserror::Error)]
#[error("a job kind is 1 to 64 characters: a lower-case letter, then letters, digits, '_' or '.'")]
pub struct InvalidKind;

impl JobKind {
    /// Parses a kind name (the same rule as the table's CHECK).
    pub fn parse(s: &str) -> Result<Self, InvalidKind> {
        let mut chars = s.chars();
        let ok = s.len() <= 64
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidKind)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A kind's limits.
#[derive(Clone, Copy, Debug)]
pub struct KindSpec {
    /// Attempts before the job is dead-lettered.
    pub max_attempts: i32,
    /// How long a claim lasts: a job still running after this is rescued by another worker.
    pub lease: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for KindSpec {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            lease: Duration::from_secs(30),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(3600),
        }
    }
}

/// Why a run failed: the message becomes the job's `last_error` (so never put secrets in it).
#[derive(Debug, Clone)]
pub struct JobFailure(pub String);

impl<E: std::error::Error> From<E> for JobFailure {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

/// What a handler gets: the job, and the transaction its effects go into. That transaction is
/// scoped to the job's tenant (RLS) and commits only together with the lease-checked completion,
/// so a worker that lost its lease commits none of the effects.
pub struct JobContext {
    pub tenant: TenantId,
    pub id: JobId,
    pub kind: JobKind,
    pub attempt: i32,
    pub payload: serde_json::Value,
    pub(crate) sealed: Option<Vec<u8>>,
    pub(crate) keyring: Keyring,
    pub tx: TenantTx,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    /// The sealed part of the payload, opened with the tenant's data key.
    pub async fn secret(&self) -> Result<Option<Secret>, KeyError> {
        let Some(sealed) = &self.sealed else {
            return Ok(None);
        };
        let s = self
            .keyring
            .open_string(Scope::Tenant(self.tenant), SEALED_PURPOSE, sealed)
            .await?;
        Ok(Some(Secret(s)))
    }
}

/// An opened secret (zeroized on drop); `Debug` redacts it.
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// The plain text.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The future a handler returns; it gives the context back for the completion.
pub type HandlerFuture = Pin<Box<dyn Future<Output = (JobContext, Result<(), JobFailure>)> + Send>>;

/// Runs jobs of one kind.
pub trait Handler: Send + Sync + 'static {
    fn run(&self, ctx: JobContext) -> HandlerFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (JobContext, Result<(), JobFailure>)> + Send + 'static,
{
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(self(ctx))
    }
}

/// The kinds a worker runs. A claimed job of a kind not registered here is retried later (an
/// older instance may not know a newer kind), never dropped.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<JobKind, (KindSpec, Arc<dyn Handler>)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Registry {
    /// Registers `handler` for `kind`.
    #[must_use]
    pub fn with(mut self, kind: &str, spec: KindSpec, handler: impl Handler) -> Self {
        let kind = JobKind::parse(kind).expect("a registered kind is a valid name");
        self.kinds.insert(kind, (spec, Arc::new(handler)));
        self
    }

    /// The registered kinds and their limits.
    pub fn kinds(&self) -> impl Iterator<Item = (&JobKind, &KindSpec)> {
        self.kinds.iter().map(|(k, (s, _))| (k, s))
    }

    pub(crate) fn get(&self, kind: &JobKind) -> Option<&(KindSpec, Arc<dyn Handler>)> {
        self.kinds.get(kind)
    }
}
