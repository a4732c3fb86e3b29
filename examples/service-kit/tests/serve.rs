//! The shared accept loop over real loopback sockets: slow, idle and surplus clients are cut
//! off, shutdown closes idle and slow connections at once and lets in-flight requests finish.
//!
//! Bounds on elapsed time here are generous liveness checks (a timeout fired, or did not fire
//! far too early), not speed claims.

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo, routing::get};
use service_kit::{
    config::{ConnectionLimits, ShutdownTiming},
    health::Readiness,
    serve::serve,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
    time::{Instant, sleep, timeout},
};

const SLOW_HANDLER: Duration = Duration::from_millis(500);

struct Server {
    addr: std::net::SocketAddr,
    readiness: Readiness,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    slow_started: Arc<tokio::sync::Notify>,
}

impl Server {
    async fn start(limits: ConnectionLimits, timing: ShutdownTiming) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let slow_started = Arc::new(tokio::sync::Notify::new());
        let notify = slow_started.clone();
        let app = Router::new()
            .route("/fast", get(|| async { "ok" }))
            // Answers without reading the request body, as an early rejection does.
            .route(
                "/refuse",
                axum::routing::post(|| async { (http::StatusCode::GATEWAY_TIMEOUT, "refused") }),
            )
            .route(
                "/read",
                axum::routing::post(|body: String| async move { body.len().to_string() }),
            )
            .route(
                "/peer",
                get(
                    |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>| async move {
                        peer.to_string()
                    },
                ),
            )
            .route(
                "/slow",
                get(move || {
                    let notify = notify.clone();
                    async move {
                        notify.notify_one();
                        sleep(SLOW_HANDLER).await;
                        "done"
                    }
                }),
            );
        let readiness = Readiness::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            app,
            readiness.clone(),
            async move {
                let _ = stopped.await;
            },
            timing,
            limits,
        ));
        Self {
            addr,
            readiness,
            stop: Some(stop),
            task,
            slow_started,
        }
    }

    fn stop(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
    }

    /// Sends `GET /slow` (keep-alive) and returns once its handler runs; the task reads until
    /// the server closes the connection (at most 3 s) and returns what it read and whether
    /// the close came.
    async fn slow_request_in_flight(&self) -> JoinHandle<(String, bool)> {
        let notified = self.slow_started.notified();
        let mut stream = self.connect().await;
        let task = tokio::spawn(async move {
            stream
                .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            let read = timeout(Duration::from_secs(3), stream.read_to_end(&mut out)).await;
            (String::from_utf8_lossy(&out).into_owned(), read.is_ok())
        });
        notified.await;
        task
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Writes `raw` on a fresh connection and reads one response; the connection stays open.
    async fn exchange(&self, raw: &[u8]) -> (TcpStream, String) {
        let mut stream = self.connect().await;
        stream.write_all(raw).await.unwrap();
        let response = read_response(&mut stream).await;
        (stream, response)
    }

    /// One `GET path` on a fresh connection that asks to be closed after it.
    async fn get(&self, path: &str) -> String {
        let mut stream = self.connect().await;
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }
}

fn limits(header_ms: u64, idle_ms: u64, max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        max_connections,
    }
}

fn timing(delay_ms: u64) -> ShutdownTiming {
    ShutdownTiming {
        delay: Duration::from_millis(delay_ms),
        timeout: Duration::from_secs(5),
    }
}

/// Reads one response (head plus `content-length` body) from a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
        let n = timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "closed mid-response: {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `GET /fast` on a keep-alive connection; the response.
async fn fast_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /fast HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    read_response(stream).await
}

