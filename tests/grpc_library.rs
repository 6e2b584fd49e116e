//! gRPC with a real gRPC library on both ends: a tonic client through the gateway (h2c
//! listener) to a tonic server (an `h2c` upstream group), under both drivers. Unary, server
//! streaming, client streaming and bidi calls whose client sends everything before reading;
//! status codes, error details and metadata (headers and trailers) pass through; the client's
//! deadline (`grpc-timeout`) is enforced by the gateway; the gateway's own errors reach tonic
//! as their `tonic::Code`.
mod common;
#[path = "common/tonic_peers.rs"]
mod tonic_peers;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::gateway::{Gateway, GatewayConfig};
use tonic::{Code, Request};
use tonic_peers::{drain, texts, Client, TonicServer, FAIL_DETAILS};

/// The gateway with an h2c listener and every path routed to the tonic server.
fn gateway(driver: &str, server: &TonicServer) -> Gateway {
    GatewayConfig::new(driver)
        .server("h2c", "true")
        .upstream_raw(&format!(
            "[[upstreams]]\nname = \"grpc\"\nprotocol = \"h2c\"\ntargets = [ {{ addr = \"{}\" }} ]",
            server.addr()
        ))
        .route_all_to("grpc")
        .start()
}

fn message(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

driver_tests! {
    fn tonic_unary_calls_pass_with_metadata_status_and_details(driver: &str) {
        let server = TonicServer::start();
        let gw = gateway(driver, &server);
        tonic_peers::runtime().block_on(async {
            let mut client = Client::connect(gw.addr()).await;
            let mut request = Request::new(message("hello"));
            request.metadata_mut().insert("x-client-meta", "m-1".parse().expect("value"));
            let response = client.unary("Unary", request).await.expect("unary call");
            assert_eq!(response.get_ref().as_ref(), b"echo: hello");
            let echoed = response.metadata().get("x-echo-meta").map(|v| v.as_bytes());
            assert_eq!(echoed, Some(&b"m-1"[..]), "request metadata reached the server and back");
            // An error status from the server: code, message, binary details and metadata.
            let status = client
                .unary("Unary", Request::new(message("fail")))
                .await
                .expect_err("the server fails this call");
            assert_eq!(status.code(), Code::NotFound, "{status:?}");
            assert_eq!(status.message(), "no such thing");
            assert_eq!(status.details(), FAIL_DETAILS);
            let detail = status.metadata().get("x-error-detail").map(|v| v.as_bytes());
            assert_eq!(detail, Some(&b"missing"[..]), "{status:?}");
        });
        assert_eq!(server.calls(), 2);
    }

    fn tonic_server_streaming_passes_messages_and_trailers(driver: &str) {
        let server = TonicServer::start();
        let gw = gateway(driver, &server);
        tonic_peers::runtime().block_on(async {
            let mut client = Client::connect(gw.addr()).await;
            let mut stream = client
                .server_streaming("ServerStream", Request::new(message("3")))
                .await
                .expect("server streaming call")
                .into_inner();
            let (messages, end) = drain(&mut stream).await;
            assert_eq!(messages, texts(&["reply 0", "reply 1", "reply 2"]));
            assert_eq!(end.code(), Code::Ok, "{end:?}");
            // A stream that ends in an error after its messages: the status and its metadata
            // come in the trailers, after the data.
            let mut stream = client
                .server_streaming("ServerStream", Request::new(message("2 fail")))
                .await
                .expect("server streaming call")
                .into_inner();
            let (messages, end) = drain(&mut stream).await;
            assert_eq!(messages, texts(&["reply 0", "reply 1"]));
            assert_eq!(end.code(), Code::Aborted, "{end:?}");
            assert_eq!(end.message(), "stopped on purpose");
            let meta = end.metadata().get("x-trailer-meta").map(|v| v.as_bytes());
            assert_eq!(meta, Some(&b"after-data"[..]), "{end:?}");
        });
    }

    fn tonic_client_streaming_and_bidi_calls_pass(driver: &str) {
        let server = TonicServer::start();
        let gw = gateway(driver, &server);
        tonic_peers::runtime().block_on(async {
            let mut client = Client::connect(gw.addr()).await;
            let sent: Vec<Bytes> = (0..5).map(|i| message(&format!("m{i}"))).collect();
            let joined = client
                .client_streaming("ClientStream", sent.clone())
                .await
                .expect("client streaming call");
            assert_eq!(joined.get_ref().as_ref(), b"m0+m1+m2+m3+m4");
            // Bidi, the client sending all its messages before it reads.
            let mut stream = client
                .streaming("Bidi", sent)
                .await
                .expect("bidi call")
                .into_inner();
            let (messages, end) = drain(&mut stream).await;
            assert_eq!(messages, texts(&["m0", "m1", "m2", "m3", "m4"]));
            assert_eq!(end.code(), Code::Ok, "{end:?}");
        });
    }

    fn a_tonic_deadline_ends_a_stalled_call_with_deadline_exceeded(driver: &str) {
        let server = TonicServer::start();
        let gw = gateway(driver, &server);
        tonic_peers::runtime().block_on(async {
            let mut client = Client::connect(gw.addr()).await;
            // The server answers one message, then nothing. tonic times a call only until
            // the response head, so past that only the gateway enforces grpc-timeout.
            let mut request = Request::new(message("1 stall"));
            request.set_timeout(Duration::from_millis(400));
            let started = Instant::now();
            let mut stream = client
                .server_streaming("ServerStream", request)
                .await
                .expect("the call starts")
                .into_inner();
            let (messages, end) = drain(&mut stream).await;
            let waited = started.elapsed();
            assert_eq!(messages, texts(&["reply 0"]));
            assert_eq!(end.code(), Code::DeadlineExceeded, "{end:?}");
            assert_eq!(end.message(), "deadline exceeded", "the gateway's status");
            assert!(waited >= Duration::from_millis(400), "{waited:?}");
            assert!(waited < Duration::from_secs(4), "{waited:?}");
        });
        // The gateway cancelled the upstream call: the server dropped its stalled stream.
        common::wait_until("the server's stream to be cancelled", common::IO_TIMEOUT, || {
            server.cancelled() == 1
        });
    }

    fn gateway_errors_reach_tonic_as_their_codes(driver: &str) {
        let server = TonicServer::start();
        let down = common::upstream::refused_addr();
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"down\"\nprotocol = \"h2c\"\ntargets = [ {{ addr = \"{down}\" }} ]"
            ))
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"grpc\"\nprotocol = \"h2c\"\ntargets = [ {{ addr = \"{}\" }} ]",
                server.addr()
            ))
            .routes(
                "[[routes]]\nname = \"down\"\nmatch = { path_prefix = \"/down.Service/\" }\nupstream = \"down\"\n\n\
                 [[routes]]\nname = \"keyed\"\nmatch = { path_prefix = \"/test.Echo/\" }\nupstream = \"grpc\"\npolicies = [\"key\"]\n\n\
                 [policies.key]\nkind = \"api_key\"\n\n\
                 [[consumers]]\nname = \"alice\"\napi_keys = [\"k-alice-0123456789\"]\n",
            )
            .start();
        tonic_peers::runtime().block_on(async {
            let mut client = Client::connect(gw.addr()).await;
            let unary = |key: Option<&str>| {
                let mut request = Request::new(message("hi"));
                if let Some(key) = key {
                    request.metadata_mut().insert("x-api-key", key.parse().expect("value"));
                }
                request
            };
            let status = client
                .unary("/down.Service/Call", unary(None))
                .await
                .expect_err("no healthy target");
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            let status = client
                .unary("Unary", unary(None))
                .await
                .expect_err("no API key");
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            let status = client
                .unary("/nothing.Here/Call", unary(None))
                .await
                .expect_err("no route");
            assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
            // With the key, the same call reaches the server.
            let response = client
                .unary("Unary", unary(Some("k-alice-0123456789")))
                .await
                .expect("a keyed call");
            assert_eq!(response.get_ref().as_ref(), b"echo: hi");
        });
        assert_eq!(server.calls(), 1, "only the keyed call reached the server");
    }
}
