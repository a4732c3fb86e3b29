//! Sliding windows of recent call outcomes, lock-free.
//!
//! Both windows answer one question after each recorded call: how many calls are in the
//! window, and how many of them failed or were slow. Both are tagged with the breaker's
//! *generation* (bumped by every state transition), which makes two things cheap and exact:
//!
//! - a reset (entering Closed) is O(1): it stores a new generation, and every slot or bucket
//!   still carrying an older one simply counts as empty;
//! - a result from an older generation can never land in a newer window, however the
//!   threads interleave: every write is a compare-and-swap that checks the tag.
//!
//! The count window keeps the last `size` outcomes in a ring of slots. A success that finds
//! the window full of successes (the steady state of a healthy dependency) changes nothing
//! and writes nothing: two loads. Otherwise a call costs one compare-and-swap on the ring's
//! head and one on its slot, and only when a slot changes is the packed failure/slow
//! counter updated.
//!
//! The time window keeps per-bucket counts; a bucket is recycled lazily by the first call
//! that lands in it after it went stale, so old buckets are forgotten without a timer.

use super::sync::{AtomicU32, AtomicU64, Ordering::*, Padded};

/// Bits of a generation tag; transitions wrap around after 2^24 of them.
pub(crate) const GEN_BITS: u32 = 24;
pub(crate) const GEN_MASK: u64 = (1 << GEN_BITS) - 1;

/// Outcome bits stored per call.
pub(crate) const FAILED: u8 = 0b01;
pub(crate) const SLOW: u8 = 0b10;

/// The largest count window (failures and slow calls are 20-bit fields of one word).
pub(crate) const MAX_COUNT_SIZE: u32 = (1 << 20) - 1;

/// True when generation `a` is newer than `b` (24-bit serial-number arithmetic).
pub(crate) fn gen_newer(a: u64, b: u64) -> bool {
    let diff = a.wrapping_sub(b) & GEN_MASK;
    diff != 0 && diff < (1 << (GEN_BITS - 1))
}

/// What a window holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// One of the two windows.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per breaker; the size is the deliberate cache-line padding of the count window"
)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// Records one outcome for generation `gen` and returns the window's counts when they
    /// may have made the failure or slow-call rate *rise* (so the caller should check the
    /// thresholds). `None` when the result was stale or could only have lowered the rates.
    #[inline]
    pub(crate) fn record(&self, gen_: u64, bits: u8, now: impl FnOnce() -> u64) -> Option<Counts> {
        match self {
            Window::Count(w) => w.record(gen_, bits),
            Window::Time(w) => w.record(gen_, bits, now()),
        }
    }

    /// The counts of generation `gen` at time `now`.
    pub(crate) fn counts(&self, gen_: u64, now: u64) -> Counts {
        match self {
            Window::Count(w) => w.counts(gen_),
            Window::Time(w) => w.counts(gen_, now),
        }
    }

    /// Empties the window for a new generation.
    pub(crate) fn reset(&self, gen_: u64) {
        match self {
            Window::Count(w) => w.reset(gen_),
            // Buckets carry their generation; older ones are ignored and recycled lazily.
            Window::Time(_) => {}
        }
    }
}

impl Window {
    /// The outcomes of generation `gen_`, oldest first (a count window's; a time window
    /// gives none: its buckets cannot be carried into another geometry).
    pub(crate) fn outcomes(&self, gen_: u64) -> Vec<u8> {
        match self {
            Window::Count(w) => w.outcomes(gen_),
            Window::Time(_) => Vec::new(),
        }
    }

    /// An empty window whose slots and buckets all belong to a generation older than
    /// `gen_`, so calls of `gen_` record into it; then `outcomes` replayed into it, oldest
    /// first, as far as they fit.
    pub(crate) fn seeded(self, gen_: u64, outcomes: &[u8]) -> Self {
        let older = gen_.wrapping_sub(1) & GEN_MASK;
        match &self {
            Window::Count(w) => {
                for slot in w.slots.iter() {
                    slot.store((older as u32) << 8, Relaxed);
                }
                w.reset(gen_);
                let keep = outcomes.len().saturating_sub(w.size as usize);
                for &bits in &outcomes[keep..] {
                    w.record(gen_, bits);
                }
            }
            Window::Time(w) => {
                for stamp_cell in w.stamps.iter() {
                    stamp_cell.store(stamp(older, 0, 0), Relaxed);
                }
            }
        }
        self
    }
}

// Count window words:
//   head:  gen(24) | full(1) | next slot index(39)
//   agg:   gen(24) | failures(20) | slow(20)
//   slot:  gen(24) | outcome bits(8)            (u32)
const HEAD_FULL: u64 = 1 << 39;
const HEAD_INDEX_MASK: u64 = HEAD_FULL - 1;
const FIELD20: u64 = (1 << 20) - 1;

