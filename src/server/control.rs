//! The control thread: everything that is not request handling.
//!
//! One loop owns the running server, the active configuration text, the reload counters and
//! the merged metrics. Signals, admin requests and the workers' metric deltas all arrive as
//! messages, so reloads are serialized and nothing here is shared with a lock.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, Receiver, Sender};

use super::{RunningServer, ServerError};
use crate::config::{self, Snapshot};
use crate::metrics::{Aggregator, ProcessInfo, RedisHealth, TargetHealthInfo, WorkerInfo};

/// A request to the control thread.
#[derive(Debug)]
pub enum ControlEvent {
    /// Stop gracefully; carries the reason (a signal name).
    Shutdown(&'static str),
    /// Reload the configuration file; the outcome goes to the reply channel, if any.
    Reload(Option<Sender<ReloadOutcome>>),
    /// Render the merged metrics in Prometheus text format.
    Metrics(Sender<String>),
    /// The active configuration file, secrets redacted.
    Config(Sender<String>),
    /// The upstream groups and their targets, as JSON.
    Upstreams(Sender<String>),
    /// The running configuration's routes as an OpenAPI 3.1 document (JSON).
    OpenApi(Sender<String>),
    /// Reopen the access log file at its path (SIGUSR1, after logrotate moved it).
    ReopenLogs,
    /// Purge the workers' caches; how many entries went goes to the reply channel.
    Purge(crate::cache::Purge, Sender<usize>),
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration is in force; a one-line summary.
    Applied(String),
    /// The file was refused; every problem, one per line. The old configuration stays.
    Refused(String),
}

/// Readiness, readable from any thread without asking the control loop (which may be busy
/// shutting down).
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
}

impl Readiness {
    /// Whether every worker runs and the gateway is not draining.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// The control loop's state.
pub struct Controller {
    server: RunningServer,
    config_path: PathBuf,
    config_text: String,
    workers_override: Option<usize>,
    aggregator: Aggregator,
    reloads: u64,
    failed_reloads: u64,
    generation: u64,
    started_unix: u64,
    readiness: Arc<Readiness>,
}

impl Controller {
    /// Takes charge of a started server whose config came from `config_path` (`config_text`).
    pub fn new(
        server: RunningServer,
        config_path: PathBuf,
        config_text: String,
        workers_override: Option<usize>,
    ) -> Self {
        let readiness = Arc::new(Readiness::default());
        readiness.set(true);
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            server,
            config_path,
            config_text,
            workers_override,
            aggregator: Aggregator::new(),
            reloads: 0,
            failed_reloads: 0,
            generation: 1,
            started_unix,
            readiness,
        }
    }

    /// Readiness as seen by `/readyz`.
    pub fn readiness(&self) -> Arc<Readiness> {
        Arc::clone(&self.readiness)
    }

    /// Runs until a shutdown event (or until every event sender is gone), then shuts the
    /// server down gracefully.
    pub fn run(mut self, events: Receiver<ControlEvent>) -> Result<(), ServerError> {
        let mut deltas = self.server.metrics_receiver();
        loop {
            select! {
                recv(events) -> event => match event {
                    Ok(ControlEvent::Shutdown(reason)) => {
                        log::info!("{reason} received: shutting down gracefully");
                        break;
                    }
                    Ok(event) => self.handle(event),
                    Err(_) => break,
                },
                recv(deltas) -> delta => match delta {
                    Ok(delta) => self.aggregator.merge(delta),
                    // Every worker is gone: stop listening rather than spin on the error.
                    Err(_) => deltas = crossbeam_channel::never(),
                },
            }
        }
        self.readiness.set(false);
        self.server.shutdown()
    }

