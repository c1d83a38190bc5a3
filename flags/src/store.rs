//! Flags in the control plane (`migrations/V10__flags.sql`): reads into a [`Snapshot`], the
//! changes the admin API makes (each announced on [`CHANNEL`] in its own transaction, and audited
//! by the tables' triggers with before and after), and the listener that keeps an instance's
//! snapshot current.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres, Transaction};
use tenancy::ids::TenantId;

use crate::document::{
    DocumentError, FlagDefinition, Imported, SegmentDefinition, parse_date, validate_authored,
};
use crate::eval::{Environment, Flags, Overrides, Snapshot};

/// The LISTEN/NOTIFY channel every instance reloads its flags on.
pub const CHANNEL: &str = "platform_flags";

/// Environments are short lowercase names.
#[must_use]
pub fn valid_environment(env: &str) -> bool {
    (1..=32).contains(&env.len())
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && env.as_bytes()[0].is_ascii_alphanumeric()
}

#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("no flag `{0}` in environment `{1}`")]
    NotFound(String, String),
    #[error(transparent)]
    Invalid(#[from] DocumentError),
    #[error("{0}")]
    NotAllowed(String),
    #[error("flag storage failed")]
    Database(#[from] sqlx::Error),
}

/// One stored flag, as the admin API shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StoredFlag {
    pub environment: String,
    pub kind: String,
    pub enabled: bool,
    pub definition: Value,
}

/// How an import treats flags the document does not name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// Flags and segments not in the document stay.
    Merge,
    /// The environment holds exactly the document's flags and segments afterwards.
    Replace,
}

/// Reads everything evaluation needs, in one snapshot of the control plane.
pub async fn load(pool: &PgPool) -> Result<Snapshot, FlagError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(String, Value)> =
        sqlx::query_as("SELECT environment, definition FROM flags ORDER BY environment, name")
            .fetch_all(&mut *tx)
            .await?;
    let segs: Vec<(String, Value)> = sqlx::query_as(
        "SELECT environment, definition FROM flag_segments ORDER BY environment, id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let overrides: Vec<(String, uuid::Uuid, bool, Option<bool>)> =
        sqlx::query_as("SELECT flag, tenant_id, disabled, choice FROM flag_tenant_overrides")
            .fetch_all(&mut *tx)
            .await?;
    let kill_switch: bool = sqlx::query_scalar("SELECT engaged FROM flag_kill_switch")
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(false);
    tx.commit().await?;

    let mut by_env: HashMap<String, (Vec<FlagDefinition>, Vec<SegmentDefinition>)> = HashMap::new();
    for (env, def) in rows {
        match FlagDefinition::from_json(&def) {
            Ok(f) => by_env.entry(env).or_default().0.push(f),
            Err(e) => tracing::warn!(environment = %env, error = %e, "a stored flag does not load"),
        }
    }
    for (env, def) in segs {
        match SegmentDefinition::from_json(&def) {
            Ok(s) => by_env.entry(env).or_default().1.push(s),
            Err(e) => {
                tracing::warn!(environment = %env, error = %e, "a stored segment does not load");
            }
        }
    }
    let mut snapshot = Snapshot {
        environments: by_env
            .into_iter()
            .map(|(env, (flags, segs))| (env, Environment::compile(&flags, &segs)))
            .collect(),
        overrides: Overrides {
            kill_switch,
            ..Overrides::default()
        },
    };
    for (flag, tenant, disabled, choice) in overrides {
        let t = TenantId::from_uuid(tenant);
        if disabled {
            snapshot
                .overrides
                .disabled
                .entry(t)
                .or_default()
                .insert(flag.clone());
        }
        if let Some(c) = choice {
            snapshot
                .overrides
                .tenant_choice
                .entry(t)
                .or_default()
                .insert(flag, c);
        }
    }
    Ok(snapshot)
}

async fn announce(tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Serialises the changes to one environment (validation reads the others).
async fn lock(tx: &mut Transaction<'_, Postgres>, env: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('platform_flags:' || $1))")
        .bind(env)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn definitions(
    tx: &mut Transaction<'_, Postgres>,
    env: &str,
) -> Result<HashMap<String, FlagDefinition>, sqlx::Error> {
    let rows: Vec<(Value,)> = sqlx::query_as("SELECT definition FROM flags WHERE environment = $1")
        .bind(env)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(v,)| FlagDefinition::from_json(&v).ok())
        .map(|f| (f.feature.name.clone(), f))
        .collect())
}