/// Exactly the last `size` calls.
#[derive(Debug)]
pub(crate) struct CountWindow {
    size: u64,
    /// Written by recording calls: on lines of their own, away from the read-mostly state
    /// word and from `size` and `slots`.
    counters: Padded<Counters>,
    slots: Box<[AtomicU32]>,
}

#[derive(Debug)]
struct Counters {
    head: AtomicU64,
    agg: AtomicU64,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        assert!(
            size > 0 && size <= MAX_COUNT_SIZE,
            "count window size out of range"
        );
        Self {
            size: u64::from(size),
            counters: Padded(Counters {
                head: AtomicU64::new(0),
                agg: AtomicU64::new(0),
            }),
            slots: (0..size).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// The outcomes of generation `gen_`, oldest first.
    fn outcomes(&self, gen_: u64) -> Vec<u8> {
        let gen_ = gen_ & GEN_MASK;
        let head = self.counters.head.load(Acquire);
        if head >> 40 != gen_ {
            return Vec::new();
        }
        let index = (head & HEAD_INDEX_MASK) as usize;
        let order: Vec<usize> = if head & HEAD_FULL != 0 {
            (index..self.size as usize).chain(0..index).collect()
        } else {
            (0..index).collect()
        };
        order
            .into_iter()
            .map(|i| {
                let slot = self.slots[i].load(Acquire);
                if u64::from(slot >> 8) == gen_ {
                    (slot & 0xff) as u8
                } else {
                    0
                }
            })
            .collect()
    }

    fn reset(&self, gen_: u64) {
        let tag = (gen_ & GEN_MASK) << 40;
        // Head first: once it carries the new tag, older writers stop claiming slots.
        // (Swaps, not stores: read-modify-writes order themselves against racing CASes.)
        self.counters.head.swap(tag, AcqRel);
        self.counters.agg.swap(tag, AcqRel);
    }

    fn counts(&self, gen_: u64) -> Counts {
        let gen_ = gen_ & GEN_MASK;
        let head = self.counters.head.load(Acquire);
        let agg = self.counters.agg.load(Acquire);
        if head >> 40 != gen_ || agg >> 40 != gen_ {
            return Counts::default();
        }
        Counts {
            calls: if head & HEAD_FULL != 0 {
                self.size
            } else {
                head & HEAD_INDEX_MASK
            },
            failures: (agg >> 20) & FIELD20,
            slow: agg & FIELD20,
        }
    }

    fn record(&self, gen_: u64, bits: u8) -> Option<Counts> {
        let gen_ = gen_ & GEN_MASK;
        let mut head = self.counters.head.load(Relaxed);
        // 0. A success that lands in a full window of successes changes nothing: it would
        // only replace a success with a success. Skipping the ring then keeps the healthy
        // path read-only (two loads of a line only failures write), so threads calling one
        // healthy dependency do not contend. A failure recorded concurrently, whose slot is
        // written but whose count is not yet, stays in the window for the skipped calls
        // (a few calls longer, never shorter), and is counted either way.
        if bits == 0 && head >> 40 == gen_ && head & HEAD_FULL != 0 {
            let agg = self.counters.agg.load(Acquire);
            if agg >> 40 == gen_ && agg & ((FIELD20 << 20) | FIELD20) == 0 {
                return None;
            }
        }
        // 1. Claim a slot of the ring (fails if the window moved to a newer generation).
        // The head keeps the next index itself, not a running count, so no division.
        let (index, full) = loop {
            if head >> 40 != gen_ {
                return None;
            }
            let index = head & HEAD_INDEX_MASK;
            let full = head & HEAD_FULL != 0;
            let next = if index + 1 == self.size {
                HEAD_FULL
            } else {
                (head & HEAD_FULL) | (index + 1)
            };
            match self.counters.head.compare_exchange_weak(
                head,
                (gen_ << 40) | next,
                AcqRel,
                Relaxed,
            ) {
                Ok(_) => break (index, full),
                Err(actual) => head = actual,
            }
        };
        let calls = if full { self.size } else { index + 1 };
        let ramping = !full;

        // 2. Swap our outcome into the slot, learning what it evicted.
        let slot = &self.slots[index as usize];
        let new = ((gen_ as u32) << 8) | u32::from(bits);
        let mut old = slot.load(Relaxed);
        let evicted = loop {
            let old_gen = u64::from(old >> 8);
            if old_gen != gen_ && gen_newer(old_gen, gen_) {
                return None; // a newer window already owns the slot: we are stale
            }
            let old_bits = if old_gen == gen_ {
                (old & 0xff) as u8
            } else {
                0
            };
            if old_bits == bits {
                // Nothing changes (the common case: success replacing success).
                if bits == 0 && !ramping {
                    return None;
                }
                break None;
            }
            match slot.compare_exchange_weak(old, new, AcqRel, Relaxed) {
                Ok(_) => break Some(old_bits),
                Err(actual) => old = actual,
            }
        };

        // 3. Apply the difference to the packed counters.
        let mut agg = self.counters.agg.load(Acquire);
        let Some(old_bits) = evicted else {
            if agg >> 40 != gen_ {
                return None;
            }
            return Some(Counts {
                calls,
                failures: (agg >> 20) & FIELD20,
                slow: agg & FIELD20,
            });
        };
        let d_fail = i64::from(bits & FAILED) - i64::from(old_bits & FAILED);
        let d_slow = i64::from((bits & SLOW) >> 1) - i64::from((old_bits & SLOW) >> 1);
        loop {
            if agg >> 40 != gen_ {
                return None;
            }
            let failures = ((agg >> 20) & FIELD20).saturating_add_signed(d_fail) & FIELD20;
            let slow = (agg & FIELD20).saturating_add_signed(d_slow) & FIELD20;
            let next = (gen_ << 40) | (failures << 20) | slow;
            match self
                .counters
                .agg
                .compare_exchange_weak(agg, next, AcqRel, Acquire)
            {
                Ok(_) => {
                    // A success that evicted a failure only lowered the rates.
                    let rising = bits != 0 || ramping;
                    return rising.then_some(Counts {
                        calls,
                        failures,
                        slow,
                    });
                }
                Err(actual) => agg = actual,
            }
        }
    }
}

// Time window words, per bucket:
//   stamp:  gen(24) | epoch(36) | rotation(4)
//   counts: rotation(4) | calls(20) | failures(20) | slow(20)
// A bucket's counts belong to its stamp only while their rotation numbers match; whoever
// moves a stamp to a new epoch (or generation) bumps the rotation, and the counts are then
// zeroed by the first caller that notices (helping), so no writer ever waits on another.
const EPOCH_MASK: u64 = (1 << 36) - 1;
const ROT_MASK: u64 = 0xf;

fn stamp(gen_: u64, epoch: u64, rot: u64) -> u64 {
    ((gen_ & GEN_MASK) << 40) | ((epoch & EPOCH_MASK) << 4) | (rot & ROT_MASK)
}

/// Calls in the last `duration`, in `buckets` equal buckets.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    width: u64,
    buckets: u64,
    stamps: Box<[AtomicU64]>,
    counts: Box<[AtomicU64]>,
}

