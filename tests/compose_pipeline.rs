//! Composite routes inside the rest of the gateway: the route's policies run once before any
//! call (and their consumer reaches every call), calls go through their group's retries,
//! the composite's `Cache-Control` is the most restrictive of its parts, the access log names
//! the failed calls, and an HTTP/2 client gets the same answer an HTTP/1.1 client does.
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::{agent, call, get};
use common::gateway::GatewayConfig;
use common::h2 as h2c;
use common::upstream::{Behavior, Handled, Recorded, Upstream};

fn backend(name: &str, f: impl Fn(&Recorded) -> Handled + Send + Sync + 'static) -> Upstream {
    Upstream::start(name, Behavior::Handler(Arc::new(f)))
}

fn json(name: &str, delay_ms: u64, body: &'static str) -> Upstream {
    backend(name, move |_| Handled::json(delay_ms, body))
}

/// A 200 JSON answer with a `Cache-Control` field.
fn cached(name: &str, body: &'static str, cache_control: &'static str) -> Upstream {
    backend(name, move |_| Handled::Respond {
        delay: Duration::ZERO,
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), cache_control.into()),
        ],
        body: body.as_bytes().to_vec(),
    })
}

const ALICE_KEY: &str = "alice-key-0123456789";

/// Two calls behind an API key; `a` names the consumer in its path and may forward the
/// client's `X-Consumer` and `X-Api-Key` (the policies' own fields win).
const KEYED: &str = r#"
[[routes]]
name = "r"
match = { path = "/me" }
compose = "me"
policies = ["keys"]

[composites.me]
forward_headers = ["x-consumer", "x-api-key", "x-tag"]

[[composites.me.calls]]
name = "a"
upstream = "a"
path = "/a?who={consumer}"

[[composites.me.calls]]
name = "b"
upstream = "b"
path = "/b"

[policies.keys]
kind = "api_key"
hide_credentials = true

[[consumers]]
name = "alice"
api_keys = ["alice-key-0123456789"]
"#;

/// A fresh, empty directory for one test's files.
fn temp_dir(name: &str, driver: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringgate-compose-{name}-{driver}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Re-reads `path` until it holds at least `n` lines (the writer flushes in batches).
fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    common::wait_until("access log lines", common::IO_TIMEOUT, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        lines = text.lines().map(str::to_owned).collect();
        lines.len() >= n
    });
    lines
}