async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    env: &str,
    f: &FlagDefinition,
) -> Result<bool, sqlx::Error> {
    let stale = f.meta.stale_after.as_deref().and_then(parse_date);
    let inserted: bool = sqlx::query_scalar(
        "INSERT INTO flags (environment, name, kind, enabled, stale_after, definition)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (environment, name) DO UPDATE SET kind = EXCLUDED.kind,
             enabled = EXCLUDED.enabled, stale_after = EXCLUDED.stale_after,
             definition = EXCLUDED.definition, updated_at = now()
         RETURNING xmax = 0",
    )
    .bind(env)
    .bind(&f.feature.name)
    .bind(f.kind().as_str())
    .bind(f.feature.enabled)
    .bind(stale)
    .bind(f.to_json())
    .fetch_one(&mut **tx)
    .await?;
    Ok(inserted)
}

fn stored(rows: Vec<(String, String, bool, Value)>) -> Vec<StoredFlag> {
    rows.into_iter()
        .map(|(environment, kind, enabled, definition)| StoredFlag {
            environment,
            kind,
            enabled,
            definition,
        })
        .collect()
}

/// Every flag of `env` (all environments if `None`).
pub async fn list(pool: &PgPool, env: Option<&str>) -> Result<Vec<StoredFlag>, FlagError> {
    Ok(stored(
        sqlx::query_as(
            "SELECT environment, kind, enabled, definition FROM flags
             WHERE $1::text IS NULL OR environment = $1 ORDER BY environment, name",
        )
        .bind(env)
        .fetch_all(pool)
        .await?,
    ))
}

/// One flag.
pub async fn get(pool: &PgPool, env: &str, name: &str) -> Result<StoredFlag, FlagError> {
    stored(
        sqlx::query_as(
            "SELECT environment, kind, enabled, definition FROM flags
             WHERE environment = $1 AND name = $2",
        )
        .bind(env)
        .bind(name)
        .fetch_all(pool)
        .await?,
    )
    .pop()
    .ok_or_else(|| FlagError::NotFound(name.to_owned(), env.to_owned()))
}

/// Creates or replaces one flag, checked strictly. Returns whether it was created.
pub async fn put(pool: &PgPool, env: &str, flag: &FlagDefinition) -> Result<bool, FlagError> {
    let mut tx = pool.begin().await?;
    lock(&mut tx, env).await?;
    let mut others = definitions(&mut tx, env).await?;
    others.remove(&flag.feature.name);
    validate_authored(flag, &others)?;
    let created = upsert(&mut tx, env, flag).await?;
    announce(&mut tx).await?;
    tx.commit().await?;
    Ok(created)
}

