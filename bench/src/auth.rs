//! `bench auth`: password logins (argon2id) and refresh-token rotations per second, in process
//! through the real router (no socket) against the test harness's throwaway PostgreSQL clusters
//! (`platform_tests`: the same set-up the integration tests use). It measures and prints; it
//! asserts nothing about speed. Results are recorded in `docs/benchmarks.md`.

use std::time::Instant;

use anyhow::Context as _;
use axum::http::Method;
use clap::Args;
use futures_util::StreamExt as _;
use platform_tests::{Req, TestApp, TestResponse, TestTenant};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
const EMAIL: &str = "bench@bench.test";

#[derive(Args, Debug)]
pub struct AuthArgs {
    /// Password logins per round.
    #[arg(long, default_value_t = 60)]
    logins: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Independent sessions whose refresh tokens are rotated in parallel (at most `--logins`).
    #[arg(long, default_value_t = 8)]
    chains: usize,
    /// Sequential rotations per session.
    #[arg(long, default_value_t = 100)]
    refreshes: usize,
    /// Rounds (each logs in afresh and rotates fresh sessions).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// A public (no credential) request on the tenant's host; the response if its status is `expect`.
async fn public(
    app: &TestApp,
    t: &TestTenant,
    path: &str,
    body: Value,
    expect: u16,
) -> anyhow::Result<TestResponse> {
    let r = app
        .send(Req::new(Method::POST, path).host(t.host()).json(&body))
        .await;
    anyhow::ensure!(
        r.status.as_u16() == expect,
        "POST {path}: expected {expect}, got {} {}",
        r.status,
        r.text
    );
    Ok(r)
}

/// The operator invites a member, who accepts with the benchmark's password.
async fn member(app: &TestApp, t: &TestTenant) -> anyhow::Result<()> {
    let inv = app
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{}/invitations", t.id),
            Some(json!({"email": EMAIL, "role": "member"})),
        )
        .await;
    anyhow::ensure!(inv.status.as_u16() == 201, "invitation: {}", inv.text);
    public(
        app,
        t,
        "/api/v1/auth/invitations/accept",
        json!({"token": inv.str("token"), "password": PASSWORD, "name": "Bench User"}),
        201,
    )
    .await?;
    Ok(())
}

/// Runs the benchmark and prints one line per round.
pub async fn run(args: AuthArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.chains <= args.logins,
        "--chains must not exceed --logins"
    );
    let app = TestApp::spawn().await;
    let t = app.tenant("bench", "shared", None).await;
    member(&app, &t).await?;
    for round in 1..=args.rounds {
        // Logins: every one verifies an argon2id hash (19 MiB, t=2, p=1) and opens a session.
        let start = Instant::now();
        let refresh_tokens: Vec<String> = futures_util::stream::iter(0..args.logins)
            .map(|_| {
                public(
                    &app,
                    &t,
                    "/api/v1/auth/login",
                    json!({"email": EMAIL, "password": PASSWORD}),
                    200,
                )
            })
            .buffer_unordered(args.concurrency.max(1))
            .map(|r| r.map(|r| r.str("refresh_token")))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()
            .context("login")?;
        let login_rate = args.logins as f64 / start.elapsed().as_secs_f64();
        // Refreshes: independent chains in parallel, each rotating its token sequentially.
        let start = Instant::now();
        let chains = refresh_tokens
            .into_iter()
            .take(args.chains)
            .map(|mut token| {
                let (app, t) = (&app, &t);
                async move {
                    for _ in 0..args.refreshes {
                        token = public(
                            app,
                            t,
                            "/api/v1/auth/token/refresh",
                            json!({"refresh_token": token}),
                            200,
                        )
                        .await?
                        .str("refresh_token");
                    }
                    anyhow::Ok(())
                }
            });
        futures_util::future::try_join_all(chains)
            .await
            .context("refresh")?;
        let refresh_rate = (args.chains * args.refreshes) as f64 / start.elapsed().as_secs_f64();
        println!(
            "auth-bench round {round}: logins {login_rate:.1}/s ({}, concurrency {}); \
             refreshes {refresh_rate:.1}/s ({} chains x {})",
            args.logins, args.concurrency, args.chains, args.refreshes
        );
    }
    app.finish().await;
    Ok(())
}
