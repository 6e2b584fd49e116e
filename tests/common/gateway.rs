//! Starts ringgate in-process on 127.0.0.1:0 from a config the test describes.
//!
//! The harness writes `[server]` (listen, workers, driver, limits, timeouts) with test-friendly
//! defaults the test may override key by key, then the test's upstreams and routes. The text
//! goes through `config::load_str` and `Server::start`, exactly as the binary does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ringgate::config;
use ringgate::metrics::{Aggregator, MetricsDelta};
use ringgate::server::{DriverKind, RunningServer, Server};

use super::IO_TIMEOUT;

/// The upstream pool [`GatewayConfig::upstream`] writes.
pub const DEFAULT_POOL: &str = r#"max_idle_per_target = 64, idle_timeout = "30s""#;

/// The upstream timeouts [`GatewayConfig::upstream`] writes.
pub const DEFAULT_UPSTREAM_TIMEOUTS: &str = r#"connect = "1s", first_byte = "5s", idle = "5s""#;

/// A config under construction.
#[derive(Clone)]
pub struct GatewayConfig {
    driver: String,
    server: BTreeMap<String, String>,
    limits: BTreeMap<String, String>,
    timeouts: BTreeMap<String, String>,
    upstreams: Vec<String>,
    routes: Vec<String>,
    tls: Vec<String>,
    merge_interval: Option<String>,
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

impl GatewayConfig {
    /// `driver` is `"io_uring"` or `"legacy"` (from `driver_tests!`). One worker by default,
    /// so that per-worker state (pools, round robin) gives exact counts.
    pub fn new(driver: &str) -> Self {
        let mut server = BTreeMap::new();
        server.insert("listen".into(), "[\"127.0.0.1:0\"]".into());
        server.insert("workers".into(), "1".into());
        server.insert("pin_workers".into(), "false".into());
        server.insert("driver".into(), quoted(driver));
        server.insert("graceful_shutdown".into(), quoted("5s"));
        let mut limits = BTreeMap::new();
        limits.insert("max_head_bytes".into(), "16384".into());
        limits.insert("max_headers".into(), "100".into());
        limits.insert("max_uri_bytes".into(), "8192".into());
        limits.insert("max_body_bytes".into(), quoted("10MiB"));
        let mut timeouts = BTreeMap::new();
        timeouts.insert("head_read".into(), quoted("10s"));
        timeouts.insert("keepalive_idle".into(), quoted("60s"));
        timeouts.insert("body_idle".into(), quoted("30s"));
        GatewayConfig {
            driver: driver.to_string(),
            server,
            limits,
            timeouts,
            upstreams: Vec::new(),
            routes: Vec::new(),
            tls: Vec::new(),
            merge_interval: None,
        }
    }

    /// Sets a `[server]` key to a TOML value (write strings quoted: `r#""2s""#`).
    pub fn server(mut self, key: &str, toml_value: &str) -> Self {
        self.server.insert(key.into(), toml_value.into());
        self
    }

    pub fn workers(self, n: usize) -> Self {
        self.server("workers", &n.to_string())
    }

    /// Sets a `[server.limits]` key to a TOML value.
    pub fn limit(mut self, key: &str, toml_value: &str) -> Self {
        self.limits.insert(key.into(), toml_value.into());
        self
    }

    /// Sets a `[server.timeouts]` key to a duration string such as `"300ms"`.
    pub fn timeout(mut self, key: &str, duration: &str) -> Self {
        self.timeouts.insert(key.into(), quoted(duration));
        self
    }

    /// A `[[server.tls]]` listener on 127.0.0.1:0 with these extra keys (TOML lines).
    pub fn tls_listener(mut self, keys: &str) -> Self {
        self.tls.push(format!(
            "[[server.tls]]\nlisten = \"127.0.0.1:0\"\n{}\n",
            keys.trim()
        ));
        self
    }

    /// Raw TOML for one `[[upstreams]]` table.
    pub fn upstream_raw(mut self, toml: &str) -> Self {
        self.upstreams.push(toml.trim().to_string() + "\n");
        self
    }

    /// Sets `[metrics] merge_interval` (e.g. `"100ms"`), for tests that read the metrics.
    pub fn merge_interval(mut self, duration: &str) -> Self {
        self.merge_interval = Some(duration.to_string());
        self
    }

    /// An upstream group with default pool and timeouts.
    pub fn upstream(self, name: &str, targets: &[SocketAddr]) -> Self {
        self.upstream_with(name, targets, DEFAULT_UPSTREAM_TIMEOUTS)
    }

    /// An upstream group with these inline timeouts (`connect = "1s", first_byte = ...`).
    pub fn upstream_with(self, name: &str, targets: &[SocketAddr], timeouts: &str) -> Self {
        self.upstream_with_pool(name, targets, DEFAULT_POOL, timeouts)
    }

