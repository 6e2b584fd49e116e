//! Weighted split of a route across upstream groups (canary releases: 95/5).
//!
//! Each group owns a share of a weight space `0..total` (the groups' intervals in file order).
//! A request lands on a point of that space and goes to the group whose interval holds it:
//!
//! - without stickiness, the point is the `n`-th value of a Weyl sequence (`n` times the
//!   golden-ratio fraction, modulo 1) for the `n`-th request this worker sends through the
//!   route: deterministic, evenly spread at every scale (any run of `N` requests lands within
//!   a handful of requests of the exact shares), and it needs one counter per route per worker;
//! - with `sticky`, the point is a hash of the client's key (a cookie, a header, its IP), so one
//!   client keeps its group while the weights stand. When weights shift toward the last group
//!   (the canary), only clients whose points cross the moving boundary change sides.
//!
//! Runs on the hot path: no locks, no allocation; a pick is a multiply and a short scan.

use crate::config::UpstreamId;

/// 2^64 divided by the golden ratio: the Weyl sequence's step (Fibonacci hashing).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// What keeps one client on one side of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// The value of this cookie.
    Cookie(Box<str>),
    /// The value of this header (lower-case name).
    Header(Box<str>),
    /// The client's IP address.
    Ip,
}

/// A route's weighted split, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Each group with the end of its interval in the weight space, in file order.
    ends: Box<[(UpstreamId, u64)]>,
    /// Sum of the weights (the end of the last interval); at least 1.
    total: u64,
    /// Where the request's point comes from when a key is present.
    pub sticky: Option<StickyKey>,
    /// This split's index among the snapshot's splits: its per-worker counter.
    pub slot: usize,
}

impl Split {
    /// A split over `(group, weight)` pairs; `None` when the weights sum to zero.
    pub fn new(
        groups: &[(UpstreamId, u32)],
        sticky: Option<StickyKey>,
        slot: usize,
    ) -> Option<Self> {
        let mut total = 0u64;
        let ends = groups
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|&(id, w)| {
                total += u64::from(w);
                (id, total)
            })
            .collect();
        (total > 0).then_some(Split {
            ends,
            total,
            sticky,
            slot,
        })
    }

    /// The group for the `n`-th request through this split on this worker.
    pub fn pick_nth(&self, n: u64) -> UpstreamId {
        self.pick_at(n.wrapping_mul(GOLDEN))
    }

    /// The group for a client whose sticky key is `key`.
    pub fn pick_for_key(&self, key: &[u8]) -> UpstreamId {
        self.pick_at(hash(key))
    }

    /// The group whose interval holds `fraction` (a point in `0..2^64`, scaled to `0..total`).
    fn pick_at(&self, fraction: u64) -> UpstreamId {
        let point = ((u128::from(fraction) * u128::from(self.total)) >> 64) as u64;
        self.ends
            .iter()
            .find(|(_, end)| point < *end)
            .or(self.ends.last())
            .map_or(UpstreamId(0), |(id, _)| *id)
    }

    /// The groups this split sends to, in file order.
    pub fn groups(&self) -> impl Iterator<Item = UpstreamId> + '_ {
        self.ends.iter().map(|(id, _)| *id)
    }
}

/// FNV-1a with a SplitMix64 finalizer: stable across processes, builds and workers (a client
/// must land on the same side whichever worker or instance serves it), and well spread.
fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(v1: u32, v2: u32) -> Split {
        Split::new(&[(UpstreamId(0), v1), (UpstreamId(1), v2)], None, 0).expect("split")
    }

    fn count(split: &Split, range: std::ops::Range<u64>) -> [u64; 2] {
        let mut counts = [0; 2];
        for n in range {
            counts[split.pick_nth(n).0] += 1;
        }
        counts
    }

    #[test]
    fn sequence_gives_near_exact_shares_over_any_window() {
        let split = canary(95, 5);
        let [_, v2] = count(&split, 0..10_000);
        assert!(v2.abs_diff(500) <= 2, "{v2} of 10000 on the canary");
        for start in [0, 7, 1234, u64::MAX - 500] {
            let [_, v2] = count(&split, start..start.wrapping_add(200));
            assert!((8..=12).contains(&v2), "window at {start}: {v2} of 200");
        }
    }

    #[test]
    fn three_way_split_follows_the_weights() {
        let split = Split::new(
            &[(UpstreamId(0), 1), (UpstreamId(1), 2), (UpstreamId(2), 7)],
            None,
            0,
        )
        .expect("split");
        let mut counts = [0u64; 3];
        for n in 0..1000 {
            counts[split.pick_nth(n).0] += 1;
        }
        for (got, want) in counts.iter().zip([100, 200, 700]) {
            assert!(got.abs_diff(want) <= 3, "{counts:?}");
        }
    }

    #[test]
    fn zero_weight_groups_get_nothing_and_all_zero_is_refused() {
        let split = canary(100, 0);
        assert_eq!(count(&split, 0..1000), [1000, 0]);
        assert_eq!(split.groups().count(), 1);
        assert!(Split::new(&[(UpstreamId(0), 0)], None, 0).is_none());
    }

    #[test]
    fn a_key_always_lands_on_the_same_group() {
        let split = canary(50, 50);
        for key in [&b"alice"[..], b"bob", b"10.0.0.1", b""] {
            let first = split.pick_for_key(key);
            assert!((0..10).all(|_| split.pick_for_key(key) == first));
        }
    }

    #[test]
    fn keys_spread_by_weight() {
        let split = canary(90, 10);
        let v2 = (0..10_000)
            .filter(|i| split.pick_for_key(format!("client-{i}").as_bytes()) == UpstreamId(1))
            .count();
        assert!(
            (850..=1150).contains(&v2),
            "{v2} of 10000 keys on the canary"
        );
    }

    #[test]
    fn growing_the_canary_moves_clients_only_toward_it() {
        let before = canary(95, 5);
        let after = canary(90, 10);
        for i in 0..5000 {
            let key = format!("client-{i}");
            if before.pick_for_key(key.as_bytes()) == UpstreamId(1) {
                assert_eq!(after.pick_for_key(key.as_bytes()), UpstreamId(1), "{key}");
            }
        }
    }
}
