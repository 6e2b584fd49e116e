//! W3C Trace Context through the gateway: what the upstream receives in `traceparent` and
//! `tracestate` when the client sends none, a valid context, or an invalid one.
mod common;

use common::client::{self, Raw};
use common::gateway::{Gateway, GatewayConfig};
use common::upstream::{Echoed, Upstream};

const CLIENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT_ID: &str = "00f067aa0ba902b7";

fn echo_gateway(driver: &str, up: &Upstream) -> Gateway {
    GatewayConfig::new(driver)
        .upstream("echo", &[up.addr()])
        .route_all_to("echo")
        .start()
}

/// A well-formed version-00 `traceparent`, split into (trace id, parent id, flags); panics
/// (failing the test) on anything else.
fn fields(value: &str) -> (&str, &str, &str) {
    let parts: Vec<&str> = value.split('-').collect();
    let [version, trace_id, parent_id, flags] = parts[..] else {
        panic!("not a traceparent: {value:?}");
    };
    assert_eq!(version, "00", "{value}");
    assert_eq!(
        (trace_id.len(), parent_id.len(), flags.len()),
        (32, 16, 2),
        "{value}"
    );
    for id in [trace_id, parent_id, flags] {
        assert!(
            id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "not lower-case hex: {value}"
        );
    }
    assert!(
        trace_id.bytes().any(|b| b != b'0'),
        "zero trace id: {value}"
    );
    assert!(
        parent_id.bytes().any(|b| b != b'0'),
        "zero parent id: {value}"
    );
    (trace_id, parent_id, flags)
}

/// The one `traceparent` the upstream received.
fn received_traceparent(e: &Echoed) -> String {
    let all = e.header_all("traceparent");
    assert_eq!(all.len(), 1, "upstream got {all:?}");
    all[0].to_string()
}

driver_tests! {
    fn request_without_traceparent_starts_a_sampled_trace(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let first = Echoed::parse(&client::get(&gw.url("/a")).text());
        let value = received_traceparent(&first);
        let (trace_id, _, flags) = fields(&value);
        assert_eq!(flags, "01", "a trace the gateway starts is sampled");
        assert_eq!(first.header("tracestate"), None);
        let second = Echoed::parse(&client::get(&gw.url("/b")).text());
        let again = received_traceparent(&second);
        assert_ne!(fields(&again).0, trace_id, "each request starts its own trace");
    }

    fn valid_traceparent_is_continued_with_a_new_span(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let client_value = format!("00-{CLIENT_TRACE_ID}-{CLIENT_PARENT_ID}-01");
        let r = client::call(
            client::agent()
                .get(&gw.url("/traced"))
                .set("traceparent", &client_value)
                .set("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let e = Echoed::parse(&r.text());
        let value = received_traceparent(&e);
        let (trace_id, parent_id, flags) = fields(&value);
        assert_eq!(trace_id, CLIENT_TRACE_ID);
        assert_eq!(flags, "01");
        assert_ne!(parent_id, CLIENT_PARENT_ID, "the gateway is a hop: new parent id");
        assert_eq!(e.header_all("tracestate"), ["congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"]);
    }

    fn unsampled_flags_are_kept(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send(format!(
            "GET /u HTTP/1.1\r\nHost: example.com\r\n\
traceparent: 00-{CLIENT_TRACE_ID}-{CLIENT_PARENT_ID}-00\r\n\r\n"
        ));
        let e = Echoed::parse(&raw.read_response().text());
        let value = received_traceparent(&e);
        let (trace_id, _, flags) = fields(&value);
        assert_eq!((trace_id, flags), (CLIENT_TRACE_ID, "00"));
    }

    fn invalid_traceparent_starts_a_new_trace(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let upper = CLIENT_TRACE_ID.to_ascii_uppercase();
        for bad in [
            format!("00-{upper}-{CLIENT_PARENT_ID}-01"),
            format!("ff-{CLIENT_TRACE_ID}-{CLIENT_PARENT_ID}-01"),
            format!("00-{}-{CLIENT_PARENT_ID}-01", "0".repeat(32)),
            format!("00-{CLIENT_TRACE_ID}-{CLIENT_PARENT_ID}-01-extra"),
            "garbage".to_string(),
        ] {
            let r = client::call(
                client::agent()
                    .get(&gw.url("/bad"))
                    .set("traceparent", &bad)
                    .set("tracestate", "congo=t61rcWkgMzE"),
            );
            assert_eq!(r.status, 200, "{bad}: {}", r.text());
            let e = Echoed::parse(&r.text());
            let value = received_traceparent(&e);
            let (trace_id, _, flags) = fields(&value);
            assert_ne!(trace_id, CLIENT_TRACE_ID, "{bad}");
            assert_ne!(trace_id, CLIENT_TRACE_ID.to_ascii_uppercase(), "{bad}");
            assert_eq!(flags, "01", "{bad}");
            assert_eq!(e.header("tracestate"), None, "{bad}: tracestate of a dropped trace");
        }
    }

    fn invalid_tracestate_is_dropped_but_the_trace_continues(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = echo_gateway(driver, &up);
        let too_long = format!("a={}", "x".repeat(600));
        let r = client::call(
            client::agent()
                .get(&gw.url("/long"))
                .set("traceparent", &format!("00-{CLIENT_TRACE_ID}-{CLIENT_PARENT_ID}-01"))
                .set("tracestate", &too_long),
        );
        let e = Echoed::parse(&r.text());
        let value = received_traceparent(&e);
        assert_eq!(fields(&value).0, CLIENT_TRACE_ID);
        assert_eq!(e.header("tracestate"), None);
    }
}
