//! A worker's policy state: its rate-limit tables, caches of verified credentials and its
//! handle on the password verifier pool. `!Sync`, never locked; one per
//! worker, so a credential verified on one core is verified again on another (once).
//!
//! Both caches are keyed by a hash keyed with this worker's random seed, so a client cannot
//! aim collisions at them, and every hit is confirmed in constant time against the full
//! credential (a token) or its digest (a password). Each holds at most [`MAX_ENTRIES`]; when
//! full it is emptied, the simplest bound that can never grow.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use subtle::ConstantTimeEq;

use super::basic::Basic;
use super::introspect::IntrospectionCache;
use super::jwt::{Jwt, VerifiedToken};
use super::verifier::Verifier;
use crate::rate_limit::WorkerLimits;

/// Most entries in each cache.
pub const MAX_ENTRIES: usize = 4096;
/// How long a verified password stays cached.
pub const BASIC_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct TokenEntry {
    token: Box<[u8]>,
    generation: u64,
    verified: Rc<VerifiedToken>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct PolicyState {
    /// The worker's rate-limit tables (see `crate::rate_limit`).
    pub rate_limits: WorkerLimits,
    seed: ahash::RandomState,
    tokens: RefCell<AHashMap<u64, TokenEntry>>,
    passwords: RefCell<AHashMap<u64, ([u8; 32], Instant)>>,
    /// Introspection results and lookups in flight (`introspect` policies).
    pub introspections: IntrospectionCache,
    /// The password verifier pool; without one (benches, unit tests) every password that is
    /// not cached is answered "busy".
    verifier: Option<Verifier>,
}

impl PolicyState {
    /// The state of worker `worker` of `workers`, which verifies passwords with `verifier`.
    pub fn new(worker: usize, workers: usize, verifier: Verifier) -> Self {
        PolicyState {
            rate_limits: WorkerLimits::new(worker, workers),
            verifier: Some(verifier),
            ..Default::default()
        }
    }

    /// The password verifier pool's handle, if the worker has one.
    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// The cache key of `token` under `policy`.
    pub fn jwt_cache_key(&self, policy: &Jwt, token: &[u8]) -> u64 {
        self.seed
            .hash_one((std::ptr::from_ref(policy) as usize, token))
    }

    /// The cached verification of `token`, if made with the keys of `generation`.
    pub fn cached_token(
        &self,
        key: u64,
        token: &[u8],
        generation: u64,
    ) -> Option<Rc<VerifiedToken>> {
        let tokens = self.tokens.borrow();
        let entry = tokens.get(&key)?;
        let same = bool::from(entry.token.ct_eq(token)) && entry.generation == generation;
        same.then(|| Rc::clone(&entry.verified))
    }

    /// Caches a verification (allocates: it happens once per token per worker).
    pub fn cache_token(
        &self,
        key: u64,
        token: &[u8],
        generation: u64,
        verified: Rc<VerifiedToken>,
    ) {
        let mut tokens = self.tokens.borrow_mut();
        if tokens.len() >= MAX_ENTRIES {
            tokens.clear();
        }
        let entry = TokenEntry {
            token: token.into(),
            generation,
            verified,
        };
        tokens.insert(key, entry);
    }

    /// The cache key of a credential digest under `policy`.
    pub fn basic_cache_key(&self, policy: &Basic, digest: &[u8; 32]) -> u64 {
        self.seed
            .hash_one((std::ptr::from_ref(policy) as usize, digest))
    }

    /// The cached digest under `key`, if still fresh.
    pub fn cached_basic(&self, key: u64) -> Option<[u8; 32]> {
        self.cached_basic_at(key, Instant::now())
    }

    fn cached_basic_at(&self, key: u64, now: Instant) -> Option<[u8; 32]> {
        let passwords = self.passwords.borrow();
        let (digest, at) = passwords.get(&key)?;
        (now.saturating_duration_since(*at) < BASIC_TTL).then_some(*digest)
    }

    /// Caches a successful password verification.
    pub fn cache_basic(&self, key: u64, digest: [u8; 32]) {
        let mut passwords = self.passwords.borrow_mut();
        if passwords.len() >= MAX_ENTRIES {
            passwords.clear();
        }
        passwords.insert(key, (digest, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_entries_expire_and_the_cache_stays_bounded() {
        let state = PolicyState::default();
        for i in 0..MAX_ENTRIES as u64 + 10 {
            state.cache_basic(i, [1; 32]);
        }
        assert!(state.passwords.borrow().len() <= MAX_ENTRIES);
        let key = MAX_ENTRIES as u64 + 9;
        let now = Instant::now();
        assert_eq!(state.cached_basic_at(key, now), Some([1; 32]));
        assert_eq!(state.cached_basic_at(key, now + BASIC_TTL), None);
    }
}
