//! Composite routes through the running gateway, in front of real JSON backends that delay,
//! fail, answer non-JSON, close early or answer huge bodies: concurrency (shown by timing),
//! dependency order, every shaping option, fan-out with duplicates (per element and batched,
//! stitched back), status rules and problem details, `Composite-Missing`, deadlines that
//! close connections (and the group's `timeouts.total` inside a call), hedging, forwarded
//! headers and trace spans, client bodies, metrics, `collection`, batches split by
//! `batch.max`, and identical bytes in every order the backends can answer in.
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::{agent, call, get, send, Reply};
use common::gateway::{Gateway, GatewayConfig};
use common::upstream::{Behavior, Handled, Recorded, Upstream};

/// A backend whose answer depends on the request.
fn backend(name: &str, f: impl Fn(&Recorded) -> Handled + Send + Sync + 'static) -> Upstream {
    Upstream::start(name, Behavior::Handler(Arc::new(f)))
}

/// A backend that always answers `body` as JSON after `delay_ms`.
fn json(name: &str, delay_ms: u64, body: &'static str) -> Upstream {
    backend(name, move |_| Handled::json(delay_ms, body))
}

fn gateway(driver: &str, upstreams: &[(&str, &Upstream)], tables: &str) -> Gateway {
    let mut config = GatewayConfig::new(driver).merge_interval("100ms");
    for (name, up) in upstreams {
        config = config.upstream(name, &[up.addr()]);
    }
    config.routes(tables).start()
}

fn body_json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.text()))
}

const HOME: &str = r#"
[[routes]]
name = "bff-home"
match = { path = "/bff/home/{user}", methods = ["GET"] }
compose = "home"

[composites.home]
timeout = "2s"

[[composites.home.calls]]
name = "user"
upstream = "users"
path = "/users/{user}"
required = true
allow = ["id", "name", "segment", "address.city"]
rename = { segment = "tier" }

[[composites.home.calls]]
name = "reco"
upstream = "reco"
path = "/reco?tier={user.segment}"

[[composites.home.calls]]
name = "news"
upstream = "news"
path = "/news"
"#;

const USER: &str = r#"{"id": 7, "name": "Ada", "email": "ada@example.com", "segment": "gold", "address": {"city": "Paris", "zip": "75001"}}"#;

