//! The dashboard binary: reads its config, starts polling and serves the page through the
//! services' accept loop ([`service_kit::serve::serve`]: header-read and idle timeouts, a
//! connection cap, a drain on shutdown).

use dashboard::{AppState, Config, app};
use service_kit::{
    config::{ConnectionLimits, Env, ShutdownTiming, Telemetry},
    health::Readiness,
    serve::{serve, shutdown_signal},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut env = Env::from_process();
    let telemetry = Telemetry::read(&mut env);
    let timing = ShutdownTiming::read(&mut env);
    let limits = ConnectionLimits::read(&mut env);
    env.finish()?;
    // The services' logs (`LOG_FORMAT`: JSON when stdout is not a terminal; `RUST_LOG`) and
    // traces (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    let traces =
        service_kit::telemetry::init(&telemetry, "dashboard").map_err(anyhow::Error::msg)?;
    let config = Config::from_env()?;
    let (state, poller) = AppState::polling(&config);
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    tracing::info!(
        addr = %config.addr,
        services = ?config.services.iter().map(|s| &s.base_url).collect::<Vec<_>>(),
        "dashboard listening"
    );
    let signal = async move {
        shutdown_signal().await;
        // Dropping the feed's sender ends every open event stream, so the drain does not
        // wait for browsers to go away.
        poller.abort();
    };
    // Nothing reads the dashboard's readiness; `serve` flips it all the same.
    serve(
        listener,
        app(state),
        Readiness::new(),
        signal,
        timing,
        limits,
    )
    .await;
    traces.shutdown().await;
    Ok(())
}
