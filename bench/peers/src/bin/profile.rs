//! Runs one case of the peers benchmark in a loop, for a profiler:
//!
//! ```text
//! cargo build --release --bin profile
//! valgrind --tool=callgrind target/release/profile stack/ours 200000
//! ```
//!
//! The case is `group/name` as in the table (`breaker_closed/ours`); 1 thread.

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
        for i in 0..self.iters {
            black_box(drive(&mut svc, &mut cx, black_box(i)).is_ok());
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let want = args.next().expect("usage: profile GROUP/NAME [ITERATIONS]");
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
