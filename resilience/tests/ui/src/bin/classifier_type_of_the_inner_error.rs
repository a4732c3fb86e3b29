//! A classifier type for the inner error, handed to something that needs a service.
use resilience_layers::{Classify, Outcome, stack::StackConfig};
use tower::{Service, ServiceBuilder, service_fn};

#[derive(Clone)]
struct IoClassifier;

impl Classify<u32, std::io::Error> for IoClassifier {
    fn classify(&self, result: Result<&u32, &std::io::Error>) -> Outcome {
        if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

fn serve<S: Service<u32>>(_: S) {}

fn main() {
    let layer = StackConfig::default()
        .into_layer("x")
        .unwrap()
        .with_classifier(IoClassifier);
    serve(
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(
                |x: u32| async move { Ok::<_, std::io::Error>(x) },
            )),
    );
}
