//! The cache stage of a proxy route (`cache = "NAME"`; the rules live in `crate::cache`).
//!
//! ```text
//! policies ─▶ lookup ─▶ fresh: answer from the entry (one write, like `respond`)
//!                    ─▶ stale with validators: conditional request ─▶ 304: refresh, answer
//!                    ─▶ miss: lead the key's flight (or wait for its leader, bounded)
//!                         ─▶ choose group ─▶ upstream ─▶ response head: storable?
//!                         ─▶ relay to the client while the store observer copies the body
//!                         ─▶ publish only when the body completed with its length
//! ```
//!
//! A hit touches no upstream and allocates nothing: the keys are built in buffers the
//! connection reuses, the head is written into its output buffer, and the body is copied
//! there too (or, when large, written as the entry's shared `Bytes`). `Cache-Status`
//! (RFC 9211) goes on every response of a cached route.

use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::compress::Plan;
use super::connection::{find_header, ClientConn, Next};
use super::context::WorkerContext;
use super::error::ProxyError;
use super::stages::BodyObserver;
use crate::cache::control::RequestDirectives;
use crate::cache::key::{push_coding_key, secondary_key, secondary_matches, stored_coding};
use crate::cache::meta::{none_match, ResponseMeta};
use crate::cache::rules::{self, Freshness, NotStored, Use};
use crate::cache::{CacheId, Entry, Flight};
use crate::config::{ProxyAction, Snapshot, UpstreamId};
use crate::http::writer::{
    write_cached_head, write_error_response, write_stored_fields, CachedHead,
};
use crate::http::{HeadEdits, HeaderSpan, Method, RequestHead, ResponseFraming, ResponseHead};
use crate::io_buf::write_all_reuse;
use crate::router::normalize::split_target;

/// Bodies up to this size travel in the head's write; larger ones follow as shared `Bytes`.
const INLINE_HIT: usize = 64 * 1024;

/// How a request takes part in its route's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    /// Not at all (no cache on the route, or a method the cache ignores).
    #[default]
    Off,
    /// GET/HEAD: looked up; a GET's response may be stored.
    Lookup,
    /// An unsafe method: a non-error answer invalidates the URL.
    Invalidate,
}

/// What the cache did for a request (access log, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Outcome {
    /// No cache on the route.
    #[default]
    None,
    /// Answered fresh from the cache.
    Hit,
    /// Answered stale (max-stale, stale-while-revalidate, stale-if-error).
    Stale,
    /// Revalidated with the upstream (304) and answered from the cache.
    Revalidated,
    /// Went upstream.
    Miss,
    /// Not looked up (unsafe method, `Range`, `Upgrade`).
    Bypass,
}

impl Outcome {
    /// The metrics' result (`None`: no cache on the route).
    pub(crate) fn result(self) -> Option<crate::metrics::CacheResult> {
        use crate::metrics::CacheResult;
        match self {
            Outcome::None => None,
            Outcome::Hit => Some(CacheResult::Hit),
            Outcome::Stale => Some(CacheResult::Stale),
            Outcome::Revalidated => Some(CacheResult::Revalidated),
            Outcome::Miss => Some(CacheResult::Miss),
            Outcome::Bypass => Some(CacheResult::Bypass),
        }
    }

    /// The access log's word (empty: no cache on the route).
    pub(crate) fn log_word(self) -> &'static [u8] {
        match self {
            Outcome::None => b"",
            Outcome::Hit => b"hit",
            Outcome::Stale => b"stale",
            Outcome::Revalidated => b"revalidated",
            Outcome::Miss => b"miss",
            Outcome::Bypass => b"bypass",
        }
    }
}

/// The cache state of a connection's current request; buffers reused across requests.
#[derive(Debug, Default)]
pub(super) struct CacheRequest {
    id: Option<CacheId>,
    mode: Mode,
    url: Vec<u8>,
    variant: Vec<u8>,
    hash: u64,
    flight_key: u64,
    directives: RequestDirectives,
    authorization: bool,
    /// When the request went upstream, Unix seconds (for the age of its response).
    request_time: u64,
    /// `fwd=` of a miss: why the cache went upstream.
    fwd: &'static str,
    /// A stored response exists for the request (revalidated, or a stale-if-error fallback).
    stale: bool,
    /// A copy of the request's head (the `Vary` fields of the response are read from it).
    req_data: Vec<u8>,
    req_headers: Vec<HeaderSpan>,
    lead: Option<Lead>,
    /// Fields the revalidation changes in the forwarded request.
    pub(super) request_edits: HeadEdits,
    /// What the cache did.
    pub(super) outcome: Outcome,
    /// An unsafe request's own URL, invalidated when it gets a non-error answer.
    invalidates: Option<crate::cache::Purge>,
    /// The request's route has a cache (every answer carries `Cache-Status`).
    pub(super) route_cached: bool,
    /// `Cache-Status` is among the response's fields already.
    status_written: bool,
    /// The coding the route's `compress` policy negotiated for the request (`identity` when
    /// none; `None`: no such policy): the key of the variants it compresses (see
    /// `cache::key`).
    pub(super) coding: Option<&'static [u8]>,
}

impl CacheRequest {
    /// Forgets the previous request (keeps the buffers).
    pub(super) fn clear(&mut self) {
        self.id = None;
        self.mode = Mode::Off;
        self.stale = false;
        self.lead = None;
        self.outcome = Outcome::None;
        self.invalidates = None;
        self.route_cached = false;
        self.status_written = false;
        self.coding = None;
        if !self.request_edits.is_empty() {
            self.request_edits.clear();
        }
    }
}

/// The leader of a key's miss: its waiters wake when it is dropped (whatever happened).
#[derive(Debug)]
struct Lead(Rc<Flight>);

