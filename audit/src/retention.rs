//! Retention: expiry removes whole days of the oldest events (segments) and keeps, in the chain
//! head, the seq and hash of the last removed event (the checkpoint), so the remainder still
//! verifies from there. It runs as the database owner on the controlled path past the
//! immutability trigger (`platform.audit_erase`), which the application role cannot take.

use time::{OffsetDateTime, Time};
use tokio_postgres::Client;

use super::AuditError;
use tenancy::ids::TenantId;

/// The start of the UTC day `days` before `now`: events before it are expired.
#[must_use]
pub fn cutoff(now: OffsetDateTime, days: i32) -> OffsetDateTime {
    (now - time::Duration::days(i64::from(days)))
        .to_offset(time::UtcOffset::UTC)
        .replace_time(Time::MIDNIGHT)
}

/// Removes the tenant's events older than `cutoff` (a prefix of the chain) and records the
/// checkpoint. Returns how many were removed and the new checkpoint seq.
pub async fn expire(
    owner: &Client,
    tenant: TenantId,
    cutoff: OffsetDateTime,
) -> Result<(u64, i64), AuditError> {
    owner
        .batch_execute(&format!(
            "BEGIN; SET LOCAL app.tenant_id = '{tenant}'; SET LOCAL platform.audit_erase = 'on'"
        ))
        .await?;
    let result = async {
        // The chain head is locked: no append can interleave with the cut.
        let head = owner
            .query_opt(
                "SELECT checkpoint_seq FROM audit_chain WHERE tenant_id = $1 FOR UPDATE",
                &[&tenant.as_uuid()],
            )
            .await?;
        let Some(head) = head else {
            return Ok((0, 0));
        };
        let checkpoint: i64 = head.get(0);
        let last = owner
            .query_opt(
                "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 AND occurred_at < $2
                 AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
                &[&tenant.as_uuid(), &cutoff],
            )
            .await?;
        let Some(last) = last else {
            return Ok((0, checkpoint));
        };
        let (seq, hash): (i64, String) = (last.get(0), last.get(1));
        let removed = owner
            .execute(
                "DELETE FROM audit_events WHERE tenant_id = $1 AND seq <= $2",
                &[&tenant.as_uuid(), &seq],
            )
            .await?;
        owner
            .execute(
                "UPDATE audit_chain SET checkpoint_seq = $2, checkpoint_hash = $3 WHERE tenant_id = $1",
                &[&tenant.as_uuid(), &seq, &hash],
            )
            .await?;
        Ok::<_, AuditError>((removed, seq))
    }
    .await;
    match result {
        Ok(r) => {
            owner.batch_execute("COMMIT").await?;
            Ok(r)
        }
        Err(e) => {
            owner.batch_execute("ROLLBACK").await.ok();
            Err(e)
        }
    }
}
