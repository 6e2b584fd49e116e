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
    let mut raw = Raw::connect(gw.addr());
    let head = format!(
        "POST /echo.Echo/Unary HTTP/1.1\r\nHost: {}\r\ncontent-type: {content_type}\r\nx-grpc-web: 1\r\ncontent-length: {}\r\n\r\n",
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
}
