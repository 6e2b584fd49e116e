//! One worker's bounded table of rate-limit keys.
//!
//! Keys arrive as 64-bit hashes of their bytes (see `rate_limit::key`): the table never
//! stores or allocates a key, and the map hashes nothing again (the hash is its own hash).
//! Two keys whose hashes collide share a bucket; at 64 bits that is negligible.
//!
//! Memory is bounded: the map is allocated once for `max_keys` entries and never grows.
//! When it is full, entries whose bucket is full again (idle: the same as no entry, see
//! `gcra`) are dropped; if every key is active, an arbitrary one is (its client gets a
//! fresh bucket: under a flood of distinct keys the limit errs toward admitting). The idle
//! sweep is rate-limited so that a key flood cannot make every request scan the table.
//!
//! No locks, no allocation after construction: this runs on the worker's hot path.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::gcra::{Decision, Gcra};

/// Nanoseconds between two idle sweeps forced by a full table.
const SWEEP_SPACING: u64 = 100_000_000;

/// A hasher for keys that already are hashes: passes the `u64` through.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `u64` keys; fold anything else in for totality.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One key's state.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Theoretical arrival time, nanoseconds from the worker's epoch.
    pub tat: u64,
    /// The rate this worker applies to the key (its share of an instance-wide rate).
    pub gcra: Gcra,
    /// Requests seen since the last demand report (instance and cluster scopes).
    pub arrivals: u32,
}

/// A bounded map from key hash to [`Entry`].
#[derive(Debug)]
pub struct KeyTable {
    map: HashMap<u64, Entry, BuildHasherDefault<PassThrough>>,
    max_keys: usize,
    last_sweep: u64,
}

