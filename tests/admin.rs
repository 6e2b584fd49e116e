//! The admin API through the binary: health and readiness, the bearer token, metrics that
//! reflect real traffic, the active config with secrets redacted, and reload refused or
//! applied over HTTP.
mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::client;
use common::process::Ringgate;
use common::upstream::Upstream;
use common::IO_TIMEOUT;

const TOKEN: &str = "s3cret-admin-token";

fn config(driver: &str, upstream: SocketAddr, version: usize) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
workers = 2
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
name = "version"
match = {{ path_exact = "/version" }}
respond = {{ status = 200, body = "v{version}" }}

[[routes]]
name = "api"
upstream = "echo"
"#
    )
}

/// The admin address from the `admin API listening on ADDR` log line.
fn admin_addr(gw: &Ringgate) -> SocketAddr {
    let line = gw.wait_for_line("admin API listening on");
    line.rsplit(' ')
        .next()
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in `{line}`"))
}

fn admin(method: &str, addr: SocketAddr, path: &str, token: Option<&str>) -> client::Reply {
    let mut req = client::agent().request(method, &format!("http://{addr}{path}"));
    if let Some(token) = token {
        req = req.set("Authorization", &format!("Bearer {token}"));
    }
    client::call(req)
}

/// Scrapes until `predicate` holds on the metrics text (each scrape merges the workers'
/// latest deltas), bounded by the I/O timeout.
fn metrics_until(addr: SocketAddr, predicate: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let reply = admin("GET", addr, "/metrics", Some(TOKEN));
        assert_eq!(reply.status, 200);
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        if predicate(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never matched; last scrape:\n{text}"
        );
    }
}

/// The value of the first sample line starting with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

driver_tests! {
    fn admin_api_serves_health_metrics_config_and_reload(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = Ringgate::spawn(&config(driver, up.addr(), 1), &[]);
        let api = admin_addr(&gw);
        let base = format!("http://{}", gw.addr());

        assert_eq!(admin("GET", api, "/healthz", None).status, 401, "token not enforced");
        assert_eq!(admin("GET", api, "/healthz", Some("wrong")).status, 401);
        assert_eq!(admin("GET", api, "/healthz", Some(TOKEN)).status, 200);
        assert_eq!(admin("GET", api, "/readyz", Some(TOKEN)).status, 200);
        assert_eq!(admin("GET", api, "/nope", Some(TOKEN)).status, 404);
        assert_eq!(admin("POST", api, "/metrics", Some(TOKEN)).status, 405);

        for _ in 0..7 {
            assert_eq!(client::get(&format!("{base}/api/x")).status, 200);
        }
        for _ in 0..3 {
            assert_eq!(client::get(&format!("{base}/version")).status, 200);
        }
        let api_ok = r#"ringgate_requests_total{route="api",status_class="2xx",protocol="http1"}"#;
        let version_ok = r#"ringgate_requests_total{route="version",status_class="2xx",protocol="http1"}"#;
        let text = metrics_until(api, |t| {
            sample(t, api_ok) == Some(7.0) && sample(t, version_ok) == Some(3.0)
        });
        assert!(text.contains("# TYPE ringgate_request_duration_seconds histogram"));
        assert!(text.contains(r#"ringgate_request_duration_quantile_seconds{route="api",quantile="0.99"}"#));
        assert!(text.contains(r#"ringgate_upstream_requests_total{upstream="echo",status_class="2xx"} 7"#));
        assert!(text.contains("ringgate_worker_info{"));

        let upstreams = admin("GET", api, "/upstreams", Some(TOKEN));
        assert_eq!(upstreams.status, 200);
        let upstreams = String::from_utf8_lossy(&upstreams.body).into_owned();
        assert!(upstreams.contains(r#""name":"echo""#), "{upstreams}");
        assert!(upstreams.contains(&format!(r#""addr":"{}""#, up.addr())), "{upstreams}");

        let config_text = admin("GET", api, "/config", Some(TOKEN));
        assert_eq!(config_text.status, 200);
        let config_text = String::from_utf8_lossy(&config_text.body).into_owned();
        assert!(config_text.contains("[[routes]]"));
        assert!(!config_text.contains(TOKEN), "token not redacted:\n{config_text}");

        // An invalid file is refused over HTTP, with its problem, and the old config serves.
        let broken = config(driver, up.addr(), 2).replace("name = \"api\"", "name = \"api\"\ncolour = 1");
        std::fs::write(gw.config_path(), broken).expect("write");
        let refused = admin("POST", api, "/reload", Some(TOKEN));
        assert_eq!(refused.status, 400);
        assert!(String::from_utf8_lossy(&refused.body).contains("routes[1].colour"));
        assert_eq!(client::get(&format!("{base}/version")).body, b"v1");

        std::fs::write(gw.config_path(), config(driver, up.addr(), 3)).expect("write");
        let applied = admin("POST", api, "/reload", Some(TOKEN));
        assert_eq!(applied.status, 200, "{}", String::from_utf8_lossy(&applied.body));
        assert_eq!(client::get(&format!("{base}/version")).body, b"v3");
        metrics_until(api, |t| {
            sample(t, "ringgate_config_reload_failures_total") == Some(1.0)
                && sample(t, "ringgate_config_reloads_total") == Some(1.0)
        });
    }
}
