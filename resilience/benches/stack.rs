//! Per-call cost of each layer on a bare service (placeholder until the stack bench is written).
use criterion::{Criterion, criterion_group, criterion_main};

fn bare(c: &mut Criterion) {
    c.bench_function("noop", |b| b.iter(|| std::hint::black_box(1u64)));
}

criterion_group!(benches, bare);
criterion_main!(benches);
