//! The response cache (`[caches.NAME]`, `cache = "NAME"`) through real sockets, against
//! backends that count what they receive and number their answers: a wrong hit (another
//! host, method, variant) or a missed one shows as a wrong body or a wrong count.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::h2 as h2c;
use common::upstream::{Behavior, Handled, Recorded, Upstream};

/// One HTTP/2 (h2c) GET on a new connection.
fn h2_get(gw: &Gateway, path: &str) -> h2c::Exchange {
    let authority = gw.addr().to_string();
    h2c::runtime().block_on(async {
        let client = h2c::connect(gw.addr()).await;
        let request = http::Request::builder()
            .method("GET")
            .uri(format!("http://{authority}{path}"))
            .body(())
            .expect("request");
        h2c::exchange(&client, request, None)
            .await
            .expect("h2 exchange")
    })
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

/// A gateway with one cached catch-all route to `up`; `cache` holds extra keys of
/// `[caches.api]`.
fn gateway(driver: &str, up: &Upstream, workers: usize, cache: &str) -> Gateway {
    GatewayConfig::new(driver)
        .workers(workers)
        .upstream("origin", &[up.addr()])
        .routes(
            "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
             upstream = \"origin\"\ncache = \"api\"\n",
        )
        .tables(&format!("[caches.api]\nmax_bytes = \"1MiB\"\n{cache}"))
        .start()
}

/// `METHOD path` with `Host: h.example` and `extra` header lines, on a new connection.
fn request(gw: &Gateway, method: &str, path: &str, extra: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "{method} {path} HTTP/1.1\r\nHost: h.example\r\n{extra}\r\n"
    ));
    raw.read_response_to(method)
}

fn get(gw: &Gateway, path: &str) -> RawResponse {
    request(gw, "GET", path, "")
}

