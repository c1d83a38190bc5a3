//! `platformctl tenants purge`: remove the data of deleted tenants for good (rows in the shared
//! database, or the dedicated database), then their data keys and catalog rows.

use std::process::ExitCode;

use serde_json::json;
use tenancy::catalog::TenantStatus;

use crate::commands::{Output, finish, start};

pub async fn run(slugs: Vec<String>, out: &Output) -> anyhow::Result<ExitCode> {
    let started = start().await?;
    let t = &started.tenancy;
    let deleted = t.catalog.tenants_in_status(TenantStatus::Deleted).await?;
    let mut failed = 0;
    for slug in &slugs {
        if !deleted.iter().any(|d| d.slug.as_str() == slug) {
            out.emit(
                &json!({"slug": slug, "result": "not-deleted"}),
                &format!("{slug}: not a deleted tenant; skipped"),
            );
            failed += 1;
        }
    }
    for tenant in deleted
        .iter()
        .filter(|d| slugs.is_empty() || slugs.iter().any(|s| s == d.slug.as_str()))
    {
        match t.provisioner.purge(tenant).await {
            Ok(()) => out.emit(
                &json!({"slug": tenant.slug.as_str(), "id": tenant.id.to_string(), "result": "purged"}),
                &format!("{}: purged ({})", tenant.slug, tenant.placement.kind()),
            ),
            Err(e) => {
                failed += 1;
                out.emit(
                    &json!({"slug": tenant.slug.as_str(), "id": tenant.id.to_string(), "result": "failed", "error": e.to_string()}),
                    &format!("{}: FAILED: {e}", tenant.slug),
                );
            }
        }
    }
    finish(started)?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
