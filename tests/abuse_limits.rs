//! Abuse limits: connection caps per worker and per client address, per-route body caps,
//! the minimum body rate (slow-body attack), and normal clients served while 2,000 slow
//! connections are held open.
mod common;

use std::time::{Duration, Instant};

use std::net::SocketAddr;

use common::client::{self, get_req, Raw};
use common::gateway::{Gateway, GatewayConfig};
use common::process::Ringgate;
use common::upstream::Upstream;

/// Waits until a fresh connection gets an answer (the gateway saw an earlier close).
fn served_again(gw: &Gateway) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut c = Raw::connect(gw.addr());
        if c.try_send(get_req("/")).is_ok() {
            if let Ok(Some(r)) = c.try_read_response_to("GET") {
                return r.status == 200;
            }
        }
        std::thread::yield_now();
    }
    false
}

fn static_route() -> &'static str {
    "[[routes]]\nname = \"ok\"\nrespond = { status = 200, body = \"ok\" }\n"
}

const ADMIN_TOKEN: &str = "abuse-limits-token";

/// The binary with an admin listener, one worker and the cap `limit = 1`; returns it and its
/// admin address.
fn capped_binary(driver: &str, limit: &str) -> (Ringgate, SocketAddr) {
    let text = GatewayConfig::new(driver)
        .limit(limit, "1")
        .routes(static_route())
        .render()
        + &format!(
            "\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n\
             \n[metrics]\nmerge_interval = \"100ms\"\n"
        );
    let gw = Ringgate::spawn(&text, &[]);
    let line = gw.wait_for_line("admin API listening on");
    let admin = line
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("admin addr");
    (gw, admin)
}

/// Polls the admin `/metrics` until it has every line of `want`.
fn metrics_until(admin: SocketAddr, want: &[String]) -> String {
    let deadline = Instant::now() + common::IO_TIMEOUT;
    loop {
        let req = client::agent()
            .get(&format!("http://{admin}/metrics"))
            .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"));
        let text = String::from_utf8_lossy(&client::call(req).body).into_owned();
        if want.iter().all(|w| text.lines().any(|l| l == w)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {want:?}:\n{text}"
        );
        std::thread::yield_now();
    }
}