impl Drop for Lead {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// What the lookup found.
#[derive(Debug, Clone, Copy)]
enum Found {
    /// Usable as it is (`stale`: past its lifetime; `refresh`: start a background refresh).
    Use {
        slot: u32,
        stale: bool,
        refresh: bool,
    },
    /// Stored, but it must be validated first.
    Revalidate { slot: u32 },
    /// Nothing stored (`uri_miss`: not even for another variant).
    Miss { uri_miss: bool },
}

/// The store's observer: copies the relayed body of a storable response.
#[derive(Debug, Default)]
pub(super) struct StoreBody {
    pending: Option<(u64, Entry)>,
    buf: Vec<u8>,
    limit: usize,
    /// The body's length as the upstream declared it, when the stored body is the
    /// upstream's (a compressed variant has its own length, known when it ended).
    length: Option<u64>,
}

impl BodyObserver for StoreBody {
    fn payload(&mut self, bytes: &[u8]) {
        if self.pending.is_none() {
            return;
        }
        if self.buf.len() + bytes.len() > self.limit {
            self.pending = None;
            self.buf = Vec::new();
            return;
        }
        self.buf.extend_from_slice(bytes);
    }
}

/// What the response head decided.
pub(super) enum OnResponse {
    /// Relay it; the observer, if any, stores it (none: nothing to store, no allocation).
    Relay(Option<Box<StoreBody>>),
    /// The upstream confirmed the stored response (304): answer from it.
    Refreshed,
    /// The upstream failed (5xx) and the stored response may stand in (`stale-if-error`).
    StaleOnError,
}

/// Now, Unix seconds.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ClientConn {
    /// The cache stage, after the route's policies: answers from the cache when it can
    /// (`Some`), else prepares the request's way upstream (conditional fields, the store
    /// observer's state, the key's flight).
    pub(super) async fn cache_lookup(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        action: &ProxyAction,
        id: CacheId,
        head: &RequestHead,
    ) -> Result<Option<Next>, ProxyError> {
        self.cache.id = Some(id);
        if !self.cache_looks_up(head) {
            return Ok(None);
        }
        self.cache.mode = Mode::Lookup;
        self.cache_keys(ctx, snapshot, id, head);
        self.read_cache_directives();
        let mut waited = false;
        loop {
            let found = self.cache_find(ctx, snapshot, id);
            match found {
                Found::Use {
                    slot,
                    stale,
                    refresh,
                } => {
                    if refresh {
                        self.start_refresh(ctx, snapshot, action, id, slot, head);
                    }
                    let status = self.count_use(ctx, snapshot, stale, refresh, waited);
                    return self
                        .answer_from_entry(ctx, snapshot, head, slot, status, false)
                        .await
                        .map(Some);
                }
                Found::Revalidate { .. } | Found::Miss { .. }
                    if self.cache.directives.only_if_cached =>
                {
                    return self.answer_only_if_cached(ctx, head).await.map(Some);
                }
                _ => {}
            }
            if !waited && self.wait_for_flight(ctx, snapshot, id).await {
                waited = true;
                continue;
            }
            self.prepare_forward(ctx, snapshot, id, head, found);
            return Ok(None);
        }
    }

    /// Whether the request is looked up (GET, HEAD without `Range` or `Upgrade`); for the
    /// others, sets up what the cache does with them (an unsafe method's invalidation).
    fn cache_looks_up(&mut self, head: &RequestHead) -> bool {
        let mode = match head.method_kind {
            Method::Get | Method::Head => Mode::Lookup,
            Method::Post | Method::Put | Method::Patch | Method::Delete => Mode::Invalidate,
            _ => Mode::Off,
        };
        let data = self.input.data();
        let bypass = find_header(data, &self.headers, "range").is_some()
            || find_header(data, &self.headers, "upgrade").is_some();
        if mode == Mode::Lookup && !bypass {
            return true;
        }
        self.cache.outcome = Outcome::Bypass;
        self.push_cache_status(b"ringgate; fwd=bypass");
        if mode == Mode::Invalidate && !bypass {
            self.cache.mode = Mode::Invalidate;
            let data = self.input.data();
            let query = split_target(head.target.of(data))
                .ok()
                .and_then(|t| t.query);
            self.cache.invalidates = Some(crate::cache::Purge::Url {
                host: self.host.clone(),
                path: self.path.clone(),
                query: query.map(|q| String::from_utf8_lossy(q).into_owned()),
            });
            self.stages.activate();
        }
        false
    }

