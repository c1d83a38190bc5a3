//! `platformctl flags stale`: flags whose `staleAfter` date has passed (to clean up, or to extend
//! on purpose), oldest first.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::{Output, finish, start};

#[derive(Subcommand)]
pub enum Flags {
    /// Flags past their `staleAfter` date, in every environment.
    Stale,
}

pub async fn run(cmd: Flags, out: &Output) -> anyhow::Result<ExitCode> {
    match cmd {
        Flags::Stale => {
            let started = start().await?;
            let stale = flags::store::stale(started.tenancy.catalog.pool()).await?;
            for f in &stale {
                let d = &f.definition;
                let human = format!(
                    "{}/{}  {}  stale after {}  owner {}",
                    f.environment,
                    d["name"].as_str().unwrap_or("?"),
                    f.kind,
                    d["staleAfter"].as_str().unwrap_or("?"),
                    d["owner"].as_str().unwrap_or("-"),
                );
                out.emit(
                    &json!({
                        "environment": f.environment,
                        "name": d["name"],
                        "kind": f.kind,
                        "enabled": f.enabled,
                        "stale_after": d["staleAfter"],
                        "owner": d["owner"],
                    }),
                    &human,
                );
            }
            if stale.is_empty() && !out.json {
                println!("no stale flags");
            }
            finish(started)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
