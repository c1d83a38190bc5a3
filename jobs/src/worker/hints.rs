//! Where the worker learns of work without polling: this process's post-commit hints (forwarded
//! to other instances by `NOTIFY`), and other instances' hints and operators' pauses by `LISTEN`
//! on the control plane.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tenancy::bootstrap::Tenancy;
use tenancy::ids::TenantId;
use tokio::sync::mpsc;

use super::{AbortOnDrop, Event};

/// Forwards this process's post-commit hints to the loop at once, and to other instances by
/// `NOTIFY` ([`notifier`]).
pub(super) async fn local_hints(
    tenancy: Arc<Tenancy>,
    events: mpsc::UnboundedSender<Event>,
    notify: bool,
) {
    let (to_notify, pending) = mpsc::unbounded_channel();
    let _notifier =
        notify.then(|| AbortOnDrop(tokio::spawn(notifier(Arc::clone(&tenancy), pending))));
    let mut rx = tenancy.dataplane.commit_hints();
    loop {
        let mut batch: Vec<TenantId> = Vec::new();
        let mut next = rx.recv().await;
        loop {
            match next {
                Ok(t) => {
                    if !batch.contains(&t) {
                        events.send(Event::Hint(t)).ok();
                        batch.push(t);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    events.send(Event::Sweep).ok();
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            if batch.len() >= HINTS_PER_NOTIFY {
                break;
            }
            next = match rx.try_recv() {
                Ok(t) => Ok(t),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n))
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Closed) => {
                    Err(tokio::sync::broadcast::error::RecvError::Closed)
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
            };
        }
        if notify {
            for t in batch {
                to_notify.send(t).ok();
            }
        }
    }
}

/// The least time between two hint `NOTIFY`s of this process: at most 100 a second, however
/// many commits (a hint is for other instances' free slots; this process's own worker has it
/// at once).
const NOTIFY_GAP: Duration = Duration::from_millis(10);

/// Sends hints to other instances: one `NOTIFY` with every tenant hinted since the last (each
/// once, up to [`HINTS_PER_NOTIFY`]), then waits [`NOTIFY_GAP`]. The first hint after a quiet
/// time goes at once. Best effort: the sweep covers a lost hint.
async fn notifier(tenancy: Arc<Tenancy>, mut pending: mpsc::UnboundedReceiver<TenantId>) {
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while batch.len() < HINTS_PER_NOTIFY {
            let Ok(t) = pending.try_recv() else { break };
            if !batch.contains(&t) {
                batch.push(t);
            }
        }
        let payload = batch
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let r = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(crate::CHANNEL)
            .bind(payload)
            .execute(tenancy.catalog.pool())
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "job hint NOTIFY failed");
        }
        tokio::time::sleep(NOTIFY_GAP).await;
    }
}

/// Tenants named in one hint `NOTIFY` (37 bytes each, under the 8,000-byte payload limit).
const HINTS_PER_NOTIFY: usize = 100;

/// The tenants of a hint `NOTIFY`'s payload; `None` for any other payload (a pause changed).
fn hinted_tenants(payload: &str) -> Option<Vec<TenantId>> {
    payload.split(',').map(TenantId::parse).collect()
}

/// Hints from other instances (and operators' pauses), by `LISTEN` on the control plane.
pub(super) async fn remote_hints(tenancy: Arc<Tenancy>, events: mpsc::UnboundedSender<Event>) {
    loop {
        let mut listener = match PgListener::connect_with(tenancy.catalog.pool()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "job hint listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(crate::CHANNEL).await {
            tracing::warn!(error = %e, "job hint listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Hints may have been missed while not listening.
        events.send(Event::Pauses).ok();
        events.send(Event::Sweep).ok();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match hinted_tenants(n.payload()) {
                    Some(ts) => {
                        for t in ts {
                            events.send(Event::Hint(t)).ok();
                        }
                    }
                    None => {
                        events.send(Event::Pauses).ok();
                    }
                },
                Ok(None) => {
                    events.send(Event::Sweep).ok();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "job hint listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_payload_names_tenants_and_anything_else_is_a_pause_change() {
        let (a, b) = (TenantId::new(), TenantId::new());
        assert_eq!(hinted_tenants(&a.to_string()), Some(vec![a]));
        assert_eq!(hinted_tenants(&format!("{a},{b}")), Some(vec![a, b]));
        assert_eq!(hinted_tenants("pause"), None);
        assert_eq!(hinted_tenants(&format!("{a},pause")), None);
    }
}
