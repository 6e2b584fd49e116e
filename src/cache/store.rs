//! One worker's LRU of stored responses for one `[caches.NAME]`.
//!
//! Entries live in a slab (`Vec<Slot>`, freed slots reused) threaded on an intrusive
//! doubly-linked recency list; a hash map from the URL key's hash to the first slot of a
//! chain (linked through the slots) finds them. A lookup walks one short chain, compares
//! bytes, and moves the entry to the front: no allocation. Bodies are `Bytes`, so a hit
//! hands the body out by reference count.
//!
//! Memory: every entry counts its key, variant, secondary key, stored fields, body and tags
//! plus [`ENTRY_OVERHEAD`] (its slot and its share of the index); the whole is held under
//! `max_bytes` by evicting from the least recently used end before an entry is published.

use std::time::Instant;

use ahash::AHashMap;
use bytes::Bytes;

use super::rules::Freshness;

/// Bytes every entry costs besides its own buffers: its slot and index slot.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<Slot>() + 32;
/// "No slot".
const NIL: u32 = u32::MAX;

/// A stored response.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The URL key (see `key`).
    pub url: Box<[u8]>,
    /// The variant key (configured headers and cookies).
    pub variant: Box<[u8]>,
    /// The secondary key (the request's values of the response's `Vary` fields).
    pub vary: Box<[u8]>,
    /// Status code.
    pub status: u16,
    /// The stored header field lines (`Name: value\r\n` each), as the client got them,
    /// without framing, connection and per-request fields.
    pub fields: Box<[u8]>,
    /// The body.
    pub body: Bytes,
    /// Freshness facts.
    pub freshness: Freshness,
    /// Age when it arrived (RFC 9111 §4.2.3 `corrected_initial_age`), seconds.
    pub initial_age: u64,
    /// When it arrived (or was last validated).
    pub stored_at: Instant,
    /// The `ETag` value.
    pub etag: Option<Box<[u8]>>,
    /// `Last-Modified`, Unix seconds, and the field's text.
    pub last_modified: Option<(u64, Box<[u8]>)>,
    /// Purge tags (the upstream's tag field, space-separated).
    pub tags: Box<[u8]>,
}

impl Entry {
    /// The bytes this entry is charged for.
    pub fn charge(&self) -> usize {
        ENTRY_OVERHEAD
            + self.url.len()
            + self.variant.len()
            + self.vary.len()
            + self.fields.len()
            + self.body.len()
            + self.etag.as_ref().map_or(0, |e| e.len())
            + self.last_modified.as_ref().map_or(0, |l| l.1.len())
            + self.tags.len()
    }

    /// Current age in seconds at `now` (§4.2.3: initial age plus resident time).
    pub fn age(&self, now: Instant) -> u64 {
        self.initial_age
            .saturating_add(now.saturating_duration_since(self.stored_at).as_secs())
    }

    /// The path of the URL key (between the host and the query).
    pub fn path(&self) -> &[u8] {
        let rest = self.url.splitn(3, |&b| b == 0).nth(2).unwrap_or(&[]);
        rest.split(|&b| b == b'?').next().unwrap_or(rest)
    }

    /// The host of the URL key.
    pub fn host(&self) -> &[u8] {
        self.url.split(|&b| b == 0).nth(1).unwrap_or(&[])
    }

    /// Whether `tag` is one of the entry's tags.
    pub fn has_tag(&self, tag: &[u8]) -> bool {
        self.tags
            .split(|b| b.is_ascii_whitespace())
            .any(|t| !t.is_empty() && t == tag)
    }
}

#[derive(Debug)]
struct Slot {
    entry: Option<Entry>,
    hash: u64,
    /// Recency list: towards the most recently used.
    prev: u32,
    /// Recency list: towards the least recently used.
    next: u32,
    /// Next slot with the same hash.
    chain: u32,
}

/// Why an entry was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It alone is larger than the whole budget.
    TooLarge,
}

