//! Requests cancelled before their outcome and the group's circuit breaker: composite calls
//! dropped by the composite's deadline or by a required call that failed first, and a
//! proxied request whose HTTP/2 client reset its stream. A cancelled half-open probe gives
//! its slot back, so the breaker recovers instead of refusing every request on the worker
//! (proxied ones too) forever. Also: the `cancelled` and `not_sent` call outcomes, with the
//! latency of the dropped calls, in the Prometheus text.
mod common;

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::get;
use common::gateway::{Gateway, GatewayConfig};
use common::h2 as h2c;
use common::upstream::{Behavior, Handled, Upstream};
use common::IO_TIMEOUT;

/// What the `flaky` backend does now.
const FAIL: u8 = 0;
const SLOW: u8 = 1;
const OK: u8 = 2;

/// A backend that answers 500 (`FAIL`), answers after 3 s (`SLOW`), or answers at once;
/// `seen` counts the requests it received.
fn flaky(mode: &Arc<AtomicU8>, seen: &Arc<AtomicUsize>) -> Upstream {
    let (mode, seen) = (Arc::clone(mode), Arc::clone(seen));
    Upstream::start(
        "flaky",
        Behavior::Handler(Arc::new(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            match mode.load(Ordering::SeqCst) {
                FAIL => Handled::Respond {
                    delay: Duration::ZERO,
                    status: 500,
                    headers: Vec::new(),
                    body: b"down".to_vec(),
                },
                SLOW => Handled::json(3000, r#"{"v": 1}"#),
                _ => Handled::json(0, r#"{"v": 1}"#),
            }
        })),
    )
}

/// One worker; group `flaky` with a breaker (two failures open it for 1 s, one probe); a
/// proxied route `/direct`; composite `/deadline` (one optional call to `flaky`, 150 ms
/// deadline); composite `/sibling` (a required call to `boom`, which fails after 100 ms,
/// beside an optional call to `flaky` and a call that reads it).
fn gateway(driver: &str, flaky: &Upstream, boom: &Upstream) -> Gateway {
    GatewayConfig::new(driver)
        .server("h2c", "true")
        .merge_interval("100ms")
        .upstream_raw(&format!(
            r#"
            [[upstreams]]
            name = "flaky"
            targets = [{{ addr = "{}" }}]
            breaker = {{ error_ratio = 0.5, min_requests = 2, open_for = "1s", half_open_probes = 1 }}
            "#,
            flaky.addr()
        ))
        .upstream("boom", &[boom.addr()])
        .routes(
            r#"
            [[routes]]
            name = "direct"
            match = { path_prefix = "/direct" }
            upstream = "flaky"

            [[routes]]
            name = "deadline"
            match = { path_prefix = "/deadline" }
            compose = "deadline"

            [[routes]]
            name = "sibling"
            match = { path_prefix = "/sibling" }
            compose = "sibling"

            [composites.deadline]
            timeout = "150ms"
            [[composites.deadline.calls]]
            name = "probe"
            upstream = "flaky"
            path = "/probe"

            [composites.sibling]
            timeout = "5s"
            [[composites.sibling.calls]]
            name = "boom"
            upstream = "boom"
            path = "/boom"
            required = true
            [[composites.sibling.calls]]
            name = "probe"
            upstream = "flaky"
            path = "/probe"
            [[composites.sibling.calls]]
            name = "after"
            upstream = "flaky"
            path = "/after?v={probe.v}"
            "#,
        )
        .start()
}

fn boom() -> Upstream {
    Upstream::start(
        "boom",
        Behavior::Handler(Arc::new(|_| Handled::Respond {
            delay: Duration::from_millis(100),
            status: 500,
            headers: Vec::new(),
            body: b"boom".to_vec(),
        })),
    )
}

/// Opens the breaker with two 500s through the proxied route.
fn open_breaker(gw: &Gateway, mode: &AtomicU8) {
    mode.store(FAIL, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(get(&gw.url("/direct")).status, 500);
    }
    assert_eq!(get(&gw.url("/direct")).status, 503, "the breaker is open");
}

/// Sends the composite at `path` until one of its calls reaches the slow backend: the
/// breaker turned half-open and admitted it as the probe, and the composite cancelled it.
/// Returns the backend's request count then.
fn cancel_a_probe(gw: &Gateway, flaky: &Upstream, mode: &AtomicU8, path: &str) -> usize {
    mode.store(SLOW, Ordering::SeqCst);
    let before = flaky.requests();
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let started = Instant::now();
        let reply = get(&gw.url(path));
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "the slow call was not cancelled: {:?}",
            started.elapsed()
        );
        assert!(matches!(reply.status, 200 | 502), "{}", reply.text());
        if flaky.requests() > before {
            return flaky.requests();
        }
        assert!(
            Instant::now() < deadline,
            "the breaker never admitted a probe"
        );
        // Poll interval while the breaker is open (refused calls answer at once).
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After the cancelled probe the backend is healthy: the very next request is the probe
/// (its slot came back), it succeeds, and the breaker closes.
fn recovers_at_once(gw: &Gateway, mode: &AtomicU8) {
    mode.store(OK, Ordering::SeqCst);
    let reply = get(&gw.url("/direct"));
    assert_eq!(
        reply.status,
        200,
        "the cancelled probe still holds the only probe slot (or counted as a failure): {}",
        reply.text()
    );
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/direct")).status, 200, "closed again");
    }
}

