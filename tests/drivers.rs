//! Worker start-up: the I/O driver `driver = "auto"` picks (io_uring where the kernel offers
//! it, epoll when `MONOIO_FORCE_LEGACY_DRIVER` asks for it), the log line that reports it, and
//! workers pinned to cores.
//!
//! The `auto` tests run once, not under `driver_tests!`: the driver is what they check.
mod common;

use common::client;
use common::gateway::GatewayConfig;
use common::process::Ringgate;
use common::upstream::{Echoed, Upstream};
use ringgate::server::DriverKind;

/// What `auto` must pick in this process: io_uring when monoio's probe (the one ringgate
/// uses, which honours `MONOIO_FORCE_LEGACY_DRIVER`) finds it, else epoll.
fn auto_expected() -> DriverKind {
    if monoio::utils::detect_uring() {
        DriverKind::IoUring
    } else {
        DriverKind::Legacy
    }
}

/// A config of `driver` proxying everything to `up`.
fn proxy_config(driver: &str, up: &Upstream) -> GatewayConfig {
    GatewayConfig::new(driver)
        .upstream("echo", &[up.addr()])
        .route_all_to("echo")
}

#[test]
fn auto_driver_starts_serves_and_picks_io_uring_where_available() {
    let up = Upstream::echo("echo");
    let gw = proxy_config("auto", &up).workers(2).start();
    let expected = auto_expected();
    assert_eq!(
        gw.drivers(),
        vec![expected; 2],
        "driver = \"auto\" (io_uring available: {})",
        expected == DriverKind::IoUring
    );
    let agent = client::agent();
    for i in 0..4 {
        let r = client::call(agent.get(&gw.url(&format!("/auto/{i}"))));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(Echoed::parse(&r.text()).target, format!("/auto/{i}"));
    }
    gw.shutdown();
}

/// Starts the binary with `driver = "auto"` and `MONOIO_FORCE_LEGACY_DRIVER` as given, checks
/// it serves, and returns its log up to `listening on`.
fn binary_auto_log(force_legacy: Option<&str>) -> String {
    let up = Upstream::echo("echo");
    let text = proxy_config("auto", &up).render();
    let gw = Ringgate::spawn_with_env(&text, &[], &[("MONOIO_FORCE_LEGACY_DRIVER", force_legacy)]);
    let r = client::get(&format!("http://{}/auto", gw.addr()));
    assert_eq!(r.status, 200, "{}\nlog:\n{}", r.text(), gw.log());
    assert_eq!(Echoed::parse(&r.text()).target, "/auto");
    gw.log()
}

#[test]
fn binary_auto_driver_logs_io_uring() {
    // Without the variable, the probe in this process stands for the machine's kernel.
    if let Some(v) = std::env::var_os("MONOIO_FORCE_LEGACY_DRIVER") {
        panic!("MONOIO_FORCE_LEGACY_DRIVER={v:?} is set for the test run: unset it");
    }
    let log = binary_auto_log(None);
    let line = match auto_expected() {
        DriverKind::IoUring => "worker 0 running with the io_uring driver",
        DriverKind::Legacy => "worker 0 running with the epoll (legacy) driver",
    };
    assert!(log.contains(line), "expected `{line}` in the log:\n{log}");
}

#[test]
fn binary_auto_driver_with_force_legacy_logs_epoll() {
    let log = binary_auto_log(Some("1"));
    let line = "worker 0 running with the epoll (legacy) driver";
    assert!(log.contains(line), "expected `{line}` in the log:\n{log}");
    assert!(
        !log.contains("io_uring driver"),
        "a worker ran io_uring despite MONOIO_FORCE_LEGACY_DRIVER=1:\n{log}"
    );
}

driver_tests! {
    fn pinned_workers_start_and_serve(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = proxy_config(driver, &up)
            .workers(2)
            .server("pin_workers", "true")
            .start();
        assert_eq!(gw.drivers().len(), 2, "two workers asked for");
        // Separate client connections, so that both workers' listeners may take some.
        for i in 0..6 {
            let r = client::get(&gw.url(&format!("/pinned/{i}")));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(Echoed::parse(&r.text()).target, format!("/pinned/{i}"));
        }
        gw.shutdown();
    }
}

/// `server.uring_entries` sizes the submission queue: a burst of requests that queues more
/// operations in one loop round than the queue holds is submitted as the queue fills (the
/// middle of the round), and every request is answered.
#[test]
fn a_small_submission_queue_serves_a_burst_larger_than_it() {
    let Some((_up, gw)) = uring_gateway("uring_entries", "256") else {
        return;
    };
    assert!(
        uring_sq_masks().contains(&255),
        "no io_uring of this process has a 256-entry submission queue: {:?}",
        uring_sq_masks()
    );
    answers_a_burst(&gw, 600);
    gw.shutdown();
}

/// `server.uring_defer_taskrun = true` keeps completion work until the worker waits (at most
/// 20 items per wait from Linux 6.13). A burst whose upstream answers all arrive while the
/// worker is busy with the rest is still answered in full.
#[test]
fn deferred_task_run_serves_a_burst() {
    let Some((_up, gw)) = uring_gateway("uring_defer_taskrun", "true") else {
        return;
    };
    answers_a_burst(&gw, 600);
    gw.shutdown();
}

/// An io_uring gateway with `[server] key = value` in front of an echo upstream; `None`, with
/// a note, where this kernel offers no io_uring.
fn uring_gateway(key: &str, value: &str) -> Option<(Upstream, common::gateway::Gateway)> {
    if !monoio::utils::detect_uring() {
        eprintln!("skipped: this kernel offers no io_uring");
        return None;
    }
    let up = Upstream::echo("echo");
    let gw = proxy_config("io_uring", &up).server(key, value).start();
    assert_eq!(gw.drivers(), vec![DriverKind::IoUring]);
    Some((up, gw))
}

/// Sends one request on each of `connections` new connections before reading any answer (one
/// worker round holds them all), then checks every answer.
fn answers_a_burst(gw: &common::gateway::Gateway, connections: usize) {
    // Each request holds four descriptors: client, accepted, upstream and its accepted end.
    common::raise_fd_limit(4096, 4 * connections as u64 + 256);
    let mut conns: Vec<client::Raw> = (0..connections)
        .map(|_| client::Raw::connect(gw.addr()))
        .collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(format!("GET /burst/{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let r = conn.read_response();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(Echoed::parse(&r.text()).target, format!("/burst/{i}"));
    }
}

/// The `SqMask` (entries − 1) of every io_uring this process holds, from /proc/self/fdinfo.
fn uring_sq_masks() -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    fds.filter_map(Result::ok)
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().contains("io_uring"))
        })
        .filter_map(|fd| {
            std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .ok()
        })
        .filter_map(|info| {
            let line = info.lines().find(|l| l.starts_with("SqMask:"))?;
            let hex = line["SqMask:".len()..].trim().trim_start_matches("0x");
            u64::from_str_radix(hex, 16).ok()
        })
        .collect()
}