driver_tests! {
    fn a_fresh_response_is_served_from_the_cache_with_age_and_cache_status(driver: &str) {
        let up = cacheable(&[("cache-control", "max-age=60"), ("content-type", "text/plain")]);
        let gw = gateway(driver, &up, 1, "");
        let first = get(&gw, "/items/1");
        assert_eq!(first.status, 200);
        assert_eq!(first.text(), "/items/1 #1");
        assert_eq!(first.header("cache-status"), Some("ringgate; fwd=uri-miss; stored"));
        for _ in 0..3 {
            let hit = get(&gw, "/items/1");
            assert_eq!(hit.status, 200);
            assert_eq!(hit.text(), "/items/1 #1", "served from the cache");
            assert_eq!(hit.header("cache-status"), Some("ringgate; hit"));
            assert_eq!(hit.header("content-type"), Some("text/plain"));
            assert!(hit.header("age").is_some_and(|a| a.parse::<u64>().is_ok()), "{hit:?}");
            assert!(hit.header("x-request-id").is_some());
        }
        assert_eq!(up.requests(), 1, "hits never reach the backend");
        // Another path is another entry.
        assert_eq!(get(&gw, "/items/2").text(), "/items/2 #2");
        assert_eq!(up.requests(), 2);
    }

    fn an_entry_is_never_served_for_another_host_or_method(driver: &str) {
        let up = cacheable(&[("cache-control", "max-age=60")]);
        let gw = gateway(driver, &up, 1, "");
        assert_eq!(get(&gw, "/x").text(), "/x #1");
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /x HTTP/1.1\r\nHost: other.example\r\n\r\n");
        assert_eq!(raw.read_response_to("GET").text(), "/x #2", "another host misses");
        // HEAD is answered from the GET entry: no body, its length.
        let head = request(&gw, "HEAD", "/x", "");
        assert_eq!(head.status, 200);
        assert_eq!(head.header("cache-status"), Some("ringgate; hit"));
        assert_eq!(head.header("content-length"), Some("5"));
        assert!(head.body.is_empty());
        assert_eq!(up.requests(), 2);
        // POST and DELETE are never answered from the cache.
        let post = request(&gw, "POST", "/x", "Content-Length: 0\r\n");
        assert_eq!(post.text(), "/x #3");
        assert_eq!(post.header("cache-status"), Some("ringgate; fwd=bypass"));
        assert_eq!(up.requests(), 3);
    }

    fn responses_a_shared_cache_must_not_store_are_fetched_every_time(driver: &str) {
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
        let gw = gateway(driver, &up, 1, "");
        let cases = [
            ("/no-store", "no-store"),
            ("/private", "private"),
            ("/cookie", "set-cookie"),
            ("/star", "vary-star"),
            ("/error", "status"),
        ];
        for (path, detail) in cases {
            let before = up.requests();
            let a = get(&gw, path);
            let b = get(&gw, path);
            assert_eq!(up.requests(), before + 2, "{path} was served from the cache");
            assert_ne!(a.body, b.body);
            let status = format!("ringgate; fwd=uri-miss; detail={detail}");
            assert_eq!(b.header("cache-status"), Some(status.as_str()), "{path}");
        }
        // A Set-Cookie response's cookie is never given to another client.
        assert_eq!(get(&gw, "/cookie").header("set-cookie"), Some("s=1"));
    }

    fn requests_with_authorization_are_shared_only_where_allowed(driver: &str) {
        let up = backend(|r, n| {
            let cc = if r.target == "/public" { "public, max-age=60" } else { "max-age=60" };
            numbered(r, n, &[("cache-control", cc)])
        });
        let gw = gateway(driver, &up, 1, "");
        let auth = "Authorization: Bearer alice\r\n";
        request(&gw, "GET", "/plain", auth);
        let other = request(&gw, "GET", "/plain", "Authorization: Bearer bob\r\n");
        assert_eq!(other.text(), "/plain #2", "bob never gets alice's answer");
        request(&gw, "GET", "/public", auth);
        let shared = request(&gw, "GET", "/public", auth);
        assert_eq!(shared.header("cache-status"), Some("ringgate; hit"));
        assert_eq!(up.requests(), 3);
    }

    fn vary_keeps_variants_apart(driver: &str) {
        let up = cacheable(&[("cache-control", "max-age=60"), ("vary", "Accept-Language")]);
        let gw = gateway(driver, &up, 1, "");
        let en = "Accept-Language: en\r\n";
        let de = "Accept-Language: de\r\n";
        assert_eq!(request(&gw, "GET", "/v", en).text(), "/v #1");
        let de_first = request(&gw, "GET", "/v", de);
        assert_eq!(de_first.text(), "/v #2");
        assert_eq!(de_first.header("cache-status"), Some("ringgate; fwd=vary-miss; stored"));
        assert_eq!(request(&gw, "GET", "/v", en).text(), "/v #1");
        assert_eq!(request(&gw, "GET", "/v", de).text(), "/v #2");
        // Without the field, another variant.
        assert_eq!(get(&gw, "/v").text(), "/v #3");
        assert_eq!(up.requests(), 3);
    }

    fn the_key_shape_selects_query_headers_and_cookies(driver: &str) {
        let up = cacheable(&[("cache-control", "max-age=60")]);
        let gw = gateway(
            driver,
            &up,
            1,
            "key = { query = [\"page\"], headers = [\"X-Tenant\"], cookies = [\"region\"] }\n",
        );
        assert_eq!(get(&gw, "/k?page=1&utm=a").text(), "/k?page=1&utm=a #1");
        // Another utm: same key.
        assert_eq!(get(&gw, "/k?utm=b&page=1").text(), "/k?page=1&utm=a #1");
        assert_eq!(get(&gw, "/k?page=2").text(), "/k?page=2 #2");
        let t = request(&gw, "GET", "/k?page=1", "X-Tenant: t2\r\n");
        assert_eq!(t.text(), "/k?page=1 #3");
        let c = request(&gw, "GET", "/k?page=1", "Cookie: a=1; region=eu\r\n");
        assert_eq!(c.text(), "/k?page=1 #4");
        let c2 = request(&gw, "GET", "/k?page=1", "Cookie: region=eu; b=2\r\n");
        assert_eq!(c2.text(), "/k?page=1 #4");
        assert_eq!(up.requests(), 4);
    }

    fn a_short_or_broken_body_is_never_stored(driver: &str) {
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
        let gw = gateway(driver, &up, 1, "");
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /short HTTP/1.1\r\nHost: h.example\r\n\r\n");
        let cut = raw.read_until_closed();
        assert!(!String::from_utf8_lossy(&cut).contains("#"), "{cut:?}");
        assert_eq!(get(&gw, "/short").text(), "/short #2", "the cut body was not stored");
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /chunked HTTP/1.1\r\nHost: h.example\r\n\r\n");
        raw.read_until_closed();
        assert_eq!(get(&gw, "/chunked").text(), "/chunked #4", "the broken body was not stored");
        assert_eq!(get(&gw, "/chunked").text(), "/chunked #4");
        assert_eq!(up.requests(), 4);
    }

    fn large_responses_stream_through_uncached_and_chunked_ones_are_stored(driver: &str) {
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
        let gw = gateway(driver, &up, 1, "max_object_bytes = \"100KiB\"\n");
        let a = get(&gw, "/big");
        assert_eq!(a.body.len(), 200_000);
        assert_eq!(a.header("cache-status"), Some("ringgate; fwd=uri-miss; detail=too-large"));
        assert_eq!(get(&gw, "/big").body.len(), 200_000);
        assert_eq!(up.requests(), 2);
        assert_eq!(get(&gw, "/chunked").text(), "/chunked #3");
        let hit = get(&gw, "/chunked");
        assert_eq!(hit.text(), "/chunked #3");
        assert_eq!(hit.header("content-length"), Some("11"));
        assert_eq!(up.requests(), 3);
    }

    fn request_directives_are_honoured(driver: &str) {
        let up = backend(|r, n| {
            // `/old` arrives already 100 s old with a 10 s lifetime: stale at once.
            let fields: &[(&str, &str)] = if r.target == "/old" {
                &[("cache-control", "max-age=10"), ("age", "100")]
            } else {
                &[("cache-control", "max-age=60")]
            };
            numbered(r, n, fields)
        });
        let gw = gateway(driver, &up, 1, "");
        let cold = request(&gw, "GET", "/a", "Cache-Control: only-if-cached\r\n");
        assert_eq!(cold.status, 504);
        assert_eq!(up.requests(), 0);
        get(&gw, "/a");
        let warm = request(&gw, "GET", "/a", "Cache-Control: only-if-cached\r\n");
        assert_eq!((warm.status, warm.text()), (200, "/a #1".to_string()));
        let no_cache = request(&gw, "GET", "/a", "Cache-Control: no-cache\r\n");
        assert_eq!(no_cache.text(), "/a #2", "no-cache goes upstream");
        // An entry stored this second is 0 s old: `max-age=0` accepts it (§5.2.1.1).
        let max_age = request(&gw, "GET", "/a", "Cache-Control: max-age=0\r\n");
        assert_eq!(max_age.text(), "/a #2");
        let min_fresh = request(&gw, "GET", "/a", "Cache-Control: min-fresh=3600\r\n");
        assert_eq!(min_fresh.text(), "/a #3");
        assert_eq!(get(&gw, "/a").text(), "/a #3", "the refetched response replaced the entry");
        // A stale entry: served only to a request that accepts it.
        assert_eq!(get(&gw, "/old").text(), "/old #4");
        let stale = request(&gw, "GET", "/old", "Cache-Control: max-stale=200\r\n");
        assert_eq!(stale.text(), "/old #4");
        let too_old = request(&gw, "GET", "/old", "Cache-Control: max-stale=200, max-age=50\r\n");
        assert_eq!(too_old.text(), "/old #5", "max-age bounds max-stale");
        assert_eq!(stale.header("cache-status"), Some("ringgate; hit; detail=stale"));
        assert!(stale.header("age").is_some_and(|a| a.parse::<u64>().unwrap_or(0) >= 100));
        let fresh = get(&gw, "/old");
        assert_eq!(fresh.text(), "/old #6");
        assert_eq!(fresh.header("cache-status"), Some("ringgate; fwd=stale; stored"));
        // The fetched response is itself 100 s old: stale again, never served as fresh.
        let strict = request(&gw, "GET", "/old", "Cache-Control: only-if-cached\r\n");
        assert_eq!(strict.status, 504);
        assert_eq!(up.requests(), 6);
    }

    fn the_tag_field_never_reaches_the_client(driver: &str) {
        let up = cacheable(&[("cache-control", "max-age=60"), ("surrogate-key", "product-1 catalog")]);
        let gw = gateway(driver, &up, 1, "tag_header = \"Surrogate-Key\"\n");
        let miss = get(&gw, "/t");
        let hit = get(&gw, "/t");
        assert_eq!(hit.header("cache-status"), Some("ringgate; hit"));
        assert_eq!(miss.header("surrogate-key"), None);
        assert_eq!(hit.header("surrogate-key"), None);
        assert_eq!(up.requests(), 1);
    }

    fn each_worker_keeps_its_own_cache_and_never_serves_a_wrong_entry(driver: &str) {
        let up = cacheable(&[("cache-control", "max-age=60")]);
        let gw = gateway(driver, &up, 2, "");
        // Over many connections both workers fill their own entry: at most 2 requests.
        for _ in 0..20 {
            assert_eq!(get(&gw, "/w").text().split(" #").next(), Some("/w"));
        }
        assert!(up.requests() <= 2, "{} upstream requests", up.requests());
        for _ in 0..20 {
            assert!(get(&gw, "/w2").text().starts_with("/w2 #"));
        }
        assert!(up.requests() <= 4, "{} upstream requests", up.requests());
    }

    fn clients_validators_are_answered_304_from_a_fresh_entry(driver: &str) {
        let up = cacheable(&[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        let gw = gateway(driver, &up, 1, "");
        get(&gw, "/c");
        let inm = request(&gw, "GET", "/c", "If-None-Match: \"v0\", W/\"v1\"\r\n");
        assert_eq!(inm.status, 304);
        assert_eq!(inm.header("etag"), Some("\"v1\""));
        assert!(inm.body.is_empty());
        let other = request(&gw, "GET", "/c", "If-None-Match: \"v2\"\r\n");
        assert_eq!((other.status, other.text()), (200, "/c #1".to_string()));
        let ims = request(&gw, "GET", "/c", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        assert_eq!(ims.status, 304);
        let older = request(&gw, "GET", "/c", "If-Modified-Since: Sat, 05 Nov 1994 08:49:37 GMT\r\n");
        assert_eq!(older.status, 200);
        assert_eq!(up.requests(), 1);
    }

    fn a_stale_entry_is_revalidated_and_refreshed_by_a_304(driver: &str) {
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
        let gw = gateway(driver, &up, 1, "");
        assert_eq!(get(&gw, "/r").text(), "/r #1");
        let revalidated = get(&gw, "/r");
        assert_eq!(revalidated.status, 200);
        assert_eq!(revalidated.text(), "/r #1", "the stored body answers");
        assert_eq!(revalidated.header("cache-status"), Some("ringgate; fwd=stale; fwd-status=304"));
        assert_eq!(revalidated.header("x-refreshed"), Some("2"), "headers updated from the 304");
        let sent = up.last_request().expect("conditional request");
        assert_eq!(sent.header("if-none-match"), Some("\"v1\""));
        // Now fresh for 60 s: a hit.
        let hit = get(&gw, "/r");
        assert_eq!(hit.header("cache-status"), Some("ringgate; hit"));
        assert_eq!(hit.header("x-refreshed"), Some("2"));
        assert_eq!(up.requests(), 2);
    }

    fn stale_if_error_serves_the_stored_response_when_the_upstream_fails(driver: &str) {
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
        let gw = gateway(driver, &up, 1, "");
        assert_eq!(get(&gw, "/e").text(), "/e #1");
        let on_503 = get(&gw, "/e");
        assert_eq!((on_503.status, on_503.text()), (200, "/e #1".to_string()));
        assert_eq!(on_503.header("cache-status"), Some("ringgate; hit; detail=stale-if-error"));
        let on_close = get(&gw, "/e");
        assert_eq!((on_close.status, on_close.text()), (200, "/e #1".to_string()));
        assert!(up.requests() >= 3);
    }

    fn http2_clients_are_served_by_the_same_cache(driver: &str) {
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
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream("origin", &[up.addr()])
            .routes(
                "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
                 upstream = \"origin\"\ncache = \"api\"\n",
            )
            .tables("[caches.api]\nmax_bytes = \"4MiB\"\n")
            .start();
        let miss = h2_get(&gw, "/h2");
        assert_eq!((miss.status, miss.text()), (200, "/h2 #1".to_string()));
        assert_eq!(miss.header("cache-status"), Some("ringgate; fwd=uri-miss; stored"));
        let hit = h2_get(&gw, "/h2");
        assert_eq!(hit.text(), "/h2 #1");
        assert_eq!(hit.header("cache-status"), Some("ringgate; hit"));
        // HTTP/1.1 with the same host finds the entry the h2 stream stored.
        let mut raw = Raw::connect(gw.addr());
        raw.send(format!("GET /h2 HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr()));
        assert_eq!(raw.read_response().text(), "/h2 #1");
        // A body past the inline size is written as the entry's shared bytes.
        let large = h2_get(&gw, "/large");
        assert_eq!(large.body.len(), 300_000);
        let large_hit = h2_get(&gw, "/large");
        assert_eq!(large_hit.header("cache-status"), Some("ringgate; hit"));
        assert_eq!(large_hit.body, large.body);
        let mut raw = Raw::connect(gw.addr());
        raw.send(format!("GET /large HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr()));
        assert_eq!(raw.read_response().body, large.body);
        assert_eq!(up.requests(), 2);
    }

    fn gateway_errors_on_a_cached_route_carry_cache_status(driver: &str) {
        let gw = GatewayConfig::new(driver)
            .upstream("origin", &[common::upstream::refused_addr()])
            .routes(
                "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
                 upstream = \"origin\"\ncache = \"api\"\n",
            )
            .tables("[caches.api]\nmax_bytes = \"1MiB\"\n")
            .start();
        let r = get(&gw, "/down");
        assert_eq!(r.status, 502);
        assert_eq!(r.header("cache-status"), Some("ringgate; fwd=uri-miss; detail=upstream-error"));
    }

    fn a_refused_request_never_gets_a_cached_answer(driver: &str) {
        let up = cacheable(&[("cache-control", "public, max-age=600")]);
        let gw = GatewayConfig::new(driver)
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
        let ok = request(&gw, "GET", "/p", "X-Api-Key: k-alice-0123456789abcdef\r\n");
        assert_eq!(ok.status, 200);
        assert_eq!(request(&gw, "GET", "/p", "X-Api-Key: k-alice-0123456789abcdef\r\n").header("cache-status"), Some("ringgate; hit"));
        // The policies run before the lookup: no key, no cached answer.
        let refused = get(&gw, "/p");
        assert_eq!(refused.status, 401);
        assert_eq!(refused.header("cache-status"), Some("ringgate; fwd=bypass"));
        assert!(!refused.text().contains("/p #1"));
        assert_eq!(up.requests(), 1);
    }

    fn stale_while_revalidate_serves_at_once_and_refreshes_once_in_the_background(driver: &str) {
        let up = backend(|r, n| {
            if n == 1 {
                return numbered(r, n, &[("cache-control", "max-age=10, stale-while-revalidate=600"), ("age", "100"), ("etag", "\"v1\"")]);
            }
            numbered(r, n, &[("cache-control", "max-age=60"), ("etag", "\"v2\"")])
        });
        let gw = gateway(driver, &up, 1, "");
        assert_eq!(get(&gw, "/s").text(), "/s #1");
        let stale = get(&gw, "/s");
        assert_eq!(stale.text(), "/s #1", "served stale at once");
        assert_eq!(stale.header("cache-status"), Some("ringgate; hit; detail=stale-while-revalidate"));
        up.wait_for_requests(2);
        let refresh = up.last_request().expect("refresh");
        assert_eq!(refresh.header("if-none-match"), Some("\"v1\""));
        // The refreshed entry replaces the stale one (the refresh stores it on the worker).
        common::wait_until("the refreshed entry", std::time::Duration::from_secs(5), || {
            get(&gw, "/s").text() == "/s #2"
        });
        assert_eq!(get(&gw, "/s").header("cache-status"), Some("ringgate; hit"));
        assert_eq!(up.requests(), 2, "one background refresh");
    }

    fn concurrent_misses_for_one_key_go_upstream_once_per_worker(driver: &str) {
        for workers in [1, 2] {
            // The first answer takes a while: every other request arrives while it is in flight.
            let up = backend(|r, n| {
                let mut h = numbered(r, n, &[("cache-control", "max-age=60")]);
                if let Handled::Respond { delay, .. } = &mut h {
                    *delay = std::time::Duration::from_millis(if n <= 2 { 500 } else { 0 });
                }
                h
            });
            let gw = gateway(driver, &up, workers, "");
            let bodies: Vec<String> = std::thread::scope(|s| {
                let clients: Vec<_> = (0..100).map(|_| s.spawn(|| get(&gw, "/cold").text())).collect();
                clients.into_iter().map(|c| c.join().expect("client")).collect()
            });
            assert!(
                up.requests() <= workers,
                "{workers} worker(s): {} upstream requests for 100 concurrent misses",
                up.requests()
            );
            assert!(bodies.iter().all(|b| b.starts_with("/cold #")), "{bodies:?}");
            if workers == 1 {
                assert!(bodies.iter().all(|b| b == "/cold #1"));
            }
        }
    }

    fn a_coalesced_wait_is_bounded(driver: &str) {
        let up = backend(|r, n| {
            let mut h = numbered(r, n, &[("cache-control", "max-age=60")]);
            if let Handled::Respond { delay, .. } = &mut h {
                *delay = std::time::Duration::from_millis(if n == 1 { 3000 } else { 0 });
            }
            h
        });
        let gw = gateway(driver, &up, 1, "coalesce_wait = \"100ms\"\n");
        std::thread::scope(|s| {
            let slow = s.spawn(|| get(&gw, "/slow").text());
            up.wait_for_requests(1);
            let started = std::time::Instant::now();
            let second = get(&gw, "/slow");
            assert_eq!(second.text(), "/slow #2", "went upstream itself after the wait");
            assert!(started.elapsed() < std::time::Duration::from_millis(2500));
            assert_eq!(slow.join().expect("slow").as_str(), "/slow #1");
        });
    }

    fn an_unsafe_request_invalidates_its_url_on_every_worker(driver: &str) {
        let up = cacheable(&[("cache-control", "max-age=600")]);
        let gw = gateway(driver, &up, 2, "");
        // Many connections: both workers store /items/1.
        for _ in 0..20 {
            assert!(get(&gw, "/items/1").text().starts_with("/items/1 #"));
        }
        let filled = up.requests();
        let post = request(&gw, "PUT", "/items/1", "Content-Length: 0\r\n");
        assert_eq!(post.status, 200);
        let changed = filled + 1;
        // Every worker drops it: whichever worker a connection lands on fetches it anew.
        common::wait_until("every worker dropped /items/1", common::IO_TIMEOUT, || {
            (0..20).all(|_| {
                let n: usize = get(&gw, "/items/1")
                    .text()
                    .rsplit('#')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                n > changed
            })
        });
        assert!(up.requests() <= changed + 2, "{} upstream requests", up.requests());
    }

    fn location_on_the_same_host_is_invalidated_and_errors_invalidate_nothing(driver: &str) {
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
        let gw = gateway(driver, &up, 1, "");
        for path in ["/items/7", "/items/list", "/items/9", "/items/8"] {
            get(&gw, path);
        }
        assert_eq!(up.requests(), 4);
        let created = request(&gw, "POST", "/items", "Content-Length: 0\r\n");
        assert_eq!(created.status, 201);
        assert_eq!(get(&gw, "/items/7").text(), "/items/7 #6", "Location invalidated");
        assert_eq!(get(&gw, "/items/list").text(), "/items/list #7", "Content-Location invalidated");
        assert_eq!(get(&gw, "/items/9").text(), "/items/9 #3");
        // An error answer invalidates nothing; a Location on another host is not followed.
        assert_eq!(request(&gw, "POST", "/items/8", "Content-Length: 0\r\n").status, 500);
        assert_eq!(get(&gw, "/items/8").text(), "/items/8 #4");
        assert_eq!(request(&gw, "DELETE", "/items/8", "").status, 204);
        assert_eq!(get(&gw, "/items/8").text(), "/items/8 #10");
        assert_eq!(get(&gw, "/items/9").text(), "/items/9 #3");
    }

    fn operator_purges_by_url_prefix_and_tag_on_every_worker(driver: &str) {
        use ringgate::cache::Purge;
        let up = backend(|r, n| {
            let tags = if r.target.starts_with("/catalog/") { "catalog" } else { "other" };
            numbered(r, n, &[("cache-control", "max-age=600"), ("surrogate-key", tags), ("vary", "X-V")])
        });
        let gw = gateway(driver, &up, 2, "tag_header = \"Surrogate-Key\"\n");
        let fill = |path: &str| {
            // Two variants on (very likely) both workers.
            for i in 0..12 {
                request(&gw, "GET", path, &format!("X-V: {}\r\n", i % 2));
            }
        };
        for path in ["/catalog/1", "/catalog/2", "/about", "/x?q=1"] {
            fill(path);
        }
        let per_url = |gone: usize| (2..=4).contains(&gone);
        let url = gw.purge(Purge::url("http://h.example/x?q=1").expect("url"));
        assert!(per_url(url), "{url} entries for one URL's 2 variants on 2 workers");
        assert_eq!(gw.purge(Purge::url("http://h.example/x?q=1").expect("url")), 0);
        let prefix = gw.purge(Purge::prefix("/catalog/", Some("h.example")).expect("prefix"));
        assert!((4..=8).contains(&prefix), "{prefix}");
        let tag = gw.purge(Purge::tag("other").expect("tag"));
        assert!(per_url(tag), "{tag}");
        assert_eq!(gw.purge(Purge::tag("other").expect("tag")), 0);
        let before = up.requests();
        get(&gw, "/about");
        assert_eq!(up.requests(), before + 1, "purged entries are gone");
    }

    fn a_reload_keeps_a_cache_whose_key_shape_survives(driver: &str) {
        let up = cacheable(&[("cache-control", "max-age=600")]);
        let config = |cache: &str| {
            GatewayConfig::new(driver)
                .upstream("origin", &[up.addr()])
                .routes(
                    "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
                     upstream = \"origin\"\ncache = \"api\"\n",
                )
                .tables(&format!("[caches.api]\n{cache}"))
        };
        let gw = config("max_bytes = \"1MiB\"\n").start();
        assert_eq!(get(&gw, "/r?a=1").text(), "/r?a=1 #1");
        // Another budget, same key shape: the entries stay.
        gw.store(&config("max_bytes = \"2MiB\"\n"));
        assert_eq!(get(&gw, "/r?a=1").header("cache-status"), Some("ringgate; hit"));
        // Another key shape: the cache starts empty.
        gw.store(&config("max_bytes = \"2MiB\"\nkey = { query = \"none\" }\n"));
        assert_eq!(get(&gw, "/r?a=1").text(), "/r?a=1 #2");
        assert_eq!(get(&gw, "/r?a=2").text(), "/r?a=1 #2", "the query is no longer in the key");
    }

    fn metrics_count_per_cache_and_per_route(driver: &str) {
        let up = backend(|r, n| {
            let fields: &[(&str, &str)] = if r.target == "/old" {
                &[("cache-control", "max-age=1"), ("age", "50")]
            } else {
                &[("cache-control", "max-age=600")]
            };
            numbered(r, n, fields)
        });
        let gw = GatewayConfig::new(driver)
            .merge_interval("100ms")
            .upstream("origin", &[up.addr()])
            .routes(
                "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
                 upstream = \"origin\"\ncache = \"api\"\n",
            )
            .tables("[caches.api]\nmax_bytes = \"1MiB\"\n")
            .start();
        get(&gw, "/m");
        get(&gw, "/m");
        get(&gw, "/m");
        get(&gw, "/old");
        request(&gw, "GET", "/old", "Cache-Control: max-stale=1000\r\n");
        request(&gw, "POST", "/m", "Content-Length: 0\r\n");
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
        let agg = gw.metrics_until(|agg| {
            let t = text(agg);
            expected.iter().all(|line| t.contains(line))
        });
        assert!(text(&agg).contains("ringgate_cache_bytes{cache=\"api\"}"));
    }
}
