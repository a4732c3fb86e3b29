//! The summary: one JSON document and a table a person can read.

use std::fmt::Write;

use serde::Serialize;

use crate::args::Args;
use crate::check::{self, Verdict};
use crate::figures::{self, FailureSpeed, Scenario, Window};
use crate::model::{Attempt, AttemptResult, BreakerObservation, ChaosEvent};
use crate::run::RunOutput;

/// Attempt counts by result (load phase only).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// All load attempts.
    pub total: usize,
    /// Acknowledged.
    pub ok: usize,
    /// Definite refusal (4xx/503).
    pub failed: usize,
    /// Connection refused.
    pub refused: usize,
    /// No definite answer.
    pub unknown: usize,
    /// Attempts sent again while healing.
    pub heal: usize,
}

/// Attempts to user-service per order, and the retry layer's own counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Amplification {
    /// `GET /users/{id}` requests user-service served during the load.
    pub user_lookups: f64,
    /// Order attempts that reached order-service (connection not refused).
    pub order_attempts: usize,
    /// `user_lookups / order_attempts`: 1.0 means no amplification.
    pub lookups_per_order: Option<f64>,
    /// Logical calls through order-service's retry layer.
    pub retry_requests: f64,
    /// Extra attempts the retry layer made.
    pub retry_retries: f64,
    /// `(requests + retries) / requests`.
    pub attempts_per_call: Option<f64>,
    /// Attempts order-service let through to user-service: `requests + retries - circuit_rejected`.
    pub upstream_attempts: f64,
    /// `upstream_attempts / order_attempts`, as order-service counts them.
    pub upstream_attempts_per_order: Option<f64>,
    /// Retries refused by the budget.
    pub budget_exhausted: f64,
    /// Calls refused by an open circuit.
    pub circuit_rejected: f64,
}

/// The JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// This run's id (a prefix of every key).
    pub run_id: String,
    /// The seed.
    pub seed: u64,
    /// Load length, s.
    pub duration_s: f64,
    /// Target rate, orders/s.
    pub rate: f64,
    /// Workers.
    pub concurrency: usize,
    /// Orders (keys) the workers placed.
    pub keys: usize,
    /// Attempt counts.
    pub attempts: Tally,
    /// Before the first scenario.
    pub baseline: Window,
    /// The whole load.
    pub overall: Window,
    /// How all failures failed.
    pub failure_speed: FailureSpeed,
    /// One entry per chaos scenario.
    pub scenarios: Vec<Scenario>,
    /// Load on user-service per order.
    pub amplification: Amplification,
    /// Healing: time to ready after the load, ms (`None`: never ready, the check is incomplete).
    pub heal_ready_ms: Option<u64>,
    /// Both services were ready again after the load.
    pub healed: bool,
    /// Keys sent again while healing.
    pub resent: usize,
    /// The checker's counts.
    pub invariants: Verdict,
    /// The system healed and all four invariants hold.
    pub passed: bool,
    /// Breaker states seen during the load.
    pub breaker_observations: Vec<BreakerObservation>,
    /// The chaos script's events.
    pub events: Vec<ChaosEvent>,
}

