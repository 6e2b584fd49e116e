//! Cache purges across instances: two gateways sharing a real Redis apply each other's
//! purges (an operator's, and an unsafe request's invalidation); with Redis gone, the purges
//! that could not be published are counted.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::client::{Raw, RawResponse, Session};
use common::gateway::{Gateway, GatewayConfig};
use common::redis::Redis;
use common::upstream::{Behavior, Handled, Upstream};
use common::worker_probe::WorkerProbe;
use ringgate::cache::Purge;

fn numbered_backend() -> Upstream {
    let count = Arc::new(AtomicUsize::new(0));
    Upstream::start(
        "origin",
        Behavior::Handler(Arc::new(move |r| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            Handled::Respond {
                delay: Duration::ZERO,
                status: 200,
                headers: vec![("cache-control".into(), "max-age=600".into())],
                body: format!("{} #{n}", r.target).into_bytes(),
            }
        })),
    )
}

fn instance(
    driver: &str,
    workers: usize,
    up: &Upstream,
    redis: &Redis,
    probe: &WorkerProbe,
) -> Gateway {
    let config = GatewayConfig::new(driver)
        .workers(workers)
        .upstream("origin", &[up.addr()])
        .routes(
            "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
             upstream = \"origin\"\ncache = \"api\"\n",
        )
        .tables(&format!(
            "[caches.api]\nmax_bytes = \"1MiB\"\n\n[redis]\nurl = \"{}\"\n",
            redis.url()
        ));
    probe.configure(config).start()
}

fn send(gw: &Gateway, method: &str, path: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    let length = if method == "GET" {
        ""
    } else {
        "Content-Length: 0\r\n"
    };
    raw.send(format!(
        "{method} {path} HTTP/1.1\r\nHost: h.example\r\n{length}\r\n"
    ));
    raw.read_response_to(method)
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

/// Waits until every session's worker dropped `path`.
fn dropped_everywhere(on: &mut [Session], what: &str, path: &str) {
    for (i, s) in on.iter_mut().enumerate() {
        let what = format!("{what}: worker {i} dropped {path}");
        common::wait_until(&what, common::IO_TIMEOUT, || !stored(s, path));
    }
}

fn subscribed(gw: &Gateway) {
    let status = gw.cache_sync_status().expect("purges shared through redis");
    common::wait_until("the purge subscription", common::IO_TIMEOUT, || {
        status.subscriptions() >= 1
    });
}

driver_tests! {
    fn purges_reach_every_instance_sharing_redis(driver: &str) {
        for workers in [1, 2] {
            purges_reach_every_worker_of_every_instance(driver, workers);
        }
    }
}

fn purges_reach_every_worker_of_every_instance(driver: &str, workers: usize) {
    let w = format!("{workers} worker(s)");
    let mut redis = Redis::start();
    let up = numbered_backend();
    let probe = WorkerProbe::start();
    let a = instance(driver, workers, &up, &redis, &probe);
    let b = instance(driver, workers, &up, &redis, &probe);
    subscribed(&a);
    subscribed(&b);
    let mut on_a = probe.sessions(a.addr(), workers);
    let mut on_b = probe.sessions(b.addr(), workers);
    // Every worker of both instances stores /p, and serves its entry.
    for (i, s) in on_b.iter_mut().enumerate() {
        let first = s.get("/p").text();
        assert_eq!(
            s.get("/p").text(),
            first,
            "{w}: b's worker {i} serves its entry"
        );
    }
    for s in on_a.iter_mut() {
        s.get("/p");
    }
    assert_eq!(up.requests(), 2 * workers, "{w}");
    // An operator's purge on `a` reaches every worker of `b`.
    let purged = a.purge(Purge::url("http://h.example/p").expect("url"));
    assert_eq!(purged, workers, "{w}: one entry per worker of a");
    dropped_everywhere(&mut on_b, &format!("{w}: b applied a's purge"), "/p");
    let status_b = b.cache_sync_status().expect("status");
    assert!(status_b.received() >= 1, "{w}");
    // An unsafe request on `b` invalidates every worker of `a` too.
    for (i, s) in on_a.iter_mut().enumerate() {
        s.get("/p");
        assert!(stored(s, "/p"), "{w}: a's worker {i}");
    }
    assert_eq!(send(&b, "PUT", "/p").status, 200, "{w}");
    dropped_everywhere(&mut on_a, &format!("{w}: a applied b's invalidation"), "/p");
    // Redis gone: purges made here cannot reach the others, and the metric says so.
    redis.kill();
    let status_a = a.cache_sync_status().expect("status");
    let before = status_a.unpublished();
    a.purge(Purge::tag("t").expect("tag"));
    common::wait_until(
        &format!("{w}: the unpublished purge counted"),
        common::IO_TIMEOUT,
        || status_a.unpublished() > before,
    );
    assert!(!status_a.up(), "{w}");
    assert!(status_a.errors() >= 1, "{w}");
}
