//! The dashboard binary: reads its config, starts polling and serves the page.

use dashboard::{AppState, Config, app};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = Config::from_env()?;
    let (state, poller) = AppState::polling(&config);
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    tracing::info!(
        addr = %config.addr,
        services = ?config.services.iter().map(|s| &s.base_url).collect::<Vec<_>>(),
        "dashboard listening"
    );
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown().await;
            // Dropping the feed's sender ends every open event stream, so
            // graceful shutdown does not wait for browsers to go away.
            poller.abort();
        })
        .await?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
