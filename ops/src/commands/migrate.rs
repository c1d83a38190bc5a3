//! `platformctl migrate control-plane|tenants|status`: apply the control-plane migrations, run the
//! tenant-migration fleet runner, and show where every tenant database stands. One file per
//! subcommand under `migrate/`; `progress.rs` renders a run's events.

mod control_plane;
mod progress;
mod status;
mod tenants;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use refinery::Migration;
use tenancy::bootstrap::{SharedSchema, Started};
use tenancy::settings::Settings;

use super::Output;

#[derive(Subcommand)]
pub enum Migrate {
    /// Apply `migrations/` to the control plane.
    ControlPlane,
    /// Apply `tenant-migrations/` to the shared database and every dedicated database.
    Tenants(tenants::TenantsArgs),
    /// Per tenant database: tenants, server, version, target, state, last run; then a summary.
    Status(status::StatusArgs),
}

/// Which migrations a command works with.
#[derive(Args, Clone, Debug, Default)]
pub struct MigrationSet {
    /// Also load `V{n}__{name}.sql` files from this directory, after the built-in ones (for
    /// tests and benchmarks that stand for a newer release).
    #[arg(long, value_name = "DIR", hide = true)]
    pub extra_migrations: Option<PathBuf>,
}

impl MigrationSet {
    /// The built-in tenant migrations plus any extra ones, by version.
    pub fn load(&self) -> anyhow::Result<Vec<Migration>> {
        let mut all = tenancy::migrate::tenant_migrations();
        if let Some(dir) = &self.extra_migrations {
            let extra = refinery::load_sql_migrations(dir)
                .with_context(|| format!("loading migrations from {}", dir.display()))?;
            for m in extra {
                anyhow::ensure!(
                    !all.iter().any(|a| a.version() == m.version()),
                    "{} has the version of a built-in migration",
                    m
                );
                all.push(m);
            }
        }
        all.sort();
        Ok(all)
    }
}

pub async fn run(cmd: Migrate, out: &Output) -> anyhow::Result<ExitCode> {
    // Every command applies the control-plane migrations at start-up (the ledger lives there);
    // the shared tenant database is left to `migrate tenants`, which records what it does.
    let settings = Settings::from_env().context("configuration")?;
    let started: Started = tenancy::bootstrap::start_with(&settings, SharedSchema::Leave).await?;
    let code = match cmd {
        Migrate::ControlPlane => control_plane::run(&started, out).await,
        Migrate::Tenants(args) => tenants::run(&started, args, out).await,
        Migrate::Status(args) => status::run(&started, args, out).await,
    };
    super::finish(started)?;
    code
}
