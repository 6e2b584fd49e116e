//! `scope = "cluster"`: two ringgate processes sharing one limit through a real Redis; then
//! Redis killed: the fallback to the instance limit is logged and counted in /metrics, and
//! traffic is still limited.
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::{self, get_req, Raw};
use common::process::Ringgate;
use common::redis::Redis;
use common::IO_TIMEOUT;

const RATE: u64 = 100;
const BURST: u64 = 10;

fn config(driver: &str, redis: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
workers = 1
pin_workers = false
driver = "{driver}"

[admin]
listen = "127.0.0.1:0"

[metrics]
merge_interval = "100ms"

[redis]
url = "{redis}"

[[routes]]
name = "hello"
respond = {{ status = 200, body = "hi" }}
policies = ["shared"]

[policies.shared]
kind = "rate_limit"
key = "route"
rate = "{RATE}/s"
burst = {BURST}
scope = "cluster"
"#
    )
}

fn admin_addr(gw: &Ringgate) -> SocketAddr {
    let line = gw.wait_for_line("admin API listening on");
    line.rsplit(' ')
        .next()
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in `{line}`"))
}

fn metrics(addr: SocketAddr) -> String {
    client::get(&format!("http://{addr}/metrics")).text()
}

/// Sends `GET /` on `per_gateway` connections to each address for `length`; returns the 200s.
fn drive(addrs: &[SocketAddr], per_gateway: usize, length: Duration) -> u64 {
    let admitted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for &addr in addrs {
        for _ in 0..per_gateway {
            let (admitted, stop) = (Arc::clone(&admitted), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || {
                let mut c = Raw::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    c.send(get_req("/"));
                    match c.read_response().status {
                        200 => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        429 => {}
                        other => panic!("unexpected status {other}"),
                    }
                }
            }));
        }
    }
    let started = Instant::now();
    while started.elapsed() < length {
        std::thread::park_timeout(length.saturating_sub(started.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread");
    }
    admitted.load(Ordering::Relaxed)
}

fn per_second(admitted: u64, bursts: u64, secs: u64) -> f64 {
    admitted.saturating_sub(bursts * BURST) as f64 / secs as f64
}

driver_tests! {
    fn two_instances_share_one_limit_and_fall_back_to_their_own_when_redis_dies(driver: &str) {
        let mut redis = Redis::start();
        let a = Ringgate::spawn(&config(driver, &redis.url()), &[]);
        let b = Ringgate::spawn(&config(driver, &redis.url()), &[]);
        let a_admin = admin_addr(&a);
        let secs = 3;
        let shared = per_second(drive(&[a.addr(), b.addr()], 3, Duration::from_secs(secs)), 2, secs);
        println!("two instances, one cluster limit of {RATE}/s: admitted {shared:.1}/s");
        assert!(
            (shared - RATE as f64).abs() <= RATE as f64 * 0.3,
            "admitted {shared:.1}/s across both instances; {RATE}/s configured"
        );

        redis.kill();
        a.wait_for_line("fall back to instance limits");
        let deadline = Instant::now() + IO_TIMEOUT;
        let text = loop {
            let text = metrics(a_admin);
            if text.contains("ringgate_rate_limit_redis_up 0") {
                break text;
            }
            assert!(Instant::now() < deadline, "redis_up never went to 0:\n{text}");
        };
        let errors: f64 = text
            .lines()
            .find(|l| l.starts_with("ringgate_rate_limit_redis_errors_total "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .expect("errors counter");
        assert!(errors >= 1.0, "{text}");

        // On its own, instance A still limits, now to the whole rate.
        let alone = per_second(drive(&[a.addr()], 3, Duration::from_secs(secs)), 1, secs);
        println!("instance A with redis down: admitted {alone:.1}/s");
        assert!(
            (alone - RATE as f64).abs() <= RATE as f64 * 0.3,
            "admitted {alone:.1}/s with redis down; {RATE}/s configured"
        );
    }
}
