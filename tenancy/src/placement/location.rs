//! Where a move starts and ends: a [`Location`] (the shared database or a named database on a
//! registered server) as stored in an operation row, and the [`MoveRequest`] an operator asks for.
//! Kept apart from the runner because both the steps and the teardown read locations back from
//! operation rows.

use serde_json::{Value, json};

use crate::catalog::Placement;
use crate::ids::DbServerId;

/// One end of a move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Shared,
    Dedicated {
        server: DbServerId,
        server_name: String,
        database: String,
    },
}

impl Location {
    pub(super) fn to_json(&self) -> Value {
        match self {
            Self::Shared => json!({"placement": "shared"}),
            Self::Dedicated {
                server,
                server_name,
                database,
            } => {
                json!({"placement": "dedicated", "server_id": server.as_uuid(), "server": server_name, "database": database})
            }
        }
    }

    pub(super) fn from_json(v: &Value) -> Self {
        match (
            v["server_id"].as_str().and_then(DbServerId::parse),
            v["database"].as_str(),
        ) {
            (Some(server), Some(database)) => Self::Dedicated {
                server,
                server_name: v["server"].as_str().unwrap_or_default().to_owned(),
                database: database.to_owned(),
            },
            _ => Self::Shared,
        }
    }

    pub(super) fn is(&self, p: &Placement) -> bool {
        match (self, p) {
            (Self::Shared, Placement::Shared) => true,
            (
                Self::Dedicated {
                    server, database, ..
                },
                Placement::Dedicated {
                    server: s,
                    database: d,
                },
            ) => server == s && database == d,
            _ => false,
        }
    }
}

/// Where to move a tenant.
#[derive(Clone, Debug)]
pub enum MoveRequest {
    /// To the shared database.
    Shared,
    /// To a new database on this server.
    Dedicated { server: String },
}