    /// Counts a use of a stored response and returns its `Cache-Status`.
    fn count_use(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        stale: bool,
        refresh: bool,
        waited: bool,
    ) -> &'static [u8] {
        self.count(ctx, snapshot, |c| {
            if stale {
                c.stale += 1;
            } else {
                c.hits += 1;
            }
            if waited {
                c.coalesced += 1;
            }
        });
        self.cache.outcome = if stale { Outcome::Stale } else { Outcome::Hit };
        if refresh {
            b"ringgate; hit; detail=stale-while-revalidate"
        } else if stale {
            b"ringgate; hit; detail=stale"
        } else {
            b"ringgate; hit"
        }
    }

    /// Builds the URL and variant keys of the request.
    fn cache_keys(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        id: CacheId,
        head: &RequestHead,
    ) {
        let Some(settings) = snapshot.caches.get(id.0) else {
            return;
        };
        let data = self.input.data();
        let query = split_target(head.target.of(data))
            .ok()
            .and_then(|t| t.query);
        let c = &mut self.cache;
        settings.key.url_key(
            self.host.as_bytes(),
            self.path.as_bytes(),
            query,
            &mut c.url,
        );
        settings
            .key
            .variant_key(data, &self.headers, &mut c.variant);
        if let Some(cache) = ctx.cache(snapshot, id) {
            c.hash = cache.store.hash(&c.url);
            c.flight_key = c.hash ^ cache.store.hash(&c.variant).rotate_left(17);
            if let Some(coding) = c.coding {
                // Each coding's variant is its own miss: an identity request does not wait
                // for a gzip one.
                c.flight_key ^= cache.store.hash(coding).rotate_left(41);
            }
        }
    }

    /// Reads the request's `Cache-Control` and `Authorization`.
    fn read_cache_directives(&mut self) {
        let data = self.input.data();
        let mut directives = RequestDirectives::default();
        let mut authorization = false;
        for h in &self.headers {
            let name = h.name.of(data);
            if name.eq_ignore_ascii_case(b"cache-control") {
                directives.add(h.value.of(data));
            } else if name.eq_ignore_ascii_case(b"authorization") {
                authorization = true;
            }
        }
        self.cache.directives = directives;
        self.cache.authorization = authorization;
    }

    /// Looks the request up in its cache.
    fn cache_find(&mut self, ctx: &WorkerContext, snapshot: &Snapshot, id: CacheId) -> Found {
        let Some(mut cache) = ctx.cache(snapshot, id) else {
            return Found::Miss { uri_miss: true };
        };
        let (data, headers) = (self.input.data(), &self.headers);
        let c = &self.cache;
        let found = cache.store.find(c.hash, &c.url, &c.variant, |v| {
            secondary_matches(v, data, headers, c.coding)
        });
        let Some(slot) = found else {
            let uri_miss = !cache.store.has_url(c.hash, &c.url);
            return Found::Miss { uri_miss };
        };
        let Some(entry) = cache.store.get(slot) else {
            return Found::Miss { uri_miss: true };
        };
        match rules::usable(&entry.freshness, entry.age(Instant::now()), &c.directives) {
            Use::Fresh => Found::Use {
                slot,
                stale: false,
                refresh: false,
            },
            Use::Stale { refresh } => Found::Use {
                slot,
                stale: true,
                refresh,
            },
            Use::Revalidate => Found::Revalidate { slot },
        }
    }

    /// Waits (bounded by `coalesce_wait`) for another request's miss of the same key on
    /// this worker; `false` when there was none (this request then leads the next one).
    async fn wait_for_flight(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        id: CacheId,
    ) -> bool {
        let key = self.cache.flight_key;
        let (flight, wait) = {
            let Some(mut cache) = ctx.cache(snapshot, id) else {
                return false;
            };
            let wait = cache.settings.coalesce_wait;
            match cache.flights.get(&key) {
                Some(f) if !f.is_finished() => (Rc::clone(f), wait),
                _ => {
                    cache.flights.remove(&key);
                    return false;
                }
            }
        };
        let _ = monoio::time::timeout(wait, flight.finished()).await;
        true
    }

    /// Sets up the way upstream: `Cache-Status`'s `fwd`, the conditional fields of a
    /// revalidation, the flight this request leads, the tag field's removal.
    fn prepare_forward(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        id: CacheId,
        head: &RequestHead,
        found: Found,
    ) {
        let Some(mut cache) = ctx.cache(snapshot, id) else {
            return;
        };
        let cache: &mut crate::cache::WorkerCache = &mut cache;
        let c = &mut self.cache;
        c.outcome = Outcome::Miss;
        c.request_time = unix_now();
        c.fwd = match found {
            Found::Miss { uri_miss: true } => "uri-miss",
            Found::Miss { uri_miss: false } => "vary-miss",
            Found::Use { .. } => "miss",
            Found::Revalidate { .. } => "stale",
        };
        if let Found::Revalidate { slot } = found {
            c.stale = true;
            if let Some(entry) = cache.store.get(slot) {
                let has_validator = entry.etag.is_some() || entry.last_modified.is_some();
                if has_validator {
                    cache.counts.revalidations += 1;
                    c.request_edits.remove(b"if-none-match");
                    c.request_edits.remove(b"if-modified-since");
                    if let Some(etag) = &entry.etag {
                        c.request_edits.add(b"If-None-Match", etag);
                    }
                    if let Some((_, text)) = &entry.last_modified {
                        c.request_edits.add(b"If-Modified-Since", text);
                    }
                }
            }
        } else {
            cache.counts.misses += 1;
        }
        if head.method_kind == Method::Get && c.lead.is_none() {
            let flight = Rc::new(Flight::default());
            cache.flights.insert(c.flight_key, Rc::clone(&flight));
            c.lead = Some(Lead(flight));
        }
        if let Some(tag) = &cache.settings.tag_header {
            self.stages.edits.remove(tag.as_bytes());
        }
        // The request's head, for the `Vary` fields of its response.
        let data = self.input.data();
        c.req_data.clear();
        c.req_data
            .extend_from_slice(&data[..head.head_len.min(data.len())]);
        c.req_headers.clear();
        c.req_headers.extend_from_slice(&self.headers);
        self.stages.activate();
    }

    /// Ends the request's flight, if it leads one (its waiters look again).
    pub(super) fn cache_finish(&mut self, ctx: &WorkerContext, snapshot: &Snapshot) {
        let Some(lead) = self.cache.lead.take() else {
            return;
        };
        if let Some(id) = self.cache.id {
            if let Some(mut cache) = ctx.cache(snapshot, id) {
                let key = self.cache.flight_key;
                if cache
                    .flights
                    .get(&key)
                    .is_some_and(|f| Rc::ptr_eq(f, &lead.0))
                {
                    cache.flights.remove(&key);
                }
            }
        }
        drop(lead);
    }

    /// A gateway answer on a cached route that the cache never saw (a policy's refusal, an
    /// error before the lookup) says so: `Cache-Status: ringgate; fwd=bypass`.
    pub(super) fn cache_status_for_gateway_answer(&mut self) {
        if self.cache.route_cached && !self.cache.status_written {
            self.push_cache_status(b"ringgate; fwd=bypass");
        }
    }

    /// Adds `Cache-Status: {value}` to the gateway's fields of the response.
    fn push_cache_status(&mut self, value: &[u8]) {
        self.cache.status_written = true;
        self.response_headers.extend_from_slice(b"Cache-Status: ");
        self.response_headers.extend_from_slice(value);
        self.response_headers.extend_from_slice(b"\r\n");
    }

    fn count(
        &self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        f: impl FnOnce(&mut crate::cache::CacheCounts),
    ) {
        if let Some(id) = self.cache.id {
            if let Some(mut cache) = ctx.cache(snapshot, id) {
                f(&mut cache.counts);
            }
        }
    }

    /// `only-if-cached` with nothing usable stored: 504 (RFC 9111 §5.2.1.7).
    async fn answer_only_if_cached(
        &mut self,
        ctx: &WorkerContext,
        head: &RequestHead,
    ) -> Result<Next, ProxyError> {
        self.push_cache_status(b"ringgate; fwd=miss; detail=only-if-cached");
        let keep_alive =
            head.keep_alive && self.consume_request(head) && !ctx.drain().is_draining();
        self.out.clear();
        write_error_response(
            &mut self.out,
            504,
            "nothing fresh enough is stored (only-if-cached)",
            keep_alive,
            &self.request_id,
            &self.response_headers,
        );
        self.send_answer(ctx, 504, None, keep_alive).await
    }

    /// Answers from entry `slot`: 304 when the client's validators match it, else the
    /// stored response (no body for HEAD). `from_copy`: the request's fields are read from
    /// the copy taken before it went upstream (after a revalidation).
    async fn answer_from_entry(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        head: &RequestHead,
        slot: u32,
        cache_status: &[u8],
        from_copy: bool,
    ) -> Result<Next, ProxyError> {
        let in_hand = from_copy || self.request_in_hand(head);
        let keep_alive = head.keep_alive && in_hand && !ctx.drain().is_draining();
        let (status, large_body) = self
            .write_entry(
                ctx,
                snapshot,
                head,
                slot,
                cache_status,
                from_copy,
                keep_alive,
            )
            .ok_or(ProxyError::NoRoute)?;
        if !from_copy {
            // Consumed after the fields were read: the request's bytes may be reused.
            self.consume_request(head);
        }
        // A request whose body is still arriving leaves the connection unusable.
        if !in_hand {
            self.linger = true;
        }
        self.send_answer(ctx, status, large_body, keep_alive).await
    }

    /// Whether the whole request (head and body) is buffered.
    fn request_in_hand(&self, head: &RequestHead) -> bool {
        if self.body.is_held() {
            return true;
        }
        match head.framing {
            crate::http::BodyFraming::None => true,
            crate::http::BodyFraming::Length(n) => {
                head.head_len as u64 + n <= self.input.len() as u64
            }
            crate::http::BodyFraming::Chunked => false,
        }
    }

    /// Writes the answer from entry `slot` into `out`: 304 when the client's validators
    /// match it, else the stored response (no body for HEAD). Returns the status and, for a
    /// large body, the body to write after `out`; `None` when the entry is gone.
    #[allow(clippy::too_many_arguments)]
    fn write_entry(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        head: &RequestHead,
        slot: u32,
        cache_status: &[u8],
        from_copy: bool,
        keep_alive: bool,
    ) -> Option<(u16, Option<Bytes>)> {
        let cache = ctx.cache(snapshot, self.cache.id?)?;
        let entry = cache.store.get(slot)?;
        let (data, headers) = if from_copy {
            (&self.cache.req_data[..], &self.cache.req_headers[..])
        } else {
            (self.input.data(), &self.headers[..])
        };
        let not_modified = not_modified(entry, data, headers);
        let status = if not_modified { 304 } else { entry.status };
        let body_allowed = !matches!(status, 204 | 304);
        let fields: &[u8] = if not_modified {
            not_modified_fields(&entry.fields, &mut self.scratch);
            &self.scratch
        } else {
            &entry.fields
        };
        // A CORS route's own `Vary: Origin` line is left out when the stored `Vary` already
        // lists `Origin` (merged when the entry was stored), so the client gets one `Vary`.
        let vary_line = self.stages.vary_line;
        let skip = if vary_line > 0 && varies_with(fields, b"Origin") {
            vary_line
        } else {
            0
        };
        self.out.clear();
        write_cached_head(
            &mut self.out,
            &CachedHead {
                status,
                fields,
                age: entry.age(Instant::now()),
                cache_status,
                content_length: body_allowed.then_some(entry.body.len() as u64),
                client_version: head.version,
                keep_alive,
                request_id: &self.request_id,
                extra_headers: self.response_headers.get(skip..).unwrap_or_default(),
            },
        );
        if self.tls.is_some() {
            self.finish_secure_head(snapshot, 0);
        }
        if !body_allowed || head.method_kind == Method::Head {
            return Some((status, None));
        }
        if entry.body.len() <= INLINE_HIT {
            self.out.extend_from_slice(&entry.body);
            return Some((status, None));
        }
        Some((status, Some(entry.body.clone())))
    }

    /// Writes `out` (and a large body after it).
    async fn send_answer(
        &mut self,
        ctx: &WorkerContext,
        status: u16,
        body: Option<Bytes>,
        keep_alive: bool,
    ) -> Result<Next, ProxyError> {
        let _ = ctx;
        self.response_started = true;
        self.exchange.status = status;
        self.exchange.bytes_out += self.out.len() as u64;
        write_all_reuse(&mut self.stream, &mut self.out)
            .await
            .map_err(ProxyError::ClientGone)?;
        if let Some(body) = body {
            use monoio::io::AsyncWriteRentExt;
            self.exchange.bytes_out += body.len() as u64;
            let (result, _) = self.stream.write_all(body).await;
            result.map_err(ProxyError::ClientGone)?;
        }
        Ok(if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    /// The cache's decision on an upstream response head (spans in `headers` over `buf`).
    /// `plan` is what the route's `compress` policy does to the body (the stored body and
    /// head are what the client gets).
    pub(super) fn cache_on_response(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        buf: &[u8],
        response: &ResponseHead,
        head: &RequestHead,
        plan: Plan,
    ) -> OnResponse {
        let relay = || OnResponse::Relay(None);
        let Some(id) = self.cache.id else {
            return relay();
        };
        if self.cache.mode == Mode::Invalidate {
            if (200..400).contains(&response.status) {
                self.invalidate_after(ctx, buf);
            }
            return relay();
        }
        if self.cache.mode != Mode::Lookup {
            return relay();
        }
        let Some(mut cache) = ctx.cache(snapshot, id) else {
            return relay();
        };
        let cache: &mut crate::cache::WorkerCache = &mut cache;
        let settings = std::sync::Arc::clone(&cache.settings);
        let fields = self
            .headers
            .iter()
            .map(|h| (h.name.of(buf), h.value.of(buf)));
        let meta = ResponseMeta::read(fields, settings.tag_header.as_deref());
        let now = unix_now();
        if self.cache.stale {
            if let Some(decided) = self.after_revalidation(cache, buf, response, &meta, now) {
                return decided;
            }
        }
        let lifetime = rules::freshness_lifetime(
            response.status,
            &meta.directives,
            &meta.dates(now),
            settings.default_ttl,
        );
        let limit = settings.max_object_bytes;
        let decision = storable(&self.cache, head, response, &meta, lifetime, limit);
        let mut status = [0u8; 96];
        let status = cache_status_miss(&mut status, self.cache.fwd, decision.err());
        self.push_cache_status(status);
        if decision.is_err() {
            return relay();
        }
        let c = &self.cache;
        let mut vary = Vec::new();
        secondary_key(meta.vary_values(), &c.req_data, &c.req_headers, &mut vary);
        if let (true, Some(coding)) = (plan.varies() && !varies_on_coding(&meta), c.coding) {
            // The compressor made it vary: keyed by the negotiated coding (`cache::key`).
            push_coding_key(&mut vary, coding);
        }
        let mut stored = Vec::with_capacity(response.head_len);
        let edits = Some(&self.stages.edits);
        write_stored_fields(&mut stored, buf, response, &self.headers, edits);
        let times = Times {
            lifetime,
            request_time: c.request_time,
            now,
        };
        let keys = (&c.url[..], &c.variant[..], vary);
        let entry = entry_of(keys, stored, response.status, &meta, times);
        let length = match (response.framing, plan.coding()) {
            (ResponseFraming::Length(n), None) => Some(n),
            _ => None,
        };
        OnResponse::Relay(Some(Box::new(StoreBody {
            pending: Some((c.hash, entry)),
            buf: Vec::with_capacity(length.map_or(0, |n| n as usize)),
            limit,
            length,
        })))
    }

    /// The upstream's answer to a request that had a stored response: a 304 to the
    /// revalidation refreshes it; a 5xx gives way to it within `stale-if-error`.
    fn after_revalidation(
        &self,
        cache: &mut crate::cache::WorkerCache,
        buf: &[u8],
        response: &ResponseHead,
        meta: &ResponseMeta<'_>,
        now: u64,
    ) -> Option<OnResponse> {
        let c = &self.cache;
        let slot = cache.store.find(c.hash, &c.url, &c.variant, |v| {
            secondary_matches(v, &c.req_data, &c.req_headers, c.coding)
        })?;
        if response.status == 304 && !c.request_edits.is_empty() {
            let pairs = self
                .headers
                .iter()
                .map(|h| (h.name.of(buf), h.value.of(buf)));
            let ttl = cache.settings.default_ttl;
            refresh(
                &mut cache.store,
                slot,
                pairs,
                meta,
                now,
                c.request_time,
                ttl,
            );
            cache.counts.hits += 1;
            return Some(OnResponse::Refreshed);
        }
        let stands_in = cache
            .store
            .get(slot)
            .is_some_and(|e| e.freshness.serves_on_error(e.age(Instant::now())));
        if response.status >= 500 && stands_in {
            cache.counts.stale += 1;
            return Some(OnResponse::StaleOnError);
        }
        None
    }

    /// An unsafe request got a non-error answer: its URL, and the `Location` and
    /// `Content-Location` of the answer on the same host, leave every worker's caches
    /// (RFC 9111 §4.4).
    fn invalidate_after(&mut self, ctx: &WorkerContext, buf: &[u8]) {
        let Some(own) = self.cache.invalidates.take() else {
            return;
        };
        let mut related = Vec::new();
        for h in &self.headers {
            let name = h.name.of(buf);
            if !(name.eq_ignore_ascii_case(b"location")
                || name.eq_ignore_ascii_case(b"content-location"))
            {
                continue;
            }
            let Ok(value) = std::str::from_utf8(h.value.of(buf)) else {
                continue;
            };
            let purge = if value.starts_with('/') {
                crate::cache::Purge::url(&format!("http://{}{value}", self.host))
            } else {
                crate::cache::Purge::url(value)
            };
            match purge {
                Ok(p @ crate::cache::Purge::Url { .. }) if same_host(&p, &self.host) => {
                    related.push(p)
                }
                _ => {}
            }
        }
        ctx.invalidate(own);
        for purge in related {
            ctx.invalidate(purge);
        }
    }

    /// Publishes the observed response once its body completed with its length.
    pub(super) fn cache_publish(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        mut store: Box<StoreBody>,
    ) {
        let Some((hash, mut entry)) = store.pending.take() else {
            return;
        };
        if let Some(n) = store.length {
            if store.buf.len() as u64 != n {
                return;
            }
        }
        if store.buf.capacity() > store.buf.len() + store.buf.len() / 4 {
            // A body whose length was not known grew by doubling: the cache keeps only it.
            store.buf.shrink_to_fit();
        }
        entry.body = Bytes::from(std::mem::take(&mut store.buf));
        // The first clone of a `Bytes` made from a `Vec` makes it shared (one allocation):
        // done here, so that hits handing out large bodies never pay it.
        drop(entry.body.clone());
        let Some(id) = self.cache.id else { return };
        if let Some(mut cache) = ctx.cache(snapshot, id) {
            if cache.store.insert(hash, entry).is_ok() {
                cache.counts.stores += 1;
            }
            cache.counts.evictions += cache.store.take_evictions();
        }
    }

    /// Answers from the stored response after the upstream confirmed it (304) or failed
    /// (stale-if-error).
    pub(super) async fn answer_after_upstream(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        head: &RequestHead,
        refreshed: bool,
    ) -> Result<Next, ProxyError> {
        let Some(id) = self.cache.id else {
            return Err(ProxyError::NoRoute);
        };
        let slot = {
            let Some(mut cache) = ctx.cache(snapshot, id) else {
                return Err(ProxyError::NoRoute);
            };
            let c = &self.cache;
            cache.store.find(c.hash, &c.url, &c.variant, |v| {
                secondary_matches(v, &c.req_data, &c.req_headers, c.coding)
            })
        };
        let Some(slot) = slot else {
            return Err(ProxyError::UpstreamClosed);
        };
        let (status, outcome): (&[u8], _) = if refreshed {
            (b"ringgate; fwd=stale; fwd-status=304", Outcome::Revalidated)
        } else {
            (b"ringgate; hit; detail=stale-if-error", Outcome::Stale)
        };
        self.cache.outcome = outcome;
        self.answer_from_entry(ctx, snapshot, head, slot, status, true)
            .await
    }

    /// A request whose upstream failed before answering: the stored response stands in
    /// when `stale-if-error` allows; else the error's answer carries `Cache-Status`.
    pub(super) async fn cache_after_failure(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        head: &RequestHead,
        error: ProxyError,
    ) -> Result<Next, ProxyError> {
        if self.response_started || self.cache.mode != Mode::Lookup {
            return Err(error);
        }
        if self.cache.stale && error.upstream_failed() == Some(true) {
            let usable = self.cache.id.and_then(|id| {
                let mut cache = ctx.cache(snapshot, id)?;
                let c = &self.cache;
                let slot = cache.store.find(c.hash, &c.url, &c.variant, |v| {
                    secondary_matches(v, &c.req_data, &c.req_headers, c.coding)
                })?;
                let e = cache.store.get(slot)?;
                let ok = e.freshness.serves_on_error(e.age(Instant::now()));
                if ok {
                    cache.counts.stale += 1;
                }
                Some(ok)
            });
            if usable == Some(true) {
                return self.answer_after_upstream(ctx, snapshot, head, false).await;
            }
        }
        let mut status = [0u8; 96];
        let failed = Some(NotStored::UpstreamError);
        let status = cache_status_miss(&mut status, self.cache.fwd, failed);
        self.push_cache_status(status);
        Err(error)
    }
}

/// Whether the upstream's own `Vary` names `Accept-Encoding` (its variants are then keyed
/// by the request's text, as for any other field).
fn varies_on_coding(meta: &ResponseMeta<'_>) -> bool {
    meta.vary_values().any(|v| {
        v.split(|&b| b == b',')
            .any(|t| crate::http::headers::trim_ows(t).eq_ignore_ascii_case(b"accept-encoding"))
    })
}

/// Whether a URL purge is for `host` (invalidation never reaches another host, §4.4).
fn same_host(purge: &crate::cache::Purge, host: &str) -> bool {
    matches!(purge, crate::cache::Purge::Url { host: h, .. } if h == host)
}

/// Writes into `out` (cleared first) the stored field lines a 304 carries.
fn not_modified_fields(fields: &[u8], out: &mut Vec<u8>) {
    out.clear();
    for (name, value) in crate::http::edits::lines(fields) {
        if NOT_MODIFIED_FIELDS
            .iter()
            .any(|f| name.eq_ignore_ascii_case(f))
        {
            push_field(out, name, value);
        }
    }
}

/// The fields a 304 from the cache carries (RFC 9110 §15.4.5).
const NOT_MODIFIED_FIELDS: &[&[u8]] = &[
    b"cache-control",
    b"content-location",
    b"date",
    b"etag",
    b"expires",
    b"vary",
    b"last-modified",
];

/// Whether the client's validators match `entry` (If-None-Match first; If-Modified-Since
/// only without it; RFC 9110 §13.2.2).
fn not_modified(entry: &Entry, data: &[u8], headers: &[HeaderSpan]) -> bool {
    if !(200..300).contains(&entry.status) {
        return false;
    }
    if let Some(inm) = find_header(data, headers, "if-none-match") {
        return entry
            .etag
            .as_deref()
            .is_some_and(|etag| none_match(inm, etag));
    }
    match (
        find_header(data, headers, "if-modified-since"),
        &entry.last_modified,
    ) {
        (Some(ims), Some((modified, _))) => {
            crate::cache::date::parse_http_date(ims).is_some_and(|since| *modified <= since)
        }
        _ => false,
    }
}

/// Whether the response to this request may be stored.
fn storable(
    c: &CacheRequest,
    head: &RequestHead,
    response: &ResponseHead,
    meta: &ResponseMeta<'_>,
    lifetime: u64,
    max_object: usize,
) -> Result<(), NotStored> {
    if head.method_kind != Method::Get {
        return Err(NotStored::Status);
    }
    rules::storable(&c.directives, c.authorization, &meta.facts(response.status))?;
    match response.framing {
        ResponseFraming::UntilClose => Err(NotStored::UntilClose),
        ResponseFraming::Length(n) if n > max_object as u64 => Err(NotStored::TooLarge),
        // Never fresh and nothing to revalidate it with: it could never be served.
        _ if lifetime == 0 && meta.etag.is_none() && meta.last_modified.is_none() => {
            Err(NotStored::Uncacheable)
        }
        _ => Ok(()),
    }
}

/// The times a new entry's freshness and age come from (seconds; Unix times).
#[derive(Debug, Clone, Copy)]
struct Times {
    lifetime: u64,
    request_time: u64,
    now: u64,
}

/// A new entry (its body filled in when it completed) for URL and variant keys and the
/// secondary key `keys`, with stored `fields`.
fn entry_of(
    keys: (&[u8], &[u8], Vec<u8>),
    fields: Vec<u8>,
    status: u16,
    meta: &ResponseMeta<'_>,
    times: Times,
) -> Entry {
    let (url, variant, vary) = keys;
    Entry {
        url: url.into(),
        variant: variant.into(),
        vary: vary.into(),
        status,
        fields: fields.into(),
        body: Bytes::new(),
        freshness: Freshness::of(&meta.directives, times.lifetime),
        initial_age: rules::initial_age(meta.age, meta.date, times.request_time, times.now),
        stored_at: Instant::now(),
        etag: meta.etag.map(Into::into),
        last_modified: meta.last_modified.map(|(t, text)| (t, text.into())),
        tags: meta.tags.unwrap_or_default().into(),
    }
}

/// `ringgate; fwd={fwd}; stored` or `...; detail={why}` in `buf`.
fn cache_status_miss<'b>(
    buf: &'b mut [u8; 96],
    fwd: &str,
    not_stored: Option<NotStored>,
) -> &'b [u8] {
    let mut n = 0;
    let mut put = |s: &[u8]| {
        let end = (n + s.len()).min(buf.len());
        buf[n..end].copy_from_slice(&s[..end - n]);
        n = end;
    };
    put(b"ringgate; fwd=");
    put(if fwd.is_empty() {
        b"miss"
    } else {
        fwd.as_bytes()
    });
    match not_stored {
        None => put(b"; stored"),
        Some(why) => {
            put(b"; detail=");
            put(why.detail().as_bytes());
        }
    }
    &buf[..n]
}

