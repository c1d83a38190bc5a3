//! Test harness: two throwaway PostgreSQL clusters per test process (started from the machine's
//! server binaries with the same code as the embedded default, without crash safety; the second
//! stands for a second database server), migrated template databases, a fresh control-plane and
//! shared database per test cloned from them, and typed clients of the tenant and operator APIs.
//! A watchdog stops the clusters and removes their directories when the test process exits,
//! however it exits.
//!
//! - [`clusters`]: the clusters and templates;
//! - [`app`]: a platform instance per test ([`TestApp`]) and further instances;
//! - [`requests`]: raw requests and responses;
//! - [`client`], [`operator`]: one method per endpoint;
//! - [`tenants`]: tenants, users and their mail; [`databases`]: direct database access;
//! - [`peers`]: the real identity providers; [`process`]: the real binary as a second process;
//!   [`migrations`]: test-only tenant migrations; [`prometheus`]: a real Prometheus scraping an
//!   instance's metrics; [`otlp`], [`sentry`]: receivers of exported traces and error events;
//! - [`dns`]: the TXT records the verified-domain check sees;
//! - [`smtp`]: the real SMTP sink (aiosmtpd) and DKIM verifier (dkimpy) of the email tests;
//!   [`postmark`]: the email provider's stand-in, in Postmark's documented shapes.

use std::time::{Duration, Instant};

pub mod app;
pub mod client;
pub mod clusters;
pub mod databases;
pub mod dns;
pub mod migrations;
pub mod operator;
pub mod otlp;
pub mod peers;
pub mod postmark;
pub mod process;
pub mod prometheus;
pub mod requests;
pub mod sentry;
pub mod smtp;
pub mod stripe;
pub mod tenants;

pub use app::{ADMIN_TOKEN, Provisioning, Spawn, TestApp};
pub use client::Client;
pub use clusters::{Clusters, clusters, connect};
pub use dns::TestDns;
pub use migrations::{ahead, failing, head, migrations_up_to, test_migrations_dir};
pub use operator::Operator;
pub use requests::{Req, TestResponse};
pub use tenants::{PASSWORD, TestTenant, TestUser, token_in};

/// Polls `check` until it returns true or `deadline` passes; returns how long it took.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
