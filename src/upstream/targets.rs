//! The live target set of an upstream group: addresses, weights, active-health cells and the
//! consistent-hash ring, published by the control side (compile, reload, DNS refresh) through
//! an `ArcSwap` and only read by workers.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::balance::HashRing;
use super::health::TargetHealth;
use crate::config::Target;

/// One published set of targets.
#[derive(Debug, Default)]
pub struct TargetSet {
    /// Targets, in configured (then resolved) order.
    pub targets: Vec<Target>,
    /// Their weights, parallel to `targets` (what balancers read).
    pub weights: Vec<u32>,
    /// Their active-health cells, parallel to `targets`.
    pub health: Vec<Arc<TargetHealth>>,
    /// The hash ring over `targets`, for consistent-hash groups.
    pub ring: Option<HashRing>,
}

impl TargetSet {
    /// A set of `targets`, reusing the health cell `cell_of(addr)` gives where there is one.
    pub fn build(
        targets: Vec<Target>,
        hashed: bool,
        cell_of: impl Fn(SocketAddr) -> Option<Arc<TargetHealth>>,
    ) -> Self {
        let weights = targets.iter().map(|t| t.weight).collect();
        let health = targets
            .iter()
            .map(|t| cell_of(t.addr).unwrap_or_default())
            .collect();
        let ring = hashed.then(|| HashRing::build(targets.iter().map(|t| (t.addr, t.weight))));
        Self {
            targets,
            weights,
            health,
            ring,
        }
    }

    /// The health cell of `addr`, if it is in the set.
    pub fn cell(&self, addr: SocketAddr) -> Option<Arc<TargetHealth>> {
        self.targets
            .iter()
            .position(|t| t.addr == addr)
            .map(|i| Arc::clone(&self.health[i]))
    }

    /// The index of `addr`, if it is in the set.
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.targets.iter().position(|t| t.addr == addr)
    }
}

/// The current [`TargetSet`] of a group.
#[derive(Debug)]
pub struct LiveTargets {
    set: ArcSwap<TargetSet>,
}

impl LiveTargets {
    /// Starts with `set`.
    pub fn new(set: TargetSet) -> Self {
        Self {
            set: ArcSwap::from_pointee(set),
        }
    }

    /// The set in force (a cheap guard: no reference-count traffic).
    pub fn load(&self) -> arc_swap::Guard<Arc<TargetSet>> {
        self.set.load()
    }

    /// The set in force, owned.
    pub fn current(&self) -> Arc<TargetSet> {
        self.set.load_full()
    }

    /// Publishes a new set.
    pub fn store(&self, set: TargetSet) {
        self.set.store(Arc::new(set));
    }
}

/// Carries the active-health cells of `old`'s groups over to the same-named groups and
/// addresses of `new`, so that health survives a reload for targets that stay.
pub fn adopt_health(new: &crate::config::Snapshot, old: &crate::config::Snapshot) {
    for group in &new.upstreams {
        let Some(previous) = old.upstreams.iter().find(|u| u.name == group.name) else {
            continue;
        };
        let before = previous.live.current();
        let now = group.live.current();
        let hashed = now.ring.is_some();
        let set = TargetSet::build(now.targets.clone(), hashed, |addr| before.cell(addr));
        group.live.store(set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(port: u16) -> Target {
        Target {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            weight: 2,
        }
    }

    #[test]
    fn build_reuses_cells_by_address_and_builds_the_ring_when_asked() {
        let first = TargetSet::build(vec![target(1), target(2)], false, |_| None);
        assert!(first.ring.is_none());
        assert_eq!(first.weights, vec![2, 2]);
        let second = TargetSet::build(vec![target(2), target(3)], true, |a| first.cell(a));
        assert!(Arc::ptr_eq(&second.health[0], &first.health[1]));
        assert!(first.cell(target(3).addr).is_none());
        assert!(second.ring.is_some());
        assert_eq!(second.index_of(target(3).addr), Some(1));
    }
}
