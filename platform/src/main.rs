//! `platform`: the server. With no configuration it starts (or reuses) a local PostgreSQL under
//! `PLATFORM_DATA_DIR` and listens on `PLATFORM_LISTEN`.

use std::process::ExitCode;

use anyhow::Context as _;
use tenancy::crypto::random_token;
use tenancy::embedded::write_private;
use tenancy::settings::{Secret, Settings};

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Traces and error tracking start before the runtime (their exporters run on threads of
    // their own) and stop after it, so everything the server did is flushed.
    let env = |k: &str| std::env::var(k).ok();
    let telemetry = platform::telemetry::TraceSettings::from_lookup(env)
        .and_then(|traces| Ok((traces, platform::errors::init(env)?)))
        .and_then(|(traces, sentry)| {
            platform::telemetry::init(settings.log_json, traces.as_ref(), sentry)
        });
    let telemetry = match telemetry {
        Ok(t) => t,
        Err(e) => {
            eprintln!("configuration error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "platform failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    drop(runtime);
    drop(telemetry);
    code
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let started = tenancy::bootstrap::start(&settings).await?;
    if let Some(c) = &started.cluster {
        println!(
            "embedded PostgreSQL at 127.0.0.1:{} (data in {})",
            c.port(),
            c.dir().display()
        );
    }
    if let Some(path) = &started.master_key_file {
        println!(
            "master key file: {} (back it up: without it, sealed secrets cannot be opened)",
            path.display()
        );
    }
    let admin_token = match &settings.admin_token {
        Some(t) => t.clone(),
        None => {
            let path = settings.data_dir.join("admin-token");
            std::fs::create_dir_all(&settings.data_dir).with_context(|| {
                format!(
                    "PLATFORM_DATA_DIR: cannot create {}",
                    settings.data_dir.display()
                )
            })?;
            let token = if path.exists() {
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .trim()
                    .to_owned()
            } else {
                let t = random_token(32);
                write_private(&path, &t).with_context(|| format!("writing {}", path.display()))?;
                t
            };
            anyhow::ensure!(
                token.len() >= 24,
                "{} holds an operator token shorter than 24 characters",
                path.display()
            );
            println!("operator token: in {} (mode 0600)", path.display());
            Secret::new(token)
        }
    };
    let app = platform::App::new(started.tenancy.clone(), admin_token.expose()).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("PLATFORM_LISTEN: cannot listen on {}", settings.listen))?;
    println!(
        "platform listening on http://{} (tenants at http://{{slug}}.{}:{})",
        settings.listen,
        settings.base_domain,
        settings.listen.port()
    );
    tracing::info!(listen = %settings.listen, "platform listening");
    // Metrics on their own listener, so the tenant listener never answers `/metrics`.
    let metrics = match settings.metrics.listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("PLATFORM_METRICS_LISTEN: cannot listen on {addr}"))?;
            println!("metrics at http://{addr}/metrics");
            Some(platform::metrics::serve(l, app.metrics.clone()))
        }
        None => None,
    };
    // The peer address feeds session records and per-address login throttling.
    let served = axum::serve(
        listener,
        app.router
            .clone()
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await;
    if let Some(m) = metrics {
        m.abort();
    }
    drop(app);
    if let Some(c) = started.cluster.filter(|c| c.started_here()) {
        tracing::info!("stopping the embedded PostgreSQL");
        tokio::task::spawn_blocking(move || c.stop()).await??;
    }
    served.context("serving")
}

async fn shutdown() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
