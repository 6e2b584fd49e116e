//! One worker's rate-limit state: a key table per policy, checked on the hot path, and the
//! two periodic exchanges with the coordinator (demand reports out, share updates in).
//!
//! No locks, and no allocation for a key already in the table: the check hashes the key's
//! bytes in place and updates one entry. A worker finds a policy's table by the policy's slot
//! in the snapshot and confirms it by pointer; after a reload each policy's table is placed
//! at its slot again, keeping the tables of policies whose limit did not change.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use super::gcra::{Decision, Gcra};
use super::policy::{RateLimitPolicy, Scope};
use super::table::KeyTable;

/// A worker's arrivals per key for one shared policy since its previous report.
#[derive(Debug)]
pub struct DemandReport {
    /// The reporting worker.
    pub worker: usize,
    /// The policy.
    pub policy: Arc<RateLimitPolicy>,
    /// `(key hash, arrivals)`.
    pub arrivals: Vec<(u64, u32)>,
}

/// The coordinator's new shares for one worker and policy.
#[derive(Debug)]
pub struct ShareUpdate {
    /// The policy.
    pub policy: Arc<RateLimitPolicy>,
    /// `(key hash, fraction of the configured rate this worker applies)`.
    pub fractions: Vec<(u64, f64)>,
}

/// Most keys in one demand report; the busiest are not chosen, the first found are (a
/// key left out keeps its previous share and is reported once the table has fewer).
pub const MAX_REPORTED_KEYS: usize = 16_384;

/// A key whose bucket has been full this long is dropped by the periodic sweep.
pub const IDLE_AFTER_NANOS: u64 = 5_000_000_000;

#[derive(Debug)]
struct Shard {
    policy: Arc<RateLimitPolicy>,
    table: KeyTable,
    /// The rate of a key the coordinator has not assigned a share yet.
    default: Gcra,
}

/// One worker's tables.
#[derive(Debug)]
pub struct WorkerLimits {
    worker: usize,
    workers: usize,
    epoch: Instant,
    shards: RefCell<Vec<Option<Shard>>>,
    /// Tables displaced by a reload, kept in case their policy is at another slot now.
    spare: RefCell<Vec<Shard>>,
}

/// Most displaced tables kept.
const MAX_SPARE: usize = 16;

impl Default for WorkerLimits {
    /// The tables of a lone worker.
    fn default() -> Self {
        WorkerLimits::new(0, 1)
    }
}

impl WorkerLimits {
    /// State for worker `worker` of `workers`.
    pub fn new(worker: usize, workers: usize) -> Self {
        WorkerLimits {
            worker,
            workers: workers.max(1),
            epoch: Instant::now(),
            shards: RefCell::new(Vec::new()),
            spare: RefCell::new(Vec::new()),
        }
    }

