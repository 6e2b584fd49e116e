//! The health thread: active health probes and DNS refreshes, off the workers.
//!
//! One thread for the process. Each tick it reads the snapshot in force, finds the groups
//! whose health interval or `resolve_every` is due, runs those probes and resolutions
//! concurrently (one short-lived scoped thread each, every one bounded by its timeout), and
//! writes the results: health into the targets' atomic cells, new target sets through the
//! groups' `ArcSwap`. Workers only ever read either.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::discovery::{self, SystemResolver};
use super::health::{probe, HealthCheck, TargetHealth};
use crate::config::{Snapshot, UpstreamTls};

/// Longest sleep between two looks at the snapshot (so a reload's new checks start soon).
const MAX_IDLE: Duration = Duration::from_millis(100);

/// The running health thread; dropping it stops it.
#[derive(Debug)]
pub struct HealthThread {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HealthThread {
    /// Starts probing the groups of whatever snapshot `shared` holds.
    pub fn start(shared: Arc<ArcSwap<Snapshot>>) -> std::io::Result<Self> {
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("ringgate-health".into())
            .spawn(move || run(&shared, &stopped))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for HealthThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Job {
    Health,
    Resolve,
}

fn run(shared: &ArcSwap<Snapshot>, stopped: &Receiver<()>) {
    let mut due: HashMap<(String, Job), Instant> = HashMap::new();
    loop {
        let snapshot = shared.load_full();
        let now = Instant::now();
        tick(&snapshot, &mut due, now);
        let next = due.values().min().copied().unwrap_or(now + MAX_IDLE);
        let wait = next.saturating_duration_since(Instant::now()).min(MAX_IDLE);
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// One probe to run this tick.
struct Probe<'s> {
    addr: SocketAddr,
    cell: Arc<TargetHealth>,
    check: &'s HealthCheck,
    tls: Option<&'s UpstreamTls>,
    group: &'s str,
}

/// Runs every job that is due at `now` and schedules its next run.
fn tick(snapshot: &Snapshot, due: &mut HashMap<(String, Job), Instant>, now: Instant) {
    let mut probes: Vec<Probe<'_>> = Vec::new();
    let mut resolves = Vec::new();
    for group in &snapshot.upstreams {
        if let Some(check) = &group.health {
            if take_due(due, &group.name, Job::Health, check.interval, now) {
                let set = group.live.current();
                for (t, cell) in set.targets.iter().zip(&set.health) {
                    probes.push(Probe {
                        addr: t.addr,
                        cell: Arc::clone(cell),
                        check,
                        tls: group.tls.as_ref(),
                        group: &group.name,
                    });
                }
            }
        }
        if let Some(d) = &group.discovery {
            if take_due(due, &group.name, Job::Resolve, d.every, now) {
                resolves.push(group);
            }
        }
    }
    // Forget groups that left with a reload.
    due.retain(|(name, _), _| snapshot.upstreams.iter().any(|u| &u.name == name));
    if probes.is_empty() && resolves.is_empty() {
        return;
    }
    std::thread::scope(|scope| {
        for p in &probes {
            scope.spawn(move || {
                let ok = probe::probe(p.addr, p.check, p.tls);
                if let Some(healthy) = p.cell.record(ok, p.check) {
                    let state = if healthy { "healthy" } else { "unhealthy" };
                    log::warn!("upstream {}: target {} is now {state}", p.group, p.addr);
                }
            });
        }
        for group in &resolves {
            scope.spawn(move || discovery::refresh(group, &SystemResolver));
        }
    });
}

/// Whether the job is due; if so, schedules the next run one `every` later.
fn take_due(
    due: &mut HashMap<(String, Job), Instant>,
    name: &str,
    job: Job,
    every: Duration,
    now: Instant,
) -> bool {
    let key = (name.to_string(), job);
    match due.get(&key) {
        Some(&at) if at > now => false,
        _ => {
            due.insert(key, now + every);
            true
        }
    }
}
