//! HTTP Basic password verification runs in the verifier pool, not on the worker: a flood of
//! wrong passwords (argon2 at a cost that makes each verification take 20 ms or more) does not
//! hold up other requests on the same worker, a full verification queue answers 503 at once,
//! and good passwords still pass.
mod common;

use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::upstream::Upstream;
use ringgate::metrics::PolicyOutcome;

/// Concurrent wrong-password attempts.
const ATTEMPTS: usize = 20;
const PASSWORD: &str = "right-password";

/// An argon2id hash of [`PASSWORD`] at the cheapest memory cost whose verification takes at
/// least 20 ms in this build, and the time one verification takes.
fn costly_hash() -> (String, Duration) {
    use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
    let salt = SaltString::encode_b64(b"verify-salt-16by").expect("salt");
    let mut memory_kib = 1024;
    loop {
        let params = argon2::Params::new(memory_kib, 2, 1, None).expect("params");
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let hash = argon
            .hash_password(PASSWORD.as_bytes(), &salt)
            .expect("hash")
            .to_string();
        let parsed = PasswordHash::new(&hash).expect("parse");
        let started = Instant::now();
        let _ = argon.verify_password(b"wrong", &parsed);
        let one = started.elapsed();
        if one >= Duration::from_millis(20) || memory_kib >= 64 * 1024 {
            return (hash, one);
        }
        memory_kib *= 2;
    }
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {encoded}\r\n")
}

fn get(gw: &Gateway, path: &str, extra: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ));
    raw.read_response()
}

/// One worker, one verifier thread, a verification queue of `queue`.
fn gateway(driver: &str, up: &Upstream, hash: &str, queue: usize) -> Gateway {
    GatewayConfig::new(driver)
        .workers(1)
        .server("password_verifiers", "1")
        .server("password_queue", &queue.to_string())
        .merge_interval("100ms")
        .upstream("echo", &[up.addr()])
        .routes(&format!(
            r#"
[[routes]]
name = "basic"
match = {{ path_prefix = "/basic" }}
upstream = "echo"
policies = ["login"]

[[routes]]
name = "open"
match = {{ path_prefix = "/open" }}
upstream = "echo"

[policies.login]
kind = "basic"

[[consumers]]
name = "alice"
password_hash = "{hash}"
"#
        ))
        .start()
}

/// Sends [`ATTEMPTS`] wrong-password requests at once, each on its own connection. Returns
/// the threads' answers (with the time each took), after signalling `sent` once all are out.
fn flood(
    gw: &Gateway,
    sent: mpsc::Sender<()>,
) -> std::thread::JoinHandle<Vec<(u16, bool, Duration)>> {
    let addr = gw.addr();
    std::thread::spawn(move || {
        let start = Arc::new(Barrier::new(ATTEMPTS));
        let (sent_one, all_sent) = mpsc::channel();
        let threads: Vec<_> = (0..ATTEMPTS)
            .map(|_| {
                let start = Arc::clone(&start);
                let sent_one = sent_one.clone();
                std::thread::spawn(move || {
                    let mut raw = Raw::connect(addr);
                    start.wait();
                    let began = Instant::now();
                    raw.send(format!(
                        "GET /basic HTTP/1.1\r\nHost: t\r\n{}Connection: close\r\n\r\n",
                        basic("alice", "wrong")
                    ));
                    let _ = sent_one.send(());
                    let r = raw.read_response();
                    let retry_after = r.header("retry-after").is_some();
                    (r.status, retry_after, began.elapsed())
                })
            })
            .collect();
        for _ in 0..ATTEMPTS {
            all_sent.recv().expect("an attempt was sent");
        }
        let _ = sent.send(());
        threads
            .into_iter()
            .map(|t| t.join().expect("attempt thread"))
            .collect()
    })
}

driver_tests! {
    fn another_route_on_the_same_worker_is_served_while_passwords_are_verified(driver: &str) {
        let (hash, one) = costly_hash();
        let serial = one * ATTEMPTS as u32;
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up, &hash, 64);
        let (sent, all_sent) = mpsc::channel();
        let attempts = flood(&gw, sent);
        all_sent.recv().expect("flood sent");
        let began = Instant::now();
        let open = get(&gw, "/open", "");
        let open_took = began.elapsed();
        let answers = attempts.join().expect("flood");
        assert_eq!(open.status, 200, "{}", open.text());
        assert!(answers.iter().all(|(status, _, _)| *status == 401), "{answers:?}");
        let slowest = answers.iter().map(|(_, _, took)| *took).max().expect("answers");
        // The one verifier thread works through the attempts one after another, so the last
        // answer comes late; the other route's answer does not wait for them.
        eprintln!("one verification {one:?}; attempts answered within {slowest:?}; open route {open_took:?}");
        assert!(slowest >= serial / 4, "attempts took {slowest:?}, serial {serial:?}");
        assert!(
            open_took * 4 < slowest,
            "the open route took {open_took:?}; the {ATTEMPTS} attempts up to {slowest:?} \
             (one verification {one:?})"
        );
        // Good passwords still pass, the second time from the worker's cache.
        for _ in 0..2 {
            let r = get(&gw, "/basic", &basic("alice", PASSWORD));
            assert_eq!(r.status, 200, "{}", r.text());
            let seen = up.last_request().expect("forwarded");
            assert_eq!(seen.header("x-consumer"), Some("alice"));
        }
        // An unknown user goes through the pool too, and is refused.
        assert_eq!(get(&gw, "/basic", &basic("mallory", PASSWORD)).status, 401);
    }

    fn a_full_verification_queue_answers_503_at_once(driver: &str) {
        let (hash, one) = costly_hash();
        let serial = one * ATTEMPTS as u32;
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up, &hash, 1);
        let (sent, _all_sent) = mpsc::channel();
        let answers = flood(&gw, sent).join().expect("flood");
        let busy: Vec<_> = answers.iter().filter(|(status, _, _)| *status == 503).collect();
        let refused = answers.iter().filter(|(status, _, _)| *status == 401).count();
        assert_eq!(busy.len() + refused, ATTEMPTS, "{answers:?}");
        // One verification runs and one waits; the rest arrive while they do.
        assert!(busy.len() >= ATTEMPTS / 4, "{answers:?}");
        for (_, retry_after, took) in &busy {
            assert!(retry_after, "503 without Retry-After");
            assert!(*took < serial / 4, "a 503 took {took:?} (serial {serial:?})");
        }
        let slowest_busy = busy.iter().map(|(_, _, took)| *took).max();
        eprintln!("{} of {ATTEMPTS} answered 503, the slowest in {slowest_busy:?}", busy.len());
        let counted = busy.len() as u64;
        gw.metrics_until(|m| m.policy_decisions("login", PolicyOutcome::Busy) == counted);
        // Once the queue drains a good password passes.
        let r = get(&gw, "/basic", &basic("alice", PASSWORD));
        assert_eq!(r.status, 200, "{}", r.text());
    }
}
