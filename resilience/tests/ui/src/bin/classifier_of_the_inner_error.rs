//! A stack classifier written for the inner service's error type instead of `&BoxError`.
use resilience_layers::{Outcome, stack::StackConfig};
use tower::{Service, ServiceBuilder, service_fn};

fn main() {
    let layer = StackConfig::default()
        .into_layer("x")
        .unwrap()
        .with_classifier(|result: Result<&u32, &std::io::Error>| match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        });
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(
            |x: u32| async move { Ok::<_, std::io::Error>(x) },
        ));
    let _ = svc.call(1);
}
