//! The four invariants, checked against what the store holds after healing.
//!
//! Each key ends in one of three outcomes: *acknowledged* (some attempt got an
//! order id), *definitely failed* (every attempt got a definite refusal or never
//! reached the service) or *unknown* (at least one attempt has no answer and
//! none was acknowledged). Unknown keys may or may not be stored; the others
//! pin down what the store must hold.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::model::{Attempt, AttemptResult};

/// An order read back from order-service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    /// The order id.
    pub id: String,
    /// The key sequence number the order carries, when it can be read from it
    /// (its product id). `None`: match by order id only.
    pub seq: Option<usize>,
}

/// How one key ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Acknowledged with these order ids (more than one is itself a duplicate).
    Acked(BTreeSet<String>),
    /// Only definite refusals: must not be stored.
    Failed,
    /// No definite answer: stored or not, both are fine.
    Unknown,
}

/// The outcome of every key `0..keys` from the attempt log.
pub fn outcomes(keys: usize, attempts: &[Attempt]) -> Vec<KeyOutcome> {
    let mut acked: Vec<BTreeSet<String>> = vec![BTreeSet::new(); keys];
    let mut unknown = vec![false; keys];
    let mut tried = vec![false; keys];
    for a in attempts.iter().filter(|a| a.seq < keys) {
        tried[a.seq] = true;
        match &a.result {
            AttemptResult::Ok { id, .. } => {
                acked[a.seq].insert(id.clone());
            }
            AttemptResult::Unknown { .. } => unknown[a.seq] = true,
            AttemptResult::Failed { .. } | AttemptResult::Refused => {}
        }
    }
    (0..keys)
        .map(|k| {
            if !acked[k].is_empty() {
                KeyOutcome::Acked(std::mem::take(&mut acked[k]))
            } else if unknown[k] || !tried[k] {
                KeyOutcome::Unknown
            } else {
                KeyOutcome::Failed
            }
        })
        .collect()
}

/// The checker's counts; the first four must be zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Acknowledged keys whose order is not in the store.
    pub acked_lost: usize,
    /// Extra orders: more than one stored order for a key, or different ids acknowledged for one key.
    pub duplicated: usize,
    /// Stored orders that match no key this run attempted.
    pub unexpected: usize,
    /// Keys that only got definite failures but are stored anyway.
    pub failed_but_stored: usize,
    /// Keys acknowledged.
    pub acked: usize,
    /// Keys definitely failed.
    pub failed: usize,
    /// Keys whose fate the client never learned.
    pub unknown: usize,
    /// Of the unknown keys, how many turned out stored.
    pub unknown_stored: usize,
    /// Orders read back for this run's users.
    pub stored: usize,
    /// A few examples of violations, for the log.
    pub examples: Vec<String>,
}

impl Verdict {
    /// All four invariants hold.
    pub fn passed(&self) -> bool {
        self.acked_lost == 0
            && self.duplicated == 0
            && self.unexpected == 0
            && self.failed_but_stored == 0
    }
}

