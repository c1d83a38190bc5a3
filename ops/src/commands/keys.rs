//! `platformctl keys status|rotate-kek|rotate-dek`: the key hierarchy's operations. See
//! docs/runbook.md for the rotation procedure (servers first learn the new KEK as current with
//! the old one as previous, then `rotate-kek` re-wraps every data key, then the old KEK goes).

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;
use tenancy::provision::keys::Rotation;

use super::{Output, finish, start};

#[derive(Subcommand)]
pub enum Keys {
    /// Which KEKs wrap how many data keys, and every registered sealed column of the platform
    /// (or of one tenant) by data-key version, with values whose key is gone counted as lost.
    Status {
        /// A tenant's sealed values (its catalog rows and its database) instead of the platform's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Re-wrap every data key under the current KEK (no secret is re-encrypted). Resumable.
    RotateKek,
    /// A new data key for a tenant (or the platform), with every sealed value of it re-sealed
    /// (the registry in `tenancy::crypto::registry`); versions older than the previous go.
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
        Keys::Status { tenant } => {
            let current = t.keyring.provider().current_id().to_owned();
            for (kek, count, known) in t.keyring.status().await? {
                out.emit(
                    &json!({"kek_id": kek, "data_keys": count, "current": kek == current, "loaded": known}),
                    &format!("{kek}: {count} data keys{}{}", if kek == current { " (current)" } else { "" }, if known { "" } else { " (NOT LOADED)" }),
                );
            }
            let tenant = match &tenant {
                Some(slug) => match t.catalog.tenant_by_slug(slug).await? {
                    Some(x) => Some(x),
                    None => return no_such_tenant(started, slug, out),
                },
                None => None,
            };
            let mut lost = 0;
            for c in t.provisioner.sealed_status(tenant.as_ref()).await? {
                lost += c.lost;
                let versions: serde_json::Map<String, serde_json::Value> = c
                    .versions
                    .iter()
                    .map(|(v, n)| {
                        (
                            v.map_or_else(|| "malformed".to_owned(), |v| v.to_string()),
                            json!(n),
                        )
                    })
                    .collect();
                out.emit(
                    &json!({"column": c.column, "what": c.what, "versions": versions, "lost": c.lost}),
                    &format!("{} ({}): {versions:?}{}", c.column, c.what, if c.lost > 0 { format!(", {} LOST", c.lost) } else { String::new() }),
                );
            }
            if lost > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
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
                    let r = t.provisioner.rotate_tenant_key(&tenant).await?;
                    emit_rotation(out, &json!({"tenant": slug}), &slug, &r)
                }
                None => return no_such_tenant(started, &slug, out),
            },
            None => {
                let r = t.provisioner.rotate_platform_key().await?;
                emit_rotation(out, &json!({"platform": true}), "platform", &r)
            }
        },
    };
    finish(started)?;
    Ok(code)
}

fn no_such_tenant(
    started: tenancy::bootstrap::Started,
    slug: &str,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    out.emit(
        &json!({"tenant": slug, "error": "no such tenant"}),
        &format!("{slug}: no such tenant"),
    );
    finish(started)?;
    Ok(ExitCode::FAILURE)
}

/// One line per re-sealed column, then the new version. Values that did not open were already
/// lost before this rotation (or tampered with): reported, and the exit code says so.
fn emit_rotation(out: &Output, who: &serde_json::Value, name: &str, r: &Rotation) -> ExitCode {
    for (column, t) in &r.columns {
        out.emit(
            &json!({"who": who, "column": column, "resealed": t.resealed, "current": t.current, "unreadable": t.unreadable}),
            &format!("{name}: {column}: {} re-sealed, {} already current, {} unreadable", t.resealed, t.current, t.unreadable),
        );
    }
    let mut line = who.clone();
    line["version"] = json!(r.version);
    line["unreadable"] = json!(r.unreadable());
    out.emit(&line, &format!("{name}: data key version {}", r.version));
    if r.unreadable() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
