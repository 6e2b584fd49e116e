//! Rate limiting through the gateway: the IETF RateLimit fields on every response of a
//! limited route, 429 with Retry-After, keys, and the accuracy of an instance-wide limit with
//! traffic spread over the workers and with all of it on one worker.
//!
//! Accuracy runs are short here (a loaded CI machine); `RINGGATE_ACCURACY_SECS` lengthens
//! them for the measurements documented in docs/security.md, and the tolerance follows
//! (`RINGGATE_ACCURACY_TOLERANCE`, default 0.25).
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::{get_req, Raw};
use common::gateway::GatewayConfig;
use common::upstream::Upstream;

fn limited(driver: &str, policy: &str) -> GatewayConfig {
    GatewayConfig::new(driver)
        .routes(
            "[[routes]]\nname = \"hello\"\nmatch = { path_prefix = \"/hello\" }\n\
             respond = { status = 200, body = \"hi\" }\npolicies = [\"limit\"]\n\
             [[routes]]\nname = \"free\"\nmatch = { path_prefix = \"/free\" }\n\
             respond = { status = 200, body = \"free\" }\n",
        )
        .tables(&format!(
            "[policies.limit]\nkind = \"rate_limit\"\n{policy}"
        ))
}

driver_tests! {
    fn every_response_of_a_limited_route_carries_the_fields_and_the_excess_gets_429(driver: &str) {
        let gw = limited(driver, "rate = \"3/h\"\nscope = \"worker\"\n").start();
        let mut c = Raw::connect(gw.addr());
        for remaining in [2, 1, 0] {
            c.send(get_req("/hello"));
            let r = c.read_response();
            assert_eq!(r.status, 200);
            assert_eq!(r.header("ratelimit-policy"), Some("\"limit\";q=3;w=3600"));
            let expected = format!("\"limit\";r={remaining};t=");
            let field = r.header("ratelimit").unwrap_or_default().to_string();
            assert!(field.starts_with(&expected), "{field}");
            assert!(r.header("retry-after").is_none());
        }
        c.send(get_req("/hello"));
        let r = c.read_response();
        assert_eq!(r.status, 429);
        assert!(r.header("ratelimit").is_some_and(|v| v.starts_with("\"limit\";r=0;t=")));
        let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
        assert!((1..=1200).contains(&retry), "{retry}");
        // The connection stays usable, and a route without the policy is not limited.
        c.send(get_req("/free"));
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert!(r.header("ratelimit").is_none());
    }

    fn proxied_responses_carry_the_fields_and_header_keys_have_their_own_buckets(driver: &str) {
        let up = Upstream::echo("u");
        let gw = GatewayConfig::new(driver)
            .upstream("u", &[up.addr()])
            .routes("[[routes]]\nname = \"api\"\nupstream = \"u\"\npolicies = [\"per-key\"]\n")
            .tables(
                "[policies.per-key]\nkind = \"rate_limit\"\nkey = \"header:x-api-key\"\n\
                 rate = \"1/h\"\nscope = \"worker\"\n",
            )
            .start();
        let mut c = Raw::connect(gw.addr());
        let req = |key: &str| format!("GET /x HTTP/1.1\r\nHost: h\r\nX-Api-Key: {key}\r\n\r\n");
        c.send(req("alice"));
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-policy"), Some("\"per-key\";q=1;w=3600"));
        c.send(req("alice"));
        assert_eq!(c.read_response().status, 429);
        c.send(req("bob"));
        assert_eq!(c.read_response().status, 200);
        assert_eq!(up.requests(), 2, "the refused request never went upstream");
    }

    fn a_consumer_key_limits_each_authenticated_consumer_on_its_own(driver: &str) {
        let gw = GatewayConfig::new(driver)
            .routes(
                "[[routes]]\nname = \"api\"\nrespond = { status = 200, body = \"ok\" }\n\
                 policies = [\"per-consumer\", \"keys\"]\n",
            )
            .tables(
                "[[consumers]]\nname = \"alice\"\napi_keys = [\"alice-key-0123456789abcdef\"]\n\
                 [[consumers]]\nname = \"bob\"\napi_keys = [\"bob-key-0123456789abcdef00\"]\n\
                 [policies.keys]\nkind = \"api_key\"\n\
                 [policies.per-consumer]\nkind = \"rate_limit\"\nkey = \"consumer\"\n\
                 rate = \"1/h\"\nscope = \"worker\"\n",
            )
            .start();
        let mut c = Raw::connect(gw.addr());
        let req = |key: &str| format!("GET / HTTP/1.1\r\nHost: h\r\nX-Api-Key: {key}\r\n\r\n");
        c.send(req("alice-key-0123456789abcdef"));
        assert_eq!(c.read_response().status, 200);
        c.send(req("alice-key-0123456789abcdef"));
        assert_eq!(c.read_response().status, 429);
        c.send(req("bob-key-0123456789abcdef00"));
        assert_eq!(c.read_response().status, 200);
        // A refused credential is answered by authentication, before the limit counts it.
        c.send(req("nobody-key-0123456789abcdef"));
        let r = c.read_response();
        assert_eq!(r.status, 401);
        assert!(r.header("ratelimit").is_none());
    }

    fn instance_limit_holds_with_traffic_spread_over_the_workers(driver: &str) {
        let (rate, secs) = (accuracy_rate(), accuracy_secs());
        let gw = limited(driver, &accuracy_policy(rate)).workers(2).start();
        let conns = spread_connections(gw.addr(), 8);
        let (admitted, offered) = drive(conns, Duration::from_secs(secs));
        check_accuracy("spread", admitted, offered, rate, secs);
    }

    fn instance_limit_holds_with_all_traffic_on_one_worker(driver: &str) {
        let (rate, secs) = (accuracy_rate(), accuracy_secs());
        let gw = limited(driver, &accuracy_policy(rate)).workers(2).start();
        let conns = one_worker_connections(gw.addr(), 4);
        let (admitted, offered) = drive(conns, Duration::from_secs(secs));
        check_accuracy("one worker", admitted, offered, rate, secs);
    }
}