/// Compares the key outcomes with the orders read back.
pub fn check(outcomes: &[KeyOutcome], stored: &[StoredOrder]) -> Verdict {
    let mut v = Verdict {
        stored: stored.len(),
        ..Verdict::default()
    };
    let example = |v: &mut Verdict, s: String| {
        if v.examples.len() < 20 {
            v.examples.push(s);
        }
    };
    // Which key each acknowledged id belongs to, for orders that carry no key.
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (k, o) in outcomes.iter().enumerate() {
        if let KeyOutcome::Acked(ids) = o {
            for id in ids {
                by_id.insert(id.as_str(), k);
            }
        }
    }
    let mut per_key: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for order in stored {
        let key = order
            .seq
            .or_else(|| by_id.get(order.id.as_str()).copied())
            .filter(|k| *k < outcomes.len());
        match key {
            Some(k) => per_key.entry(k).or_default().push(order.id.as_str()),
            None => {
                v.unexpected += 1;
                example(
                    &mut v,
                    format!("order {} matches no attempted key", order.id),
                );
            }
        }
    }
    let stored_ids: BTreeSet<&str> = stored.iter().map(|o| o.id.as_str()).collect();
    for (k, outcome) in outcomes.iter().enumerate() {
        let here = per_key.get(&k).map_or(0, Vec::len);
        match outcome {
            KeyOutcome::Acked(ids) => {
                v.acked += 1;
                if !ids.iter().any(|id| stored_ids.contains(id.as_str())) {
                    v.acked_lost += 1;
                    example(
                        &mut v,
                        format!("key #{k}: acknowledged {ids:?}, not stored"),
                    );
                }
                let extra = here.saturating_sub(1).max(ids.len() - 1);
                if extra > 0 {
                    v.duplicated += extra;
                    example(
                        &mut v,
                        format!("key #{k}: {here} stored, acknowledged as {ids:?}"),
                    );
                }
            }
            KeyOutcome::Failed => {
                v.failed += 1;
                if here > 0 {
                    v.failed_but_stored += 1;
                    example(&mut v, format!("key #{k}: definite failure, stored anyway"));
                }
                if here > 1 {
                    v.duplicated += here - 1;
                }
            }
            KeyOutcome::Unknown => {
                v.unknown += 1;
                if here > 0 {
                    v.unknown_stored += 1;
                }
                if here > 1 {
                    v.duplicated += here - 1;
                    example(&mut v, format!("key #{k}: {here} stored"));
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(seq: usize, result: AttemptResult) -> Attempt {
        Attempt {
            seq,
            start_ms: 0,
            latency_ms: 1.0,
            result,
            heal: false,
        }
    }
    fn ok(seq: usize, id: &str) -> Attempt {
        attempt(
            seq,
            AttemptResult::Ok {
                id: id.into(),
                status: 201,
            },
        )
    }
    fn unknown(seq: usize) -> Attempt {
        attempt(
            seq,
            AttemptResult::Unknown {
                why: "timeout".into(),
            },
        )
    }
    fn failed(seq: usize) -> Attempt {
        attempt(seq, AttemptResult::Failed { status: 503 })
    }
    fn order(id: &str, seq: Option<usize>) -> StoredOrder {
        StoredOrder { id: id.into(), seq }
    }

    #[test]
    fn outcome_is_acked_if_any_attempt_was_then_unknown_then_failed() {
        let log = [
            unknown(0),
            ok(0, "a"),
            failed(1),
            attempt(1, AttemptResult::Refused),
            failed(2),
            unknown(2),
        ];
        let o = outcomes(4, &log);
        assert_eq!(o[0], KeyOutcome::Acked(["a".to_owned()].into()));
        assert_eq!(o[1], KeyOutcome::Failed);
        assert_eq!(o[2], KeyOutcome::Unknown);
        assert_eq!(o[3], KeyOutcome::Unknown, "never attempted");
    }

    #[test]
    fn a_clean_run_passes() {
        let log = [ok(0, "a"), ok(1, "b"), failed(2), unknown(3), unknown(4)];
        let stored = [order("a", Some(0)), order("b", None), order("x", Some(3))];
        let v = check(&outcomes(5, &log), &stored);
        assert!(v.passed(), "{v:?}");
        assert_eq!(
            (v.acked, v.failed, v.unknown, v.unknown_stored),
            (2, 1, 2, 1)
        );
        assert_eq!(v.stored, 3);
    }

    #[test]
    fn each_violation_is_counted() {
        let log = [
            ok(0, "a"), // lost
            ok(1, "b"), // stored twice
            failed(2),  // stored anyway
            ok(3, "c"), // acknowledged with two ids (replay gave another)
            ok(3, "d"),
        ];
        let stored = [
            order("b", Some(1)),
            order("b2", Some(1)),
            order("f", Some(2)),
            order("c", Some(3)),
            order("d", Some(3)),
            order("zzz", None),      // nobody's
            order("late", Some(99)), // a key this run never made
        ];
        let v = check(&outcomes(4, &log), &stored);
        assert_eq!(v.acked_lost, 1);
        assert_eq!(v.duplicated, 2);
        assert_eq!(v.failed_but_stored, 1);
        assert_eq!(v.unexpected, 2);
        assert!(!v.passed());
        assert!(!v.examples.is_empty());
    }
}
