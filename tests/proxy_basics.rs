//! The proxy's everyday behaviour: forwarding, keep-alive, pipelining, HEAD and bodiless
//! statuses, interim 1xx responses, HTTP/1.0 clients, proxy headers (hop-by-hop, forwarding,
//! Host, request id, on errors too), static responses and client-side timeouts.
mod common;

use std::time::{Duration, Instant};

use common::client::{self, Raw};
use common::gateway::GatewayConfig;
use common::upstream::{self, Behavior, Echoed, Upstream};

/// An upstream's `103 Early Hints` and the `Link` it carries.
const PRELOAD_LINK: &str = "</style.css>; rel=preload; as=style";
const EARLY_HINTS: &[u8] =
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n";

fn echo_gateway(driver: &str, up: &Upstream) -> common::gateway::Gateway {
    GatewayConfig::new(driver)
        .upstream("echo", &[up.addr()])
        .route_all_to("echo")
        .start()
}

driver_tests! {
    fn get_is_forwarded_to_upstream(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let r = client::call(client::agent().get(&gw.url("/hello/world?x=1&y=2")).set("X-Custom", "abc"));
        assert_eq!(r.status, 200, "{}", r.text());
        let e = Echoed::parse(&r.text());
        assert_eq!(e.method, "GET");
        assert_eq!(e.target, "/hello/world?x=1&y=2");
        assert_eq!(e.version, "1.1");
        assert_eq!(e.header("x-custom"), Some("abc"));
        assert_eq!(e.body_len, 0);
        assert_eq!(r.header("x-upstream"), Some("echo"), "upstream response headers reach the client");
        assert_eq!(up.requests(), 1);
    }

    fn post_body_is_forwarded(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let data = common::body::pattern(100_000);
        let r = client::send(client::agent().post(&gw.url("/upload")), &data);
        assert_eq!(r.status, 200, "{}", r.text());
        let e = Echoed::parse(&r.text());
        assert_eq!(e.method, "POST");
        assert_eq!(e.body_len, 100_000);
        assert_eq!(e.body_sum, common::body::sum_of(&data).hex());
    }

    fn keep_alive_reuses_client_and_upstream_connections(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .workers(2)
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let mut raw = Raw::connect(gw.addr());
        for i in 0..5 {
            raw.send(client::get_req(&format!("/seq/{i}")));
            let r = raw.read_response();
            assert_eq!(r.status, 200);
            assert!(!r.connection_has("close"), "keep-alive response {i} says close");
            assert_eq!(Echoed::parse(&r.text()).target, format!("/seq/{i}"));
        }
        assert_eq!(up.requests(), 5);
        // One client connection lands on one worker: that worker's pool holds one connection.
        assert_eq!(up.connections(), 1, "upstream connection was not reused");
    }

    fn pipelined_requests_are_answered_in_order(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        let mut batch = String::new();
        for i in 0..4 {
            batch.push_str(&client::get_req(&format!("/p/{i}")));
        }
        batch.push_str("POST /p/4 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello");
        batch.push_str("HEAD /p/5 HTTP/1.1\r\nHost: example.com\r\n\r\n");
        batch.push_str(&client::get_req("/p/6"));
        raw.send(batch);
        for i in 0..7 {
            let method = if i == 5 { "HEAD" } else { "GET" };
            let r = raw.read_response_to(method);
            assert_eq!(r.status, 200, "response {i}");
            if i == 5 {
                assert!(r.body.is_empty());
                continue;
            }
            let e = Echoed::parse(&r.text());
            assert_eq!(e.target, format!("/p/{i}"), "responses out of order");
            if i == 4 {
                assert_eq!((e.method.as_str(), e.body_len), ("POST", 5));
            }
        }
        assert_eq!(up.requests(), 7);
    }

    fn head_response_has_headers_but_no_body(driver: &str) {
        let up = Upstream::start("echo", Behavior::Fixed { len: 5000, chunked: false });
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send("HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n");
        let r = raw.read_response_to("HEAD");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("5000"));
        assert_eq!(up.last_request().expect("recorded").method, "HEAD");
        // Nothing body-like may follow: the next response on the connection must parse.
        up.set_behavior(Behavior::Echo);
        raw.send(client::get_req("/after"));
        let r = raw.read_response();
        assert_eq!(Echoed::parse(&r.text()).target, "/after");
    }

    fn no_body_for_204_and_304(driver: &str) {
        let up = Upstream::start("echo", Behavior::Status(204));
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send(client::get_req("/a"));
        let r = raw.read_response();
        assert_eq!(r.status, 204);
        assert!(r.header("transfer-encoding").is_none(), "204 with transfer-encoding");
        up.set_behavior(Behavior::Status(304));
        raw.send(client::get_req("/b"));
        let r = raw.read_response();
        assert_eq!(r.status, 304);
        assert!(r.header("transfer-encoding").is_none(), "304 with transfer-encoding");
        up.set_behavior(Behavior::Echo);
        raw.send(client::get_req("/c"));
        let r = raw.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(Echoed::parse(&r.text()).target, "/c", "stray bytes after a bodiless response");
    }

    fn early_hints_reach_http11_client_before_final_response(driver: &str) {
        let up = Upstream::start("hints", Behavior::InterimThenEcho(EARLY_HINTS.to_vec()));
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        for i in 0..2 {
            raw.send(client::get_req(&format!("/hints/{i}")));
            let (interims, r) = raw.read_response_and_interims("GET");
            let statuses: Vec<u16> = interims.iter().map(|h| h.status).collect();
            assert_eq!(statuses, vec![103], "interim responses before the 200: {interims:?}");
            assert_eq!(interims[0].header("link"), Some(PRELOAD_LINK), "103 lost its Link: {interims:?}");
            assert_eq!(r.status, 200, "{}", r.text());
            // The connection stays in step: the second round trip reads the same.
            assert_eq!(Echoed::parse(&r.text()).target, format!("/hints/{i}"));
        }
    }

    fn early_hints_are_not_sent_to_http10_client(driver: &str) {
        let up = Upstream::start("hints", Behavior::InterimThenEcho(EARLY_HINTS.to_vec()));
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /hints HTTP/1.0\r\nHost: example.com\r\n\r\n");
        let (interims, r) = raw.read_response_and_interims("GET");
        assert!(interims.is_empty(), "an HTTP/1.0 client got interim responses: {interims:?}");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(Echoed::parse(&r.text()).target, "/hints");
        raw.expect_closed();
    }

    fn unsolicited_100_continue_from_upstream_is_not_forwarded(driver: &str) {
        let up = Upstream::start("eager", Behavior::InterimThenEcho(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()));
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        for i in 0..2 {
            raw.send(client::get_req(&format!("/eager/{i}")));
            let (interims, r) = raw.read_response_and_interims("GET");
            assert!(interims.is_empty(), "a 100 Continue nobody asked for reached the client: {interims:?}");
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(Echoed::parse(&r.text()).target, format!("/eager/{i}"));
        }
    }

    fn http10_client_gets_response_and_close(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /old HTTP/1.0\r\nHost: example.com\r\n\r\n");
        let r = raw.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(Echoed::parse(&r.text()).target, "/old");
        assert!(r.header("transfer-encoding").is_none(), "chunked sent to an HTTP/1.0 client");
        raw.expect_closed();
    }

    fn http10_client_with_keep_alive_stays_open(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        for i in 0..2 {
            raw.send(format!("GET /ka/{i} HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n"));
            let r = raw.read_response();
            assert_eq!(r.status, 200);
            assert!(r.connection_has("keep-alive"), "HTTP/1.0 keep-alive response must say so: {:?}", r.headers);
            assert_eq!(Echoed::parse(&r.text()).target, format!("/ka/{i}"));
        }
    }

    fn http10_client_gets_chunked_upstream_body_unchunked(driver: &str) {
        let up = Upstream::start("echo", Behavior::Fixed { len: 100_000, chunked: true });
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /big HTTP/1.0\r\nHost: example.com\r\n\r\n");
        let r = raw.read_response();
        assert_eq!(r.status, 200);
        assert!(r.header("transfer-encoding").is_none(), "chunked sent to an HTTP/1.0 client");
        assert_eq!(common::body::sum_of(&r.body), common::body::pattern_sum(100_000));
    }

    fn connection_close_from_client_is_honoured(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /bye HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
        let r = raw.read_response();
        assert_eq!(r.status, 200);
        assert!(r.connection_has("close"));
        raw.expect_closed();
    }

    fn hop_by_hop_request_headers_are_removed(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send(
            "GET /hop HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Foo\r\nKeep-Alive: timeout=5\r\n\
             TE: trailers\r\nUpgrade: something\r\nProxy-Connection: keep-alive\r\nX-Foo: secret\r\nX-Keep: yes\r\n\r\n",
        );
        let r = raw.read_response();
        assert_eq!(r.status, 200);
        let e = Echoed::parse(&r.text());
        for name in ["keep-alive", "te", "upgrade", "proxy-connection", "x-foo"] {
            assert_eq!(e.header(name), None, "hop-by-hop header {name} reached the upstream");
        }
        for v in e.header_all("connection") {
            assert!(!v.to_ascii_lowercase().contains("x-foo"), "client's Connection reached the upstream: {v}");
        }
        assert_eq!(e.header("x-keep"), Some("yes"));
    }

    fn hop_by_hop_response_headers_are_removed(driver: &str) {
        let up = Upstream::start(
            "echo",
            Behavior::Respond {
                status: 200,
                headers: vec![
                    ("Connection".into(), "X-Up-Secret".into()),
                    ("X-Up-Secret".into(), "s3cr3t".into()),
                    ("Keep-Alive".into(), "timeout=3".into()),
                    ("Proxy-Connection".into(), "keep-alive".into()),
                    ("X-Ok".into(), "1".into()),
                ],
                body: b"fine".to_vec(),
            },
        );
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send(client::get_req("/"));
        let r = raw.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "fine");
        for name in ["x-up-secret", "keep-alive", "proxy-connection"] {
            assert_eq!(r.header(name), None, "hop-by-hop response header {name} reached the client");
        }
        assert_eq!(r.header("x-ok"), Some("1"));
    }

    fn forwarding_headers_are_added(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let r = client::call(client::agent().get(&gw.url("/fwd")).set("Host", "api.example.com"));
        assert_eq!(r.status, 200);
        let e = Echoed::parse(&r.text());
        assert_eq!(e.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(e.header("x-forwarded-proto"), Some("http"));
        assert_eq!(e.header("x-forwarded-host"), Some("api.example.com"));
        let via = e.header("via").expect("Via added");
        assert!(via.starts_with("1.1 "), "Via: {via}");
    }

    fn x_forwarded_for_is_appended_to(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let r = client::call(client::agent().get(&gw.url("/fwd")).set("X-Forwarded-For", "203.0.113.7"));
        let e = Echoed::parse(&r.text());
        assert_eq!(e.header_all("x-forwarded-for").join(", "), "203.0.113.7, 127.0.0.1");
    }

    fn host_is_preserved_by_default(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let r = client::call(client::agent().get(&gw.url("/h")).set("Host", "Public.Example.com:8080"));
        let e = Echoed::parse(&r.text());
        assert_eq!(e.header_all("host"), vec!["Public.Example.com:8080"]);
    }

    fn host_is_rewritten_by_host_rewrite(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(r#"
                [[routes]]
                name = "rewritten"
                match = { path_prefix = "/" }
                upstream = "echo"
                host_rewrite = "backend.internal"
            "#)
            .start();
        let r = client::call(client::agent().get(&gw.url("/h")).set("Host", "public.example.com"));
        let e = Echoed::parse(&r.text());
        assert_eq!(e.header_all("host"), vec!["backend.internal"]);
        assert_eq!(e.header("x-forwarded-host"), Some("public.example.com"));
    }

    fn request_id_is_generated_when_absent(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let agent = client::agent();
        let first = client::get(&gw.url("/id"));
        let second = client::call(agent.get(&gw.url("/id")));
        let mut ids = Vec::new();
        for r in [first, second] {
            let e = Echoed::parse(&r.text());
            let upstream_saw = e.header("x-request-id").expect("upstream saw an X-Request-Id").to_string();
            assert!(!upstream_saw.trim().is_empty());
            assert_eq!(r.header("x-request-id"), Some(upstream_saw.as_str()), "response carries the same id");
            ids.push(upstream_saw);
        }
        assert_ne!(ids[0], ids[1], "request ids must differ");
    }

    fn request_id_is_passed_through_when_present(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let r = client::call(client::agent().get(&gw.url("/id")).set("X-Request-Id", "abc-123"));
        let e = Echoed::parse(&r.text());
        assert_eq!(e.header_all("x-request-id"), vec!["abc-123"]);
        assert_eq!(r.header_all("x-request-id"), vec!["abc-123"]);
    }

    fn request_id_is_on_404_without_a_route(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes("[[routes]]\nname = \"api\"\nmatch = { path_prefix = \"/api\" }\nupstream = \"echo\"\n")
            .start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(client::get_req("/nowhere"));
        let r = raw.read_response();
        assert_eq!(r.status, 404, "{}", r.text());
        let id = r.header("x-request-id").unwrap_or_else(|| panic!("404 without X-Request-Id: {:?}", r.headers));
        assert!(!id.trim().is_empty(), "404 with an empty X-Request-Id");
        // A well-formed id from the client is the one the error carries.
        let r = client::call(client::agent().get(&gw.url("/nowhere")).set("X-Request-Id", "abc-123"));
        assert_eq!(r.status, 404);
        assert_eq!(r.header_all("x-request-id"), vec!["abc-123"]);
        assert_eq!(up.requests(), 0);
    }

    fn request_id_is_on_502_from_a_refused_upstream(driver: &str) {
        let dead = upstream::refused_addr();
        let gw = GatewayConfig::new(driver)
            .upstream("dead", &[dead])
            .route_all_to("dead")
            .start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(client::get_req("/"));
        let r = raw.read_response();
        assert_eq!(r.status, 502, "{}", r.text());
        let id = r.header("x-request-id").unwrap_or_else(|| panic!("502 without X-Request-Id: {:?}", r.headers));
        assert!(!id.trim().is_empty(), "502 with an empty X-Request-Id");
    }

    fn respond_route_answers_without_upstream(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(r#"
                [[routes]]
                name = "health"
                match = { path_exact = "/health" }
                respond = { status = 200, body = "ok\n", headers = { "content-type" = "text/plain" } }
            "#)
            .route_all_to("echo")
            .start();
        let r = client::get(&gw.url("/health"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "ok\n");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(up.requests(), 0);
        let mut raw = Raw::connect(gw.addr());
        raw.send("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = raw.read_response_to("HEAD");
        assert_eq!(r.status, 200);
        raw.send(client::get_req("/health"));
        assert_eq!(raw.read_response().text(), "ok\n");
    }

    fn keepalive_idle_connection_is_closed(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .timeout("keepalive_idle", "300ms")
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(client::get_req("/"));
        assert_eq!(raw.read_response().status, 200);
        let start = Instant::now();
        raw.expect_closed();
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(200), "closed after {waited:?}, before keepalive_idle");
    }

    fn slowloris_half_head_is_closed_after_head_read(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .timeout("head_read", "300ms")
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let mut raw = Raw::connect(gw.addr());
        let start = Instant::now();
        raw.send("GET /slow HTTP/1.1\r\nHost: exa");
        // The gateway may answer 408 before closing; either way the connection must end.
        match raw.try_read_response_to("GET") {
            Ok(Some(r)) => {
                assert_eq!(r.status, 408, "unexpected answer to a half head");
                raw.expect_closed();
            }
            Ok(None) => {}
            Err(e) => panic!("half head not closed: {e}"),
        }
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(200), "closed after {waited:?}, before head_read");
        assert!(waited < Duration::from_secs(5), "closed only after {waited:?}");
        assert_eq!(up.requests(), 0);
    }

    fn store_swaps_the_configuration_for_new_requests(driver: &str) {
        let respond = |body: &str| {
            GatewayConfig::new(driver).routes(&format!(
                "[[routes]]\nname = \"r\"\nmatch = {{ path_prefix = \"/\" }}\nrespond = {{ status = 200, body = \"{body}\" }}\n"
            ))
        };
        let gw = respond("old").start();
        assert_eq!(client::get(&gw.url("/")).text(), "old");
        gw.store(&respond("new"));
        assert_eq!(client::get(&gw.url("/")).text(), "new");
    }

    fn two_listeners_both_serve(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .server("listen", r#"["127.0.0.1:0", "127.0.0.2:0"]"#)
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        assert_eq!(gw.addrs().len(), 2);
        assert_ne!(gw.addrs()[0], gw.addrs()[1]);
        for addr in gw.addrs() {
            let r = client::get(&format!("http://{addr}/two"));
            assert_eq!(r.status, 200);
        }
        assert_eq!(up.requests(), 2);
    }
}
