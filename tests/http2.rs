//! HTTP/2 end to end: h2c with prior knowledge and ALPN `h2` over TLS (curl and the h2
//! crate as clients), concurrent streams on one connection, h2/h2c upstreams with trailers,
//! and HTTP/1.1 <-> HTTP/2 in both directions, under both drivers.
mod common;

use std::process::Command;

use bytes::Bytes;
use common::gateway::GatewayConfig;
use common::h2::{self as h2c, H2Upstream, Mode};
use common::tls::{toml_path, Kind, Pki};
use common::upstream::{Behavior, Echoed, Gate, Upstream};

/// curl's `-w` line after the body: the HTTP version it spoke and the status.
const CURL_WRITE_OUT: &str = "\n%{http_version} %{http_code}";

/// Whether the machine's curl speaks HTTP/2 (`curl -V` lists `HTTP2` among its features).
/// Tests that need it say why they skip when it does not.
fn curl_has_http2(test: &str) -> bool {
    let features = Command::new("curl")
        .arg("-V")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let has = features
        .lines()
        .any(|l| l.starts_with("Features:") && l.split_whitespace().any(|f| f == "HTTP2"));
    if !has {
        eprintln!("SKIPPED {test}: curl is missing or lacks HTTP/2 (`curl -V` lists no HTTP2)");
    }
    has
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", CURL_WRITE_OUT])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').expect("write-out line");
    (body.to_string(), tail.to_string())
}

fn h2c_gateway(driver: &str, upstream: &Upstream) -> common::gateway::Gateway {
    GatewayConfig::new(driver)
        .server("h2c", "true")
        .upstream("u", &[upstream.addr()])
        .route_all_to("u")
        .start()
}

