//! The response cache: one LRU per worker and per `[caches.NAME]`, RFC 9111 shared-cache
//! rules, per-worker request coalescing.
//!
//! - `control`: `Cache-Control` request and response directives;
//! - `date`: HTTP dates;
//! - `rules`: what may be stored, freshness lifetime, age, and whether a stored response may
//!   answer a request;
//! - `meta`: the cache-relevant fields of a response, read in one pass;
//! - `key`: primary (URL + configured variant) and secondary (`Vary`) keys;
//! - `purge`: purges by URL, path prefix and tag, applied by each worker to its own caches;
//! - `store`: the LRU itself (slab, intrusive recency list, byte budget);
//! - this file: the compiled settings, a worker's caches (kept across reloads by name and key
//!   shape), the coalescing table and the counters.
//!
//! The request path's side (lookup after the route's policies, the hit written like a
//! `respond` answer, the store observing the relayed body) is `proxy::cached`. Purges arrive
//! as worker commands from the control thread, never from another worker.

pub mod control;
pub mod date;
pub mod key;
pub mod meta;
pub mod purge;
pub mod rules;
pub mod store;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ahash::AHashMap;

pub use key::{KeyShape, QueryKey};
pub use purge::Purge;
pub use store::{Entry, Store};

/// A compiled `[caches.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// The table's name.
    pub name: String,
    /// Memory budget per worker, bytes.
    pub max_bytes: usize,
    /// Largest body stored, bytes.
    pub max_object_bytes: usize,
    /// What besides method, host and path is in the key.
    pub key: KeyShape,
    /// Freshness of storable responses that state none, seconds (0: RFC 9111 only).
    pub default_ttl: u64,
    /// The upstream's field of space-separated purge tags, removed before the client.
    pub tag_header: Option<String>,
    /// Longest wait for another request's miss of the same key before going upstream.
    pub coalesce_wait: Duration,
}

/// Index of a cache in `Snapshot::caches`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheId(pub usize);

/// What one worker counted for one cache since the last report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounts {
    /// Answered from the cache (fresh, or revalidated with a 304).
    pub hits: u64,
    /// Went upstream with nothing usable stored.
    pub misses: u64,
    /// Answered stale (max-stale, stale-while-revalidate, stale-if-error).
    pub stale: u64,
    /// Conditional requests sent to revalidate a stored response.
    pub revalidations: u64,
    /// Requests that waited for another request's miss of the same key.
    pub coalesced: u64,
    /// Entries published.
    pub stores: u64,
    /// Entries evicted for room.
    pub evictions: u64,
    /// Entries removed by invalidation or purge.
    pub purged: u64,
}

impl CacheCounts {
    /// Adds `other`.
    pub fn add(&mut self, other: &CacheCounts) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.stale += other.stale;
        self.revalidations += other.revalidations;
        self.coalesced += other.coalesced;
        self.stores += other.stores;
        self.evictions += other.evictions;
        self.purged += other.purged;
    }
}

/// One worker's state for one cache.
#[derive(Debug)]
pub struct WorkerCache {
    /// Its settings.
    pub settings: Arc<CacheSettings>,
    /// The entries.
    pub store: Store,
    /// Misses in flight, by the hash of URL and variant key.
    pub flights: AHashMap<u64, Rc<Flight>>,
    /// Counters since the last report.
    pub counts: CacheCounts,
}

impl WorkerCache {
    fn new(settings: Arc<CacheSettings>) -> Self {
        WorkerCache {
            store: Store::new(settings.max_bytes),
            settings,
            flights: AHashMap::new(),
            counts: CacheCounts::default(),
        }
    }
}

/// A worker's caches, in the order of the snapshot they were last matched to.
#[derive(Debug, Default)]
pub struct WorkerCaches {
    /// The snapshot's caches they were matched to (by pointer).
    matched: Vec<Arc<CacheSettings>>,
    caches: Vec<WorkerCache>,
}

impl WorkerCaches {
    /// Matches the caches to a snapshot's `settings` (a reload): a cache whose name survives
    /// with the same key shape keeps its entries (its budget follows the new settings);
    /// any other starts empty. Cheap when nothing changed.
    pub fn sync(&mut self, settings: &[Arc<CacheSettings>]) {
        if self.matches(settings) {
            return;
        }
        let mut old = std::mem::take(&mut self.caches);
        self.caches = settings
            .iter()
            .map(|s| {
                let kept = old
                    .iter()
                    .position(|c| c.settings.name == s.name && c.settings.key == s.key);
                match kept {
                    Some(i) => {
                        let mut cache = old.swap_remove(i);
                        cache.store.set_max_bytes(s.max_bytes);
                        cache.settings = Arc::clone(s);
                        cache
                    }
                    None => WorkerCache::new(Arc::clone(s)),
                }
            })
            .collect();
        self.matched = settings.to_vec();
    }

