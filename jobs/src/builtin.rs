//! The kinds this platform runs today: the `email.*` kinds that replaced the outbox (sending is
//! the email issue's; until then the handler records the send in a [`SentMail`] log), and the
//! tenant halves of the platform schedules (`tokens.cleanup`, `jobs.retention`).

use std::sync::{Arc, Mutex};

use tenancy::ids::TenantId;

use crate::kind::{JobContext, JobFailure, KindSpec, Registry};
use crate::store::JobId;

/// The email kinds.
pub const EMAIL_KINDS: [&str; 3] = [
    "email.invitation",
    "email.password_reset",
    "email.verification",
];

/// A message a job "sent".
#[derive(Clone)]
pub struct Sent {
    pub tenant: TenantId,
    pub job: JobId,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    /// The opened body (it may carry a token: never log it).
    pub body: String,
}

impl std::fmt::Debug for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sent")
            .field("tenant", &self.tenant)
            .field("job", &self.job)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The record of sends, in this process (the stand-in for a mail transport).
#[derive(Clone, Debug, Default)]
pub struct SentMail(Arc<Mutex<Vec<Sent>>>);

impl SentMail {
    /// Every send so far.
    #[must_use]
    pub fn all(&self) -> Vec<Sent> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn push(&self, s: Sent) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(s);
    }
}

async fn send(mail: SentMail, ctx: JobContext) -> (JobContext, Result<(), JobFailure>) {
    let body = match ctx.secret().await {
        Ok(Some(b)) => b.expose().to_owned(),
        Ok(None) => String::new(),
        Err(e) => return (ctx, Err(e.into())),
    };
    let field = |k: &str| {
        ctx.payload
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let sent = Sent {
        tenant: ctx.tenant,
        job: ctx.id,
        kind: ctx.kind.to_string(),
        recipient: field("recipient"),
        subject: field("subject"),
        body,
    };
    tracing::info!(tenant.id = %ctx.tenant, job.id = %ctx.id, job.kind = %ctx.kind, "email recorded as sent");
    mail.push(sent);
    (ctx, Ok(()))
}

async fn cleanup(mut ctx: JobContext, sql: &'static str) -> (JobContext, Result<(), JobFailure>) {
    let r = ctx.tx.execute(sql, &[]).await;
    (ctx, r.map(|_| ()).map_err(JobFailure::from))
}

/// The platform's kinds, with sends recorded in `mail`.
#[must_use]
pub fn registry(mail: &SentMail) -> Registry {
    let mut r = Registry::default();
    for kind in EMAIL_KINDS {
        let mail = mail.clone();
        r = r.with(kind, KindSpec::default(), move |ctx| {
            send(mail.clone(), ctx)
        });
    }
    r.with("tokens.cleanup", KindSpec::default(), |ctx| {
        cleanup(
            ctx,
            "WITH t AS (DELETE FROM one_time_tokens WHERE expires_at < now() - interval '1 day')
             DELETE FROM outbox WHERE expires_at < now()",
        )
    })
    .with("jobs.retention", KindSpec::default(), |ctx| {
        cleanup(
            ctx,
            "DELETE FROM jobs WHERE state IN ('succeeded', 'cancelled', 'dead')
             AND finished_at < now() - interval '14 days'",
        )
    })
}
