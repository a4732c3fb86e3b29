//! Runs one case of the peers benchmark in a loop, for a profiler:
//!
//! ```text
//! cargo build --release --bin profile
//! valgrind --tool=callgrind target/release/profile stack/ours 200000
//! ```
//!
//! The case is `group/name` as in the table (`breaker_closed/ours`); 1 thread.
//! `profile --list` prints every case.

use std::hint::black_box;
use std::task::{Context, Waker};

use peers_bench::{Expect, Visit, cases, check, drive, runtime};
use tower::Service;

struct Run {
    want: String,
    iters: u64,
    found: bool,
}

impl Visit for Run {
    fn case<S>(&mut self, group: &str, name: &str, expect: Expect, mut svc: S)
    where
        S: Service<u64> + Clone + Send,
    {
        if format!("{group}/{name}") != self.want {
            return;
        }
        self.found = true;
        let mut cx = Context::from_waker(Waker::noop());
        check(&drive(&mut svc, &mut cx, 0), expect, &self.want);
        let _ = svc.poll_ready(&mut cx);
        let fut = svc.call(0);
        eprintln!(
            "{}: service {} bytes, response future {} bytes",
            self.want,
            std::mem::size_of_val(&svc),
            std::mem::size_of_val(&fut)
        );
        drop(fut);
        measured_loop(&mut svc, self.iters);
    }
}

/// The calls being profiled, in a function of their own so callgrind can count only them
/// (`--toggle-collect=profile::measured_loop*`).
#[inline(never)]
fn measured_loop<S: Service<u64>>(svc: &mut S, iters: u64) {
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..iters {
        black_box(drive(svc, &mut cx, black_box(i)).is_ok());
    }
}

/// Collects the ids of every case.
struct List(Vec<String>);

impl Visit for List {
    fn case<S>(&mut self, group: &str, name: &str, _expect: Expect, _svc: S)
    where
        S: Service<u64> + Clone + Send,
    {
        self.0.push(format!("{group}/{name}"));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let want = args
        .next()
        .expect("usage: profile GROUP/NAME [ITERATIONS] | profile --list");
    if want == "--list" {
        let rt = runtime();
        let _guard = rt.enter();
        let mut list = List(Vec::new());
        cases(&rt, &mut list);
        println!("{}", list.0.join("\n"));
        return;
    }
    let iters = args
        .next()
        .map_or(100_000, |n| n.parse().expect("iterations"));
    let rt = runtime();
    let _guard = rt.enter();
    let mut run = Run {
        want,
        iters,
        found: false,
    };
    cases(&rt, &mut run);
    assert!(run.found, "no such case: {}", run.want);
}
