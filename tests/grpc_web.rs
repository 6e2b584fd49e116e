//! gRPC-Web through the gateway to the h2c gRPC upstream of the gRPC tests: binary and text
//! requests over HTTP/1.1 (raw bytes) and HTTP/2, with the exact body the client gets
//! (message frame, then the trailer frame; base64 for text), and the gateway's own error as a
//! gRPC-Web answer, under both drivers.
mod common;

use base64::Engine as _;
use common::client::Raw;
use common::gateway::{Gateway, GatewayConfig};
use common::h2::{self as h2c, H2Upstream, Mode};

/// A gateway with h2c on, routing `/echo.Echo/` to the h2c group `g` at `addr`.
fn gateway(driver: &str, addr: std::net::SocketAddr) -> Gateway {
    GatewayConfig::new(driver)
        .server("h2c", "true")
        .upstream_raw(&format!(
            "[[upstreams]]\nname = \"g\"\nprotocol = \"h2c\"\ntargets = [ {{ addr = \"{addr}\" }} ]"
        ))
        .route_all_to("g")
        .start()
}

/// A gateway whose route `/echo.Echo/` needs an API key before the h2c group `g`, with a
/// rate limit of one request an hour per consumer; no other route.
fn keyed_gateway(driver: &str, addr: std::net::SocketAddr) -> Gateway {
    GatewayConfig::new(driver)
        .server("h2c", "true")
        .upstream_raw(&format!(
            "[[upstreams]]\nname = \"g\"\nprotocol = \"h2c\"\ntargets = [ {{ addr = \"{addr}\" }} ]"
        ))
        .routes(
            "[[routes]]\nname = \"echo\"\nmatch = { path_prefix = \"/echo.Echo/\" }\n\
             upstream = \"g\"\npolicies = [\"key\", \"limit\"]",
        )
        .tables(
            "[policies.key]\nkind = \"api_key\"\n\
             [policies.limit]\nkind = \"rate_limit\"\nkey = \"consumer\"\nrate = \"1/h\"\n\
             [[consumers]]\nname = \"alice\"\napi_keys = [\"alice-key-0123456789\"]",
        )
        .start()
}

/// One gRPC message frame: uncompressed flag, big-endian length, payload.
fn grpc_message(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The echo upstream's answer to `message` as a gRPC-Web body: the message, then the
/// trailer frame.
fn web_body(message: &[u8]) -> Vec<u8> {
    let trailers = b"grpc-status: 0\r\ngrpc-message: ok\r\n";
    let mut out = message.to_vec();
    out.push(0x80);
    out.extend_from_slice(&(trailers.len() as u32).to_be_bytes());
    out.extend_from_slice(trailers);
    out
}

/// A gRPC-Web call over HTTP/1.1.
fn web_call(gw: &Gateway, content_type: &str, body: &[u8]) -> common::client::RawResponse {
    web_call_to(gw, "/echo.Echo/Unary", content_type, "", body)
}

/// A gRPC-Web call over HTTP/1.1 to `path`, with `extra` header lines (each ending in CRLF).
fn web_call_to(
    gw: &Gateway,
    path: &str,
    content_type: &str,
    extra: &str,
    body: &[u8],
) -> common::client::RawResponse {
    let mut raw = Raw::connect(gw.addr());
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\ncontent-type: {content_type}\r\nx-grpc-web: 1\r\n{extra}content-length: {}\r\n\r\n",
        gw.addr(),
        body.len()
    );
    raw.send(head.as_bytes());
    raw.send(body);
    raw.read_response()
}