driver_tests! {
    fn policies_run_before_any_call_and_their_consumer_reaches_every_call(driver: &str) {
        let a = json("a", 0, r#"{"a": 1}"#);
        let b = json("b", 0, r#"{"b": 2}"#);
        let gw = GatewayConfig::new(driver)
            .upstream("a", &[a.addr()])
            .upstream("b", &[b.addr()])
            .routes(KEYED)
            .start();
        // No key: refused by the policy, and no call is made.
        let refused = get(&gw.url("/me"));
        assert_eq!(refused.status, 401, "{}", refused.text());
        assert!(refused.header("www-authenticate").is_some());
        assert_eq!(a.requests() + b.requests(), 0, "a call went out before the policy");
        let reply = call(
            agent()
                .get(&gw.url("/me"))
                .set("x-api-key", ALICE_KEY)
                .set("x-consumer", "mallory")
                .set("x-tag", "t1"),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), r#"{"a":{"a": 1},"b":{"b": 2}}"#);
        let ra = a.last_request().expect("a called");
        let rb = b.last_request().expect("b called");
        assert_eq!(ra.target, "/a?who=alice");
        for r in [&ra, &rb] {
            // The policy's consumer, never the client's forged copy; the hidden key stays
            // behind even though the list names it; listed headers go through.
            assert_eq!(r.header_all("x-consumer"), vec!["alice"], "{:?}", r.headers);
            assert_eq!(r.header("x-api-key"), None, "{:?}", r.headers);
            assert_eq!(r.header("x-tag"), Some("t1"));
        }
    }

    fn calls_go_through_their_groups_retries(driver: &str) {
        let failing = backend("failing", |_| Handled::Respond {
            delay: Duration::ZERO,
            status: 503,
            headers: vec![],
            body: b"busy".to_vec(),
        });
        let good = json("good", 0, r#""good""#);
        let gw = GatewayConfig::new(driver)
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"pair\"\ntargets = [ {{ addr = \"{}\" }}, {{ addr = \"{}\" }} ]\n\
                 retry = {{ attempts = 2, on = [\"503\"], min_retries_per_sec = 100 }}\n",
                failing.addr(),
                good.addr()
            ))
            .routes(r#"
                [[routes]]
                name = "r"
                compose = "c"
                [composites.c]
                [[composites.c.calls]]
                name = "v"
                upstream = "pair"
                path = "/v"
                required = true
            "#)
            .start();
        // Round robin puts some of these on the failing target first; its retry saves them.
        for _ in 0..4 {
            let reply = get(&gw.url("/x"));
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.text(), r#"{"v":"good"}"#);
        }
        assert!(failing.requests() >= 1, "the failing target was never tried");
    }

    fn cache_control_is_the_most_restrictive_of_the_parts(driver: &str) {
        let a = cached("a", "1", "public, max-age=60");
        let b = cached("b", "2", "max-age=30, must-revalidate");
        let c = json("c", 0, "3");
        let gw = GatewayConfig::new(driver)
            .upstream("a", &[a.addr()])
            .upstream("b", &[b.addr()])
            .upstream("c", &[c.addr()])
            .routes(r#"
                [[routes]]
                name = "r"
                compose = "c"
                [composites.c]
                [[composites.c.calls]]
                name = "a"
                upstream = "a"
                path = "/a"
                [[composites.c.calls]]
                name = "b"
                upstream = "b"
                path = "/b"
                [[composites.c.calls]]
                name = "c"
                upstream = "c"
                path = "/c"
            "#)
            .start();
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), r#"{"a":1,"b":2,"c":3}"#);
        assert_eq!(reply.header("cache-control"), Some("public, max-age=30, must-revalidate"));
        // A private part makes the whole answer private.
        let p = cached("p", "4", "private, max-age=90");
        let gw = GatewayConfig::new(driver)
            .upstream("a", &[a.addr()])
            .upstream("p", &[p.addr()])
            .routes(r#"
                [[routes]]
                name = "r"
                compose = "c"
                [composites.c]
                [[composites.c.calls]]
                name = "a"
                upstream = "a"
                path = "/a"
                [[composites.c.calls]]
                name = "p"
                upstream = "p"
                path = "/p"
            "#)
            .start();
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.header("cache-control"), Some("private, max-age=60"));
    }

    fn the_access_log_names_the_failed_calls(driver: &str) {
        let dir = temp_dir("log", driver);
        let log = dir.join("access.log");
        let users = json("users", 0, r#"{"id": 1}"#);
        let reco = backend("reco", |_| Handled::Close);
        let news = json("news", 0, "not json");
        let gw = GatewayConfig::new(driver)
            .upstream("users", &[users.addr()])
            .upstream("reco", &[reco.addr()])
            .upstream("news", &[news.addr()])
            .routes(r#"
                [[routes]]
                name = "home"
                match = { path = "/home" }
                compose = "home"
                [composites.home]
                [[composites.home.calls]]
                name = "user"
                upstream = "users"
                path = "/u"
                required = true
                [[composites.home.calls]]
                name = "reco"
                upstream = "reco"
                path = "/r"
                [[composites.home.calls]]
                name = "news"
                upstream = "news"
                path = "/n"
            "#)
            .tables(&format!("[access_log]\nformat = \"json\"\npath = \"{}\"\n", log.display()))
            .start();
        let reply = get(&gw.url("/home"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("composite-missing"), Some("reco, news"));
        let lines = wait_for_lines(&log, 1);
        let entry: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON line");
        assert_eq!(entry["status"], 200, "{entry}");
        assert_eq!(entry["route"], "home", "{entry}");
        assert_eq!(entry["failed_calls"], "reco,news", "{entry}");
        drop(gw);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn an_http2_client_gets_the_same_answer(driver: &str) {
        let a = json("a", 100, r#"{"a": 1}"#);
        let b = json("b", 100, r#"{"b": 2}"#);
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream("a", &[a.addr()])
            .upstream("b", &[b.addr()])
            .routes(r#"
                [[routes]]
                name = "r"
                match = { path = "/both/{id}" }
                compose = "c"
                [composites.c]
                [[composites.c.calls]]
                name = "a"
                upstream = "a"
                path = "/a/{id}"
                [[composites.c.calls]]
                name = "b"
                upstream = "b"
                path = "/b"
                required = true
            "#)
            .start();
        let http1 = get(&gw.url("/both/9"));
        assert_eq!(http1.status, 200, "{}", http1.text());
        let authority = gw.addr().to_string();
        let rt = h2c::runtime();
        let (first, second, took) = rt.block_on(async {
            let sender = h2c::connect(gw.addr()).await;
            let started = Instant::now();
            // Two streams at once on one connection, each a whole composition.
            let (x, y) = tokio::join!(
                h2c::exchange(&sender, h2c::get(&authority, "/both/9"), None),
                h2c::exchange(&sender, h2c::get(&authority, "/both/9"), None),
            );
            (x.expect("first stream"), y.expect("second stream"), started.elapsed())
        });
        for reply in [&first, &second] {
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.body, http1.body);
            assert_eq!(reply.header("content-type"), Some("application/json"));
            assert_eq!(
                reply.header("content-length"),
                Some(reply.body.len().to_string().as_str())
            );
        }
        assert_eq!(a.last_request().expect("a called").target, "/a/9");
        // Streams run concurrently, and so do the calls inside each: well under 4 × 100 ms.
        assert!(took < Duration::from_millis(350), "{took:?}");
    }
}