    /// Nanoseconds since this worker's epoch.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Checks one request of `key` against `policy`, whose table sits at `policy.slot`.
    pub fn check(&self, policy: &Arc<RateLimitPolicy>, key: &[u8]) -> Decision {
        let mut shards = self.shards.borrow_mut();
        let slot = policy.slot;
        let current = shards
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|s| Arc::ptr_eq(&s.policy, policy));
        if !current {
            self.place(&mut shards, policy);
        }
        let now = self.now();
        let hash = policy.hash_key(key);
        match shards.get_mut(slot).and_then(Option::as_mut) {
            Some(shard) => shard.table.check(hash, now, shard.default),
            // `place` just put it there.
            None => Decision {
                admitted: true,
                remaining: 0,
                reset: 0,
                retry_after: 0,
            },
        }
    }

    /// Puts the table of `policy` (a new snapshot's) at its slot: the table of an unchanged
    /// limit moves there from wherever it was (what was at the slot takes its place), else a
    /// fresh one (what was at the slot is set aside, in case its policy comes back at another
    /// slot). Runs once per policy after a reload.
    fn place(&self, shards: &mut Vec<Option<Shard>>, policy: &Arc<RateLimitPolicy>) {
        let slot = policy.slot;
        if shards.len() <= slot {
            shards.resize_with(slot + 1, || None);
        }
        let same = |s: &Shard| s.policy.same_limit(policy);
        if let Some(i) = shards.iter().position(|s| s.as_ref().is_some_and(same)) {
            shards.swap(i, slot);
        } else {
            let mut spare = self.spare.borrow_mut();
            let shard = match spare.iter().position(same) {
                Some(i) => spare.swap_remove(i),
                None => self.new_shard(policy),
            };
            if let Some(displaced) = shards[slot].replace(shard) {
                if spare.len() >= MAX_SPARE {
                    spare.remove(0);
                }
                spare.push(displaced);
            }
        }
        if let Some(shard) = shards[slot].as_mut() {
            shard.policy = Arc::clone(policy);
        }
    }

    fn new_shard(&self, policy: &Arc<RateLimitPolicy>) -> Shard {
        let fraction = match policy.scope {
            Scope::Worker => 1.0,
            Scope::Instance | Scope::Cluster => 1.0 / self.workers as f64,
        };
        Shard {
            policy: Arc::clone(policy),
            table: KeyTable::new(policy.max_keys),
            default: policy.gcra(fraction),
        }
    }

    /// The demand of every shared (instance or cluster) policy since the last call.
    pub fn take_reports(&self) -> Vec<DemandReport> {
        let mut shards = self.shards.borrow_mut();
        let mut reports = Vec::new();
        for shard in shards.iter_mut().flatten() {
            if shard.policy.scope == Scope::Worker {
                continue;
            }
            let mut arrivals = Vec::new();
            shard.table.take_arrivals(|hash, n| {
                if arrivals.len() < MAX_REPORTED_KEYS {
                    arrivals.push((hash, n));
                }
            });
            if !arrivals.is_empty() {
                reports.push(DemandReport {
                    worker: self.worker,
                    policy: Arc::clone(&shard.policy),
                    arrivals,
                });
            }
        }
        reports
    }

    /// Applies the coordinator's shares (ignored if the policy is no longer in force).
    pub fn apply(&self, update: &ShareUpdate) {
        let mut shards = self.shards.borrow_mut();
        let Some(shard) = shards
            .iter_mut()
            .flatten()
            .find(|s| s.policy.same_limit(&update.policy))
        else {
            return;
        };
        let now = self.now();
        for &(hash, fraction) in &update.fractions {
            let gcra = shard.policy.gcra(fraction);
            shard.table.set_rate(hash, gcra, now);
        }
    }

    /// Drops keys idle for [`IDLE_AFTER_NANOS`] from every table.
    pub fn sweep(&self) {
        let now = self.now();
        for shard in self.shards.borrow_mut().iter_mut().flatten() {
            shard.table.sweep(now, IDLE_AFTER_NANOS);
        }
    }

    /// Keys tracked by policy slot (for tests and diagnostics).
    pub fn keys(&self) -> Vec<usize> {
        self.shards
            .borrow()
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.table.len()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::policy::{KeySource, Rate};

    fn policy_at(slot: usize, name: &str, rate: &str, scope: Scope) -> Arc<RateLimitPolicy> {
        let rate = Rate::parse(rate).expect("valid");
        let mut p = RateLimitPolicy::new(name, KeySource::Ip, rate, 2, scope, 64);
        p.slot = slot;
        Arc::new(p)
    }

    fn policy(name: &str, rate: &str, scope: Scope) -> Arc<RateLimitPolicy> {
        policy_at(0, name, rate, scope)
    }

    #[test]
    fn limits_each_key_on_its_own() {
        let limits = WorkerLimits::new(0, 1);
        let p = policy("p", "1/h", Scope::Worker);
        let admitted = |key: &[u8]| limits.check(&p, key).admitted;
        assert!(admitted(b"a") && admitted(b"a"));
        assert!(!admitted(b"a"));
        assert!(admitted(b"b"));
    }

    #[test]
    fn a_reload_keeps_the_tables_of_unchanged_policies() {
        let limits = WorkerLimits::new(0, 1);
        let before = policy("p", "1/h", Scope::Worker);
        for _ in 0..2 {
            limits.check(&before, b"a");
        }
        // Same limit in a new snapshot, behind a new policy added in front of it.
        let q = policy_at(0, "q", "5/s", Scope::Worker);
        let p = policy_at(1, "p", "1/h", Scope::Worker);
        assert!(limits.check(&q, b"a").admitted);
        assert!(!limits.check(&p, b"a").admitted);
        // A changed limit starts afresh.
        let changed = policy("p", "2/h", Scope::Worker);
        assert!(limits.check(&changed, b"a").admitted);
    }

    #[test]
    fn two_policies_swapping_slots_keep_their_tables() {
        let limits = WorkerLimits::new(0, 1);
        let a = policy_at(0, "a", "1/h", Scope::Worker);
        for _ in 0..2 {
            limits.check(&a, b"k");
        }
        let b2 = policy_at(0, "b", "1/h", Scope::Worker);
        let a2 = policy_at(1, "a", "1/h", Scope::Worker);
        assert!(limits.check(&b2, b"k").admitted, "b had not seen the key");
        assert!(!limits.check(&a2, b"k").admitted, "a kept its table");
    }

    #[test]
    fn an_instance_policy_starts_each_worker_at_an_even_share_and_reports_demand() {
        let limits = WorkerLimits::new(1, 2);
        let p = policy("p", "1/h", Scope::Instance);
        // Burst 2 split over 2 workers: 1 at once here.
        assert!(limits.check(&p, b"a").admitted);
        assert!(!limits.check(&p, b"a").admitted);
        let reports = limits.take_reports();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].worker, 1);
        assert_eq!(reports[0].arrivals.len(), 1);
        assert_eq!(reports[0].arrivals[0].1, 2);
        assert!(limits.take_reports().is_empty());
    }

    #[test]
    fn a_share_update_changes_the_rate_of_its_key() {
        let limits = WorkerLimits::new(0, 2);
        let p = policy("p", "1/h", Scope::Instance);
        assert!(limits.check(&p, b"a").admitted);
        assert!(!limits.check(&p, b"a").admitted);
        let hash = p.hash_key(b"a");
        limits.apply(&ShareUpdate {
            policy: Arc::clone(&p),
            fractions: vec![(hash, 1.0)],
        });
        // The whole burst of 2 now belongs to this worker: one more is admitted.
        assert!(limits.check(&p, b"a").admitted);
    }

    #[test]
    fn worker_policies_send_no_reports() {
        let limits = WorkerLimits::new(0, 2);
        let p = policy("p", "1/s", Scope::Worker);
        limits.check(&p, b"a");
        assert!(limits.take_reports().is_empty());
    }
}