/// Refreshes entry `slot` with a 304's fields (RFC 9111 §4.3.4): the 304's fields replace
/// the stored ones of the same name; freshness and age are computed anew.
fn refresh<'a>(
    store: &mut crate::cache::Store,
    slot: u32,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    meta: &ResponseMeta<'_>,
    now: u64,
    request_time: u64,
    default_ttl: u64,
) {
    let Some(entry) = store.get(slot) else { return };
    let before = entry.charge();
    // A variant the gateway compressed keeps its own coding, `Vary` and (weak) `ETag`: the
    // 304 speaks of the upstream's identity representation.
    let coded = stored_coding(&entry.vary).is_some();
    let own = |name: &[u8]| {
        coded
            && [&b"etag"[..], b"vary", b"content-encoding"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
    };
    let updated: Vec<(&[u8], &[u8])> = fields
        .filter(|(name, _)| end_to_end(name) && !own(name))
        .collect();
    let mut fields = Vec::with_capacity(entry.fields.len());
    for (name, value) in crate::http::edits::lines(&entry.fields) {
        if !updated.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            push_field(&mut fields, name, value);
        }
    }
    for (name, value) in &updated {
        push_field(&mut fields, name, value);
    }
    let merged = ResponseMeta::read(crate::http::edits::lines(&fields), None);
    let lifetime = rules::freshness_lifetime(
        entry.status,
        &merged.directives,
        &merged.dates(now),
        default_ttl,
    );
    let freshness = Freshness::of(&merged.directives, lifetime);
    let etag: Option<Box<[u8]>> = merged.etag.map(Into::into);
    let last_modified = merged
        .last_modified
        .map(|(t, text)| (t, Box::<[u8]>::from(text)));
    let initial_age = rules::initial_age(meta.age, meta.date, request_time, now);
    let Some(entry) = store.get_mut(slot) else {
        return;
    };
    entry.fields = fields.into();
    entry.freshness = freshness;
    entry.initial_age = initial_age;
    entry.stored_at = Instant::now();
    if etag.is_some() {
        entry.etag = etag;
    }
    if last_modified.is_some() {
        entry.last_modified = last_modified;
    }
    store.recharge(slot, before);
}

