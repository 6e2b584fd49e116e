//! `kind = "transform"` through the running gateway, under both drivers: request headers
//! and query (the fixed order remove, rename, set, add, append; templates), response headers,
//! response JSON filtering (plain, gzip-coded upstream body, then compressed by a `compress`
//! policy), request JSON bodies with their exact `Content-Length`, and the configurable
//! answers to bodies that cannot be transformed (each `on_*` option, requests and
//! responses), HTTP/2 clients, `{consumer}` from an API key, br and zstd coded upstream
//! bodies, a cached route, and the fixed order of operations on one header and one JSON
//! field. The origin records the exact bytes it received; the client reads the exact bytes
//! the gateway sent.
mod common;

use std::io::{Read, Write};

use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::h2 as h2c;
use common::upstream::{lines_named, split_request as split, RecordingOrigin as Origin};

/// A route `/users/{id}` (and `/` for the rest) with the transform `keys` (and more
/// policies in `extra`, listed after it).
fn gateway(driver: &str, origin: &Origin, keys: &str, extra: &str) -> Gateway {
    GatewayConfig::new(driver)
        .upstream("api", &[origin.addr])
        .routes(&format!(
            "[[routes]]\nname = \"users\"\nmatch = {{ path = \"/users/{{id}}\" }}\n\
             upstream = \"api\"\npolicies = [\"t\"{extra}]\n"
        ))
        .tables(&format!("[policies.t]\nkind = \"transform\"\n{keys}\n"))
        .start()
}

fn send(gw: &Gateway, request: &str, body: &[u8]) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(request);
    raw.send(body);
    raw.read_response()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut w = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 20);
    w.write_all(data).expect("br");
    w.into_inner()
}

/// `GET path` on a fresh connection.
fn get(gw: &Gateway, path: &str) -> RawResponse {
    send(
        gw,
        &format!("GET {path} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n"),
        b"",
    )
}

/// `Cache-Status` of a response.
fn cache_status(r: &RawResponse) -> &str {
    r.header("cache-status").unwrap_or_default()
}

