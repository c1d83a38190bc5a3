//! `platformctl`: operator tooling over the tenancy library, configured by the same `PLATFORM_*`
//! variables as the server. One file per subcommand under `commands/`.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "platformctl",
    about = "Operate the platform: tenants, migrations, audit, keys, operations, flags, jobs."
)]
struct Cli {
    /// Machine-readable output (one JSON object per line).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tenant lifecycle.
    #[command(subcommand)]
    Tenants(commands::tenants::Tenants),
    /// Schema migrations.
    #[command(subcommand)]
    Migrate(commands::migrate::Migrate),
    /// The audit log: verify a hash chain, expire old events.
    #[command(subcommand)]
    Audit(commands::audit::Audit),
    /// Envelope-encryption keys.
    #[command(subcommand)]
    Keys(commands::keys::Keys),
    /// Long-running operations.
    #[command(subcommand)]
    Operations(OperationsCmd),
    /// Feature flags.
    #[command(subcommand)]
    Flags(commands::flags::Flags),
    /// Background jobs: list, retry, discard; pause and resume a kind.
    #[command(subcommand)]
    Jobs(commands::jobs::Jobs),
}

#[derive(Subcommand)]
enum OperationsCmd {
    /// An operation's state, step and progress.
    Show { id: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("warn")
        .init();
    let out = commands::Output { json: cli.json };
    let result = match cli.command {
        Command::Tenants(t) => commands::tenants::run(t, &out).await,
        Command::Migrate(m) => commands::migrate::run(m, &out).await,
        Command::Keys(k) => commands::keys::run(k, &out).await,
        Command::Audit(a) => commands::audit::run(a, &out).await,
        Command::Flags(f) => commands::flags::run(f, &out).await,
        Command::Jobs(j) => commands::jobs::run(j, &out).await,
        Command::Operations(OperationsCmd::Show { id }) => {
            commands::operations::show(&id, &out).await
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
