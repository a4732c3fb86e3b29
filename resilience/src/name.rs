//! Names of breakers and bulkheads, interned once per process.
//!
//! A rejection error carries the name of what rejected it, and tower's `BoxError` means one
//! is built on every rejection. With the name behind an `Arc<str>` that is two atomic
//! reference-count updates per rejection, which cost a third of an open circuit's
//! rejection on the machine of `BENCHMARKS.md`; a `&'static str` costs nothing to copy.
//! Each distinct name is kept once for the life of the process, like the metric series
//! that carry it.

use std::collections::BTreeSet;
use std::sync::Mutex;

static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// The process-wide copy of `name`, made on its first use.
pub(crate) fn intern(name: &str) -> &'static str {
    let mut names = NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(Box::from(name));
    names.insert(leaked);
    leaked
}

#[cfg(all(test, not(resilience_loom)))]
mod tests {
    use super::intern;

    #[test]
    fn one_copy_per_distinct_name() {
        let a = intern(&String::from("users"));
        let b = intern(&String::from("users"));
        assert!(std::ptr::eq(a, b), "the same name is kept once");
        assert_eq!(a, "users");
        assert!(!std::ptr::eq(a, intern("orders")));
    }
}