impl TimeWindow {
    /// `duration_nanos` split into `buckets` buckets of at least one nanosecond each.
    pub(crate) fn new(duration_nanos: u64, buckets: u32) -> Self {
        let buckets = u64::from(buckets.max(1));
        Self {
            width: (duration_nanos / buckets).max(1),
            buckets,
            // Epoch 0 of generation 0 is "now" at construction; every bucket starts there,
            // empty, with rotation 0 matching zeroed counts.
            stamps: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            counts: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn record(&self, gen_: u64, bits: u8, now: u64) -> Option<Counts> {
        let gen_ = gen_ & GEN_MASK;
        let epoch = now / self.width;
        let idx = (epoch % self.buckets) as usize;
        let (stamp_cell, counts_cell) = (&self.stamps[idx], &self.counts[idx]);
        let delta = (1 << 40) | (u64::from(bits & FAILED) << 20) | u64::from((bits & SLOW) >> 1);
        loop {
            let s = stamp_cell.load(Acquire);
            let s_gen = s >> 40;
            let s_epoch = (s >> 4) & EPOCH_MASK;
            let rot = s & ROT_MASK;
            if s_gen == gen_ && s_epoch == epoch & EPOCH_MASK {
                let c = counts_cell.load(Acquire);
                let next = if c >> 60 != rot {
                    rot << 60 // counts still belong to the bucket's previous life: zero them
                } else if (c >> 40) & FIELD20 == FIELD20 {
                    break; // bucket saturated: further calls in it are not counted
                } else {
                    c + delta
                };
                if counts_cell
                    .compare_exchange_weak(c, next, AcqRel, Relaxed)
                    .is_ok()
                    && next != rot << 60
                {
                    break;
                }
                continue;
            }
            let ours_is_older = if s_gen == gen_ {
                // Same generation, so compare epochs (36-bit serial arithmetic).
                let diff = s_epoch.wrapping_sub(epoch) & EPOCH_MASK;
                diff != 0 && diff < (1 << 35)
            } else {
                gen_newer(s_gen, gen_)
            };
            if ours_is_older {
                return None; // a stalled recorder from an earlier bucket or generation
            }
            let _ = stamp_cell.compare_exchange(s, stamp(gen_, epoch, rot + 1), AcqRel, Relaxed);
        }
        Some(self.counts(gen_, now))
    }

    fn counts(&self, gen_: u64, now: u64) -> Counts {
        let gen_ = gen_ & GEN_MASK;
        let epoch = now / self.width;
        let mut total = Counts::default();
        for (stamp_cell, counts_cell) in self.stamps.iter().zip(self.counts.iter()) {
            let s = stamp_cell.load(Acquire);
            let age = epoch.wrapping_sub((s >> 4) & EPOCH_MASK) & EPOCH_MASK;
            if s >> 40 != gen_ || age >= self.buckets {
                continue;
            }
            let c = counts_cell.load(Acquire);
            if c >> 60 != s & ROT_MASK {
                continue;
            }
            total.calls += (c >> 40) & FIELD20;
            total.failures += (c >> 20) & FIELD20;
            total.slow += c & FIELD20;
        }
        total
    }
}

#[cfg(all(test, not(resilience_loom)))]
mod tests {
    use super::*;

    #[test]
    fn count_window_keeps_exactly_the_last_n() {
        let w = CountWindow::new(3);
        w.record(0, FAILED);
        w.record(0, FAILED);
        w.record(0, 0);
        assert_eq!(
            w.counts(0),
            Counts {
                calls: 3,
                failures: 2,
                slow: 0
            }
        );
        // The fourth call evicts the first failure, the fifth the second.
        w.record(0, 0);
        assert_eq!(w.counts(0).failures, 1);
        w.record(0, SLOW);
        assert_eq!(
            w.counts(0),
            Counts {
                calls: 3,
                failures: 0,
                slow: 1
            }
        );
    }

    #[test]
    fn count_window_ignores_other_generations_and_resets_in_constant_time() {
        let w = CountWindow::new(4);
        w.record(0, FAILED);
        w.reset(1);
        assert_eq!(w.counts(1), Counts::default());
        assert_eq!(w.record(0, FAILED), None, "stale generation is dropped");
        assert_eq!(w.counts(1), Counts::default());
        let c = w.record(1, FAILED).expect("a failure can raise the rate");
        assert_eq!(
            c,
            Counts {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
    }

    #[test]
    fn count_window_reports_only_when_rates_may_rise() {
        let w = CountWindow::new(2);
        assert!(w.record(0, 0).is_some(), "ramping up: calls count changes");
        assert!(w.record(0, 0).is_some());
        assert!(
            w.record(0, 0).is_none(),
            "full of successes: nothing to check"
        );
        assert!(w.record(0, FAILED).is_some());
    }

    #[test]
    fn a_success_in_a_full_window_of_successes_writes_nothing() {
        let w = CountWindow::new(3);
        for _ in 0..3 {
            w.record(0, 0);
        }
        let head = w.counters.head.load(Relaxed);
        assert_eq!(w.record(0, 0), None);
        assert_eq!(w.counters.head.load(Relaxed), head, "the ring did not move");
        // A failure after any number of skipped successes is still kept for exactly the
        // next `size - 1` calls, and evicted by the `size`th.
        w.record(0, FAILED);
        for _ in 0..2 {
            w.record(0, 0);
            assert_eq!(w.counts(0).failures, 1);
        }
        w.record(0, 0);
        assert_eq!(w.counts(0).failures, 0);
        // With a slow call in the window, successes take the ring again.
        w.record(0, SLOW);
        let head = w.counters.head.load(Relaxed);
        w.record(0, 0);
        assert_ne!(w.counters.head.load(Relaxed), head);
    }

    #[test]
    fn generation_comparison_wraps() {
        assert!(gen_newer(1, 0));
        assert!(!gen_newer(0, 1));
        assert!(gen_newer(0, GEN_MASK));
        assert!(!gen_newer(5, 5));
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        // 10 buckets of 1 unit each.
        let w = TimeWindow::new(10, 10);
        w.record(0, FAILED, 0);
        w.record(0, 0, 5);
        assert_eq!(
            w.counts(0, 9),
            Counts {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
        // At time 10 the bucket of time 0 has left the window.
        assert_eq!(
            w.counts(0, 10),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        // Recording into the recycled bucket starts it from zero.
        let c = w.record(0, SLOW, 10).unwrap();
        assert_eq!(
            c,
            Counts {
                calls: 2,
                failures: 0,
                slow: 1
            }
        );
        assert_eq!(w.counts(0, 30), Counts::default());
    }

    #[test]
    fn time_window_drops_other_generations() {
        let w = TimeWindow::new(10, 10);
        w.record(0, FAILED, 1);
        assert_eq!(w.counts(1, 1), Counts::default());
        w.record(1, 0, 1);
        assert_eq!(
            w.record(0, FAILED, 1),
            None,
            "bucket now belongs to generation 1"
        );
        assert_eq!(
            w.counts(1, 1),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }
}
