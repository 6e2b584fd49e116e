//! The response cache (`[caches.NAME]`, `cache = "NAME"`) through real sockets, against
//! backends that count what they receive and number their answers: a wrong hit (another
//! host, method, variant) or a missed one shows as a wrong body or a wrong count.
//!
//! Every test runs with 1 and with 2 workers (each worker has its own cache, and the kernel
//! spreads connections over the workers). A test that needs hits after a miss sends its
//! requests on one keep-alive [`Session`], so one worker serves them all and the counts are
//! exact; a test about cross-worker behaviour takes a session on each worker from a
//! [`WorkerProbe`], so every worker is certainly exercised.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::client::{Raw, RawResponse, Session};
use common::gateway::{Gateway, GatewayConfig};
use common::h2 as h2c;
use common::upstream::{Behavior, Handled, Recorded, Upstream};
use common::worker_probe::{WorkerProbe, HOST, PREFIX};

/// The worker counts every test runs with.
const WORKERS: [usize; 2] = [1, 2];

/// One HTTP/2 (h2c) connection (so one worker) for request after request.
struct H2Session {
    runtime: tokio::runtime::Runtime,
    client: h2::client::SendRequest<bytes::Bytes>,
}

impl H2Session {
    fn connect(gw: &Gateway) -> H2Session {
        let runtime = h2c::runtime();
        let client = runtime.block_on(h2c::connect(gw.addr()));
        H2Session { runtime, client }
    }

    /// GET `path` on `h.example` with these extra fields.
    fn get(&self, path: &str, fields: &[(&str, &str)]) -> h2c::Exchange {
        let mut request = http::Request::builder()
            .method("GET")
            .uri(format!("http://{HOST}{path}"));
        for (name, value) in fields {
            request = request.header(*name, *value);
        }
        let request = request.body(()).expect("request");
        self.runtime.block_on(async {
            h2c::exchange(&self.client, request, None)
                .await
                .expect("h2 exchange")
        })
    }

    /// The worker serving this connection: the one whose marker it finds (every worker of
    /// the gateway must have been marked by `probe`).
    fn worker(&self, workers: usize) -> usize {
        (0..workers)
            .find(|i| {
                let probe = self.get(
                    &format!("{PREFIX}{i}"),
                    &[("cache-control", "only-if-cached")],
                );
                probe.status == 200
            })
            .unwrap_or_else(|| panic!("{workers} worker(s): the h2 connection found no marker"))
    }
}

/// A backend whose answer to request number `n` (1-based) `answer` decides.
fn backend(answer: impl Fn(&Recorded, usize) -> Handled + Send + Sync + 'static) -> Upstream {
    let count = Arc::new(AtomicUsize::new(0));
    Upstream::start(
        "origin",
        Behavior::Handler(Arc::new(move |r| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            answer(r, n)
        })),
    )
}

/// A 200 with these fields and the body `{target} #{n}`.
fn numbered(r: &Recorded, n: usize, fields: &[(&str, &str)]) -> Handled {
    Handled::Respond {
        delay: std::time::Duration::ZERO,
        status: 200,
        headers: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: format!("{} #{n}", r.target).into_bytes(),
    }
}

/// A backend that answers every request `numbered` with `fields`.
fn cacheable(fields: &'static [(&'static str, &'static str)]) -> Upstream {
    backend(move |r, n| numbered(r, n, fields))
}

/// The config of a gateway with one cached catch-all route to `up`; `cache` holds extra keys
/// of `[caches.api]`.
fn config(driver: &str, up: &Upstream, workers: usize, cache: &str) -> GatewayConfig {
    GatewayConfig::new(driver)
        .workers(workers)
        .upstream("origin", &[up.addr()])
        .routes(
            "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
             upstream = \"origin\"\ncache = \"api\"\n",
        )
        .tables(&format!("[caches.api]\nmax_bytes = \"1MiB\"\n{cache}"))
}

/// A gateway with one cached catch-all route to `up`.
fn gateway(driver: &str, up: &Upstream, workers: usize, cache: &str) -> Gateway {
    config(driver, up, workers, cache).start()
}

/// [`gateway`] with `probe`'s marker route, for tests that take a session on each worker.
fn probed(
    driver: &str,
    up: &Upstream,
    workers: usize,
    cache: &str,
    probe: &WorkerProbe,
) -> Gateway {
    probe.configure(config(driver, up, workers, cache)).start()
}

/// A keep-alive session to `gw` with `Host: h.example`.
fn session(gw: &Gateway) -> Session {
    Session::connect(gw.addr(), HOST)
}

/// `METHOD path` with `Host: h.example` and `extra` header lines, on a new connection
/// (served by whichever worker accepts it).
fn request(gw: &Gateway, method: &str, path: &str, extra: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n"
    ));
    raw.read_response_to(method)
}

/// Whether the session's worker holds a usable entry for `path` (with `extra` fields):
/// asked with `only-if-cached`, which never goes upstream and stores nothing.
fn stored(s: &mut Session, path: &str, extra: &str) -> bool {
    let r = s.request(
        "GET",
        path,
        &format!("Cache-Control: only-if-cached\r\n{extra}"),
    );
    match r.status {
        200 => true,
        504 => false,
        other => panic!("only-if-cached {path}: status {other}: {r:?}"),
    }
}

/// Waits until every session's worker dropped `path`.
fn dropped_everywhere(on: &mut [Session], workers: usize, path: &str) {
    for (i, s) in on.iter_mut().enumerate() {
        let what = format!("{workers} worker(s): worker {i} dropped {path}");
        common::wait_until(&what, common::IO_TIMEOUT, || !stored(s, path, ""));
    }
}

