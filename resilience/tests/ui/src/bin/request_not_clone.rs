//! A request type that is not `Clone`, with the default clone hook.
use resilience_layers::stack::StackConfig;
use tower::{Service, ServiceBuilder, service_fn};

struct Job(u32);

fn serve<S: Service<Job>>(_: S) {}

fn main() {
    let layer = StackConfig::default().into_layer("jobs").unwrap();
    serve(
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|job: Job| async move {
                Ok::<_, std::io::Error>(job.0)
            })),
    );
}
