//! Small tokio-postgres helpers shared by provisioning, migrations and the data plane.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

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