driver_tests! {
    fn grpc_web_binary_and_text_calls_over_http11_get_message_and_trailer_frames(driver: &str) {
        let upstream = H2Upstream::start("grpc-web", Mode::StreamEcho);
        let gw = gateway(driver, upstream.addr());
        let message = grpc_message(b"hello web");

        let binary = web_call(&gw, "application/grpc-web+proto", &message);
        assert_eq!(binary.status, 200, "{binary:?}");
        assert_eq!(binary.header("content-type"), Some("application/grpc-web"));
        assert_eq!(binary.body, web_body(&message));

        let b64 = base64::engine::general_purpose::STANDARD;
        let text = web_call(&gw, "application/grpc-web-text", b64.encode(&message).as_bytes());
        assert_eq!(text.status, 200, "{text:?}");
        assert_eq!(text.header("content-type"), Some("application/grpc-web-text"));
        assert_eq!(text.text(), b64.encode(web_body(&message)));
        assert_eq!(upstream.requests(), 2);
    }

    fn grpc_web_over_http2_gets_the_same_body(driver: &str) {
        let upstream = H2Upstream::start("grpc-web-h2", Mode::StreamEcho);
        let gw = gateway(driver, upstream.addr());
        let authority = gw.addr().to_string();
        let message = grpc_message(b"over h2");
        h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            let request = http::Request::builder()
                .method("POST")
                .uri(format!("http://{authority}/echo.Echo/Unary"))
                .header("content-type", "application/grpc-web+proto")
                .body(())
                .expect("request");
            let answer = h2c::exchange(&client, request, Some(message.clone()))
                .await
                .expect("answer");
            assert_eq!(answer.status, 200);
            assert_eq!(answer.header("content-type"), Some("application/grpc-web"));
            assert_eq!(answer.body, web_body(&message));
        });
    }

    fn gateway_errors_on_grpc_web_calls_are_grpc_web_answers(driver: &str) {
        let gw = gateway(driver, common::upstream::refused_addr());
        let answer = web_call(&gw, "application/grpc-web+proto", &grpc_message(b"x"));
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("content-type"), Some("application/grpc-web+proto"));
        assert_eq!(answer.header("grpc-status"), Some("14"), "{answer:?}");
        assert!(answer.header("grpc-message").is_some());
        assert!(answer.body.is_empty());
        let text = web_call(&gw, "application/grpc-web-text", b"AAAAAAF4");
        assert_eq!(text.header("content-type"), Some("application/grpc-web-text+proto"));
        assert_eq!(text.header("grpc-status"), Some("14"), "{text:?}");
    }

    fn gateway_answers_before_a_group_is_chosen_are_grpc_web_answers(driver: &str) {
        let upstream = H2Upstream::start("grpc-web-keyed", Mode::StreamEcho);
        let gw = keyed_gateway(driver, upstream.addr());
        let message = grpc_message(b"x");
        let cases = [
            ("/echo.Echo/Unary", "", "16"),                    // no key: UNAUTHENTICATED
            ("/other.Service/Call", "", "12"),                 // no route: UNIMPLEMENTED
        ];
        for (path, extra, code) in cases {
            let answer = web_call_to(&gw, path, "application/grpc-web+proto", extra, &message);
            assert_eq!(answer.status, 200, "{path}: {answer:?}");
            assert_eq!(answer.header("content-type"), Some("application/grpc-web+proto"));
            assert_eq!(answer.header("grpc-status"), Some(code), "{path}: {answer:?}");
            assert!(answer.body.is_empty(), "{path}: trailers-only");
        }
        // The consumer's one request an hour goes through; the next is RESOURCE_EXHAUSTED,
        // in the text flavour's content type.
        let key = "x-api-key: alice-key-0123456789\r\n";
        let ok = web_call_to(&gw, "/echo.Echo/Unary", "application/grpc-web+proto", key, &message);
        assert_eq!(ok.body, web_body(&message), "{ok:?}");
        let limited = web_call_to(&gw, "/echo.Echo/Unary", "application/grpc-web-text", key, b"AAAAAAF4");
        assert_eq!(limited.header("content-type"), Some("application/grpc-web-text+proto"));
        assert_eq!(limited.header("grpc-status"), Some("8"), "{limited:?}");
        // A plain HTTP request on the same gateway still gets HTTP statuses.
        let plain = web_call_to(&gw, "/other.Service/Call", "application/json", "", b"{}");
        assert_eq!(plain.status, 404, "{plain:?}");
    }

    fn grpc_timeout_bounds_a_grpc_web_call(driver: &str) {
        // An h2c "upstream" that accepts and never answers, not even the HTTP/2 preface.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr");
        std::thread::spawn(move || {
            let held: Vec<_> = silent.incoming().collect();
            drop(held);
        });
        let gw = gateway(driver, addr);
        let started = std::time::Instant::now();
        let extra = "grpc-timeout: 300m\r\n";
        let answer = web_call_to(&gw, "/echo.Echo/Unary", "application/grpc-web+proto", extra, &grpc_message(b"x"));
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("grpc-status"), Some("4"), "DEADLINE_EXCEEDED: {answer:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "the call's 300 ms deadline, not the group's 5 s timeouts: {:?}",
            started.elapsed()
        );
    }
}
