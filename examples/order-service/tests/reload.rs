//! Reloading `RESILIENCE_CONFIG` while running: order-service served on port 0 in this
//! process, its file changed, the reload applied (by the function the SIGHUP handler calls,
//! and by a real SIGHUP), the new limits seen on `/resilience`, an invalid file refused with
//! the running config kept, and `config_reloads_total` counting both.
//!
//! The tests take turns ([`SERIAL`]): they share the process's metrics recorder, and a
//! SIGHUP reaches every handler in the process.

mod support;

use std::{path::PathBuf, time::Duration};

use order_service::{AppState, Config, app, reload};
use serde_json::Value;
use service_kit::{config::Env, store::testing};
use support::UserInstance;
use tokio::net::TcpListener;

fn stack(max_concurrent: usize, max_attempts: u32, threshold: f64) -> String {
    format!(
        r#"
        deadline = "2s"
        [bulkhead]
        max_concurrent = {max_concurrent}
        [retry]
        max_attempts = {max_attempts}
        [circuit_breaker]
        failure_rate_threshold = {threshold}
        minimum_calls = 5
        "#
    )
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reload-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// order-service reading its stack from `file`, served on port 0; returns its base URL.
async fn start(file: &std::path::Path, user: &UserInstance) -> (String, AppState) {
    let mut config = Config::from_env(Env::from_pairs([(
        "RESILIENCE_CONFIG",
        file.to_str().unwrap(),
    )]))
    .unwrap();
    config.user_service_urls = vec![format!("http://{}/", user.addr).parse().unwrap()];
    let store = testing::sqlite(&order_service::store::MIGRATIONS).await;
    let state = AppState::new(store, &config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}"), state)
}

async fn bulkhead_limit(base: &str) -> u64 {
    let report: Value = reqwest::get(format!("{base}/resilience"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    report["bulkheads"][0]["max_concurrent"]
        .as_u64()
        .unwrap_or_else(|| panic!("no bulkhead in {report}"))
}

/// `config_reloads_total{result}` and the HELP line's presence, from `/metrics`.
async fn reloads(base: &str, result: &str) -> (u64, bool) {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("config_reloads_total{{result=\"{result}\"}} ");
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap());
    (count, text.contains("# HELP config_reloads_total"))
}

#[tokio::test]
async fn a_changed_file_is_applied_and_an_invalid_one_refused() {
    let _turn = SERIAL.lock().await;
    let user = UserInstance::start().await;
    let file = temp_file("stack.toml");
    std::fs::write(&file, stack(8, 2, 50.0)).unwrap();
    let (base, state) = start(&file, &user).await;
    assert_eq!(bulkhead_limit(&base).await, 8);
    let (ok_before, _) = reloads(&base, "ok").await;
    let (errors_before, _) = reloads(&base, "error").await;
    // A lookup makes the per-instance breaker count a call, so its state is there to keep.
    let _ = state.users.lookup(1, None).await;
    let calls_before = state.users.snapshot().breakers[0].calls;
    assert_eq!(calls_before, 1);

    std::fs::write(&file, stack(16, 3, 25.0)).unwrap();
    let changes = reload::reload(&file, &state.users).unwrap();
    assert_eq!(
        changes,
        [
            "bulkhead.max_concurrent: 8 -> 16",
            "circuit_breaker.failure_rate_threshold: 50.0 -> 25.0",
            "retry.max_attempts: 2 -> 3",
        ]
    );
    assert_eq!(bulkhead_limit(&base).await, 16);
    let running = state.users.stack_config().unwrap();
    assert_eq!(running.retry.unwrap().max_attempts, 3);
    assert_eq!(
        running.circuit_breaker.unwrap().failure_rate_threshold,
        25.0
    );
    assert_eq!(
        state.users.snapshot().breakers[0].calls,
        calls_before,
        "the breaker kept its window"
    );

    // Invalid: refused with the field's path, the running config stays.
    std::fs::write(&file, stack(4, 0, 25.0)).unwrap();
    let err = reload::reload(&file, &state.users).unwrap_err();
    assert!(err.contains("retry.max_attempts"), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    // Valid but not appliable live: refused too, saying why.
    std::fs::write(&file, stack(4, 3, 25.0).replace("2s", "3s")).unwrap();
    let err = reload::reload(&file, &state.users).unwrap_err();
    assert!(err.contains("deadline") && err.contains("restart"), "{err}");
    std::fs::write(&file, "not = [toml").unwrap();
    assert!(reload::reload(&file, &state.users).is_err());
    assert_eq!(
        bulkhead_limit(&base).await,
        16,
        "still the last good config"
    );

    // Unchanged: nothing to list.
    std::fs::write(&file, stack(16, 3, 25.0)).unwrap();
    assert_eq!(
        reload::reload(&file, &state.users).unwrap(),
        Vec::<String>::new()
    );

    let (ok, described) = reloads(&base, "ok").await;
    assert_eq!(ok - ok_before, 2);
    assert_eq!(reloads(&base, "error").await.0 - errors_before, 3);
    assert!(described, "HELP text for config_reloads_total");
}

#[tokio::test]
async fn sighup_reloads_the_file() {
    let _turn = SERIAL.lock().await;
    let user = UserInstance::start().await;
    let file = temp_file("stack.toml");
    std::fs::write(&file, stack(8, 2, 50.0)).unwrap();
    let (base, state) = start(&file, &user).await;
    let handler = reload::on_sighup(Some(file.clone()), state.users.clone()).unwrap();

    std::fs::write(&file, stack(12, 2, 50.0)).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The signal arrives asynchronously: wait for it, bounded.
    tokio::time::timeout(Duration::from_secs(10), async {
        while bulkhead_limit(&base).await != 12 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the SIGHUP reload applied the new limit");
    handler.abort();
}
