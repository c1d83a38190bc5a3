//! What can go wrong when starting a move ([`StartMoveError`]) and while running one
//! ([`MoveError`]), in domain terms; the HTTP mapping lives in `platform`.

use crate::catalog::CatalogError;
use crate::crypto::KeyError;
use crate::ids::OperationId;
use crate::servers::ServerError;

/// Starting a move failed.
#[derive(Debug, thiserror::Error)]
pub enum StartMoveError {
    #[error("the tenant is already there")]
    AlreadyThere,
    #[error("the tenant is not active or suspended")]
    NotMovable,
    #[error("no database server named `{0}` is registered")]
    UnknownServer(String),
    #[error("the tenant already has an operation in progress")]
    Busy,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Running a move failed.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(
        "the source database has wal_level other than logical; logical replication is unavailable"
    )]
    NoLogicalReplication,
    #[error(
        "the source database is at schema version {found}, not {head}: migrate the fleet first"
    )]
    SourceVersion { found: i64, head: i64 },
    #[error("verification failed: {0}")]
    Verify(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("no such operation")]
    NotFound,
    /// An operation of the tenant has not ended (purging a source copy waits for it).
    #[error("operation {0} of the tenant has not ended; retry once it has")]
    Busy(OperationId),
    /// Another runner took the operation's lease: this runner stops without touching it.
    #[error("another runner holds the operation's lease")]
    LeaseLost,
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Server(#[from] ServerError),
}