driver_tests! {
    // A call naming a cache: while the backend's answer is fresh (max-age=60) the call makes
    // no upstream request; the uncached call goes every time; the key is the call's own
    // request (another rendered path is another entry).
    fn a_call_naming_a_cache_is_answered_from_it_while_fresh(driver: &str) {
        let profile_count = Arc::new(AtomicU64::new(0));
        let pc = Arc::clone(&profile_count);
        let profile = backend("profile", move |r| {
            let n = pc.fetch_add(1, Ordering::SeqCst) + 1;
            let body = format!(r#"{{"path":"{}","n":{n}}}"#, r.target);
            Handled::Respond {
                delay: Duration::ZERO,
                status: 200,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("cache-control".into(), "max-age=60".into()),
                ],
                body: body.into_bytes(),
            }
        });
        let live_count = Arc::new(AtomicU64::new(0));
        let lc = Arc::clone(&live_count);
        let live = backend("live", move |_| {
            let n = lc.fetch_add(1, Ordering::SeqCst) + 1;
            Handled::Respond {
                delay: Duration::ZERO,
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: format!(r#"{{"n":{n}}}"#).into_bytes(),
            }
        });
        let gw = gateway(driver, &[("profile", &profile), ("live", &live)], r#"
            [[routes]]
            name = "page"
            match = { path = "/page/{id}" }
            compose = "page"
            [composites.page]
            [[composites.page.calls]]
            name = "profile"
            upstream = "profile"
            path = "/profiles/{id}?v=1"
            cache = "parts"
            [[composites.page.calls]]
            name = "live"
            upstream = "live"
            path = "/live"
            [caches.parts]
            max_bytes = "1MiB"
        "#);
        let first = get(&gw.url("/page/7"));
        assert_eq!(first.status, 200, "{}", first.text());
        assert_eq!(first.text(), r#"{"profile":{"path":"/profiles/7?v=1","n":1},"live":{"n":1}}"#);
        let second = get(&gw.url("/page/7"));
        assert_eq!(second.status, 200, "{}", second.text());
        assert_eq!(
            second.text(),
            r#"{"profile":{"path":"/profiles/7?v=1","n":1},"live":{"n":2}}"#,
            "the cached part's data, the live part fetched again"
        );
        assert_eq!(profile.requests(), 1, "a fresh entry makes no upstream request");
        assert_eq!(live.requests(), 2);
        // The composite is not cacheable downstream longer than its cached part stays fresh.
        let cc = second.header("cache-control").unwrap_or_default().to_string();
        let max_age: u64 = cc
            .split(',')
            .find_map(|d| d.trim().strip_prefix("max-age="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("max-age in {cc:?}"));
        assert!(max_age <= 60, "{cc}");
        // Another rendered path is another entry.
        let other = get(&gw.url("/page/8"));
        assert_eq!(other.text(), r#"{"profile":{"path":"/profiles/8?v=1","n":2},"live":{"n":3}}"#);
        assert_eq!(profile.requests(), 2);
        let again = get(&gw.url("/page/8"));
        assert_eq!(again.text(), r#"{"profile":{"path":"/profiles/8?v=1","n":2},"live":{"n":4}}"#);
        assert_eq!(profile.requests(), 2);
        assert_eq!(profile_count.load(Ordering::SeqCst), 2);
        assert_eq!(live_count.load(Ordering::SeqCst), 4);
    }

    fn independent_calls_run_at_once(driver: &str) {
        let a = json("a", 100, r#"{"a": 1}"#);
        let b = json("b", 100, r#"{"b": 2}"#);
        let c = json("c", 100, r#"{"c": 3}"#);
        let gw = gateway(driver, &[("a", &a), ("b", &b), ("c", &c)], r#"
            [[routes]]
            name = "three"
            match = { path = "/three" }
            compose = "three"
            [composites.three]
            [[composites.three.calls]]
            name = "a"
            upstream = "a"
            path = "/a"
            [[composites.three.calls]]
            name = "b"
            upstream = "b"
            path = "/b"
            [[composites.three.calls]]
            name = "c"
            upstream = "c"
            path = "/c"
        "#);
        let started = Instant::now();
        let reply = get(&gw.url("/three"));
        let took = started.elapsed();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), r#"{"a":{"a": 1},"b":{"b": 2},"c":{"c": 3}}"#);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.header("content-length"), Some(reply.body.len().to_string().as_str()));
        // One after another they would take at least 300 ms; at once, 100 ms plus overhead
        // (the margin is for a loaded machine).
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_millis(280), "calls did not overlap: {took:?}");
    }

    fn a_reference_orders_calls_and_shaping_applies(driver: &str) {
        let users = json("users", 50, USER);
        let reco = backend("reco", |r| {
            Handled::json(0, if r.target == "/reco?tier=gold" { r#"[1, 2]"# } else { r#""wrong""# })
        });
        let news = json("news", 0, r#"{"items": []}"#);
        let gw = gateway(driver, &[("users", &users), ("reco", &reco), ("news", &news)], HOME);
        let reply = get(&gw.url("/bff/home/7"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.text(),
            r#"{"user":{"id":7,"name":"Ada","tier":"gold","address":{"city":"Paris"}},"reco":[1, 2],"news":{"items": []}}"#
        );
        assert_eq!(users.last_request().expect("called").target, "/users/7");
        assert_eq!(reco.last_request().expect("called").target, "/reco?tier=gold");
        assert!(reply.header("composite-missing").is_none());
    }

    fn an_optional_failure_is_left_out_and_named(driver: &str) {
        let users = json("users", 0, USER);
        let reco = backend("reco", |_| Handled::Respond {
            delay: Duration::ZERO,
            status: 500,
            headers: vec![],
            body: b"internal details".to_vec(),
        });
        let news = backend("news", |_| Handled::json(0, "<html>not json</html>"));
        let gw = gateway(driver, &[("users", &users), ("reco", &reco), ("news", &news)], HOME);
        let reply = get(&gw.url("/bff/home/7"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("composite-missing"), Some("reco, news"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let v = body_json(&reply);
        assert_eq!(v["user"]["tier"], "gold");
        assert!(v.get("reco").is_none() && v.get("news").is_none());
    }

    fn a_call_starts_as_soon_as_its_inputs_exist(driver: &str) {
        // `c` needs `a` (50 ms) only; `b` (600 ms) is independent. `c` must not wait for `b`.
        let a = json("a", 50, r#"{"id": "k"}"#);
        let b = json("b", 600, r#"{"b": true}"#);
        // When `c` was called, in nanoseconds after `base` (0: not yet).
        let base = Instant::now();
        let arrived = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&arrived);
        let c = backend("c", move |_| {
            seen.store(base.elapsed().as_nanos().max(1) as u64, Ordering::SeqCst);
            Handled::json(0, r#""c""#)
        });
        let gw = gateway(driver, &[("a", &a), ("b", &b), ("c", &c)], r#"
            [[routes]]
            name = "r"
            compose = "g"
            [composites.g]
            [[composites.g.calls]]
            name = "c"
            upstream = "c"
            path = "/c/{a.id}"
            [[composites.g.calls]]
            name = "b"
            upstream = "b"
            path = "/b"
            [[composites.g.calls]]
            name = "a"
            upstream = "a"
            path = "/a"
        "#);
        let started = Instant::now();
        let reply = get(&gw.url("/x"));
        let took = started.elapsed();
        assert_eq!(reply.status, 200, "{}", reply.text());
        // Keys in config order, whatever the order the calls ran in.
        assert_eq!(reply.text(), r#"{"c":"c","b":{"b": true},"a":{"id": "k"}}"#);
        assert_eq!(c.last_request().expect("c called").target, "/c/k");
        let called_at = arrived.load(Ordering::SeqCst);
        assert_ne!(called_at, 0, "c called");
        let c_started = (base + Duration::from_nanos(called_at)).duration_since(started);
        assert!(c_started >= Duration::from_millis(50), "c ran before its input: {c_started:?}");
        assert!(c_started < Duration::from_millis(450), "c waited for b: {c_started:?}");
        assert!(took >= Duration::from_millis(600), "{took:?}");
    }

    fn a_required_call_whose_input_is_missing_fails_without_being_sent(driver: &str) {
        // `user` answers without `segment`: `reco` cannot be built.
        let users = json("users", 0, r#"{"id": 7}"#);
        let reco = json("reco", 0, "[]");
        let gw = gateway(driver, &[("users", &users), ("reco", &reco)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            [[composites.c.calls]]
            name = "user"
            upstream = "users"
            path = "/u"
            [[composites.c.calls]]
            name = "reco"
            upstream = "reco"
            path = "/reco?tier={user.segment}"
            required = true
        "#);
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 502, "{}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/problem+json"));
        let v = body_json(&reply);
        assert_eq!(v["call"], "reco");
        assert_eq!(v["reason"], "missing_input");
        assert_eq!(reco.requests(), 0);
    }

    fn a_required_failure_is_a_problem_naming_the_call(driver: &str) {
        let users = backend("users", |_| Handled::Respond {
            delay: Duration::ZERO,
            status: 500,
            headers: vec![],
            body: b"{\"secret\": \"stack trace\"}".to_vec(),
        });
        let reco = json("reco", 0, "[]");
        let news = json("news", 0, "{}");
        let gw = gateway(driver, &[("users", &users), ("reco", &reco), ("news", &news)], HOME);
        let reply = get(&gw.url("/bff/home/7"));
        assert_eq!(reply.status, 502);
        assert_eq!(reply.header("content-type"), Some("application/problem+json"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let v = body_json(&reply);
        assert_eq!(v["status"], 502);
        assert_eq!(v["call"], "user");
        assert_eq!(v["reason"], "bad_status");
        assert!(!reply.text().contains("secret"), "backend internals leaked: {}", reply.text());
        // reco depends on the failed call: never sent.
        assert_eq!(reco.requests(), 0);
    }

    fn a_required_timeout_is_504_and_closes_the_upstream_connection(driver: &str) {
        let slow = json("slow", 2000, "{}");
        let gw = gateway(driver, &[("slow", &slow)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            timeout = "1s"
            [[composites.c.calls]]
            name = "slow"
            upstream = "slow"
            path = "/slow"
            timeout = "150ms"
            required = true
        "#);
        let started = Instant::now();
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 504, "{}", reply.text());
        assert_eq!(body_json(&reply)["reason"], "timeout");
        assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
        // The half-read call's connection is closed, never pooled.
        slow.wait_for_closed_connections(1);
    }

    fn the_composite_deadline_leaves_slow_optional_calls_out(driver: &str) {
        let fast = json("fast", 0, r#"{"ok": true}"#);
        let slow = json("slow", 2000, "{}");
        let gw = gateway(driver, &[("fast", &fast), ("slow", &slow)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            timeout = "200ms"
            [[composites.c.calls]]
            name = "fast"
            upstream = "fast"
            path = "/f"
            [[composites.c.calls]]
            name = "slow"
            upstream = "slow"
            path = "/s"
        "#);
        let started = Instant::now();
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), r#"{"fast":{"ok": true}}"#);
        assert_eq!(reply.header("composite-missing"), Some("slow"));
        assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
        slow.wait_for_closed_connections(1);
    }

    fn oversized_and_early_closed_parts_are_failed_calls(driver: &str) {
        let big = backend("big", |_| Handled::json(0, &format!("[{}1]", "1,".repeat(4000))));
        let closer = backend("closer", |_| Handled::Close);
        let ok = json("ok", 0, "true");
        let gw = gateway(driver, &[("big", &big), ("closer", &closer), ("ok", &ok)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            max_part_bytes = "4KiB"
            [[composites.c.calls]]
            name = "big"
            upstream = "big"
            path = "/b"
            [[composites.c.calls]]
            name = "closer"
            upstream = "closer"
            path = "/c"
            [[composites.c.calls]]
            name = "ok"
            upstream = "ok"
            path = "/o"
        "#);
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), r#"{"ok":true}"#);
        assert_eq!(reply.header("composite-missing"), Some("big, closer"));
    }

    fn every_shaping_option(driver: &str) {
        let a = json("a", 0, r#"{"data": {"id": 1, "secret": "x", "items": [{"sku": "s1", "cost": 3}, {"sku": "s2", "cost": 4}]}}"#);
        let b = json("b", 0, r#"[{"n": 1}, {"n": 2}]"#);
        let c = json("c", 0, r#"{"id": 99, "shared": "from c", "extra": true}"#);
        let d = json("d", 0, r#"{"shared": "from d"}"#);
        let gw = gateway(driver, &[("a", &a), ("b", &b), ("c", &c), ("d", &d)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            [[composites.c.calls]]
            name = "a"
            upstream = "a"
            path = "/a"
            target = "data"
            deny = ["secret", "items.cost"]
            rename = { "items.sku" = "code" }
            into = "page.main"
            [[composites.c.calls]]
            name = "b"
            upstream = "b"
            path = "/b"
            collection = "list"
            into = "page.side"
            [[composites.c.calls]]
            name = "c"
            upstream = "c"
            path = "/c"
            allow = ["shared", "extra"]
            into = "."
            [[composites.c.calls]]
            name = "d"
            upstream = "d"
            path = "/d"
            into = "."
        "#);
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        // Root merges: keys in config order; `shared` from the later call (d) in c's place.
        assert_eq!(
            reply.text(),
            r#"{"page":{"main":{"id":1,"items":[{"code":"s1"},{"code":"s2"}]},"side":{"list":[{"n": 1}, {"n": 2}]}},"shared":"from d","extra":true}"#
        );
        let agg = gw.metrics_until(|m| m.composite("c", None).is_some_and(|s| s.collisions >= 1));
        assert_eq!(agg.composite("c", None).expect("recorded").collisions, 1);
    }

    fn fan_out_deduplicates_and_stitches(driver: &str) {
        let orders = json("orders", 0, r#"{"items": [{"product_id": "p1", "qty": 1}, {"product_id": "p2", "qty": 2}, {"product_id": "p1", "qty": 5}]}"#);
        let catalog = backend("catalog", |r| {
            let id = r.target.trim_start_matches("/products/");
            Handled::json(0, &format!(r#"{{"id": "{id}", "title": "T-{id}", "internal": 0}}"#))
        });
        let gw = gateway(driver, &[("orders", &orders), ("catalog", &catalog)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            [[composites.c.calls]]
            name = "orders"
            upstream = "orders"
            path = "/orders"
            [[composites.c.calls]]
            name = "products"
            upstream = "catalog"
            path = "/products/{each}"
            foreach = "orders.items[*].product_id"
            max_fanout = 10
            deny = ["internal"]
            stitch = "orders.items[*].product"
        "#);
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.text(),
            r#"{"orders":{"items":[{"product_id":"p1","qty":1,"product":{"id":"p1","title":"T-p1"}},{"product_id":"p2","qty":2,"product":{"id":"p2","title":"T-p2"}},{"product_id":"p1","qty":5,"product":{"id":"p1","title":"T-p1"}}]}}"#
        );
        // Three elements, two distinct ids: two calls.
        assert_eq!(catalog.requests(), 2);
    }

    fn batched_fan_out_is_one_call_with_a_list(driver: &str) {
        let orders = json("orders", 0, r#"{"items": [{"pid": 3}, {"pid": 1}, {"pid": 3}, {"pid": 2}]}"#);
        let catalog = backend("catalog", |r| {
            // Answers in its own order, and one id unknown.
            assert_eq!(r.target, "/products?ids=3,1,2");
            Handled::json(0, r#"{"results": [{"id": 2, "t": "b"}, {"id": 3, "t": "c"}]}"#)
        });
        let gw = gateway(driver, &[("orders", &orders), ("catalog", &catalog)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            [[composites.c.calls]]
            name = "orders"
            upstream = "orders"
            path = "/orders"
            [[composites.c.calls]]
            name = "products"
            upstream = "catalog"
            path = "/products"
            foreach = "orders.items[*].pid"
            batch = { param = "ids", max = 10 }
            target = "results"
        "#);
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(catalog.requests(), 1);
        // Keyed by value in first-appearance order; the unknown id is simply absent.
        assert_eq!(
            reply.text(),
            r#"{"orders":{"items": [{"pid": 3}, {"pid": 1}, {"pid": 3}, {"pid": 2}]},"products":{"3":{"id": 3, "t": "c"},"2":{"id": 2, "t": "b"}}}"#
        );
    }

    fn a_failed_fan_out_element_leaves_the_answer_incomplete(driver: &str) {
        let orders = json("orders", 0, r#"{"items": [{"pid": "p1"}, {"pid": "p2"}]}"#);
        let catalog = backend("catalog", |r| {
            if r.target.ends_with("/p2") {
                Handled::Close
            } else {
                Handled::json(0, r#"{"title": "one"}"#)
            }
        });
        let gw = gateway(driver, &[("orders", &orders), ("catalog", &catalog)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            [[composites.c.calls]]
            name = "orders"
            upstream = "orders"
            path = "/orders"
            [[composites.c.calls]]
            name = "products"
            upstream = "catalog"
            path = "/products/{each}"
            foreach = "orders.items[*].pid"
            stitch = "orders.items[*].product"
        "#);
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        // The element whose call failed keeps its own fields; the answer says it is incomplete.
        assert_eq!(
            reply.text(),
            r#"{"orders":{"items":[{"pid":"p1","product":{"title": "one"}},{"pid":"p2"}]}}"#
        );
        assert_eq!(reply.header("composite-missing"), Some("products"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }

    fn a_batched_fan_out_stitches_each_result_into_its_element(driver: &str) {
        let orders = json("orders", 0, r#"{"items": [{"pid": 3, "q": 1}, {"pid": 1, "q": 2}, {"pid": 3, "q": 3}]}"#);
        let catalog = backend("catalog", |r| {
            if r.target == "/products?ids=3,1" {
                Handled::json(0, r#"[{"id": 1, "t": "a"}, {"id": 3, "t": "c"}]"#)
            } else {
                Handled::json(0, r#""unexpected target""#)
            }
        });
        let gw = gateway(driver, &[("orders", &orders), ("catalog", &catalog)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            [[composites.c.calls]]
            name = "orders"
            upstream = "orders"
            path = "/orders"
            [[composites.c.calls]]
            name = "products"
            upstream = "catalog"
            path = "/products"
            foreach = "orders.items[*].pid"
            batch = { param = "ids", max = 10 }
            deny = ["id"]
            stitch = "orders.items[*].product"
        "#);
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(catalog.requests(), 1);
        assert_eq!(
            reply.text(),
            r#"{"orders":{"items":[{"pid":3,"q":1,"product":{"t":"c"}},{"pid":1,"q":2,"product":{"t":"a"}},{"pid":3,"q":3,"product":{"t":"c"}}]}}"#
        );
    }

    fn too_many_fan_out_values_fail_the_call(driver: &str) {
        let orders = json("orders", 0, r#"{"ids": [1, 2, 3]}"#);
        let catalog = json("catalog", 0, "{}");
        let gw = gateway(driver, &[("orders", &orders), ("catalog", &catalog)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            [[composites.c.calls]]
            name = "orders"
            upstream = "orders"
            path = "/orders"
            [[composites.c.calls]]
            name = "products"
            upstream = "catalog"
            path = "/p/{each}"
            foreach = "orders.ids"
            max_fanout = 2
            required = true
        "#);
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 502);
        assert_eq!(body_json(&reply)["reason"], "fanout_exceeded");
        assert_eq!(catalog.requests(), 0);
    }

    fn hedging_sends_a_second_attempt_to_another_target(driver: &str) {
        let slow = json("slow", 1500, r#""slow""#);
        let fast = json("fast", 0, r#""fast""#);
        let gw = GatewayConfig::new(driver)
            .upstream("pair", &[slow.addr(), fast.addr()])
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
                hedge = { after = "50ms" }
            "#)
            .start();
        // Round robin starts once on each target: one of the two requests starts on the slow
        // one and is saved by the hedge.
        for _ in 0..2 {
            let started = Instant::now();
            let reply = get(&gw.url("/x"));
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.text(), r#"{"v":"fast"}"#);
            assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
        }
        assert!(slow.requests() >= 1, "the slow target was never tried");
        // The losing attempt is cancelled: its connection is closed, not left to finish.
        slow.wait_for_closed_connections(1);
    }

    fn headers_trace_spans_and_identity_reach_every_call(driver: &str) {
        let a = json("a", 0, "1");
        let b = json("b", 0, "2");
        let gw = gateway(driver, &[("a", &a), ("b", &b)], r#"
            [[routes]]
            name = "r"
            match = { path = "/x" }
            compose = "c"
            [composites.c]
            forward_headers = ["Accept-Language"]
            [[composites.c.calls]]
            name = "a"
            upstream = "a"
            path = "/a?q={query.q}&h={header.x-tag}"
            [[composites.c.calls]]
            name = "b"
            upstream = "b"
            path = "/b"
            forward_headers = []
        "#);
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let reply = call(
            agent()
                .get(&gw.url("/x?q=a%20b"))
                .set("traceparent", parent)
                .set("accept-language", "fr")
                .set("x-tag", "t/1")
                .set("x-request-id", "req-42"),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        let ra = a.last_request().expect("a called");
        let rb = b.last_request().expect("b called");
        assert_eq!(ra.target, "/a?q=a%20b&h=t%2F1");
        assert_eq!(ra.header("accept-language"), Some("fr"));
        assert_eq!(rb.header("accept-language"), None);
        for r in [&ra, &rb] {
            assert_eq!(r.header("x-request-id"), Some("req-42"));
            assert!(r.header("x-forwarded-for").is_some());
        }
        let (ta, tb) = (ra.header("traceparent").expect("a"), rb.header("traceparent").expect("b"));
        assert!(ta.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && ta.ends_with("-01"), "{ta}");
        assert!(tb.starts_with("00-0af7651916cd43dd8448eb211c80319c-"), "{tb}");
        assert_ne!(ta, tb, "each call is a span of its own");
        assert_ne!(&ta[36..52], "b7ad6b7169203331");
    }

    fn a_post_call_sends_the_client_body_or_a_template(driver: &str) {
        let users = json("users", 0, r#"{"id": "u1", "segment": "gold"}"#);
        let audit = json("audit", 0, r#"{"logged": true}"#);
        let store = json("store", 0, r#"{"stored": true}"#);
        let gw = gateway(driver, &[("users", &users), ("audit", &audit), ("store", &store)], r#"
            [[routes]]
            name = "r"
            match = { path = "/save/{user}" }
            compose = "c"
            [composites.c]
            [[composites.c.calls]]
            name = "user"
            upstream = "users"
            path = "/users/{user}"
            [[composites.c.calls]]
            name = "audit"
            upstream = "audit"
            path = "/audit"
            method = "POST"
            body = '{"who": {user.id}, "note": "tier {user.segment}", "route_user": {user}}'
            [[composites.c.calls]]
            name = "store"
            upstream = "store"
            path = "/store"
            method = "POST"
            body = "client"
        "#);
        let reply = send(
            agent().post(&gw.url("/save/u1")).set("content-type", "application/json"),
            br#"{"x": 1}"#,
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        let ra = audit.last_request().expect("audit called");
        assert_eq!(ra.method, "POST");
        assert_eq!(ra.header("content-type"), Some("application/json"));
        let expected = br#"{"who": "u1", "note": "tier gold", "route_user": "u1"}"#;
        assert_eq!(ra.body_len, expected.len() as u64);
        assert_eq!(ra.body_sum, common::body::sum_of(expected).hex());
        let rs = store.last_request().expect("store called");
        assert_eq!(rs.body_sum, common::body::sum_of(br#"{"x": 1}"#).hex());
    }

    fn same_inputs_identical_bytes_whatever_the_arrival_order(driver: &str) {
        // Every order in which the three backends can answer: round `r` gives backend `i`
        // the latency rank ORDERS[r][i] (0, 40 or 80 ms), so each order of arrival happens.
        const ORDERS: [[u64; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        let round = Arc::new(AtomicU64::new(0));
        let make = |name: &'static str, index: usize, body: &'static str| {
            let round = Arc::clone(&round);
            backend(name, move |_| {
                let rank = ORDERS[round.load(Ordering::SeqCst) as usize][index];
                Handled::json(rank * 40, body)
            })
        };
        let a = make("a", 0, r#"{"k": "a", "a": 1}"#);
        let b = make("b", 1, r#"{"k": "b", "b": 2}"#);
        let c = make("c", 2, r#"{"k": "c", "c": 3}"#);
        let gw = gateway(driver, &[("a", &a), ("b", &b), ("c", &c)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            [[composites.c.calls]]
            name = "a"
            upstream = "a"
            path = "/a"
            into = "."
            [[composites.c.calls]]
            name = "b"
            upstream = "b"
            path = "/b"
            into = "."
            [[composites.c.calls]]
            name = "c"
            upstream = "c"
            path = "/c"
            into = "."
        "#);
        // Keys in config order; the colliding `k` from the last call in config order.
        let expected = r#"{"k":"c","a":1,"b":2,"c":3}"#;
        for (r, order) in ORDERS.iter().enumerate() {
            round.store(r as u64, Ordering::SeqCst);
            let reply = get(&gw.url("/x"));
            assert_eq!(reply.text(), expected, "arrival order (latency ranks a, b, c) {order:?}");
            assert_eq!(reply.header("content-length"), Some(expected.len().to_string().as_str()));
        }
        assert_eq!((a.requests(), b.requests(), c.requests()), (6, 6, 6));
    }

    fn collection_wraps_an_array_answer(driver: &str) {
        let list = json("list", 0, r#"[{"id": 1, "secret": "x"}, {"id": 2, "secret": "y"}]"#);
        let named = json("named", 0, r#"["a", "b"]"#);
        let object = json("object", 0, r#"{"not": "an array"}"#);
        let gw = gateway(driver, &[("list", &list), ("named", &named), ("object", &object)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            [[composites.c.calls]]
            name = "list"
            upstream = "list"
            path = "/list"
            deny = ["secret"]
            collection = true
            [[composites.c.calls]]
            name = "named"
            upstream = "named"
            path = "/named"
            collection = "items"
            [[composites.c.calls]]
            name = "object"
            upstream = "object"
            path = "/object"
            collection = true
        "#);
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        // `true` wraps under "collection" (deny applied to each element); a key names it; an
        // answer that is not an array is a failed call (`shape`), left out.
        assert_eq!(
            reply.text(),
            r#"{"list":{"collection":[{"id":1},{"id":2}]},"named":{"items":["a", "b"]}}"#
        );
        assert_eq!(reply.header("composite-missing"), Some("object"));
        let agg = gw.metrics_until(|m| m.composite("c", Some("object")).is_some());
        assert_eq!(agg.composite("c", Some("object")).expect("object").count("shape"), 1);
    }

    fn a_batched_fan_out_over_batch_max_is_split_into_several_calls(driver: &str) {
        let orders = json("orders", 0, r#"{"items": [{"pid": 5}, {"pid": 1}, {"pid": 4}, {"pid": 1}, {"pid": 2}, {"pid": 3}]}"#);
        let catalog = backend("catalog", |r| {
            // Each batch answers its own ids, in reverse order.
            let ids = r.target.strip_prefix("/products?ids=").unwrap_or_default();
            let items: Vec<String> = ids
                .split(',')
                .rev()
                .map(|id| format!(r#"{{"id": {id}, "t": "t{id}"}}"#))
                .collect();
            Handled::json(0, &format!("[{}]", items.join(", ")))
        });
        let gw = gateway(driver, &[("orders", &orders), ("catalog", &catalog)], r#"
            [[routes]]
            name = "r"
            compose = "c"
            [composites.c]
            [[composites.c.calls]]
            name = "orders"
            upstream = "orders"
            path = "/orders"
            [[composites.c.calls]]
            name = "products"
            upstream = "catalog"
            path = "/products"
            foreach = "orders.items[*].pid"
            batch = { param = "ids", max = 2 }
            deny = ["id"]
            stitch = "orders.items[*].product"
        "#);
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        // Five distinct ids in first-appearance order, two per call: three calls.
        let mut targets: Vec<String> = catalog.recorded().into_iter().map(|r| r.target).collect();
        targets.sort();
        assert_eq!(targets, ["/products?ids=3", "/products?ids=4,2", "/products?ids=5,1"]);
        assert_eq!(
            reply.text(),
            r#"{"orders":{"items":[{"pid":5,"product":{"t":"t5"}},{"pid":1,"product":{"t":"t1"}},{"pid":4,"product":{"t":"t4"}},{"pid":1,"product":{"t":"t1"}},{"pid":2,"product":{"t":"t2"}},{"pid":3,"product":{"t":"t3"}}]}}"#
        );
    }

    fn a_groups_total_timeout_bounds_its_calls(driver: &str) {
        let slow = json("slow", 2000, "{}");
        let fast = json("fast", 0, "1");
        let gw = GatewayConfig::new(driver)
            .upstream_with("slow", &[slow.addr()], r#"connect = "1s", first_byte = "5s", idle = "5s", total = "150ms""#)
            .upstream("fast", &[fast.addr()])
            .routes(r#"
                [[routes]]
                name = "r"
                compose = "c"
                [composites.c]
                timeout = "5s"
                [[composites.c.calls]]
                name = "slow"
                upstream = "slow"
                path = "/s"
                [[composites.c.calls]]
                name = "fast"
                upstream = "fast"
                path = "/f"
            "#)
            .start();
        let started = Instant::now();
        let reply = get(&gw.url("/x"));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), r#"{"fast":1}"#);
        assert_eq!(reply.header("composite-missing"), Some("slow"));
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the group's timeouts.total (150ms) ended the call: {:?}",
            started.elapsed()
        );
    }

    fn metrics_count_composites_and_calls(driver: &str) {
        let users = json("users", 0, USER);
        let reco = backend("reco", |_| Handled::Close);
        let news = json("news", 0, "{}");
        let gw = gateway(driver, &[("users", &users), ("reco", &reco), ("news", &news)], HOME);
        assert_eq!(get(&gw.url("/bff/home/7")).status, 200);
        // What the gateway added is recorded once the answer is written: the last record.
        let agg = gw.metrics_until(|m| {
            m.composite("home", None)
                .is_some_and(|s| s.overhead.count() == 1)
        });
        let home = agg.composite("home", None).expect("composite");
        assert_eq!(home.count("partial"), 1);
        assert_eq!(agg.composite("home", Some("user")).expect("user").count("ok"), 1);
        assert_eq!(agg.composite("home", Some("reco")).expect("reco").count("upstream_error"), 1);
        assert_eq!(home.latency.count(), 1);
        // The required call (user) answered: its time is the request's slowest call, which
        // the composite's own time includes.
        assert_eq!(home.slowest_call.count(), 1);
        assert!(home.slowest_call.sum_micros() <= home.latency.sum_micros());
        let user = agg.composite("home", Some("user")).expect("user");
        assert_eq!(home.slowest_call.sum_micros(), user.latency.sum_micros());
        assert!(home.overhead.sum_micros() < 1_000_000, "{}", home.overhead.sum_micros());
    }
}

#[test]
fn config_errors_name_the_key_and_line() {
    let text = r#"
[[upstreams]]
name = "u"
targets = [{ addr = "127.0.0.1:1" }]

[[routes]]
name = "r"
match = { path = "/x/{id}" }
compose = "c"

[composites.c]
[[composites.c.calls]]
name = "a"
upstream = "u"
path = "/a?b={b.x}"

[[composites.c.calls]]
name = "b"
upstream = "u"
path = "/b?a={a.y}"
"#;
    let err = ringgate::config::load_str(text, "test").expect_err("a cycle");
    let found: Vec<(String, Option<usize>)> = err
        .problems
        .iter()
        .map(|p| (p.key.clone(), p.line))
        .collect();
    assert_eq!(
        found,
        vec![("composites.c.calls[0].path".to_string(), Some(15))],
        "{err}"
    );
    assert!(err.problems[0].message.contains("a → b → a"), "{err}");
}
