//! `platformctl migrate control-plane|tenants`: apply the migration sets. The shared database is
//! migrated at start-up like the control plane; `tenants` then migrates every dedicated database.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;
use tenancy::catalog::{Placement, TenantStatus};

use super::{Output, finish, start};

#[derive(Subcommand)]
pub enum Migrate {
    /// Apply `migrations/` to the control plane (done by every start-up too).
    ControlPlane,
    /// Apply `tenant-migrations/` to the shared database and every dedicated database.
    Tenants,
}

pub async fn run(cmd: Migrate, out: &Output) -> anyhow::Result<ExitCode> {
    // Start-up applies both the control-plane and the shared-database migrations.
    let started = start().await?;
    let mut failed = 0;
    if let Migrate::Tenants = cmd {
        let t = &started.tenancy;
        let mut tenants = t.catalog.tenants_in_status(TenantStatus::Active).await?;
        tenants.extend(t.catalog.tenants_in_status(TenantStatus::Suspended).await?);
        for tenant in tenants {
            let Placement::Dedicated { server, database } = &tenant.placement else {
                continue;
            };
            let result = async {
                let (s, _) = t
                    .catalog
                    .db_server_sealed(*server)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("server not registered"))?;
                let url = t.provisioner.server_admin_url(&s).await?;
                let version =
                    tenancy::migrate::tenant_database(&tenancy::pg::with_database(&url, database)?)
                        .await?;
                anyhow::Ok(version)
            }
            .await;
            match result {
                Ok(v) => out.emit(
                    &json!({"tenant": tenant.slug.as_str(), "state": "ok", "version": v}),
                    &format!("{}: ok (version {v})", tenant.slug),
                ),
                Err(e) => {
                    failed += 1;
                    out.emit(&json!({"tenant": tenant.slug.as_str(), "state": "failed", "error": format!("{e:#}")}), &format!("{}: FAILED: {e:#}", tenant.slug));
                }
            }
        }
    }
    out.emit(
        &json!({"state": "done", "failed": failed}),
        &format!("done; {failed} failed"),
    );
    finish(started)?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