    fn handle(&mut self, event: ControlEvent) {
        match event {
            ControlEvent::Shutdown(_) => {}
            ControlEvent::Reload(reply) => {
                let outcome = self.reload();
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            ControlEvent::Metrics(reply) => {
                self.drain_deltas();
                let _ = reply.send(self.aggregator.render(&self.process_info()));
            }
            ControlEvent::Config(reply) => {
                let _ = reply.send(redact(&self.config_text));
            }
            ControlEvent::Upstreams(reply) => {
                self.drain_deltas();
                let _ = reply.send(upstreams_json(&self.server.snapshot(), &self.aggregator));
            }
            ControlEvent::OpenApi(reply) => {
                let snapshot = self.server.snapshot();
                let _ = reply.send(crate::openapi::export::document_text(&snapshot));
            }
            ControlEvent::ReopenLogs => self.server.reopen_access_log(),
            ControlEvent::Purge(purge, reply) => {
                let _ = reply.send(self.server.purge(purge));
            }
        }
    }

    /// Merges every delta already queued, so a scrape sees the latest figures.
    fn drain_deltas(&mut self) {
        let deltas = self.server.metrics_receiver();
        while let Ok(delta) = deltas.try_recv() {
            self.aggregator.merge(delta);
        }
    }

    fn process_info(&self) -> ProcessInfo {
        ProcessInfo {
            workers: self
                .server
                .drivers()
                .iter()
                .enumerate()
                .map(|(id, driver)| WorkerInfo {
                    id,
                    driver: driver.to_string(),
                })
                .collect(),
            reloads: self.reloads,
            failed_reloads: self.failed_reloads,
            config_generation: self.generation,
            start_time_unix: self.started_unix,
            target_health: target_health(&self.server.snapshot()),
            cache_redis: self.server.cache_sync_status().map(|s| {
                crate::metrics::CacheRedisHealth {
                    up: s.up(),
                    errors: s.errors(),
                    unpublished: s.unpublished(),
                    received: s.received(),
                }
            }),
            redis: {
                let status = self.server.rate_limit_status();
                status.configured().then(|| RedisHealth {
                    up: status.up(),
                    errors: status.errors(),
                })
            },
        }
    }

    /// Re-reads, validates and swaps in the configuration. An invalid file is refused as a
    /// whole and the running configuration stays in force.
    pub fn reload(&mut self) -> ReloadOutcome {
        let origin = self.config_path.display().to_string();
        let loaded = std::fs::read_to_string(&self.config_path)
            .map_err(|e| format!("{origin}: cannot read: {e}"))
            .and_then(|text| {
                config::load_str(&text, &origin)
                    .map(|snapshot| (text, snapshot))
                    .map_err(|e| e.to_string())
            });
        let (text, snapshot) = match loaded {
            Ok(loaded) => loaded,
            Err(problems) => {
                self.failed_reloads += 1;
                log::error!(
                    "reload refused, the running configuration stays in force:\n{problems}"
                );
                return ReloadOutcome::Refused(problems);
            }
        };
        let snapshot = self.keep_fixed_settings(snapshot);
        if let Err(e) = self.server.set_listeners(&snapshot.server.listeners()) {
            self.failed_reloads += 1;
            let problems = format!("{origin}: server.listen: {e}");
            log::error!("reload refused, the running configuration stays in force:\n{problems}");
            return ReloadOutcome::Refused(problems);
        }
        let summary = format!(
            "configuration reloaded ({} routes, {} upstreams)",
            snapshot.router.len(),
            snapshot.upstreams.len()
        );
        self.server.store(Arc::new(snapshot));
        self.config_text = text;
        self.reloads += 1;
        self.generation += 1;
        log::info!("{summary}");
        ReloadOutcome::Applied(summary)
    }

    /// Workers, driver, pinning and the admin listener are set up once: a reload keeps the
    /// running values and says so if the file changed them. (Listeners do follow a reload.)
    fn keep_fixed_settings(&self, mut snapshot: Snapshot) -> Snapshot {
        let running = self.server.snapshot();
        let fixed = &running.server;
        let new = &snapshot.server;
        if self.workers_override.is_none() && new.workers != fixed.workers
            || new.driver != fixed.driver
            || new.uring_entries != fixed.uring_entries
            || new.uring_defer_taskrun != fixed.uring_defer_taskrun
            || new.pin_workers != fixed.pin_workers
            || new.password_verifiers != fixed.password_verifiers
            || new.password_queue != fixed.password_queue
            || snapshot.admin.as_ref().map(|a| a.listen) != running.admin.as_ref().map(|a| a.listen)
            || snapshot.access_log != running.access_log
        {
            log::warn!(
                "server.workers, server.driver, server.uring_entries, \
                 server.uring_defer_taskrun, server.pin_workers, \
                 server.password_verifiers, server.password_queue, admin.listen and \
                 [access_log] take effect on restart; the rest of the new configuration is \
                 applied"
            );
        }
        snapshot.access_log.clone_from(&running.access_log);
        snapshot.server.workers = fixed.workers;
        snapshot.server.driver = fixed.driver;
        snapshot.server.uring_entries = fixed.uring_entries;
        snapshot.server.uring_defer_taskrun = fixed.uring_defer_taskrun;
        snapshot.server.pin_workers = fixed.pin_workers;
        snapshot.server.password_verifiers = fixed.password_verifiers;
        snapshot.server.password_queue = fixed.password_queue;
        if let (Some(new), Some(old)) = (snapshot.admin.as_mut(), running.admin.as_ref()) {
            new.listen = old.listen;
        }
        snapshot
    }
}

/// Every target's active health in `snapshot`.
fn target_health(snapshot: &Snapshot) -> Vec<TargetHealthInfo> {
    let mut out = Vec::new();
    for upstream in &snapshot.upstreams {
        let set = upstream.live.current();
        for (t, cell) in set.targets.iter().zip(&set.health) {
            out.push(TargetHealthInfo {
                upstream: upstream.name.clone(),
                target: t.addr.to_string(),
                healthy: cell.is_healthy(),
            });
        }
    }
    out
}

/// The upstream groups of `snapshot` as JSON: name, balancing, the targets in force with
/// their active health and the workers that eject them (passive health), and each worker's
/// breaker state as last reported. Names and addresses come from the validated config
/// (names are `[A-Za-z0-9_.-]`), so no escaping is needed.
fn upstreams_json(snapshot: &Snapshot, aggregator: &Aggregator) -> String {
    use std::fmt::Write;
    let mut out = String::from("{\"upstreams\":[");
    for (i, upstream) in snapshot.upstreams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let states = aggregator.group_states(&upstream.name);
        let _ = write!(
            out,
            "{{\"name\":\"{}\",\"balance\":\"{}\",\"targets\":[",
            upstream.name,
            upstream.balance.name()
        );
        let set = upstream.live.current();
        for (j, (target, cell)) in set.targets.iter().zip(&set.health).enumerate() {
            if j > 0 {
                out.push(',');
            }
            let ejected_by: Vec<String> = states
                .iter()
                .filter(|(_, r)| r.ejected.contains(&target.addr))
                .map(|(w, _)| w.to_string())
                .collect();
            let _ = write!(
                out,
                "{{\"addr\":\"{}\",\"weight\":{},\"healthy\":{},\"ejected_by_workers\":[{}]}}",
                target.addr,
                target.weight,
                cell.is_healthy(),
                ejected_by.join(",")
            );
        }
        out.push_str("],\"breaker\":[");
        for (j, (worker, report)) in states.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"worker\":{worker},\"state\":\"{}\"}}",
                report.breaker
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}\n");
    out
}

