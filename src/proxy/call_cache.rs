//! The response cache for a composite's calls (`cache = "NAME"` on a
//! `[[composites.NAME.calls]]`, see `crate::cache` for the rules).
//!
//! ```text
//! GET call ─▶ keys of the call's own request ─▶ fresh entry: its answer, no upstream request
//!                                            ─▶ else: the call goes upstream ─▶ storable? store
//! ```
//!
//! The key is the one a route with that cache would build for the same request: the method
//! class, the `Host` the call sends (the upstream group's name), the path and query rendered
//! from the call's template (the query as the cache's `key.query` says), and the cache's
//! `key.headers`/`key.cookies` and the response's `Vary` read from the fields the call sends
//! (its forwarded client headers among them). Freshness follows the backend's answer as for a
//! route (RFC 9111: `Cache-Control`, `Expires`, `default_ttl`); only a fresh entry answers: a
//! stale one is fetched again, unconditionally, and replaced. Calls and routes naming the same
//! cache share its entries on the worker, its budget and its counters.

use std::time::Instant;

use super::cached::{call_entry, StoredRequest};
use super::call::CallResponse;
use super::context::WorkerContext;
use crate::cache::control::RequestDirectives;
use crate::cache::key::secondary_matches;
use crate::cache::meta::ResponseMeta;
use crate::cache::rules::{self, Use};
use crate::cache::CacheId;
use crate::compose::run::Reply;
use crate::config::Snapshot;
use crate::http::{HeaderSpan, Span};

/// A call's request as its cache sees it.
pub(super) struct CallKey {
    id: CacheId,
    url: Vec<u8>,
    variant: Vec<u8>,
    hash: u64,
    /// The fields the call sends, as spans into them.
    spans: Vec<HeaderSpan>,
    directives: RequestDirectives,
    authorization: bool,
}

impl CallKey {
    /// The keys of a GET of `target` (origin form) from `host`, sending `fields`
    /// (`Name: value\r\n` lines), in cache `id`; `None` when the worker has no such cache.
    pub(super) fn new(
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        id: CacheId,
        host: &str,
        target: &str,
        fields: &[u8],
    ) -> Option<Self> {
        let settings = snapshot.caches.get(id.0)?;
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query.as_bytes())),
            None => (target, None),
        };
        let spans = field_spans(fields);
        let mut key = CallKey {
            id,
            url: Vec::new(),
            variant: Vec::new(),
            hash: 0,
            spans,
            directives: RequestDirectives::default(),
            authorization: false,
        };
        let host = host.to_ascii_lowercase();
        settings
            .key
            .url_key(host.as_bytes(), path.as_bytes(), query, &mut key.url);
        settings
            .key
            .variant_key(fields, &key.spans, &mut key.variant);
        for h in &key.spans {
            let name = h.name.of(fields);
            if name.eq_ignore_ascii_case(b"cache-control") {
                key.directives.add(h.value.of(fields));
            } else if name.eq_ignore_ascii_case(b"authorization") {
                key.authorization = true;
            }
        }
        key.hash = ctx.cache(snapshot, id)?.store.hash(&key.url);
        Some(key)
    }

    /// The stored answer, if one is fresh for this request (counted as a hit; else a miss).
    pub(super) fn lookup(
        &self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        fields: &[u8],
    ) -> Option<Reply> {
        let mut cache = ctx.cache(snapshot, self.id)?;
        let found = cache.store.find(self.hash, &self.url, &self.variant, |v| {
            secondary_matches(v, fields, &self.spans, None)
        });
        let reply = found.and_then(|slot| {
            let entry = cache.store.get(slot)?;
            let age = entry.age(Instant::now());
            let fresh = rules::usable(&entry.freshness, age, &self.directives) == Use::Fresh;
            fresh.then(|| Reply {
                status: entry.status,
                body: entry.body.clone(),
                cache_control: hit_cache_control(
                    &entry.fields,
                    entry.freshness.lifetime.saturating_sub(age),
                ),
            })
        });
        if reply.is_some() {
            cache.counts.hits += 1;
        } else {
            cache.counts.misses += 1;
        }
        reply
    }

    /// Stores the backend's answer to the call (sent at `request_time`, Unix seconds), if a
    /// shared cache may.
    pub(super) fn store(
        &self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        fields: &[u8],
        response: &CallResponse,
        request_time: u64,
    ) {
        let Some(mut cache) = ctx.cache(snapshot, self.id) else {
            return;
        };
        let settings = std::sync::Arc::clone(&cache.settings);
        let meta = ResponseMeta::read(response.headers(), settings.tag_header.as_deref());
        let request = StoredRequest {
            keys: (&self.url, &self.variant),
            data: fields,
            headers: &self.spans,
            directives: &self.directives,
            authorization: self.authorization,
            request_time,
        };
        if let Some(entry) = call_entry(&settings, &request, response, &meta) {
            if cache.store.insert(self.hash, entry).is_ok() {
                cache.counts.stores += 1;
            }
            cache.counts.evictions += cache.store.take_evictions();
        }
    }
}

