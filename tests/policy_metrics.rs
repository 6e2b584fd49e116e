//! Policy decisions in the admin `/metrics`, by policy and outcome, through the binary.
mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::client::{self, Raw};
use common::process::Ringgate;
use common::upstream::Upstream;
use common::IO_TIMEOUT;

const TOKEN: &str = "policy-metrics-token";

fn config(driver: &str, upstream: SocketAddr) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
workers = 1
pin_workers = false
driver = "{driver}"

[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[metrics]
merge_interval = "100ms"

[[upstreams]]
name = "echo"
targets = [ {{ addr = "{upstream}" }} ]

[[routes]]
name = "api"
upstream = "echo"
policies = ["key", "local"]

[policies.local]
kind = "ip_filter"
allow = ["127.0.0.0/8"]

[policies.key]
kind = "api_key"

[[consumers]]
name = "alice"
api_keys = ["alice-key-0123456789"]
"#
    )
}

fn status(gw: &Ringgate, extra: &str) -> u16 {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ));
    raw.read_response().status
}

fn metrics_until(addr: SocketAddr, want: &[&str]) -> String {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let req = client::agent()
            .get(&format!("http://{addr}/metrics"))
            .set("Authorization", &format!("Bearer {TOKEN}"));
        let text = String::from_utf8_lossy(&client::call(req).body).into_owned();
        if want.iter().all(|w| text.lines().any(|l| l == *w)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {want:?}:\n{text}"
        );
    }
}

driver_tests! {
    fn decisions_are_counted_by_policy_and_outcome(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = Ringgate::spawn(&config(driver, up.addr()), &[]);
        let line = gw.wait_for_line("admin API listening on");
        let admin: SocketAddr = line.rsplit(' ').next().and_then(|a| a.parse().ok()).expect("admin addr");
        for _ in 0..3 {
            assert_eq!(status(&gw, "X-Api-Key: alice-key-0123456789\r\n"), 200);
        }
        assert_eq!(status(&gw, ""), 401);
        assert_eq!(status(&gw, "X-Api-Key: wrong-key-0123456789\r\n"), 401);
        metrics_until(admin, &[
            r#"ringgate_policy_decisions_total{policy="local",outcome="allowed"} 5"#,
            r#"ringgate_policy_decisions_total{policy="key",outcome="allowed"} 3"#,
            r#"ringgate_policy_decisions_total{policy="key",outcome="unauthenticated"} 2"#,
            r#"ringgate_policy_decisions_total{policy="key",outcome="forbidden"} 0"#,
        ]);
    }
}
