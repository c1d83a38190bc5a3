//! Recomputing a hash chain. The hash of an event is
//! `hex(sha256(prev_hash '|' f(tenant_id) '|' f(seq) '|' f(id) '|' f(time in µs) '|' f(actor_type)
//! '|' f(actor_id) '|' f(action) '|' f(target_type) '|' f(target_id) '|' f(outcome) '|' f(route)
//! '|' f(client_ip) '|' f(user_agent) '|' f(request_id) '|' f(summary)))` where `f(NULL) = "-"` and
//! `f(v) = "<bytes of v>:" v`: the same formula as the SQL function that appends (tenant V4,
//! control-plane V6), computed here independently of the database.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::AuditError;
use super::events::{AuditEvent, AuditFilter, chunk};
use tenancy::catalog::{Catalog, Tenant};
use tenancy::dataplane::{DataPlane, TenantTx};

const CHUNK: i64 = 1000;

/// The hash an event should have.
#[must_use]
pub fn event_hash(e: &AuditEvent) -> String {
    fn field(h: &mut Sha256, v: Option<&str>) {
        h.update(b"|");
        match v {
            None => h.update(b"-"),
            Some(s) => {
                h.update(s.len().to_string().as_bytes());
                h.update(b":");
                h.update(s.as_bytes());
            }
        }
    }
    let mut h = Sha256::new();
    h.update(e.prev_hash.as_bytes());
    field(&mut h, e.tenant_id.map(|t| t.to_string()).as_deref());
    field(&mut h, Some(&e.seq.to_string()));
    field(&mut h, Some(&e.id.to_string()));
    let micros = e.occurred_at.unix_timestamp_nanos() / 1000;
    field(&mut h, Some(&micros.to_string()));
    field(&mut h, Some(&e.actor_type));
    field(&mut h, e.actor_id.as_deref());
    field(&mut h, Some(&e.action));
    field(&mut h, e.target_type.as_deref());
    field(&mut h, e.target_id.as_deref());
    field(&mut h, Some(&e.outcome));
    field(&mut h, e.route.as_deref());
    field(&mut h, e.client_ip.as_deref());
    field(&mut h, e.user_agent.as_deref());
    field(&mut h, e.request_id.as_deref());
    field(&mut h, Some(&e.summary));
    hex::encode(h.finalize())
}

/// The first link that does not hold.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: i64,
    pub problem: String,
}

/// What a verification found.
#[derive(Clone, Debug, Serialize)]
pub struct ChainReport {
    /// Events removed by retention up to here; the chain starts from their checkpoint hash.
    pub checkpoint_seq: i64,
    pub events_checked: u64,
    pub head_seq: i64,
    pub broken: Option<BrokenLink>,
    /// Committed events not linked yet (the sealer links them after commit).
    pub unlinked: i64,
    /// Age of the oldest of them, seconds.
    pub oldest_unlinked_s: Option<f64>,
    /// An event has waited longer than [`UNLINKED_ALARM`]: no sealer is linking this chain.
    pub unlinked_alarm: bool,
}

/// How long an event may stay unlinked before verification raises the alarm: the sealer links
/// an event within about a second of its commit when its instance hints it, and within one
/// sweep ([`crate::sealer::SWEEP_EVERY`]) otherwise; twice the sweep means no sealer is working.
pub const UNLINKED_ALARM: std::time::Duration = std::time::Duration::from_secs(120);

impl ChainReport {
    /// The chain holds and no event waits for its link beyond [`UNLINKED_ALARM`].
    #[must_use]
    pub fn ok(&self) -> bool {
        self.broken.is_none() && !self.unlinked_alarm
    }
}

/// Walks events in order and checks each link; `next` yields chunks of events.
struct Walker {
    expected_seq: i64,
    expected_prev: String,
    checked: u64,
    broken: Option<BrokenLink>,
}

impl Walker {
    fn new(checkpoint_seq: i64, checkpoint_hash: String) -> Self {
        Self {
            expected_seq: checkpoint_seq + 1,
            expected_prev: checkpoint_hash,
            checked: 0,
            broken: None,
        }
    }