/// A JSON document over `max_body_bytes = 64` with a field payload filtering removes.
fn big_user() -> Vec<u8> {
    format!(r#"{{"password":"hunter2","pad":"{}"}}"#, "a".repeat(100)).into_bytes()
}

const API_KEY: &str = "alice-key-0123456789";

const FILTER: &str =
    "[policies.t.response]\nremove_json = [\"password\", \"ssn\", \"internal.*\"]\n\
                      rename_json = { \"name\" = \"login\" }\n";

const USER: &[u8] = br#"{"name":"ann","password":"hunter2","ssn":"123","internal":{"a":1},"id":7}"#;
const FILTERED: &[u8] = br#"{"login":"ann","internal":{},"id":7}"#;

driver_tests! {
    // Request headers in the fixed order (remove, rename, set, add, append) with templates,
    // the query rewritten, response headers edited; no body is held (Content-Length as sent).
    fn headers_and_query_both_sides(driver: &str) {
        let origin = Origin::answering("Server: origin\r\nX-Internal: 1\r\nX-Keep: k\r\nContent-Type: text/plain\r\n", b"hello");
        let keys = "[policies.t.request]\n\
                    remove_headers = [\"X-Debug\"]\n\
                    rename_headers = { \"X-Old\" = \"X-New\" }\n\
                    set_headers = { \"X-New\" = \"set-{id}\", \"X-User\" = \"{header.x-name}@{client_ip} on {route}\" }\n\
                    add_headers = { \"X-New\" = \"skipped\", \"X-Added\" = \"a\" }\n\
                    append_headers = { \"X-New\" = \"appended\" }\n\
                    remove_query = [\"debug\"]\n\
                    rename_query = { q = \"search\" }\n\
                    set_query = { v = \"{id}\" }\n\
                    [policies.t.response]\n\
                    remove_headers = [\"Server\", \"X-Internal\"]\n\
                    rename_headers = { \"X-Keep\" = \"X-Kept\" }\n\
                    set_headers = { \"X-Route\" = \"{route}\" }\n";
        let gw = gateway(driver, &origin, keys, "");
        let response = send(
            &gw,
            "POST /users/42?q=rust&debug=1&v=0 HTTP/1.1\r\nHost: api.test\r\nX-Debug: on\r\n\
             X-Old: o1\r\nX-Old: o2\r\nX-Name: ann\r\nContent-Type: text/plain\r\n\
             Content-Length: 4\r\nConnection: close\r\n\r\n",
            b"body",
        );
        let (head, body) = split(&origin.next_seen());
        assert!(head.starts_with("POST /users/42?search=rust&v=42 HTTP/1.1\r\n"), "{head}");
        assert_eq!(
            lines_named(&head, &["x-debug", "x-old", "x-new", "x-user", "x-added", "content-length"]),
            vec![
                "X-New: set-42",
                "X-User: ann@127.0.0.1 on users",
                "X-Added: a",
                "X-New: appended",
                "Content-Length: 4",
            ],
            "{head}"
        );
        assert_eq!(body, b"body");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"hello");
        assert_eq!(response.header("server"), None);
        assert_eq!(response.header("x-internal"), None);
        assert_eq!(response.header("x-keep"), None);
        assert_eq!(response.header("x-kept"), Some("k"));
        assert_eq!(response.header("x-route"), Some("users"));
        assert_eq!(response.header("content-length"), Some("5"));
    }

    // Payload filtering: the client gets exactly the filtered document with its length.
    fn response_json_is_filtered(driver: &str) {
        let origin = Origin::answering("Content-Type: application/json\r\nETag: \"v1\"\r\n", USER);
        let gw = gateway(driver, &origin, FILTER, "");
        let response = send(&gw, "GET /users/7 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n", b"");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, FILTERED);
        assert_eq!(response.header("content-length"), Some(FILTERED.len().to_string().as_str()));
        assert_eq!(response.header("etag"), None, "the body changed: its validator goes");
        // HEAD: no body to filter, nothing held.
        let head = {
            let mut raw = Raw::connect(gw.addr());
            raw.send("HEAD /users/7 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n");
            raw.read_response_to("HEAD")
        };
        assert_eq!(head.status, 200);
    }

    // A gzip-coded upstream body is decoded before the JSON is filtered; the client gets it
    // decoded, filtered, with its exact length and no Content-Encoding.
    fn gzip_upstream_body_is_decoded_then_filtered(driver: &str) {
        let origin = Origin::answering(
            "Content-Type: application/json\r\nContent-Encoding: gzip\r\n",
            &gzip(USER),
        );
        let gw = gateway(driver, &origin, FILTER, "");
        let response = send(
            &gw,
            "GET /users/7 HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
            b"",
        );
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-encoding"), None);
        assert_eq!(response.body, FILTERED);
        assert_eq!(response.header("content-length"), Some(FILTERED.len().to_string().as_str()));
    }

    // transform then compress: the client decodes exactly the filtered document.
    fn transform_then_compress(driver: &str) {
        let origin = Origin::answering(
            "Content-Type: application/json\r\nContent-Encoding: gzip\r\n",
            &gzip(USER),
        );
        let gw = GatewayConfig::new(driver)
            .upstream("api", &[origin.addr])
            .routes(
                "[[routes]]\nname = \"users\"\nmatch = { path = \"/users/{id}\" }\n\
                 upstream = \"api\"\npolicies = [\"z\", \"t\"]\n",
            )
            .tables(&format!(
                "[policies.z]\nkind = \"compress\"\nmin_bytes = 0\n\
                 [policies.t]\nkind = \"transform\"\n{FILTER}\n"
            ))
            .start();
        let response = send(
            &gw,
            "GET /users/7 HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
            b"",
        );
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-encoding"), Some("gzip"));
        assert_eq!(response.header("vary"), Some("Accept-Encoding"));
        assert_eq!(gunzip(&response.body), FILTERED);
    }

    // A JSON request body is transformed and forwarded with its exact Content-Length.
    fn request_json_is_transformed(driver: &str) {
        let origin = Origin::answering("Content-Type: text/plain\r\n", b"ok");
        let keys = "[policies.t.request]\nremove_json = [\"debug\"]\n\
                    rename_json = { \"user.name\" = \"login\" }\n\
                    set_json = { \"meta.id\" = \"{id}\", \"meta.n\" = 3 }\n";
        let gw = gateway(driver, &origin, keys, "");
        let body = br#"{"debug":true,"user":{"name":"ann"}}"#;
        let response = send(
            &gw,
            &format!(
                "POST /users/9 HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ),
            body,
        );
        assert_eq!(response.status, 200);
        let (head, got) = split(&origin.next_seen());
        let expected = br#"{"user":{"login":"ann"},"meta":{"id":"9","n":3}}"#;
        assert_eq!(got, expected);
        assert_eq!(
            lines_named(&head, &["content-length", "transfer-encoding"]),
            vec![format!("Content-Length: {}", expected.len())]
        );
        // Chunked in, exact length out.
        let response = send(
            &gw,
            "POST /users/9 HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            format!("{:x}\r\n{}\r\n0\r\n\r\n", body.len(), String::from_utf8_lossy(body)).as_bytes(),
        );
        assert_eq!(response.status, 200);
        let (head, got) = split(&origin.next_seen());
        assert_eq!(got, expected);
        assert_eq!(
            lines_named(&head, &["content-length", "transfer-encoding"]),
            vec![format!("Content-Length: {}", expected.len())]
        );
    }

    // Malformed JSON: 400 problem by default, passed unchanged with on_malformed = "pass";
    // non-JSON passes by default and is 415 with on_non_json = "refuse"; an oversized
    // body passes unchanged by default and is 413 with on_oversize = "refuse".
    fn bodies_that_cannot_be_transformed(driver: &str) {
        let origin = Origin::answering("Content-Type: text/plain\r\n", b"ok");
        let ops = "[policies.t.request]\nremove_json = [\"x\"]\n";
        let post = |gw: &Gateway, content_type: &str, body: &[u8]| {
            send(
                gw,
                &format!(
                    "POST /users/1 HTTP/1.1\r\nHost: api.test\r\nContent-Type: {content_type}\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ),
                body,
            )
        };
        let gw = gateway(driver, &origin, &format!("max_body_bytes = 64\n{ops}"), "");
        let refused = post(&gw, "application/json", b"{\"x\": ");
        assert_eq!(refused.status, 400);
        assert!(refused.text().contains("not well-formed JSON"), "{}", refused.text());
        let passed = post(&gw, "text/plain", b"{\"x\": 1}");
        assert_eq!(passed.status, 200);
        assert_eq!(split(&origin.next_seen()).1, b"{\"x\": 1}");
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(100));
        assert_eq!(post(&gw, "application/json", big.as_bytes()).status, 200);
        assert_eq!(split(&origin.next_seen()).1, big.as_bytes());
        drop(gw);

        let gw = gateway(
            driver,
            &origin,
            &format!("max_body_bytes = 64\non_malformed = \"pass\"\non_non_json = \"refuse\"\non_oversize = \"refuse\"\n{ops}"),
            "",
        );
        assert_eq!(post(&gw, "application/json", b"{\"x\": ").status, 200);
        assert_eq!(split(&origin.next_seen()).1, b"{\"x\": ");
        assert_eq!(post(&gw, "text/plain", b"{}").status, 415);
        assert_eq!(post(&gw, "application/json", big.as_bytes()).status, 413);
    }

    // A response the policy refuses to pass untransformed is a 502, never the raw body.
    fn refused_responses_are_502(driver: &str) {
        let origin = Origin::answering("Content-Type: application/json\r\n", b"{\"password\": ");
        let gw = gateway(driver, &origin, FILTER, "");
        let response = send(&gw, "GET /users/7 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n", b"");
        assert_eq!(response.status, 502);
        assert!(!response.text().contains("password"));
    }

    // An HTTP/2 (h2c) client on a transformed route: the upstream gets the request headers,
    // query and JSON body transformed with its exact Content-Length; the client gets the
    // filtered response document with its length.
    fn http2_client_on_a_transformed_route(driver: &str) {
        let origin = Origin::answering("Content-Type: application/json\r\nServer: origin\r\n", USER);
        let keys = format!(
            "[policies.t.request]\nremove_headers = [\"X-Debug\"]\n\
             rename_headers = {{ \"X-Old\" = \"X-New\" }}\n\
             set_headers = {{ \"X-User\" = \"{{header.x-name}} on {{route}}/{{id}}\" }}\n\
             remove_query = [\"debug\"]\nrename_query = {{ q = \"search\" }}\n\
             remove_json = [\"debug\"]\nset_json = {{ \"meta.id\" = \"{{id}}\" }}\n\
             [policies.t.response]\nremove_headers = [\"Server\"]\n{}",
            FILTER.replace("[policies.t.response]\n", "")
        );
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream("api", &[origin.addr])
            .routes(
                "[[routes]]\nname = \"users\"\nmatch = { path = \"/users/{id}\" }\n\
                 upstream = \"api\"\npolicies = [\"t\"]\n",
            )
            .tables(&format!("[policies.t]\nkind = \"transform\"\n{keys}\n"))
            .start();
        let authority = gw.addr().to_string();
        let response = h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            let request = http::Request::builder()
                .method("POST")
                .uri(format!("http://{authority}/users/42?q=rust&debug=1"))
                .header("x-debug", "on")
                .header("x-old", "o")
                .header("x-name", "ann")
                .header("content-type", "application/json")
                .body(())
                .expect("request");
            let body = br#"{"debug":true,"name":"ann"}"#.to_vec();
            h2c::exchange(&client, request, Some(body)).await.expect("exchange")
        });
        let (head, body) = split(&origin.next_seen());
        assert!(head.starts_with("POST /users/42?search=rust HTTP/1.1\r\n"), "{head}");
        let expected = br#"{"name":"ann","meta":{"id":"42"}}"#;
        assert_eq!(body, expected);
        let lines: Vec<String> = lines_named(
            &head,
            &["x-debug", "x-old", "x-new", "x-user", "content-length", "transfer-encoding"],
        )
        .iter()
        .map(|l| l.to_ascii_lowercase())
        .collect();
        assert_eq!(
            lines,
            vec![
                "x-new: o".to_string(),
                "x-user: ann on users/42".to_string(),
                format!("content-length: {}", expected.len()),
            ],
            "{head}"
        );
        assert_eq!(response.status, 200);
        assert_eq!(response.body, FILTERED);
        assert_eq!(response.header("content-length"), Some(FILTERED.len().to_string().as_str()));
        assert_eq!(response.header("server"), None);
    }

    // `{consumer}` is the consumer an `api_key` policy authenticated, in request headers,
    // request JSON and response headers; a route without authentication has no consumer: a
    // header `set` removes the field (a client cannot spoof it), the JSON `set` is skipped.
    fn consumer_template_from_an_api_key(driver: &str) {
        let origin = Origin::answering("Content-Type: text/plain\r\n", b"ok");
        let gw = GatewayConfig::new(driver)
            .upstream("api", &[origin.addr])
            .routes(
                "[[routes]]\nname = \"keyed\"\nmatch = { path = \"/keyed\" }\n\
                 upstream = \"api\"\npolicies = [\"key\", \"t\"]\n\
                 [[routes]]\nname = \"open\"\nmatch = { path = \"/open\" }\n\
                 upstream = \"api\"\npolicies = [\"t\"]\n",
            )
            .tables(&format!(
                "[policies.key]\nkind = \"api_key\"\n\
                 [policies.t]\nkind = \"transform\"\n\
                 [policies.t.request]\nset_headers = {{ \"X-Consumer-Name\" = \"consumer={{consumer}}\" }}\n\
                 set_json = {{ \"by\" = \"{{consumer}}\" }}\n\
                 [policies.t.response]\nset_headers = {{ \"X-Served-To\" = \"{{consumer}}\" }}\n\
                 [[consumers]]\nname = \"alice\"\napi_keys = [\"{API_KEY}\"]\n"
            ))
            .start();
        let body = br#"{"a":1}"#;
        let post = |path: &str, key: &str| {
            send(
                &gw,
                &format!(
                    "POST {path} HTTP/1.1\r\nHost: api.test\r\n{key}Content-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ),
                body,
            )
        };
        let response = post("/keyed", &format!("X-Api-Key: {API_KEY}\r\n"));
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("x-served-to"), Some("alice"));
        let (head, got) = split(&origin.next_seen());
        assert_eq!(got, br#"{"a":1,"by":"alice"}"#);
        assert_eq!(
            lines_named(&head, &["x-consumer-name", "x-consumer"]),
            vec!["X-Consumer: alice", "X-Consumer-Name: consumer=alice"],
            "{head}"
        );
        assert_eq!(post("/keyed", "").status, 401);
        // No consumer: the header the gateway sets is removed, even when the client sent
        // one of its own; the JSON member is not written.
        let response = post("/open", "X-Consumer-Name: consumer=admin\r\n");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-served-to"), None);
        let (head, got) = split(&origin.next_seen());
        assert_eq!(got, body);
        assert_eq!(lines_named(&head, &["x-consumer-name", "x-consumer"]), Vec::<String>::new());
        assert!(!origin.has_unseen(), "the refused request never reached the origin");
    }

    // br and zstd coded upstream bodies are decoded before the JSON is filtered.
    fn br_and_zstd_upstream_bodies_are_decoded_then_filtered(driver: &str) {
        for (coding, packed) in [
            ("br", brotli(USER)),
            ("zstd", zstd::encode_all(USER, 3).expect("zstd")),
        ] {
            let origin = Origin::answering(
                &format!("Content-Type: application/json\r\nContent-Encoding: {coding}\r\n"),
                &packed,
            );
            let gw = gateway(driver, &origin, FILTER, "");
            let response = send(
                &gw,
                "GET /users/7 HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: br, zstd\r\nConnection: close\r\n\r\n",
                b"",
            );
            assert_eq!(response.status, 200, "{coding}");
            assert_eq!(response.header("content-encoding"), None, "{coding}");
            assert_eq!(response.body, FILTERED, "{coding}");
            assert_eq!(
                response.header("content-length"),
                Some(FILTERED.len().to_string().as_str()),
                "{coding}"
            );
        }
    }

    // A response body over max_body_bytes, known by its Content-Length, found while
    // reading a chunked body, or found after decoding a gzip body: passed unchanged (the
    // coded one decoded) by default, a 502 without the body with on_oversize = "refuse".
    fn oversized_response_bodies(driver: &str) {
        let big = big_user();
        let json = "Content-Type: application/json\r\n";
        let origins = || {
            [
                ("length", Origin::answering(json, &big)),
                ("chunked", Origin::answering_chunked(json, &big, 16)),
                (
                    "gzip",
                    Origin::answering(&format!("{json}Content-Encoding: gzip\r\n"), &gzip(&big)),
                ),
            ]
        };
        for (framing, origin) in origins() {
            let gw = gateway(driver, &origin, &format!("max_body_bytes = 64\n{FILTER}"), "");
            let response = get(&gw, "/users/7");
            assert_eq!(response.status, 200, "{framing}");
            assert_eq!(response.body, big, "{framing}: passed unchanged");
            assert_eq!(response.header("content-encoding"), None, "{framing}");
        }
        for (framing, origin) in origins() {
            let keys = format!("max_body_bytes = 64\non_oversize = \"refuse\"\n{FILTER}");
            let gw = gateway(driver, &origin, &keys, "");
            let response = get(&gw, "/users/7");
            assert_eq!(response.status, 502, "{framing}");
            assert!(!response.text().contains("hunter2"), "{framing}");
        }
    }

    // Response bodies the JSON operations cannot apply to, for each option: malformed JSON
    // is a 502 by default and passes unchanged with on_malformed = "pass"; a body that is not
    // JSON (another Content-Type, none, or a coding the gateway cannot decode) passes
    // unchanged by default and is a 502 with on_non_json = "refuse".
    fn malformed_and_non_json_response_bodies(driver: &str) {
        let malformed: &[u8] = br#"{"password": "hunter2""#;
        let origin = Origin::answering("Content-Type: application/json\r\n", malformed);
        let gw = gateway(driver, &origin, FILTER, "");
        let response = get(&gw, "/users/7");
        assert_eq!(response.status, 502);
        assert!(!response.text().contains("hunter2"));
        let gw = gateway(driver, &origin, &format!("on_malformed = \"pass\"\n{FILTER}"), "");
        let response = get(&gw, "/users/7");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, malformed);

        let non_json = [
            ("text/plain", Origin::answering("Content-Type: text/plain\r\n", USER)),
            ("no Content-Type", Origin::answering("", USER)),
            (
                "compress",
                Origin::answering(
                    "Content-Type: application/json\r\nContent-Encoding: compress\r\n",
                    USER,
                ),
            ),
        ];
        for (what, origin) in &non_json {
            let gw = gateway(driver, origin, FILTER, "");
            let response = get(&gw, "/users/7");
            assert_eq!(response.status, 200, "{what}");
            assert_eq!(response.body, USER, "{what}: passed unchanged");
            assert_eq!(
                response.header("content-length"),
                Some(USER.len().to_string().as_str()),
                "{what}"
            );
            let gw = gateway(driver, origin, &format!("on_non_json = \"refuse\"\n{FILTER}"), "");
            let response = get(&gw, "/users/7");
            assert_eq!(response.status, 502, "{what}");
            assert!(!response.text().contains("hunter2"), "{what}");
        }
    }

    // With the route's cache (docs/caching.md): a response whose body is transformed is not
    // stored (each request asks the origin and is filtered); a header-only transform's
    // response is stored with its edits, and a hit is the edited response without asking
    // the origin.
    fn transform_and_cache(driver: &str) {
        let cached = |origin: &Origin, keys: &str| {
            GatewayConfig::new(driver)
                .workers(1)
                .upstream("api", &[origin.addr])
                .routes(
                    "[[routes]]\nname = \"users\"\nmatch = { path = \"/users/{id}\" }\n\
                     upstream = \"api\"\npolicies = [\"t\"]\ncache = \"c\"\n",
                )
                .tables(&format!(
                    "[policies.t]\nkind = \"transform\"\n{keys}\n\
                     [caches.c]\nmax_bytes = \"1MiB\"\n"
                ))
                .start()
        };
        let fields = "Content-Type: application/json\r\nCache-Control: max-age=60\r\nServer: origin\r\n";
        let origin = Origin::answering(fields, USER);
        let gw = cached(&origin, FILTER);
        for _ in 0..2 {
            let response = get(&gw, "/users/7");
            assert_eq!(response.status, 200);
            assert_eq!(response.body, FILTERED);
            assert!(!cache_status(&response).contains("hit"), "{}", cache_status(&response));
            origin.next_seen();
        }

        let origin = Origin::answering(fields, USER);
        let keys = "[policies.t.response]\nremove_headers = [\"Server\"]\n\
                    set_headers = { \"X-Route\" = \"{route}\" }\n";
        let gw = cached(&origin, keys);
        let first = get(&gw, "/users/7");
        assert_eq!(first.status, 200);
        assert!(cache_status(&first).contains("stored"), "{}", cache_status(&first));
        origin.next_seen();
        let hit = get(&gw, "/users/7");
        assert_eq!(hit.status, 200);
        assert!(cache_status(&hit).contains("hit"), "{}", cache_status(&hit));
        assert_eq!(hit.body, USER);
        assert_eq!(hit.header("server"), None);
        assert_eq!(hit.header("x-route"), Some("users"));
        assert!(!origin.has_unseen(), "the hit did not ask the origin");
    }

    // The fixed order remove, rename, set, add, append on one header every operation
    // touches, and remove, rename, set on one JSON field.
    fn operations_run_in_the_documented_order(driver: &str) {
        let origin = Origin::answering(
            "Content-Type: application/json\r\n",
            br#"{"a":1,"b":{"x":2},"z":0}"#,
        );
        let keys = "[policies.t.request]\n\
                    remove_headers = [\"X-A\"]\n\
                    rename_headers = { \"X-B\" = \"X-A\" }\n\
                    set_headers = { \"X-A\" = \"set\" }\n\
                    add_headers = { \"X-A\" = \"added\", \"X-Other\" = \"ignored\" }\n\
                    append_headers = { \"X-A\" = \"appended\" }\n\
                    [policies.t.response]\n\
                    remove_json = [\"a\"]\n\
                    rename_json = { \"b\" = \"a\" }\n\
                    set_json = { \"a.y\" = 3 }\n";
        let gw = gateway(driver, &origin, keys, "");
        let touched = ["x-a", "x-b", "x-other"];
        // remove drops X-A: orig; rename turns X-B into X-A in X-B's place; set gives that
        // field its value; add finds X-A (and X-Other) present; append adds one more.
        let response = send(
            &gw,
            "GET /users/1 HTTP/1.1\r\nHost: api.test\r\nX-A: orig\r\nX-B: b\r\nX-Other: o\r\n\
             Connection: close\r\n\r\n",
            b"",
        );
        assert_eq!(response.status, 200);
        let (head, _) = split(&origin.next_seen());
        assert_eq!(
            lines_named(&head, &touched),
            vec!["X-A: set", "X-Other: o", "X-A: appended"],
            "{head}"
        );
        // JSON: `a` removed, `b` renamed `a` in its place, then `a.y` set inside it.
        assert_eq!(response.body, br#"{"a":{"x":2,"y":3},"z":0}"#);
        // Without X-B nothing is renamed: set appends X-A after the fields left.
        send(
            &gw,
            "GET /users/1 HTTP/1.1\r\nHost: api.test\r\nX-A: orig\r\nX-Other: o\r\n\
             Connection: close\r\n\r\n",
            b"",
        );
        let (head, _) = split(&origin.next_seen());
        assert_eq!(
            lines_named(&head, &touched),
            vec!["X-Other: o", "X-A: set", "X-A: appended"],
            "{head}"
        );
    }
}
