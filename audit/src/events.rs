//! Audit events: reading them (tenant API, admin API, export) and appending the explicit ones
//! (attempts that change nothing: a denied request, a failed login).

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::AuditError;
use tenancy::dataplane::TenantTx;

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failure => "failure",
        }
    }
}

/// One event as stored. `summary` is PostgreSQL's text of the `jsonb` value: the exact input of
/// the hash.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub tenant_id: Option<Uuid>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub route: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[serde(skip)]
    pub summary: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    /// The summary as JSON.
    #[must_use]
    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.summary).unwrap_or(serde_json::Value::Null)
    }

    pub(crate) fn from_row(r: &tokio_postgres::Row) -> Self {
        Self {
            seq: r.get(0),
            id: r.get(1),
            occurred_at: r.get(2),
            tenant_id: r.get(3),
            actor_type: r.get(4),
            actor_id: r.get(5),
            action: r.get(6),
            target_type: r.get(7),
            target_id: r.get(8),
            outcome: r.get(9),
            route: r.get(10),
            client_ip: r.get(11),
            user_agent: r.get(12),
            request_id: r.get(13),
            summary: r.get(14),
            prev_hash: r.get(15),
            hash: r.get(16),
        }
    }
}

impl sqlx::FromRow<'_, sqlx::postgres::PgRow> for AuditEvent {
    fn from_row(r: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Self {
            seq: r.try_get(0)?,
            id: r.try_get(1)?,
            occurred_at: r.try_get(2)?,
            tenant_id: r.try_get(3)?,
            actor_type: r.try_get(4)?,
            actor_id: r.try_get(5)?,
            action: r.try_get(6)?,
            target_type: r.try_get(7)?,
            target_id: r.try_get(8)?,
            outcome: r.try_get(9)?,
            route: r.try_get(10)?,
            client_ip: r.try_get(11)?,
            user_agent: r.try_get(12)?,
            request_id: r.try_get(13)?,
            summary: r.try_get(14)?,
            prev_hash: r.try_get(15)?,
            hash: r.try_get(16)?,
        })
    }
}

/// The columns of an unlinked event, in [`COLUMNS`]' order (seq and hashes to be filled in).
pub(crate) const UNLINKED_COLUMNS: &str = "0::bigint, id, occurred_at, tenant_id, actor_type, actor_id, action, target_type, target_id, outcome, route, client_ip, user_agent, request_id, summary::text, ''::text, ''::text";

pub(crate) const COLUMNS: &str = "seq, id, occurred_at, tenant_id, actor_type, actor_id, action, target_type, target_id, outcome, route, client_ip, user_agent, request_id, summary::text, prev_hash, hash";

/// Filters of a listing. `action` ending in `*` matches by prefix (`project.*`).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Admin trail only: events concerning this tenant.
    pub tenant: Option<Uuid>,
}

impl AuditFilter {
    fn action_parts(&self) -> (Option<&str>, Option<&str>) {
        match self.action.as_deref() {
            Some(a) => match a.strip_suffix('*') {
                Some(prefix) => (None, Some(prefix)),
                None => (Some(a), None),
            },
            None => (None, None),
        }
    }
}

const WHERE: &str = "($1::text IS NULL OR actor_id = $1)
    AND ($2::text IS NULL OR action = $2)
    AND ($3::text IS NULL OR starts_with(action, $3))
    AND ($4::text IS NULL OR target_id = $4)
    AND ($5::timestamptz IS NULL OR occurred_at >= $5)
    AND ($6::timestamptz IS NULL OR occurred_at < $6)";

/// A page of the tenant's events, newest first, before `before` (a seq). Only linked events
/// (the sealer links them within about a second of their commit).
pub async fn list(
    tx: &mut TenantTx,
    f: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEvent>, AuditError> {
    let (exact, prefix) = f.action_parts();
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM audit_events WHERE {WHERE}
                 AND seq IS NOT NULL AND ($7::bigint IS NULL OR seq < $7) ORDER BY seq DESC LIMIT $8"
            ),
            &[
                &f.actor, &exact, &prefix, &f.target, &f.since, &f.until, &before, &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(AuditEvent::from_row).collect())
}

/// The newest seq of the tenant (where an export stops, so it is a consistent prefix).
pub async fn head(tx: &mut TenantTx) -> Result<i64, AuditError> {
    Ok(tx
        .query_opt("SELECT seq FROM audit_chain", &[])
        .await?
        .map_or(0, |r| r.get(0)))
}

/// Up to `limit` of the tenant's events after `after` up to `upto` (seq), oldest first: one
/// chunk of an export or a verification.
pub async fn chunk(
    tx: &mut TenantTx,
    f: &AuditFilter,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<AuditEvent>, AuditError> {
    let (exact, prefix) = f.action_parts();
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM audit_events WHERE {WHERE}
                 AND seq > $7 AND seq <= $8 ORDER BY seq LIMIT $9"
            ),
            &[
                &f.actor, &exact, &prefix, &f.target, &f.since, &f.until, &after, &upto, &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(AuditEvent::from_row).collect())
}

/// Appends an explicit event to the transaction's tenant chain (actor and request from the
/// audit context). For attempts that change nothing, in their own transaction.
pub async fn record(
    tx: &mut TenantTx,
    action: &str,
    target: Option<(&str, &str)>,
    outcome: Outcome,
    summary: &serde_json::Value,
) -> Result<(), AuditError> {
    let tenant = tx.tenant().as_uuid();
    tx.execute(
        "SELECT platform_audit_append($1, $2, $3, $4, $5, $6)",
        &[
            &tenant,
            &action,
            &target.map(|t| t.0),
            &target.map(|t| t.1),
            &outcome.as_str(),
            summary,
        ],
    )
    .await?;
    Ok(())
}

/// A page of the operators' trail, newest first.
pub async fn list_admin(
    pool: &sqlx::PgPool,
    f: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEvent>, AuditError> {
    let (exact, prefix) = f.action_parts();
    Ok(sqlx::query_as::<_, AuditEvent>(&format!(
        "SELECT {COLUMNS} FROM admin_audit_events WHERE {WHERE}
         AND ($7::bigint IS NULL OR seq < $7) AND ($8::uuid IS NULL OR tenant_id = $8)
         ORDER BY seq DESC LIMIT $9"
    ))
    .bind(&f.actor)
    .bind(exact)
    .bind(prefix)
    .bind(&f.target)
    .bind(f.since)
    .bind(f.until)
    .bind(before)
    .bind(f.tenant)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
