//! The platform as the benchmark serves it: configured by the same `PLATFORM_*` variables as the
//! `platform` binary, bootstrapped by `tenancy`, `platform::App` served with `axum::serve` over a
//! real TCP socket with connect-info (as the binary serves it), with the binary's JSON request logging switched on. The log goes to a file
//! (default `/dev/null`): every request still pays for its span, its formatted JSON line and its
//! `write` system call, as it would writing to a pipe in production. `off` installs no subscriber
//! (to measure what logging costs; not how the platform runs). With the `OTEL_*` variables set
//! (`--traces`) it exports traces as the binary does.

use anyhow::Context as _;
use tenancy::settings::Settings;

/// Serves the platform until the process is stopped.
pub async fn serve(log_file: &std::path::Path) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    // `off`: no subscriber at all, to measure what logging costs.
    if log_file != std::path::Path::new("off") {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .with_context(|| format!("opening {}", log_file.display()))?;
        // The subscriber of `platform`'s main.rs (JSON log; traces when `OTEL_*` say so),
        // installed off the runtime's threads as the binary installs it before its runtime.
        let traces = platform::telemetry::TraceSettings::from_lookup(|k| std::env::var(k).ok())?;
        let telemetry = tokio::task::spawn_blocking(move || {
            platform::telemetry::init_to(
                tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Arc::new(log)),
                true,
                traces.as_ref(),
                None,
            )
        })
        .await??;
        // The process is killed at the end of the run: nothing to flush.
        std::mem::forget(telemetry);
    }
    let started = tenancy::bootstrap::start(&settings).await?;
    let token = settings
        .admin_token
        .as_ref()
        .context("PLATFORM_ADMIN_TOKEN is set by the benchmark")?;
    let app = platform::App::new(started.tenancy, token.expose()).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    // With the peer address, as the `platform` binary serves it (sessions and login throttling
    // read it, so leaving it out would measure a cheaper request than production's).
    axum::serve(
        listener,
        app.router
            .clone()
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}
