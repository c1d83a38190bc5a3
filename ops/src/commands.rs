//! Subcommands, and what they share: settings, start-up, output.

pub mod audit;
pub mod flags;
pub mod jobs;
pub mod keys;
pub mod migrate;
pub mod operations;
pub mod tenants;

use anyhow::Context as _;
use tenancy::bootstrap::Started;
use tenancy::settings::Settings;

/// How to print results.
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints a JSON value as one line, or the human text.
    pub fn emit(&self, value: &serde_json::Value, human: &str) {
        if self.json {
            println!("{value}");
        } else {
            println!("{human}");
        }
    }
}

/// Reads the settings and starts (or attaches to) the databases, as the server does.
pub async fn start() -> anyhow::Result<Started> {
    let settings = Settings::from_env().context("configuration")?;
    tenancy::bootstrap::start(&settings).await
}

/// Stops an embedded cluster that this command started (one a server is using is left running).
pub fn finish(started: Started) -> anyhow::Result<()> {
    let Started {
        tenancy, cluster, ..
    } = started;
    drop(tenancy);
    if let Some(c) = cluster.filter(|c| c.started_here()) {
        c.stop()?;
    }
    Ok(())
}
