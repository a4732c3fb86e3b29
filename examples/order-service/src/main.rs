//! order-service: reads config, then [`service_kit::serve::run`] opens the store, starts the
//! pending-order verifier, the sweeper of expired idempotency keys and the SIGHUP reload of
//! the stack's `RESILIENCE_CONFIG` file, and serves until SIGTERM/SIGINT.

use std::process::ExitCode;

use order_service::{
    AppState, Config, SERVICE, app, idempotency::Sweeper, reload, store::MIGRATIONS, verifier,
};
use service_kit::serve::Started;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match service_kit::config::load(SERVICE, Config::from_env) {
        Ok(c) => c,
        Err(code) => return code,
    };
    service_kit::serve::run(SERVICE, &config.common, &MIGRATIONS, |store| {
        let state = AppState::new(store, &config)?;
        let upstreams: Vec<String> = config
            .user_service_urls
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!(
            upstreams = ?upstreams,
            degraded = ?config.degraded,
            resilience = config.stack.is_some(),
            "calling user-service"
        );
        let sweeper = Sweeper::new(state.store.clone(), config.idempotency_retention);
        tracing::info!(
            retention = ?config.idempotency_retention,
            every = ?sweeper.interval(),
            "idempotency keys expire"
        );
        let mut background = vec![
            verifier::spawn(state.clone(), config.pending_recheck),
            sweeper.spawn(),
        ];
        let reloader = reload::on_sighup(config.stack_file.clone(), state.users.clone())
            .map_err(|e| format!("SIGHUP handler: {e}"))?;
        if let Some(file) = &config.stack_file {
            tracing::info!(file = %file.display(), "SIGHUP reloads the resilience config");
        }
        background.push(reloader);
        Ok(Started {
            readiness: state.readiness.clone(),
            background,
            app: app(state),
        })
    })
    .await
}
