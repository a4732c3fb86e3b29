//! Names of breakers and bulkheads, as their rejections carry them.
//!
//! A rejection error carries the name of what rejected it, and tower's `BoxError` means one
//! is built on every rejection. With the name behind an `Arc<str>` that is two atomic
//! reference-count updates per rejection, which cost a third of an open circuit's
//! rejection on the machine of `BENCHMARKS.md`; a `&'static str` costs nothing to copy.
//!
//! So there are two kinds of [`Name`]:
//!
//! - [`Name::kept`]: a name given to a layer's constructor is configuration, as bounded as
//!   the code that builds layers. It is interned: kept once for the life of the process, like
//!   the metric series labelled with it, and copied for free.
//! - [`Name::transient`]: a name made from traffic (a key of a [`keyed`](crate::keyed) layer:
//!   a host, a tenant) comes and goes with its entry. It is reference-counted and freed when
//!   the entry is evicted and the last error or handle carrying it is dropped, so a client
//!   that calls arbitrary hosts does not grow without bound.

use std::{collections::BTreeSet, fmt, ops::Deref, sync::Arc, sync::Mutex};

static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// The process-wide copy of `name`, made on its first use.
fn intern(name: &str) -> &'static str {
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

/// True when `name` was ever interned (for tests of what is freed).
#[cfg(all(test, not(resilience_loom)))]
pub(crate) fn is_interned(name: &str) -> bool {
    NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .contains(name)
}

/// The name of a breaker or bulkhead; see the [module docs](self) for the two kinds.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Name {
    /// Interned for the life of the process.
    Kept(&'static str),
    /// Freed with the last holder.
    Transient(Arc<str>),
}

impl Name {
    /// A configured name, interned.
    pub(crate) fn kept(name: &str) -> Self {
        Self::Kept(intern(name))
    }

    /// A name made from traffic, freed with its last holder.
    pub(crate) fn transient(name: Arc<str>) -> Self {
        Self::Transient(name)
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Kept(name) => name,
            Self::Transient(name) => name,
        }
    }
}

#[cfg(all(test, not(resilience_loom)))]
impl Name {
    /// A weak reference to a transient name, to see it freed.
    pub(crate) fn downgrade(&self) -> Option<std::sync::Weak<str>> {
        match self {
            Self::Kept(_) => None,
            Self::Transient(name) => Some(Arc::downgrade(name)),
        }
    }
}

/// A name that is already `'static` needs no interning.
impl From<&'static str> for Name {
    fn from(name: &'static str) -> Self {
        Self::Kept(name)
    }
}

impl Deref for Name {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(all(test, not(resilience_loom)))]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_distinct_kept_name() {
        let (Name::Kept(a), Name::Kept(b)) = (
            Name::kept(&String::from("users")),
            Name::kept(&String::from("users")),
        ) else {
            unreachable!()
        };
        assert!(std::ptr::eq(a, b), "the same name is kept once");
        assert_eq!(a, "users");
        assert!(!std::ptr::eq(a, intern("orders")));
    }

    #[test]
    fn a_transient_name_is_freed_with_its_last_holder() {
        let name: Arc<str> = Arc::from("api@tenant-7");
        let weak = Arc::downgrade(&name);
        let held = Name::transient(name);
        let copy = held.clone();
        assert_eq!(&*copy, "api@tenant-7");
        drop(held);
        assert!(weak.upgrade().is_some());
        drop(copy);
        assert!(weak.upgrade().is_none(), "freed");
        assert!(!is_interned("api@tenant-7"));
    }
}
