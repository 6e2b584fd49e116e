//! Traffic-management state through the admin API of the binary: per-target active health
//! and passive ejections and per-worker breaker state in `/upstreams`, and the health,
//! breaker and retry families in `/metrics`.
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::client;
use common::process::Ringgate;
use common::upstream::{self, Behavior, Upstream};
use common::IO_TIMEOUT;

fn config(driver: &str, healthy: SocketAddr, sick: SocketAddr, broken: SocketAddr) -> String {
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

[[upstreams]]
name = "checked"
targets = [ {{ addr = "{healthy}" }}, {{ addr = "{sick}" }} ]
health = {{ path = "/healthz", interval = "50ms", unhealthy_after = 1, healthy_after = 1 }}
retry = {{ attempts = 2, on = ["503"], min_retries_per_sec = 0, budget_percent = 50 }}

[[upstreams]]
name = "guarded"
targets = [ {{ addr = "{broken}" }} ]
breaker = {{ min_requests = 3, error_ratio = 0.5, open_for = "1m" }}

[[routes]]
name = "checked"
match = {{ path_prefix = "/checked" }}
upstream = "checked"

[[routes]]
name = "guarded"
match = {{ path_prefix = "/guarded" }}
upstream = "guarded"
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

/// Asks `path` until its body satisfies `predicate` (the control side merges worker state
/// every `merge_interval`), bounded by the I/O timeout.
fn admin_until(api: SocketAddr, path: &str, predicate: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let reply = client::get(&format!("http://{api}{path}"));
        assert_eq!(reply.status, 200);
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        if predicate(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never matched; last:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

driver_tests! {
    fn upstreams_and_metrics_show_health_and_breaker_state(driver: &str) {
        let healthy = Upstream::echo("healthy");
        let sick = Upstream::start("sick", Behavior::Status(503));
        let broken = upstream::refused_addr();
        let gw = Ringgate::spawn(&config(driver, healthy.addr(), sick.addr(), broken), &[]);
        let api = admin_addr(&gw);
        let base = format!("http://{}", gw.addr());
        let sick_down = format!(r#""addr":"{}","weight":1,"healthy":false"#, sick.addr());
        admin_until(api, "/upstreams", |t| t.contains(&sick_down));
        for _ in 0..3 {
            assert_eq!(client::get(&format!("{base}/guarded/x")).status, 502);
        }
        let refused = client::get(&format!("{base}/guarded/x"));
        assert_eq!(refused.status, 503);
        assert!(refused.header("retry-after").is_some());
        for _ in 0..4 {
            assert_eq!(client::get(&format!("{base}/checked/x")).status, 200);
        }
        let upstreams = admin_until(api, "/upstreams", |t| {
            t.contains(r#""breaker":[{"worker":0,"state":"open"}]"#)
        });
        assert!(upstreams.contains(&format!(r#""addr":"{}","weight":1,"healthy":true"#, healthy.addr())), "{upstreams}");
        assert!(upstreams.contains(r#""name":"guarded","balance":"round_robin""#), "{upstreams}");
        let metrics = admin_until(api, "/metrics", |t| {
            t.contains(r#"ringgate_upstream_breaker_rejected_total{upstream="guarded"} 1"#)
        });
        assert!(metrics.contains(r#"ringgate_upstream_breaker_opened_total{upstream="guarded"} 1"#), "{metrics}");
        assert!(metrics.contains(r#"ringgate_upstream_breaker_open_workers{upstream="guarded"} 1"#), "{metrics}");
        assert!(metrics.contains(&format!(r#"ringgate_upstream_target_healthy{{upstream="checked",target="{}"}} 0"#, sick.addr())), "{metrics}");
        assert!(metrics.contains(&format!(r#"ringgate_upstream_target_healthy{{upstream="checked",target="{}"}} 1"#, healthy.addr())), "{metrics}");
        assert!(metrics.contains("# TYPE ringgate_upstream_retries_total counter"), "{metrics}");
    }
}
