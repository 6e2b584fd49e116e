//! `kind = "compress"` through the running gateway, under both drivers: every algorithm
//! round-trips the upstream's exact bytes (Content-Length, chunked and close-delimited
//! upstream bodies), a 1 MiB body streams through before the upstream finished, each
//! never-compress rule, the Vary merge, weak ETags, q-value negotiation, HTTP/1.0 and
//! HTTP/2 clients, and request decompression (exact bytes upstream, 413 for a bomb, 415).
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::h2 as h2c;

/// How a test origin frames its response body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    /// Chunks of this many bytes.
    Chunked(usize),
    /// Delimited by closing the connection.
    Close,
}

/// A test origin's response.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    framing: Framing,
}

fn reply(content_type: &str, body: Vec<u8>) -> Reply {
    Reply {
        status: 200,
        headers: vec![("Content-Type".into(), content_type.into())],
        body,
        framing: Framing::Length,
    }
}

impl Reply {
    fn with(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn framed(mut self, framing: Framing) -> Reply {
        self.framing = framing;
        self
    }

    fn status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }
}

/// A request as the origin received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Answer = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// An HTTP/1.1 origin on real sockets: answers each request with `answer`, reports what it
/// received; `pause`, when set, is waited for after half of each body was sent (one test
/// request per origin: the test sends on it once the client saw the first bytes).
struct Origin {
    addr: SocketAddr,
    seen: mpsc::Receiver<Seen>,
}

impl Origin {
    fn start(answer: Answer, pause: Option<crossbeam_channel::Receiver<()>>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, seen) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (tx, answer, pause) = (tx.clone(), Arc::clone(&answer), pause.clone());
                std::thread::spawn(move || serve(stream, &tx, &*answer, pause));
            }
        });
        Origin { addr, seen }
    }

    fn answering(f: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Origin {
        Origin::start(Arc::new(f), None)
    }

    fn always(r: Reply) -> Origin {
        Origin::answering(move |_| r.clone())
    }

    fn next_seen(&self) -> Seen {
        self.seen
            .recv_timeout(Duration::from_secs(10))
            .expect("the origin received a request")
    }
}

fn serve(
    stream: TcpStream,
    tx: &mpsc::Sender<Seen>,
    answer: &dyn Fn(&Seen) -> Reply,
    pause: Option<crossbeam_channel::Receiver<()>>,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let method = line.split(' ').next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            if reader.read_line(&mut l).unwrap_or(0) == 0 {
                return;
            }
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let seen = Seen {
            method,
            headers,
            body,
        };
        let r = answer(&seen);
        let head_only = seen.method == "HEAD" || matches!(r.status, 204 | 304);
        let _ = tx.send(seen);
        let mut head = format!("HTTP/1.1 {} X\r\n", r.status);
        for (n, v) in &r.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        match r.framing {
            Framing::Length => head.push_str(&format!("Content-Length: {}\r\n", r.body.len())),
            Framing::Chunked(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
            Framing::Close => head.push_str("Connection: close\r\n"),
        }
        head.push_str("\r\n");
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        if head_only {
            continue;
        }
        let half = r.body.len() / 2;
        for (i, part) in [&r.body[..half], &r.body[half..]].into_iter().enumerate() {
            if let (1, Some(rx)) = (i, &pause) {
                let _ = rx.recv_timeout(Duration::from_secs(60));
            }
            let sent = match r.framing {
                Framing::Chunked(size) => part.chunks(size.max(1)).try_for_each(|c| {
                    out.write_all(format!("{:x}\r\n", c.len()).as_bytes())?;
                    out.write_all(c)?;
                    out.write_all(b"\r\n")
                }),
                _ => out.write_all(part),
            };
            if sent.is_err() {
                return;
            }
        }
        match r.framing {
            Framing::Chunked(_) => {
                let _ = out.write_all(b"0\r\n\r\n");
            }
            Framing::Close => return,
            Framing::Length => {}
        }
    }
}

