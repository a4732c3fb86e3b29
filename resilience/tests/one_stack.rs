//! One stack, two ways in: the same scripted upstream answers through
//!
//! - the tower path: `ResilienceLayer::for_http()` over a scripted `tower::Service`, and
//! - the reqwest path: a `reqwest_middleware` client with `ResilienceMiddleware` against a
//!   scripted server on 127.0.0.1 (real sockets, real resets),
//!
//! must give the same attempts (when each started, what deadline it was sent), the same final
//! outcome at the same time, and the same breaker and retry counts. Both run on tokio's paused
//! clock, so every time below is exact.
//!
//! How the reqwest path keeps a paused clock honest: while a request waits on the socket the
//! runtime has nothing to do, and a paused clock would jump to the next timer (the attempt
//! timeout) before the server's answer arrives. A small middleware inside ours keeps a
//! `spawn_blocking` task running while an attempt that will be answered waits (tokio does not
//! auto-advance while a blocking task runs), and leaves the clock free for an attempt that
//! hangs, which only the attempt timeout or the deadline ends.
#![cfg(feature = "reqwest")]

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Extensions, Request, Response};
use reqwest_middleware::{Middleware, Next};
use resilience_layers::{
    BoxError, Error,
    http::{DEADLINE_HEADER, PropagateDeadlineLayer, ResilienceMiddleware, rejection},
    stack::{StackConfig, StackSnapshot},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    time::Instant,
};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// What the upstream does with one attempt.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Answers with this status.
    Status(u16),
    /// Answers with this status and `Retry-After`.
    RetryAfter(u16, &'static str),
    /// Reads the request and resets the connection without answering.
    Reset,
    /// Reads the request and never answers.
    Hang,
}

use Step::{Hang, Reset, RetryAfter, Status};

/// How a call ended, in terms both paths share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Status(u16),
    /// The transport failed (a reset connection), passed through as the client's own error.
    Transport,
    Timeout,
    DeadlineExceeded,
    CircuitOpen,
}

/// One attempt as the upstream saw it: when it started (from the call's start) and the
/// deadline header it carried, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attempt {
    at_ms: u64,
    deadline_ms: Option<u64>,
}

/// Everything a run is compared on.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    attempts: Vec<Attempt>,
    end: End,
    ended_at_ms: u64,
    /// The breaker's calls and failures.
    breaker: (u64, u64),
    /// The retry's requests and retries.
    retry: (u64, u64),
}

struct Case {
    name: &'static str,
    /// Top-level keys and tables added before the common ones.
    extra: &'static str,
    script: &'static [Step],
    /// When each attempt started, in milliseconds.
    starts: &'static [u64],
    end: End,
    ended_at_ms: u64,
}

/// Three attempts, 100 ms each, within 2 s; backoff 10 ms, 20 ms (no jitter), up to 5 s,
/// which is also the longest `Retry-After` waited for; a breaker that records but does not
/// trip unless a case says so.
fn config(extra: &str) -> StackConfig {
    let deadline = if extra.contains("deadline") {
        ""
    } else {
        "deadline = \"2s\"\n"
    };
    let breaker = if extra.contains("[circuit_breaker]") {
        ""
    } else {
        "[circuit_breaker]\nminimum_calls = 100\n"
    };
    toml::from_str(&format!(
        "{deadline}attempt_timeout = \"100ms\"\n{extra}\n{breaker}\
         [retry]\nmax_attempts = 3\n\
         backoff = {{ base = \"10ms\", max = \"5s\", multiplier = 2.0, jitter = \"none\" }}\n"
    ))
    .unwrap()
}

