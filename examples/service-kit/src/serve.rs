//! The one accept loop every service serves through.
//!
//! A client cannot hold the server's sockets and tasks by being slow, idle or many
//! ([`ConnectionLimits`]): each connection is HTTP/1 with hyper's header-read timer (a client
//! that has not sent a whole request head `HEADER_READ_TIMEOUT_MS` after the connection started
//! waiting for one is disconnected: slowloris), a connection with no request in flight for
//! `IDLE_TIMEOUT_MS` is closed, and past `MAX_CONNECTIONS` open connections a new one is
//! refused gracefully: answered `503` problem+json with `Retry-After: 1` and closed (counted in
//! `http_server_connections_refused_total`). An answer sent before the request body was read
//! (an early rejection) carries `Connection: close`, since hyper will not reuse that
//! connection: a keep-alive client then opens a new one instead of losing its next request.
//!
//! Shutdown order on SIGTERM or SIGINT: readiness fails first (so `run.sh` and load balancers
//! stop sending work), then after `SHUTDOWN_DELAY_MS` the listener closes, idle and
//! half-sent connections are closed at once, and in-flight requests finish (their connection
//! closes after the answer), bounded by `SHUTDOWN_TIMEOUT_MS`; then `serve` returns and `main`
//! exits.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::pin,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo, response::IntoResponse};
use http::{HeaderValue, Request, header};
use http_body_util::BodyExt;
use hyper::{
    body::{Body as _, Incoming},
    server::conn::http1,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::{JoinHandle, JoinSet},
    time::Instant,
};
use tower::ServiceExt;

use crate::{
    config::{Common, ConnectionLimits, ShutdownTiming},
    health::Readiness,
    problem::Problem,
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

/// A service's `main`: logs and traces, store, `build` (state and router), bind, serve until
/// SIGTERM or SIGINT with graceful shutdown, close the store, send the last spans. Exit code 1
/// when the trace exporter cannot be built, the store cannot be opened, the address cannot be
/// bound or `build` fails.
pub async fn run(
    service: &str,
    common: &Common,
    migrations: &Migrations,
    build: impl FnOnce(Store) -> Result<Started, String>,
) -> ExitCode {
    let traces = match crate::telemetry::init(&common.telemetry, service) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{service}: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    serve(
        listener,
        started.app,
        started.readiness,
        shutdown_signal(),
        common.shutdown,
        common.connections,
    )
    .await;
    for task in started.background {
        task.abort();
    }
    store.close().await;
    tracing::info!("{service} stopped");
    traces.shutdown().await;
    ExitCode::SUCCESS
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

/// Serves `app` on `listener` until `signal` resolves, then shuts down as the module describes.
/// Each connection is held to `limits` (see the module docs).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    readiness: Readiness,
    signal: impl Future<Output = ()> + Send + 'static,
    timing: ShutdownTiming,
    limits: ConnectionLimits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stop = pin!(async move {
        signal.await;
        readiness.start_shutdown();
        tracing::info!(delay = ?timing.delay, "shutting down: readiness now fails");
        tokio::time::sleep(timing.delay).await;
    });
    loop {
        tokio::select! {
            () = &mut stop => break,
            // Reaps finished connection tasks; their slots were freed when they ended.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        connections.spawn(connection(stream, peer, app.clone(), limits, drain_rx.clone(), slot));
                    }
                    Err(_) => refuse(stream, &refusing),
                },
                Err(e) => accept_failed(e).await,
            },
        }
    }
    drop(listener);
    tracing::info!(
        open = connections.len(),
        "no longer accepting connections; closing idle ones, draining in-flight requests"
    );
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(timing.timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("all requests drained; exiting"),
        // Dropping the set aborts what is left.
        Err(_) => tracing::warn!(
            timeout = ?timing.timeout,
            open = connections.len(),
            "drain timeout passed; exiting with requests still in flight"
        ),
    }
}

/// Surplus connections answered 503 at the same time; past this many, one is closed unanswered,
/// so a flood of connections costs no more than this many small tasks.
const MAX_REFUSING: usize = 64;