/// Removes one flag.
pub async fn delete(pool: &PgPool, env: &str, name: &str) -> Result<(), FlagError> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query("DELETE FROM flags WHERE environment = $1 AND name = $2")
        .bind(env)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(FlagError::NotFound(name.to_owned(), env.to_owned()));
    }
    announce(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Imports a document leniently: merge (the default) or replace. Returns the number of flags
/// written.
pub async fn import(
    pool: &PgPool,
    env: &str,
    doc: &Imported,
    mode: ImportMode,
) -> Result<usize, FlagError> {
    let mut tx = pool.begin().await?;
    lock(&mut tx, env).await?;
    if mode == ImportMode::Replace {
        let names: Vec<&str> = doc.flags.iter().map(|f| f.feature.name.as_str()).collect();
        let ids: Vec<i32> = doc.segments.iter().map(|s| s.segment.id).collect();
        sqlx::query("DELETE FROM flags WHERE environment = $1 AND NOT (name = ANY ($2))")
            .bind(env)
            .bind(&names)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM flag_segments WHERE environment = $1 AND NOT (id = ANY ($2))")
            .bind(env)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM flags WHERE environment = $1 AND name = ANY ($2)")
        .bind(env)
        .bind(&doc.removed_flags)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM flag_segments WHERE environment = $1 AND id = ANY ($2)")
        .bind(env)
        .bind(&doc.removed_segments)
        .execute(&mut *tx)
        .await?;
    for s in &doc.segments {
        sqlx::query(
            "INSERT INTO flag_segments (environment, id, definition) VALUES ($1, $2, $3)
             ON CONFLICT (environment, id) DO UPDATE SET definition = EXCLUDED.definition",
        )
        .bind(env)
        .bind(s.segment.id)
        .bind(&s.raw)
        .execute(&mut *tx)
        .await?;
    }
    for f in &doc.flags {
        upsert(&mut tx, env, f).await?;
    }
    announce(&mut tx).await?;
    tx.commit().await?;
    Ok(doc.flags.len())
}

/// Turns a flag off (or on again) everywhere in `env`, or for one tenant (every environment).
pub async fn set_disabled(
    pool: &PgPool,
    env: &str,
    name: &str,
    tenant: Option<TenantId>,
    disabled: bool,
) -> Result<(), FlagError> {
    let mut tx = pool.begin().await?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM flags WHERE environment = $1 AND name = $2)",
    )
    .bind(env)
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    if !exists {
        return Err(FlagError::NotFound(name.to_owned(), env.to_owned()));
    }
    match tenant {
        None => {
            sqlx::query(
                "UPDATE flags SET enabled = $3,
                     definition = jsonb_set(definition, '{enabled}', to_jsonb($3)),
                     updated_at = now()
                 WHERE environment = $1 AND name = $2",
            )
            .bind(env)
            .bind(name)
            .bind(!disabled)
            .execute(&mut *tx)
            .await?;
        }
        Some(t) => {
            let known: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)")
                    .bind(t.as_uuid())
                    .fetch_one(&mut *tx)
                    .await?;
            if !known {
                return Err(FlagError::NotAllowed(format!("no tenant {t}")));
            }
            sqlx::query(
                "INSERT INTO flag_tenant_overrides (flag, tenant_id, disabled) VALUES ($1, $2, $3)
                 ON CONFLICT (flag, tenant_id) DO UPDATE SET disabled = EXCLUDED.disabled,
                     updated_at = now()",
            )
            .bind(name)
            .bind(t.as_uuid())
            .bind(disabled)
            .execute(&mut *tx)
            .await?;
        }
    }
    announce(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Engages or lifts the global kill switch (every `experiment` and `release` flag off).
pub async fn set_kill_switch(pool: &PgPool, engaged: bool) -> Result<(), FlagError> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE flag_kill_switch SET engaged = $1, updated_at = now()")
        .bind(engaged)
        .execute(&mut *tx)
        .await?;
    announce(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A tenant admin opts the tenant in (`Some(true)`), out (`Some(false)`), or back to the flag's
/// rules (`None`), where the flag allows it (`tenantOptIn` in `env`).
pub async fn set_tenant_choice(
    pool: &PgPool,
    env: &str,
    name: &str,
    tenant: TenantId,
    choice: Option<bool>,
) -> Result<(), FlagError> {
    let mut tx = pool.begin().await?;
    let allows: Option<bool> = sqlx::query_scalar(
        "SELECT COALESCE((definition->>'tenantOptIn')::boolean, false) FROM flags
         WHERE environment = $1 AND name = $2",
    )
    .bind(env)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    match allows {
        None => return Err(FlagError::NotFound(name.to_owned(), env.to_owned())),
        Some(false) => {
            return Err(FlagError::NotAllowed(format!(
                "flag `{name}` does not let tenants opt in or out"
            )));
        }
        Some(true) => {}
    }
    sqlx::query(
        "INSERT INTO flag_tenant_overrides (flag, tenant_id, choice) VALUES ($1, $2, $3)
         ON CONFLICT (flag, tenant_id) DO UPDATE SET choice = EXCLUDED.choice, updated_at = now()",
    )
    .bind(name)
    .bind(tenant.as_uuid())
    .bind(choice)
    .execute(&mut *tx)
    .await?;
    announce(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Flags whose `staleAfter` date has passed (for `platformctl flags stale`).
pub async fn stale(pool: &PgPool) -> Result<Vec<StoredFlag>, FlagError> {
    Ok(stored(
        sqlx::query_as(
            "SELECT environment, kind, enabled, definition FROM flags
             WHERE stale_after IS NOT NULL AND stale_after < current_date
             ORDER BY stale_after, environment, name",
        )
        .fetch_all(pool)
        .await?,
    ))
}

/// Keeps `flags` current for the life of the task: loads on (re)connect and on every
/// notification. `ready` fires after the first load.
pub async fn listen(flags: Arc<Flags>, pool: PgPool, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "flag listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "flag listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let reload = || async {
            match load(&pool).await {
                Ok(s) => flags.replace(s),
                Err(e) => tracing::warn!(error = %e, "flags could not be reloaded"),
            }
        };
        // Anything may have changed while we were not listening.
        reload().await;
        if let Some(r) = ready.take() {
            r.send(()).ok();
        }
        loop {
            match listener.try_recv().await {
                // A notification, or the connection was lost and re-established (anything may
                // have changed meanwhile).
                Ok(_) => reload().await,
                Err(e) => {
                    tracing::warn!(error = %e, "flag listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}
