//! What the request-path micro-benchmarks (`cargo bench -p bench`) share: their small world, the
//! application state over it, a metrics recorder as the binary builds it, and the request they
//! drive (GET one task of a shared tenant, authenticated by API key).

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use platform::state::AppState;

use crate::world::{ADMIN_TOKEN, BenchTenant, World, WorldConfig};

/// One shared and one dedicated tenant, small pools.
pub const WORLD: WorldConfig = WorldConfig {
    shared_tenants: 1,
    dedicated_tenants: 1,
    tasks_per_project: 51,
    shared_pool: 4,
    dedicated_pool: 2,
    budget: 40,
};

/// The platform's application state over `world`, as the binary starts it.
pub async fn state(world: &World) -> anyhow::Result<AppState> {
    let started = tenancy::bootstrap::start(&world.settings()?).await?;
    AppState::build(Arc::new(started.tenancy), ADMIN_TOKEN).await
}

/// A metrics recorder over `state`'s pools (top 20 tenants, idle series kept 600 s).
#[must_use]
pub fn metrics(state: &AppState) -> platform::metrics::Metrics {
    platform::metrics::Metrics::new(
        &tenancy::settings::MetricsSettings {
            listen: Some(([127, 0, 0, 1], 9).into()),
            top_tenants: 20,
            idle: std::time::Duration::from_secs(600),
        },
        state.tenancy.dataplane.clone(),
        state.tenancy.catalog.pool().clone(),
        Arc::clone(&state.flags),
    )
}

/// GET one task of `tenant` (a shared one), with its host and API key.
#[derive(Clone, Debug)]
pub struct GetTask {
    host: String,
    auth: String,
    uri: String,
}

impl GetTask {
    #[must_use]
    pub fn of(tenant: &BenchTenant) -> Self {
        Self {
            host: format!("{}.localhost", tenant.slug),
            auth: format!("Bearer {}", tenant.api_key),
            uri: format!(
                "/api/v1/projects/{}/tasks/{}",
                tenant.data.project, tenant.data.tasks[0]
            ),
        }
    }

    /// A fresh request.
    #[must_use]
    pub fn request(&self) -> Request<Body> {
        Request::get(&self.uri)
            .header("host", &self.host)
            .header("authorization", &self.auth)
            .body(Body::empty())
            .expect("a valid request")
    }
}
