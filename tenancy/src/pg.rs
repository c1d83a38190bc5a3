//! Small tokio-postgres helpers shared by provisioning, migrations and the data plane.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use crate::ids::TenantId;

/// The login role of the data plane: owns no table, has no `BYPASSRLS`.
pub const APP_ROLE: &str = "platform_app";

/// Opens one connection and drives it on the runtime.
pub async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection closed with an error");
        }
    });
    Ok(client)
}

/// Quotes an identifier for SQL.
#[must_use]
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Creates (or updates) the data-plane role on a server with the given password. Cluster-wide:
/// run once per server with an admin connection. The password is a derived secret of URL-safe
/// base64 characters only, so it can be inlined.
pub async fn ensure_app_role(admin: &Client, password: &str) -> Result<(), tokio_postgres::Error> {
    debug_assert!(
        password
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    // Two sessions updating the role at once make one fail with "tuple concurrently updated"
    // (internal_error): the statement is idempotent, so try again.
    let mut attempt = 0;
    loop {
        match ensure_app_role_once(admin, password).await {
            Err(e) if e.code() == Some(&SqlState::INTERNAL_ERROR) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

async fn ensure_app_role_once(admin: &Client, password: &str) -> Result<(), tokio_postgres::Error> {
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                    CREATE ROLE {APP_ROLE} LOGIN;
                END IF;
             END $$;
             ALTER ROLE {APP_ROLE} WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION
                 PASSWORD '{password}';"
        ))
        .await
}

/// Makes sure the data-plane role can log in on the server of `admin` with `password`, creating
/// or updating it only when it cannot (so concurrent callers do not race on `ALTER ROLE`).
pub async fn ensure_app_role_on(
    admin: &Config,
    password: &str,
) -> Result<(), tokio_postgres::Error> {
    let mut probe = admin.clone();
    probe.user(APP_ROLE).password(password);
    if connect(&probe).await.is_ok() {
        return Ok(());
    }
    let client = connect(admin).await?;
    ensure_app_role(&client, password).await
}

/// Runs a `CREATE DATABASE`, retrying while the template is briefly in use by a concurrent one.
pub async fn create_database(admin: &Client, name: &str) -> Result<(), tokio_postgres::Error> {
    let mut attempt = 0;
    loop {
        match admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
        {
            Err(e)
                if attempt < 10
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// The configuration of `admin_url` with the database replaced.
pub fn with_database(admin_url: &str, database: &str) -> Result<Config, tokio_postgres::Error> {
    let mut c: Config = admin_url.parse()?;
    c.dbname(database);
    Ok(c)
}

/// The data-plane configuration for `database` on the server of `admin_url`.
pub fn app_config(
    admin_url: &str,
    database: &str,
    password: &str,
) -> Result<Config, tokio_postgres::Error> {
    let mut c = with_database(admin_url, database)?;
    c.user(APP_ROLE)
        .password(password)
        .application_name("platform");
    Ok(c)
}

/// Host and port of a URL, for display.
#[must_use]
pub fn host_port(c: &Config) -> (String, u16) {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = c.get_ports().first().copied().unwrap_or(5432);
    (host, port)
}

/// Seeds `tenant`'s built-in roles in this database (as the owner): provisioning's half of
/// "seeded at provisioning and by migration"; the roles themselves are defined by the tenant
/// migrations (`platform_seed_builtin_roles`). Idempotent.
pub async fn seed_builtin_roles(
    client: &Client,
    tenant: TenantId,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "SELECT platform_seed_builtin_roles($1)",
            &[&tenant.as_uuid()],
        )
        .await?;
    Ok(())
}

/// The tenant tables of a database (every public table with a `tenant_id`), fences last.
pub async fn tenant_tables(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
             WHERE n.nspname = 'public' AND c.relkind = 'r'
             ORDER BY c.relname = 'tenant_fences', c.relname",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Deletes every row of the tenant in this database, its fence first (as the owner). Its audit
/// events too: `platform.audit_erase` is the owner's controlled path past the audit log's
/// immutability trigger (refused to `platform_app`), and it also keeps the deletions themselves
/// from being recorded as events of a chain that is being removed.
pub async fn delete_tenant_rows(
    client: &Client,
    tenant: TenantId,
) -> Result<(), tokio_postgres::Error> {
    let mut tables = tenant_tables(client).await?;
    tables.sort_by_key(|t| t != "tenant_fences");
    let mut sql = format!(
        "BEGIN; SET LOCAL app.tenant_id = '{tenant}'; SET LOCAL platform.audit_erase = 'on';"
    );
    for t in tables {
        // Tenant foreign keys cascade, so the order of the other tables does not matter.
        sql.push_str(&format!(
            " DELETE FROM {} WHERE tenant_id = '{tenant}';",
            quote_ident(&t)
        ));
    }
    sql.push_str(" COMMIT;");
    client.batch_execute(&sql).await
}
