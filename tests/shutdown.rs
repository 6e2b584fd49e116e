//! Graceful shutdown: in-flight requests finish, new connections are refused, idle keep-alive
//! connections are closed, and a request that never finishes cannot hold shutdown past
//! `graceful_shutdown`.
mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::client::{self, Raw};
use common::gateway::{Gateway, GatewayConfig};
use common::upstream::{Behavior, Echoed, Gate, Upstream};
use common::IO_TIMEOUT;

/// Shuts the gateway down on another thread; the receiver yields when shutdown returned.
fn shutdown_in_background(gw: Gateway, limit: Duration) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        gw.shutdown_within(limit);
        let _ = tx.send(());
    });
    rx
}

/// Waits (by trying, never sleeping) until connecting to `addr` is refused.
fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            // A connection queued on a worker's SO_REUSEPORT socket as that worker closes it
            // is reset by the kernel: to the client that is a refusal too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("connect during shutdown: {e}"),
            Ok(stream) => drop(stream),
        }
        assert!(
            Instant::now() < deadline,
            "new connections still accepted {IO_TIMEOUT:?} after shutdown began"
        );
        thread::yield_now();
    }
}

driver_tests! {
    fn in_flight_request_completes_during_shutdown(driver: &str) {
        let gate = Gate::new();
        let up = Upstream::start("echo", Behavior::Gate(gate.clone()));
        let gw = GatewayConfig::new(driver)
            .workers(2)
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let addr = gw.addr();
        let mut raw = Raw::connect(addr);
        raw.send(client::get_req("/slow"));
        up.wait_for_requests(1);

        let done = shutdown_in_background(gw, Duration::from_secs(15));
        wait_until_refused(addr);
        assert!(done.try_recv().is_err(), "shutdown returned while a request was in flight");

        gate.open();
        let r = raw.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(Echoed::parse(&r.text()).target, "/slow");
        // The keep-alive connection is closed after its current response.
        raw.expect_closed();
        done.recv_timeout(IO_TIMEOUT).expect("shutdown did not return after the last response");
        assert!(TcpStream::connect(addr).is_err(), "connection accepted after shutdown");
    }

    fn idle_keep_alive_connections_are_closed_on_shutdown(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(client::get_req("/"));
        assert_eq!(raw.read_response().status, 200);
        let done = shutdown_in_background(gw, Duration::from_secs(15));
        raw.expect_closed();
        done.recv_timeout(IO_TIMEOUT).expect("shutdown did not return");
    }

    fn connection_without_request_is_closed_on_shutdown(driver: &str) {
        let gw = GatewayConfig::new(driver)
            .routes(r#"
                [[routes]]
                name = "health"
                match = { path_exact = "/health" }
                respond = { status = 200, body = "ok\n" }
            "#)
            .start();
        let mut raw = Raw::connect(gw.addr());
        let done = shutdown_in_background(gw, Duration::from_secs(15));
        raw.expect_closed();
        done.recv_timeout(IO_TIMEOUT).expect("shutdown did not return");
    }

    fn shutdown_is_bounded_by_graceful_shutdown(driver: &str) {
        // The gate is never opened: the request cannot finish.
        let up = Upstream::start("echo", Behavior::Gate(Gate::new()));
        let gw = GatewayConfig::new(driver)
            .server("graceful_shutdown", r#""500ms""#)
            .upstream_with("echo", &[up.addr()], r#"connect = "1s", first_byte = "60s", idle = "60s""#)
            .route_all_to("echo")
            .start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(client::get_req("/forever"));
        up.wait_for_requests(1);
        let start = Instant::now();
        gw.shutdown_within(Duration::from_secs(10));
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "shutdown took {took:?} with graceful_shutdown = 500ms");
        // The client is not left hanging: whatever it got, the connection ends.
        match raw.try_read_response_to("GET") {
            Ok(_) => {
                raw.read_until_closed();
            }
            Err(e) => panic!("client connection still open {IO_TIMEOUT:?} after shutdown returned: {e}"),
        }
    }

    fn idle_gateway_shuts_down_promptly(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .workers(2)
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        assert_eq!(client::get(&gw.url("/")).status, 200);
        let addr = gw.addr();
        let start = Instant::now();
        gw.shutdown_within(Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(3), "idle shutdown took {:?}", start.elapsed());
        assert!(TcpStream::connect(addr).is_err(), "connection accepted after shutdown");
    }
}
