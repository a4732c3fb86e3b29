//! user-service: reads config, then [`service_kit::serve::run`] opens the store and serves
//! until SIGTERM/SIGINT.

use std::process::ExitCode;

use service_kit::serve::Started;
use user_service::{AppState, Config, SERVICE, app, store::MIGRATIONS};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match service_kit::config::load(SERVICE, Config::from_env) {
        Ok(c) => c,
        Err(code) => return code,
    };
    service_kit::serve::run(SERVICE, &config.common, &MIGRATIONS, |store| {
        let state = AppState::new(store, &config);
        Ok(Started {
            readiness: state.readiness.clone(),
            app: app(state),
            background: Vec::new(),
        })
    })
    .await
}
