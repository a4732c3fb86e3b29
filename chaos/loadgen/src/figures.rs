//! Figures from the attempt log, the chaos events and the observed breaker states.
//!
//! Pure functions over recorded data, so each figure is unit-tested on a
//! hand-written log rather than on a live run.

use serde::Serialize;

use crate::model::{Attempt, AttemptResult, BreakerObservation, ChaosEvent};

/// A failure answered this fast counts as failing fast (an open circuit, a refused connection).
pub const FAST_FAIL_MS: f64 = 100.0;

/// Bin width used to find when success is back at baseline.
pub const RECOVERY_BIN_MS: u64 = 500;

/// Traffic figures over a span of time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    /// Attempts started in the span.
    pub attempts: usize,
    /// Of them, acknowledged.
    pub ok: usize,
    /// Of them, anything but ok.
    pub errors: usize,
    /// `ok / attempts` in percent (100 when there were no attempts).
    pub success_pct: f64,
    /// `errors / attempts` in percent.
    pub error_pct: f64,
    /// Acknowledged orders per second.
    pub ok_per_s: f64,
    /// Median attempt latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile attempt latency, ms.
    pub p99_ms: Option<f64>,
    /// Length of the span, seconds.
    pub seconds: f64,
}

/// Nearest-rank quantile of `values` (sorted in place).
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// The load attempts (not the heal resends) started in `[from_ms, to_ms)`: what every figure counts.
fn load_between(attempts: &[Attempt], from_ms: u64, to_ms: u64) -> impl Iterator<Item = &Attempt> {
    attempts
        .iter()
        .filter(move |a| !a.heal && a.start_ms >= from_ms && a.start_ms < to_ms)
}

/// Figures for the load attempts started in `[from_ms, to_ms)`.
pub fn window(attempts: &[Attempt], from_ms: u64, to_ms: u64) -> Window {
    let mut latencies = Vec::new();
    let mut ok = 0;
    for a in load_between(attempts, from_ms, to_ms) {
        latencies.push(a.latency_ms);
        if !a.result.is_error() {
            ok += 1;
        }
    }
    let attempts_n = latencies.len();
    let seconds = to_ms.saturating_sub(from_ms) as f64 / 1000.0;
    let pct = |n: usize| {
        if attempts_n == 0 {
            0.0
        } else {
            100.0 * n as f64 / attempts_n as f64
        }
    };
    Window {
        attempts: attempts_n,
        ok,
        errors: attempts_n - ok,
        success_pct: if attempts_n == 0 { 100.0 } else { pct(ok) },
        error_pct: pct(attempts_n - ok),
        ok_per_s: if seconds > 0.0 {
            ok as f64 / seconds
        } else {
            0.0
        },
        p50_ms: quantile(&mut latencies, 0.5),
        p99_ms: quantile(&mut latencies, 0.99),
        seconds,
    }
}

/// How failed attempts failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FailureSpeed {
    /// Failed or unknown load attempts.
    pub failures: usize,
    /// Answered (or refused) in under [`FAST_FAIL_MS`].
    pub fast: usize,
    /// A definite answer, but slower than that.
    pub slow: usize,
    /// The client gave up waiting.
    pub timed_out: usize,
    /// `fast / failures` in percent.
    pub fast_pct: f64,
    /// `timed_out / failures` in percent.
    pub timed_out_pct: f64,
}

/// Splits the failed load attempts in `[from_ms, to_ms)` by how fast they failed.
pub fn failure_speed(attempts: &[Attempt], from_ms: u64, to_ms: u64) -> FailureSpeed {
    let mut f = FailureSpeed::default();
    for a in load_between(attempts, from_ms, to_ms).filter(|a| a.result.is_error()) {
        f.failures += 1;
        match &a.result {
            AttemptResult::Unknown { why } if why == "timeout" => f.timed_out += 1,
            _ if a.latency_ms < FAST_FAIL_MS => f.fast += 1,
            _ => f.slow += 1,
        }
    }
    if f.failures > 0 {
        f.fast_pct = 100.0 * f.fast as f64 / f.failures as f64;
        f.timed_out_pct = 100.0 * f.timed_out as f64 / f.failures as f64;
    }
    f
}