    /// An upstream group with this inline pool (`max_idle_per_target = 1, idle_timeout = ...`)
    /// and these inline timeouts.
    pub fn upstream_with_pool(
        mut self,
        name: &str,
        targets: &[SocketAddr],
        pool: &str,
        timeouts: &str,
    ) -> Self {
        let targets: Vec<String> = targets
            .iter()
            .map(|a| format!("{{ addr = \"{a}\" }}"))
            .collect();
        self.upstreams.push(format!(
            "[[upstreams]]\nname = \"{name}\"\ntargets = [ {} ]\npool = {{ {pool} }}\ntimeouts = {{ {timeouts} }}\n",
            targets.join(", ")
        ));
        self
    }

    /// Raw TOML for one or more `[[routes]]` tables, appended in order.
    pub fn routes(mut self, toml: &str) -> Self {
        self.routes.push(toml.trim().to_string());
        self
    }

    /// Raw TOML tables (`[policies.NAME]`, `[redis]`) appended after the routes.
    pub fn tables(self, toml: &str) -> Self {
        self.routes(toml)
    }

    /// A catch-all route (`path_prefix = "/"`) to `upstream`.
    pub fn route_all_to(self, upstream: &str) -> Self {
        self.routes(&format!(
            "[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"{upstream}\"\n"
        ))
    }

