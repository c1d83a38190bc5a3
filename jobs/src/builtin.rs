//! The kinds of this crate: the tenant halves of the platform schedules (`tokens.cleanup`,
//! `jobs.retention`). The `email.*` kinds are the `email` crate's (`email::register`).

use crate::kind::{JobContext, JobFailure, KindSpec, Registry};

async fn cleanup(mut ctx: JobContext, sql: &'static str) -> (JobContext, Result<(), JobFailure>) {
    let r = ctx.tx.execute(sql, &[]).await;
    (ctx, r.map(|_| ()).map_err(JobFailure::from))
}

/// The platform schedules' kinds.
#[must_use]
pub fn registry() -> Registry {
    Registry::default()
        .with("tokens.cleanup", KindSpec::default(), |ctx| {
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
