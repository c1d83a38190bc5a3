//! `/api/v1/audit-events`: the tenant's audit log (permission `audit:read`), newest first with
//! filters, and a streaming export (JSON lines or CSV) that reads the log in chunks of
//! [`EXPORT_CHUNK`] events, each in its own short transaction, so neither the server's memory nor
//! a pooled connection is held by a large export.

use audit::events::{chunk, head, list};
use audit::{AuditEvent, AuditFilter};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use crate::audit_query::{AuditEventView, AuditPage, AuditQuery};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::extract::tenant::TenantDb;

/// Events per chunk of an export.
pub const EXPORT_CHUNK: i64 = 1000;

/// List audit events, newest first.
#[utoipa::path(get, path = "/api/v1/audit-events", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn list_events(
    db: TenantDb,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    if q.tenant.is_some() || q.format.is_some() {
        return Err(ApiError::bad_request(
            "`tenant` and `format` are not parameters of this listing",
        ));
    }
    let filter = q.filter()?;
    let (limit, before) = q.page()?;
    let mut tx = db.begin().await?;
    let events = list(&mut tx, &filter, before, limit + 1)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(Json(AuditPage::from_events(events, limit)))
}

#[derive(Clone, Copy)]
enum Format {
    Jsonl,
    Csv,
}

const CSV_HEADER: [&str; 17] = [
    "seq",
    "id",
    "occurred_at",
    "tenant_id",
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "route",
    "client_ip",
    "user_agent",
    "request_id",
    "summary",
    "prev_hash",
    "hash",
];

fn encode(events: Vec<AuditEvent>, format: Format, header: bool) -> Result<Bytes, std::io::Error> {
    match format {
        Format::Jsonl => {
            let mut out = Vec::with_capacity(events.len() * 512);
            for e in events {
                serde_json::to_writer(&mut out, &AuditEventView::from(e))?;
                out.push(b'\n');
            }
            Ok(Bytes::from(out))
        }
        Format::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::with_capacity(events.len() * 512));
            if header {
                w.write_record(CSV_HEADER)?;
            }
            for e in events {
                let opt = |v: &Option<String>| v.clone().unwrap_or_default();
                w.write_record([
                    e.seq.to_string(),
                    e.id.to_string(),
                    crate::routes::ts(e.occurred_at),
                    e.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
                    e.actor_type.clone(),
                    opt(&e.actor_id),
                    e.action.clone(),
                    opt(&e.target_type),
                    opt(&e.target_id),
                    e.outcome.clone(),
                    opt(&e.route),
                    opt(&e.client_ip),
                    opt(&e.user_agent),
                    opt(&e.request_id),
                    e.summary.clone(),
                    e.prev_hash.clone(),
                    e.hash.clone(),
                ])?;
            }
            w.into_inner().map(Bytes::from).map_err(|e| e.into_error())
        }
    }
}

struct Export {
    db: TenantDb,
    filter: AuditFilter,
    after: i64,
    upto: i64,
    format: Format,
    first: bool,
}

async fn next_chunk(mut st: Export) -> Option<(Result<Bytes, std::io::Error>, Export)> {
    let fetched = async {
        let mut tx = st.db.begin().await.map_err(|e| format!("{e:?}"))?;
        let events = chunk(&mut tx, &st.filter, st.after, st.upto, EXPORT_CHUNK)
            .await
            .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(events)
    }
    .await;
    let events = match fetched {
        Ok(e) => e,
        Err(e) => {
            // The status line is long gone: the client sees a truncated body (no final chunk).
            tracing::error!(tenant.id = %st.db.tenant_id(), error = %e, "audit export failed midway");
            st.upto = st.after;
            return Some((Err(std::io::Error::other("export failed")), st));
        }
    };
    let header = std::mem::take(&mut st.first);
    let Some(last) = events.last().map(|e| e.seq) else {
        // An empty CSV export still gets its header line.
        if header && matches!(st.format, Format::Csv) {
            st.upto = st.after;
            return Some((encode(Vec::new(), st.format, true), st));
        }
        return None;
    };
    st.after = last;
    Some((encode(events, st.format, header), st))
}

/// Export audit events, oldest first, as JSON lines or CSV, streamed in chunks. The export stops
/// at the newest event that existed when it started.
#[utoipa::path(get, path = "/api/v1/audit-events/export", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "`application/x-ndjson` or `text/csv`, streamed"),
              (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn export(db: TenantDb, ApiQuery(q): ApiQuery<AuditQuery>) -> ApiResult<Response> {
    if q.tenant.is_some() || q.limit.is_some() || q.cursor.is_some() {
        return Err(ApiError::bad_request(
            "`tenant`, `limit` and `cursor` are not parameters of an export",
        ));
    }
    let (format, content_type) = match q.format.as_deref() {
        None | Some("jsonl") => (Format::Jsonl, "application/x-ndjson"),
        Some("csv") => (Format::Csv, "text/csv; charset=utf-8"),
        Some(_) => return Err(ApiError::bad_request("`format` must be `jsonl` or `csv`")),
    };
    let filter = q.filter()?;
    let mut tx = db.begin().await?;
    let upto = head(&mut tx).await.map_err(ApiError::internal)?;
    tx.commit().await?;
    let state = Export {
        db,
        filter,
        after: 0,
        upto,
        format,
        first: true,
    };
    let body = Body::from_stream(stream::unfold(state, next_chunk));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}
