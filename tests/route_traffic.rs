//! Route-level traffic management through the running gateway: weighted splits (exact shares,
//! stickiness), version selection by header and cookie, the `/v2` prefix pattern, the group
//! recorded in the metrics, and mirroring (share, copy fidelity, isolation from a hanging or
//! failing shadow, the in-flight bound, bodies that cannot be mirrored).
mod common;

use std::time::{Duration, Instant};

use common::body::{pattern, sum_of};
use common::client::{get_req, Raw};
use common::gateway::{Gateway, GatewayConfig};
use common::tls::{toml_path, Kind, Pki, TlsUpstream};
use common::upstream::{refused_addr, Behavior, Echoed, Upstream};
use ringgate::metrics::{Aggregator, MirrorOutcome};

/// The group (`x-upstream`) that answered `request` on `raw`; panics unless it is a 200.
fn served_by(raw: &mut Raw, request: &str) -> String {
    raw.send(request);
    let r = raw.read_response();
    assert_eq!(r.status, 200, "{request:?}: {}", r.text());
    r.header("x-upstream").expect("x-upstream").to_string()
}

fn get_with(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n{extra}\r\n")
}

/// Proxied requests the metrics counted for upstream group `name`.
fn group_requests(agg: &Aggregator, name: &str) -> u64 {
    agg.upstream(name).map_or(0, |u| u.requests.iter().sum())
}

fn split_gateway(driver: &str, v1: &Upstream, v2: &Upstream, route_extra: &str) -> Gateway {
    GatewayConfig::new(driver)
        .merge_interval("100ms")
        .upstream("v1", &[v1.addr()])
        .upstream("v2", &[v2.addr()])
        .routes(&format!(
            r#"
            [[routes]]
            name = "users"
            split = [ {{ upstream = "v1", weight = 95 }}, {{ upstream = "v2", weight = 5 }} ]
            {route_extra}
            "#
        ))
        .start()
}

