//! `platformctl jobs list|retry|discard|pause|resume`: the operators' job controls, the same
//! calls as `/admin/v1/jobs` (`jobs::admin`), for when the API is not at hand.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use jobs::admin::{Cursor, Filter, JobView};
use jobs::{JobId, JobKind, JobState};
use serde_json::json;
use tenancy::ids::TenantId;

use super::{Output, finish, start};

#[derive(Subcommand)]
pub enum Jobs {
    /// List jobs (by tenant, then id).
    List {
        /// Only this tenant (its id or slug).
        #[arg(long)]
        tenant: Option<String>,
        /// Only jobs in this state (pending, running, retrying, succeeded, dead, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this kind.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// `next_cursor` of a previous listing.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Run a pending, retrying, dead or cancelled job again now.
    Retry {
        id: String,
        /// The job's tenant (id or slug); else every tenant is searched.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Cancel a job that has not succeeded.
    Discard {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Stop claiming a kind on every instance.
    Pause { kind: String },
    /// Claim a paused kind again.
    Resume { kind: String },
}

fn emit(out: &Output, j: &JobView) {
    let v = json!({
        "id": j.id.to_string(), "tenant_id": j.tenant_id.to_string(), "kind": j.kind,
        "state": j.state.as_str(), "attempts": j.attempts, "max_attempts": j.max_attempts,
        "run_at": j.run_at.to_string(), "last_error": j.last_error,
    });
    let human = format!(
        "{}  {}  {:<24} {:<9} attempts {}/{}  run_at {}{}",
        j.id,
        j.tenant_id,
        j.kind,
        j.state.as_str(),
        j.attempts,
        j.max_attempts,
        j.run_at,
        j.last_error
            .as_deref()
            .map(|e| format!("  last error: {e}"))
            .unwrap_or_default()
    );
    out.emit(&v, &human);
}

async fn tenant_id(
    tenancy: &tenancy::bootstrap::Tenancy,
    t: Option<&str>,
) -> anyhow::Result<Option<TenantId>> {
    let Some(t) = t else { return Ok(None) };
    if let Some(id) = TenantId::parse(t) {
        return Ok(Some(id));
    }
    let found = tenancy.catalog.tenant_by_slug(t).await?;
    Ok(Some(found.context("no such tenant")?.id))
}

pub async fn run(cmd: Jobs, out: &Output) -> anyhow::Result<ExitCode> {
    let started = start().await?;
    let tenancy = &started.tenancy;
    match cmd {
        Jobs::List {
            tenant,
            state,
            kind,
            limit,
            cursor,
        } => {
            let filter = Filter {
                tenant: tenant_id(tenancy, tenant.as_deref()).await?,
                state: state
                    .map(|s| JobState::parse(&s).context("unknown state"))
                    .transpose()?,
                kind: kind.map(|k| JobKind::parse(&k)).transpose()?,
            };
            let cursor = cursor
                .map(|c| Cursor::parse(&c).context("not a cursor from `jobs list`"))
                .transpose()?;
            let (items, next) = jobs::admin::list(
                jobs::admin::Fleet::of(tenancy),
                &filter,
                cursor,
                limit.clamp(1, 1000),
            )
            .await?;
            for j in &items {
                emit(out, j);
            }
            if let Some(c) = next {
                out.emit(
                    &json!({ "next_cursor": c.encode() }),
                    &format!("more: --cursor {}", c.encode()),
                );
            }
        }
        Jobs::Retry { id, tenant } => {
            let t = tenant_id(tenancy, tenant.as_deref()).await?;
            let id = JobId::parse(&id).with_context(|| format!("{id} is not a job id"))?;
            emit(
                out,
                &jobs::admin::retry(jobs::admin::Fleet::of(tenancy), id, t).await?,
            );
        }
        Jobs::Discard { id, tenant } => {
            let t = tenant_id(tenancy, tenant.as_deref()).await?;
            let id = JobId::parse(&id).with_context(|| format!("{id} is not a job id"))?;
            emit(
                out,
                &jobs::admin::discard(jobs::admin::Fleet::of(tenancy), id, t).await?,
            );
        }
        Jobs::Pause { kind } => {
            jobs::admin::set_paused(&tenancy.catalog, &JobKind::parse(&kind)?, true).await?;
            out.emit(
                &json!({"kind": kind, "paused": true}),
                &format!("{kind}: paused"),
            );
        }
        Jobs::Resume { kind } => {
            jobs::admin::set_paused(&tenancy.catalog, &JobKind::parse(&kind)?, false).await?;
            out.emit(
                &json!({"kind": kind, "paused": false}),
                &format!("{kind}: resumed"),
            );
        }
    }
    finish(started)?;
    Ok(ExitCode::SUCCESS)
}
