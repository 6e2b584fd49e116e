//! Cache purges across instances: two gateways sharing a real Redis apply each other's
//! purges (an operator's, and an unsafe request's invalidation); with Redis gone, the purges
//! that could not be published are counted.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::redis::Redis;
use common::upstream::{Behavior, Handled, Upstream};
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

fn instance(driver: &str, up: &Upstream, redis: &Redis) -> Gateway {
    GatewayConfig::new(driver)
        .upstream("origin", &[up.addr()])
        .routes(
            "[[routes]]\nname = \"cached\"\nmatch = { path_prefix = \"/\" }\n\
             upstream = \"origin\"\ncache = \"api\"\n",
        )
        .tables(&format!(
            "[caches.api]\nmax_bytes = \"1MiB\"\n\n[redis]\nurl = \"{}\"\n",
            redis.url()
        ))
        .start()
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

fn subscribed(gw: &Gateway) {
    let status = gw.cache_sync_status().expect("purges shared through redis");
    common::wait_until("the purge subscription", common::IO_TIMEOUT, || {
        status.subscriptions() >= 1
    });
}

driver_tests! {
    fn purges_reach_every_instance_sharing_redis(driver: &str) {
        let mut redis = Redis::start();
        let up = numbered_backend();
        let a = instance(driver, &up, &redis);
        let b = instance(driver, &up, &redis);
        subscribed(&a);
        subscribed(&b);
        let on_b = send(&b, "GET", "/p").text();
        send(&a, "GET", "/p");
        assert_eq!(send(&b, "GET", "/p").text(), on_b, "b serves its entry");
        // An operator's purge on `a` reaches `b`.
        assert_eq!(a.purge(Purge::url("http://h.example/p").expect("url")), 1);
        common::wait_until("b applied a's purge", common::IO_TIMEOUT, || {
            send(&b, "GET", "/p").text() != on_b
        });
        let status_b = b.cache_sync_status().expect("status");
        assert!(status_b.received() >= 1);
        // An unsafe request on `b` invalidates `a` too.
        let on_a = send(&a, "GET", "/p").text();
        assert_eq!(send(&b, "PUT", "/p").status, 200);
        common::wait_until("a applied b's invalidation", common::IO_TIMEOUT, || {
            send(&a, "GET", "/p").text() != on_a
        });
        // Redis gone: purges made here cannot reach the others, and the metric says so.
        redis.kill();
        let status_a = a.cache_sync_status().expect("status");
        let before = status_a.unpublished();
        a.purge(Purge::tag("t").expect("tag"));
        common::wait_until("the unpublished purge counted", common::IO_TIMEOUT, || {
            status_a.unpublished() > before
        });
        assert!(!status_a.up());
        assert!(status_a.errors() >= 1);
    }
}