/// Computes every figure from a run and the chaos events.
pub fn summarize(args: &Args, out: &RunOutput, events: Vec<ChaosEvent>) -> Summary {
    let load: Vec<_> = out.attempts.iter().filter(|a| !a.heal).collect();
    let mut tally = Tally {
        total: load.len(),
        heal: out.attempts.len() - load.len(),
        ..Tally::default()
    };
    for a in &load {
        match a.result {
            AttemptResult::Ok { .. } => tally.ok += 1,
            AttemptResult::Failed { .. } => tally.failed += 1,
            AttemptResult::Refused => tally.refused += 1,
            AttemptResult::Unknown { .. } => tally.unknown += 1,
        }
    }
    let in_run: Vec<ChaosEvent> = events
        .into_iter()
        .filter(|e| e.t_ms >= out.load_start_ms.saturating_sub(60_000))
        .collect();
    let first_fault = in_run
        .iter()
        .find(|e| e.action == "start")
        .map_or(out.load_end_ms, |e| e.t_ms);
    let baseline = figures::window(&out.attempts, out.load_start_ms, first_fault);
    let overall = figures::window(&out.attempts, out.load_start_ms, out.load_end_ms + 1);
    let scenarios = figures::scenarios(
        &in_run,
        &out.attempts,
        &out.breakers,
        baseline.success_pct,
        out.load_end_ms,
    );
    let outcomes = check::outcomes(out.keys.len(), &out.attempts);
    let invariants = check::check(&outcomes, &out.stored);
    let c = &out.counters;
    let order_attempts = tally.total - tally.refused;
    let upstream = (c.retry_requests + c.retry_retries - c.circuit_rejected).max(0.0);
    let amplification = Amplification {
        user_lookups: c.user_lookups,
        order_attempts,
        lookups_per_order: (order_attempts > 0 && c.samples.0 > 1)
            .then(|| c.user_lookups / order_attempts as f64),
        retry_requests: c.retry_requests,
        retry_retries: c.retry_retries,
        attempts_per_call: (c.retry_requests > 0.0)
            .then(|| (c.retry_requests + c.retry_retries) / c.retry_requests),
        upstream_attempts: upstream,
        upstream_attempts_per_order: (order_attempts > 0 && c.samples.1 > 1)
            .then(|| upstream / order_attempts as f64),
        budget_exhausted: c.budget_exhausted,
        circuit_rejected: c.circuit_rejected,
    };
    Summary {
        run_id: out.run_id.clone(),
        seed: args.seed,
        duration_s: args.duration.as_secs_f64(),
        rate: args.rate,
        concurrency: args.concurrency,
        keys: out.keys.len(),
        attempts: tally,
        baseline,
        overall,
        failure_speed: figures::failure_speed(
            &out.attempts,
            out.load_start_ms,
            out.load_end_ms + 1,
        ),
        scenarios,
        amplification,
        heal_ready_ms: out.heal_ready_ms,
        healed: out.heal_ready_ms.is_some(),
        resent: out.resent,
        passed: invariants.passed() && out.heal_ready_ms.is_some(),
        invariants,
        breaker_observations: out.breakers.clone(),
        events: in_run,
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}
fn opt_ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"))
}
fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// Every attempt as CSV: `seq,start_ms,latency_ms,result,detail,heal`, in start order.
pub fn attempts_csv(attempts: &[Attempt]) -> String {
    let mut out = String::from("seq,start_ms,latency_ms,result,detail,heal\n");
    for a in attempts {
        let (result, detail) = match &a.result {
            AttemptResult::Ok { id, status } => ("ok", format!("{status} id={id}")),
            AttemptResult::Failed { status } => ("failed", status.to_string()),
            AttemptResult::Refused => ("refused", String::new()),
            AttemptResult::Unknown { why } => ("unknown", why.clone()),
        };
        let _ = writeln!(
            out,
            "{},{},{:.1},{result},{detail},{}",
            a.seq, a.start_ms, a.latency_ms, a.heal
        );
    }
    out
}