driver_tests! {
    fn curl_with_prior_knowledge_is_served_over_h2c(driver: &str) {
        if !curl_has_http2("curl_with_prior_knowledge_is_served_over_h2c") {
            return;
        }
        let upstream = Upstream::echo("u");
        let gw = h2c_gateway(driver, &upstream);
        let url = gw.url("/a/b?c=d");
        let (body, tail) = curl(&["--http2-prior-knowledge", "-H", "x-client: one", &url]);
        assert_eq!(tail, "2 200", "{body}");
        let echoed = Echoed::parse(&body);
        assert_eq!(echoed.target, "/a/b?c=d");
        assert_eq!(echoed.version, "1.1");
        assert_eq!(echoed.header("x-client"), Some("one"));
        assert_eq!(echoed.header_all("x-forwarded-proto"), vec!["http"]);
        assert_eq!(echoed.header("host"), Some(gw.addr().to_string().as_str()));
        // A request body goes up over h2c too.
        let (body, tail) = curl(&["--http2-prior-knowledge", "--data-binary", "twelve bytes", &url]);
        assert_eq!(tail, "2 200", "{body}");
        let echoed = Echoed::parse(&body);
        assert_eq!(echoed.method, "POST");
        assert_eq!(echoed.body_len, 12);
        // The same listener still speaks HTTP/1.1.
        let (body, tail) = curl(&["--http1.1", &url]);
        assert_eq!(tail, "1.1 200", "{body}");
    }

    fn curl_negotiates_h2_with_alpn_over_tls(driver: &str) {
        if !curl_has_http2("curl_negotiates_h2_with_alpn_over_tls") {
            return;
        }
        let pki = Pki::new("h2-alpn");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let upstream = Upstream::echo("u");
        let gw = GatewayConfig::new(driver)
            .tls_listener(&format!(
                "certificates = [ {{ cert = {}, key = {} }} ]\nalpn = [\"h2\", \"http/1.1\"]\nhsts = \"max-age=60\"",
                toml_path(&server.cert),
                toml_path(&server.key)
            ))
            .upstream("u", &[upstream.addr()])
            .route_all_to("u")
            .start();
        let port = gw.tls_addr().port();
        let resolve = format!("gateway.test:{port}:127.0.0.1");
        let url = format!("https://gateway.test:{port}/secure");
        let ca = pki.ca_path();
        let ca = ca.to_str().expect("path");
        let (body, tail) = curl(&["--http2", "--cacert", ca, "--resolve", &resolve, &url]);
        assert_eq!(tail, "2 200", "{body}");
        let echoed = Echoed::parse(&body);
        assert_eq!(echoed.target, "/secure");
        assert_eq!(echoed.header_all("x-forwarded-proto"), vec!["https"]);
        let (body, tail) = curl(&["--http2", "--cacert", ca, "--resolve", &resolve, "--data-binary", "over tls", &url]);
        assert_eq!(tail, "2 200", "{body}");
        let echoed = Echoed::parse(&body);
        assert_eq!((echoed.method.as_str(), echoed.body_len), ("POST", 8));
        // A client that offers only http/1.1 gets it.
        let (_, tail) = curl(&["--http1.1", "--cacert", ca, "--resolve", &resolve, &url]);
        assert_eq!(tail, "1.1 200");
        // Headers the gateway adds on TLS listeners come over h2 too.
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-D", "-", "--http2", "--cacert", ca, "--resolve", &resolve, &url])
            .output()
            .expect("curl");
        let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(head.starts_with("http/2 200"), "{head}");
        assert!(head.contains("strict-transport-security: max-age=60"), "{head}");
        assert!(!head.contains("connection:"), "{head}");
    }

    fn early_hints_reach_h2_clients_before_the_final_response(driver: &str) {
        let hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n";
        let up = Upstream::start("hints", Behavior::InterimThenEcho(hints.to_vec()));
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream("hints", &[up.addr()])
            .route_all_to("hints")
            .start();
        let authority = gw.addr().to_string();
        h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            let mut sender = client.clone().ready().await.expect("ready");
            let (mut response, _) = sender
                .send_request(h2c::get(&authority, "/page"), true)
                .expect("send");
            let interim = std::future::poll_fn(|cx| response.poll_informational(cx))
                .await
                .expect("an interim response before the final one")
                .expect("interim");
            assert_eq!(interim.status(), 103);
            assert_eq!(
                interim.headers().get("link").map(|v| v.as_bytes()),
                Some(&b"</style.css>; rel=preload; as=style"[..])
            );
            let answer = h2c::read_response(response.await.expect("response")).await.expect("body");
            assert_eq!(answer.status, 200);
            assert_eq!(Echoed::parse(&answer.text()).target, "/page");
        });
    }

    fn streams_of_one_connection_are_served_concurrently(driver: &str) {
        let gate = Gate::new();
        let slow = Upstream::start("slow", Behavior::Gate(gate.clone()));
        let fast = Upstream::echo("fast");
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream("slow", &[slow.addr()])
            .upstream("fast", &[fast.addr()])
            .routes(
                "[[routes]]\nname = \"slow\"\nmatch = { path_prefix = \"/slow\" }\nupstream = \"slow\"\n\n\
                 [[routes]]\nname = \"fast\"\nmatch = { path_prefix = \"/\" }\nupstream = \"fast\"\n",
            )
            .start();
        let authority = gw.addr().to_string();
        h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            let mut held = client.clone().ready().await.expect("ready");
            let (pending, _) = held
                .send_request(h2c::get(&authority, "/slow"), true)
                .expect("send");
            // While the first stream waits for its upstream, 20 more on the same connection
            // are answered, with bodies.
            let mut answers = Vec::new();
            for i in 0..20 {
                let request = http::Request::builder()
                    .method("POST")
                    .uri(format!("http://{authority}/fast/{i}"))
                    .body(())
                    .expect("request");
                let body = format!("body of request {i}");
                answers.push(h2c::exchange(&client, request, Some(body.into_bytes())));
            }
            for (i, answer) in futures_join(answers).await.into_iter().enumerate() {
                let answer = answer.expect("answer");
                assert_eq!(answer.status, 200);
                let echoed = Echoed::parse(&answer.text());
                assert_eq!(echoed.target, format!("/fast/{i}"));
                assert_eq!(echoed.body_len, format!("body of request {i}").len() as u64);
            }
            gate.open();
            let slow = h2c::read_response(pending.await.expect("slow response"))
                .await
                .expect("slow body");
            assert_eq!(slow.status, 200);
            assert_eq!(Echoed::parse(&slow.text()).target, "/slow");
        });
    }

    fn h2c_upstream_trailers_reach_h2_clients_and_h1_clients_get_the_body(driver: &str) {
        let upstream = H2Upstream::start("h2u", Mode::Echo);
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"h2u\"\nprotocol = \"h2c\"\ntargets = [ {{ addr = \"{}\" }} ]",
                upstream.addr()
            ))
            .route_all_to("h2u")
            .start();
        let authority = gw.addr().to_string();
        h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            let request = http::Request::builder()
                .method("PUT")
                .uri(format!("http://{authority}/item?x=1"))
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .body(())
                .expect("request");
            let answer = h2c::exchange(&client, request, Some(b"payload".to_vec()))
                .await
                .expect("answer");
            assert_eq!(answer.status, 200);
            let echoed = Echoed::parse(&answer.text());
            assert_eq!(echoed.method, "PUT");
            assert_eq!(echoed.target, "/item?x=1");
            assert_eq!(echoed.version, "HTTP/2.0");
            assert_eq!(echoed.body_len, 7);
            assert_eq!(echoed.header(":authority"), Some(authority.as_str()));
            assert_eq!(echoed.header("cookie"), Some("a=1; b=2"));
            assert_eq!(echoed.header("te"), Some("trailers"));
            assert_eq!(echoed.header("x-forwarded-proto"), Some("http"));
            assert!(echoed.header("connection").is_none());
            let trailers = answer.trailers.expect("trailers");
            assert_eq!(trailers.get("x-upstream-trailer").map(|v| v.as_bytes()), Some(&b"done"[..]));
        });
        // An HTTP/1.1 client gets the same answer, chunked, through the same h2 connection pool.
        let reply = common::client::get(&gw.url("/plain"));
        assert_eq!(reply.status, 200);
        let echoed = Echoed::parse(&reply.text());
        assert_eq!(echoed.target, "/plain");
        assert_eq!(echoed.version, "HTTP/2.0");
        assert_eq!(upstream.connections(), 1, "one multiplexed connection serves both");
    }

    fn a_burst_of_streams_opens_no_more_upstream_connections_than_the_cap(driver: &str) {
        let upstream = H2Upstream::start("burst", Mode::Echo);
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"h2u\"\nprotocol = \"h2c\"\ntargets = [ {{ addr = \"{}\" }} ]\n\
                 http2 = {{ max_connections_per_target = 2, max_streams_per_connection = 8 }}\n",
                upstream.addr()
            ))
            .route_all_to("h2u")
            .start();
        let authority = gw.addr().to_string();
        h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            // 32 streams at once, before any upstream connection exists: the first opens one,
            // the next ones wait for it, one more opens when those would fill it, the rest
            // wait for the two and queue on them.
            let answers = (0..32)
                .map(|i| h2c::exchange(&client, h2c::get(&authority, &format!("/burst/{i}")), None))
                .collect();
            for (i, answer) in futures_join(answers).await.into_iter().enumerate() {
                let answer = answer.expect("answer");
                assert_eq!(answer.status, 200);
                assert_eq!(Echoed::parse(&answer.text()).target, format!("/burst/{i}"));
            }
        });
        assert_eq!(upstream.requests(), 32);
        assert_eq!(upstream.connections(), 2, "max_connections_per_target holds in a burst");
    }

    fn h2c_with_a_large_body_both_ways_keeps_every_byte(driver: &str) {
        let upstream = H2Upstream::start("stream", Mode::StreamEcho);
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"s\"\nprotocol = \"h2c\"\ntargets = [ {{ addr = \"{}\" }} ]",
                upstream.addr()
            ))
            .route_all_to("s")
            .start();
        let authority = gw.addr().to_string();
        let body = common::body::pattern(3 * 1024 * 1024 + 17);
        h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            let request = http::Request::builder()
                .method("POST")
                .uri(format!("http://{authority}/big"))
                .header("content-type", "application/grpc")
                .body(())
                .expect("request");
            let mut sender = client.clone().ready().await.expect("ready");
            let (response, mut send) = sender.send_request(request, false).expect("send");
            let mut offset = 0;
            while offset < body.len() {
                let n = (body.len() - offset).min(64 * 1024);
                send.reserve_capacity(n);
                let granted = std::future::poll_fn(|cx| send.poll_capacity(cx))
                    .await
                    .expect("capacity")
                    .expect("capacity");
                let n = granted.min(n);
                send.send_data(Bytes::copy_from_slice(&body[offset..offset + n]), false)
                    .expect("data");
                offset += n;
            }
            send.send_data(Bytes::new(), true).expect("end");
            let answer = h2c::read_response(response.await.expect("response"))
                .await
                .expect("body");
            assert_eq!(answer.status, 200);
            assert_eq!(answer.body.len(), body.len());
            assert!(answer.body == body, "the echoed body differs");
            let trailers = answer.trailers.expect("trailers");
            assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
        });
    }
}

