//! Registered database servers that hold dedicated tenant databases. The admin URL is stored
//! sealed with the master key; only host and port are ever shown.

use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Catalog, CatalogError, violates};
use crate::crypto::CryptoError;
use crate::ids::DbServerId;

/// A database server, as shown to operators (no credentials).
#[derive(Clone, Debug)]
pub struct DbServer {
    pub id: DbServerId,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub connection_budget: u32,
    pub created_at: OffsetDateTime,
}

#[derive(FromRow)]
struct ServerRow {
    id: Uuid,
    name: String,
    host: String,
    port: i32,
    connection_budget: i32,
    created_at: OffsetDateTime,
}

impl From<ServerRow> for DbServer {
    fn from(r: ServerRow) -> Self {
        Self {
            id: DbServerId::from_uuid(r.id),
            name: r.name,
            host: r.host,
            port: u16::try_from(r.port).unwrap_or_default(),
            connection_budget: u32::try_from(r.connection_budget).unwrap_or(1),
            created_at: r.created_at,
        }
    }
}

/// Registering a server failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterServerError {
    #[error("a server with this name is already registered")]
    NameTaken,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

fn purpose(id: DbServerId) -> String {
    format!("db_server.admin_url:{id}")
}

impl Catalog {
    /// Inserts a server (`replace`: overwrite the URL of an existing one with the same name, as the
    /// embedded default does on every start since its port changes).
    pub async fn put_db_server(
        &self,
        name: &str,
        admin_url: &str,
        host: &str,
        port: u16,
        budget: u32,
        replace: bool,
    ) -> Result<DbServer, RegisterServerError> {
        let existing: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM db_servers WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(CatalogError)?;
        let id = existing.map_or_else(DbServerId::new, DbServerId::from_uuid);
        let sealed = self.key.seal(&purpose(id), admin_url.as_bytes());
        let budget = i32::try_from(budget).unwrap_or(i32::MAX);
        let sql = if replace {
            "INSERT INTO db_servers (id, name, admin_url_sealed, host, port, connection_budget)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET admin_url_sealed = EXCLUDED.admin_url_sealed,
                 host = EXCLUDED.host, port = EXCLUDED.port, connection_budget = EXCLUDED.connection_budget
             RETURNING id, name, host, port, connection_budget, created_at"
        } else {
            "INSERT INTO db_servers (id, name, admin_url_sealed, host, port, connection_budget)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id, name, host, port, connection_budget, created_at"
        };
        let row: ServerRow = sqlx::query_as(sql)
            .bind(id.as_uuid())
            .bind(name)
            .bind(sealed)
            .bind(host)
            .bind(i32::from(port))
            .bind(budget)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                if violates(&e, "db_servers_name_key") || violates(&e, "db_servers_pkey") {
                    RegisterServerError::NameTaken
                } else {
                    CatalogError(e).into()
                }
            })?;
        Ok(row.into())
    }

    /// All servers, by name.
    pub async fn db_servers(&self) -> Result<Vec<DbServer>, CatalogError> {
        let rows: Vec<ServerRow> = sqlx::query_as(
            "SELECT id, name, host, port, connection_budget, created_at FROM db_servers ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// A server by name.
    pub async fn db_server_by_name(&self, name: &str) -> Result<Option<DbServer>, CatalogError> {
        let row: Option<ServerRow> = sqlx::query_as(
            "SELECT id, name, host, port, connection_budget, created_at FROM db_servers WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// A server with its admin URL opened. The URL is a secret: never log or return it.
    pub async fn db_server_with_url(
        &self,
        id: DbServerId,
    ) -> Result<Option<(DbServer, String)>, ServerUrlError> {
        let row: Option<(Vec<u8>, String, String, i32, i32, OffsetDateTime)> = sqlx::query_as(
            "SELECT admin_url_sealed, name, host, port, connection_budget, created_at FROM db_servers WHERE id = $1",
        )
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(CatalogError)?;
        let Some((sealed, name, host, port, connection_budget, created_at)) = row else {
            return Ok(None);
        };
        let url = self.key.open(&purpose(id), &sealed)?;
        let url = String::from_utf8(url).map_err(|_| CryptoError::Malformed {
            purpose: purpose(id),
        })?;
        let server = ServerRow {
            id: id.as_uuid(),
            name,
            host,
            port,
            connection_budget,
            created_at,
        }
        .into();
        Ok(Some((server, url)))
    }
}

/// Reading a server's URL failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerUrlError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}
