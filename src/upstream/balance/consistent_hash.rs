//! Consistent hashing: a ring of virtual nodes (`VNODES` per unit of weight) built once per
//! target set on the control side and shared read-only by the workers. A key maps to the
//! first node clockwise of its hash; an ineligible target passes the key on to the next node.
//! Adding or removing one of N targets moves only about 1/N of the keys.

use std::net::SocketAddr;

/// Virtual nodes per unit of weight.
const VNODES: u32 = 100;

/// Fixed seeds: the same key maps to the same point in every worker and across reloads.
fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x5851_f42d_4c95_7f2d,
        0x1405_7b7e_f767_814f,
        0x2545_f491_4f6c_dd1d,
        0x9e37_79b9_7f4a_7c15,
    )
}

/// The hash of a request key.
pub fn key_hash(key: &[u8]) -> u64 {
    hasher().hash_one(key)
}

/// The value of cookie `name` in a `Cookie` header value.
pub fn cookie_value<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq] == *name.as_bytes()).then(|| &pair[eq + 1..])
    })
}

/// The sorted ring: `(point, target index)`.
#[derive(Debug, Clone, Default)]
pub struct HashRing {
    points: Vec<(u64, u32)>,
}

impl HashRing {
    /// The ring of targets `(addr, weight)`; a node's point depends only on its target's
    /// address, so other targets' nodes stay where they are when one comes or goes.
    pub fn build(targets: impl IntoIterator<Item = (SocketAddr, u32)>) -> Self {
        let h = hasher();
        let mut points = Vec::new();
        for (i, (addr, weight)) in targets.into_iter().enumerate() {
            for v in 0..VNODES * weight.max(1) {
                points.push((h.hash_one((addr, v)), i as u32));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The target of `hash`: the first eligible node clockwise, or `None`.
    pub fn lookup(&self, hash: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.points.len();
        let start = self.points.partition_point(|&(p, _)| p < hash);
        (0..n)
            .map(|k| self.points[(start + k) % n].1 as usize)
            .find(|&i| eligible(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 8000 + i))
    }

    fn owners(ring: &HashRing, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
        (0..10_000u32)
            .map(|k| {
                let i = ring
                    .lookup(key_hash(format!("user-{k}").as_bytes()), |_| true)
                    .expect("target");
                addrs[i]
            })
            .collect()
    }

    #[test]
    fn spreads_keys_roughly_evenly() {
        let addrs: Vec<_> = (0..5).map(addr).collect();
        let ring = HashRing::build(addrs.iter().map(|&a| (a, 1)));
        let owners = owners(&ring, &addrs);
        for a in &addrs {
            let share = owners.iter().filter(|o| *o == a).count();
            assert!((1400..=2600).contains(&share), "{a}: {share}");
        }
    }

    #[test]
    fn adding_a_target_moves_about_one_in_n_keys() {
        let before: Vec<_> = (0..9).map(addr).collect();
        let after: Vec<_> = (0..10).map(addr).collect();
        let a = owners(&HashRing::build(before.iter().map(|&a| (a, 1))), &before);
        let b = owners(&HashRing::build(after.iter().map(|&a| (a, 1))), &after);
        let moved: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).collect();
        // Ideal is 1/10 = 1,000 keys, all of them onto the new target.
        assert!((700..=1300).contains(&moved.len()), "{} moved", moved.len());
        assert!(moved.iter().all(|(_, to)| **to == addr(9)));
    }

    #[test]
    fn removing_a_target_moves_only_its_keys() {
        let before: Vec<_> = (0..10).map(addr).collect();
        let after: Vec<_> = before.iter().copied().filter(|&a| a != addr(3)).collect();
        let a = owners(&HashRing::build(before.iter().map(|&a| (a, 1))), &before);
        let b = owners(&HashRing::build(after.iter().map(|&a| (a, 1))), &after);
        let moved = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        let owned = a.iter().filter(|&&o| o == addr(3)).count();
        assert_eq!(moved, owned);
        assert!((700..=1300).contains(&moved), "{moved} moved");
    }

    #[test]
    fn an_ineligible_target_hands_its_keys_to_the_next_node() {
        let addrs: Vec<_> = (0..3).map(addr).collect();
        let ring = HashRing::build(addrs.iter().map(|&a| (a, 1)));
        for k in 0..1000u32 {
            let h = key_hash(&k.to_be_bytes());
            let owner = ring.lookup(h, |_| true).expect("owner");
            let next = ring.lookup(h, |i| i != owner).expect("next");
            assert_ne!(owner, next);
            assert_eq!(ring.lookup(h, |_| true), Some(owner), "stable");
        }
        assert_eq!(ring.lookup(1, |_| false), None);
        assert_eq!(HashRing::default().lookup(1, |_| true), None);
    }

    #[test]
    fn reads_cookie_values() {
        let h = b"a=1; session=xyz;b=2";
        assert_eq!(cookie_value(h, "session"), Some(&b"xyz"[..]));
        assert_eq!(cookie_value(h, "b"), Some(&b"2"[..]));
        assert_eq!(cookie_value(h, "sess"), None);
    }
}