/// Asserts that every session's worker still holds `path`.
fn kept_everywhere(on: &mut [Session], workers: usize, path: &str) {
    for (i, s) in on.iter_mut().enumerate() {
        assert!(
            stored(s, path, ""),
            "{workers} worker(s): worker {i} lost {path}"
        );
    }
}

/// Stores `path` on every session's worker, invalidates it with a PUT on the first, and
/// waits until every worker dropped it: every invalidation the first worker sent before
/// has then reached every worker too (they travel in order).
fn settle(on: &mut [Session], workers: usize, path: &str) {
    for s in on.iter_mut() {
        s.get(path);
    }
    let put = on[0].request("PUT", path, "Content-Length: 0\r\n");
    assert_eq!(put.status, 200, "{workers} worker(s): {put:?}");
    dropped_everywhere(on, workers, path);
}

/// The number `n` of a `{target} #{n}` body.
fn number(r: &RawResponse) -> usize {
    r.text()
        .rsplit('#')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered body: {r:?}"))
}

driver_tests! {
    fn a_fresh_response_is_served_from_the_cache_with_age_and_cache_status(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = cacheable(&[("cache-control", "max-age=60"), ("content-type", "text/plain")]);
            let gw = gateway(driver, &up, workers, "");
            let mut s = session(&gw);
            let first = s.get("/items/1");
            assert_eq!(first.status, 200, "{w}");
            assert_eq!(first.text(), "/items/1 #1", "{w}");
            assert_eq!(first.header("cache-status"), Some("ringgate; fwd=uri-miss; stored"), "{w}");
            for _ in 0..3 {
                let hit = s.get("/items/1");
                assert_eq!(hit.status, 200, "{w}");
                assert_eq!(hit.text(), "/items/1 #1", "{w}: served from the cache");
                assert_eq!(hit.header("cache-status"), Some("ringgate; hit"), "{w}");
                assert_eq!(hit.header("content-type"), Some("text/plain"), "{w}");
                assert!(hit.header("age").is_some_and(|a| a.parse::<u64>().is_ok()), "{w}: {hit:?}");
                assert!(hit.header("x-request-id").is_some(), "{w}");
            }
            assert_eq!(up.requests(), 1, "{w}: hits never reach the backend");
            // Another path is another entry.
            assert_eq!(s.get("/items/2").text(), "/items/2 #2", "{w}");
            assert_eq!(up.requests(), 2, "{w}");
        }
    }

    fn an_entry_is_never_served_for_another_host_or_method(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = cacheable(&[("cache-control", "max-age=60")]);
            let gw = gateway(driver, &up, workers, "");
            let mut s = session(&gw);
            assert_eq!(s.get("/x").text(), "/x #1", "{w}");
            let other = s.send("GET", "GET /x HTTP/1.1\r\nHost: other.example\r\n\r\n");
            assert_eq!(other.text(), "/x #2", "{w}: another host misses");
            // HEAD is answered from the GET entry: no body, its length.
            let head = s.request("HEAD", "/x", "");
            assert_eq!(head.status, 200, "{w}");
            assert_eq!(head.header("cache-status"), Some("ringgate; hit"), "{w}");
            assert_eq!(head.header("content-length"), Some("5"), "{w}");
            assert!(head.body.is_empty(), "{w}");
            assert_eq!(up.requests(), 2, "{w}");
            // POST and DELETE are never answered from the cache.
            let post = s.request("POST", "/x", "Content-Length: 0\r\n");
            assert_eq!(post.text(), "/x #3", "{w}");
            assert_eq!(post.header("cache-status"), Some("ringgate; fwd=bypass"), "{w}");
            assert_eq!(up.requests(), 3, "{w}");
        }
    }

    fn responses_a_shared_cache_must_not_store_are_fetched_every_time(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                let cc: &[(&str, &str)] = match r.target.as_str() {
                    "/no-store" => &[("cache-control", "no-store, max-age=60")],
                    "/private" => &[("cache-control", "private, max-age=60")],
                    "/cookie" => &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
                    "/star" => &[("cache-control", "max-age=60"), ("vary", "*")],
                    "/error" => {
                        return Handled::Respond {
                            delay: std::time::Duration::ZERO,
                            status: 500,
                            headers: vec![("cache-control".into(), "max-age=60".into())],
                            body: format!("err #{n}").into_bytes(),
                        }
                    }
                    _ => &[("cache-control", "max-age=60")],
                };
                numbered(r, n, cc)
            });
            let gw = gateway(driver, &up, workers, "");
            let mut s = session(&gw);
            let cases = [
                ("/no-store", "no-store"),
                ("/private", "private"),
                ("/cookie", "set-cookie"),
                ("/star", "vary-star"),
                ("/error", "status"),
            ];
            for (path, detail) in cases {
                let before = up.requests();
                let a = s.get(path);
                let b = s.get(path);
                assert_eq!(up.requests(), before + 2, "{w}: {path} was served from the cache");
                assert_ne!(a.body, b.body, "{w}: {path}");
                let status = format!("ringgate; fwd=uri-miss; detail={detail}");
                assert_eq!(b.header("cache-status"), Some(status.as_str()), "{w}: {path}");
            }
            // A Set-Cookie response's cookie is never given to another client.
            assert_eq!(s.get("/cookie").header("set-cookie"), Some("s=1"), "{w}");
        }
    }

    fn requests_with_authorization_are_shared_only_where_allowed(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                let cc = if r.target == "/public" { "public, max-age=60" } else { "max-age=60" };
                numbered(r, n, &[("cache-control", cc)])
            });
            let gw = gateway(driver, &up, workers, "");
            let mut s = session(&gw);
            let auth = "Authorization: Bearer alice\r\n";
            s.request("GET", "/plain", auth);
            let other = s.request("GET", "/plain", "Authorization: Bearer bob\r\n");
            assert_eq!(other.text(), "/plain #2", "{w}: bob never gets alice's answer");
            s.request("GET", "/public", auth);
            let shared = s.request("GET", "/public", auth);
            assert_eq!(shared.header("cache-status"), Some("ringgate; hit"), "{w}");
            assert_eq!(up.requests(), 3, "{w}");
        }
    }

    fn vary_keeps_variants_apart(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = cacheable(&[("cache-control", "max-age=60"), ("vary", "Accept-Language")]);
            let gw = gateway(driver, &up, workers, "");
            let mut s = session(&gw);
            let en = "Accept-Language: en\r\n";
            let de = "Accept-Language: de\r\n";
            assert_eq!(s.request("GET", "/v", en).text(), "/v #1", "{w}");
            let de_first = s.request("GET", "/v", de);
            assert_eq!(de_first.text(), "/v #2", "{w}");
            assert_eq!(de_first.header("cache-status"), Some("ringgate; fwd=vary-miss; stored"), "{w}");
            assert_eq!(s.request("GET", "/v", en).text(), "/v #1", "{w}");
            assert_eq!(s.request("GET", "/v", de).text(), "/v #2", "{w}");
            // Without the field, another variant.
            assert_eq!(s.get("/v").text(), "/v #3", "{w}");
            assert_eq!(up.requests(), 3, "{w}");
        }
    }

    fn the_key_shape_selects_query_headers_and_cookies(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = cacheable(&[("cache-control", "max-age=60")]);
            let gw = gateway(
                driver,
                &up,
                workers,
                "key = { query = [\"page\"], headers = [\"X-Tenant\"], cookies = [\"region\"] }\n",
            );
            let mut s = session(&gw);
            assert_eq!(s.get("/k?page=1&utm=a").text(), "/k?page=1&utm=a #1", "{w}");
            // Another utm: same key.
            assert_eq!(s.get("/k?utm=b&page=1").text(), "/k?page=1&utm=a #1", "{w}");
            assert_eq!(s.get("/k?page=2").text(), "/k?page=2 #2", "{w}");
            let t = s.request("GET", "/k?page=1", "X-Tenant: t2\r\n");
            assert_eq!(t.text(), "/k?page=1 #3", "{w}");
            let c = s.request("GET", "/k?page=1", "Cookie: a=1; region=eu\r\n");
            assert_eq!(c.text(), "/k?page=1 #4", "{w}");
            let c2 = s.request("GET", "/k?page=1", "Cookie: region=eu; b=2\r\n");
            assert_eq!(c2.text(), "/k?page=1 #4", "{w}");
            assert_eq!(up.requests(), 4, "{w}");
        }
    }

    fn a_short_or_broken_body_is_never_stored(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                if n == 1 && r.target == "/short" {
                    return Handled::Raw(
                        b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 100\r\n\r\nonly-part"
                            .to_vec(),
                    );
                }
                if n == 3 && r.target == "/chunked" {
                    return Handled::Raw(
                        b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
                            .to_vec(),
                    );
                }
                numbered(r, n, &[("cache-control", "max-age=60")])
            });
            let probe = WorkerProbe::start();
            let gw = probed(driver, &up, workers, "", &probe);
            let mut on = probe.sessions(gw.addr(), workers);
            // The cut answers go to whichever worker accepts the connection: no worker
            // may hold them afterwards.
            let mut raw = Raw::connect(gw.addr());
            raw.send("GET /short HTTP/1.1\r\nHost: h.example\r\n\r\n");
            let cut = raw.read_until_closed();
            assert!(!String::from_utf8_lossy(&cut).contains("#"), "{w}: {cut:?}");
            for (i, s) in on.iter_mut().enumerate() {
                assert!(!stored(s, "/short", ""), "{w}: worker {i} stored the cut body");
            }
            assert_eq!(on[0].get("/short").text(), "/short #2", "{w}: the cut body was not stored");
            let mut raw = Raw::connect(gw.addr());
            raw.send("GET /chunked HTTP/1.1\r\nHost: h.example\r\n\r\n");
            raw.read_until_closed();
            for (i, s) in on.iter_mut().enumerate() {
                assert!(!stored(s, "/chunked", ""), "{w}: worker {i} stored the broken body");
            }
            assert_eq!(on[0].get("/chunked").text(), "/chunked #4", "{w}: the broken body was not stored");
            assert_eq!(on[0].get("/chunked").text(), "/chunked #4", "{w}");
            assert_eq!(up.requests(), 4, "{w}");
        }
    }

    fn large_responses_stream_through_uncached_and_chunked_ones_are_stored(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                if r.target == "/big" {
                    return Handled::Respond {
                        delay: std::time::Duration::ZERO,
                        status: 200,
                        headers: vec![("cache-control".into(), "max-age=60".into())],
                        body: vec![b'b'; 200_000],
                    };
                }
                if r.target == "/chunked" {
                    let body = format!("/chunked #{n}");
                    let raw = format!(
                        "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                        body.len()
                    );
                    return Handled::Raw(raw.into_bytes());
                }
                numbered(r, n, &[("cache-control", "max-age=60")])
            });
            let gw = gateway(driver, &up, workers, "max_object_bytes = \"100KiB\"\n");
            let mut s = session(&gw);
            let a = s.get("/big");
            assert_eq!(a.body.len(), 200_000, "{w}");
            assert_eq!(a.header("cache-status"), Some("ringgate; fwd=uri-miss; detail=too-large"), "{w}");
            assert_eq!(s.get("/big").body.len(), 200_000, "{w}");
            assert_eq!(up.requests(), 2, "{w}");
            assert_eq!(s.get("/chunked").text(), "/chunked #3", "{w}");
            let hit = s.get("/chunked");
            assert_eq!(hit.text(), "/chunked #3", "{w}");
            assert_eq!(hit.header("content-length"), Some("11"), "{w}");
            assert_eq!(up.requests(), 3, "{w}");
        }
    }

    fn request_directives_are_honoured(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                // `/old` arrives already 100 s old with a 10 s lifetime: stale at once.
                let fields: &[(&str, &str)] = if r.target == "/old" {
                    &[("cache-control", "max-age=10"), ("age", "100")]
                } else {
                    &[("cache-control", "max-age=60")]
                };
                numbered(r, n, fields)
            });
            let gw = gateway(driver, &up, workers, "");
            let mut s = session(&gw);
            let cold = s.request("GET", "/a", "Cache-Control: only-if-cached\r\n");
            assert_eq!(cold.status, 504, "{w}");
            assert_eq!(up.requests(), 0, "{w}");
            s.get("/a");
            let warm = s.request("GET", "/a", "Cache-Control: only-if-cached\r\n");
            assert_eq!((warm.status, warm.text()), (200, "/a #1".to_string()), "{w}");
            let no_cache = s.request("GET", "/a", "Cache-Control: no-cache\r\n");
            assert_eq!(no_cache.text(), "/a #2", "{w}: no-cache goes upstream");
            // An entry stored this second is 0 s old: `max-age=0` accepts it (§5.2.1.1).
            let max_age = s.request("GET", "/a", "Cache-Control: max-age=0\r\n");
            assert_eq!(max_age.text(), "/a #2", "{w}");
            let min_fresh = s.request("GET", "/a", "Cache-Control: min-fresh=3600\r\n");
            assert_eq!(min_fresh.text(), "/a #3", "{w}");
            assert_eq!(s.get("/a").text(), "/a #3", "{w}: the refetched response replaced the entry");
            // A stale entry: served only to a request that accepts it.
            assert_eq!(s.get("/old").text(), "/old #4", "{w}");
            let stale = s.request("GET", "/old", "Cache-Control: max-stale=200\r\n");
            assert_eq!(stale.text(), "/old #4", "{w}");
            let too_old = s.request("GET", "/old", "Cache-Control: max-stale=200, max-age=50\r\n");
            assert_eq!(too_old.text(), "/old #5", "{w}: max-age bounds max-stale");
            assert_eq!(stale.header("cache-status"), Some("ringgate; hit; detail=stale"), "{w}");
            assert!(stale.header("age").is_some_and(|a| a.parse::<u64>().unwrap_or(0) >= 100), "{w}: {stale:?}");
            let fresh = s.get("/old");
            assert_eq!(fresh.text(), "/old #6", "{w}");
            assert_eq!(fresh.header("cache-status"), Some("ringgate; fwd=stale; stored"), "{w}");
            // The fetched response is itself 100 s old: stale again, never served as fresh.
            let strict = s.request("GET", "/old", "Cache-Control: only-if-cached\r\n");
            assert_eq!(strict.status, 504, "{w}");
            assert_eq!(up.requests(), 6, "{w}");
        }
    }

    fn the_tag_field_never_reaches_the_client(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = cacheable(&[("cache-control", "max-age=60"), ("surrogate-key", "product-1 catalog")]);
            let gw = gateway(driver, &up, workers, "tag_header = \"Surrogate-Key\"\n");
            let mut s = session(&gw);
            let miss = s.get("/t");
            let hit = s.get("/t");
            assert_eq!(hit.header("cache-status"), Some("ringgate; hit"), "{w}");
            assert_eq!(miss.header("surrogate-key"), None, "{w}");
            assert_eq!(hit.header("surrogate-key"), None, "{w}");
            assert_eq!(up.requests(), 1, "{w}");
        }
    }

    fn each_worker_keeps_its_own_cache_and_never_serves_a_wrong_entry(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = cacheable(&[("cache-control", "max-age=60")]);
            let probe = WorkerProbe::start();
            let gw = probed(driver, &up, workers, "", &probe);
            let mut on = probe.sessions(gw.addr(), workers);
            for (round, path) in ["/w", "/w2"].into_iter().enumerate() {
                // Each worker fills its own entry, then serves it.
                for (i, s) in on.iter_mut().enumerate() {
                    let miss = s.get(path);
                    let n = round * workers + i + 1;
                    assert_eq!(miss.text(), format!("{path} #{n}"), "{w}: worker {i} fills its own");
                    assert_eq!(miss.header("cache-status"), Some("ringgate; fwd=uri-miss; stored"), "{w}: worker {i}");
                }
                for (i, s) in on.iter_mut().enumerate() {
                    let hit = s.get(path);
                    let n = round * workers + i + 1;
                    assert_eq!(hit.text(), format!("{path} #{n}"), "{w}: worker {i} serves its own");
                    assert_eq!(hit.header("cache-status"), Some("ringgate; hit"), "{w}: worker {i}");
                }
                assert_eq!(up.requests(), (round + 1) * workers, "{w}: one request per worker and key");
            }
        }
    }

    fn clients_validators_are_answered_304_from_a_fresh_entry(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = cacheable(&[
                ("cache-control", "max-age=60"),
                ("etag", "\"v1\""),
                ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ]);
            let gw = gateway(driver, &up, workers, "");
            let mut s = session(&gw);
            s.get("/c");
            let inm = s.request("GET", "/c", "If-None-Match: \"v0\", W/\"v1\"\r\n");
            assert_eq!(inm.status, 304, "{w}");
            assert_eq!(inm.header("etag"), Some("\"v1\""), "{w}");
            assert!(inm.body.is_empty(), "{w}");
            let other = s.request("GET", "/c", "If-None-Match: \"v2\"\r\n");
            assert_eq!((other.status, other.text()), (200, "/c #1".to_string()), "{w}");
            let ims = s.request("GET", "/c", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
            assert_eq!(ims.status, 304, "{w}");
            let older = s.request("GET", "/c", "If-Modified-Since: Sat, 05 Nov 1994 08:49:37 GMT\r\n");
            assert_eq!(older.status, 200, "{w}");
            assert_eq!(up.requests(), 1, "{w}");
        }
    }

    fn a_stale_entry_is_revalidated_and_refreshed_by_a_304(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                if r.header("if-none-match") == Some("\"v1\"") {
                    return Handled::Respond {
                        delay: std::time::Duration::ZERO,
                        status: 304,
                        headers: vec![
                            ("etag".into(), "\"v1\"".into()),
                            ("cache-control".into(), "max-age=60".into()),
                            ("x-refreshed".into(), format!("{n}")),
                        ],
                        body: Vec::new(),
                    };
                }
                numbered(r, n, &[("cache-control", "max-age=10"), ("age", "100"), ("etag", "\"v1\""), ("x-refreshed", "no")])
            });
            let gw = gateway(driver, &up, workers, "");
            let mut s = session(&gw);
            assert_eq!(s.get("/r").text(), "/r #1", "{w}");
            let revalidated = s.get("/r");
            assert_eq!(revalidated.status, 200, "{w}");
            assert_eq!(revalidated.text(), "/r #1", "{w}: the stored body answers");
            assert_eq!(revalidated.header("cache-status"), Some("ringgate; fwd=stale; fwd-status=304"), "{w}");
            assert_eq!(revalidated.header("x-refreshed"), Some("2"), "{w}: headers updated from the 304");
            let sent = up.last_request().expect("conditional request");
            assert_eq!(sent.header("if-none-match"), Some("\"v1\""), "{w}");
            // Now fresh for 60 s: a hit.
            let hit = s.get("/r");
            assert_eq!(hit.header("cache-status"), Some("ringgate; hit"), "{w}");
            assert_eq!(hit.header("x-refreshed"), Some("2"), "{w}");
            assert_eq!(up.requests(), 2, "{w}");
        }
    }

    fn stale_if_error_serves_the_stored_response_when_the_upstream_fails(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                if n == 1 {
                    return numbered(r, n, &[("cache-control", "max-age=10, stale-if-error=600"), ("age", "100")]);
                }
                if n == 2 {
                    return Handled::Respond {
                        delay: std::time::Duration::ZERO,
                        status: 503,
                        headers: Vec::new(),
                        body: b"down".to_vec(),
                    };
                }
                Handled::Close
            });
            let gw = gateway(driver, &up, workers, "");
            let mut s = session(&gw);
            assert_eq!(s.get("/e").text(), "/e #1", "{w}");
            let on_503 = s.get("/e");
            assert_eq!((on_503.status, on_503.text()), (200, "/e #1".to_string()), "{w}");
            assert_eq!(on_503.header("cache-status"), Some("ringgate; hit; detail=stale-if-error"), "{w}");
            let on_close = s.get("/e");
            assert_eq!((on_close.status, on_close.text()), (200, "/e #1".to_string()), "{w}");
            assert!(up.requests() >= 3, "{w}: {} upstream requests", up.requests());
        }
    }

    fn http2_clients_are_served_by_the_same_cache(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                if r.target == "/large" {
                    let mut body = format!("/large #{n}").into_bytes();
                    body.resize(300_000, b'.');
                    return Handled::Respond {
                        delay: std::time::Duration::ZERO,
                        status: 200,
                        headers: vec![("cache-control".into(), "max-age=60".into())],
                        body,
                    };
                }
                numbered(r, n, &[("cache-control", "max-age=60")])
            });
            let probe = WorkerProbe::start();
            let gw = probe
                .configure(
                    GatewayConfig::new(driver)
                        .workers(workers)
                        .server("h2c", "true")
                        .upstream("origin", &[up.addr()])
                        .routes(
                            "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
                             upstream = \"origin\"\ncache = \"api\"\n",
                        )
                        .tables("[caches.api]\nmax_bytes = \"4MiB\"\n"),
                )
                .start();
            let mut on = probe.sessions(gw.addr(), workers);
            let h2 = H2Session::connect(&gw);
            // HTTP/1.1 asks on the worker that serves the h2 connection.
            let same = &mut on[h2.worker(workers)];
            let miss = h2.get("/h2", &[]);
            assert_eq!((miss.status, miss.text()), (200, "/h2 #1".to_string()), "{w}");
            assert_eq!(miss.header("cache-status"), Some("ringgate; fwd=uri-miss; stored"), "{w}");
            let hit = h2.get("/h2", &[]);
            assert_eq!(hit.text(), "/h2 #1", "{w}");
            assert_eq!(hit.header("cache-status"), Some("ringgate; hit"), "{w}");
            // HTTP/1.1 with the same host finds the entry the h2 stream stored.
            let h1 = same.get("/h2");
            assert_eq!(h1.text(), "/h2 #1", "{w}");
            assert_eq!(h1.header("cache-status"), Some("ringgate; hit"), "{w}");
            // A body past the inline size is written as the entry's shared bytes.
            let large = h2.get("/large", &[]);
            assert_eq!(large.body.len(), 300_000, "{w}");
            let large_hit = h2.get("/large", &[]);
            assert_eq!(large_hit.header("cache-status"), Some("ringgate; hit"), "{w}");
            assert_eq!(large_hit.body, large.body, "{w}");
            assert_eq!(same.get("/large").body, large.body, "{w}");
            assert_eq!(up.requests(), 2, "{w}");
        }
    }

    fn gateway_errors_on_a_cached_route_carry_cache_status(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let gw = GatewayConfig::new(driver)
                .workers(workers)
                .upstream("origin", &[common::upstream::refused_addr()])
                .routes(
                    "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
                     upstream = \"origin\"\ncache = \"api\"\n",
                )
                .tables("[caches.api]\nmax_bytes = \"1MiB\"\n")
                .start();
            // Whichever worker answers.
            for _ in 0..4 {
                let r = request(&gw, "GET", "/down", "");
                assert_eq!(r.status, 502, "{w}");
                assert_eq!(r.header("cache-status"), Some("ringgate; fwd=uri-miss; detail=upstream-error"), "{w}");
            }
        }
    }

    fn a_refused_request_never_gets_a_cached_answer(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = cacheable(&[("cache-control", "public, max-age=600")]);
            let gw = GatewayConfig::new(driver)
                .workers(workers)
                .upstream("origin", &[up.addr()])
                .routes(
                    "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
                     upstream = \"origin\"\ncache = \"api\"\npolicies = [\"keys\"]\n",
                )
                .tables(
                    "[caches.api]\nmax_bytes = \"1MiB\"\n\n\
                     [policies.keys]\nkind = \"api_key\"\n\n\
                     [[consumers]]\nname = \"alice\"\napi_keys = [\"k-alice-0123456789abcdef\"]\n",
                )
                .start();
            let mut s = session(&gw);
            let key = "X-Api-Key: k-alice-0123456789abcdef\r\n";
            assert_eq!(s.request("GET", "/p", key).status, 200, "{w}");
            assert_eq!(s.request("GET", "/p", key).header("cache-status"), Some("ringgate; hit"), "{w}");
            // The policies run before the lookup: no key, no cached answer (on the worker
            // that holds the entry).
            let refused = s.get("/p");
            assert_eq!(refused.status, 401, "{w}");
            assert_eq!(refused.header("cache-status"), Some("ringgate; fwd=bypass"), "{w}");
            assert!(!refused.text().contains("/p #1"), "{w}: {refused:?}");
            assert_eq!(up.requests(), 1, "{w}");
        }
    }

    fn stale_while_revalidate_serves_at_once_and_refreshes_once_in_the_background(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                if n == 1 {
                    return numbered(r, n, &[("cache-control", "max-age=10, stale-while-revalidate=600"), ("age", "100"), ("etag", "\"v1\"")]);
                }
                numbered(r, n, &[("cache-control", "max-age=60"), ("etag", "\"v2\"")])
            });
            let gw = gateway(driver, &up, workers, "");
            let mut s = session(&gw);
            assert_eq!(s.get("/s").text(), "/s #1", "{w}");
            let stale = s.get("/s");
            assert_eq!(stale.text(), "/s #1", "{w}: served stale at once");
            assert_eq!(stale.header("cache-status"), Some("ringgate; hit; detail=stale-while-revalidate"), "{w}");
            up.wait_for_requests(2);
            let refresh = up.last_request().expect("refresh");
            assert_eq!(refresh.header("if-none-match"), Some("\"v1\""), "{w}");
            // The refreshed entry replaces the stale one (the refresh stores it on the worker).
            common::wait_until(&format!("{w}: the refreshed entry"), std::time::Duration::from_secs(5), || {
                s.get("/s").text() == "/s #2"
            });
            assert_eq!(s.get("/s").header("cache-status"), Some("ringgate; hit"), "{w}");
            assert_eq!(up.requests(), 2, "{w}: one background refresh");
        }
    }

    fn concurrent_misses_for_one_key_go_upstream_once_per_worker(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            // The first answers take a while: every other request arrives while they are in
            // flight.
            let up = backend(|r, n| {
                let mut h = numbered(r, n, &[("cache-control", "max-age=60")]);
                if let Handled::Respond { delay, .. } = &mut h {
                    *delay = std::time::Duration::from_millis(if n <= 2 { 500 } else { 0 });
                }
                h
            });
            let probe = WorkerProbe::start();
            let gw = probed(driver, &up, workers, "", &probe);
            // 100 clients, spread evenly over the workers for certain.
            let groups = probe.sessions_per_worker(gw.addr(), workers, 100 / workers);
            let start = std::sync::Barrier::new(100);
            let bodies: Vec<Vec<String>> = std::thread::scope(|scope| {
                let clients: Vec<Vec<_>> = groups
                    .into_iter()
                    .map(|group| {
                        group
                            .into_iter()
                            .map(|mut s| {
                                let start = &start;
                                scope.spawn(move || {
                                    start.wait();
                                    s.get("/cold").text()
                                })
                            })
                            .collect()
                    })
                    .collect();
                clients
                    .into_iter()
                    .map(|g| g.into_iter().map(|c| c.join().expect("client")).collect())
                    .collect()
            });
            assert_eq!(
                up.requests(),
                workers,
                "{w}: upstream requests for 100 concurrent misses, {} per worker",
                100 / workers
            );
            for (i, group) in bodies.iter().enumerate() {
                assert!(group[0].starts_with("/cold #"), "{w}: worker {i}: {group:?}");
                assert!(group.iter().all(|b| *b == group[0]), "{w}: worker {i} answered one response: {group:?}");
            }
        }
    }

    fn a_coalesced_wait_is_bounded(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                let mut h = numbered(r, n, &[("cache-control", "max-age=60")]);
                if let Handled::Respond { delay, .. } = &mut h {
                    *delay = std::time::Duration::from_millis(if n == 1 { 3000 } else { 0 });
                }
                h
            });
            let probe = WorkerProbe::start();
            let gw = probed(driver, &up, workers, "coalesce_wait = \"100ms\"\n", &probe);
            // Two connections on the last worker: the second waits for the first's miss.
            let mut groups = probe.sessions_per_worker(gw.addr(), workers, 2);
            let mut pair = groups.pop().expect("a worker");
            let (mut second, mut slow) = (pair.pop().expect("session"), pair.pop().expect("session"));
            std::thread::scope(|s| {
                let slow = s.spawn(move || slow.get("/slow").text());
                up.wait_for_requests(1);
                let started = std::time::Instant::now();
                let answer = second.get("/slow");
                let waited = started.elapsed();
                assert_eq!(answer.text(), "/slow #2", "{w}: went upstream itself after the wait");
                assert!(waited >= std::time::Duration::from_millis(100), "{w}: did not wait for the miss in flight ({waited:?})");
                assert!(waited < std::time::Duration::from_millis(2500), "{w}: waited {waited:?}");
                assert_eq!(slow.join().expect("slow").as_str(), "/slow #1", "{w}");
            });
        }
    }

    fn an_unsafe_request_invalidates_its_url_on_every_worker(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = cacheable(&[("cache-control", "max-age=600")]);
            let probe = WorkerProbe::start();
            let gw = probed(driver, &up, workers, "", &probe);
            let mut on = probe.sessions(gw.addr(), workers);
            for (i, s) in on.iter_mut().enumerate() {
                assert_eq!(s.get("/items/1").text(), format!("/items/1 #{}", i + 1), "{w}");
                assert!(stored(s, "/items/1", ""), "{w}: worker {i}");
            }
            let put = on[0].request("PUT", "/items/1", "Content-Length: 0\r\n");
            assert_eq!(put.status, 200, "{w}");
            // The worker that served it dropped the entry before answering; every other
            // worker drops it too.
            assert!(!stored(&mut on[0], "/items/1", ""), "{w}: worker 0 kept /items/1");
            dropped_everywhere(&mut on, workers, "/items/1");
            for (i, s) in on.iter_mut().enumerate() {
                let again = s.get("/items/1");
                assert_eq!(again.text(), format!("/items/1 #{}", workers + 2 + i), "{w}: worker {i}");
            }
            assert_eq!(up.requests(), 2 * workers + 1, "{w}");
        }
    }

    fn location_on_the_same_host_is_invalidated_and_errors_invalidate_nothing(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                if r.method == "POST" && r.target == "/items" {
                    return Handled::Respond {
                        delay: std::time::Duration::ZERO,
                        status: 201,
                        headers: vec![
                            ("location".into(), "/items/7".into()),
                            ("content-location".into(), "http://h.example:8080/items/list".into()),
                            ("x-other".into(), "1".into()),
                        ],
                        body: Vec::new(),
                    };
                }
                if r.method == "POST" {
                    return Handled::Respond {
                        delay: std::time::Duration::ZERO,
                        status: 500,
                        headers: Vec::new(),
                        body: b"failed".to_vec(),
                    };
                }
                if r.method == "DELETE" {
                    return Handled::Respond {
                        delay: std::time::Duration::ZERO,
                        status: 204,
                        headers: vec![("location".into(), "http://other.example/items/9".into())],
                        body: Vec::new(),
                    };
                }
                numbered(r, n, &[("cache-control", "max-age=600")])
            });
            let probe = WorkerProbe::start();
            let gw = probed(driver, &up, workers, "", &probe);
            let mut on = probe.sessions(gw.addr(), workers);
            for s in on.iter_mut() {
                for path in ["/items/7", "/items/list", "/items/9", "/items/8"] {
                    s.get(path);
                }
            }
            assert_eq!(up.requests(), 4 * workers, "{w}");
            let created = on[0].request("POST", "/items", "Content-Length: 0\r\n");
            assert_eq!(created.status, 201, "{w}");
            dropped_everywhere(&mut on, workers, "/items/7");
            dropped_everywhere(&mut on, workers, "/items/list");
            settle(&mut on, workers, "/sync-1");
            kept_everywhere(&mut on, workers, "/items/9");
            kept_everywhere(&mut on, workers, "/items/8");
            let refetched = on[0].get("/items/7");
            assert!(number(&refetched) > 4 * workers, "{w}: Location refetched: {refetched:?}");
            // An error answer invalidates nothing.
            assert_eq!(on[0].request("POST", "/items/8", "Content-Length: 0\r\n").status, 500, "{w}");
            settle(&mut on, workers, "/sync-2");
            kept_everywhere(&mut on, workers, "/items/8");
            // A Location on another host is not followed.
            assert_eq!(on[0].request("DELETE", "/items/8", "").status, 204, "{w}");
            dropped_everywhere(&mut on, workers, "/items/8");
            settle(&mut on, workers, "/sync-3");
            kept_everywhere(&mut on, workers, "/items/9");
            for (i, s) in on.iter_mut().enumerate() {
                assert_eq!(s.get("/items/9").text(), format!("/items/9 #{}", 4 * i + 3), "{w}: worker {i}");
            }
        }
    }

    fn operator_purges_by_url_prefix_and_tag_on_every_worker(driver: &str) {
        use ringgate::cache::Purge;
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                let tags = if r.target.starts_with("/catalog/") { "catalog" } else { "other" };
                numbered(r, n, &[("cache-control", "max-age=600"), ("surrogate-key", tags), ("vary", "X-V")])
            });
            let probe = WorkerProbe::start();
            let gw = probed(driver, &up, workers, "tag_header = \"Surrogate-Key\"\n", &probe);
            let mut on = probe.sessions(gw.addr(), workers);
            // Two variants of each path on every worker.
            let paths = ["/catalog/1", "/catalog/2", "/about", "/x?q=1"];
            for s in on.iter_mut() {
                for path in paths {
                    for v in 0..2 {
                        s.request("GET", path, &format!("X-V: {v}\r\n"));
                    }
                }
            }
            assert_eq!(up.requests(), 8 * workers, "{w}");
            let url = gw.purge(Purge::url("http://h.example/x?q=1").expect("url"));
            assert_eq!(url, 2 * workers, "{w}: one URL's 2 variants on every worker");
            assert_eq!(gw.purge(Purge::url("http://h.example/x?q=1").expect("url")), 0, "{w}");
            let prefix = gw.purge(Purge::prefix("/catalog/", Some("h.example")).expect("prefix"));
            assert_eq!(prefix, 4 * workers, "{w}");
            let tag = gw.purge(Purge::tag("other").expect("tag"));
            assert_eq!(tag, 2 * workers, "{w}");
            assert_eq!(gw.purge(Purge::tag("other").expect("tag")), 0, "{w}");
            for (i, s) in on.iter_mut().enumerate() {
                for path in paths {
                    for v in 0..2 {
                        let variant = format!("X-V: {v}\r\n");
                        assert!(!stored(s, path, &variant), "{w}: worker {i} kept {path} {v}");
                    }
                }
                let before = up.requests();
                s.request("GET", "/about", "X-V: 0\r\n");
                assert_eq!(up.requests(), before + 1, "{w}: worker {i}: purged entries are gone");
            }
        }
    }

    fn a_reload_keeps_a_cache_whose_key_shape_survives(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = cacheable(&[("cache-control", "max-age=600")]);
            let config = |cache: &str| {
                GatewayConfig::new(driver)
                    .workers(workers)
                    .upstream("origin", &[up.addr()])
                    .routes(
                        "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
                         upstream = \"origin\"\ncache = \"api\"\n",
                    )
                    .tables(&format!("[caches.api]\n{cache}"))
            };
            let gw = config("max_bytes = \"1MiB\"\n").start();
            let mut s = session(&gw);
            assert_eq!(s.get("/r?a=1").text(), "/r?a=1 #1", "{w}");
            // Another budget, same key shape: the entries stay.
            gw.store(&config("max_bytes = \"2MiB\"\n"));
            assert_eq!(s.get("/r?a=1").header("cache-status"), Some("ringgate; hit"), "{w}");
            // Another key shape: the cache starts empty.
            gw.store(&config("max_bytes = \"2MiB\"\nkey = { query = \"none\" }\n"));
            assert_eq!(s.get("/r?a=1").text(), "/r?a=1 #2", "{w}");
            assert_eq!(s.get("/r?a=2").text(), "/r?a=1 #2", "{w}: the query is no longer in the key");
            assert_eq!(up.requests(), 2, "{w}");
        }
    }

    fn metrics_count_per_cache_and_per_route(driver: &str) {
        for workers in WORKERS {
            let w = format!("{workers} worker(s)");
            let up = backend(|r, n| {
                let fields: &[(&str, &str)] = if r.target == "/old" {
                    &[("cache-control", "max-age=1"), ("age", "50")]
                } else {
                    &[("cache-control", "max-age=600")]
                };
                numbered(r, n, fields)
            });
            let gw = config(driver, &up, workers, "").merge_interval("100ms").start();
            let mut s = session(&gw);
            s.get("/m");
            s.get("/m");
            s.get("/m");
            s.get("/old");
            s.request("GET", "/old", "Cache-Control: max-stale=1000\r\n");
            s.request("POST", "/m", "Content-Length: 0\r\n");
            let text = |agg: &ringgate::metrics::Aggregator| {
                agg.render(&ringgate::metrics::ProcessInfo::default())
            };
            let expected = [
                "ringgate_route_cache_requests_total{route=\"cached\",result=\"hit\"} 2",
                "ringgate_route_cache_requests_total{route=\"cached\",result=\"stale\"} 1",
                "ringgate_route_cache_requests_total{route=\"cached\",result=\"miss\"} 2",
                "ringgate_route_cache_requests_total{route=\"cached\",result=\"bypass\"} 1",
                "ringgate_cache_hits_total{cache=\"api\"} 2",
                "ringgate_cache_misses_total{cache=\"api\"} 2",
                "ringgate_cache_stale_total{cache=\"api\"} 1",
                "ringgate_cache_stores_total{cache=\"api\"} 2",
                "ringgate_cache_purged_total{cache=\"api\"} 1",
                "ringgate_cache_entries{cache=\"api\"} 1",
            ];
            let agg = gw.metrics_until_for(&w, |agg| {
                let t = text(agg);
                expected.iter().all(|line| t.contains(line))
            });
            assert!(text(&agg).contains("ringgate_cache_bytes{cache=\"api\"}"), "{w}");
        }
    }
}