/// Whether a field of an upstream response is stored (not hop-by-hop, framing or
/// per-request).
fn end_to_end(name: &[u8]) -> bool {
    !crate::http::headers::is_hop_by_hop(name)
        && ![
            &b"content-length"[..],
            b"age",
            b"x-request-id",
            b"set-cookie",
            b"via",
            b"transfer-encoding",
        ]
        .iter()
        .any(|p| name.eq_ignore_ascii_case(p))
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What a background refresh (stale-while-revalidate) needs, owned by its task.
struct Refresh {
    id: CacheId,
    group: UpstreamId,
    path: String,
    host: String,
    url: Vec<u8>,
    variant: Vec<u8>,
    hash: u64,
    directives: RequestDirectives,
    authorization: bool,
    req_data: Vec<u8>,
    req_headers: Vec<HeaderSpan>,
    /// The conditional fields (`If-None-Match`, `If-Modified-Since`) of the stored entry.
    conditional: Vec<u8>,
    lead: Lead,
    flight_key: u64,
    coding: Option<&'static [u8]>,
}

impl ClientConn {
    /// Starts the one background refresh of a key served stale under
    /// `stale-while-revalidate` (none when one is already running on this worker).
    fn start_refresh(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        action: &ProxyAction,
        id: CacheId,
        slot: u32,
        head: &RequestHead,
    ) {
        let Some(rc) = ctx.rc() else { return };
        let group = self.choose_group(ctx, &action.groups);
        let Some(mut cache) = ctx.cache(snapshot, id) else {
            return;
        };
        let cache: &mut crate::cache::WorkerCache = &mut cache;
        let key = self.cache.flight_key;
        if cache.flights.get(&key).is_some_and(|f| !f.is_finished()) {
            return;
        }
        let mut conditional = Vec::new();
        if let Some(entry) = cache.store.get(slot) {
            if let Some(etag) = &entry.etag {
                push_field(&mut conditional, b"If-None-Match", etag);
            }
            if let Some((_, text)) = &entry.last_modified {
                push_field(&mut conditional, b"If-Modified-Since", text);
            }
        }
        let flight = Rc::new(Flight::default());
        cache.flights.insert(key, Rc::clone(&flight));
        cache.counts.revalidations += 1;
        let data = self.input.data();
        let c = &self.cache;
        let job = Refresh {
            id,
            group,
            path: self.upstream_path.clone(),
            host: head
                .host
                .map(|h| String::from_utf8_lossy(h.of(data)).into_owned())
                .unwrap_or_default(),
            url: c.url.clone(),
            variant: c.variant.clone(),
            hash: c.hash,
            directives: c.directives,
            authorization: c.authorization,
            req_data: data[..head.head_len.min(data.len())].to_vec(),
            req_headers: self.headers.clone(),
            conditional,
            lead: Lead(flight),
            flight_key: key,
            coding: c.coding,
        };
        let snapshot = ctx.snapshot();
        monoio::spawn(run_refresh(rc, snapshot, job));
    }
}

/// The background refresh: a conditional GET through `call` (the group's balancing,
/// retries and breaker); a 304 refreshes the entry, a storable 200 replaces it.
#[allow(clippy::redundant_allocation)]
async fn run_refresh(ctx: Rc<WorkerContext>, snapshot: Rc<std::sync::Arc<Snapshot>>, job: Refresh) {
    use super::call::{call, Call};
    let Some(settings) = snapshot.caches.get(job.id.0) else {
        return;
    };
    let request = Call {
        host: (!job.host.is_empty()).then_some(job.host.as_str()),
        headers: &job.conditional,
        max_body: settings.max_object_bytes,
        ..Call::get(job.group, &job.path)
    };
    let request_time = unix_now();
    let response = call(&ctx, &snapshot, &request).await;
    let Some(mut cache) = ctx.cache(&snapshot, job.id) else {
        return;
    };
    if let Ok(response) = response {
        apply_refresh(&mut cache, &job, &response, request_time);
    }
    let ours = cache
        .flights
        .get(&job.flight_key)
        .is_some_and(|f| Rc::ptr_eq(f, &job.lead.0));
    if ours {
        cache.flights.remove(&job.flight_key);
    }
}

/// Applies a background refresh's answer: a 304 refreshes the entry, a storable response
/// replaces it, one no longer storable removes it (a 5xx leaves it for stale-if-error).
fn apply_refresh(
    cache: &mut crate::cache::WorkerCache,
    job: &Refresh,
    response: &super::call::CallResponse,
    request_time: u64,
) {
    let settings = std::sync::Arc::clone(&cache.settings);
    let meta = ResponseMeta::read(response.headers(), settings.tag_header.as_deref());
    let slot = cache.store.find(job.hash, &job.url, &job.variant, |v| {
        secondary_matches(v, &job.req_data, &job.req_headers, job.coding)
    });
    if response.status == 304 {
        if let Some(slot) = slot {
            let ttl = settings.default_ttl;
            let now = unix_now();
            refresh(
                &mut cache.store,
                slot,
                response.headers(),
                &meta,
                now,
                request_time,
                ttl,
            );
        }
        return;
    }
    let coded = slot.is_some_and(|s| {
        cache
            .store
            .get(s)
            .is_some_and(|e| stored_coding(&e.vary).is_some())
    });
    if coded {
        // A new body for a variant the compressor keyed: the background task does not
        // compress, so the entry goes and the next request stores the new variant.
        if let (Some(slot), true) = (slot, response.status < 500) {
            cache.store.remove(slot);
        }
        return;
    }
    let request = StoredRequest {
        keys: (&job.url, &job.variant),
        data: &job.req_data,
        headers: &job.req_headers,
        directives: &job.directives,
        authorization: job.authorization,
        request_time,
    };
    match call_entry(&settings, &request, response, &meta) {
        Some(entry) => {
            if cache.store.insert(job.hash, entry).is_ok() {
                cache.counts.stores += 1;
            }
        }
        None => {
            if let (Some(slot), true) = (slot, response.status < 500) {
                cache.store.remove(slot);
            }
        }
    }
}

/// The request a whole answer (a [`super::call::CallResponse`]) was fetched for.
pub(super) struct StoredRequest<'a> {
    /// Its URL and variant keys.
    pub(super) keys: (&'a [u8], &'a [u8]),
    /// Its head's bytes and fields (spans into them): the `Vary` fields are read there.
    pub(super) data: &'a [u8],
    pub(super) headers: &'a [HeaderSpan],
    /// Its `Cache-Control`.
    pub(super) directives: &'a RequestDirectives,
    /// Whether it carried `Authorization`.
    pub(super) authorization: bool,
    /// When it was sent, Unix seconds.
    pub(super) request_time: u64,
}

