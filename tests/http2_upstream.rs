//! HTTP/2 upstreams: h2 over TLS (ALPN) to a real h2 server (a second gateway), and the
//! connection management a raw-frame upstream puts on cue: `GOAWAY` with a stream in flight
//! (it finishes; new streams go to a new connection), `REFUSED_STREAM` (sent again on
//! another connection), PINGs (answered: the connection is kept; unanswered: it is closed),
//! under both drivers.
mod common;

use std::time::Duration;

use common::client::{get_req, Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::h2_scripted::{Script, ScriptedH2};
use common::tls::{toml_path, Kind, Pki};
use common::upstream::{Echoed, Gate, Upstream};
use common::wait_until;
use ringgate::metrics::Protocol;

const WAIT: Duration = Duration::from_secs(10);

/// A gateway whose catch-all route goes to the h2c group `u` at `scripted`, with `http2` as
/// the group's HTTP/2 settings.
fn h2c_gateway(driver: &str, scripted: &ScriptedH2, http2: &str) -> Gateway {
    GatewayConfig::new(driver)
        .upstream_raw(&format!(
            "[[upstreams]]\nname = \"u\"\nprotocol = \"h2c\"\ntargets = [ {{ addr = \"{}\" }} ]\nhttp2 = {{ {http2} }}\n",
            scripted.addr()
        ))
        .route_all_to("u")
        .start()
}

fn get(gw: &Gateway, path: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(get_req(path));
    raw.read_response()
}

driver_tests! {
    fn h2_upstreams_are_reached_over_tls_with_alpn(driver: &str) {
        let pki = Pki::new("h2-upstream");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let echo = Upstream::echo("echo");
        // The h2 server: a second gateway, TLS with ALPN h2, in front of the echo upstream.
        let inner = GatewayConfig::new(driver)
            .tls_listener(&format!(
                "certificates = [ {{ cert = {}, key = {} }} ]\nalpn = [\"h2\", \"http/1.1\"]",
                toml_path(&server.cert),
                toml_path(&server.key)
            ))
            .merge_interval("100ms")
            .upstream("echo", &[echo.addr()])
            .route_all_to("echo")
            .start();
        let outer = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"h2\"\nprotocol = \"h2\"\ntargets = [ {{ addr = \"{}\" }} ]\n\
                 tls = {{ sni = \"gateway.test\", ca = {} }}\n",
                inner.tls_addr(),
                toml_path(&pki.ca_path())
            ))
            .route_all_to("h2")
            .start();
        for i in 0..3 {
            let r = get(&outer, &format!("/over/tls/{i}"));
            assert_eq!(r.status, 200, "{}", r.text());
            let echoed = Echoed::parse(&r.text());
            assert_eq!(echoed.target, format!("/over/tls/{i}"));
            assert_eq!(echoed.header_all("x-forwarded-proto"), vec!["https"], "the inner hop was TLS");
        }
        // The inner gateway served them as HTTP/2 streams, on one connection.
        let metrics = inner.metrics_until(|m| m.requests_by_protocol(Protocol::H2) == 3);
        assert_eq!(metrics.requests_by_protocol(Protocol::Http1), 0);
        assert_eq!(echo.requests(), 3);
    }

    fn after_a_goaway_the_stream_in_flight_finishes_and_new_ones_take_a_new_connection(driver: &str) {
        let gate = Gate::new();
        let scripted = ScriptedH2::start(Script::GoAwayHolding(gate.clone()));
        let gw = h2c_gateway(driver, &scripted, "");
        let addr = gw.addr();
        let held = std::thread::spawn(move || {
            let mut raw = Raw::connect(addr);
            raw.send(get_req("/held"));
            raw.read_response()
        });
        wait_until("the GOAWAY", WAIT, || scripted.goaways_sent() == 1);
        let fresh = get(&gw, "/fresh");
        assert_eq!(fresh.status, 200, "{}", fresh.text());
        assert_eq!(fresh.text(), "conn 2 stream 1", "a new connection took the new stream");
        gate.open();
        let held = held.join().expect("held request");
        assert_eq!(held.status, 200, "{}", held.text());
        assert_eq!(held.text(), "conn 1 stream 1", "the stream in flight finished");
        assert_eq!(scripted.connections(), 2);
    }

    fn a_refused_stream_is_sent_again_on_another_connection(driver: &str) {
        let scripted = ScriptedH2::start(Script::RefuseFirstStream);
        let gw = h2c_gateway(driver, &scripted, "");
        let r = get(&gw, "/refused-once");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "conn 2 stream 1");
        assert_eq!(scripted.streams(), 2, "one refused, one answered");
    }

    fn a_refused_stream_sent_again_carries_its_body_after_a_head_sent_alone(driver: &str) {
        let scripted = ScriptedH2::start(Script::RefuseFirstStream);
        let gw = h2c_gateway(driver, &scripted, "");
        let body = b"0123456789abcdef";
        let mut raw = Raw::connect(gw.addr());
        raw.send(format!(
            "POST /refused-once HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: {}\r\n\
             Expect: 100-continue\r\n\r\n",
            body.len()
        ));
        // The head goes upstream alone (the gateway does not wait for a body the client holds
        // back until 100 Continue); the body follows in a later write.
        wait_until("the stream's head upstream", WAIT, || scripted.streams() == 1);
        raw.send(body);
        let (_, r) = raw.read_response_and_interims("POST");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "conn 2 stream 1");
        let sum: usize = body.iter().map(|&b| usize::from(b)).sum();
        assert_eq!(scripted.data_sum(), 2 * sum, "the body, refused, then sent again");
    }

    fn answered_pings_keep_the_connection_and_an_unanswered_one_closes_it(driver: &str) {
        let pings = "ping_interval = \"20ms\", ping_timeout = \"200ms\"";
        let answering = ScriptedH2::start(Script::Answer);
        let gw = h2c_gateway(driver, &answering, pings);
        assert_eq!(get(&gw, "/one").text(), "conn 1 stream 1");
        wait_until("three PINGs", WAIT, || answering.pings() >= 3);
        assert_eq!(get(&gw, "/two").text(), "conn 1 stream 3", "the connection was kept");
        assert_eq!(answering.closed(), 0);
        drop(gw);

        let silent = ScriptedH2::start(Script::IgnorePings);
        let gw = h2c_gateway(driver, &silent, pings);
        assert_eq!(get(&gw, "/one").text(), "conn 1 stream 1");
        wait_until("the gateway to close the silent connection", WAIT, || silent.closed() == 1);
        assert!(silent.pings() >= 1);
        let r = get(&gw, "/two");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "conn 2 stream 1", "a new connection after the dead one");
    }
}
