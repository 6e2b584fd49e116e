//! Full-duplex gRPC through the gateway: a ping-pong bidi stream (each message sent only
//! after the answer to the previous one arrived) to an h2c upstream, and a client reset in
//! the middle of such a stream cancelling the upstream stream, under both drivers.
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::gateway::{Gateway, GatewayConfig};
use common::h2::{self as h2c, H2Upstream, Mode};

/// A gateway with h2c in front of the h2c group `g`.
fn gateway(driver: &str, upstream: &H2Upstream) -> Gateway {
    GatewayConfig::new(driver)
        .server("h2c", "true")
        .upstream_raw(&format!(
            "[[upstreams]]\nname = \"g\"\nprotocol = \"h2c\"\ntargets = [ {{ addr = \"{}\" }} ]",
            upstream.addr()
        ))
        .route_all_to("g")
        .start()
}

/// A bidi streaming call's head.
fn bidi_call(authority: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}/echo.Echo/Bidi"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request")
}

/// One gRPC message frame: uncompressed flag, big-endian length, payload.
fn grpc_message(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads exactly `n` bytes of response body (DATA frames may be split or merged).
async fn read_exactly(recv: &mut h2::RecvStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let chunk = recv
            .data()
            .await
            .expect("more response data")
            .expect("data frame");
        let _ = recv.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    got
}

driver_tests! {
    fn a_ping_pong_bidi_stream_makes_ten_round_trips(driver: &str) {
        let upstream = H2Upstream::start("bidi", Mode::StreamEcho);
        let gw = gateway(driver, &upstream);
        let authority = gw.addr().to_string();
        h2c::runtime().block_on(async {
            let call = async {
                let client = h2c::connect(gw.addr()).await;
                let mut sender = client.ready().await.expect("ready");
                let (response, mut send) = sender.send_request(bidi_call(&authority), false).expect("send");
                let first = grpc_message(b"ping 0");
                send.send_data(Bytes::from(first.clone()), false).expect("data");
                let response = response.await.expect("response head");
                assert_eq!(response.status(), 200);
                let mut recv = response.into_body();
                assert_eq!(read_exactly(&mut recv, first.len()).await, first);
                for i in 1..10 {
                    let message = grpc_message(format!("ping {i}").as_bytes());
                    send.send_data(Bytes::from(message.clone()), false).expect("data");
                    assert_eq!(read_exactly(&mut recv, message.len()).await, message, "round trip {i}");
                }
                send.send_data(Bytes::new(), true).expect("end");
                assert!(recv.data().await.is_none(), "no more data");
                let trailers = recv.trailers().await.expect("trailers").expect("some trailers");
                assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
            };
            tokio::time::timeout(common::IO_TIMEOUT, call).await.expect("the call does not stall");
        });
    }

    fn a_client_reset_mid_stream_cancels_the_upstream_stream(driver: &str) {
        let upstream = H2Upstream::start("bidi-reset", Mode::StreamEcho);
        let gw = gateway(driver, &upstream);
        let authority = gw.addr().to_string();
        h2c::runtime().block_on(async {
            let call = async {
                let client = h2c::connect(gw.addr()).await;
                let mut sender = client.ready().await.expect("ready");
                let (response, mut send) = sender.send_request(bidi_call(&authority), false).expect("send");
                let message = grpc_message(b"ping");
                send.send_data(Bytes::from(message.clone()), false).expect("data");
                let mut recv = response.await.expect("response head").into_body();
                assert_eq!(read_exactly(&mut recv, message.len()).await, message);
                assert_eq!(upstream.failed_streams(), 0);
                send.send_reset(h2::Reason::CANCEL);
                // Keep the client connection running while the gateway reacts.
                let deadline = tokio::time::Instant::now() + common::IO_TIMEOUT;
                while upstream.failed_streams() == 0 {
                    assert!(tokio::time::Instant::now() < deadline, "the upstream stream was not cancelled");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                assert_eq!(upstream.requests(), 1);
            };
            tokio::time::timeout(common::IO_TIMEOUT * 2, call).await.expect("the call does not stall");
        });
    }
}