/// The entry that stores `response` (its fields read into `meta`) for `request`, when a
/// shared cache may store it (RFC 9111 §3), it can ever be served, and it fits
/// `max_object_bytes`.
pub(super) fn call_entry(
    settings: &crate::cache::CacheSettings,
    request: &StoredRequest<'_>,
    response: &super::call::CallResponse,
    meta: &ResponseMeta<'_>,
) -> Option<Entry> {
    let now = unix_now();
    let ttl = settings.default_ttl;
    let lifetime =
        rules::freshness_lifetime(response.status, &meta.directives, &meta.dates(now), ttl);
    let facts = meta.facts(response.status);
    let storable = rules::storable(request.directives, request.authorization, &facts).is_ok()
        && (lifetime > 0 || meta.etag.is_some() || meta.last_modified.is_some())
        && response.body.len() <= settings.max_object_bytes;
    if !storable {
        return None;
    }
    let mut vary = Vec::new();
    secondary_key(meta.vary_values(), request.data, request.headers, &mut vary);
    let mut fields = Vec::new();
    for (name, value) in response.headers() {
        let tag = settings
            .tag_header
            .as_deref()
            .is_some_and(|t| name.eq_ignore_ascii_case(t.as_bytes()));
        if end_to_end(name) && !tag {
            push_field(&mut fields, name, value);
        }
    }
    push_field(&mut fields, b"Via", b"1.1 ringgate");
    let times = Times {
        lifetime,
        request_time: request.request_time,
        now,
    };
    let (url, variant) = request.keys;
    let mut entry = entry_of((url, variant, vary), fields, response.status, meta, times);
    entry.body = response.body.clone();
    // Made shared once here, so that hits handing the body out never pay it.
    drop(entry.body.clone());
    Some(entry)
}

/// Whether the `Vary` fields among the stored field lines `fields` list `token`.
fn varies_with(fields: &[u8], token: &[u8]) -> bool {
    let values = fields.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        name.eq_ignore_ascii_case(b"vary").then(|| &value[1..])
    });
    crate::policy::compress::lists_token(values, token)
}
