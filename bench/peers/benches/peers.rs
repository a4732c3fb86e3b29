//! Criterion over every case of `src/lib.rs`, each with one thread and with two threads that
//! share one service through clones of it.
//!
//! Both variants time the same loop. The figure is per call and per thread: for two threads,
//! the slower thread's time for its `iters` calls made while the other makes as many, so 2x
//! the 1-thread figure means the threads serialise completely. Time is wall time;
//! `PEERS_CLOCK=cpu` uses each thread's CPU time instead (see `Clock`).
//!
//! `run.sh` runs this and prints the table (`report.py`).

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

/// Which clock times a sample: wall time (default), or the thread's CPU time
/// (`PEERS_CLOCK=cpu`), which leaves out the time the thread was preempted: steadier 1-thread
/// figures on a machine shared with other work, but two threads that are seldom scheduled at
/// the same time then hardly contend, so the 2-thread figures need a quiet machine either way.
#[derive(Clone, Copy, PartialEq)]
enum Clock {
    ThreadCpu,
    Wall,
}

fn clock() -> Clock {
    match std::env::var("PEERS_CLOCK").as_deref() {
        Ok("cpu") => Clock::ThreadCpu,
        _ => Clock::Wall,
    }
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; this clock id exists on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `iters` calls through `svc`, timed: the one loop both variants measure.
#[inline(never)]
fn timed_calls<S: Service<u64>>(svc: &mut S, iters: u64, clock: Clock) -> Duration {
    let mut cx = Context::from_waker(Waker::noop());
    #[allow(clippy::disallowed_types)]
    let wall = std::time::Instant::now();
    let cpu = if clock == Clock::ThreadCpu {
        thread_cpu_time()
    } else {
        Duration::ZERO
    };
    for i in 0..iters {
        black_box(drive(svc, &mut cx, black_box(i)).is_ok());
    }
    match clock {
        Clock::ThreadCpu => thread_cpu_time() - cpu,
        Clock::Wall => wall.elapsed(),
    }
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
            b.iter_custom(|iters| timed_calls(&mut svc, iters, clock()))
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
                            timed_calls(&mut svc, iters, clock())
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