/// A compressible JSON body of about `len` bytes.
fn json(len: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(
            format!("{{\"id\":{i},\"name\":\"user {i}\",\"email\":\"u{i}@example.com\"}},")
                .as_bytes(),
        );
        i += 1;
    }
    out.push(b']');
    out
}

/// Text that compresses about 2:1 (hex of a pseudo-random sequence).
fn noisy(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(format!("{:016x}", x).as_bytes());
    }
    out.truncate(len);
    out
}

/// Route `api` (every path) to `origin` with the policy `[policies.z]` of `keys`.
fn gateway(driver: &str, origin: &Origin, keys: &str) -> Gateway {
    config(driver, origin, keys).start()
}

fn config(driver: &str, origin: &Origin, keys: &str) -> GatewayConfig {
    GatewayConfig::new(driver)
        .upstream("api", &[origin.addr])
        .routes(
            "[[routes]]\nname = \"api\"\nmatch = { path_prefix = \"/\" }\nupstream = \"api\"\n\
             policies = [\"z\"]\n",
        )
        .tables(&format!("[policies.z]\nkind = \"compress\"\n{keys}\n"))
}

/// `GET /x` over HTTP/1.1 with `fields` (each ending in CRLF), on a fresh connection.
fn get(gw: &Gateway, method: &str, fields: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "{method} /x HTTP/1.1\r\nHost: api.test\r\n{fields}Connection: close\r\n\r\n"
    ));
    raw.read_response_to(method)
}

