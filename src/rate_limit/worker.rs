//! One worker's rate-limit state: a key table per policy, checked on the hot path, and the
//! two periodic exchanges with the coordinator (demand reports out, share updates in).
//!
//! No locks, and no allocation for a key already in the table: the check hashes the key's
//! bytes in place and updates one entry. A worker finds a policy's table by the policy's slot
//! in the snapshot and confirms it by pointer; after a reload it rebuilds its list, keeping
//! the tables of policies whose limit did not change.

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
    shards: RefCell<Vec<Shard>>,
}

impl WorkerLimits {
    /// State for worker `worker` of `workers`.
    pub fn new(worker: usize, workers: usize) -> Self {
        WorkerLimits {
            worker,
            workers: workers.max(1),
            epoch: Instant::now(),
            shards: RefCell::new(Vec::new()),
        }
    }

    /// Nanoseconds since this worker's epoch.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Checks one request of `key` against `policies[slot]` (the snapshot's rate-limit
    /// policies); `None` if the slot is out of range.
    pub fn check(
        &self,
        policies: &[Arc<RateLimitPolicy>],
        slot: usize,
        key: &[u8],
    ) -> Option<Decision> {
        let policy = policies.get(slot)?;
        let mut shards = self.shards.borrow_mut();
        let current = shards
            .get(slot)
            .is_some_and(|s| Arc::ptr_eq(&s.policy, policy));
        if !current {
            self.rebuild(&mut shards, policies);
        }
        let shard = shards.get_mut(slot)?;
        let hash = policy.hash_key(key);
        let now = self.now();
        Some(shard.table.check(hash, now, shard.default))
    }

    /// Matches the tables to `policies`, keeping those whose limit is unchanged.
    fn rebuild(&self, shards: &mut Vec<Shard>, policies: &[Arc<RateLimitPolicy>]) {
        let mut old = std::mem::take(shards);
        for policy in policies {
            let kept = old
                .iter()
                .position(|s| s.policy.same_limit(policy))
                .map(|i| old.swap_remove(i));
            let shard = match kept {
                Some(mut shard) => {
                    shard.policy = Arc::clone(policy);
                    shard
                }
                None => self.new_shard(policy),
            };
            shards.push(shard);
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
        for shard in shards.iter_mut() {
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
        for shard in self.shards.borrow_mut().iter_mut() {
            shard.table.sweep(now, IDLE_AFTER_NANOS);
        }
    }

    /// Keys tracked by policy slot (for tests and diagnostics).
    pub fn keys(&self) -> Vec<usize> {
        self.shards.borrow().iter().map(|s| s.table.len()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::policy::{KeySource, Rate};

    fn policy(name: &str, rate: &str, scope: Scope) -> Arc<RateLimitPolicy> {
        let rate = Rate::parse(rate).expect("valid");
        Arc::new(RateLimitPolicy::new(
            name,
            KeySource::Ip,
            rate,
            2,
            scope,
            64,
        ))
    }

    #[test]
    fn limits_each_key_on_its_own() {
        let limits = WorkerLimits::new(0, 1);
        let policies = [policy("p", "1/h", Scope::Worker)];
        let admitted = |key: &[u8]| limits.check(&policies, 0, key).expect("slot").admitted;
        assert!(admitted(b"a") && admitted(b"a"));
        assert!(!admitted(b"a"));
        assert!(admitted(b"b"));
    }

    #[test]
    fn an_unknown_slot_checks_nothing() {
        let limits = WorkerLimits::new(0, 1);
        assert!(limits.check(&[], 0, b"a").is_none());
    }

    #[test]
    fn a_reload_keeps_the_tables_of_unchanged_policies() {
        let limits = WorkerLimits::new(0, 1);
        let before = [policy("p", "1/h", Scope::Worker)];
        for _ in 0..2 {
            limits.check(&before, 0, b"a");
        }
        // Same limit in a new snapshot, behind a new policy added in front of it.
        let after = [
            policy("q", "5/s", Scope::Worker),
            policy("p", "1/h", Scope::Worker),
        ];
        assert!(!limits.check(&after, 1, b"a").expect("slot").admitted);
        // A changed limit starts afresh.
        let changed = [policy("p", "2/h", Scope::Worker)];
        assert!(limits.check(&changed, 0, b"a").expect("slot").admitted);
    }

    #[test]
    fn an_instance_policy_starts_each_worker_at_an_even_share_and_reports_demand() {
        let limits = WorkerLimits::new(1, 2);
        let policies = [policy("p", "1/h", Scope::Instance)];
        // Burst 2 split over 2 workers: 1 at once here.
        assert!(limits.check(&policies, 0, b"a").expect("slot").admitted);
        assert!(!limits.check(&policies, 0, b"a").expect("slot").admitted);
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
        let policies = [policy("p", "1/h", Scope::Instance)];
        assert!(limits.check(&policies, 0, b"a").expect("slot").admitted);
        assert!(!limits.check(&policies, 0, b"a").expect("slot").admitted);
        let hash = policies[0].hash_key(b"a");
        limits.apply(&ShareUpdate {
            policy: Arc::clone(&policies[0]),
            fractions: vec![(hash, 1.0)],
        });
        // The whole burst of 2 now belongs to this worker: one more is admitted.
        assert!(limits.check(&policies, 0, b"a").expect("slot").admitted);
    }

    #[test]
    fn worker_policies_send_no_reports() {
        let limits = WorkerLimits::new(0, 2);
        let policies = [policy("p", "1/s", Scope::Worker)];
        limits.check(&policies, 0, b"a");
        assert!(limits.take_reports().is_empty());
    }
}