/// One scenario of the chaos script, from its `start` to its `end` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// The scenario's name from the event log.
    pub name: String,
    /// `start` event time, ms since the epoch.
    pub start_ms: u64,
    /// `end` event time (or the run's end).
    pub end_ms: u64,
    /// Traffic while the fault was on: from the first kill/fault to the last restart/clear
    /// (the whole scenario when it has neither).
    pub during: Window,
    /// Traffic over the whole scenario, recovery included.
    pub slot: Window,
    /// How the failures in the scenario failed.
    pub failure_speed: FailureSpeed,
    /// From the first kill/fault to a breaker reported open, ms.
    pub fault_to_open_ms: Option<u64>,
    /// From the last restart/clear to success back at baseline, ms.
    pub repair_to_recovered_ms: Option<u64>,
}

/// Builds one [`Scenario`] per `start`/`end` pair in `events`.
///
/// `run_end_ms` bounds the last scenario and the recovery search;
/// `baseline_success_pct` is the success rate recovery is measured against.
pub fn scenarios(
    events: &[ChaosEvent],
    attempts: &[Attempt],
    breakers: &[BreakerObservation],
    baseline_success_pct: f64,
    run_end_ms: u64,
) -> Vec<Scenario> {
    let mut out = Vec::new();
    for (i, start) in events.iter().enumerate() {
        if start.action != "start" {
            continue;
        }
        let end_ms = events[i + 1..]
            .iter()
            .find(|e| e.action == "end" && e.target == start.target)
            .map_or(run_end_ms, |e| e.t_ms);
        let next_start = events[i + 1..]
            .iter()
            .find(|e| e.action == "start")
            .map_or(run_end_ms, |e| e.t_ms);
        let inside: Vec<&ChaosEvent> = events
            .iter()
            .filter(|e| e.t_ms >= start.t_ms && e.t_ms <= end_ms)
            .collect();
        let first_fault = inside
            .iter()
            .find(|e| matches!(e.action.as_str(), "kill" | "fault"))
            .map(|e| e.t_ms);
        let last_repair = inside
            .iter()
            .rev()
            .find(|e| matches!(e.action.as_str(), "restart" | "clear"))
            .map(|e| e.t_ms);
        out.push(Scenario {
            name: start.target.clone(),
            start_ms: start.t_ms,
            end_ms,
            during: window(
                attempts,
                first_fault.unwrap_or(start.t_ms),
                last_repair
                    .filter(|r| Some(*r) > first_fault)
                    .unwrap_or(end_ms),
            ),
            slot: window(attempts, start.t_ms, end_ms),
            failure_speed: failure_speed(attempts, start.t_ms, end_ms),
            fault_to_open_ms: first_fault.and_then(|t| time_to_open(breakers, t, end_ms)),
            repair_to_recovered_ms: last_repair
                .and_then(|t| recovery(attempts, t, next_start.max(end_ms), baseline_success_pct)),
        });
    }
    out
}

/// Time from `fault_ms` to the first observation of an open breaker after it
/// (one that was not already open before the fault), if before `until_ms`.
pub fn time_to_open(breakers: &[BreakerObservation], fault_ms: u64, until_ms: u64) -> Option<u64> {
    let is_open = |s: &str| matches!(s, "open" | "forced_open");
    breakers
        .iter()
        .filter(|o| o.t_ms >= fault_ms && o.t_ms <= until_ms && is_open(&o.state))
        .map(|o| o.t_ms - fault_ms)
        .next()
}

