//! order-service: reads config, then [`service_kit::serve::run`] opens the store, starts the
//! pending-order verifier and the sweeper of expired idempotency keys, and serves until
//! SIGTERM/SIGINT.

use std::process::ExitCode;

use order_service::{
    AppState, Config, SERVICE, app, idempotency::Sweeper, store::MIGRATIONS, verifier,
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
        Ok(Started {
            readiness: state.readiness.clone(),
            background: vec![
                verifier::spawn(state.clone(), config.pending_recheck),
                sweeper.spawn(),
            ],
            app: app(state),
        })
    })
    .await
}