driver_tests! {
    fn split_95_5_over_10000_requests_lands_on_the_weights(driver: &str) {
        let v1 = Upstream::echo("v1");
        let v2 = Upstream::echo("v2");
        let gw = split_gateway(driver, &v1, &v2, "");
        let mut raw = Raw::connect(gw.addr());
        let mut on_v2 = 0;
        for _ in 0..10_000 {
            if served_by(&mut raw, &get_req("/users")) == "v2" {
                on_v2 += 1;
            }
        }
        // One worker: its deterministic sequence puts 500 of 10,000 on v2, give or take 2.
        assert!((495..=505).contains(&on_v2), "{on_v2} of 10000 on the 5% side");
        assert_eq!(v2.requests(), on_v2);
        assert_eq!(v1.requests(), 10_000 - on_v2);
        let agg = gw.metrics_until(|a| group_requests(a, "v1") + group_requests(a, "v2") == 10_000);
        assert_eq!(group_requests(&agg, "v2"), on_v2 as u64, "metrics record the group that served");
    }

    fn split_over_many_connections_and_two_workers_stays_close(driver: &str) {
        let v1 = Upstream::echo("v1");
        let v2 = Upstream::echo("v2");
        let gw = GatewayConfig::new(driver)
            .workers(2)
            .upstream("v1", &[v1.addr()])
            .upstream("v2", &[v2.addr()])
            .routes(r#"
                [[routes]]
                name = "users"
                split = [ { upstream = "v1", weight = 90 }, { upstream = "v2", weight = 10 } ]
            "#)
            .start();
        let mut on_v2 = 0;
        for _ in 0..50 {
            let mut raw = Raw::connect(gw.addr());
            for _ in 0..40 {
                if served_by(&mut raw, &get_req("/")) == "v2" {
                    on_v2 += 1;
                }
            }
        }
        // Each worker's sequence is exact within a couple of requests, whatever share of the
        // connections it got.
        assert!((195..=205).contains(&on_v2), "{on_v2} of 2000 on the 10% side");
    }

    fn sticky_cookie_keeps_each_client_on_one_side(driver: &str) {
        let v1 = Upstream::echo("v1");
        let v2 = Upstream::echo("v2");
        let gw = GatewayConfig::new(driver)
            .upstream("v1", &[v1.addr()])
            .upstream("v2", &[v2.addr()])
            .routes(r#"
                [[routes]]
                name = "users"
                split = [ { upstream = "v1", weight = 50 }, { upstream = "v2", weight = 50 } ]
                sticky = "cookie:session"
            "#)
            .start();
        let mut raw = Raw::connect(gw.addr());
        let mut sides = std::collections::BTreeMap::new();
        for client in 0..40 {
            let request = get_with("/", &format!("Cookie: theme=dark; session=client-{client}\r\n"));
            let first = served_by(&mut raw, &request);
            for _ in 0..10 {
                assert_eq!(served_by(&mut raw, &request), first, "client-{client} changed sides");
            }
            *sides.entry(first).or_insert(0) += 1;
        }
        assert_eq!(sides.len(), 2, "both sides get clients: {sides:?}");
        // Without the cookie the request falls back to the weighted sequence.
        let mut without = std::collections::BTreeSet::new();
        for _ in 0..10 {
            without.insert(served_by(&mut raw, &get_req("/")));
        }
        assert_eq!(without.len(), 2, "{without:?}");
    }

    fn sticky_ip_and_header_keep_a_client_on_one_side(driver: &str) {
        let v1 = Upstream::echo("v1");
        let v2 = Upstream::echo("v2");
        let gw = GatewayConfig::new(driver)
            .upstream("v1", &[v1.addr()])
            .upstream("v2", &[v2.addr()])
            .routes(r#"
                [[routes]]
                name = "by-ip"
                match = { path_prefix = "/ip" }
                split = [ { upstream = "v1", weight = 50 }, { upstream = "v2", weight = 50 } ]
                sticky = "ip"
                [[routes]]
                name = "by-header"
                match = { path_prefix = "/h" }
                split = [ { upstream = "v1", weight = 50 }, { upstream = "v2", weight = 50 } ]
                sticky = "header:X-User"
            "#)
            .start();
        let first = served_by(&mut Raw::connect(gw.addr()), &get_req("/ip"));
        for _ in 0..20 {
            let mut raw = Raw::connect(gw.addr());
            assert_eq!(served_by(&mut raw, &get_req("/ip")), first);
        }
        let mut raw = Raw::connect(gw.addr());
        let mut sides = std::collections::BTreeSet::new();
        for user in 0..30 {
            let request = get_with("/h", &format!("x-user: {user}\r\n"));
            let side = served_by(&mut raw, &request);
            assert_eq!(served_by(&mut raw, &request), side);
            sides.insert(side);
        }
        assert_eq!(sides.len(), 2);
    }

    fn header_and_cookie_select_a_version_before_the_default(driver: &str) {
        let v1 = Upstream::echo("v1");
        let v2 = Upstream::echo("v2");
        let beta = Upstream::echo("beta");
        let gw = GatewayConfig::new(driver)
            .upstream("v1", &[v1.addr()])
            .upstream("v2", &[v2.addr()])
            .upstream("beta", &[beta.addr()])
            .routes(r#"
                [[routes]]
                name = "users"
                upstream = "v1"
                versions = [
                    { header = "X-Api-Version", value = "2", upstream = "v2" },
                    { cookie = "canary", value = "1", upstream = "v2" },
                    { header = "x-beta", upstream = "beta" },
                ]
            "#)
            .start();
        let mut raw = Raw::connect(gw.addr());
        let cases = [
            ("", "v1"),
            ("X-Api-Version: 2\r\n", "v2"),
            ("x-api-version: 3\r\n", "v1"),
            ("Cookie: a=b; canary=1\r\n", "v2"),
            ("Cookie: a=b\r\nCookie: canary=1\r\n", "v2"),
            ("Cookie: canary=0\r\n", "v1"),
            ("Cookie: xcanary=1\r\n", "v1"),
            ("X-Beta: yes\r\n", "beta"),
            ("X-Beta: yes\r\nX-Api-Version: 2\r\n", "v2"),
        ];
        for (headers, want) in cases {
            assert_eq!(served_by(&mut raw, &get_with("/users", headers)), want, "{headers:?}");
        }
    }

    fn prefix_versioning_strips_the_version(driver: &str) {
        let v1 = Upstream::echo("v1");
        let v2 = Upstream::echo("v2");
        let gw = GatewayConfig::new(driver)
            .upstream("v1", &[v1.addr()])
            .upstream("v2", &[v2.addr()])
            .routes(r#"
                [[routes]]
                name = "users-v2"
                match = { path_prefix = "/v2/users" }
                upstream = "v2"
                strip_prefix = "/v2"
                [[routes]]
                name = "users"
                match = { path_prefix = "/users" }
                upstream = "v1"
                [[routes]]
                name = "users-by-header"
                match = { path_prefix = "/users", headers = { "X-Api-Version" = "2" } }
                upstream = "v2"
            "#)
            .start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(get_req("/v2/users/42?x=1"));
        let r = raw.read_response();
        let echoed = Echoed::parse(&r.text());
        assert_eq!((echoed.upstream.as_str(), echoed.target.as_str()), ("v2", "/users/42?x=1"));
        raw.send(get_req("/users/42"));
        let echoed = Echoed::parse(&raw.read_response().text());
        assert_eq!((echoed.upstream.as_str(), echoed.target.as_str()), ("v1", "/users/42"));
        // The header pattern with separate routes: the more specific route wins.
        assert_eq!(served_by(&mut raw, &get_with("/users/42", "X-Api-Version: 2\r\n")), "v2");
    }

    fn mirror_copies_the_share_with_method_path_and_body(driver: &str) {
        let main = Upstream::echo("main");
        let shadow = Upstream::echo("shadow");
        let gw = GatewayConfig::new(driver)
            .merge_interval("100ms")
            .upstream("main", &[main.addr()])
            .upstream("shadow", &[shadow.addr()])
            .routes(r#"
                [[routes]]
                name = "orders"
                upstream = "main"
                mirror = { upstream = "shadow", percent = 10 }
            "#)
            .start();
        let mut raw = Raw::connect(gw.addr());
        let body = pattern(3000);
        for i in 0..200 {
            let head = format!(
                "POST /orders/{i}?q=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            raw.send([head.as_bytes(), &body].concat());
            let r = raw.read_response();
            assert_eq!(r.status, 200);
        }
        // The per-worker sampler takes exactly one request in ten.
        shadow.wait_for_requests(20);
        let agg = gw.metrics_until(|a| a.mirror(MirrorOutcome::Completed) == 20);
        assert_eq!(agg.mirror(MirrorOutcome::Mirrored), 20);
        assert_eq!(agg.mirror(MirrorOutcome::Failed), 0);
        assert_eq!(group_requests(&agg, "shadow"), 0, "the shadow does not count as serving");
        let main_seen = main.recorded();
        let shadow_seen = shadow.recorded();
        assert_eq!(shadow_seen.len(), 20);
        assert_eq!(main_seen.len(), 200);
        let sum = sum_of(&body).hex();
        for copy in &shadow_seen {
            let original = main_seen
                .iter()
                .find(|r| r.target == copy.target)
                .expect("the mirrored request reached the main group");
            assert_eq!(copy.method, "POST");
            assert_eq!(copy.body_len, 3000);
            assert_eq!(copy.body_sum, sum);
            assert_eq!(copy.header("x-request-id"), original.header("x-request-id"));
        }
    }

    fn mirror_to_a_tls_shadow_uses_its_tls_and_pools_the_connection(driver: &str) {
        let pki = Pki::new("mirror-shadow");
        let shadow = TlsUpstream::start(&pki.issue("shadow", Kind::Server(&["shadow.test"])));
        let main = Upstream::echo("main");
        let gw = GatewayConfig::new(driver)
            .merge_interval("100ms")
            .upstream("main", &[main.addr()])
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"shadow\"\ntargets = [ {{ addr = \"{}\" }} ]\n\
                 tls = {{ sni = \"shadow.test\", ca = {} }}",
                shadow.addr(),
                toml_path(&pki.ca_path())
            ))
            .routes(r#"
                [[routes]]
                name = "orders"
                upstream = "main"
                mirror = { upstream = "shadow", percent = 100, max_in_flight = 1 }
            "#)
            .start();
        let mut raw = Raw::connect(gw.addr());
        for completed in 1..=5 {
            assert_eq!(served_by(&mut raw, &get_req("/orders")), "main");
            // One at a time: each mirror ends before the next request is sampled.
            gw.metrics_until(|a| a.mirror(MirrorOutcome::Completed) == completed);
        }
        let agg = gw.metrics_until(|a| a.mirror(MirrorOutcome::Mirrored) == 5);
        assert_eq!(agg.mirror(MirrorOutcome::Failed), 0);
        assert_eq!(shadow.connections(), 1, "the shadow's TLS connection is pooled");
    }

    fn hanging_shadow_never_delays_the_client_and_the_bound_holds(driver: &str) {
        let main = Upstream::echo("main");
        let shadow = Upstream::start("shadow", Behavior::NeverAnswer);
        let gw = GatewayConfig::new(driver)
            .merge_interval("100ms")
            .upstream("main", &[main.addr()])
            .upstream_with("shadow", &[shadow.addr()], r#"connect = "1s", first_byte = "60s", idle = "60s""#)
            .routes(r#"
                [[routes]]
                name = "orders"
                upstream = "main"
                mirror = { upstream = "shadow", percent = 100, max_in_flight = 4 }
            "#)
            .start();
        let mut raw = Raw::connect(gw.addr());
        let mut slowest = Duration::ZERO;
        for _ in 0..100 {
            let started = Instant::now();
            assert_eq!(served_by(&mut raw, &get_req("/orders")), "main");
            slowest = slowest.max(started.elapsed());
        }
        // A client held up by the shadow would wait for its 60 s timeout.
        assert!(slowest < Duration::from_secs(5), "slowest client request took {slowest:?}");
        shadow.wait_for_requests(4);
        let agg = gw.metrics_until(|a| {
            a.mirror(MirrorOutcome::Mirrored) + a.mirror(MirrorOutcome::Dropped) == 100
        });
        assert_eq!(agg.mirror(MirrorOutcome::Mirrored), 4, "at most 4 mirrors in flight");
        assert_eq!(agg.mirror(MirrorOutcome::Dropped), 96);
        assert_eq!(shadow.requests(), 4);
        assert_eq!(main.requests(), 100);
    }

    fn shadow_timeouts_count_as_failed_and_free_their_places(driver: &str) {
        let main = Upstream::echo("main");
        let shadow = Upstream::start("shadow", Behavior::NeverAnswer);
        let gw = GatewayConfig::new(driver)
            .merge_interval("100ms")
            .upstream("main", &[main.addr()])
            .upstream_with("shadow", &[shadow.addr()], r#"connect = "1s", first_byte = "200ms", idle = "200ms""#)
            .routes(r#"
                [[routes]]
                name = "orders"
                upstream = "main"
                mirror = { upstream = "shadow", percent = 100, max_in_flight = 2 }
            "#)
            .start();
        let mut raw = Raw::connect(gw.addr());
        for _ in 0..2 {
            assert_eq!(served_by(&mut raw, &get_req("/orders")), "main");
        }
        // Both shadow exchanges time out after 200 ms; their places are freed.
        gw.metrics_until(|a| a.mirror(MirrorOutcome::Failed) == 2);
        for _ in 0..2 {
            assert_eq!(served_by(&mut raw, &get_req("/orders")), "main");
        }
        shadow.wait_for_requests(4);
        let agg = gw.metrics_until(|a| a.mirror(MirrorOutcome::Failed) == 4);
        assert_eq!(agg.mirror(MirrorOutcome::Mirrored), 4);
        assert_eq!(agg.mirror(MirrorOutcome::Dropped), 0, "freed places are used again");
    }

    fn failing_shadow_never_fails_the_client(driver: &str) {
        let main = Upstream::echo("main");
        let failing = Upstream::start("failing", Behavior::CloseMidBody);
        let gw = GatewayConfig::new(driver)
            .merge_interval("100ms")
            .upstream("main", &[main.addr()])
            .upstream("refused", &[refused_addr()])
            .upstream("failing", &[failing.addr()])
            .routes(r#"
                [[routes]]
                name = "a"
                match = { path_prefix = "/a" }
                upstream = "main"
                mirror = { upstream = "refused", percent = 100 }
                [[routes]]
                name = "b"
                match = { path_prefix = "/b" }
                upstream = "main"
                mirror = { upstream = "failing", percent = 100 }
            "#)
            .start();
        let mut raw = Raw::connect(gw.addr());
        for _ in 0..20 {
            assert_eq!(served_by(&mut raw, &get_req("/a")), "main");
            assert_eq!(served_by(&mut raw, &get_req("/b")), "main");
        }
        let agg = gw.metrics_until(|a| a.mirror(MirrorOutcome::Failed) == 40);
        assert_eq!(agg.mirror(MirrorOutcome::Mirrored), 40);
        assert_eq!(main.requests(), 40);
    }

    fn bodies_not_in_hand_are_skipped_not_mirrored(driver: &str) {
        let main = Upstream::echo("main");
        let shadow = Upstream::echo("shadow");
        let gw = GatewayConfig::new(driver)
            .merge_interval("100ms")
            .upstream("main", &[main.addr()])
            .upstream("shadow", &[shadow.addr()])
            .routes(r#"
                [[routes]]
                name = "upload"
                upstream = "main"
                mirror = { upstream = "shadow", percent = 100 }
            "#)
            .start();
        let mut raw = Raw::connect(gw.addr());
        let large = pattern(200 * 1024);
        let head = format!(
            "PUT /big HTTP/1.1\r\nHost: example.com\r\nContent-Length: {}\r\n\r\n",
            large.len()
        );
        raw.send([head.as_bytes(), &large].concat());
        assert_eq!(raw.read_response().status, 200);
        raw.send("POST /chunked HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(raw.read_response().status, 200);
        raw.send(get_req("/small"));
        assert_eq!(raw.read_response().status, 200);
        shadow.wait_for_requests(1);
        let agg = gw.metrics_until(|a| a.mirror(MirrorOutcome::Skipped) == 2);
        assert_eq!(agg.mirror(MirrorOutcome::Mirrored), 1);
        assert_eq!(shadow.recorded()[0].target, "/small");
        assert_eq!(main.requests(), 3);
    }

    fn reload_shifts_split_weights(driver: &str) {
        let v1 = Upstream::echo("v1");
        let v2 = Upstream::echo("v2");
        let config = |w1: u32, w2: u32| {
            GatewayConfig::new(driver)
                .upstream("v1", &[v1.addr()])
                .upstream("v2", &[v2.addr()])
                .routes(&format!(
                    "[[routes]]\nname = \"users\"\nsplit = [ {{ upstream = \"v1\", weight = {w1} }}, {{ upstream = \"v2\", weight = {w2} }} ]\n"
                ))
        };
        let gw = config(100, 0).start();
        let mut raw = Raw::connect(gw.addr());
        for _ in 0..50 {
            assert_eq!(served_by(&mut raw, &get_req("/")), "v1");
        }
        gw.store(&config(0, 100));
        for _ in 0..50 {
            assert_eq!(served_by(&mut raw, &get_req("/")), "v2");
        }
    }
}