    /// The cache with this id, if the caches were matched to its snapshot.
    pub fn get(&mut self, id: CacheId) -> Option<&mut WorkerCache> {
        self.caches.get_mut(id.0)
    }

    /// The cache that `settings` (cache `id` of some snapshot) names: by id when the caches
    /// were matched to that snapshot, else by name and key shape.
    pub fn resolve(
        &mut self,
        settings: &Arc<CacheSettings>,
        id: CacheId,
    ) -> Option<&mut WorkerCache> {
        let by_id = self
            .matched
            .get(id.0)
            .is_some_and(|m| Arc::ptr_eq(m, settings));
        let at = if by_id {
            id.0
        } else {
            self.caches
                .iter()
                .position(|c| c.settings.name == settings.name && c.settings.key == settings.key)?
        };
        self.caches.get_mut(at)
    }

    /// Every cache.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut WorkerCache> {
        self.caches.iter_mut()
    }

    /// Whether the caches were matched to exactly these settings.
    pub fn matches(&self, settings: &[Arc<CacheSettings>]) -> bool {
        self.matched.len() == settings.len()
            && self
                .matched
                .iter()
                .zip(settings)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

/// A miss in flight: the requests for the same key wait for it to finish.
#[derive(Debug, Default)]
pub struct Flight {
    done: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Flight {
    /// Marks the miss finished (stored or not) and wakes every waiter.
    pub fn finish(&self) {
        self.done.set(true);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Whether the miss finished.
    pub fn is_finished(&self) -> bool {
        self.done.get()
    }

    /// Resolves when the miss finished.
    pub fn finished(self: &Rc<Self>) -> Finished {
        Finished(Rc::clone(self))
    }
}

/// The future of [`Flight::finished`].
#[derive(Debug)]
pub struct Finished(Rc<Flight>);

impl Future for Finished {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.done.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.0.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(name: &str, query: QueryKey) -> Arc<CacheSettings> {
        Arc::new(CacheSettings {
            name: name.into(),
            max_bytes: 1 << 20,
            max_object_bytes: 1 << 16,
            key: KeyShape {
                query,
                ..KeyShape::default()
            },
            default_ttl: 0,
            tag_header: None,
            coalesce_wait: Duration::from_secs(1),
        })
    }

    #[test]
    fn reload_keeps_a_cache_whose_name_and_shape_survive() {
        let mut caches = WorkerCaches::default();
        let first = vec![settings("a", QueryKey::All), settings("b", QueryKey::All)];
        caches.sync(&first);
        for id in [0, 1] {
            let cache = caches.get(CacheId(id)).expect("cache");
            let hash = cache.store.hash(b"k");
            let e = Entry {
                url: b"k".to_vec().into(),
                variant: Box::default(),
                vary: Box::default(),
                status: 200,
                fields: Box::default(),
                body: bytes::Bytes::new(),
                freshness: rules::Freshness::default(),
                initial_age: 0,
                stored_at: std::time::Instant::now(),
                etag: None,
                last_modified: None,
                tags: Box::default(),
            };
            cache.store.insert(hash, e).expect("fits");
        }
        // `b` first now, `a` with another key shape, `c` new.
        let second = vec![
            settings("b", QueryKey::All),
            settings("a", QueryKey::None),
            settings("c", QueryKey::All),
        ];
        caches.sync(&second);
        assert!(caches.matches(&second));
        let lens: Vec<usize> = caches.iter_mut().map(|c| c.store.len()).collect();
        assert_eq!(lens, [1, 0, 0]);
        assert_eq!(
            caches.get(CacheId(0)).map(|c| c.settings.name.as_str()),
            Some("b")
        );
    }

    #[test]
    fn a_finished_flight_wakes_its_waiters() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let flight = Rc::new(Flight::default());
            let waiters: Vec<_> = (0..3).map(|_| monoio::spawn(flight.finished())).collect();
            monoio::time::sleep(Duration::from_millis(1)).await;
            flight.finish();
            for w in waiters {
                w.await;
            }
        });
    }
}
