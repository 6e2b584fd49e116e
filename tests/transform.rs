//! `kind = "transform"` through the running gateway, under both drivers: request headers
//! and query (the fixed order remove, rename, set, add, append; templates), response headers,
//! response JSON filtering (plain, gzip-coded upstream body, then compressed by a `compress`
//! policy), request JSON bodies with their exact `Content-Length`, and the configurable
//! answers to bodies that cannot be transformed. The origin records the exact bytes it
//! received; the client reads the exact bytes the gateway sent.
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};

/// An origin that records the exact bytes of each request (head and `Content-Length` body)
/// and answers with `reply`, byte for byte.
struct Origin {
    addr: SocketAddr,
    seen: mpsc::Receiver<Vec<u8>>,
}

impl Origin {
    fn start(reply: Vec<u8>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, seen) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (tx, reply) = (tx.clone(), reply.clone());
                std::thread::spawn(move || serve(stream, &tx, &reply));
            }
        });
        Origin { addr, seen }
    }

    /// A `200` with `fields` (each ending in CRLF) and `body` framed by its length.
    fn answering(fields: &str, body: &[u8]) -> Origin {
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\n{fields}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(body);
        Origin::start(reply)
    }

    /// The exact bytes of the next request the origin received.
    fn next_seen(&self) -> Vec<u8> {
        self.seen
            .recv_timeout(Duration::from_secs(10))
            .expect("the origin received a request")
    }
}

fn serve(mut stream: TcpStream, tx: &mpsc::Sender<Vec<u8>>, reply: &[u8]) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if got.len() < end + 4 + len {
            continue;
        }
        let request: Vec<u8> = got.drain(..end + 4 + len).collect();
        let _ = tx.send(request);
        if stream.write_all(reply).is_err() {
            return;
        }
    }
}

/// The head lines of a request as text, and its body.
fn split(request: &[u8]) -> (String, Vec<u8>) {
    let end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    (
        String::from_utf8_lossy(&request[..end + 2]).into_owned(),
        request[end + 4..].to_vec(),
    )
}

/// Header lines `name: value` of `head` whose name is one of `names`, in order, as written.
fn lines_named(head: &str, names: &[&str]) -> Vec<String> {
    head.split("\r\n")
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| names.iter().any(|w| w.eq_ignore_ascii_case(n)))
        })
        .map(str::to_string)
        .collect()
}

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
}