    /// Returns false once a link is broken.
    fn step(&mut self, e: &AuditEvent) -> bool {
        let problem = if e.seq != self.expected_seq {
            Some(format!(
                "expected event {} next, found {} (an event is missing)",
                self.expected_seq, e.seq
            ))
        } else if e.prev_hash != self.expected_prev {
            Some("its prev_hash is not the hash of the event before it".to_owned())
        } else if event_hash(e) != e.hash {
            Some("its content does not match its hash (the row was changed)".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            self.broken = Some(BrokenLink {
                seq: e.seq,
                problem,
            });
            return false;
        }
        self.checked += 1;
        self.expected_seq += 1;
        self.expected_prev.clone_from(&e.hash);
        true
    }

    fn finish(mut self, checkpoint_seq: i64, head_seq: i64, head_hash: &str) -> ChainReport {
        if self.broken.is_none()
            && (self.expected_seq - 1 != head_seq || self.expected_prev != head_hash)
        {
            self.broken = Some(BrokenLink {
                seq: self.expected_seq,
                problem: format!(
                    "the chain head says event {head_seq} is the last, but the events end at {}",
                    self.expected_seq - 1
                ),
            });
        }
        ChainReport {
            checkpoint_seq,
            events_checked: self.checked,
            head_seq,
            broken: self.broken,
            unlinked: 0,
            oldest_unlinked_s: None,
            unlinked_alarm: false,
        }
    }
}

/// Recomputes a tenant's chain from its checkpoint to its head, reading the events in chunks
/// through the data plane (as the application role, under row-level security). Everything is
/// read in one read-only REPEATABLE READ transaction, so the head and the events are one
/// snapshot: events that writers commit meanwhile are neither seen nor missed (reading the head
/// and the events in different snapshots reported tampering under normal write load). Events
/// past the head in the same snapshot are still reported (a head set back is a tamper).
pub async fn verify_tenant(dp: &DataPlane, tenant: &Tenant) -> Result<ChainReport, AuditError> {
    let mut tx = dp.connect(tenant).await?.begin();
    // A SET takes no snapshot, so this may follow the tenant setting the transaction opens with.
    tx.execute(SNAPSHOT, &[]).await?;
    let head = tx
        .query_opt(
            "SELECT seq, hash, checkpoint_seq, checkpoint_hash FROM audit_chain",
            &[],
        )
        .await?;
    let Some(head) = head else {
        let (unlinked, oldest_unlinked_s) = unlinked(&mut tx).await?;
        tx.commit().await?;
        return Ok(with_unlinked(
            ChainReport {
                checkpoint_seq: 0,
                events_checked: 0,
                head_seq: 0,
                broken: None,
                unlinked: 0,
                oldest_unlinked_s: None,
                unlinked_alarm: false,
            },
            unlinked,
            oldest_unlinked_s,
        ));
    };
    let (head_seq, head_hash, checkpoint_seq): (i64, String, i64) =
        (head.get(0), head.get(1), head.get(2));
    let mut walker = Walker::new(checkpoint_seq, head.get(3));
    let all = AuditFilter::default();
    let mut after = checkpoint_seq;
    loop {
        let events = chunk(&mut tx, &all, after, i64::MAX, CHUNK).await?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        if !events.iter().all(|e| walker.step(e)) {
            break;
        }
    }
    let (count, oldest) = unlinked(&mut tx).await?;
    tx.commit().await?;
    Ok(with_unlinked(
        walker.finish(checkpoint_seq, head_seq, &head_hash),
        count,
        oldest,
    ))
}

/// Events of the tenant not linked yet, and the oldest one's age (seconds), in the snapshot.
async fn unlinked(tx: &mut TenantTx) -> Result<(i64, Option<f64>), AuditError> {
    let r = tx
        .query_opt(
            "SELECT count(*), EXTRACT(epoch FROM now() - min(occurred_at))::float8
             FROM audit_events WHERE seq IS NULL",
            &[],
        )
        .await?;
    Ok(r.map_or((0, None), |r| (r.get(0), r.get(1))))
}

fn with_unlinked(mut r: ChainReport, count: i64, oldest: Option<f64>) -> ChainReport {
    r.unlinked = count;
    r.oldest_unlinked_s = oldest;
    r.unlinked_alarm = oldest.is_some_and(|s| s > UNLINKED_ALARM.as_secs_f64());
    r
}

/// Makes a transaction one snapshot (its first statement).
const SNAPSHOT: &str = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// Recomputes the operators' trail in the control plane, in one snapshot (see
/// [`verify_tenant`]).
pub async fn verify_admin(catalog: &Catalog) -> Result<ChainReport, AuditError> {
    let mut tx = catalog.pool().begin().await?;
    sqlx::query(SNAPSHOT).execute(&mut *tx).await?;
    let (head_seq, head_hash, checkpoint_seq, checkpoint_hash): (i64, String, i64, String) =
        sqlx::query_as("SELECT seq, hash, checkpoint_seq, checkpoint_hash FROM admin_audit_chain")
            .fetch_one(&mut *tx)
            .await?;
    let mut walker = Walker::new(checkpoint_seq, checkpoint_hash);
    let mut after = checkpoint_seq;
    loop {
        let events: Vec<AuditEvent> = sqlx::query_as(&format!(
            "SELECT {} FROM admin_audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            super::events::COLUMNS
        ))
        .bind(after)
        .bind(CHUNK)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        if !events.iter().all(|e| walker.step(e)) {
            break;
        }
    }
    tx.commit().await?;
    Ok(walker.finish(checkpoint_seq, head_seq, &head_hash))
}
