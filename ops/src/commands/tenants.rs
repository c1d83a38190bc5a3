//! `platformctl tenants ...`: tenant lifecycle (purge) and placement (promote, demote, move,
//! purge-source). One file per action under `tenants/`.

mod placement;
mod purge;

use std::process::ExitCode;

use clap::Subcommand;

use super::Output;

#[derive(Subcommand)]
pub enum Tenants {
    /// Purge every deleted tenant (or only the given slugs): data, data keys, catalog rows.
    Purge {
        /// Only these tenants (slugs); they must already be deleted.
        slugs: Vec<String>,
    },
    /// Move a shared tenant to its own database on a server.
    Promote {
        slug: String,
        #[arg(long)]
        server: String,
        /// Run the operation here and print its progress until it ends.
        #[arg(long)]
        follow: bool,
    },
    /// Move a dedicated tenant back to the shared database.
    Demote {
        slug: String,
        #[arg(long)]
        follow: bool,
    },
    /// Move a dedicated tenant to a new database on another server.
    Move {
        slug: String,
        #[arg(long)]
        server: String,
        #[arg(long)]
        follow: bool,
    },
    /// Delete the fenced source copy a finished move left behind (ends the rollback window).
    PurgeSource { slug: String },
}

pub async fn run(cmd: Tenants, out: &Output) -> anyhow::Result<ExitCode> {
    use tenancy::placement::MoveRequest;
    match cmd {
        Tenants::Purge { slugs } => purge::run(slugs, out).await,
        Tenants::Promote {
            slug,
            server,
            follow,
        }
        | Tenants::Move {
            slug,
            server,
            follow,
        } => placement::run(&slug, MoveRequest::Dedicated { server }, follow, out).await,
        Tenants::Demote { slug, follow } => {
            placement::run(&slug, MoveRequest::Shared, follow, out).await
        }
        Tenants::PurgeSource { slug } => placement::purge_source(&slug, out).await,
    }
}
