//! The cache on tokio's paused clock: coalescing, freshness, stale-if-error bounds, memory
//! bounds.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use resilience_layers::{
    BoxError, Outcome,
    cache::{CacheConfig, CacheLayer, CachePolicy, CacheStatus, Freshness, Served},
};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<AtomicU32>,
    down: Arc<AtomicBool>,
}

impl Upstream {
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Answers `"v{id}"` after 10 ms, or fails when down.
    fn service(
        &self,
    ) -> impl Service<u32, Response = String, Error = std::io::Error, Future: Send>
    + Clone
    + Send
    + 'static {
        let up = self.clone();
        service_fn(move |id: u32| {
            up.calls.fetch_add(1, Ordering::SeqCst);
            let down = up.down.load(Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if down {
                    Err(std::io::Error::other("down"))
                } else {
                    Ok(format!("v{id}"))
                }
            }
        })
    }
}

fn config() -> CacheConfig {
    CacheConfig {
        ttl: Duration::from_secs(10),
        stale_if_error: Duration::from_secs(20),
        ..CacheConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_misses_make_one_call() {
    let up = Upstream::default();
    let layer = CacheLayer::new("t", config(), |id: &u32| Some(*id)).unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(up.service());
    let answers = futures_util::future::join_all((0..100).map(|_| svc.clone().oneshot(1))).await;
    assert!(answers.iter().all(|a| a.as_deref().unwrap() == "v1"));
    assert_eq!(up.calls(), 1);
    let s = layer.handle().snapshot();
    assert_eq!((s.misses_total, s.coalesced_total), (1, 99));
    // Another key is another call.
    svc.clone().oneshot(2).await.unwrap();
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn fresh_hits_make_no_call_and_expiry_makes_one() {
    let up = Upstream::default();
    let layer = CacheLayer::new("t", config(), |id: &u32| Some(*id)).unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(up.service());
    svc.clone().oneshot(1).await.unwrap();
    tokio::time::advance(Duration::from_millis(9_900)).await;
    svc.clone().oneshot(1).await.unwrap();
    assert_eq!(up.calls(), 1);
    assert_eq!(layer.handle().snapshot().hits_total, 1);
    tokio::time::advance(Duration::from_millis(200)).await;
    svc.clone().oneshot(1).await.unwrap();
    assert_eq!(up.calls(), 2, "past the ttl a call is made");
}

#[tokio::test(start_paused = true)]
async fn stale_is_served_on_error_within_the_bound_and_not_beyond() {
    let up = Upstream::default();
    let layer = CacheLayer::new("t", config(), |id: &u32| Some(*id)).unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(up.service());
    svc.clone().oneshot(1).await.unwrap(); // stored at t = 10 ms
    up.down.store(true, Ordering::SeqCst);
    // Fresh: no call at all, even though the upstream is down.
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "v1");
    assert_eq!(up.calls(), 1);
    // Stale (15 s old): the call fails, the stale answer is served.
    tokio::time::advance(Duration::from_secs(15)).await;
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "v1");
    assert_eq!(up.calls(), 2);
    // 29.9 s old (the call adds 10 ms): still within ttl + stale_if_error = 30 s.
    tokio::time::advance(Duration::from_millis(14_880)).await;
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "v1");
    assert_eq!(layer.handle().snapshot().stale_total, 2);
    // Beyond the bound: the error itself.
    tokio::time::advance(Duration::from_millis(100)).await;
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "down");
    // A key never seen gets the error as well.
    assert!(svc.clone().oneshot(2).await.is_err());
    assert_eq!(layer.handle().snapshot().stale_total, 2);
}