/// One bucket for the route, holding a tenth of a second of the rate: a token bucket cannot
/// make up for a worker descheduled longer than its burst lasts (a loaded machine does that).
fn accuracy_policy(rate: u64) -> String {
    format!(
        "rate = \"{rate}/s\"\nburst = {}\nkey = \"route\"\n",
        accuracy_burst(rate)
    )
}

fn accuracy_burst(rate: u64) -> u64 {
    (rate / 10).max(10)
}

fn accuracy_secs() -> u64 {
    env_or("RINGGATE_ACCURACY_SECS", 3)
}

fn accuracy_rate() -> u64 {
    env_or("RINGGATE_ACCURACY_RATE", 200)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Admitted per second (the initial burst taken out) against the configured rate. The
/// clients must have offered clearly more than the rate, or the run says nothing.
fn check_accuracy(case: &str, admitted: u64, offered: u64, rate: u64, secs: u64) {
    let tolerance: f64 = std::env::var("RINGGATE_ACCURACY_TOLERANCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.25);
    let per_sec = admitted.saturating_sub(accuracy_burst(rate)) as f64 / secs as f64;
    let error = per_sec / rate as f64 - 1.0;
    let offered_per_sec = offered as f64 / secs as f64;
    println!(
        "{case}: admitted {per_sec:.1}/s against {rate}/s over {secs}s ({:+.1}%), \
         offered {offered_per_sec:.0}/s",
        error * 100.0
    );
    assert!(
        offered_per_sec > rate as f64 * 1.5,
        "{case}: the clients offered only {offered_per_sec:.0}/s; the machine is too busy"
    );
    assert!(
        error.abs() <= tolerance,
        "{case}: admitted {per_sec:.1}/s, configured {rate}/s"
    );
}

/// The worker a response came from: generated request ids start with a per-worker prefix.
fn worker_of(c: &mut Raw) -> String {
    c.send(get_req("/free"));
    let r = c.read_response();
    let id = r.header("x-request-id").expect("request id");
    id[..16].to_string()
}

/// `n` connections, at least one on each of the two workers.
fn spread_connections(addr: SocketAddr, n: usize) -> Vec<Raw> {
    let mut conns = Vec::new();
    let mut workers = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (conns.len() < n || workers.len() < 2) && Instant::now() < deadline {
        let mut c = Raw::connect(addr);
        workers.insert(worker_of(&mut c));
        conns.push(c);
    }
    assert!(
        workers.len() >= 2,
        "no connection reached the second worker"
    );
    conns
}

/// `n` connections, all on the worker the first one reached.
fn one_worker_connections(addr: SocketAddr, n: usize) -> Vec<Raw> {
    let mut first = Raw::connect(addr);
    let worker = worker_of(&mut first);
    let mut conns = vec![first];
    let deadline = Instant::now() + Duration::from_secs(10);
    while conns.len() < n && Instant::now() < deadline {
        let mut c = Raw::connect(addr);
        if worker_of(&mut c) == worker {
            conns.push(c);
        }
    }
    assert_eq!(
        conns.len(),
        n,
        "could not place {n} connections on one worker"
    );
    conns
}

/// Sends `GET /hello` as fast as each connection allows for `length`; returns the 200s and
/// all responses.
fn drive(conns: Vec<Raw>, length: Duration) -> (u64, u64) {
    let admitted = Arc::new(AtomicU64::new(0));
    let offered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let (admitted, stop) = (Arc::clone(&admitted), Arc::clone(&stop));
            let offered = Arc::clone(&offered);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    c.send(get_req("/hello"));
                    let r = c.read_response();
                    offered.fetch_add(1, Ordering::Relaxed);
                    match r.status {
                        200 => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        429 => {}
                        other => panic!("unexpected status {other}"),
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < length {
        std::thread::park_timeout(length.saturating_sub(started.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread");
    }
    (
        admitted.load(Ordering::Relaxed),
        offered.load(Ordering::Relaxed),
    )
}