const CASES: &[Case] = &[
    Case {
        name: "503, 503, 200: the third attempt succeeds",
        extra: "",
        script: &[Status(503), Status(503), Status(200)],
        starts: &[0, 10, 30],
        end: End::Status(200),
        ended_at_ms: 30,
    },
    Case {
        name: "500, 502, 200",
        extra: "",
        script: &[Status(500), Status(502), Status(200)],
        starts: &[0, 10, 30],
        end: End::Status(200),
        ended_at_ms: 30,
    },
    Case {
        name: "503 all the way: the last answer comes back",
        extra: "",
        script: &[Status(503)],
        starts: &[0, 10, 30],
        end: End::Status(503),
        ended_at_ms: 30,
    },
    Case {
        name: "501 counts against the breaker and is not retried",
        extra: "",
        script: &[Status(501), Status(200)],
        starts: &[0],
        end: End::Status(501),
        ended_at_ms: 0,
    },
    Case {
        name: "505 counts against the breaker and is not retried",
        extra: "",
        script: &[Status(505), Status(200)],
        starts: &[0],
        end: End::Status(505),
        ended_at_ms: 0,
    },
    Case {
        name: "404 is an answer, not a failure",
        extra: "",
        script: &[Status(404), Status(200)],
        starts: &[0],
        end: End::Status(404),
        ended_at_ms: 0,
    },
    Case {
        name: "429 without Retry-After follows the backoff",
        extra: "",
        script: &[Status(429)],
        starts: &[0, 10, 30],
        end: End::Status(429),
        ended_at_ms: 30,
    },
    Case {
        name: "Retry-After raises the backoff",
        extra: "",
        script: &[RetryAfter(429, "1"), Status(503), Status(200)],
        starts: &[0, 1_000, 1_020],
        end: End::Status(200),
        ended_at_ms: 1_020,
    },
    Case {
        name: "a Retry-After past the deadline gives up at once",
        extra: "",
        script: &[RetryAfter(503, "3"), Status(200)],
        starts: &[0],
        end: End::Status(503),
        ended_at_ms: 0,
    },
    Case {
        name: "a Retry-After past the cap gives up at once, deadline or not",
        extra: "deadline = \"30s\"",
        script: &[RetryAfter(503, "10"), Status(200)],
        starts: &[0],
        end: End::Status(503),
        ended_at_ms: 0,
    },
    Case {
        name: "reset, reset, 200",
        extra: "",
        script: &[Reset, Reset, Status(200)],
        starts: &[0, 10, 30],
        end: End::Status(200),
        ended_at_ms: 30,
    },
    Case {
        name: "resets all the way: the transport's error comes back",
        extra: "",
        script: &[Reset],
        starts: &[0, 10, 30],
        end: End::Transport,
        ended_at_ms: 30,
    },
    Case {
        name: "a hang past the attempt timeout is retried",
        extra: "",
        script: &[Hang, Status(200)],
        starts: &[0, 110],
        end: End::Status(200),
        ended_at_ms: 110,
    },
    Case {
        name: "hangs all the way: the last attempt's timeout",
        extra: "",
        script: &[Hang],
        starts: &[0, 110, 230],
        end: End::Timeout,
        ended_at_ms: 330,
    },
    Case {
        name: "the deadline runs out during the third attempt",
        extra: "deadline = \"250ms\"",
        script: &[Hang],
        starts: &[0, 110, 230],
        end: End::DeadlineExceeded,
        ended_at_ms: 250,
    },
    Case {
        name: "no attempt starts when the backoff would end past the deadline",
        extra: "deadline = \"225ms\"",
        script: &[Hang],
        starts: &[0, 110],
        end: End::Timeout,
        ended_at_ms: 210,
    },
    Case {
        name: "the breaker opens mid-request: the open circuit is not retried",
        extra: "[circuit_breaker]\nconsecutive_failures = 2\nminimum_calls = 100",
        script: &[Status(500)],
        starts: &[0, 10],
        end: End::CircuitOpen,
        ended_at_ms: 30,
    },
];

#[tokio::test(start_paused = true)]
async fn the_tower_stack_and_the_reqwest_middleware_decide_alike() {
    for case in CASES {
        let tower = through_tower(case).await;
        let reqwest = through_reqwest(case).await;
        let want: Vec<u64> = case.starts.to_vec();
        let got: Vec<u64> = tower.attempts.iter().map(|a| a.at_ms).collect();
        assert_eq!(got, want, "{}: attempts (tower)", case.name);
        assert_eq!(
            (tower.end, tower.ended_at_ms),
            (case.end, case.ended_at_ms),
            "{}: outcome (tower)",
            case.name
        );
        assert_eq!(reqwest, tower, "{}: reqwest against tower", case.name);
    }
}

fn counts(snapshot: &StackSnapshot) -> ((u64, u64), (u64, u64)) {
    let b = &snapshot.breakers[0];
    let r = &snapshot.retries[0];
    ((b.calls, b.failures), (r.requests_total, r.retries_total))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap()
}

/// The attempts seen so far, and when the call started.
#[derive(Clone)]
struct Log {
    start: Instant,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

impl Log {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            attempts: Arc::default(),
        }
    }

    /// Records an attempt with `headers`; returns its number (from 0).
    fn record(&self, headers: &http::HeaderMap) -> usize {
        let deadline_ms = headers
            .get(DEADLINE_HEADER)
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let mut attempts = self.attempts.lock().unwrap();
        attempts.push(Attempt {
            at_ms: millis(self.start.elapsed()),
            deadline_ms,
        });
        attempts.len() - 1
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }
}

