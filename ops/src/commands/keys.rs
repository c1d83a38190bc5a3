//! `platformctl keys status|rotate-kek|rotate-dek`: the key hierarchy's operations. See
//! docs/runbook.md for the rotation procedure (servers first learn the new KEK as current with
//! the old one as previous, then `rotate-kek` re-wraps every data key, then the old KEK goes).

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;
use tenancy::bootstrap::APP_PASSWORD_SECRET;

use super::{Output, finish, start};

#[derive(Subcommand)]
pub enum Keys {
    /// Which KEKs wrap how many data keys.
    Status,
    /// Re-wrap every data key under the current KEK (no secret is re-encrypted). Resumable.
    RotateKek,
    /// A new data key for a tenant (or the platform), with its secrets re-sealed.
    RotateDek {
        /// The tenant's slug.
        #[arg(
            long,
            conflicts_with = "platform",
            required_unless_present = "platform"
        )]
        tenant: Option<String>,
        /// Rotate the platform's own data key.
        #[arg(long)]
        platform: bool,
    },
}

pub async fn run(cmd: Keys, out: &Output) -> anyhow::Result<ExitCode> {
    let started = start().await?;
    let t = &started.tenancy;
    let code = match cmd {
        Keys::Status => {
            let current = t.keyring.provider().current_id().to_owned();
            for (kek, count, known) in t.keyring.status().await? {
                out.emit(
                    &json!({"kek_id": kek, "data_keys": count, "current": kek == current, "loaded": known}),
                    &format!("{kek}: {count} data keys{}{}", if kek == current { " (current)" } else { "" }, if known { "" } else { " (NOT LOADED)" }),
                );
            }
            ExitCode::SUCCESS
        }
        Keys::RotateKek => {
            let n = t.keyring.rotate_kek().await?;
            let current = t.keyring.provider().current_id();
            out.emit(
                &json!({"rewrapped": n, "kek_id": current}),
                &format!("re-wrapped {n} data keys under {current}"),
            );
            ExitCode::SUCCESS
        }
        Keys::RotateDek { tenant, .. } => match tenant {
            Some(slug) => match t.catalog.tenant_by_slug(&slug).await? {
                Some(tenant) => {
                    let v = t.provisioner.rotate_tenant_key(&tenant).await?;
                    out.emit(
                        &json!({"tenant": slug, "version": v}),
                        &format!("{slug}: data key version {v}"),
                    );
                    ExitCode::SUCCESS
                }
                None => {
                    out.emit(
                        &json!({"tenant": slug, "error": "no such tenant"}),
                        &format!("{slug}: no such tenant"),
                    );
                    ExitCode::FAILURE
                }
            },
            None => {
                let v = t
                    .provisioner
                    .rotate_platform_key(&[APP_PASSWORD_SECRET])
                    .await?;
                out.emit(
                    &json!({"platform": true, "version": v}),
                    &format!("platform: data key version {v}"),
                );
                ExitCode::SUCCESS
            }
        },
    };
    finish(started)?;
    Ok(code)
}
