//! The notification listener that keeps every instance's caches fresh: one connection that
//! LISTENs on the catalog channel and on the channels the layers above name (identity's auth
//! channel). A catalog change drops this crate's cached resolution and pools, then is handed to
//! the layers above; a notification on another channel is only handed on (an auth change is not a
//! catalog change: it keeps the resolver and the pools). Lives apart from start-up because it
//! runs for the process's lifetime.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;

use super::Tenancy;
use crate::catalog::CHANNEL;
use crate::ids::TenantId;

/// What the listener heard, handed to the `on_change` callback of
/// [`Tenancy::listen_for_changes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    /// A catalog change of one tenant, or (`None`) of anything: a `*` payload, or the listener
    /// (re)connected and may have missed notifications. Already applied to this crate's caches;
    /// `None` means every cache above must be dropped too.
    Catalog(Option<TenantId>),
    /// A notification on one of the extra channels the caller listens on, with its tenant
    /// (`None`: a payload that is not a tenant id, to be read as "anything").
    Published {
        channel: &'a str,
        tenant: Option<TenantId>,
    },
}

impl Tenancy {
    /// Applies a catalog change to this crate's caches (resolution, pools). Caches of the crates
    /// above (identity, limits) are dropped by the `on_change` callback of
    /// [`Tenancy::listen_for_changes`].
    pub async fn invalidate(&self, tenant: Option<TenantId>) {
        self.caches().invalidate(tenant).await;
    }

    /// Listens for catalog changes, and for notifications on the `also` channels, until the task
    /// is dropped. A catalog change is applied to this crate's caches and then handed to
    /// `on_change` ([`Change::Catalog`]); a notification on an `also` channel is handed on only
    /// ([`Change::Published`]). On every (re)connection `on_change` gets `Catalog(None)`: a
    /// notification missed while not listening cannot outlive the reconnection. `ready` fires
    /// once listening.
    pub async fn listen_for_changes<F>(
        self: Arc<Self>,
        ready: tokio::sync::oneshot::Sender<()>,
        also: &'static [&'static str],
        on_change: F,
    ) where
        F: Fn(Change<'_>) + Send + Sync,
    {
        let catalog_changed = |tenant: Option<TenantId>| {
            let this = Arc::clone(&self);
            let on_change = &on_change;
            async move {
                this.invalidate(tenant).await;
                on_change(Change::Catalog(tenant));
            }
        };
        let channels: Vec<&str> = std::iter::once(CHANNEL)
            .chain(also.iter().copied())
            .collect();
        let mut ready = Some(ready);
        loop {
            let mut listener = match PgListener::connect_with(self.catalog.pool()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "catalog listener cannot connect; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen_all(channels.iter().copied()).await {
                tracing::warn!(error = %e, "catalog listener cannot LISTEN; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Anything may have changed while we were not listening.
            catalog_changed(None).await;
            if let Some(r) = ready.take() {
                r.send(()).ok();
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) if n.channel() == CHANNEL => {
                        catalog_changed(TenantId::parse(n.payload())).await;
                    }
                    Ok(Some(n)) => on_change(Change::Published {
                        channel: n.channel(),
                        tenant: TenantId::parse(n.payload()),
                    }),
                    Ok(None) => {
                        // sqlx reconnects by itself; what was sent meanwhile is lost.
                        tracing::warn!("catalog listener lost its connection; caches dropped");
                        catalog_changed(None).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "catalog listener failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}
