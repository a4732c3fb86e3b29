//! Per-call overhead of `resilience`'s layers next to its peers, on one bare service.
//!
//! Every case wraps the same `service_fn(|x: u64| async move { Ok(x) })`, drives it by hand
//! (`poll_ready`, `call`, poll the future) with `Waker::noop()` on the benchmark's own threads,
//! inside the context of one tokio runtime (time enabled; its single worker only drives the
//! timer wheel). Futures that return `Pending` (an async mutex held by the other thread, a
//! timer) are polled again until ready, so nothing parks.
//!
//! Each case runs with one thread and with two threads that share one service through
//! clones of it; for two threads the figure is the time per call on each thread (the wall
//! time of `iters` calls made by each thread at once), so 2x the 1-thread figure means the
//! threads serialise completely.
//!
//! The cases are in `src/lib.rs`; `run.sh` runs this and prints the table (`report.py`).

use std::hint::black_box;
use std::sync::Barrier;
use std::task::{Context, Waker};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use peers_bench::{Expect, Visit, cases, check, drive, runtime};
use tokio::runtime::Runtime;
use tower::Service;

struct Bench<'a> {
    c: &'a mut Criterion,
    rt: &'a Runtime,
}

impl Visit for Bench<'_> {
    fn case<S>(&mut self, group: &str, name: &str, expect: Expect, svc: S)
    where
        S: Service<u64> + Clone + Send,
    {
        bench_case(self.c, self.rt, group, name, expect, svc);
    }
}

/// `iters` calls through `svc`, timed: the one loop both variants measure.
#[inline(never)]
fn timed_calls<S: Service<u64>>(svc: &mut S, iters: u64) -> Duration {
    let mut cx = Context::from_waker(Waker::noop());
    #[allow(clippy::disallowed_types)]
    let start = std::time::Instant::now();
    for i in 0..iters {
        black_box(drive(svc, &mut cx, black_box(i)).is_ok());
    }
    start.elapsed()
}

/// Benchmarks `svc` with one thread and with two threads sharing clones of it; both time
/// the same loop (`timed_calls`), on a clone made and checked before timing starts.
fn bench_case<S>(c: &mut Criterion, rt: &Runtime, group: &str, name: &str, expect: Expect, svc: S)
where
    S: Service<u64> + Clone + Send,
{
    let case = format!("{group}/{name}");
    let _guard = rt.enter();
    let mut g = c.benchmark_group(group);
    {
        let mut svc = svc.clone();
        let mut cx = Context::from_waker(Waker::noop());
        check(&drive(&mut svc, &mut cx, 0), expect, &case);
        g.bench_function(BenchmarkId::new(name, "1t"), |b| {
            b.iter_custom(|iters| timed_calls(&mut svc, iters))
        });
    }
    g.bench_function(BenchmarkId::new(name, "2t"), |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(2);
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        let mut svc = svc.clone();
                        let barrier = &barrier;
                        let case = &case;
                        s.spawn(move || {
                            let _guard = rt.enter();
                            let mut cx = Context::from_waker(Waker::noop());
                            check(&drive(&mut svc, &mut cx, 0), expect, case);
                            barrier.wait();
                            timed_calls(&mut svc, iters)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("bench thread"))
                    .max()
                    .unwrap_or_default()
            })
        })
    });
    g.finish();
}

fn peers(c: &mut Criterion) {
    let rt = runtime();
    cases(&rt, &mut Bench { c, rt: &rt });
}

criterion_group!(benches, peers);
criterion_main!(benches);
