//! Reloading the resilience stack from its file on SIGHUP, keeping the running state.
//!
//! `kill -HUP <pid>` makes order-service read `RESILIENCE_CONFIG` again. A file that parses,
//! validates and can be applied while running replaces the settings of the running stack
//! (every per-instance breaker keeps its state, the bulkhead honours permits in use, the
//! retry budget is kept): one `INFO` line lists each field that changed, old and new. Any
//! other file is refused with one `ERROR` line naming the file and the field
//! (`invalid `retry.max_attempts`: must be greater than zero`), and the running settings
//! stay. Either way `config_reloads_total{result="ok"|"error"}` counts it.

use std::{collections::BTreeMap, path::Path, path::PathBuf};

use resilience_layers::stack::StackConfig;
use tokio::task::JoinHandle;

use crate::{config::load_stack, users::UserClient};

/// Reads the stack from `path` and applies it to `users`; returns the fields that changed
/// (`"bulkhead.max_concurrent: 64 -> 32"`), or why the file was refused. Logs and counts
/// the outcome as the [module docs](self) say; this is what the SIGHUP handler calls.
pub fn reload(path: &Path, users: &UserClient) -> Result<Vec<String>, String> {
    let result = apply(path, users);
    let label = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!("config_reloads_total", "result" => label).increment(1);
    match &result {
        Ok(changes) if changes.is_empty() => {
            tracing::info!(file = %path.display(), "resilience config reloaded: nothing changed");
        }
        Ok(changes) => {
            tracing::info!(file = %path.display(), changes = %changes.join("; "), "resilience config reloaded");
        }
        Err(e) => {
            tracing::error!(error = %e, "resilience config reload refused; the running config stays");
        }
    }
    result
}

fn apply(path: &Path, users: &UserClient) -> Result<Vec<String>, String> {
    let running = users
        .stack_config()
        .ok_or("the resilience stack is off (RESILIENCE=off): nothing to reload")?;
    let new = load_stack(path)?;
    users
        .reconfigure(&new)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(changes(&running, &new))
}

/// Each field whose value differs, as `path: old -> new` (`unset` for an absent one).
pub fn changes(old: &StackConfig, new: &StackConfig) -> Vec<String> {
    let (old, new) = (flatten(old), flatten(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            let show = |m: &BTreeMap<String, String>| {
                m.get(k).cloned().unwrap_or_else(|| "unset".to_owned())
            };
            format!("{k}: {} -> {}", show(&old), show(&new))
        })
        .collect()
}

fn flatten(config: &StackConfig) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (k, v) in fields {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            serde_json::Value::Null => {}
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    let value = serde_json::to_value(config).expect("a stack config serializes");
    walk("", &value, &mut out);
    out
}

/// Describes the reload counter (HELP text for `/metrics`).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "config_reloads_total",
        "Reloads of the RESILIENCE_CONFIG file on SIGHUP, by result (ok, or error: refused, \
         the running config kept)."
    );
}

/// Reloads `path` into `users` on every SIGHUP, until the task is aborted. Without a file
/// (the built-in stack) a SIGHUP is logged, counted as an error and otherwise ignored, rather
/// than ending the process as an unhandled SIGHUP would.
pub fn on_sighup(path: Option<PathBuf>, users: UserClient) -> std::io::Result<JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match &path {
                Some(path) => {
                    tracing::info!(file = %path.display(), "SIGHUP received: reloading the resilience config");
                    let _ = reload(path, &users);
                }
                None => {
                    metrics::counter!("config_reloads_total", "result" => "error").increment(1);
                    tracing::warn!(
                        "SIGHUP received, but RESILIENCE_CONFIG names no file: nothing to reload"
                    );
                }
            }
        }
    }))
}
