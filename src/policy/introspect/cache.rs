//! A worker's introspection results, keyed by a keyed hash of (policy, token) and confirmed
//! by the token's SHA-256 digest (raw tokens are never stored).
//!
//! An active result lives until min(`cache_ttl`, `exp` − now); an inactive one only when
//! `negative_cache_ttl` is set, and inactive entries never fill more than a quarter of the
//! cache (a client sending random tokens must not be able to flush the good ones). An
//! unreachable server's answer is never cached. A slot may also hold the [`Flight`] of a
//! lookup in progress, which later requests for the token wait on.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use subtle::ConstantTimeEq;

use super::flight::Flight;
use crate::policy::jwt::VerifiedToken;

/// What the authorization server said about a token.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `active: true`, with its claims.
    Active(Rc<VerifiedToken>),
    /// `active: false` (or expired).
    Inactive,
    /// The server could not be asked or gave no usable answer: fail closed (503).
    Unavailable,
}

#[derive(Debug)]
enum Slot {
    Ready {
        digest: [u8; 32],
        outcome: Outcome,
        until: Instant,
    },
    Pending(Rc<Flight<Outcome>>),
}

/// What a look into the cache found.
#[derive(Debug, Clone)]
pub enum Found {
    /// A fresh result.
    Hit(Outcome),
    /// Another request is asking the server: wait for its flight.
    Wait(Rc<Flight<Outcome>>),
    /// Nobody is: this request asks, and completes the flight (now in the cache) after.
    Lead(Rc<Flight<Outcome>>),
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct IntrospectionCache {
    seed: ahash::RandomState,
    slots: RefCell<AHashMap<u64, Slot>>,
    negatives: Cell<usize>,
}

impl IntrospectionCache {
    /// The key of `token` under the policy at `policy` (its address).
    pub fn key(&self, policy: usize, token: &[u8]) -> u64 {
        self.seed.hash_one((policy, token))
    }

    /// Looks `key` up at `now`; a miss starts a flight and makes the caller its leader.
    pub fn find(&self, key: u64, digest: &[u8; 32], now: Instant) -> Found {
        let mut slots = self.slots.borrow_mut();
        match slots.get(&key) {
            Some(Slot::Ready {
                digest: stored,
                outcome,
                until,
            }) if bool::from(stored.ct_eq(digest)) && now < *until => {
                return Found::Hit(outcome.clone())
            }
            // A flight whose leader gave up is replaced by the caller's.
            Some(Slot::Pending(flight)) if !flight.is_settled() => {
                return Found::Wait(Rc::clone(flight))
            }
            _ => {}
        }
        if let Some(Slot::Ready { outcome, .. }) = slots.remove(&key) {
            self.forget(&outcome);
        }
        let flight = Flight::new();
        slots.insert(key, Slot::Pending(Rc::clone(&flight)));
        Found::Lead(flight)
    }

    /// Records the leader's `outcome` for `ttl` (zero: not kept) and settles its flight.
    /// At most `max_entries` are kept: when full, expired entries go, then everything.
    pub fn finish(
        &self,
        key: u64,
        digest: [u8; 32],
        outcome: Outcome,
        ttl: Duration,
        now: Instant,
        max_entries: usize,
    ) {
        let mut slots = self.slots.borrow_mut();
        let flight = match slots.remove(&key) {
            Some(Slot::Pending(flight)) => Some(flight),
            Some(Slot::Ready { outcome, .. }) => {
                self.forget(&outcome);
                None
            }
            None => None,
        };
        let negative = matches!(outcome, Outcome::Inactive);
        let room_for_negative = self.negatives.get() < (max_entries / 4).max(1);
        let keep = !ttl.is_zero()
            && !matches!(outcome, Outcome::Unavailable)
            && (!negative || room_for_negative);
        if keep {
            if slots.len() >= max_entries {
                slots.retain(|_, slot| match slot {
                    Slot::Ready { until, .. } => *until > now,
                    Slot::Pending(_) => true,
                });
                if slots.len() >= max_entries {
                    slots.retain(|_, slot| matches!(slot, Slot::Pending(_)));
                }
                self.negatives.set(
                    slots
                        .values()
                        .filter(|s| {
                            matches!(
                                s,
                                Slot::Ready {
                                    outcome: Outcome::Inactive,
                                    ..
                                }
                            )
                        })
                        .count(),
                );
            }
            if negative {
                self.negatives.set(self.negatives.get() + 1);
            }
            let until = now + ttl;
            let slot = Slot::Ready {
                digest,
                outcome: outcome.clone(),
                until,
            };
            slots.insert(key, slot);
        }
        drop(slots);
        if let Some(flight) = flight {
            flight.complete(outcome);
        }
    }