/// The step for attempt `n`: the script's last step repeats.
fn step(script: &[Step], n: usize) -> Step {
    script[n.min(script.len() - 1)]
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<String>, BoxError>> + Send>>;

async fn through_tower(case: &Case) -> Run {
    let layer = config(case.extra).into_layer("tower").unwrap().for_http();
    let log = Log::new();
    let upstream = {
        let log = log.clone();
        let script = case.script;
        service_fn(move |req: Request<String>| -> Answer {
            let n = log.record(req.headers());
            match step(script, n) {
                Status(status) => Box::pin(async move {
                    Ok(Response::builder()
                        .status(status)
                        .body(String::new())
                        .unwrap())
                }),
                RetryAfter(status, after) => Box::pin(async move {
                    Ok(Response::builder()
                        .status(status)
                        .header("retry-after", after)
                        .body(String::new())
                        .unwrap())
                }),
                Reset => Box::pin(async {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
                }),
                Hang => Box::pin(std::future::pending()),
            }
        })
    };
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(PropagateDeadlineLayer::new())
        .service(upstream);
    let result = client
        .oneshot(Request::get("/users/1").body(String::new()).unwrap())
        .await;
    let ended_at_ms = millis(log.start.elapsed());
    let end = match result {
        Ok(res) => End::Status(res.status().as_u16()),
        Err(err) => match Error::from_boxed(err) {
            Error::Timeout(_) => End::Timeout,
            Error::DeadlineExceeded(_) => End::DeadlineExceeded,
            Error::CircuitOpen(_) => End::CircuitOpen,
            Error::Inner(_) => End::Transport,
            other => panic!("{}: unexpected {other}", case.name),
        },
    };
    let (breaker, retry) = counts(&layer.snapshot());
    Run {
        attempts: log.attempts(),
        end,
        ended_at_ms,
        breaker,
        retry,
    }
}

async fn through_reqwest(case: &Case) -> Run {
    let server = ScriptedServer::start(case.script);
    let mw = ResilienceMiddleware::from_config("reqwest", &config(case.extra)).unwrap();
    let log = Log::new();
    let recorder = Recorder {
        log: log.clone(),
        script: case.script,
    };
    // No idle pool (its timer would be one more for the paused clock to jump to) and no proxy.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(client)
        .with(mw.clone())
        .with(recorder)
        .build();
    let result = client
        .get(format!("http://{}/users/1", server.addr))
        .send()
        .await;
    let ended_at_ms = millis(log.start.elapsed());
    let end = match result {
        Ok(res) => End::Status(res.status().as_u16()),
        Err(err) => match rejection(&err) {
            Some(Error::Timeout(_)) => End::Timeout,
            Some(Error::DeadlineExceeded(_)) => End::DeadlineExceeded,
            Some(Error::CircuitOpen(_)) => End::CircuitOpen,
            None if matches!(err, reqwest_middleware::Error::Reqwest(_)) => End::Transport,
            _ => panic!("{}: unexpected {err:?}", case.name),
        },
    };
    let (breaker, retry) = counts(&mw.snapshot());
    server.stop();
    Run {
        attempts: log.attempts(),
        end,
        ended_at_ms,
        breaker,
        retry,
    }
}

/// The header that tells the scripted server which step an attempt is.
const STEP_HEADER: &str = "x-script-step";

/// Inside `ResilienceMiddleware`: records each attempt, tells the server its step, and keeps
/// the paused clock still while an attempt that will be answered waits on its socket.
struct Recorder {
    log: Log,
    script: &'static [Step],
}

impl Recorder {
    async fn run(
        &self,
        mut req: reqwest::Request,
        ext: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let n = self.log.record(req.headers());
        req.headers_mut()
            .insert(STEP_HEADER, http::HeaderValue::from(n));
        let _still = match step(self.script, n) {
            Hang => None,
            _ => Some(ClockStill::new()),
        };
        next.run(req, ext).await
    }
}

impl Middleware for Recorder {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        req: reqwest::Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> Pin<
        Box<
            dyn Future<Output = reqwest_middleware::Result<reqwest::Response>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.run(req, extensions, next))
    }
}

/// While alive, a blocking task runs, and tokio does not auto-advance a paused clock.
struct ClockStill {
    _release: std::sync::mpsc::Sender<()>,
}

impl ClockStill {
    fn new() -> Self {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        // Ends when `release` is dropped.
        drop(tokio::task::spawn_blocking(move || wait.recv()));
        Self { _release: release }
    }
}

/// An HTTP/1.1 server on 127.0.0.1 acting out a script, on a runtime (and clock) of its own.
struct ScriptedServer {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ScriptedServer {
    fn start(script: &'static [Step]) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let (stream, _) = accepted.unwrap();
                            tokio::spawn(serve(stream, script));
                        }
                    }
                }
            });
        });
        Self { addr, stop, thread }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().unwrap();
    }
}

/// Acts out the step the request names.
async fn serve(mut stream: tokio::net::TcpStream, script: &'static [Step]) {
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return, // the client gave up before sending it all
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let n: usize = head
        .lines()
        .find_map(|line| line.strip_prefix(STEP_HEADER)?.strip_prefix(':'))
        .expect("every attempt names its step")
        .trim()
        .parse()
        .unwrap();
    let answer = |status: u16, extra: &str| {
        format!(
            "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n"
        )
    };
    match step(script, n) {
        Status(status) => {
            let _ = stream.write_all(answer(status, "").as_bytes()).await;
        }
        RetryAfter(status, after) => {
            let extra = format!("retry-after: {after}\r\n");
            let _ = stream.write_all(answer(status, &extra).as_bytes()).await;
        }
        Reset => {
            // RST rather than FIN: the client sees "connection reset".
            stream.set_zero_linger().unwrap();
        }
        Hang => {
            // Until the client gives up and closes.
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        }
    }
}