/// One worker's entries for one cache.
#[derive(Debug)]
pub struct Store {
    slots: Vec<Slot>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    index: AHashMap<u64, u32>,
    hasher: ahash::RandomState,
    bytes: usize,
    max_bytes: usize,
    entries: usize,
    evictions: u64,
}

impl Store {
    /// An empty store held under `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Store {
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            index: AHashMap::new(),
            hasher: ahash::RandomState::new(),
            bytes: 0,
            max_bytes,
            entries: 0,
            evictions: 0,
        }
    }

    /// The hash of a URL key.
    pub fn hash(&self, url: &[u8]) -> u64 {
        self.hasher.hash_one(url)
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes charged for the entries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries evicted so far (taken: the counter restarts).
    pub fn take_evictions(&mut self) -> u64 {
        std::mem::take(&mut self.evictions)
    }

    /// Changes the budget, evicting down to it.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
        self.evict_to(max_bytes);
    }

    /// Finds the entry for `url` (hash `hash`) and `variant` whose secondary key `vary_ok`
    /// accepts, and makes it the most recently used.
    pub fn find(
        &mut self,
        hash: u64,
        url: &[u8],
        variant: &[u8],
        vary_ok: impl Fn(&[u8]) -> bool,
    ) -> Option<u32> {
        let mut at = *self.index.get(&hash)?;
        while at != NIL {
            let slot = &self.slots[at as usize];
            if let Some(e) = &slot.entry {
                if *e.url == *url && *e.variant == *variant && vary_ok(&e.vary) {
                    self.touch(at);
                    return Some(at);
                }
            }
            at = slot.chain;
        }
        None
    }

    /// Whether any entry (any variant) is stored for `url`.
    pub fn has_url(&self, hash: u64, url: &[u8]) -> bool {
        self.chain_slots(hash)
            .any(|s| self.get(s).is_some_and(|e| *e.url == *url))
    }

    /// The entry in `slot` (from [`Store::find`]).
    pub fn get(&self, slot: u32) -> Option<&Entry> {
        self.slots.get(slot as usize)?.entry.as_ref()
    }

    /// The entry in `slot`, to refresh it (its charge is recomputed by
    /// [`Store::recharge`]).
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Entry> {
        self.slots.get_mut(slot as usize)?.entry.as_mut()
    }

    /// Recomputes the charge of the entry in `slot` after a change, `before` being its
    /// charge before.
    pub fn recharge(&mut self, slot: u32, before: usize) {
        if let Some(e) = self.get(slot) {
            let after = e.charge();
            self.bytes = self.bytes - before + after;
            self.evict_to(self.max_bytes);
        }
    }

    /// Publishes `entry` (hash `hash` of its URL key), replacing the entry with the same
    /// keys, evicting least recently used entries to make room. Returns the slot.
    pub fn insert(&mut self, hash: u64, entry: Entry) -> Result<u32, Refused> {
        let charge = entry.charge();
        if charge > self.max_bytes {
            return Err(Refused::TooLarge);
        }
        let same = self.find(hash, &entry.url, &entry.variant, |v| *v == *entry.vary);
        if let Some(old) = same {
            self.remove(old);
        }
        self.evict_to(self.max_bytes - charge);
        let slot = Slot {
            entry: Some(entry),
            hash,
            prev: NIL,
            next: NIL,
            chain: self.index.get(&hash).copied().unwrap_or(NIL),
        };
        let at = match self.free.pop() {
            Some(at) => {
                self.slots[at as usize] = slot;
                at
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(hash, at);
        self.link_front(at);
        self.bytes += charge;
        self.entries += 1;
        Ok(at)
    }

    /// Removes the entry in `slot`.
    pub fn remove(&mut self, at: u32) {
        let Some(slot) = self.slots.get_mut(at as usize) else {
            return;
        };
        let Some(entry) = slot.entry.take() else {
            return;
        };
        let (hash, chain) = (slot.hash, slot.chain);
        self.bytes -= entry.charge();
        self.entries -= 1;
        self.unlink(at);
        // Unchain.
        match self.index.get(&hash).copied() {
            Some(first) if first == at => {
                if chain == NIL {
                    self.index.remove(&hash);
                } else {
                    self.index.insert(hash, chain);
                }
            }
            Some(mut prev) => {
                while prev != NIL {
                    let next = self.slots[prev as usize].chain;
                    if next == at {
                        self.slots[prev as usize].chain = chain;
                        break;
                    }
                    prev = next;
                }
            }
            None => {}
        }
        self.free.push(at);
    }

    /// Removes every entry whose URL key is `url` (every variant); returns how many went.
    pub fn remove_url(&mut self, hash: u64, url: &[u8]) -> usize {
        let mut gone = 0;
        loop {
            let found = self
                .chain_slots(hash)
                .find(|&s| self.get(s).is_some_and(|e| *e.url == *url));
            let Some(at) = found else { return gone };
            self.remove(at);
            gone += 1;
        }
    }

    /// Removes every entry `doomed` picks; returns how many went.
    pub fn remove_where(&mut self, doomed: impl Fn(&Entry) -> bool) -> usize {
        let picked: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&at| self.get(at).is_some_and(&doomed))
            .collect();
        for &at in &picked {
            self.remove(at);
        }
        picked.len()
    }

    fn chain_slots(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let mut at = self.index.get(&hash).copied().unwrap_or(NIL);
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let this = at;
            at = self.slots[at as usize].chain;
            Some(this)
        })
    }

    fn evict_to(&mut self, budget: usize) {
        while self.bytes > budget && self.tail != NIL {
            let victim = self.tail;
            self.remove(victim);
            self.evictions += 1;
        }
    }

    fn touch(&mut self, at: u32) {
        if self.head != at {
            self.unlink(at);
            self.link_front(at);
        }
    }

    fn link_front(&mut self, at: u32) {
        let old = self.head;
        {
            let slot = &mut self.slots[at as usize];
            slot.prev = NIL;
            slot.next = old;
        }
        if old != NIL {
            self.slots[old as usize].prev = at;
        } else {
            self.tail = at;
        }
        self.head = at;
    }

    fn unlink(&mut self, at: u32) {
        let (prev, next) = {
            let s = &self.slots[at as usize];
            (s.prev, s.next)
        };
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else if self.head == at {
            self.head = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        } else if self.tail == at {
            self.tail = prev;
        }
        let s = &mut self.slots[at as usize];
        s.prev = NIL;
        s.next = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, body: usize) -> Entry {
        Entry {
            url: url.as_bytes().into(),
            variant: Box::default(),
            vary: Box::default(),
            status: 200,
            fields: Box::default(),
            body: Bytes::from(vec![b'x'; body]),
            freshness: Freshness::default(),
            initial_age: 0,
            stored_at: Instant::now(),
            etag: None,
            last_modified: None,
            tags: Box::default(),
        }
    }

    fn put(store: &mut Store, url: &str, body: usize) -> u32 {
        let hash = store.hash(url.as_bytes());
        store.insert(hash, entry(url, body)).expect("fits")
    }

    fn has(store: &mut Store, url: &str) -> bool {
        let hash = store.hash(url.as_bytes());
        store.find(hash, url.as_bytes(), b"", |_| true).is_some()
    }

    #[test]
    fn evicts_the_least_recently_used_within_the_budget() {
        let one = entry("GET\0h\0/a", 1000).charge();
        let mut store = Store::new(one * 3);
        put(&mut store, "GET\0h\0/a", 1000);
        put(&mut store, "GET\0h\0/b", 1000);
        put(&mut store, "GET\0h\0/c", 1000);
        assert!(has(&mut store, "GET\0h\0/a")); // a is now the most recent
        put(&mut store, "GET\0h\0/d", 1000);
        assert!(!has(&mut store, "GET\0h\0/b"));
        assert!(has(&mut store, "GET\0h\0/a"));
        assert!(has(&mut store, "GET\0h\0/c"));
        assert_eq!(store.len(), 3);
        assert!(store.bytes() <= one * 3);
        assert_eq!(store.take_evictions(), 1);
    }

    #[test]
    fn an_entry_larger_than_the_budget_is_refused() {
        let mut store = Store::new(500);
        let hash = store.hash(b"u");
        assert_eq!(store.insert(hash, entry("u", 1000)), Err(Refused::TooLarge));
        assert!(store.is_empty());
    }

    #[test]
    fn replacing_keeps_one_entry_per_key_and_counts_bytes() {
        let mut store = Store::new(1 << 20);
        put(&mut store, "GET\0h\0/a", 10);
        put(&mut store, "GET\0h\0/a", 20);
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), entry("GET\0h\0/a", 20).charge());
        let hash = store.hash(b"GET\0h\0/a");
        assert_eq!(store.remove_url(hash, b"GET\0h\0/a"), 1);
        assert_eq!((store.len(), store.bytes()), (0, 0));
    }

    #[test]
    fn chains_hold_variants_of_one_url() {
        let mut store = Store::new(1 << 20);
        let url = b"GET\0h\0/a";
        let hash = store.hash(url);
        for variant in [&b"de"[..], b"en", b"fr"] {
            let mut e = entry("GET\0h\0/a", 5);
            e.variant = variant.into();
            store.insert(hash, e).expect("fits");
        }
        assert!(store.find(hash, url, b"en", |_| true).is_some());
        assert!(store.find(hash, url, b"it", |_| true).is_none());
        // A secondary key that does not match is no hit.
        assert!(store.find(hash, url, b"en", |_| false).is_none());
        let slot = store.find(hash, url, b"de", |_| true).expect("de");
        store.remove(slot);
        assert!(store.find(hash, url, b"fr", |_| true).is_some());
        assert_eq!(store.remove_url(hash, url), 2);
        assert!(store.is_empty());
    }

    #[test]
    fn purges_by_predicate_and_reads_paths_and_tags() {
        let mut store = Store::new(1 << 20);
        put(&mut store, "GET\0h\0/catalog/1?x=1", 5);
        put(&mut store, "GET\0h\0/catalog/2", 5);
        let at = put(&mut store, "GET\0h\0/other", 5);
        let before = store.get(at).map_or(0, Entry::charge);
        if let Some(e) = store.get_mut(at) {
            e.tags = b"t1 t2".to_vec().into();
        }
        store.recharge(at, before);
        assert_eq!(store.get(at).map(|e| e.path()), Some(&b"/other"[..]));
        assert_eq!(store.get(at).map(|e| e.host()), Some(&b"h"[..]));
        assert!(store.get(at).is_some_and(|e| e.has_tag(b"t2")));
        assert!(!store.get(at).is_some_and(|e| e.has_tag(b"t")));
        assert_eq!(
            store.remove_where(|e| e.path().starts_with(b"/catalog/")),
            2
        );
        assert_eq!(store.remove_where(|e| e.has_tag(b"t1")), 1);
        assert!(store.is_empty());
        // Freed slots are reused.
        put(&mut store, "GET\0h\0/again", 5);
        assert_eq!(store.slots.len(), 3);
    }

    #[test]
    fn shrinking_the_budget_evicts() {
        let one = entry("GET\0h\0/a", 100).charge();
        let mut store = Store::new(one * 4);
        for p in ["/a", "/b", "/c", "/d"] {
            put(&mut store, &format!("GET\0h\0{p}"), 100);
        }
        store.set_max_bytes(one * 2);
        assert_eq!(store.len(), 2);
        assert!(has(&mut store, "GET\0h\0/d"));
    }
}
