//! Idle keep-alive connections: a connection that stays quiet past the idle grace (100 ms)
//! is parked without its buffers, resumes when the client sends again, and is closed at
//! `keepalive_idle` or on shutdown like any other idle connection.
//!
//! These tests idle on purpose: the quiet period is the behaviour under test, not a way to
//! wait for something else.
mod common;

use std::time::{Duration, Instant};

use common::client::{self, Raw};
use common::gateway::GatewayConfig;
use common::upstream::{Echoed, Upstream};

/// Longer than the gateway's idle grace, so the connection is parked.
const PAST_GRACE: Duration = Duration::from_millis(300);

driver_tests! {
    fn parked_connection_serves_its_next_requests(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let mut raw = Raw::connect(gw.addr());
        for round in 0..3 {
            let path = format!("/round/{round}");
            raw.send(client::get_req(&path));
            let r = raw.read_response();
            assert_eq!(r.status, 200);
            assert_eq!(Echoed::parse(&r.text()).target, path);
            std::thread::sleep(PAST_GRACE);
        }
        // Pipelined requests sent to a parked connection are all answered, in order.
        raw.send(format!("{}{}", client::get_req("/p/1"), client::get_req("/p/2")));
        assert_eq!(Echoed::parse(&raw.read_response().text()).target, "/p/1");
        assert_eq!(Echoed::parse(&raw.read_response().text()).target, "/p/2");
    }

    fn parked_connection_closes_at_keepalive_idle(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .timeout("keepalive_idle", "400ms")
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(client::get_req("/"));
        assert_eq!(raw.read_response().status, 200);
        let start = Instant::now();
        raw.expect_closed();
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(350), "closed after only {waited:?}");
        assert!(waited < Duration::from_secs(5), "closed only after {waited:?}");
    }

    fn parked_connection_closes_on_shutdown(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(client::get_req("/"));
        assert_eq!(raw.read_response().status, 200);
        std::thread::sleep(PAST_GRACE);
        let start = Instant::now();
        gw.shutdown_within(Duration::from_secs(10));
        raw.expect_closed();
        assert!(start.elapsed() < Duration::from_secs(3), "parked connection held shutdown");
    }
}
