//! Logging setup and serving with graceful shutdown.
//!
//! Shutdown order on SIGTERM or SIGINT: readiness fails first (so `run.sh` and load balancers
//! stop sending work), then after `shutdown_delay` the listener stops accepting and in-flight
//! requests drain, bounded by `shutdown_timeout`; then `serve` returns and `main` exits.

use std::{process::ExitCode, time::Duration};

use axum::Router;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{
    config::{Common, LogFormat},
    health::Readiness,
    store::{Migrations, Store},
};

/// What a service's start-up step hands to [`run`].
#[derive(Debug)]
pub struct Started {
    /// The router to serve.
    pub app: Router,
    /// The readiness flag the router reports.
    pub readiness: Readiness,
    /// Background tasks, aborted once serving stops.
    pub background: Vec<JoinHandle<()>>,
}

/// A service's `main`: logs, store, `build` (state and router), bind, serve until SIGTERM or
/// SIGINT with graceful shutdown, close the store. Exit code 1 when the store cannot be opened,
/// the address cannot be bound or `build` fails.
pub async fn run(
    service: &str,
    common: &Common,
    migrations: &Migrations,
    build: impl FnOnce(Store) -> Result<Started, String>,
) -> ExitCode {
    init_tracing(common.log_format, &common.log_filter);
    // Before anything registers a metric: handles taken from the facade earlier would stay
    // bound to the no-op recorder (the library registers its handles when a layer is built).
    crate::metrics::install();
    let store = match Store::connect(&common.database_url, migrations).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the store");
            return ExitCode::FAILURE;
        }
    };
    let started = match build(store.clone()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(common.addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %common.addr, error = %e, "cannot bind");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        addr = %common.addr,
        backend = ?store.backend(),
        admin = common.admin_token.is_some(),
        "{service} listening"
    );
    let timing = ShutdownTiming {
        delay: common.shutdown_delay,
        timeout: common.shutdown_timeout,
    };
    let result = serve(
        listener,
        started.app,
        started.readiness,
        shutdown_signal(),
        timing,
    )
    .await;
    for task in started.background {
        task.abort();
    }
    store.close().await;
    match result {
        Ok(()) => {
            tracing::info!("{service} stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server error");
            ExitCode::FAILURE
        }
    }
}

/// Sets up `tracing` once for the process (see [`subscriber`]).
pub fn init_tracing(format: LogFormat, filter: &str) {
    let _ = tracing::subscriber::set_global_default(subscriber(format, filter, std::io::stdout));
}

/// The subscriber [`init_tracing`] installs: JSON lines that carry the request span's fields
/// (so every line has the request id and trace id), or text with the span context.
pub fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Text => Box::new(builder.with_ansi(false).finish()),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// How shutdown proceeds.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownTiming {
    /// Readiness fails this long before the listener closes.
    pub delay: Duration,
    /// In-flight requests get at most this long to finish.
    pub timeout: Duration,
}

/// Serves `app` on `listener` until `signal` resolves, then shuts down as the module describes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    readiness: Readiness,
    signal: impl Future<Output = ()> + Send + 'static,
    timing: ShutdownTiming,
) -> std::io::Result<()> {
    let (draining_tx, mut draining_rx) = watch::channel(false);
    let graceful = async move {
        signal.await;
        readiness.start_shutdown();
        tracing::info!(delay = ?timing.delay, "shutting down: readiness now fails");
        tokio::time::sleep(timing.delay).await;
        tracing::info!("no longer accepting connections; draining in-flight requests");
        let _ = draining_tx.send(true);
    };
    // Every request carries its peer address (`ConnectInfo<SocketAddr>`): the admin guard
    // limits failed authentications per client with it.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let deadline = async move {
        let _ = draining_rx.wait_for(|d| *d).await;
        tokio::time::sleep(timing.timeout).await;
    };
    tokio::select! {
        r = server.into_future() => {
            tracing::info!("all requests drained; exiting");
            r
        }
        () = deadline => {
            tracing::warn!(timeout = ?timing.timeout, "drain timeout passed; exiting with requests still in flight");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    #[tokio::test]
    async fn in_flight_request_drains_and_readiness_fails_first() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let started_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(started_tx)));
        let app = Router::new().route(
            "/slow",
            get(move || {
                let tx = started_tx.lock().unwrap().take();
                async move {
                    if let Some(tx) = tx {
                        let _ = tx.send(());
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }
            }),
        );
        let readiness = Readiness::new();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            app,
            readiness.clone(),
            async move {
                let _ = stop_rx.await;
            },
            ShutdownTiming {
                delay: Duration::from_millis(50),
                timeout: Duration::from_secs(5),
            },
        ));
        let request = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            stream.read_to_string(&mut out).await.unwrap();
            out
        });
        started_rx.await.unwrap();
        assert!(!readiness.is_shutting_down());
        stop_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(readiness.is_shutting_down(), "readiness fails first");
        assert!(!server.is_finished(), "still draining");
        let out = request.await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("done"));
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn every_request_carries_its_peer_address() {
        use axum::extract::ConnectInfo;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app =
            Router::new().route(
                "/peer",
                get(
                    |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>| async move {
                        peer.to_string()
                    },
                ),
            );
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            app,
            Readiness::new(),
            async move {
                let _ = stop_rx.await;
            },
            ShutdownTiming {
                delay: Duration::ZERO,
                timeout: Duration::from_secs(5),
            },
        ));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local = stream.local_addr().unwrap();
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with(&local.to_string()), "{out}");
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