#[tokio::test(start_paused = true)]
async fn errors_and_ignored_results_are_not_stored() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    // 0 is "not found" (ignored), odd ids fail, even ids succeed.
    let inner = service_fn(move |id: u32| {
        c.fetch_add(1, Ordering::SeqCst);
        async move {
            if id % 2 == 1 {
                Err::<u32, _>(std::io::Error::other("boom"))
            } else {
                Ok(id)
            }
        }
    });
    let layer = CacheLayer::new("t", config(), |id: &u32| Some(*id))
        .unwrap()
        .with_classifier(|r: Result<&u32, &BoxError>| match r {
            Ok(0) => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        });
    let svc = ServiceBuilder::new().layer(layer.clone()).service(inner);
    for _ in 0..2 {
        assert!(svc.clone().oneshot(1).await.is_err());
        assert_eq!(svc.clone().oneshot(0).await.unwrap(), 0);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    layer.handle().run_pending_tasks().await;
    assert_eq!(layer.handle().snapshot().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_answered_stale() {
    use resilience_layers::stack::StackConfig;
    let up = Upstream::default();
    let stack: StackConfig = toml::from_str(
        "[circuit_breaker]\nminimum_calls = 2\nwindow = { kind = \"count\", size = 2 }",
    )
    .unwrap();
    let stack = stack.into_layer("t-cb").unwrap();
    let cache = CacheLayer::new("t-cb", config(), |id: &u32| Some(*id)).unwrap();
    let svc = ServiceBuilder::new()
        .layer(cache.clone())
        .layer(stack.clone())
        .service(up.service());
    svc.clone().oneshot(1).await.unwrap();
    up.down.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(11)).await;
    for _ in 0..4 {
        assert_eq!(svc.clone().oneshot(1).await.unwrap(), "v1");
    }
    // One success and one failure in a window of 2 is a 50 % failure rate: the circuit
    // opened after the first failed call, and the three answers after it cost no call.
    assert_eq!(up.calls(), 2);
    assert_eq!(cache.handle().snapshot().stale_total, 4);
}

/// Weighs a response by its length; `no-store` for "secret", a short `max-age` for "short".
#[derive(Clone)]
struct Lengths;

impl CachePolicy<String> for Lengths {
    fn weigh(&self, response: &String) -> u64 {
        response.len() as u64
    }
    fn freshness(&self, response: &String) -> Freshness {
        match response.as_str() {
            "secret" => Freshness::NoStore,
            "short" => Freshness::For(Duration::from_secs(1)),
            _ => Freshness::Default,
        }
    }
    fn mark(&self, response: &mut String, status: &CacheStatus) {
        if status.served == Served::Stale {
            response.push_str(" (stale)");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn no_store_is_not_stored_and_max_age_is_honoured() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let inner = service_fn(move |word: &'static str| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, std::io::Error>(word.to_string()) }
    });
    let layer = CacheLayer::new("t", config(), |w: &&'static str| Some(*w))
        .unwrap()
        .with_policy(Lengths);
    let svc = ServiceBuilder::new().layer(layer.clone()).service(inner);
    svc.clone().oneshot("secret").await.unwrap();
    svc.clone().oneshot("secret").await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "no-store: every request calls"
    );
    svc.clone().oneshot("short").await.unwrap();
    svc.clone().oneshot("short").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    tokio::time::advance(Duration::from_millis(1_001)).await;
    svc.clone().oneshot("short").await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "max-age 1 s beats the 10 s ttl"
    );
}

#[tokio::test(start_paused = true)]
async fn entries_and_bytes_stay_within_their_bounds() {
    let inner = service_fn(|id: u32| async move {
        // 10 to 109 bytes.
        Ok::<_, std::io::Error>("x".repeat(10 + (id % 100) as usize))
    });
    let config = CacheConfig {
        max_entries: 50,
        max_bytes: 2_000,
        ..config()
    };
    let layer = CacheLayer::new("t", config, |id: &u32| Some(*id))
        .unwrap()
        .with_policy(Lengths);
    let svc = ServiceBuilder::new().layer(layer.clone()).service(inner);
    for id in 0..2_000 {
        svc.clone().oneshot(id).await.unwrap();
    }
    let handle = layer.handle();
    handle.run_pending_tasks().await;
    let s = handle.snapshot();
    assert!(s.entries <= 50, "{s:?}");
    assert!(s.bytes <= 2_000, "{s:?}");
    assert!(handle.weighted_size() <= 2_000);
    assert!(s.entries > 0);
    // Small answers: the entry bound binds (2,000 / 50 = 40 bytes a slot).
    let small = CacheLayer::new(
        "t-small",
        CacheConfig {
            max_entries: 10,
            max_bytes: 1_000_000,
            ..CacheConfig::default()
        },
        |id: &u32| Some(*id),
    )
    .unwrap();
    let svc = ServiceBuilder::new()
        .layer(small.clone())
        .service(service_fn(
            |id: u32| async move { Ok::<_, std::io::Error>(id) },
        ));
    for id in 0..1_000 {
        svc.clone().oneshot(id).await.unwrap();
    }
    small.handle().run_pending_tasks().await;
    assert!(small.handle().snapshot().entries <= 10);
}

#[tokio::test(start_paused = true)]
async fn stale_answers_are_marked() {
    let down = Arc::new(AtomicBool::new(false));
    let d = down.clone();
    let inner = service_fn(move |_: u32| {
        let down = d.load(Ordering::SeqCst);
        async move {
            if down {
                Err(std::io::Error::other("down"))
            } else {
                Ok("v".to_string())
            }
        }
    });
    let layer = CacheLayer::new("t", config(), |id: &u32| Some(*id))
        .unwrap()
        .with_policy(Lengths);
    let svc = ServiceBuilder::new().layer(layer).service(inner);
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "v");
    down.store(true, Ordering::SeqCst);
    assert_eq!(
        svc.clone().oneshot(1).await.unwrap(),
        "v",
        "a fresh hit is not stale"
    );
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "v (stale)");
}