/// Waits (at most `within`) for the server to close `stream`; how long that took, or `None`.
async fn closed_after(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 256];
    loop {
        match timeout(
            within.saturating_sub(start.elapsed()),
            stream.read(&mut chunk),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_at_the_header_timeout_while_others_are_served() {
    let server = Server::start(limits(500, 500, 64), timing(0)).await;
    let stream = server.connect().await;
    let (mut reader, mut writer) = stream.into_split();
    let start = Instant::now();
    // One header byte every 200 ms, for at most 4 s: never a complete head.
    let drip = tokio::spawn(async move {
        writer.write_all(b"GET /fast HTTP/1.1\r\n").await.ok()?;
        for b in b"x-slow: aaaaaaaaaaaaaaaaaaaa".iter() {
            sleep(Duration::from_millis(200)).await;
            writer.write_all(&[*b]).await.ok()?;
        }
        Some(())
    });
    let cut = tokio::spawn(async move {
        let mut chunk = [0u8; 64];
        let r = timeout(Duration::from_secs(4), reader.read(&mut chunk)).await;
        (r.map(|r| r.map_or(0, |n| n)), start.elapsed())
    });
    // Normal requests meanwhile are answered at once.
    for _ in 0..4 {
        let t = Instant::now();
        let out = server.get("/fast").await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        sleep(Duration::from_millis(100)).await;
    }
    let (read, elapsed) = cut.await.unwrap();
    assert!(
        matches!(read, Ok(0)),
        "the slow client was not disconnected within 4 s"
    );
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(1200),
        "disconnected after {elapsed:?}, the header timeout is 500 ms"
    );
    drip.abort();
}

/// The server closes `stream` by the 300 ms idle timer: not much sooner, and well before the
/// 3 s header timer.
async fn assert_closed_as_idle(stream: &mut TcpStream) {
    let closed = closed_after(stream, Duration::from_secs(5)).await;
    let closed = closed.expect("the idle connection was still open after 5 s");
    assert!(
        closed >= Duration::from_millis(200) && closed < Duration::from_millis(2000),
        "closed {closed:?} after going idle; idle timeout 300 ms, header timeout 3 s"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The header timeout is longer, so the close comes from the idle timer.
    let server = Server::start(limits(3000, 300, 64), timing(0)).await;
    // One that never sends a byte.
    let mut silent = server.connect().await;
    assert_closed_as_idle(&mut silent).await;
    // One that keeps its connection alive between requests.
    let mut stream = server.connect().await;
    assert!(fast_on(&mut stream).await.ends_with("ok"));
    // A second request within the idle timeout is served on the same connection.
    sleep(Duration::from_millis(150)).await;
    assert!(fast_on(&mut stream).await.ends_with("ok"));
    assert_closed_as_idle(&mut stream).await;
}

#[tokio::test]
async fn past_the_connection_cap_a_client_gets_503_and_a_freed_slot_serves_again() {
    let server = Server::start(limits(5000, 5000, 2), timing(0)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = server.connect().await;
        assert!(fast_on(&mut stream).await.ends_with("ok"));
        held.push(stream);
    }
    let refused = server.get("/fast").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let lower = refused.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{refused}"
    );
    assert!(lower.contains("retry-after: 1"), "{refused}");
    assert!(lower.contains("connection: close"), "{refused}");
    assert!(refused.contains("\"status\":503"), "{refused}");

    // Free a slot: the next connection is served (once the server has seen the close).
    drop(held.pop());
    let mut served = String::new();
    for _ in 0..50 {
        served = server.get("/fast").await;
        if served.starts_with("HTTP/1.1 200") {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

#[tokio::test]
async fn shutdown_closes_idle_and_slow_connections_at_once_and_drains_in_flight_requests() {
    let mut server = Server::start(limits(10_000, 10_000, 64), timing(50)).await;
    let mut idle = server.connect().await;
    assert!(fast_on(&mut idle).await.ends_with("ok"));
    let mut slow = server.connect().await;
    slow.write_all(b"GET /fast HTTP/1.1\r\nhost: x\r\nx-sl")
        .await
        .unwrap();
    let in_flight = server.slow_request_in_flight().await;
    let stopped_at = Instant::now();
    server.stop();
    sleep(Duration::from_millis(20)).await;
    assert!(server.readiness.is_shutting_down(), "readiness fails first");

    let budget = Duration::from_millis(800);
    let idle_closed = closed_after(&mut idle, budget).await;
    let slow_closed = closed_after(&mut slow, budget).await;
    assert!(
        idle_closed.is_some(),
        "the idle connection stayed open on shutdown"
    );
    assert!(
        slow_closed.is_some(),
        "the slow connection stayed open on shutdown"
    );
    assert!(
        !server.task.is_finished(),
        "still draining the in-flight request"
    );

    // Keep-alive was asked for, but a draining server closes the connection after the answer.
    let (out, closed) = in_flight.await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("done"), "{out}");
    assert!(closed, "the drained connection was closed");
    timeout(Duration::from_secs(2), &mut server.task)
        .await
        .expect("serve returns once drained")
        .unwrap();
    assert!(stopped_at.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn shutdown_waits_no_longer_than_the_drain_timeout() {
    let mut server = Server::start(
        limits(10_000, 10_000, 64),
        ShutdownTiming {
            delay: Duration::ZERO,
            timeout: Duration::from_millis(100),
        },
    )
    .await;
    let _in_flight = server.slow_request_in_flight().await;
    let t = Instant::now();
    server.stop();
    timeout(Duration::from_secs(2), &mut server.task)
        .await
        .expect("serve returns at the drain timeout")
        .unwrap();
    assert!(
        t.elapsed() < SLOW_HANDLER,
        "returned after {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn every_request_carries_its_peer_address() {
    let mut server = Server::start(limits(2_000, 1_000, 8), timing(0)).await;
    let mut stream = server.connect().await;
    let local = stream.local_addr().unwrap();
    stream
        .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with(&local.to_string()), "{out}");
    server.stop();
}

/// A response sent before the request body was read says `Connection: close`, so a keep-alive
/// client opens a new connection instead of writing its next request into one the server is
/// about to drop; a request whose body was read keeps the connection.
#[tokio::test]
async fn an_answer_that_left_the_body_unread_closes_the_connection() {
    let mut server = Server::start(limits(2_000, 1_000, 8), timing(0)).await;
    let (_, refused) = server
        .exchange(b"POST /refuse HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n")
        .await;
    assert!(refused.starts_with("HTTP/1.1 504"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("connection: close"),
        "{refused}"
    );

    let (mut stream, read) = server
        .exchange(b"POST /read HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello")
        .await;
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    assert!(
        !read.to_ascii_lowercase().contains("connection: close"),
        "{read}"
    );
    assert!(
        fast_on(&mut stream).await.starts_with("HTTP/1.1 200"),
        "kept alive"
    );
    server.stop();
}
