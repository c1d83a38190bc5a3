//! Registered database servers that hold dedicated tenant databases. The admin URL is stored
//! sealed with the master key; only host and port are ever shown.

use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Catalog, CatalogError, violates};
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

#[derive(FromRow)]
struct SealedServerRow {
    admin_url_sealed: Vec<u8>,
    #[sqlx(flatten)]
    server: ServerRow,
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

impl Catalog {
    /// Inserts a server (`replace`: overwrite the URL of an existing one with the same name, as the
    /// embedded default does on every start since its port changes).
    pub async fn put_db_server(
        &self,
        name: &str,
        sealed_url: &[u8],
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
            .bind(sealed_url)
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
        // Every instance rebuilds its view of the servers (budget, address).
        super::publish(&self.pool, None).await?;
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

    /// A server with its sealed admin URL (open it with the keyring, scope platform, purpose
    /// [`server_url_purpose`]). The URL is a secret: never log or return it.
    pub async fn db_server_sealed(
        &self,
        id: DbServerId,
    ) -> Result<Option<(DbServer, Vec<u8>)>, CatalogError> {
        Ok(self.db_servers_sealed(Some(id)).await?.into_iter().next())
    }

    /// Servers with their sealed admin URLs (all, or one).
    pub async fn db_servers_sealed(
        &self,
        only: Option<DbServerId>,
    ) -> Result<Vec<(DbServer, Vec<u8>)>, CatalogError> {
        let rows: Vec<SealedServerRow> = sqlx::query_as(
            "SELECT admin_url_sealed, id, name, host, port, connection_budget, created_at FROM db_servers
             WHERE $1::uuid IS NULL OR id = $1 ORDER BY name",
        )
        .bind(only.map(|i| i.as_uuid()))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.server.into(), r.admin_url_sealed))
            .collect())
    }

    /// Replaces a server's sealed URL (re-sealing after a key change).
    pub async fn set_db_server_sealed(
        &self,
        id: DbServerId,
        sealed: &[u8],
    ) -> Result<(), CatalogError> {
        sqlx::query("UPDATE db_servers SET admin_url_sealed = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(sealed)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The sealing purpose of a server's admin URL.
#[must_use]
pub fn server_url_purpose(name: &str) -> String {
    crate::crypto::registry::purpose::server_admin_url(name)
}