#[tokio::test(start_paused = true)]
async fn a_leader_given_up_does_not_strand_its_waiters() {
    let up = Upstream::default();
    let layer = CacheLayer::new("t", config(), |id: &u32| Some(*id)).unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(up.service());
    let mut leader = tokio_test::task::spawn(svc.clone().oneshot(1));
    tokio_test::assert_pending!(leader.poll());
    let waiter = tokio::spawn(svc.clone().oneshot(1));
    tokio::task::yield_now().await;
    drop(leader);
    assert_eq!(waiter.await.unwrap().unwrap(), "v1");
    assert_eq!(up.calls(), 2);
}

#[cfg(feature = "http")]
mod http_edge {
    use super::*;
    use resilience_layers::http::{HttpCachePolicy, HttpClassifier, request_cache_key};

    type Req = http::Request<()>;
    type Res = http::Response<String>;

    /// `/store` answers `max-age=2`, `/secret` `no-store`, `/missing` 404; 503 when down.
    fn upstream(
        calls: Arc<AtomicU32>,
        down: Arc<AtomicBool>,
    ) -> impl Service<Req, Response = Res, Error = std::io::Error, Future: Send> + Clone + Send + 'static
    {
        service_fn(move |req: Req| {
            calls.fetch_add(1, Ordering::SeqCst);
            let down = down.load(Ordering::SeqCst);
            async move {
                let mut res = http::Response::builder();
                res = match req.uri().path() {
                    _ if down => res.status(503),
                    "/store" => res.header("cache-control", "max-age=2"),
                    "/secret" => res.header("cache-control", "no-store"),
                    _ => res.status(404),
                };
                Ok(res.body("body".to_string()).unwrap())
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn cache_control_age_and_cache_status() {
        let (calls, down) = (
            Arc::new(AtomicU32::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let layer = CacheLayer::new("t-http", config(), request_cache_key::<()>)
            .unwrap()
            .with_policy(HttpCachePolicy::default())
            .with_classifier(HttpClassifier::default());
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service(upstream(calls.clone(), down.clone()));
        let get = |path: &str| http::Request::get(path).body(()).unwrap();
        let n = || calls.load(Ordering::SeqCst);

        // max-age honoured: fresh for 2 s (not the configured 10 s).
        let first = svc.clone().oneshot(get("/store")).await.unwrap();
        assert!(
            first.headers().get("cache-status").is_none(),
            "a miss is not marked"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let hit = svc.clone().oneshot(get("/store")).await.unwrap();
        assert_eq!(n(), 1);
        assert_eq!(hit.headers()["age"], "1");
        assert_eq!(hit.headers()["cache-status"], "resilience; hit; ttl=1");
        assert_eq!(
            hit.extensions().get::<CacheStatus>().unwrap().served,
            Served::Hit
        );
        tokio::time::advance(Duration::from_millis(1_500)).await;
        svc.clone().oneshot(get("/store")).await.unwrap();
        assert_eq!(n(), 2, "past max-age a call is made");

        // no-store and 404: never stored.
        for _ in 0..2 {
            svc.clone().oneshot(get("/secret")).await.unwrap();
            assert_eq!(
                svc.clone().oneshot(get("/missing")).await.unwrap().status(),
                404
            );
        }
        assert_eq!(n(), 6);

        // 503 from the upstream (a failure to HttpClassifier): answered stale, marked.
        down.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(5)).await;
        let stale = svc.clone().oneshot(get("/store")).await.unwrap();
        assert_eq!(stale.status(), 200);
        assert_eq!(stale.headers()["age"], "5");
        assert_eq!(
            stale.headers()["cache-status"],
            "resilience; hit; ttl=-3; detail=stale-if-error"
        );
        assert!(stale.headers().contains_key("warning"));
        // The unseen 404 path gets the upstream's 503 as it is.
        assert_eq!(
            svc.clone().oneshot(get("/missing")).await.unwrap().status(),
            503
        );
        // POST is not cached at all.
        let post = http::Request::post("/store").body(()).unwrap();
        assert_eq!(svc.clone().oneshot(post).await.unwrap().status(), 503);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_from_the_fallback_is_never_stored() {
        use resilience_layers::fallback::{FallbackOutcome, FromFallback};
        let calls = Arc::new(AtomicU32::new(0));
        let layer = CacheLayer::new("t-http-fallback", config(), request_cache_key::<()>)
            .unwrap()
            .with_policy(HttpCachePolicy::default())
            .with_classifier(HttpClassifier::default());
        let counted = calls.clone();
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(move |_: Req| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut res = http::Response::new("degraded".to_string());
                    res.extensions_mut().insert(FromFallback {
                        outcome: FallbackOutcome::CircuitOpen,
                    });
                    Ok::<_, std::io::Error>(res)
                }
            }));
        for _ in 0..3 {
            let res = svc
                .clone()
                .oneshot(http::Request::get("/users/1").body(()).unwrap())
                .await
                .unwrap();
            assert!(res.headers().get("cache-status").is_none());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "each call went through");
    }
}
