//! `platformctl audit verify|expire`: recompute a tenant's (or the operators') audit hash chain
//! and report the first broken link; expire events past the plan's retention in whole days,
//! keeping a checkpoint so the remainder still verifies.

use std::process::ExitCode;

use audit::retention::{cutoff, expire};
use audit::{ChainReport, verify_admin, verify_tenant};
use clap::Subcommand;
use serde_json::json;
use tenancy::bootstrap::Tenancy;
use tenancy::catalog::{Tenant, TenantStatus};
use time::OffsetDateTime;

use super::{Output, finish, start};

#[derive(Subcommand)]
pub enum Audit {
    /// Recompute a hash chain; exit code 1 and the first broken link if it does not hold, or if
    /// an event has waited for its link longer than the bound (no sealer running).
    Verify {
        /// The tenant's slug.
        #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
        tenant: Option<String>,
        /// The operators' trail in the control plane.
        #[arg(long)]
        admin: bool,
    },
    /// Remove events older than each tenant's plan retention (whole UTC days).
    Expire {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Keep this many days instead of the plan's.
        #[arg(long)]
        days: Option<u16>,
    },
}

fn report(out: &Output, scope: &str, r: &ChainReport) -> ExitCode {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["scope"] = json!(scope);
    v["ok"] = json!(r.ok());
    let human = match &r.broken {
        None if r.unlinked_alarm => format!(
            "{scope}: ALARM: {} events not linked into the chain, the oldest for {:.0} s (more than {} s: is a sealer running?); the {} linked events verified",
            r.unlinked,
            r.oldest_unlinked_s.unwrap_or_default(),
            audit::chain::UNLINKED_ALARM.as_secs(),
            r.events_checked
        ),
        None => format!(
            "{scope}: chain intact: {} events checked (from checkpoint {} to head {}); {} not linked yet",
            r.events_checked, r.checkpoint_seq, r.head_seq, r.unlinked
        ),
        Some(b) => format!(
            "{scope}: BROKEN at event {}: {} ({} events before it verified)",
            b.seq, b.problem, r.events_checked
        ),
    };
    out.emit(&v, &human);
    if r.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn owner_client(t: &Tenancy, tenant: &Tenant) -> anyhow::Result<tokio_postgres::Client> {
    Ok(t.servers.tenant_owner(tenant).await?)
}

pub async fn run(cmd: Audit, out: &Output) -> anyhow::Result<ExitCode> {
    let started = start().await?;
    let t = &started.tenancy;
    let code = match cmd {
        Audit::Verify { admin: true, .. } => report(out, "admin", &verify_admin(&t.catalog).await?),
        Audit::Verify { tenant, .. } => {
            let slug = tenant.unwrap_or_default();
            match t.catalog.tenant_by_slug(&slug).await? {
                Some(tenant) => report(out, &slug, &verify_tenant(&t.dataplane, &tenant).await?),
                None => {
                    out.emit(
                        &json!({"tenant": slug, "error": "no such tenant"}),
                        &format!("{slug}: no such tenant"),
                    );
                    ExitCode::from(2)
                }
            }
        }
        Audit::Expire { tenant, days } => {
            let mut tenants = Vec::new();
            for status in [TenantStatus::Active, TenantStatus::Suspended] {
                tenants.extend(t.catalog.tenants_in_status(status).await?);
            }
            if let Some(slug) = &tenant {
                tenants.retain(|x| x.slug.as_str() == slug);
            }
            let now = OffsetDateTime::now_utc();
            for tenant in tenants {
                let Some(days) = days.map(i32::from).or(tenant.audit_retention_days) else {
                    continue;
                };
                let before = cutoff(now, days);
                let owner = owner_client(t, &tenant).await?;
                let (removed, checkpoint) = expire(&owner, tenant.id, before).await?;
                out.emit(
                    &json!({"tenant": tenant.slug.as_str(), "removed": removed, "checkpoint_seq": checkpoint, "before": before.to_string()}),
                    &format!("{}: removed {removed} events before {before} (checkpoint at {checkpoint})", tenant.slug.as_str()),
                );
            }
            ExitCode::SUCCESS
        }
    };
    finish(started)?;
    Ok(code)
}