    /// The leader gave up (its request was dropped): waiters look again.
    pub fn abandon(&self, key: u64, flight: &Rc<Flight<Outcome>>) {
        let mut slots = self.slots.borrow_mut();
        if matches!(slots.get(&key), Some(Slot::Pending(f)) if Rc::ptr_eq(f, flight)) {
            slots.remove(&key);
        }
        drop(slots);
        flight.abandon();
    }

    fn forget(&self, outcome: &Outcome) {
        if matches!(outcome, Outcome::Inactive) {
            self.negatives.set(self.negatives.get().saturating_sub(1));
        }
    }

    /// Entries held (results and flights).
    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(cache: &IntrospectionCache, key: u64, now: Instant) -> Rc<Flight<Outcome>> {
        match cache.find(key, &[key as u8; 32], now) {
            Found::Lead(f) => f,
            other => panic!("expected to lead, got {other:?}"),
        }
    }

    #[test]
    fn a_second_lookup_waits_then_hits_until_the_ttl() {
        let cache = IntrospectionCache::default();
        let now = Instant::now();
        let _flight = lead(&cache, 1, now);
        assert!(matches!(cache.find(1, &[1; 32], now), Found::Wait(_)));
        cache.finish(
            1,
            [1; 32],
            Outcome::Inactive,
            Duration::from_secs(5),
            now,
            100,
        );
        assert!(matches!(
            cache.find(1, &[1; 32], now + Duration::from_secs(4)),
            Found::Hit(Outcome::Inactive)
        ));
        // Expired: asked again.
        assert!(matches!(
            cache.find(1, &[1; 32], now + Duration::from_secs(5)),
            Found::Lead(_)
        ));
    }

    #[test]
    fn unavailable_and_zero_ttl_are_not_kept_and_a_digest_mismatch_misses() {
        let cache = IntrospectionCache::default();
        let now = Instant::now();
        let _f = lead(&cache, 1, now);
        cache.finish(
            1,
            [1; 32],
            Outcome::Unavailable,
            Duration::from_secs(5),
            now,
            100,
        );
        let _f = lead(&cache, 1, now);
        cache.finish(1, [1; 32], Outcome::Inactive, Duration::ZERO, now, 100);
        assert!(cache.is_empty());
        let _f = lead(&cache, 2, now);
        cache.finish(
            2,
            [2; 32],
            Outcome::Inactive,
            Duration::from_secs(5),
            now,
            100,
        );
        assert!(matches!(cache.find(2, &[9; 32], now), Found::Lead(_)));
    }

    #[test]
    fn inactive_entries_fill_at_most_a_quarter_and_the_cache_stays_bounded() {
        let cache = IntrospectionCache::default();
        let now = Instant::now();
        for key in 0..100 {
            let _f = lead(&cache, key, now);
            cache.finish(
                key,
                [key as u8; 32],
                Outcome::Inactive,
                Duration::from_secs(5),
                now,
                40,
            );
        }
        assert_eq!(cache.len(), 10);
        for key in 100..200 {
            let _f = lead(&cache, key, now);
            let token = Rc::new(VerifiedToken::new(
                Default::default(),
                "sub",
                &[],
                None,
                |_| None,
            ));
            cache.finish(
                key,
                [key as u8; 32],
                Outcome::Active(token),
                Duration::from_secs(5),
                now,
                40,
            );
            assert!(cache.len() <= 40);
        }
    }

    #[test]
    fn an_abandoned_flight_leaves_the_slot_to_the_next_request() {
        let cache = IntrospectionCache::default();
        let now = Instant::now();
        let flight = lead(&cache, 1, now);
        cache.abandon(1, &flight);
        assert!(matches!(cache.find(1, &[1; 32], now), Found::Lead(_)));
    }
}
