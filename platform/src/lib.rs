//! The platform server: an axum router over the tenancy core. `main.rs` wires it to the
//! environment; tests build the same router over their own databases.

pub mod audit;
pub mod audit_query;
pub mod authn;
pub mod authz;
pub mod billing_gate;
pub mod error;
pub mod errors;
pub mod extract;
pub mod logjson;
pub mod metrics;
pub mod observe;
pub mod pagination;
pub mod ratelimit;
pub mod router;
pub mod routes;
pub mod state;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tenancy::bootstrap::{Change, Tenancy};

use crate::state::AppState;

/// A running application instance: its router and its catalog listener (stopped on drop).
pub struct App {
    pub router: axum::Router,
    pub tenancy: Arc<Tenancy>,
    pub identity: identity::Identity,
    pub limits: limits::RateLimits,
    /// Transactional email (the `email.*` jobs send through it).
    pub mailer: email::Mailer,
    /// This instance's metrics (off unless `PLATFORM_METRICS_LISTEN` is set); serve them with
    /// [`metrics::serve`].
    pub metrics: metrics::Metrics,
    listener: tokio::task::JoinHandle<()>,
    flag_listener: tokio::task::JoinHandle<()>,
    resumer: tokio::task::JoinHandle<()>,
    purger: tokio::task::JoinHandle<()>,
    /// Links audit events into their chains after commit (stopped on drop).
    sealer: std::sync::Mutex<Option<::audit::sealer::Sealer>>,
    worker: tokio::task::JoinHandle<()>,
    schedules: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.listener.abort();
        self.flag_listener.abort();
        self.resumer.abort();
        self.purger.abort();
        self.worker.abort();
        self.schedules.abort();
    }
}

impl App {
    /// Stops resuming unfinished operations in the background (tests that step operations by
    /// hand, as a crashed runner would leave them).
    pub fn stop_resuming(&self) {
        self.resumer.abort();
    }

    /// Stops linking audit events (tests that seal by hand, as after a sealer crash).
    pub fn stop_sealing(&self) {
        if let Ok(mut s) = self.sealer.lock() {
            s.take();
        }
    }

    /// Stops this instance's job worker and schedules (tests that run workers by hand).
    pub fn stop_jobs(&self) {
        self.worker.abort();
        self.schedules.abort();
    }

    /// Builds the router and starts listening for catalog changes (returns once listening).
    pub async fn new(tenancy: Tenancy, admin_token: &str) -> anyhow::Result<Self> {
        Self::with_dns(
            tenancy,
            admin_token,
            Arc::new(sso::domains::dns::SystemResolver),
        )
        .await
    }

    /// [`Self::new`] with another TXT resolver for the verified-domain check (tests drive one).
    pub async fn with_dns(
        tenancy: Tenancy,
        admin_token: &str,
        dns: Arc<dyn sso::domains::dns::TxtResolver>,
    ) -> anyhow::Result<Self> {
        let tenancy = Arc::new(tenancy);
        let state = AppState::build_with_dns(Arc::clone(&tenancy), admin_token, dns).await?;
        let (identity, limits) = (state.identity.clone(), state.limits.clone());
        let metrics = state.metrics.clone();
        let mailer = state.mailer.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        // One listener for catalog changes and for auth changes (sessions, roles, MFA) that any
        // instance publishes through `Auth::changed`.
        let on_change = {
            let (identity, billing) = (identity.clone(), Arc::clone(&state.billing));
            move |change: Change<'_>| {
                identity.apply(change);
                if let Change::Catalog(tenant) = change {
                    billing.invalidate(tenant);
                }
            }
        };
        let listener = tokio::spawn(Arc::clone(&tenancy).listen_for_changes(
            ready_tx,
            &[identity::changes::CHANNEL],
            on_change,
        ));
        tokio::time::timeout(Duration::from_secs(15), ready_rx)
            .await
            .context("the catalog listener did not start within 15 s")?
            .context("the catalog listener stopped")?;
        // Feature flags: loaded before the first request, reloaded on every change.
        let (flags_tx, flags_rx) = tokio::sync::oneshot::channel();
        let flag_listener = tokio::spawn(flags::store::listen(
            Arc::clone(&state.flags),
            tenancy.catalog.pool().clone(),
            flags_tx,
        ));
        tokio::time::timeout(Duration::from_secs(15), flags_rx)
            .await
            .context("the flag listener did not start within 15 s")?
            .context("the flag listener stopped")?;
        // Rate-limit keys whose bucket is full again are dropped, so memory follows the number
        // of recently active keys, not of all keys ever seen.
        let purger = tokio::spawn({
            let limits = limits.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                loop {
                    tick.tick().await;
                    limits.purge();
                }
            }
        });
        // Operations left unfinished by a crashed runner (expired lease) are resumed here.
        let mover = tenancy.mover.clone();
        let resumer = tokio::spawn(async move {
            loop {
                if let Err(e) = mover.resume_all().await {
                    tracing::warn!(error = %e, "resuming operations failed");
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
        let sealer = ::audit::sealer::Sealer::spawn(
            tenancy.dataplane.clone(),
            tenancy.resolver.clone(),
            tenancy.catalog.clone(),
        );
        metrics.watch_sealer(sealer.lag());
        // Background jobs: this instance's worker (hinted by its own commits and, by NOTIFY, by
        // other instances' commits) and the platform schedules.
        let worker = jobs::Worker::new(
            Arc::clone(&tenancy),
            billing::jobs::register(
                email::register(jobs::builtin::registry(), &mailer),
                &state.billing,
            ),
            jobs::WorkerConfig {
                traces: crate::telemetry::traced(),
                ..jobs::WorkerConfig::default()
            },
        );
        metrics.watch_jobs(worker.stats());
        let worker = tokio::spawn(worker.run());
        let schedules = tokio::spawn(jobs::schedule::run(
            Arc::clone(&tenancy),
            Duration::from_secs(60),
        ));
        Ok(Self {
            sealer: std::sync::Mutex::new(Some(sealer)),
            router: router::router(state),
            tenancy,
            identity,
            limits,
            mailer,
            metrics,
            listener,
            flag_listener,
            resumer,
            purger,
            worker,
            schedules,
        })
    }
}