/// Time from `repair_ms` until load attempts succeed at the baseline rate again:
/// the start of the first [`RECOVERY_BIN_MS`] bin from which two bins in a row
/// have attempts and a success rate within 5 points of the baseline (at least 50 %).
pub fn recovery(
    attempts: &[Attempt],
    repair_ms: u64,
    until_ms: u64,
    baseline_success_pct: f64,
) -> Option<u64> {
    let target = (baseline_success_pct - 5.0).max(50.0);
    let bins = until_ms.saturating_sub(repair_ms).div_ceil(RECOVERY_BIN_MS) as usize;
    let mut ok = vec![0usize; bins + 1];
    let mut all = vec![0usize; bins + 1];
    for a in load_between(attempts, repair_ms, until_ms) {
        let b = ((a.start_ms - repair_ms) / RECOVERY_BIN_MS) as usize;
        all[b] += 1;
        if !a.result.is_error() {
            ok[b] += 1;
        }
    }
    (0..bins.saturating_sub(1)).find_map(|b| {
        let n = all[b] + all[b + 1];
        let good =
            all[b] > 0 && all[b + 1] > 0 && 100.0 * (ok[b] + ok[b + 1]) as f64 >= target * n as f64;
        good.then_some(b as u64 * RECOVERY_BIN_MS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start_ms: u64, latency_ms: f64, ok: bool) -> Attempt {
        Attempt {
            seq: 0,
            start_ms,
            latency_ms,
            result: if ok {
                AttemptResult::Ok {
                    id: "x".into(),
                    status: 201,
                }
            } else {
                AttemptResult::Failed { status: 503 }
            },
            heal: false,
        }
    }
    fn ev(t_ms: u64, action: &str, target: &str) -> ChaosEvent {
        ChaosEvent {
            t_ms,
            action: action.into(),
            target: target.into(),
        }
    }

    #[test]
    fn nearest_rank_quantiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        v.reverse();
        assert_eq!(quantile(&mut v, 0.5), Some(50.0));
        assert_eq!(quantile(&mut v, 0.99), Some(99.0));
        assert_eq!(quantile(&mut v, 1.0), Some(100.0));
        assert_eq!(quantile(&mut [7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn window_counts_only_load_attempts_in_range() {
        let mut heal = at(1500, 1.0, false);
        heal.heal = true;
        let log = [
            at(0, 10.0, true),
            at(500, 20.0, true),
            at(999, 30.0, false),
            at(1000, 1.0, false),
            heal,
        ];
        let w = window(&log, 0, 1000);
        assert_eq!((w.attempts, w.ok, w.errors), (3, 2, 1));
        assert!((w.success_pct - 66.666).abs() < 0.01);
        assert_eq!(w.ok_per_s, 2.0);
        assert_eq!(w.p50_ms, Some(20.0));
        assert_eq!(w.p99_ms, Some(30.0));
        assert_eq!(window(&log, 5000, 6000).success_pct, 100.0);
    }

    #[test]
    fn failures_split_into_fast_slow_and_timed_out() {
        let mut timeout = at(3, 5000.0, false);
        timeout.result = AttemptResult::Unknown {
            why: "timeout".into(),
        };
        let mut refused = at(4, 2.0, false);
        refused.result = AttemptResult::Refused;
        let log = [
            at(0, 5.0, false),
            at(1, 900.0, false),
            at(2, 1.0, true),
            timeout,
            refused,
        ];
        let f = failure_speed(&log, 0, 10);
        assert_eq!((f.failures, f.fast, f.slow, f.timed_out), (4, 2, 1, 1));
        assert_eq!(f.fast_pct, 50.0);
        assert_eq!(f.timed_out_pct, 25.0);
    }

    #[test]
    fn recovery_is_the_first_bin_of_two_good_ones() {
        let mut log = Vec::new();
        // 10 s after a restart at t=10_000: failing for 1.2 s, then healthy.
        for t in (10_000..20_000).step_by(50) {
            log.push(at(t, 5.0, t >= 11_200));
        }
        assert_eq!(recovery(&log, 10_000, 20_000, 100.0), Some(1500));
        // Never good enough.
        assert_eq!(recovery(&log, 10_000, 11_000, 100.0), None);
    }

    #[test]
    fn scenarios_measure_time_to_open_and_recovery() {
        let mut log = Vec::new();
        for t in (0..30_000).step_by(100) {
            log.push(at(
                t,
                if (10_000..15_000).contains(&t) {
                    3.0
                } else {
                    20.0
                },
                !(10_000..15_000).contains(&t),
            ));
        }
        let events = [
            ev(9_000, "start", "user-kill"),
            ev(10_000, "kill", "user-service"),
            ev(15_000, "restart", "user-service"),
            ev(20_000, "end", "user-kill"),
        ];
        let obs = [
            BreakerObservation {
                t_ms: 8_000,
                name: "u".into(),
                state: "closed".into(),
            },
            BreakerObservation {
                t_ms: 10_400,
                name: "u".into(),
                state: "open".into(),
            },
            BreakerObservation {
                t_ms: 15_300,
                name: "u".into(),
                state: "closed".into(),
            },
        ];
        let base = window(&log, 0, 9_000);
        let s = scenarios(&events, &log, &obs, base.success_pct, 30_000);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "user-kill");
        assert_eq!(s[0].fault_to_open_ms, Some(400));
        assert_eq!(s[0].repair_to_recovered_ms, Some(0));
        // The fault window is kill to restart: every attempt in it failed.
        assert_eq!(s[0].during.errors, 50);
        assert_eq!(s[0].during.attempts, 50);
        assert_eq!(s[0].slot.attempts, 110);
        assert_eq!(s[0].failure_speed.fast, 50);
    }
}
