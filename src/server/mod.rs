//! Worker threads, core pinning, driver choice, listeners and graceful shutdown.
//!
//! [`Server::start`] binds every listener on the calling thread (so a port-0 address resolves
//! to one real port shared by all workers, and bind errors surface before anything runs),
//! then starts one pinned thread per worker, each with its own monoio runtime. The workers
//! share only the `ArcSwap<Snapshot>`; everything else they touch is their own.

pub mod cache_sync;
pub mod control;
mod drain;
pub mod fairness;
mod listener;
mod purge_relay;
pub mod signals;
pub mod watch;
mod worker;

pub use drain::{Drain, DrainWait};

use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;

use crate::config::{ListenKey, Snapshot, WorkerCount};
use crate::rate_limit::{ClusterStatus, Coordinator};
use worker::{Command, UringTuning, WorkerSpec};

/// The I/O driver a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// io_uring.
    IoUring,
    /// epoll, monoio's legacy driver.
    Legacy,
}

impl std::fmt::Display for DriverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Legacy => "epoll (legacy)",
        })
    }
}

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listening socket could not be set up.
    #[error("cannot listen: {0}")]
    Listen(#[source] io::Error),
    /// A worker thread could not be spawned.
    #[error("cannot spawn worker {worker}: {source}")]
    Spawn {
        /// Worker index.
        worker: usize,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The rate-limit coordinator thread could not be spawned.
    #[error("cannot spawn the rate-limit coordinator: {0}")]
    Coordinator(#[source] io::Error),
    /// A worker failed while starting its runtime.
    #[error("worker {worker} failed to start: {source}")]
    WorkerStart {
        /// Worker index.
        worker: usize,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The access log's output could not be opened.
    #[error("opening the access log: {0}")]
    AccessLog(#[source] io::Error),
    /// The health-check thread could not be spawned.
    #[error("cannot spawn the health-check thread: {0}")]
    Health(#[source] io::Error),
    /// The password verifier threads could not be spawned.
    #[error("cannot spawn the password verifier threads: {0}")]
    Verifiers(#[source] io::Error),
    /// A worker thread panicked.
    #[error("worker {0} panicked")]
    WorkerPanicked(usize),
}

/// Entry point to start the data plane.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Binds the listeners and starts the workers. Returns once every worker runs; clients
    /// may connect as soon as this returns.
    pub fn start(snapshot: Arc<Snapshot>) -> Result<RunningServer, ServerError> {
        let workers = worker_count(snapshot.server.workers);
        let keys = snapshot.server.listeners();
        let addrs: Vec<SocketAddr> = keys.iter().map(|k| k.addr).collect();
        let (listeners, local_addrs) =
            listener::bind_all(&addrs, workers).map_err(ServerError::Listen)?;
        let cores = if snapshot.server.pin_workers {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let driver = snapshot.server.driver;
        let uring = UringTuning {
            entries: snapshot.server.uring_entries,
            defer_taskrun: snapshot.server.uring_defer_taskrun,
        };
        let access_log = match &snapshot.access_log {
            Some(settings) => Some(
                crate::access_log::Writer::start(settings, workers)
                    .map_err(ServerError::AccessLog)?,
            ),
            None => None,
        };
        let verifiers = crate::policy::VerifierPool::start(
            snapshot.server.password_verifiers.unwrap_or(workers),
            snapshot.server.password_queue,
        )
        .map_err(ServerError::Verifiers)?;
        snapshot.start_background();
        let shared = Arc::new(ArcSwap::new(snapshot));
        let (coordinator, links) =
            Coordinator::start(Arc::clone(&shared), workers).map_err(|source| {
                ServerError::Spawn {
                    worker: workers,
                    source,
                }
            })?;
        let (metrics_tx, metrics_rx) = crossbeam_channel::bounded(workers * METRICS_BACKLOG);
        let (purges_tx, purges_rx) = crossbeam_channel::bounded(PURGE_BACKLOG);
        let mut running = RunningServer {
            shared: Arc::clone(&shared),
            metrics: metrics_rx,
            configured: keys.clone(),
            local_addrs,
            drivers: Vec::with_capacity(workers),
            threads: Vec::with_capacity(workers),
            commands: Vec::with_capacity(workers),
            access_log: None,
            coordinator,
            health: None,
            verifiers: None,
            relay: None,
            cache_sync: None,
        };
        for ((id, listeners), limits) in listeners.into_iter().enumerate().zip(links) {
            let (tx, rx) = flume::unbounded();
            let (ready_tx, ready_rx) = mpsc::channel();
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let spec = WorkerSpec {
                id,
                core,
                driver,
                uring,
                listeners: keys.iter().copied().zip(listeners).collect(),
                snapshot: Arc::clone(&shared),
                commands: rx,
                metrics: metrics_tx.clone(),
                access_log: access_log.as_ref().and_then(|w| w.sink(id)),
                limits,
                workers,
                verifier: verifiers.verifier(),
                purges: purges_tx.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("ringgate-w{id}"))
                .spawn(move || worker::run(spec, ready_tx))
                .map_err(|source| ServerError::Spawn { worker: id, source })?;
            running.threads.push(thread);
            running.commands.push(tx);
            let kind = match ready_rx.recv() {
                Ok(Ok(kind)) => kind,
                Ok(Err(source)) => return Err(ServerError::WorkerStart { worker: id, source }),
                Err(_) => return Err(ServerError::WorkerPanicked(id)),
            };
            log::info!(
                "worker {id} running with the {kind} driver{}",
                core.map(|c| format!(" on core {}", c.id))
                    .unwrap_or_default()
            );
            running.drivers.push(kind);
        }
        drop(purges_tx);
        let snapshot = shared.load_full();
        if let (Some(redis), false) = (&snapshot.redis, snapshot.caches.is_empty()) {
            running.cache_sync = Some(
                cache_sync::start(&redis.url, running.commands.clone()).map_err(|source| {
                    ServerError::Spawn {
                        worker: workers,
                        source,
                    }
                })?,
            );
        }
        let publish = running.cache_sync.as_ref().and_then(|s| s.publisher());
        running.relay = Some(
            purge_relay::start(running.commands.clone(), purges_rx, publish).map_err(|source| {
                ServerError::Spawn {
                    worker: workers,
                    source,
                }
            })?,
        );
        running.access_log = access_log;
        running.verifiers = Some(verifiers);
        running.health = Some(
            crate::upstream::HealthThread::start(Arc::clone(&shared))
                .map_err(ServerError::Health)?,
        );
        Ok(running)
    }
}

fn worker_count(configured: WorkerCount) -> usize {
    match configured {
        WorkerCount::Fixed(n) => n.max(1),
        WorkerCount::Auto => std::thread::available_parallelism().map_or(1, usize::from),
    }
}

/// Metrics deltas queued per worker before the oldest are dropped (nobody is merging).
const METRICS_BACKLOG: usize = 16;
/// Purges from workers queued for the relay.
const PURGE_BACKLOG: usize = 4096;

/// A started server. Dropping it shuts it down gracefully.
#[derive(Debug)]
pub struct RunningServer {
    shared: Arc<ArcSwap<Snapshot>>,
    metrics: crossbeam_channel::Receiver<crate::metrics::MetricsDelta>,
    /// The configured listeners, parallel to `local_addrs`.
    configured: Vec<ListenKey>,
    local_addrs: Vec<SocketAddr>,
    drivers: Vec<DriverKind>,
    threads: Vec<JoinHandle<()>>,
    commands: Vec<flume::Sender<Command>>,
    /// The access-log writer, if `[access_log]` is configured.
    access_log: Option<crate::access_log::Writer>,
    /// The rate-limit coordinator thread.
    coordinator: Coordinator,
    /// Active health checks and DNS refreshes.
    health: Option<crate::upstream::HealthThread>,
    /// The password verifier threads (`basic` policies).
    verifiers: Option<crate::policy::VerifierPool>,
    /// The purge relay thread (see `purge_relay`).
    relay: Option<JoinHandle<()>>,
    /// Purges shared with other instances through Redis (`[redis]` with caches).
    cache_sync: Option<cache_sync::CacheSync>,
}

impl RunningServer {
    /// The bound listener addresses (port 0 resolved): `server.listen` in order, then the
    /// `[[server.tls]]` listeners in order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local_addrs.clone()
    }

    /// The bound addresses of the TLS listeners, in `[[server.tls]]` order.
    pub fn tls_local_addrs(&self) -> Vec<SocketAddr> {
        let keys = self.configured.iter();
        keys.zip(&self.local_addrs)
            .filter(|(key, _)| key.tls)
            .map(|(_, local)| *local)
            .collect()
    }

    /// The driver each worker runs, by worker index.
    pub fn drivers(&self) -> Vec<DriverKind> {
        self.drivers.clone()
    }

    /// Redis health of cluster-scoped rate limits, as `/metrics` reports it.
    pub fn rate_limit_status(&self) -> Arc<ClusterStatus> {
        self.coordinator.status()
    }

    /// Makes the listeners match `wanted` (configured addresses): binds the added ones on
    /// every worker, and stops accepting on the removed ones, whose connections carry on.
    /// Binding happens first, so a failure changes nothing.
    pub fn set_listeners(&mut self, wanted: &[ListenKey]) -> Result<(), ServerError> {
        let added: Vec<ListenKey> = wanted
            .iter()
            .filter(|key| !self.configured.contains(key))
            .copied()
            .collect();
        let addrs: Vec<SocketAddr> = added.iter().map(|k| k.addr).collect();
        let (sockets, bound) =
            listener::bind_all(&addrs, self.commands.len()).map_err(ServerError::Listen)?;
        for (tx, worker_sockets) in self.commands.iter().zip(sockets) {
            for (key, socket) in added.iter().zip(worker_sockets) {
                let _ = tx.send(Command::Listen(*key, socket));
            }
        }
        let mut kept = Vec::with_capacity(wanted.len());
        for (configured, local) in self.configured.iter().zip(&self.local_addrs) {
            if wanted.contains(configured) {
                kept.push((*configured, *local));
                continue;
            }
            for tx in &self.commands {
                let _ = tx.send(Command::StopListening(*local));
            }
            log::info!("stopped listening on {local}");
        }
        for (configured, local) in added.iter().zip(&bound) {
            log::info!("listening on {local}");
            kept.push((*configured, *local));
        }
        (self.configured, self.local_addrs) = kept.into_iter().unzip();
        Ok(())
    }

    /// The workers' metrics deltas, one per worker per `metrics.merge_interval`.
    pub fn metrics_receiver(&self) -> crossbeam_channel::Receiver<crate::metrics::MetricsDelta> {
        self.metrics.clone()
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.load_full()
    }

    /// Swaps in a new snapshot (starting its background work, see
    /// [`Snapshot::start_background`]); requests already routed finish on the old one.
    /// Targets that stay keep their active-health state.
    pub fn store(&self, snapshot: Arc<Snapshot>) {
        crate::upstream::targets::adopt_health(&snapshot, &self.shared.load());
        snapshot.start_background();
        self.shared.store(snapshot);
    }

    /// Removes what `purge` names from every worker's caches; returns how many entries went.
    pub fn purge(&self, purge: crate::cache::Purge) -> usize {
        if let Some(publish) = self.cache_sync.as_ref().and_then(|s| s.publisher()) {
            let _ = publish.try_send(purge.clone());
        }
        purge_relay::purge_all(&self.commands, purge)
    }

    /// The health of purges shared through Redis, when `[redis]` and caches are configured.
    pub fn cache_sync_status(&self) -> Option<Arc<cache_sync::CacheSyncStatus>> {
        self.cache_sync.as_ref().map(|s| s.status())
    }

    /// Asks the access-log writer (if any) to reopen its file (SIGUSR1, after logrotate).
    pub fn reopen_access_log(&self) {
        if let Some(writer) = &self.access_log {
            writer.reopen();
        }
    }

    /// Stops accepting, lets in-flight requests finish within `graceful_shutdown`, and
    /// waits for every worker to exit.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ServerError> {
        for tx in &self.commands {
            let _ = tx.send(Command::Shutdown);
        }
        drop(self.health.take());
        let mut result = Ok(());
        for (id, thread) in self.threads.drain(..).enumerate() {
            if thread.join().is_err() {
                result = Err(ServerError::WorkerPanicked(id));
            }
        }
        // Every worker dropped its purge sender: the relay has ended.
        if let Some(relay) = self.relay.take() {
            let _ = relay.join();
        }
        if let Some(mut sync) = self.cache_sync.take() {
            sync.stop();
        }
        // Every worker flushed its last batch and dropped its sink: write what is queued.
        if let Some(writer) = self.access_log.take() {
            writer.finish();
        }
        self.coordinator.stop();
        // The workers, and with them their handles on the pool, are gone.
        if let Some(pool) = self.verifiers.take() {
            pool.join();
        }
        result
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
