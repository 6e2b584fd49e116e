//! The HTTP/1.1 codec's edge cases end to end: higher minor versions of HTTP/1, header names
//! with `_`, HTTP/1.0 without `Host` on a Host-preserving route, an upstream that answers an
//! upload before it is through, and rewrites with an empty `{*}`.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::client::{self, Raw};
use common::gateway::GatewayConfig;
use common::upstream::{Behavior, Echoed, Upstream};

fn echo_gateway(driver: &str, up: &Upstream) -> common::gateway::Gateway {
    GatewayConfig::new(driver)
        .upstream("echo", &[up.addr()])
        .route_all_to("echo")
        .start()
}

driver_tests! {
    fn http_1_2_to_1_9_are_served_as_http_1_1(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        for minor in 2..=9 {
            raw.send(format!("GET /v/{minor} HTTP/1.{minor}\r\nHost: h\r\n\r\n"));
            let r = raw.read_response();
            assert_eq!(r.status, 200, "HTTP/1.{minor}: {}", r.text());
            let echoed = Echoed::parse(&r.text());
            assert_eq!(echoed.target, format!("/v/{minor}"));
            assert_eq!(echoed.version, "1.1", "HTTP/1.{minor} not forwarded as HTTP/1.1");
        }
        // Kept alive as HTTP/1.1 is: all eight on one connection.
        assert_eq!(up.connections(), 1);
        // Other major versions stay 505.
        raw.send("GET / HTTP/2.0\r\nHost: h\r\n\r\n");
        assert_eq!(raw.read_response().status, 505);
    }

    fn header_names_with_underscores_are_dropped_by_default(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET / HTTP/1.1\r\nHost: h\r\nX-User_Id: 7\r\nX-User-Id: 8\r\n\r\n");
        let r = raw.read_response();
        assert_eq!(r.status, 200, "{}", r.text());
        let echoed = Echoed::parse(&r.text());
        assert_eq!(echoed.header("x-user-id"), Some("8"));
        assert!(
            echoed.headers.iter().all(|(n, _)| !n.contains('_')),
            "an underscore name reached the upstream: {:?}",
            echoed.headers
        );
    }

    fn header_names_with_underscores_pass_or_are_refused_when_configured(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .server("underscores_in_headers", "\"pass\"")
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET / HTTP/1.1\r\nHost: h\r\nX-User_Id: 7\r\n\r\n");
        let echoed = Echoed::parse(&raw.read_response().text());
        assert_eq!(echoed.header("x-user_id"), Some("7"));

        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .server("underscores_in_headers", "\"refuse\"")
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET / HTTP/1.1\r\nHost: h\r\nX-User_Id: 7\r\n\r\n");
        assert_eq!(raw.read_response().status, 400);
        assert_eq!(up.requests(), 0, "a refused request reached the upstream");
    }

    fn http_1_0_without_host_sends_a_host_upstream(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /old HTTP/1.0\r\n\r\n");
        let r = raw.read_response();
        assert_eq!(r.status, 200, "{}", r.text());
        let recorded = up.last_request().expect("request");
        assert_eq!(recorded.header_all("host"), vec!["echo"], "the group's name, never an empty Host");
        // An absolute-form target names the host itself.
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET http://example.com:8080/abs HTTP/1.0\r\n\r\n");
        assert_eq!(raw.read_response().status, 200);
        let recorded = up.last_request().expect("request");
        assert_eq!(recorded.header_all("host"), vec!["example.com:8080"]);
        assert_eq!(recorded.target, "/abs");
    }

    fn an_upstream_answering_an_upload_early_is_relayed(driver: &str) {
        for status in [413, 401] {
            let up = Upstream::start("early", Behavior::EarlyAnswer(status));
            let gw = GatewayConfig::new(driver)
                .upstream("early", &[up.addr()])
                .route_all_to("early")
                .start();
            // 8 MiB, far more than the socket buffers take: the gateway is still sending
            // when the upstream answers and closes.
            const LEN: usize = 8 << 20;
            let mut stream = TcpStream::connect(gw.addr()).expect("connect");
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let mut writer = stream.try_clone().expect("clone");
            let upload = std::thread::spawn(move || {
                let head = format!("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: {LEN}\r\n\r\n");
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..LEN / chunk.len() {
                    if writer.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&answer).to_string();
            assert!(
                text.starts_with(&format!("HTTP/1.1 {status} ")),
                "an early {status} became: {text:?}"
            );
            assert!(
                text.to_ascii_lowercase().contains("connection: close"),
                "the client connection cannot be kept after a cut upload: {text:?}"
            );
            drop(stream);
            let _ = upload.join();
            assert_eq!(up.requests(), 1);
        }
    }

    fn an_empty_rest_in_a_rewrite_leaves_no_double_slash(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(
                r#"[[routes]]
name = "api"
match = { path_prefix = "/api" }
upstream = "echo"
rewrite = "/internal/{*}/v1""#,
            )
            .start();
        let mut raw = Raw::connect(gw.addr());
        for (path, upstream_path) in [
            ("/api", "/internal/v1"),
            ("/api/", "/internal/v1"),
            ("/api/a/b", "/internal/a/b/v1"),
        ] {
            raw.send(client::get_req(path));
            let r = raw.read_response();
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert_eq!(Echoed::parse(&r.text()).target, upstream_path, "{path}");
        }
    }
}

driver_tests! {
    fn http2_requests_follow_the_underscore_policy_too(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let rt = common::h2::runtime();
        let answer = rt.block_on(async {
            let client = common::h2::connect(gw.addr()).await;
            let mut request = common::h2::get(&gw.addr().to_string(), "/");
            let headers = request.headers_mut();
            headers.insert("x-user_id", http::HeaderValue::from_static("7"));
            headers.insert("x-user-id", http::HeaderValue::from_static("8"));
            common::h2::exchange(&client, request, None).await.expect("answer")
        });
        assert_eq!(answer.status, 200, "{}", answer.text());
        let echoed = Echoed::parse(&answer.text());
        assert_eq!(echoed.header("x-user-id"), Some("8"));
        assert!(
            echoed.headers.iter().all(|(n, _)| !n.contains('_')),
            "an underscore name reached the upstream over HTTP/2: {:?}",
            echoed.headers
        );
    }
}
