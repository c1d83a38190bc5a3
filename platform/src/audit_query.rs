//! Query parameters and the response shape shared by the tenant's and the operators' audit
//! listings: filters (`actor`, `action`, `target`, `since`, `until`), `limit` and an opaque
//! `cursor` (newest first).

use audit::{AuditEvent, AuditFilter};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::pagination::MAX_LIMIT;

/// Filters of an audit listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Actor id (a user, API key, `admin-token`).
    pub actor: Option<String>,
    /// Action, exact (`project.created`) or by prefix ending in `*` (`project.*`).
    pub action: Option<String>,
    /// Target id.
    pub target: Option<String>,
    /// RFC 3339 time, inclusive.
    pub since: Option<String>,
    /// RFC 3339 time, exclusive.
    pub until: Option<String>,
    /// Admin trail only: a tenant id.
    pub tenant: Option<String>,
    /// Page size, 1 to 100 (default 20). Not for exports.
    pub limit: Option<String>,
    /// `next_cursor` of the previous page. Not for exports.
    pub cursor: Option<String>,
    /// Exports only: `jsonl` (default) or `csv`.
    pub format: Option<String>,
}

fn time(name: &str, v: Option<&str>) -> ApiResult<Option<OffsetDateTime>> {
    v.map(|s| {
        OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            ApiError::bad_request(format!(
                "`{name}` must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z"
            ))
        })
    })
    .transpose()
}

fn short(name: &str, v: Option<&String>) -> ApiResult<Option<String>> {
    match v {
        Some(s) if s.is_empty() || s.len() > 200 => Err(ApiError::bad_request(format!(
            "`{name}` must be 1 to 200 characters"
        ))),
        other => Ok(other.cloned()),
    }
}

impl AuditQuery {
    /// The validated filter.
    pub fn filter(&self) -> ApiResult<AuditFilter> {
        Ok(AuditFilter {
            actor: short("actor", self.actor.as_ref())?,
            action: short("action", self.action.as_ref())?,
            target: short("target", self.target.as_ref())?,
            since: time("since", self.since.as_deref())?,
            until: time("until", self.until.as_deref())?,
            tenant: match &self.tenant {
                None => None,
                Some(t) => {
                    Some(Uuid::parse_str(t).map_err(|_| {
                        ApiError::bad_request("`tenant` must be a tenant id (a UUID)")
                    })?)
                }
            },
        })
    }

    /// Page size and the seq to continue before.
    pub fn page(&self) -> ApiResult<(i64, Option<i64>)> {
        let limit = match &self.limit {
            None => 20,
            Some(l) => l
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "`limit` must be a whole number from 1 to {MAX_LIMIT}"
                    ))
                })?,
        };
        let before = match &self.cursor {
            None => None,
            Some(c) => Some(
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.strip_prefix("seq:").and_then(|n| n.parse::<i64>().ok()))
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        ApiError::bad_request("`cursor` is not a cursor this API issued")
                    })?,
            ),
        };
        Ok((limit, before))
    }
}

/// One audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: String,
    pub tenant_id: Option<Uuid>,
    /// `user`, `api_key`, `operator`, `anonymous`, `system`.
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// `success`, `denied`, `failure`.
    pub outcome: String,
    pub route: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// What changed (column names; values only of non-secret columns).
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        let summary = e.summary_json();
        Self {
            seq: e.seq,
            id: e.id,
            occurred_at: crate::routes::ts(e.occurred_at),
            tenant_id: e.tenant_id,
            actor_type: e.actor_type,
            actor_id: e.actor_id,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            outcome: e.outcome,
            route: e.route,
            client_ip: e.client_ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            summary,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEventView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl AuditPage {
    /// From `limit + 1` fetched events.
    #[must_use]
    pub fn from_events(mut events: Vec<AuditEvent>, limit: i64) -> Self {
        let more = events.len() as i64 > limit;
        events.truncate(usize::try_from(limit).unwrap_or(0));
        let next_cursor = if more {
            events
                .last()
                .map(|e| URL_SAFE_NO_PAD.encode(format!("seq:{}", e.seq)))
        } else {
            None
        };
        Self {
            items: events.into_iter().map(AuditEventView::from).collect(),
            next_cursor,
        }
    }
}