/// Awaits every future, in order (the h2 client multiplexes them on one connection).
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    // Poll all together so the streams are in flight at once.
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for r in results {
        out.extend(r);
    }
    out
}

/// A gRPC call (unary: one length-prefixed message) with these extra headers.
fn grpc_call(authority: &str, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).expect("request")
}

/// One gRPC message frame: uncompressed flag, big-endian length, payload.
fn grpc_message(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The `grpc-status` of a trailers-only answer (in the headers) or of the trailers.
fn grpc_status(answer: &h2c::Exchange) -> Option<String> {
    answer
        .header("grpc-status")
        .map(str::to_string)
        .or_else(|| {
            let trailers = answer.trailers.as_ref()?;
            Some(trailers.get("grpc-status")?.to_str().ok()?.to_string())
        })
}

driver_tests! {
    fn grpc_calls_stream_through_an_h2c_upstream_with_their_trailers(driver: &str) {
        let upstream = H2Upstream::start("grpc", Mode::StreamEcho);
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"g\"\nprotocol = \"h2c\"\ntargets = [ {{ addr = \"{}\" }} ]",
                upstream.addr()
            ))
            .route_all_to("g")
            .start();
        let authority = gw.addr().to_string();
        h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            // Unary.
            let message = grpc_message(b"hello");
            let answer = h2c::exchange(&client, grpc_call(&authority, "/echo.Echo/Unary", &[]), Some(message.clone()))
                .await
                .expect("unary");
            assert_eq!(answer.status, 200);
            assert_eq!(answer.header("content-type"), Some("application/grpc"));
            assert_eq!(answer.body, message);
            assert_eq!(grpc_status(&answer).as_deref(), Some("0"));
            // Client streaming then server streaming: five messages in, five back.
            let mut sender = client.clone().ready().await.expect("ready");
            let (response, mut send) = sender
                .send_request(grpc_call(&authority, "/echo.Echo/Stream", &[]), false)
                .expect("send");
            let mut sent = Vec::new();
            for i in 0..5 {
                let m = grpc_message(format!("message {i}").as_bytes());
                sent.extend_from_slice(&m);
                send.send_data(Bytes::from(m), i == 4).expect("data");
            }
            let answer = h2c::read_response(response.await.expect("response")).await.expect("body");
            assert_eq!(answer.body, sent);
            assert_eq!(grpc_status(&answer).as_deref(), Some("0"));
        });
    }

    fn gateway_errors_on_grpc_calls_are_grpc_status_answers(driver: &str) {
        let slow = Upstream::start("slow", Behavior::NeverAnswer);
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream("down", &[common::upstream::refused_addr()])
            .upstream("slow", &[slow.addr()])
            .routes(
                "[[routes]]\nname = \"down\"\nmatch = { path_prefix = \"/down.Service/\" }\nupstream = \"down\"\n\n\
                 [[routes]]\nname = \"slow\"\nmatch = { path_prefix = \"/slow.Service/\" }\nupstream = \"slow\"\n\n\
                 [[routes]]\nname = \"keyed\"\nmatch = { path_prefix = \"/keyed.Service/\" }\nupstream = \"down\"\npolicies = [\"key\"]\n\n\
                 [policies.key]\nkind = \"api_key\"\n\n\
                 [[consumers]]\nname = \"alice\"\napi_keys = [\"k-alice-0123456789\"]\n",
            )
            .start();
        let authority = gw.addr().to_string();
        h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            let body = Some(grpc_message(b"x"));
            for (path, headers, code) in [
                ("/down.Service/M", vec![], "14"),
                ("/nothing.Here/M", vec![], "12"),
                ("/keyed.Service/M", vec![], "16"),
            ] {
                let answer = h2c::exchange(&client, grpc_call(&authority, path, &headers), body.clone())
                    .await
                    .expect("answer");
                assert_eq!(answer.status, 200, "{path}");
                assert_eq!(answer.header("content-type"), Some("application/grpc"), "{path}");
                assert_eq!(answer.header("grpc-status"), Some(code), "{path}: {answer:?}");
                assert!(answer.header("grpc-message").is_some(), "{path}");
                assert!(answer.body.is_empty(), "{path}: trailers-only");
            }
            // grpc-timeout is the call's deadline: the upstream never answers, the call ends
            // with DEADLINE_EXCEEDED long before the upstream's own 5 s timeouts.
            let started = std::time::Instant::now();
            let answer = h2c::exchange(
                &client,
                grpc_call(&authority, "/slow.Service/M", &[("grpc-timeout", "300m")]),
                body.clone(),
            )
            .await
            .expect("answer");
            assert_eq!(answer.header("grpc-status"), Some("4"), "{answer:?}");
            assert!(started.elapsed() < std::time::Duration::from_secs(4), "{:?}", started.elapsed());
            // A plain HTTP/2 request to the same down group gets an HTTP error.
            let plain = h2c::exchange(&client, h2c::get(&authority, "/down.Service/M"), None)
                .await
                .expect("answer");
            assert_eq!(plain.status, 502);
        });
    }
}