impl KeyTable {
    /// A table for at most `max_keys` keys (at least 1), allocated now.
    pub fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        // Twice the keys: with at most half its capacity in use, the map reclaims the
        // tombstones of removed keys in place instead of reallocating to grow.
        let room = max_keys.saturating_mul(2);
        KeyTable {
            map: HashMap::with_capacity_and_hasher(room, BuildHasherDefault::default()),
            max_keys,
            last_sweep: 0,
        }
    }

    /// Checks one request of key `hash` at `now`; a new key starts with `default` as its rate.
    pub fn check(&mut self, hash: u64, now: u64, default: Gcra) -> Decision {
        let entry = self.entry(hash, now, default);
        entry.arrivals = entry.arrivals.saturating_add(1);
        let gcra = entry.gcra;
        gcra.check(&mut entry.tat, now)
    }

    /// The key's entry, created (making room if needed) with `default` as its rate.
    pub fn entry(&mut self, hash: u64, now: u64, default: Gcra) -> &mut Entry {
        if !self.map.contains_key(&hash) && self.map.len() >= self.max_keys {
            self.make_room(now);
        }
        self.map.entry(hash).or_insert(Entry {
            tat: 0,
            gcra: default,
            arrivals: 0,
        })
    }

    /// Sets the rate of key `hash` at `now`, creating its entry if there is room without
    /// evicting. The requests the key has used stay used: its debt ahead of `now` is
    /// rescaled from the old interval to the new one.
    pub fn set_rate(&mut self, hash: u64, gcra: Gcra, now: u64) {
        if let Some(entry) = self.map.get_mut(&hash) {
            if entry.tat > now {
                let debt = u128::from(entry.tat - now) * u128::from(gcra.interval())
                    / u128::from(entry.gcra.interval());
                entry.tat = now.saturating_add(u64::try_from(debt).unwrap_or(u64::MAX));
            }
            entry.gcra = gcra;
        } else if self.map.len() < self.max_keys {
            self.map.insert(
                hash,
                Entry {
                    tat: 0,
                    gcra,
                    arrivals: 0,
                },
            );
        }
    }

    /// Sets the rate of every key to `gcra` (a reload changed the policy's rate).
    pub fn set_all_rates(&mut self, gcra: Gcra) {
        for entry in self.map.values_mut() {
            entry.gcra = gcra;
        }
    }

    /// Drops entries idle for at least `idle` nanoseconds (full bucket since then).
    pub fn sweep(&mut self, now: u64, idle: u64) {
        self.map
            .retain(|_, e| e.tat.saturating_add(idle) > now || e.arrivals > 0);
    }

    /// Hands `(hash, arrivals)` of every key seen since the last call to `report`, resetting
    /// the counts. Off the hot path (the worker's report task).
    pub fn take_arrivals(&mut self, mut report: impl FnMut(u64, u32)) {
        for (&hash, entry) in self.map.iter_mut() {
            if entry.arrivals > 0 {
                report(hash, entry.arrivals);
                entry.arrivals = 0;
            }
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The most keys held.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    fn make_room(&mut self, now: u64) {
        if now.saturating_sub(self.last_sweep) >= SWEEP_SPACING || self.last_sweep == 0 {
            self.last_sweep = now.max(1);
            self.map.retain(|_, e| e.tat > now);
        }
        if self.map.len() >= self.max_keys {
            if let Some(&victim) = self.map.keys().next() {
                self.map.remove(&victim);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn one_per_100ms() -> Gcra {
        Gcra::new(100 * MS, 1)
    }

    #[test]
    fn keys_have_separate_buckets() {
        let mut t = KeyTable::new(8);
        let g = one_per_100ms();
        assert!(t.check(1, 10 * MS, g).admitted);
        assert!(!t.check(1, 10 * MS, g).admitted);
        assert!(t.check(2, 10 * MS, g).admitted);
    }

    #[test]
    fn never_holds_more_than_max_keys() {
        let mut t = KeyTable::new(4);
        let g = one_per_100ms();
        for k in 0..100 {
            t.check(k, 10 * MS, g);
            assert!(t.len() <= 4);
        }
    }

    #[test]
    fn a_full_table_drops_idle_keys_before_active_ones() {
        let mut t = KeyTable::new(2);
        let g = one_per_100ms();
        t.check(1, 10 * MS, g); // idle again at 110 ms
        t.check(2, 500 * MS, g); // active until 600 ms
        t.check(3, 550 * MS, g); // full: key 1 is idle and goes
        assert_eq!(t.len(), 2);
        // Key 2 kept its state: still refused within its interval.
        assert!(!t.check(2, 560 * MS, g).admitted);
    }

    #[test]
    fn does_not_grow_its_allocation() {
        let mut t = KeyTable::new(64);
        let capacity = t.map.capacity();
        let g = one_per_100ms();
        for k in 0..10_000u64 {
            t.check(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), k * MS, g);
        }
        assert_eq!(t.map.capacity(), capacity);
    }

    #[test]
    fn a_new_rate_keeps_the_requests_already_used() {
        let mut t = KeyTable::new(8);
        let slow = Gcra::new(200 * MS, 2);
        assert!(t.check(1, 0, slow).admitted);
        // One of two used; at twice the rate the bucket holds 4, so 3 remain.
        t.set_rate(1, Gcra::new(100 * MS, 4), 0);
        let d = t.check(1, 0, slow);
        assert!(d.admitted);
        assert_eq!(d.remaining, 2);
    }

    #[test]
    fn sweep_keeps_recent_and_reported_keys() {
        let mut t = KeyTable::new(8);
        let g = one_per_100ms();
        t.check(1, 0, g);
        t.check(2, 900 * MS, g);
        t.take_arrivals(|_, _| {});
        t.sweep(1_000 * MS, 500 * MS);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn reports_arrivals_once() {
        let mut t = KeyTable::new(8);
        let g = one_per_100ms();
        for _ in 0..5 {
            t.check(7, 0, g);
        }
        let mut seen = Vec::new();
        t.take_arrivals(|k, n| seen.push((k, n)));
        assert_eq!(seen, [(7, 5)]);
        seen.clear();
        t.take_arrivals(|k, n| seen.push((k, n)));
        assert!(seen.is_empty());
    }

    #[test]
    fn set_rate_applies_to_existing_and_new_keys() {
        let mut t = KeyTable::new(8);
        let slow = one_per_100ms();
        let fast = Gcra::new(MS, 1);
        t.set_rate(5, fast, 0);
        assert!(t.check(5, 0, slow).admitted);
        assert!(
            t.check(5, MS, slow).admitted,
            "the set rate applies, not the default"
        );
    }
}
