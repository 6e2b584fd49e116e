//! Cache purges through the admin API of the binary: by URL, prefix and tag on every worker,
//! the count answered, bad patterns refused with 400 naming the problem, and the cache
//! families in `/metrics`.
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::client::{self, Session};
use common::process::Ringgate;
use common::upstream::{Behavior, Handled, Upstream};
use common::worker_probe::WorkerProbe;

fn config(
    driver: &str,
    workers: usize,
    upstream: SocketAddr,
    log: &std::path::Path,
    probe: &WorkerProbe,
) -> String {
    format!(
        r#"
[access_log]
format = "json"
path = "{}"

[server]
listen = ["127.0.0.1:0"]
workers = {workers}
pin_workers = false
driver = "{driver}"

[admin]
listen = "127.0.0.1:0"

[metrics]
merge_interval = "100ms"

[[upstreams]]
name = "origin"
targets = [ {{ addr = "{upstream}" }} ]

[[routes]]
name = "catalog"
match = {{ path_prefix = "/" }}
upstream = "origin"
cache = "api"

[caches.api]
max_bytes = "1MiB"
tag_header = "Surrogate-Key"

{}
"#,
        log.display(),
        probe.toml()
    )
}

fn admin_addr(gw: &Ringgate) -> SocketAddr {
    let line = gw.wait_for_line("admin API listening on");
    line.rsplit(' ')
        .next()
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in `{line}`"))
}

fn admin(method: &str, addr: SocketAddr, path: &str) -> client::Reply {
    client::call(client::agent().request(method, &format!("http://{addr}{path}")))
}

/// Whether the session's worker holds `path` (`only-if-cached` never goes upstream).
fn stored(s: &mut Session, path: &str) -> bool {
    let r = s.request("GET", path, "Cache-Control: only-if-cached\r\n");
    match r.status {
        200 => true,
        504 => false,
        other => panic!("only-if-cached {path}: status {other}: {r:?}"),
    }
}

driver_tests! {
    fn the_admin_api_purges_every_worker_and_refuses_bad_patterns(driver: &str) {
        for workers in [1, 2] {
            purges_every_worker_and_refuses_bad_patterns(driver, workers);
        }
    }
}

fn purges_every_worker_and_refuses_bad_patterns(driver: &str, workers: usize) {
    let w = format!("{workers} worker(s)");
    let count = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(
        "origin",
        Behavior::Handler(Arc::new(move |r| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let tag = if r.target.starts_with("/catalog/") {
                "catalog"
            } else {
                "misc"
            };
            Handled::Respond {
                delay: Duration::ZERO,
                status: 200,
                headers: vec![
                    ("cache-control".into(), "max-age=600".into()),
                    ("surrogate-key".into(), tag.into()),
                ],
                body: format!("{} #{n}", r.target).into_bytes(),
            }
        })),
    );
    let dir = std::env::temp_dir().join(format!(
        "ringgate-cache-admin-{driver}-{workers}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("access.log");
    let probe = WorkerProbe::start();
    let gw = Ringgate::spawn(&config(driver, workers, up.addr(), &log, &probe), &[]);
    let api = admin_addr(&gw);
    // Every path on every worker, each served twice (a miss, then a hit).
    let mut on = probe.sessions(gw.addr(), workers);
    let paths = ["/catalog/1", "/catalog/2", "/about", "/x?q=1"];
    for s in on.iter_mut() {
        for path in paths {
            s.get(path);
            assert_eq!(
                s.get(path).header("cache-status"),
                Some("ringgate; hit"),
                "{w}: {path}"
            );
        }
    }
    let filled = up.requests();
    assert_eq!(filled, 4 * workers, "{w}");
    let purged = |reply: client::Reply| -> usize {
        assert_eq!(reply.status, 200, "{w}: {}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{w}"
        );
        let text = reply.text();
        text.trim()
            .strip_prefix("{\"purged\":")
            .and_then(|t| t.strip_suffix('}'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{w}: {text}"))
    };
    let url = purged(admin(
        "POST",
        api,
        "/cache/purge?url=http%3A%2F%2Fh.example%2Fx%3Fq%3D1",
    ));
    assert_eq!(url, workers, "{w}: one entry per worker");
    let prefix = purged(admin(
        "POST",
        api,
        "/cache/purge?prefix=/catalog/&host=h.example",
    ));
    assert_eq!(prefix, 2 * workers, "{w}");
    let tag = purged(admin("POST", api, "/cache/purge?tag=misc"));
    assert_eq!(tag, workers, "{w}");
    assert_eq!(
        purged(admin("POST", api, "/cache/purge?tag=misc")),
        0,
        "{w}"
    );
    for (i, s) in on.iter_mut().enumerate() {
        for path in paths {
            assert!(!stored(s, path), "{w}: worker {i} kept {path}");
        }
        let before = up.requests();
        s.get("/about");
        assert_eq!(up.requests(), before + 1, "{w}: worker {i}");
    }
    // Bad patterns: 400 naming the problem.
    for (query, says) in [
        ("url=/relative", "absolute"),
        ("prefix=catalog", "invalid prefix"),
        ("tag=a%20b", "invalid tag"),
        ("", "name what to purge"),
        ("url=http%3A%2F%2Fh%2F&tag=t", "exactly one"),
        ("path=/x", "unknown parameter `path`"),
    ] {
        let reply = admin("POST", api, &format!("/cache/purge?{query}"));
        assert_eq!(reply.status, 400, "{w}: {query}: {}", reply.text());
        assert!(
            reply.text().contains(says),
            "{w}: {query}: {}",
            reply.text()
        );
    }
    assert_eq!(admin("GET", api, "/cache/purge?tag=t").status, 405, "{w}");
    // The cache families are in /metrics.
    let deadline = std::time::Instant::now() + common::IO_TIMEOUT;
    loop {
        let text = admin("GET", api, "/metrics").text();
        if text.contains("ringgate_cache_purged_total{cache=\"api\"}")
            && text
                .contains("ringgate_route_cache_requests_total{route=\"catalog\",result=\"hit\"}")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{w}: {text}");
    }
    // The access log says per request what the cache did.
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("\"cache\":\"hit\"") && text.contains("\"cache\":\"miss\"") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{w}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