/// The `Cache-Control` a hit contributes to the composite's: the stored one with `max-age`
/// and `s-maxage` no longer than the entry's remaining freshness (the composite takes the
/// smallest of each), so the composite is never cached downstream for longer than its part
/// is fresh here. `None` when the stored answer had none.
fn hit_cache_control(stored: &[u8], remaining: u64) -> Option<Box<str>> {
    let mut value = String::new();
    for (name, v) in crate::http::edits::lines(stored) {
        if name.eq_ignore_ascii_case(b"cache-control") {
            if !value.is_empty() {
                value.push_str(", ");
            }
            value.push_str(std::str::from_utf8(v).ok()?);
        }
    }
    if value.is_empty() {
        return None;
    }
    value.push_str(&format!(", max-age={remaining}, s-maxage={remaining}"));
    Some(value.into())
}

/// Spans of the `Name: value\r\n` lines of `block` (values trimmed).
fn field_spans(block: &[u8]) -> Vec<HeaderSpan> {
    let mut spans = Vec::new();
    let mut at = 0usize;
    for line in block.split_inclusive(|&b| b == b'\n') {
        let start = at;
        at += line.len();
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let Some(colon) = text.iter().position(|&b| b == b':') else {
            continue;
        };
        let mut value_start = start + colon + 1;
        let mut value_end = start + text.len();
        while value_start < value_end && matches!(block[value_start], b' ' | b'\t') {
            value_start += 1;
        }
        while value_end > value_start && matches!(block[value_end - 1], b' ' | b'\t') {
            value_end -= 1;
        }
        let span = |a: usize, b: usize| Span {
            start: a as u32,
            end: b as u32,
        };
        spans.push(HeaderSpan {
            name: span(start, start + colon),
            value: span(value_start, value_end),
        });
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_each_field_line() {
        let block = b"X-Forwarded-For: 1.2.3.4\r\nAccept:  application/json \r\n";
        let spans = field_spans(block);
        let pairs: Vec<(&[u8], &[u8])> = spans
            .iter()
            .map(|h| (h.name.of(block), h.value.of(block)))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (&b"X-Forwarded-For"[..], &b"1.2.3.4"[..]),
                (&b"Accept"[..], &b"application/json"[..]),
            ]
        );
    }

    #[test]
    fn a_hit_caps_the_composite_freshness_at_what_remains() {
        let stored = b"Content-Type: application/json\r\nCache-Control: public, max-age=60\r\n";
        assert_eq!(
            hit_cache_control(stored, 42).as_deref(),
            Some("public, max-age=60, max-age=42, s-maxage=42")
        );
        assert_eq!(hit_cache_control(b"Content-Type: x\r\n", 42), None);
    }
}