driver_tests! {
    fn a_half_open_breaker_recovers_after_probes_cancelled_by_the_composite_deadline(driver: &str) {
        let mode = Arc::new(AtomicU8::new(FAIL));
        let seen = Arc::new(AtomicUsize::new(0));
        let (flaky, boom) = (flaky(&mode, &seen), boom());
        let gw = gateway(driver, &flaky, &boom);
        open_breaker(&gw, &mode);
        let sent = cancel_a_probe(&gw, &flaky, &mode, "/deadline");
        // A few more composites while half-open: each is a probe, each cancelled.
        for _ in 0..3 {
            let reply = get(&gw.url("/deadline"));
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("composite-missing"), Some("probe"));
        }
        // Each was admitted as the probe (the breaker refused none of them).
        flaky.wait_for_requests(sent + 3);
        recovers_at_once(&gw, &mode);
    }

    fn a_half_open_breaker_recovers_after_a_probe_cancelled_by_a_failed_required_call(driver: &str) {
        let mode = Arc::new(AtomicU8::new(FAIL));
        let seen = Arc::new(AtomicUsize::new(0));
        let (flaky, boom) = (flaky(&mode, &seen), boom());
        let gw = gateway(driver, &flaky, &boom);
        open_breaker(&gw, &mode);
        cancel_a_probe(&gw, &flaky, &mode, "/sibling");
        recovers_at_once(&gw, &mode);
        // The probe call in flight when `boom` failed is `cancelled`, with its time until
        // then; `after`, waiting for its input, was never sent.
        let agg = gw.metrics_until(|m| {
            m.composite("sibling", Some("probe")).is_some_and(|s| s.count("cancelled") >= 1)
        });
        let probe = agg.composite("sibling", Some("probe")).expect("probe");
        let after = agg.composite("sibling", Some("after")).expect("after");
        assert!(after.count("not_sent") >= 1);
        assert_eq!(after.latency.count(), 0, "never sent: no latency");
        assert!(
            probe.latency.count() >= probe.count("cancelled"),
            "a cancelled call's time is recorded"
        );
        let text = agg.render(&ringgate::metrics::ProcessInfo::default());
        let cancelled = text
            .lines()
            .find(|l| {
                l.starts_with(r#"ringgate_composite_calls_total{composite="sibling",call="probe",outcome="cancelled"}"#)
            })
            .unwrap_or_else(|| panic!("no cancelled sample:\n{text}"));
        assert!(!cancelled.ends_with(" 0"), "{cancelled}");
        assert!(
            text.lines().any(|l| l.starts_with(
                r#"ringgate_composite_calls_total{composite="sibling",call="after",outcome="not_sent"}"#
            )),
            "{text}"
        );
    }

    fn a_half_open_breaker_recovers_after_an_http2_client_reset_its_probe(driver: &str) {
        let mode = Arc::new(AtomicU8::new(FAIL));
        let seen = Arc::new(AtomicUsize::new(0));
        let (flaky, boom) = (flaky(&mode, &seen), boom());
        let gw = gateway(driver, &flaky, &boom);
        open_breaker(&gw, &mode);
        mode.store(SLOW, Ordering::SeqCst);
        // The client runs on its own thread, so that its connection keeps running (and
        // sends the reset) while this thread waits for the gateway to see it.
        let (addr, seen_by_client) = (gw.addr(), Arc::clone(&seen));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (reset_tx, reset_rx) = std::sync::mpsc::channel();
        let client = std::thread::spawn(move || {
            h2c::runtime().block_on(async move {
                let sender = h2c::connect(addr).await;
                reset_probe(&sender, &addr.to_string(), &seen_by_client).await;
                reset_tx.send(()).expect("test thread waits");
                // Keep the connection running until the test is done with it.
                while stopped.try_recv().is_err() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        });
        reset_rx.recv_timeout(IO_TIMEOUT).expect("the probe reached the backend");
        // The gateway saw the reset (and so dropped the stream's exchange).
        gw.metrics_until(|m| {
            m.render(&ringgate::metrics::ProcessInfo::default())
                .lines()
                .any(|l| l == r#"ringgate_http2_resets_total{protocol="h2",by="client"} 1"#)
        });
        recovers_at_once(&gw, &mode);
        let _ = stop.send(());
        client.join().expect("client thread");
    }
}

/// Sends `GET /direct` on new streams until one reaches the backend (the breaker turned
/// half-open and admitted it as the probe; refused ones are `503`), then resets that stream
/// (dropping its handles sends RST_STREAM CANCEL).
async fn reset_probe(
    sender: &h2::client::SendRequest<bytes::Bytes>,
    authority: &str,
    seen: &AtomicUsize,
) {
    let before = seen.load(Ordering::SeqCst);
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let mut ready = sender.clone().ready().await.expect("h2 ready");
        let (response, stream) = ready
            .send_request(h2c::get(authority, "/direct"), true)
            .expect("h2 request");
        let reached = async {
            while seen.load(Ordering::SeqCst) == before {
                // Poll interval of this wait.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::select! {
            answer = response => {
                let status = answer.expect("an answer").status();
                assert_eq!(status, 503, "refused while open");
            }
            () = reached => {
                drop(stream);
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the breaker never admitted a probe"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