/// How long a refused client gets to send its request head and read the 503.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Refuses a connection past the cap gracefully: reads the request head (so closing does not
/// reset the connection before the client reads the answer), answers 503 problem+json with
/// `Retry-After: 1` and `Connection: close`, and closes; at most [`REFUSAL_LINGER`].
fn refuse(stream: TcpStream, refusing: &Arc<Semaphore>) {
    metrics::counter!(crate::metrics::CONNECTIONS_REFUSED).increment(1);
    let Ok(permit) = refusing.clone().try_acquire_owned() else {
        tracing::debug!("connection cap reached; closed a connection unanswered");
        return;
    };
    tracing::debug!("connection cap reached; answering 503");
    tokio::spawn(async move {
        let _permit = permit;
        let answer = hyper::service::service_fn(|_| async {
            let problem = Problem::unavailable(
                "the server has too many open connections; retry shortly",
                Duration::from_secs(1),
            );
            Ok::<_, Infallible>(problem.into_response())
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(REFUSAL_LINGER)
            .keep_alive(false);
        let refusal = builder.serve_connection(TokioIo::new(stream), answer);
        let _ = tokio::time::timeout(REFUSAL_LINGER, refusal).await;
    });
}

/// Errors about one connection are that client's; anything else (out of file descriptors)
/// is waited out rather than retried in a spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One connection: HTTP/1 with hyper's header-read timer, closed when idle too long, and
/// closed gracefully (idle at once, in-flight after its answer) once `drain` turns true.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    mut drain: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let (activity, watched) = watch::channel(Activity {
        in_flight: 0,
        since: Instant::now(),
    });
    let activity = Arc::new(activity);
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            // The peer address, as axum's `ConnectInfo` extractor reads it: the admin guard
            // limits failed authentications per client with it.
            req.extensions_mut().insert(ConnectInfo(peer));
            let (req, body_read) = ReadToEnd::wrap(req);
            let busy = Busy::enter(&activity);
            let response = app.clone().oneshot(req);
            async move {
                let mut response = response.await?;
                // An early answer (a refused deadline, a wrong token, 413) leaves the body
                // unread and hyper will not reuse the connection: say so, so a keep-alive
                // client does not write its next request into a connection about to close.
                if body_read.is_some_and(|read| !read.load(Ordering::Relaxed)) {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                // Busy until the body is written, not just until the handler returns: a
                // streamed body (server-sent events) is a request in flight, not idleness.
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _busy = &busy;
                        frame
                    }))
                }))
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let mut idle = pin!(idle_for(watched, limits.idle_timeout));
    let mut closing = false;
    // While closing: when the connection is dropped if nothing is in flight by then.
    let mut cutoff: Option<Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, timeout = e.is_timeout(), "connection closed");
                }
                return;
            }
            _ = drain.wait_for(|d| *d), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                cutoff = Some(Instant::now() + CLOSE_GRACE);
            }
            () = &mut idle, if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                cutoff = Some(Instant::now() + CLOSE_GRACE);
            }
            () = sleep_until_some(cutoff) => {
                if activity.borrow().in_flight == 0 {
                    return;
                }
                // A request started meanwhile: keep-alive is off, so the connection closes
                // by itself after the answer.
                cutoff = None;
            }
        }
    }
}

/// How long a closing connection with nothing in flight gets to flush and close by itself
/// before it is dropped. hyper's graceful shutdown closes a connection that has served a
/// request and waits for the next at once, but one that has not yet sent a whole first head
/// (a slow client, or one that never sent a byte) would wait out the header-read timer.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A request body that notes when it has been read to its end (see [`connection`]).
struct ReadToEnd {
    inner: Incoming,
    ended: Arc<AtomicBool>,
}

impl ReadToEnd {
    /// The request with its body wrapped, and the flag that turns true once it is all read.
    /// A request without a body (most of them) is not wrapped and has no flag: axum boxes
    /// the body into its `Body` either way, so that path costs nothing more than before.
    fn wrap(req: Request<Incoming>) -> (Request<Body>, Option<Arc<AtomicBool>>) {
        if req.body().is_end_stream() {
            return (req.map(Body::new), None);
        }
        let ended = Arc::new(AtomicBool::new(false));
        let flag = ended.clone();
        let req = req.map(|inner| Body::new(ReadToEnd { inner, ended: flag }));
        (req, Some(ended))
    }
}

impl hyper::body::Body for ReadToEnd {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// What a connection is doing, for its idle timer.
#[derive(Debug, Clone, Copy)]
struct Activity {
    /// Requests whose response is not fully written yet.
    in_flight: usize,
    /// When the last of them was written (or the connection was accepted).
    since: Instant,
}

/// Marks a request in flight on its connection until dropped.
struct Busy(Arc<watch::Sender<Activity>>);

impl Busy {
    fn enter(activity: &Arc<watch::Sender<Activity>>) -> Self {
        activity.send_modify(|a| a.in_flight += 1);
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight -= 1;
            a.since = Instant::now();
        });
    }
}

/// Resolves once the connection has had no request in flight for `limit`.
async fn idle_for(mut activity: watch::Receiver<Activity>, limit: Duration) {
    loop {
        let now = *activity.borrow_and_update();
        if now.in_flight == 0 {
            tokio::select! {
                () = tokio::time::sleep_until(now.since + limit) => return,
                changed = activity.changed() => if changed.is_err() { return },
            }
        } else if activity.changed().await.is_err() {
            return;
        }
    }
}
