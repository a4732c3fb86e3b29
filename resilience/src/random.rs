//! The crate's one random source: retry's jitter and the fault layer's error draws both use it.
//!
//! Neither needs cryptographic quality, only delays and draws that differ between callers
//! and between processes, without a `rand` dependency.

use std::{
    hash::BuildHasher,
    sync::atomic::{AtomicU64, Ordering},
};

/// A distinct, unpredictable seed per call, without a `rand` dependency: std's per-process
/// random hash keys mixed with a counter.
pub(crate) fn random_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::hash::RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// SplitMix64 (Steele, Lea and Flood): tiny, fast, and good enough to spread delays.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    /// The step between states: a sequence shared by many callers can be drawn from one
    /// atomic by adding this and stepping from the value it held (see `FaultHandle`).
    pub(crate) const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}
