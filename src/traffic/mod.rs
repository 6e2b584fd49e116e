//! Route-level traffic management: which upstream group serves a request (version rules,
//! then a weighted split or the route's one group) and which requests are copied to a
//! shadow group.
//!
//! The compiled rules live in the snapshot (immutable, shared); the per-worker state they
//! need (split counters, mirror sampling and bounds) lives in [`TrafficState`], one per
//! worker. No locks; nothing here allocates per request once warm.

pub mod mirror;
pub mod split;
pub mod versions;

use std::cell::RefCell;
use std::rc::Rc;

pub use mirror::{MirrorSettings, Mirrors, Reservation, Shadow};
pub use split::{Split, StickyKey};
pub use versions::{cookie_value, Selector, VersionRule};

use crate::config::UpstreamId;

/// How a proxy route chooses its upstream group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChoice {
    /// Header and cookie rules, checked first, in file order.
    pub versions: Box<[VersionRule]>,
    /// The group when no rule matched.
    pub default: DefaultGroup,
}

impl GroupChoice {
    /// A route with one group and no rules.
    pub fn single(id: UpstreamId) -> Self {
        Self {
            versions: Box::new([]),
            default: DefaultGroup::One(id),
        }
    }
}

/// A route's group when no version rule matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultGroup {
    /// `upstream = "..."`.
    One(UpstreamId),
    /// `split = [...]`.
    Split(Split),
}

/// One worker's traffic state.
///
/// Slots are the route's position in the file. After a reload that reorders routes, a slot's
/// split counter simply continues (any starting point of the sequence is as good), and
/// mirrors still in flight for the old route at that position count against the new one
/// until they end: a bound briefly shared, never exceeded.
#[derive(Debug, Default)]
pub struct TrafficState {
    /// Requests sent through each split so far, indexed by [`Split::slot`].
    split_counters: RefCell<Vec<u64>>,
    /// Mirroring state (shared with the worker's shadow tasks).
    mirrors: Rc<Mirrors>,
}

impl TrafficState {
    /// Fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The group `split` sends its next request to: by `key` if the split is sticky and the
    /// request carries one, else the next step of this worker's sequence for the split.
    pub fn pick(&self, split: &Split, key: Option<&[u8]>) -> UpstreamId {
        if let Some(key) = key {
            return split.pick_for_key(key);
        }
        let mut counters = self.split_counters.borrow_mut();
        if counters.len() <= split.slot {
            counters.resize(split.slot + 1, 0);
        }
        let n = counters[split.slot];
        counters[split.slot] = n.wrapping_add(1);
        split.pick_nth(n)
    }

    /// The worker's mirroring state.
    pub fn mirrors(&self) -> &Rc<Mirrors> {
        &self.mirrors
    }
}
