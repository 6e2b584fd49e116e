//! The rate-limit coordinator: a thread beside the workers that turns their demand reports
//! into shares of instance- and cluster-wide rates and sends each worker its shares.
//!
//! Every [`REBALANCE_INTERVAL`] each worker reports the arrivals per key of its shared
//! policies (crossbeam channel, never blocking the worker: a full channel drops the report);
//! the coordinator folds them into per-key demand (`shares::Balancer`), asks Redis for this
//! instance's part of cluster-scoped rates (`cluster`), splits the result among the workers
//! and sends each its fractions (a flume channel the worker's update task awaits). Workers
//! only ever read their own copies: nothing is shared on the hot path.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{select, Receiver, Sender};

use super::cluster::{ClusterStatus, ClusterSync};
use super::policy::{RateLimitPolicy, Scope};
use super::shares::Balancer;
use super::worker::{DemandReport, ShareUpdate};
use crate::config::Snapshot;

/// How often workers report demand and shares are recomputed.
pub const REBALANCE_INTERVAL: Duration = Duration::from_millis(100);
/// Reports queued per worker before new ones are dropped.
const REPORT_BACKLOG: usize = 64;
/// Share updates queued per worker before new ones are dropped (a busy worker catches up
/// with the next re-balance).
const UPDATE_BACKLOG: usize = 64;

/// A worker's ends of the coordinator's channels.
#[derive(Debug, Clone)]
pub struct WorkerLink {
    /// Where the worker sends its demand reports.
    pub reports: Sender<DemandReport>,
    /// Where the worker receives its shares.
    pub updates: flume::Receiver<ShareUpdate>,
}

/// The running coordinator; dropping [`Coordinator::stop`]'s sender ends it.
#[derive(Debug)]
pub struct Coordinator {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    status: Arc<ClusterStatus>,
}

impl Coordinator {
    /// Starts the coordinator for `workers` workers serving `shared`; returns it and one
    /// link per worker.
    pub fn start(
        shared: Arc<ArcSwap<Snapshot>>,
        workers: usize,
    ) -> std::io::Result<(Coordinator, Vec<WorkerLink>)> {
        let (reports_tx, reports_rx) = crossbeam_channel::bounded(workers.max(1) * REPORT_BACKLOG);
        let mut updates = Vec::with_capacity(workers);
        let mut links = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = flume::bounded(UPDATE_BACKLOG);
            updates.push(tx);
            links.push(WorkerLink {
                reports: reports_tx.clone(),
                updates: rx,
            });
        }
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let status = Arc::new(ClusterStatus::default());
        let mut state = State {
            shared,
            balancers: HashMap::new(),
            updates,
            cluster: ClusterSync::new(Arc::clone(&status)),
        };
        let thread = std::thread::Builder::new()
            .name("ringgate-limits".into())
            .spawn(move || state.run(&reports_rx, &stop_rx))?;
        Ok((
            Coordinator {
                stop: Some(stop_tx),
                thread: Some(thread),
                status,
            },
            links,
        ))
    }

    /// Redis health of cluster-scoped policies.
    pub fn status(&self) -> Arc<ClusterStatus> {
        Arc::clone(&self.status)
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.stop();
    }
}

struct State {
    shared: Arc<ArcSwap<Snapshot>>,
    /// By policy name: the policy the balancer was built for, and its demand.
    balancers: HashMap<String, (Arc<RateLimitPolicy>, Balancer)>,
    updates: Vec<flume::Sender<ShareUpdate>>,
    cluster: ClusterSync,
}

impl State {
    fn run(&mut self, reports: &Receiver<DemandReport>, stop: &Receiver<()>) {
        let mut last = Instant::now();
        let mut next = last + REBALANCE_INTERVAL;
        loop {
            let wait = crossbeam_channel::at(next);
            select! {
                recv(reports) -> report => match report {
                    Ok(report) => self.record(report),
                    Err(_) => return,
                },
                recv(stop) -> _ => return,
                recv(wait) -> _ => {
                    let now = Instant::now();
                    self.rebalance(now.duration_since(last).as_secs_f64());
                    last = now;
                    next = now + REBALANCE_INTERVAL;
                }
            }
        }
    }

    fn record(&mut self, report: DemandReport) {
        let workers = self.updates.len();
        let name = report.policy.name.clone();
        let entry = self
            .balancers
            .entry(name)
            .or_insert_with(|| (Arc::clone(&report.policy), Balancer::new(workers)));
        if !entry.0.same_limit(&report.policy) {
            *entry = (Arc::clone(&report.policy), Balancer::new(workers));
        }
        for (hash, n) in report.arrivals {
            entry.1.record(report.worker, hash, n);
        }
    }

    fn rebalance(&mut self, elapsed: f64) {
        let snapshot = self.shared.load();
        let in_force = &snapshot.rate_limits;
        self.balancers
            .retain(|_, (policy, _)| in_force.iter().any(|p| p.same_limit(policy)));
        let cluster_in_force = in_force.iter().any(|p| p.scope == Scope::Cluster);
        let url = snapshot.redis.as_ref().map(|r| r.url.as_str());
        self.cluster.set_url(url.filter(|_| cluster_in_force));
        for (policy, balancer) in self.balancers.values_mut() {
            balancer.fold(elapsed);
            let rate = policy.rate.per_second();
            let capacities = match policy.scope {
                Scope::Cluster => {
                    let demands: Vec<(u64, f64)> = balancer.demands().collect();
                    self.cluster.capacities(policy, &demands)
                }
                Scope::Instance | Scope::Worker => HashMap::new(),
            };
            let mut per_worker: Vec<Vec<(u64, f64)>> = vec![Vec::new(); self.updates.len()];
            balancer.publish(
                rate,
                |hash| capacities.get(&hash).copied().unwrap_or(rate),
                |hash, fractions| {
                    for (list, &f) in per_worker.iter_mut().zip(fractions) {
                        list.push((hash, f));
                    }
                },
            );
            for (tx, fractions) in self.updates.iter().zip(per_worker) {
                if !fractions.is_empty() {
                    let _ = tx.try_send(ShareUpdate {
                        policy: Arc::clone(policy),
                        fractions,
                    });
                }
            }
        }
    }
}