/// Keys whose values are secrets: the admin token, JWT secrets, API keys, password hashes.
const SECRET_KEYS: &[&str] = &["token", "secret", "api_keys", "password_hash"];

/// The config text with the value of every secret key (see [`SECRET_KEYS`]) replaced by
/// `"<redacted>"`, wherever the key stands: on its own line or inside an inline table, with a
/// string or an array (possibly over several lines) as its value.
fn redact(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let at_key_start = i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'{' | b',');
        let key = SECRET_KEYS
            .iter()
            .find(|k| at_key_start && bytes[i..].starts_with(k.as_bytes()));
        let value = key.and_then(|k| value_start(bytes, i + k.len()));
        let Some(start) = value else {
            i += 1;
            continue;
        };
        let end = value_end(bytes, start);
        out.push_str(&text[copied..start]);
        out.push_str("\"<redacted>\"");
        copied = end;
        i = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Where the value of a key ending at `i` starts: after blanks, `=` and blanks.
fn value_start(bytes: &[u8], mut i: usize) -> Option<usize> {
    let blank = |b: &u8| matches!(b, b' ' | b'\t');
    while bytes.get(i).is_some_and(blank) {
        i += 1;
    }
    if bytes.get(i) != Some(&b'=') {
        return None;
    }
    i += 1;
    while bytes.get(i).is_some_and(blank) {
        i += 1;
    }
    (i < bytes.len()).then_some(i)
}

/// One past the end of the TOML value starting at `start`: a string, an array (nested,
/// strings inside skipped), or anything else up to the end of the line or a `,`/`}`.
fn value_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == b'\\' && q == b'"' => i += 1,
            Some(q) if b == q => {
                quote = None;
                if depth == 0 {
                    return i + 1;
                }
            }
            Some(_) => {}
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'[' => depth += 1,
                b']' if depth > 0 => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                b'\n' | b',' | b'}' if depth == 0 => return i,
                _ => {}
            },
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::{redact, upstreams_json};
    use crate::metrics::Aggregator;

    #[test]
    fn upstreams_are_listed_as_json() {
        let text = "[[upstreams]]\nname = \"users\"\ntargets = [ { addr = \"127.0.0.1:9001\", weight = 3 }, { addr = \"127.0.0.1:9002\" } ]\n";
        let snapshot = crate::config::load_str(text, "t").expect("config");
        assert_eq!(
            upstreams_json(&snapshot, &Aggregator::new()),
            "{\"upstreams\":[{\"name\":\"users\",\"balance\":\"round_robin\",\"targets\":[\
             {\"addr\":\"127.0.0.1:9001\",\"weight\":3,\"healthy\":true,\"ejected_by_workers\":[]},\
             {\"addr\":\"127.0.0.1:9002\",\"weight\":1,\"healthy\":true,\"ejected_by_workers\":[]}],\
             \"breaker\":[]}]}\n"
        );
    }

    #[test]
    fn secrets_of_policies_and_consumers_are_redacted() {
        let text = "[policies.j]\nsecret = \"jwt-secret\"\n[[consumers]]\nname = \"a\"\n\
                    api_keys = [\n  \"key-one\",\n  \"key-two\",\n]\npassword_hash = '$2b$x'\n\
                    consumers = [{ name = \"b\", api_keys = [\"key-three\"], groups = [\"g\"] }]\n";
        let out = redact(text);
        for secret in ["jwt-secret", "key-one", "key-two", "key-three", "$2b$x"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(
            out.contains("api_keys = \"<redacted>\"\npassword_hash"),
            "{out}"
        );
        assert!(out.contains("groups = [\"g\"]"), "{out}");
        assert!(out.contains("name = \"a\""), "{out}");
    }

    #[test]
    fn tokens_are_redacted() {
        let text = "[admin]\n  token = \"s3cret\"\ntokens_x = 1\n";
        let out = redact(text);
        assert!(!out.contains("s3cret"));
        assert!(out.contains("  token = \"<redacted>\""));
        assert!(out.contains("tokens_x = 1"));
    }
}
