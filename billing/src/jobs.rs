//! The job kinds billing runs: `billing.dunning` (the tenant half of the hourly dunning
//! schedule), `billing.usage_report` (the tenant half of the usage schedule; payload
//! `{"period": "YYYY-MM"}`, default the last closed month), `billing.reconcile` (the hourly
//! reconciliation with Stripe's event list: one of a slot's tenant jobs does it) and
//! `billing.period_end` (a scheduled plan change applied at its date; also hourly, to catch up).

use std::sync::Arc;

use jobs::{JobContext, JobFailure, KindSpec, Registry};

use crate::Billing;
use crate::usage::Period;

/// Adds billing's kinds to `registry`.
#[must_use]
pub fn register(registry: Registry, billing: &Arc<Billing>) -> Registry {
    let dunning = Arc::clone(billing);
    let usage = Arc::clone(billing);
    let reconcile = Arc::clone(billing);
    let period_end = Arc::clone(billing);
    registry
        .with("billing.dunning", KindSpec::default(), move |ctx| {
            let b = Arc::clone(&dunning);
            async move { run_dunning(&b, ctx).await }
        })
        .with(
            "billing.usage_report",
            KindSpec {
                max_attempts: 10,
                ..KindSpec::default()
            },
            move |ctx| {
                let b = Arc::clone(&usage);
                async move { run_usage(&b, ctx).await }
            },
        )
        .with(
            "billing.reconcile",
            KindSpec::default(),
            move |ctx: JobContext| {
                let b = Arc::clone(&reconcile);
                async move {
                    let r = b.reconcile_scheduled(ctx.id.as_uuid()).await;
                    (ctx, r.map(|_| ()).map_err(JobFailure::from))
                }
            },
        )
        .with(
            crate::manage::PERIOD_END,
            KindSpec::default(),
            move |ctx: JobContext| {
                let b = Arc::clone(&period_end);
                async move {
                    let r = b.apply_due_changes(ctx.tenant).await;
                    (ctx, r.map(|_| ()).map_err(JobFailure::from))
                }
            },
        )
}

async fn run_dunning(b: &Billing, mut ctx: JobContext) -> (JobContext, Result<(), JobFailure>) {
    let name = match b.tenancy.catalog.tenant(ctx.tenant).await {
        Ok(Some(t)) => t.name,
        Ok(None) => return (ctx, Ok(())),
        Err(e) => return (ctx, Err(e.into())),
    };
    let r = b.dunning_in(&mut ctx.tx, &name).await;
    (ctx, r.map(|_| ()).map_err(JobFailure::from))
}

async fn run_usage(b: &Billing, mut ctx: JobContext) -> (JobContext, Result<(), JobFailure>) {
    let period = match ctx.payload.get("period").and_then(|p| p.as_str()) {
        Some(p) => match Period::parse(p) {
            Some(p) => p,
            None => return (ctx, Err(JobFailure("`period` is YYYY-MM".into()))),
        },
        None => match b.now().await {
            Ok(now) => Period::previous(now),
            Err(e) => return (ctx, Err(e.into())),
        },
    };
    let r = b.report_usage(&mut ctx, &period).await;
    (ctx, r.map(|_| ()))
}
