//! The registry's bounds and what an evicted key frees, on a paused clock.

use std::time::Duration;

use tower::{Layer, ServiceExt, service_fn};

use super::{KeyedConfig, KeyedLayer};
use crate::{Error, circuit_breaker::CircuitState, stack::StackConfig};

fn breaker_config() -> StackConfig {
    toml::from_str("[circuit_breaker]\nconsecutive_failures = 2").unwrap()
}

/// A layer keyed by the request itself (a `&'static str` naming its key).
fn layer(max_keys: usize) -> KeyedLayer<&'static str, fn(&&'static str) -> &'static str> {
    let keyed = KeyedConfig {
        max_keys,
        idle: Duration::from_secs(60),
    };
    let by_request: fn(&&'static str) -> &'static str = |key| *key;
    KeyedLayer::new("t", breaker_config(), keyed, by_request).unwrap()
}

/// Calls through `layer` with request `key`; the service fails for keys starting with `bad`.
async fn call(
    layer: &KeyedLayer<&'static str, fn(&&'static str) -> &'static str>,
    key: &'static str,
) -> Result<(), Error> {
    let svc = layer.layer(service_fn(|key: &'static str| async move {
        if key.starts_with("bad") {
            Err(std::io::Error::other("down"))
        } else {
            Ok(())
        }
    }));
    svc.oneshot(key).await.map_err(Error::from_boxed)
}

fn keys(layer: &KeyedLayer<&'static str, fn(&&'static str) -> &'static str>) -> Vec<&'static str> {
    layer.entries().into_iter().map(|(k, _)| k).collect()
}

fn state(
    layer: &KeyedLayer<&'static str, fn(&&'static str) -> &'static str>,
    key: &'static str,
) -> CircuitState {
    layer.get(&key).unwrap().circuit_breaker().unwrap().state()
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_breaker() {
    let layer = layer(8);
    for _ in 0..2 {
        assert!(matches!(call(&layer, "bad-a").await, Err(Error::Inner(_))));
    }
    assert!(matches!(
        call(&layer, "bad-a").await,
        Err(Error::CircuitOpen(_))
    ));
    call(&layer, "b").await.unwrap();
    assert_eq!(state(&layer, "bad-a"), CircuitState::Open);
    assert_eq!(state(&layer, "b"), CircuitState::Closed);
    let names: Vec<_> = layer
        .snapshot()
        .breakers
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["t@b", "t@bad-a"]);
}

#[tokio::test(start_paused = true)]
async fn full_evicts_the_least_recently_used_and_pins_stay_on_top() {
    let layer = layer(2);
    layer.pin("pinned");
    call(&layer, "a").await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    call(&layer, "b").await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    call(&layer, "a").await.unwrap(); // `b` is now the least recently used
    tokio::time::advance(Duration::from_secs(1)).await;
    call(&layer, "c").await.unwrap();
    assert_eq!(keys(&layer), ["a", "c", "pinned"]);
    assert_eq!(
        layer.len(),
        3,
        "two made by traffic, at most, plus the pinned one"
    );
    for key in ["d", "e", "f"] {
        tokio::time::advance(Duration::from_secs(1)).await;
        call(&layer, key).await.unwrap();
    }
    assert_eq!(keys(&layer), ["e", "f", "pinned"]);
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted_on_use_or_on_demand() {
    let layer = layer(8);
    layer.pin("pinned");
    call(&layer, "a").await.unwrap();
    call(&layer, "b").await.unwrap();
    tokio::time::advance(Duration::from_secs(40)).await;
    call(&layer, "b").await.unwrap();
    // `a` has been idle 61 s, `b` 21 s: traffic to any key sweeps `a` out, on time.
    tokio::time::advance(Duration::from_secs(21)).await;
    call(&layer, "c").await.unwrap();
    assert_eq!(keys(&layer), ["b", "c", "pinned"]);
    // No traffic at all: `evict_idle` does it.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(layer.evict_idle(), 2);
    assert_eq!(keys(&layer), ["pinned"]);
    // A key that comes back starts afresh.
    for _ in 0..2 {
        let _ = call(&layer, "bad-x").await;
    }
    assert_eq!(state(&layer, "bad-x"), CircuitState::Open);
    tokio::time::advance(Duration::from_secs(60)).await;
    layer.evict_idle();
    call(&layer, "c").await.unwrap();
    assert!(
        matches!(call(&layer, "bad-x").await, Err(Error::Inner(_))),
        "closed again"
    );
}

#[tokio::test(start_paused = true)]
async fn an_evicted_key_frees_its_name() {
    let layer = layer(8);
    for _ in 0..2 {
        let _ = call(&layer, "bad-freed-key").await;
    }
    // An error carrying the name outlives nothing: it is one more holder, that is all.
    let Err(Error::CircuitOpen(open)) = call(&layer, "bad-freed-key").await else {
        panic!("expected an open circuit");
    };
    let stack = layer.get(&"bad-freed-key").unwrap();
    let breaker = stack.circuit_breaker().unwrap();
    let name = breaker
        .name_for_tests()
        .downgrade()
        .expect("a key's name is transient");
    assert!(
        !crate::name::is_interned("t@bad-freed-key"),
        "never interned"
    );
    drop((stack, breaker));

    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(layer.evict_idle(), 1);
    assert!(layer.is_empty());
    assert_eq!(open.name(), "t@bad-freed-key");
    assert!(name.upgrade().is_some(), "the error still holds it");
    drop(open);
    assert!(name.upgrade().is_none(), "freed with its last holder");
}

#[tokio::test(start_paused = true)]
async fn bad_bounds_are_refused_by_field() {
    let zero = KeyedConfig {
        max_keys: 0,
        ..KeyedConfig::default()
    };
    let err = KeyedLayer::new("t", breaker_config(), zero, |k: &u8| *k).unwrap_err();
    assert_eq!(err.field(), "keyed.max_keys");
    let bad_stack: StackConfig = toml::from_str("[retry]\nmax_attempts = 0").unwrap();
    let err = KeyedLayer::new("t", bad_stack, KeyedConfig::default(), |k: &u8| *k).unwrap_err();
    assert_eq!(err.field(), "retry.max_attempts");
}