    /// The config file's text.
    pub fn render(&self) -> String {
        let mut s = String::from("[server]\n");
        for (k, v) in &self.server {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s.push_str("\n[server.limits]\n");
        for (k, v) in &self.limits {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s.push_str("\n[server.timeouts]\n");
        for (k, v) in &self.timeouts {
            s.push_str(&format!("{k} = {v}\n"));
        }
        for t in &self.tls {
            s.push('\n');
            s.push_str(t);
        }
        if let Some(interval) = &self.merge_interval {
            s.push_str(&format!("\n[metrics]\nmerge_interval = \"{interval}\"\n"));
        }
        for u in &self.upstreams {
            s.push('\n');
            s.push_str(u);
        }
        for r in &self.routes {
            s.push('\n');
            s.push_str(r);
            s.push('\n');
        }
        s
    }

    /// Loads the config and starts the server; panics (failing the test) if either fails or
    /// the workers do not run the requested driver.
    pub fn start(&self) -> Gateway {
        let text = self.render();
        let snapshot = match config::load_str(&text, "test.toml") {
            Ok(s) => s,
            Err(e) => {
                let problems: Vec<String> = e
                    .problems
                    .iter()
                    .map(|p| format!("{:?}: {}: {}", p.line, p.key, p.message))
                    .collect();
                panic!(
                    "test config rejected: {e}\n{}\n--- config ---\n{text}",
                    problems.join("\n")
                )
            }
        };
        let server = Server::start(Arc::new(snapshot))
            .unwrap_or_else(|e| panic!("Server::start failed: {e:?}\n--- config ---\n{text}"));
        let expected = match self.driver.as_str() {
            "io_uring" => Some(DriverKind::IoUring),
            "legacy" => Some(DriverKind::Legacy),
            _ => None,
        };
        let drivers = server.drivers();
        assert!(!drivers.is_empty(), "server reports no workers");
        if let Some(kind) = expected {
            assert!(
                drivers.iter().all(|d| *d == kind),
                "asked for {kind:?}, workers run {drivers:?}"
            );
        }
        let addrs = server.local_addrs();
        assert!(!addrs.is_empty(), "server reports no listeners");
        assert!(
            addrs.iter().all(|a| a.port() != 0),
            "listener without a real port: {addrs:?}"
        );
        let tls_addrs = server.tls_local_addrs();
        // Workers drop deltas when the channel is full, so a test that reads the metrics
        // gets a collector that merges them as they come.
        let metrics = self
            .merge_interval
            .is_some()
            .then(|| MetricsCollector::start(server.metrics_receiver()));
        Gateway {
            server: Some(server),
            addrs,
            tls_addrs,
            metrics,
        }
    }
}

/// A running in-process gateway. Dropping it shuts it down (bounded: a hang fails the test).
pub struct Gateway {
    server: Option<RunningServer>,
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    /// Merges the workers' metric deltas (nothing else drains them in-process); only when
    /// the config set `merge_interval`.
    metrics: Option<MetricsCollector>,
}

/// A thread that merges metric deltas as they arrive, until dropped (or finished).
struct MetricsCollector {
    shared: Arc<(Mutex<Aggregator>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsCollector {
    fn start(rx: crossbeam_channel::Receiver<MetricsDelta>) -> Self {
        let shared = Arc::new((Mutex::new(Aggregator::new()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_shared, thread_stop) = (Arc::clone(&shared), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let merge = |delta| {
                let (agg, changed) = &*thread_shared;
                agg.lock().unwrap_or_else(|e| e.into_inner()).merge(delta);
                changed.notify_all();
            };
            while !thread_stop.load(Ordering::SeqCst) {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(delta) => merge(delta),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
            }
            // Stopped: what the workers sent before is merged still.
            while let Ok(delta) = rx.try_recv() {
                merge(delta);
            }
        });
        MetricsCollector {
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// Merges every delta sent so far, stops, and returns the sum.
    fn finish(mut self) -> Aggregator {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("metrics collector");
        }
        let (agg, _) = &*self.shared;
        let sum = agg.lock().unwrap_or_else(|e| e.into_inner()).clone();
        sum
    }
}

impl Drop for MetricsCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Gateway {
    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The first TLS listener's address.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// Redis health of cluster-scoped rate limits.
    pub fn rate_limit_status(&self) -> std::sync::Arc<ringgate::rate_limit::ClusterStatus> {
        self.server.as_ref().expect("running").rate_limit_status()
    }

    pub fn drivers(&self) -> Vec<DriverKind> {
        self.server
            .as_ref()
            .map(|s| s.drivers())
            .unwrap_or_default()
    }

    /// Waits until `done` holds on the merged metrics, and returns them; panics after
    /// [`IO_TIMEOUT`]. Needs `merge_interval` in the config (deltas arrive that often).
    pub fn metrics_until(&self, done: impl Fn(&Aggregator) -> bool) -> Aggregator {
        self.metrics_until_for("", done)
    }

    /// [`Self::metrics_until`], with `what` (the test's case) in the failure message.
    pub fn metrics_until_for(&self, what: &str, done: impl Fn(&Aggregator) -> bool) -> Aggregator {
        let collector = self
            .metrics
            .as_ref()
            .expect("set GatewayConfig::merge_interval to read the metrics");
        let (agg, changed) = &*collector.shared;
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut guard = agg.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if done(&guard) {
                return guard.clone();
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "{what}: metrics never matched: {:?}",
                *guard
            );
            guard = changed
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Swaps in a new configuration.
    pub fn store(&self, config: &GatewayConfig) {
        let snapshot = config::load_str(&config.render(), "test.toml").expect("reload config");
        self.server
            .as_ref()
            .expect("running")
            .store(Arc::new(snapshot));
    }

    /// Purges every worker's caches (what the admin API's `/cache/purge` does); returns how
    /// many entries went.
    pub fn purge(&self, purge: ringgate::cache::Purge) -> usize {
        self.server.as_ref().expect("running").purge(purge)
    }

    /// The health of cache purges shared through Redis, if the config has `[redis]` and caches.
    pub fn cache_sync_status(&self) -> Option<Arc<ringgate::server::cache_sync::CacheSyncStatus>> {
        self.server.as_ref()?.cache_sync_status()
    }

    /// Whether active health checks consider `addr` of group `upstream` healthy now
    /// (`None`: no such group or target in force).
    pub fn target_healthy(&self, upstream: &str, addr: SocketAddr) -> Option<bool> {
        let snapshot = self.server.as_ref()?.snapshot();
        let group = snapshot.upstreams.iter().find(|u| u.name == upstream)?;
        let set = group.live.current();
        let i = set.targets.iter().position(|t| t.addr == addr)?;
        Some(set.health[i].is_healthy())
    }

    /// The addresses of group `upstream`'s targets in force.
    pub fn targets(&self, upstream: &str) -> Vec<SocketAddr> {
        let Some(server) = self.server.as_ref() else {
            return Vec::new();
        };
        let snapshot = server.snapshot();
        snapshot
            .upstreams
            .iter()
            .find(|u| u.name == upstream)
            .map(|u| u.live.current().targets.iter().map(|t| t.addr).collect())
            .unwrap_or_default()
    }

    /// Graceful shutdown; panics if it fails or takes longer than `limit`.
    pub fn shutdown_within(mut self, limit: Duration) {
        let server = self.server.take().expect("running");
        match shutdown_bounded(server, limit) {
            Some(Ok(())) => {}
            Some(Err(e)) => panic!("shutdown failed: {e}"),
            None => panic!("shutdown did not finish within {limit:?}"),
        }
    }

    /// Graceful shutdown like [`Self::shutdown_within`], then the metrics the workers handed
    /// over up to their end (their last flush included). Needs `merge_interval`.
    pub fn shutdown_with_metrics(mut self, limit: Duration) -> Aggregator {
        let collector = self
            .metrics
            .take()
            .expect("set GatewayConfig::merge_interval to read the metrics");
        self.shutdown_within(limit);
        collector.finish()
    }

    /// Graceful shutdown (at most 15 s).
    pub fn shutdown(self) {
        self.shutdown_within(Duration::from_secs(15));
    }
}

/// Runs `shutdown` on its own thread so a hang becomes `None` instead of a hung test.
fn shutdown_bounded(server: RunningServer, limit: Duration) -> Option<Result<(), String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = server.shutdown().map_err(|e| format!("{e:?}"));
        let _ = tx.send(result);
    });
    rx.recv_timeout(limit).ok()
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let result = shutdown_bounded(server, Duration::from_secs(15));
            if !std::thread::panicking() {
                match result {
                    Some(Ok(())) => {}
                    Some(Err(e)) => panic!("shutdown at drop failed: {e}"),
                    None => panic!("shutdown at drop did not finish within 15s"),
                }
            }
        }
    }
}
