//! The platform as the benchmark serves it: configured by the same `PLATFORM_*` variables as the
//! `platform` binary, bootstrapped by `tenancy`, `platform::App` served with `axum::serve` over a
//! real TCP socket with connect-info (as the binary serves it), with the binary's JSON request logging switched on. The log goes to a file
//! (default `/dev/null`): every request still pays for its span, its formatted JSON line and its
//! `write` system call, as it would writing to a pipe in production. `off` installs no subscriber
//! (to measure what logging costs; not how the platform runs).

use anyhow::Context as _;
use tenancy::settings::Settings;
use tracing_subscriber::EnvFilter;

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
        // The filter and format of `platform`'s main.rs.
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(EnvFilter::new("info,sqlx=warn,tokio_postgres=warn"))
            .with_writer(std::sync::Arc::new(log))
            .init();
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