/// The figures table.
pub fn table(s: &Summary) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "== chaos figures: run {} (seed {}, {:.0} s at {} orders/s, {} workers) ==",
        s.run_id, s.seed, s.duration_s, s.rate, s.concurrency
    );
    let a = &s.attempts;
    let _ = writeln!(
        t,
        "orders {}   attempts {}   ok {}   failed {}   refused {}   unknown {}   (heal resends {})",
        s.keys, a.total, a.ok, a.failed, a.refused, a.unknown, a.heal
    );
    let _ = writeln!(
        t,
        "\nScenario rows cover the fault itself (first kill/fault to the last restart/clear);\n\
         'scen. err %' is the whole scenario, recovery included; fast/timeout % split its failures.\n\
         \n{:<14} {:>8} {:>8} {:>8} {:>8} {:>9} {:>11} {:>7} {:>9} {:>11} {:>13}",
        "window",
        "attempts",
        "ok/s",
        "error %",
        "p50 ms",
        "p99 ms",
        "scen. err %",
        "fast %",
        "timeout %",
        "fault→open",
        "repair→normal"
    );
    let row = |t: &mut String,
               name: &str,
               w: &Window,
               slot: Option<&Window>,
               f: Option<&FailureSpeed>,
               open: String,
               rec: String| {
        let (fast, slow) = match f {
            Some(f) if f.failures > 0 => (
                format!("{:.0}", f.fast_pct),
                format!("{:.0}", f.timed_out_pct),
            ),
            _ => ("-".to_owned(), "-".to_owned()),
        };
        let _ = writeln!(
            t,
            "{:<14} {:>8} {:>8.1} {:>8.1} {:>8} {:>9} {:>11} {:>7} {:>9} {:>11} {:>13}",
            name,
            w.attempts,
            w.ok_per_s,
            w.error_pct,
            ms(w.p50_ms),
            ms(w.p99_ms),
            slot.map_or_else(|| "-".to_owned(), |s| format!("{:.1}", s.error_pct)),
            fast,
            slow,
            open,
            rec
        );
    };
    row(
        &mut t,
        "baseline",
        &s.baseline,
        None,
        None,
        "-".into(),
        "-".into(),
    );
    for sc in &s.scenarios {
        row(
            &mut t,
            &sc.name,
            &sc.during,
            Some(&sc.slot),
            Some(&sc.failure_speed),
            opt_ms(sc.fault_to_open_ms),
            opt_ms(sc.repair_to_recovered_ms),
        );
    }
    row(
        &mut t,
        "whole run",
        &s.overall,
        None,
        Some(&s.failure_speed),
        "-".into(),
        "-".into(),
    );
    let f = &s.failure_speed;
    let _ = writeln!(
        t,
        "\nbaseline: {:.1} orders/s, success {:.1} %, p50 {} ms, p99 {} ms",
        s.baseline.ok_per_s,
        s.baseline.success_pct,
        ms(s.baseline.p50_ms),
        ms(s.baseline.p99_ms)
    );
    let _ = writeln!(
        t,
        "failures: {} — failed fast (<100 ms) {} ({:.1} %), slower answer {}, client timeout {} ({:.1} %)",
        f.failures, f.fast, f.fast_pct, f.slow, f.timed_out, f.timed_out_pct
    );
    let m = &s.amplification;
    let _ = writeln!(
        t,
        "amplification: {} user-service lookups per order attempt ({:.0} served / {} attempts); \
         {} attempts let through per order by order-service ({:.0} calls + {:.0} retries - {:.0} \
         rejected by the circuit); {} attempts per call; retry budget exhausted {:.0}",
        ratio(m.lookups_per_order),
        m.user_lookups,
        m.order_attempts,
        ratio(m.upstream_attempts_per_order),
        m.retry_requests,
        m.retry_retries,
        m.circuit_rejected,
        ratio(m.attempts_per_call),
        m.budget_exhausted,
    );
    match s.heal_ready_ms {
        Some(ms) => {
            let _ = writeln!(
                t,
                "heal: both services ready {ms} ms after the load; {} unresolved keys sent again",
                s.resent
            );
        }
        None => {
            let _ = writeln!(
                t,
                "HEAL FAILED: the services were not ready again after the load; unknown keys stay unknown"
            );
        }
    }
    let v = &s.invariants;
    let _ = writeln!(
        t,
        "keys: {} acknowledged, {} definitely failed, {} unknown ({} of them stored); {} orders read back",
        v.acked, v.failed, v.unknown, v.unknown_stored, v.stored
    );
    let _ = writeln!(
        t,
        "INVARIANTS: acknowledged lost {} | duplicated {} | stored but never attempted {} | \
         definite failure stored {}  =>  {}",
        v.acked_lost,
        v.duplicated,
        v.unexpected,
        v.failed_but_stored,
        if v.passed() { "PASS" } else { "FAIL" }
    );
    for e in &v.examples {
        let _ = writeln!(t, "  violation: {e}");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::StoredOrder;
    use crate::model::OrderKey;

    #[test]
    fn summary_and_table_from_a_small_run() {
        let key = |seq| OrderKey {
            seq,
            key: format!("r-{seq}"),
            user: 0,
            body: serde_json::json!({}),
        };
        let attempt = |seq, start_ms, result| Attempt {
            seq,
            start_ms,
            latency_ms: 5.0,
            result,
            heal: false,
        };
        let out = RunOutput {
            run_id: "r".into(),
            load_start_ms: 1_000,
            load_end_ms: 10_000,
            keys: vec![key(0), key(1)],
            attempts: vec![
                attempt(
                    0,
                    1_000,
                    AttemptResult::Ok {
                        id: "a".into(),
                        status: 201,
                    },
                ),
                attempt(1, 6_000, AttemptResult::Failed { status: 503 }),
            ],
            stored: vec![StoredOrder {
                id: "a".into(),
                seq: Some(0),
            }],
            heal_ready_ms: Some(5),
            ..RunOutput::default()
        };
        let events = vec![
            ChaosEvent {
                t_ms: 5_000,
                action: "start".into(),
                target: "user-kill".into(),
            },
            ChaosEvent {
                t_ms: 7_000,
                action: "end".into(),
                target: "user-kill".into(),
            },
        ];
        let s = summarize(&Args::default(), &out, events);
        assert!(s.passed);
        assert_eq!(s.baseline.attempts, 1);
        assert_eq!(s.scenarios.len(), 1);
        assert_eq!(s.scenarios[0].during.error_pct, 100.0);
        assert_eq!(s.attempts.failed, 1);
        let table = table(&s);
        assert!(table.contains("user-kill"));
        assert!(table.contains("=>  PASS"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["invariants"]["acked_lost"], 0);
        assert_eq!(json["scenarios"][0]["name"], "user-kill");
        let unhealed = RunOutput {
            heal_ready_ms: None,
            ..out
        };
        let s = summarize(&Args::default(), &unhealed, Vec::new());
        assert!(s.invariants.passed() && !s.passed);
        assert!(super::table(&s).contains("HEAL FAILED"));
        let csv = attempts_csv(&unhealed.attempts);
        assert_eq!(
            csv,
            "seq,start_ms,latency_ms,result,detail,heal\n\
             0,1000,5.0,ok,201 id=a,false\n\
             1,6000,5.0,failed,503,false\n"
        );
    }
}
