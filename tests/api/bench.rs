//! The auth benchmark (ignored by default; see docs/benchmarks.md): password logins (argon2id)
//! and refresh-token rotations per second through the real router and PostgreSQL. It measures
//! and prints; it asserts nothing about speed.
//!
//! `cargo test -p platform-tests --test api bench -- --ignored --nocapture`

use std::time::Instant;

use axum::http::Method;
use futures_util::StreamExt as _;
use platform_tests::TestApp;
use serde_json::json;

use crate::auth::{PASSWORD, login, public, user_with_role};

const LOGINS: usize = 60;
const REFRESH_CHAINS: usize = 8;
const REFRESHES_PER_CHAIN: usize = 100;
const CONCURRENCY: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn bench_login_and_refresh_throughput() {
    let app = TestApp::spawn().await;
    let t = app.tenant("bench", "shared", None).await;
    let u = user_with_role(&app, &t, "bench@bench.test", "member").await;
    for round in 1..=3 {
        // Logins: every one verifies an argon2id hash (19 MiB, t=2, p=1) and opens a session.
        let start = Instant::now();
        let refresh_tokens: Vec<String> = futures_util::stream::iter(0..LOGINS)
            .map(|_| login(&app, &t, &u.email, PASSWORD))
            .buffer_unordered(CONCURRENCY)
            .map(|r| {
                r.assert_status(200);
                r.str("refresh_token")
            })
            .collect()
            .await;
        let login_rate = LOGINS as f64 / start.elapsed().as_secs_f64();
        // Refreshes: independent chains in parallel, each rotating its token sequentially.
        let start = Instant::now();
        let chains = refresh_tokens
            .into_iter()
            .take(REFRESH_CHAINS)
            .map(|mut token| {
                let (app, t) = (&app, &t);
                async move {
                    for _ in 0..REFRESHES_PER_CHAIN {
                        let r = public(
                            app,
                            t,
                            Method::POST,
                            "/api/v1/auth/token/refresh",
                            json!({"refresh_token": token}),
                        )
                        .await;
                        r.assert_status(200);
                        token = r.str("refresh_token");
                    }
                }
            });
        futures_util::future::join_all(chains).await;
        let refresh_rate =
            (REFRESH_CHAINS * REFRESHES_PER_CHAIN) as f64 / start.elapsed().as_secs_f64();
        println!(
            "auth-bench round {round}: logins {login_rate:.1}/s ({LOGINS}, concurrency {CONCURRENCY}); \
             refreshes {refresh_rate:.1}/s ({REFRESH_CHAINS} chains x {REFRESHES_PER_CHAIN})"
        );
    }
    app.finish().await;
}