driver_tests! {
    fn connections_beyond_the_worker_cap_are_closed_unread(driver: &str) {
        let gw = GatewayConfig::new(driver)
            .limit("max_connections_per_worker", "2")
            .routes(static_route())
            .start();
        let mut held: Vec<Raw> = (0..2).map(|_| Raw::connect(gw.addr())).collect();
        // The two are admitted: each is served.
        for c in &mut held {
            c.send(get_req("/"));
            assert_eq!(c.read_response().status, 200);
        }
        let mut third = Raw::connect(gw.addr());
        let _ = third.try_send(get_req("/"));
        third.expect_closed();
        drop(held.pop());
        assert!(served_again(&gw), "a slot freed by a close is usable again");
    }

    fn connections_beyond_the_address_cap_are_closed_unread(driver: &str) {
        let gw = GatewayConfig::new(driver)
            .limit("max_connections_per_ip", "3")
            .routes(static_route())
            .start();
        let mut held: Vec<Raw> = (0..3).map(|_| Raw::connect(gw.addr())).collect();
        for c in &mut held {
            c.send(get_req("/"));
            assert_eq!(c.read_response().status, 200);
        }
        let mut extra = Raw::connect(gw.addr());
        let _ = extra.try_send(get_req("/"));
        extra.expect_closed();
        held.clear();
        assert!(served_again(&gw));
    }

    /// End to end through the binary: refusals by each cap show on the admin `/metrics`.
    fn refused_connections_show_on_the_metrics_endpoint(driver: &str) {
        for (limit, reason) in [
            ("max_connections_per_worker", "worker_limit"),
            ("max_connections_per_ip", "ip_limit"),
        ] {
            let (gw, admin) = capped_binary(driver, limit);
            let mut held = Raw::connect(gw.addr());
            held.send(get_req("/"));
            assert_eq!(held.read_response().status, 200, "{limit}");
            for _ in 0..2 {
                let mut refused = Raw::connect(gw.addr());
                let _ = refused.try_send(get_req("/"));
                refused.expect_closed();
            }
            let other = if reason == "worker_limit" { "ip_limit" } else { "worker_limit" };
            metrics_until(admin, &[
                format!("ringgate_connections_refused_total{{reason=\"{reason}\"}} 2"),
                format!("ringgate_connections_refused_total{{reason=\"{other}\"}} 0"),
            ]);
        }
    }

    fn a_route_body_limit_overrides_the_server_limit(driver: &str) {
        let up = Upstream::echo("u");
        let gw = GatewayConfig::new(driver)
            .upstream("u", &[up.addr()])
            .routes(
                "[[routes]]\nname = \"small\"\nmatch = { path_prefix = \"/small\" }\n\
                 upstream = \"u\"\nmax_body_bytes = 100\n\
                 [[routes]]\nname = \"rest\"\nupstream = \"u\"\n",
            )
            .start();
        let body = vec![b'x'; 200];
        let post = |path: &str| {
            let mut c = Raw::connect(gw.addr());
            c.send(format!(
                "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
                body.len()
            ));
            c.send(&body);
            c.read_response().status
        };
        assert_eq!(post("/small"), 413);
        assert_eq!(post("/other"), 200);
        assert_eq!(up.requests(), 1);
    }

    fn a_body_trickled_below_the_minimum_rate_is_cut_off_with_408(driver: &str) {
        let up = Upstream::echo("u");
        let gw = GatewayConfig::new(driver)
            .limit("min_body_rate", "\"1KiB/s\"")
            .timeout("body_idle", "30s")
            .upstream("u", &[up.addr()])
            .route_all_to("u")
            .start();
        // A small body (read before forwarding) and a large one (streamed upstream).
        for length in [1_000usize, 200_000] {
            let mut c = Raw::connect(gw.addr());
            c.send(format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {length}\r\n\r\n"));
            let started = Instant::now();
            // 10 bytes every 200 ms: 50 B/s, far below 1 KiB/s, far above the idle timeout.
            let status = loop {
                if c.try_send([b'x'; 10]).is_err() {
                    break None;
                }
                c.set_read_timeout(Duration::from_millis(200));
                match c.try_read_response_to("POST") {
                    Ok(Some(r)) => break Some(r.status),
                    Ok(None) => break None,
                    Err(_) => {}
                }
                assert!(started.elapsed() < Duration::from_secs(20), "never cut off");
            };
            let elapsed = started.elapsed();
            // 408 if the answer could still be sent (small body); the streamed one may only
            // see the connection end, since its head already went upstream.
            if length < 65_536 {
                assert_eq!(status, Some(408), "length {length}");
            }
            assert!(
                elapsed < Duration::from_secs(10),
                "length {length}: cut off after {elapsed:?}, not by the 30 s idle timeout"
            );
        }
    }

    fn normal_clients_are_served_while_2000_slow_connections_are_held(driver: &str) {
        // 2,000 test-side sockets, 2,000 gateway-side, for each driver's run (they may run
        // at once), and the rest of the test binary.
        common::raise_fd_limit(20_000, 4_500);
        let gw = GatewayConfig::new(driver)
            .timeout("head_read", "60s")
            .routes(static_route())
            .start();
        let mut slow = Vec::with_capacity(2_000);
        for i in 0..2_000 {
            let mut c = Raw::connect(gw.addr());
            // Half send a partial head, half send nothing at all.
            if i % 2 == 0 {
                c.send("GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ");
            }
            slow.push(c);
        }
        let mut worst = Duration::ZERO;
        for _ in 0..50 {
            let started = Instant::now();
            let mut c = Raw::connect(gw.addr());
            c.send(get_req("/"));
            assert_eq!(c.read_response().status, 200);
            worst = worst.max(started.elapsed());
        }
        println!("worst latency with 2000 slow connections held: {worst:?}");
        assert!(worst < Duration::from_secs(2), "worst latency {worst:?}");
        // The slow connections are still open (held, not dropped to make room).
        let mut sample = slow.swap_remove(0);
        sample.send("still-here\r\n\r\n");
        assert_eq!(sample.read_response().status, 200);
        drop(slow);
    }
}
