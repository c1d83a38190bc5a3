//! The catalog-notification listener that keeps every instance's caches fresh: each change
//! published on the catalog channel drops this crate's cached resolution and pools, then is handed
//! to the layers above. Lives apart from start-up because it runs for the process's lifetime.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;

use super::Tenancy;
use crate::catalog::CHANNEL;
use crate::ids::TenantId;

impl Tenancy {
    /// Applies a catalog change to this crate's caches (resolution, pools). Caches of the crates
    /// above (identity, limits) are dropped by the `on_change` callback of
    /// [`Tenancy::listen_for_changes`].
    pub async fn invalidate(&self, tenant: Option<TenantId>) {
        self.caches().invalidate(tenant).await;
    }

    /// Listens for catalog changes until the task is dropped, applying each to this crate's
    /// caches and then handing it to `on_change` (the layers above). `ready` fires once
    /// listening.
    pub async fn listen_for_changes<F>(
        self: Arc<Self>,
        ready: tokio::sync::oneshot::Sender<()>,
        on_change: F,
    ) where
        F: Fn(Option<TenantId>) + Send + Sync,
    {
        let changed = |tenant: Option<TenantId>| {
            let this = Arc::clone(&self);
            let on_change = &on_change;
            async move {
                this.invalidate(tenant).await;
                on_change(tenant);
            }
        };
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
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %e, "catalog listener cannot LISTEN; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Anything may have changed while we were not listening.
            changed(None).await;
            if let Some(r) = ready.take() {
                r.send(()).ok();
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => changed(TenantId::parse(n.payload())).await,
                    Ok(None) => {
                        tracing::warn!("catalog listener lost its connection; caches dropped");
                        changed(None).await;
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