/// The body decoded as its `Content-Encoding` says, with independent decoders.
fn decoded(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        Some("zstd") => {
            let mut d = zstd::stream::read::Decoder::new(body).expect("zstd");
            d.window_log_max(23).expect("window");
            d.read_to_end(&mut out).expect("zstd");
        }
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

driver_tests! {
    // Each algorithm, each upstream framing: the client decodes the upstream's exact bytes;
    // the head says Content-Encoding, Vary, no Content-Length unless the whole output was
    // known (small output: Content-Length; large: chunked).
    fn every_algorithm_round_trips_every_framing(driver: &str) {
        let small = json(20_000);
        let large = noisy(300_000);
        for body in [small, large] {
            for framing in [Framing::Length, Framing::Chunked(5000), Framing::Close] {
                let origin = Origin::always(reply("application/json", body.clone()).framed(framing));
                let gw = gateway(driver, &origin, "algorithms = [\"br\", \"zstd\", \"gzip\"]");
                for coding in ["gzip", "br", "zstd"] {
                    let r = get(&gw, "GET", &format!("Accept-Encoding: {coding}\r\n"));
                    assert_eq!(r.status, 200);
                    assert_eq!(r.header("content-encoding"), Some(coding));
                    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
                    let streamed = r.header("transfer-encoding") == Some("chunked");
                    let length = r.header("content-length").map(|l| l.parse::<usize>().expect("len"));
                    assert!(streamed != length.is_some(), "one framing: {:?}", r.headers);
                    if let Some(n) = length {
                        assert_eq!(n, r.body.len());
                    }
                    assert!(r.body.len() < body.len(), "{coding}: smaller");
                    let plain = decoded(Some(coding), &r.body);
                    assert!(plain == body, "{coding} {}: exact bytes", body.len());
                }
            }
        }
    }

    // A 1 MiB body streams: the client gets compressed bytes (chunked) while the upstream
    // still holds back the second half, so the gateway never holds the body whole.
    fn large_bodies_stream_in_bounded_memory(driver: &str) {
        let body = noisy(1 << 20);
        for coding in ["gzip", "br", "zstd"] {
            let (go, pause) = crossbeam_channel::bounded(1);
            let r = reply("text/plain", body.clone()).framed(Framing::Chunked(16 * 1024));
            let origin = Origin::start(Arc::new(move |_: &Seen| r.clone()), Some(pause));
            let gw = gateway(driver, &origin, "");
            let mut raw = Raw::connect(gw.addr());
            raw.send(format!(
                "GET /x HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: {coding}\r\nConnection: close\r\n\r\n"
            ));
            let head = raw.read_head_only();
            assert_eq!(head.header("transfer-encoding"), Some("chunked"));
            assert_eq!(head.header("content-encoding"), Some(coding));
            raw.read_at_least(1);
            go.send(()).expect("origin waits");
            let wire = raw.read_until_closed();
            let plain = decoded(Some(coding), &dechunk(&wire));
            assert!(plain == body, "{coding}: exact bytes");
        }
    }

    // Never compressed: HEAD, 204, 304, 206/Content-Range, Range requests, an encoded
    // response, no-transform, a type outside the list, a length under min_bytes.
    fn never_compress_rules(driver: &str) {
        let body = json(4000);
        let origin = Origin::answering(move |seen: &Seen| {
            let base = reply("application/json", body.clone());
            match seen.header("x-case").unwrap_or_default() {
                "204" => base.status(204),
                "304" => base.status(304),
                "206" => base.status(206).with("Content-Range", "bytes 0-3999/9000"),
                "encoded" => base.with("Content-Encoding", "identity"),
                "no-transform" => base.with("Cache-Control", "public, no-transform"),
                "png" => reply("image/png", json(4000)),
                "small" => reply("application/json", json(100)),
                _ => base,
            }
        });
        let gw = gateway(driver, &origin, "min_bytes = 1000");
        let ae = "Accept-Encoding: gzip\r\n";
        let plain = get(&gw, "GET", ae);
        assert_eq!(plain.header("content-encoding"), Some("gzip"), "control case");
        for (method, fields) in [
            ("HEAD", String::new()),
            ("GET", "Range: bytes=0-10\r\n".to_string()),
            ("GET", "x-case: 204\r\n".to_string()),
            ("GET", "x-case: 304\r\n".to_string()),
            ("GET", "x-case: 206\r\n".to_string()),
            ("GET", "x-case: encoded\r\n".to_string()),
            ("GET", "x-case: no-transform\r\n".to_string()),
            ("GET", "x-case: png\r\n".to_string()),
            ("GET", "x-case: small\r\n".to_string()),
        ] {
            let r = get(&gw, method, &format!("{ae}{fields}"));
            let ce = r.header("content-encoding");
            assert!(ce.is_none() || ce == Some("identity"), "{method} {fields}: {ce:?}");
            assert!(r.header("vary").is_none(), "{method} {fields}: no Vary");
            if method == "GET" && !fields.contains("204") && !fields.contains("304") {
                assert!(r.body.len() >= 100, "{fields}: body as is");
                assert!(r.body.starts_with(b"["), "{fields}: plain bytes");
            }
        }
        // The upstream saw the client's Accept-Encoding and Range as sent.
        let seen: Vec<Seen> = (0..10).map(|_| origin.next_seen()).collect();
        assert!(seen.iter().any(|s| s.header("range") == Some("bytes=0-10")));
    }

    // Vary merges into the upstream's; a strong ETag turns weak; a weak one stays;
    // Accept-Ranges and Content-Length go.
    fn vary_merge_and_weak_etags(driver: &str) {
        let body = json(5000);
        let origin = Origin::answering(move |seen: &Seen| {
            let base = reply("application/json", body.clone())
                .with("Vary", "Origin")
                .with("Accept-Ranges", "bytes");
            match seen.header("x-case").unwrap_or_default() {
                "weak" => base.with("ETag", "W/\"v1\""),
                _ => base.with("ETag", "\"v1\""),
            }
        });
        let gw = gateway(driver, &origin, "");
        let r = get(&gw, "GET", "Accept-Encoding: gzip\r\n");
        assert_eq!(r.header_all("vary"), vec!["Origin, Accept-Encoding"]);
        assert_eq!(r.header_all("etag"), vec!["W/\"v1\""]);
        assert!(r.header("accept-ranges").is_none());
        let r = get(&gw, "GET", "Accept-Encoding: gzip\r\nx-case: weak\r\n");
        assert_eq!(r.header_all("etag"), vec!["W/\"v1\""]);
        // Not compressed (no acceptable coding), but it varies: Vary, the strong ETag kept.
        let r = get(&gw, "GET", "Accept-Encoding: deflate\r\n");
        assert!(r.header("content-encoding").is_none());
        assert_eq!(r.header_all("vary"), vec!["Origin, Accept-Encoding"]);
        assert_eq!(r.header_all("etag"), vec!["\"v1\""]);
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
    }

    // q-values choose; ties go to the policy's order; identity;q=0 with nothing acceptable
    // gets the identity response (not a 406).
    fn q_value_negotiation(driver: &str) {
        let body = json(5000);
        let origin = Origin::always(reply("application/json", body.clone()));
        let gw = gateway(driver, &origin, "algorithms = [\"zstd\", \"br\", \"gzip\"]");
        for (accept, want) in [
            ("gzip, br, zstd", Some("zstd")),
            ("gzip;q=1, br;q=0.8, zstd;q=0.5", Some("gzip")),
            ("br;q=0.9, gzip;q=0.9", Some("br")),
            ("*", Some("zstd")),
            ("*;q=0, gzip", Some("gzip")),
            ("zstd;q=0, *;q=0.5", Some("br")),
            ("identity;q=0", None),
            ("identity;q=0, deflate", None),
            ("gzip;q=0", None),
            ("identity, gzip;q=0.5", None),
        ] {
            let r = get(&gw, "GET", &format!("Accept-Encoding: {accept}\r\n"));
            assert_eq!(r.status, 200, "{accept}");
            assert_eq!(r.header("content-encoding"), want, "{accept}");
            assert!(decoded(want, &r.body) == body, "{accept}");
        }
        let r = get(&gw, "GET", "");
        assert!(r.header("content-encoding").is_none(), "no Accept-Encoding");
    }

    // HTTP/1.0 clients get a compressed body delimited by the close (or with a length when
    // it was known); levels apply.
    fn http10_clients(driver: &str) {
        let body = noisy(400_000);
        let origin = Origin::always(reply("text/csv", body.clone()).framed(Framing::Chunked(8000)));
        let gw = gateway(driver, &origin, "types = [\"text/*\"]\nlevels = { gzip = 1 }");
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /x HTTP/1.0\r\nHost: api.test\r\nAccept-Encoding: gzip\r\n\r\n");
        let r = raw.read_response();
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.header("transfer-encoding").is_none());
        assert!(r.header("content-length").is_none());
        assert!(decoded(Some("gzip"), &r.body) == body);
        raw.expect_closed();
    }

    // HTTP/2 clients get the same compression (the stream re-frames the chunked body).
    fn http2_clients(driver: &str) {
        let body = json(200_000);
        let origin = Origin::always(reply("application/json", body.clone()).framed(Framing::Chunked(7000)));
        let gw = config(driver, &origin, "").server("h2c", "true").start();
        let replies = h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            let mut out = Vec::new();
            for coding in ["gzip", "br", "zstd"] {
                let mut req = h2c::get(&gw.addr().to_string(), "/x");
                req.headers_mut().insert("accept-encoding", coding.parse().expect("value"));
                out.push((coding, h2c::exchange(&client, req, None).await.expect("exchange")));
            }
            out
        });
        for (coding, r) in replies {
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-encoding"), Some(coding));
            assert_eq!(r.header("vary"), Some("Accept-Encoding"));
            assert!(decoded(Some(coding), &r.body) == body, "{coding}");
        }
    }

    // Request bodies: decoded before forwarding (exact bytes, exact Content-Length, no
    // Content-Encoding upstream); a bomb over the cap is 413 and never reaches the upstream;
    // an unknown coding is 415 with Accept-Encoding; garbage is 400.
    fn request_decompression(driver: &str) {
        let origin = Origin::always(reply("text/plain", b"ok".to_vec()));
        let gw = gateway(
            driver,
            &origin,
            "decompress_requests = true\nmax_decompressed_bytes = \"1MiB\"",
        );
        let payload = json(300_000);
        for (coding, packed) in [
            ("gzip", gzip(&payload)),
            ("br", {
                let mut w = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 20);
                w.write_all(&payload).expect("br");
                w.into_inner()
            }),
            ("zstd", zstd::encode_all(&payload[..], 3).expect("zstd")),
        ] {
            let r = post(&gw, coding, &packed);
            assert_eq!(r.status, 200, "{coding}");
            let seen = origin.next_seen();
            assert!(seen.body == payload, "{coding}: exact decoded bytes upstream");
            assert_eq!(seen.header("content-length"), Some(payload.len().to_string().as_str()));
            assert!(seen.header("content-encoding").is_none(), "{coding}");
        }
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        assert_eq!(post(&gw, "gzip", &bomb).status, 413);
        let r = post(&gw, "compress", b"whatever");
        assert_eq!(r.status, 415);
        assert_eq!(r.header("accept-encoding"), Some("gzip, br, zstd"));
        assert_eq!(post(&gw, "gzip", b"not gzip at all").status, 400);
        // Only the three good requests got through.
        let r = post(&gw, "identity", b"plain");
        assert_eq!(r.status, 200);
        assert_eq!(origin.next_seen().body, b"plain");
        assert!(origin.seen.try_recv().is_err(), "refused requests never reached the upstream");
    }

    // With CORS on the same route: one Vary listing the upstream's, Origin and
    // Accept-Encoding; the CORS fields on the compressed response.
    fn cors_and_compress_share_one_vary(driver: &str) {
        let body = json(5000);
        let origin = Origin::always(reply("application/json", body.clone()).with("Vary", "Accept"));
        let gw = GatewayConfig::new(driver)
            .upstream("api", &[origin.addr])
            .routes(
                "[[routes]]\nname = \"api\"\nmatch = { path_prefix = \"/\" }\nupstream = \"api\"\n\
                 policies = [\"z\", \"web\"]\n",
            )
            .tables(
                "[policies.z]\nkind = \"compress\"\n\
                 [policies.web]\nkind = \"cors\"\norigins = [\"https://app.example.com\"]\n",
            )
            .start();
        let r = get(&gw, "GET", "Origin: https://app.example.com\r\nAccept-Encoding: br\r\n");
        assert_eq!(r.header("content-encoding"), Some("br"));
        assert_eq!(r.header_all("vary"), vec!["Accept, Origin, Accept-Encoding"]);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert!(decoded(Some("br"), &r.body) == body);
    }

    // An upstream that closes mid-body before any compressed output was ready: the head was
    // held back, so the client gets a 502 rather than a truncated compressed body.
    fn upstream_failure_before_output_is_a_502(driver: &str) {
        let up = common::upstream::Upstream::start(
            "api",
            common::upstream::Behavior::CloseMidBody,
        );
        let gw = GatewayConfig::new(driver)
            .upstream("api", &[up.addr()])
            .routes(
                "[[routes]]\nname = \"api\"\nmatch = { path_prefix = \"/\" }\nupstream = \"api\"\n\
                 policies = [\"z\"]\n",
            )
            .tables("[policies.z]\nkind = \"compress\"\ntypes = [\"*/*\"]\n")
            .start();
        let r = get(&gw, "GET", "Accept-Encoding: gzip\r\n");
        assert_eq!(r.status, 502);
        assert!(r.header("content-encoding").is_none());
    }

    // The response cache stores a compressed answer as its coding's variant: the second
    // gzip client (another Accept-Encoding text negotiating gzip) is a hit with the same
    // compressed bytes and no upstream request; an identity client never gets the gzip
    // variant (its own is fetched, then hit); a br client gets its own variant; HEAD is
    // answered from the variant its GET would get.
    fn cached_compressed_variants_are_stored_per_coding(driver: &str) {
        let body = json(20_000);
        let (gw, _origin, count) = cached(driver, body.clone(), Framing::Length);
        let first = get(&gw, "GET", "Accept-Encoding: gzip\r\n");
        assert_eq!(first.header("content-encoding"), Some("gzip"));
        assert_eq!(cache_status(&first), "ringgate; fwd=uri-miss; stored");
        assert!(decoded(Some("gzip"), &first.body) == body);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let hit = get(&gw, "GET", "Accept-Encoding: gzip, deflate\r\n");
        assert_eq!(cache_status(&hit), "ringgate; hit");
        assert_eq!(count.load(Ordering::SeqCst), 1, "a hit is not fetched again");
        assert_eq!(hit.header("content-encoding"), Some("gzip"));
        assert_eq!(hit.header_all("vary"), vec!["Accept-Encoding"]);
        assert_eq!(hit.header_all("etag"), vec!["W/\"v1\""]);
        assert_eq!(hit.header("content-length"), Some(first.body.len().to_string().as_str()));
        assert!(hit.body == first.body, "the stored compressed bytes, not a new compression");
        assert!(decoded(Some("gzip"), &hit.body) == body);
        // Identity: its own variant, fetched once, then hit; never the gzip bytes.
        for (n, fields) in [(2, ""), (2, "Accept-Encoding: identity\r\n"), (2, "Accept-Encoding: deflate\r\n")] {
            let plain = get(&gw, "GET", fields);
            assert!(plain.header("content-encoding").is_none(), "{fields:?}");
            assert!(plain.body == body, "{fields:?}: the identity bytes");
            assert_eq!(plain.header_all("etag"), vec!["\"v1\""]);
            assert_eq!(count.load(Ordering::SeqCst), n, "{fields:?}");
        }
        // br: its own variant.
        let br = get(&gw, "GET", "Accept-Encoding: br\r\n");
        assert_eq!(br.header("content-encoding"), Some("br"));
        assert!(cache_status(&br).contains("fwd=vary-miss; stored"), "{}", cache_status(&br));
        assert_eq!(count.load(Ordering::SeqCst), 3);
        let br_hit = get(&gw, "GET", "Accept-Encoding: br, gzip;q=0.5\r\n");
        assert_eq!(cache_status(&br_hit), "ringgate; hit");
        assert!(br_hit.body == br.body && decoded(Some("br"), &br_hit.body) == body);
        // HEAD from the gzip variant: its head, no body, no upstream request.
        let head = get(&gw, "HEAD", "Accept-Encoding: gzip\r\n");
        assert_eq!(cache_status(&head), "ringgate; hit");
        assert_eq!(head.header("content-encoding"), Some("gzip"));
        assert_eq!(head.header("content-length"), Some(first.body.len().to_string().as_str()));
        assert!(head.body.is_empty());
        // The client's validator of the gzip variant: 304 from the cache.
        let revalidated = get(&gw, "GET", "Accept-Encoding: gzip\r\nIf-None-Match: W/\"v1\"\r\n");
        assert_eq!(revalidated.status, 304);
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    // A compressed output larger than the relay's buffer goes to the first client chunked
    // while it is stored; the hit has its exact length. A chunked upstream body too.
    fn large_and_chunked_compressed_answers_are_stored(driver: &str) {
        let body = noisy(300_000);
        let (gw, _origin, count) = cached(driver, body.clone(), Framing::Chunked(10_000));
        let first = get(&gw, "GET", "Accept-Encoding: gzip\r\n");
        assert_eq!(first.header("transfer-encoding"), Some("chunked"));
        assert_eq!(cache_status(&first), "ringgate; fwd=uri-miss; stored");
        let hit = get(&gw, "GET", "Accept-Encoding: gzip\r\n");
        assert_eq!(cache_status(&hit), "ringgate; hit");
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(hit.header("content-length"), Some(hit.body.len().to_string().as_str()));
        assert!(hit.body == first.body, "the same compressed bytes");
        assert!(decoded(Some("gzip"), &hit.body) == body);
        let zstd = get(&gw, "GET", "Accept-Encoding: zstd\r\n");
        assert_eq!(zstd.header("content-encoding"), Some("zstd"));
        assert!(decoded(Some("zstd"), &zstd.body) == body);
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    // HTTP/2 clients share the variants with HTTP/1.1 ones.
    fn http2_clients_hit_the_stored_variant(driver: &str) {
        let body = json(20_000);
        let (gw, _origin, count) = cached(driver, body.clone(), Framing::Length);
        // The same host as the HTTP/2 request's authority (the host is part of the key).
        let gw_addr = gw.addr().to_string();
        let mut raw = Raw::connect(gw.addr());
        raw.send(format!(
            "GET /x HTTP/1.1\r\nHost: {gw_addr}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        ));
        let first = raw.read_response_to("GET");
        assert_eq!(first.header("content-encoding"), Some("gzip"));
        let r = h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            let mut req = h2c::get(&gw_addr, "/x");
            req.headers_mut().insert("accept-encoding", "gzip".parse().expect("value"));
            h2c::exchange(&client, req, None).await.expect("exchange")
        });
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("cache-status"), Some("ringgate; hit"));
        assert!(r.body == first.body);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    // Without decompress_requests, a coded body goes upstream as it came.
    fn coded_request_bodies_pass_when_not_enabled(driver: &str) {
        let origin = Origin::always(reply("text/plain", b"ok".to_vec()));
        let gw = gateway(driver, &origin, "");
        let packed = gzip(b"hello");
        assert_eq!(post(&gw, "gzip", &packed).status, 200);
        let seen = origin.next_seen();
        assert_eq!(seen.body, packed);
        assert_eq!(seen.header("content-encoding"), Some("gzip"));
    }
}

/// A cached route (`[caches.c]`, one worker) with the compress policy `[policies.z]` in front
/// of an origin that answers `body` (at every path) cacheable with a strong ETag, counting
/// the requests it gets.
fn cached(driver: &str, body: Vec<u8>, framing: Framing) -> (Gateway, Origin, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    let origin = Origin::answering(move |_: &Seen| {
        counted.fetch_add(1, Ordering::SeqCst);
        reply("application/json", body.clone())
            .with("Cache-Control", "max-age=60")
            .with("ETag", "\"v1\"")
            .framed(framing)
    });
    let gw = GatewayConfig::new(driver)
        .workers(1)
        .server("h2c", "true")
        .upstream("api", &[origin.addr])
        .routes(
            "[[routes]]\nname = \"api\"\nmatch = { path_prefix = \"/\" }\nupstream = \"api\"\n\
             policies = [\"z\"]\ncache = \"c\"\n",
        )
        .tables(
            "[policies.z]\nkind = \"compress\"\nalgorithms = [\"zstd\", \"br\", \"gzip\"]\n\
             [caches.c]\nmax_bytes = \"8MiB\"\nmax_object_bytes = \"2MiB\"\n",
        )
        .start();
    (gw, origin, count)
}

/// `Cache-Status` of a response.
fn cache_status(r: &RawResponse) -> &str {
    r.header("cache-status").unwrap_or_default()
}

/// `POST /x` with `Content-Encoding: coding` and `body`.
fn post(gw: &Gateway, coding: &str, body: &[u8]) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "POST /x HTTP/1.1\r\nHost: api.test\r\nContent-Encoding: {coding}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    raw.send(body);
    raw.read_response()
}

/// The payload of a chunked body.
fn dechunk(mut wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = wire
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk line");
        let size_text = std::str::from_utf8(&wire[..line_end]).expect("ascii");
        let size = usize::from_str_radix(size_text.trim(), 16).expect("hex size");
        wire = &wire[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&wire[..size]);
        wire = &wire[size + 2..];
    }
}
