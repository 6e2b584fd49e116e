//! One worker: an OS thread pinned to a core, running its own monoio runtime, accepting on
//! its own `SO_REUSEPORT` listeners and serving every connection it accepts to completion.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;
use arc_swap::ArcSwap;
use monoio::net::TcpListener;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use super::drain::Drain;
use super::DriverKind;
use crate::config::{DriverChoice, ListenKey, Snapshot};
use crate::proxy::{serve_connection, WorkerContext};

/// io_uring completion queue size per worker, at least: room for a burst of completions
/// (every parked connection's receive finishing at once) whatever the submission queue size.
const MIN_URING_CQ_ENTRIES: u32 = 16384;
/// One park at the end of a worker, to submit the close operations still queued.
const CLOSE_FLUSH: Duration = Duration::from_millis(1);
/// Pause after an accept error such as EMFILE, so a full fd table does not spin the core.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// A message from the control thread to a worker.
#[derive(Debug)]
pub enum Command {
    /// Stop accepting, finish in-flight requests, exit.
    Shutdown,
    /// Start accepting on this (already bound) listener: a listener added by a reload.
    Listen(ListenKey, StdListener),
    /// Stop accepting on the listener bound to this address; its connections carry on.
    StopListening(SocketAddr),
    /// Remove what this purge names from the worker's caches; the count goes to the
    /// sender, if any.
    Purge(
        Arc<crate::cache::Purge>,
        Option<crossbeam_channel::Sender<usize>>,
    ),
}

/// Everything a worker thread starts with.
pub struct WorkerSpec {
    /// Worker index.
    pub id: usize,
    /// Core to pin to, if pinning.
    pub core: Option<core_affinity::CoreId>,
    /// Driver choice from the config.
    pub driver: DriverChoice,
    /// `server.uring_entries` and `server.uring_defer_taskrun`.
    pub uring: UringTuning,
    /// This worker's listeners, with what each was configured as.
    pub listeners: Vec<(ListenKey, StdListener)>,
    /// The shared snapshot.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Commands from the control thread.
    pub commands: flume::Receiver<Command>,
    /// Where the worker hands its metrics deltas.
    pub metrics: crossbeam_channel::Sender<crate::metrics::MetricsDelta>,
    /// This worker's end of the access log, if one is configured.
    pub access_log: Option<crate::access_log::Sink>,
    /// This worker's ends of the rate-limit coordinator's channels.
    pub limits: crate::rate_limit::WorkerLink,
    /// How many workers the server runs (shares of instance-wide rates start even).
    pub workers: usize,
    /// The worker's handle on the password verifier pool.
    pub verifier: crate::policy::Verifier,
    /// Where the worker sends the purges its unsafe requests cause (for the other workers).
    pub purges: crossbeam_channel::Sender<(usize, crate::cache::Purge)>,
}

/// Thread body: pins, builds the runtime, reports the driver (or the failure) on `ready`,
/// then serves until told to shut down.
pub fn run(spec: WorkerSpec, ready: mpsc::Sender<io::Result<DriverKind>>) {
    if let Some(core) = spec.core {
        if !core_affinity::set_for_current(core) {
            log::warn!("worker {}: could not pin to core {}", spec.id, core.id);
        }
    }
    let kind = match resolve_driver(spec.driver) {
        Ok(kind) => kind,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    match kind {
        DriverKind::IoUring => match uring_runtime(spec.uring) {
            Ok(mut rt) => rt.block_on(serve(spec, kind, ready)),
            Err(e) => report_build_error(&ready, kind, e),
        },
        DriverKind::Legacy => match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
            Ok(mut rt) => rt.block_on(serve(spec, kind, ready)),
            Err(e) => report_build_error(&ready, kind, e),
        },
    }
}

/// The io_uring settings a worker's ring is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringTuning {
    /// `server.uring_entries`: the submission queue size.
    pub entries: u32,
    /// `server.uring_defer_taskrun`: run completion work only when the worker waits.
    pub defer_taskrun: bool,
}

/// The io_uring runtime, tuned for one thread that both submits and reaps: `SINGLE_ISSUER`,
/// and `COOP_TASKRUN`, which runs completion work (a socket became readable: its receive is
/// retried) when the worker next enters the kernel instead of interrupting it with an
/// inter-processor interrupt. Kernels older than 6.1 refuse these flags; the plain ring is
/// used there.
///
/// `DEFER_TASKRUN` (`server.uring_defer_taskrun`) would keep that work until the worker
/// waits. From Linux 6.13 a wait runs at most 20 deferred items, while everything the worker
/// submitted completes at once; under saturation the connections whose data arrived while the
/// worker was busy then wait several rounds for their turn (s7's p99.9 doubles, see
/// docs/performance.md), so it is off by default.
///
/// monoio hands queued operations to the kernel when the worker has no task left to run, or
/// earlier when the submission queue is full: `entries` bounds how long a ready write (an
/// answer) can wait behind the rest of a busy loop round.
fn uring_runtime(
    tuning: UringTuning,
) -> io::Result<monoio::Runtime<monoio::time::TimeDriver<IoUringDriver>>> {
    let cq_entries = MIN_URING_CQ_ENTRIES.max(tuning.entries.saturating_mul(2));
    let mut tuned = io_uring::IoUring::builder();
    tuned
        .setup_cqsize(cq_entries)
        .setup_coop_taskrun()
        .setup_single_issuer();
    if tuning.defer_taskrun {
        tuned.setup_defer_taskrun();
    }
    let built = RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(tuning.entries)
        .uring_builder(tuned)
        .enable_timer()
        .build();
    match built {
        Ok(rt) => Ok(rt),
        Err(e) => {
            log::info!("io_uring task-run tuning unavailable ({e}); using a plain ring");
            let mut plain = io_uring::IoUring::builder();
            plain.setup_cqsize(cq_entries);
            RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(tuning.entries)
                .uring_builder(plain)
                .enable_timer()
                .build()
        }
    }
}

fn resolve_driver(choice: DriverChoice) -> io::Result<DriverKind> {
    match choice {
        DriverChoice::Legacy => Ok(DriverKind::Legacy),
        DriverChoice::IoUring if monoio::utils::detect_uring() => Ok(DriverKind::IoUring),
        DriverChoice::IoUring => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "driver = \"io_uring\" but io_uring is unavailable on this system \
             (old kernel, seccomp, or kernel.io_uring_disabled); use \"auto\" or \"legacy\"",
        )),
        DriverChoice::Auto if monoio::utils::detect_uring() => Ok(DriverKind::IoUring),
        DriverChoice::Auto => Ok(DriverKind::Legacy),
    }
}

fn report_build_error(
    ready: &mpsc::Sender<io::Result<DriverKind>>,
    kind: DriverKind,
    e: io::Error,
) {
    let _ = ready.send(Err(io::Error::new(
        e.kind(),
        format!("building the {kind:?} runtime: {e}"),
    )));
}

async fn serve(spec: WorkerSpec, kind: DriverKind, ready: mpsc::Sender<io::Result<DriverKind>>) {
    let drain = Drain::new();
    let ctx = WorkerContext::new(
        spec.id,
        spec.snapshot,
        Rc::clone(&drain),
        spec.access_log,
        spec.limits,
        spec.workers,
        spec.verifier,
    );
    ctx.set_purges(spec.purges);
    let mut accepting = AHashMap::new();
    for (key, std_listener) in spec.listeners {
        if let Err(e) = start_accepting(&ctx, key, std_listener, &mut accepting) {
            let _ = ready.send(Err(e));
            return;
        }
    }
    // Connections whose I/O never waits (legacy driver) yield through it, allocation-free.
    monoio::spawn(super::fairness::run_helper());
    monoio::spawn(WorkerContext::sweep_idle_connections(Rc::clone(&ctx)));
    let last_metrics = spec.metrics.clone();
    monoio::spawn(WorkerContext::flush_metrics(Rc::clone(&ctx), spec.metrics));
    monoio::spawn(WorkerContext::report_rate_limits(Rc::clone(&ctx)));
    monoio::spawn(WorkerContext::apply_rate_limit_shares(Rc::clone(&ctx)));
    if ctx.access_log().is_some() {
        monoio::spawn(WorkerContext::flush_access_log(Rc::clone(&ctx)));
    }
    let _ = ready.send(Ok(kind));
    loop {
        match spec.commands.recv_async().await {
            Ok(Command::Listen(key, listener)) => {
                if let Err(e) = start_accepting(&ctx, key, listener, &mut accepting) {
                    log::error!("worker {}: cannot accept on a new listener: {e}", spec.id);
                }
            }
            Ok(Command::StopListening(addr)) => {
                if let Some(stop) = accepting.remove(&addr) {
                    stop.start();
                }
            }
            Ok(Command::Purge(purge, reply)) => {
                let gone = ctx.caches().purge(&purge);
                if let Some(reply) = reply {
                    let _ = reply.send(gone);
                }
            }
            // A closed channel means the control side is gone: shut down as well.
            Ok(Command::Shutdown) | Err(_) => break,
        }
    }
    drain.start();
    let grace = ctx.snapshot().server.graceful_shutdown;
    if monoio::time::timeout(grace, drain.idle()).await.is_err() {
        log::warn!(
            "worker {}: graceful shutdown timed out; closing {} connection(s)",
            spec.id,
            drain.open_connections()
        );
        drain.abort();
        // Every connection task drops its sockets as soon as it is polled again.
        drain.idle().await;
    }
    // Every connection and tunnel has ended: hand over what they recorded since the drain
    // began (tunnels closed at the deadline, requests finished in the grace period).
    let _ = last_metrics.try_send(ctx.take_delta());
    // Every request has finished: hand over the last access-log lines.
    if let Some(log) = ctx.access_log() {
        log.flush();
        log.report_drops();
    }
    // Under io_uring a dropped socket is closed by an operation queued on the ring; park once
    // so that those closes (listeners included) are submitted before the runtime goes away,
    // or the descriptors would outlive the worker and a closed listener would still accept.
    monoio::time::sleep(CLOSE_FLUSH).await;
}

/// Hands `listener` to the worker's runtime and starts its accept loop; `accepting` keeps
/// the loop's stop flag (a [`Drain`] used only for its flag), by bound address.
fn start_accepting(
    ctx: &Rc<WorkerContext>,
    key: ListenKey,
    listener: StdListener,
    accepting: &mut AHashMap<SocketAddr, Rc<Drain>>,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let listener = TcpListener::from_std(listener)?;
    let stop = Drain::new();
    monoio::spawn(accept_loop(listener, key, Rc::clone(ctx), Rc::clone(&stop)));
    accepting.insert(addr, stop);
    Ok(())
}

/// Accepts until stopped; `key` tells whether connections start with a TLS handshake.
async fn accept_loop(
    listener: TcpListener,
    key: ListenKey,
    ctx: Rc<WorkerContext>,
    stop: Rc<Drain>,
) {
    let drain = Rc::clone(ctx.drain());
    loop {
        monoio::select! {
            _ = drain.started() => break,
            _ = stop.started() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let limits = ctx.snapshot().server.limits;
                    match ctx.admission().admit(peer.ip(), &limits) {
                        Ok(()) => {
                            monoio::spawn(serve_connection(Rc::clone(&ctx), stream, peer, key));
                        }
                        // Closed at once, unread: a flood costs one accept and one close.
                        Err(refusal) => {
                            ctx.metrics().connection_refused(refusal);
                            drop(stream);
                        }
                    }
                }
                Err(e) => {
                    log::warn!("worker {}: accept failed: {e}", ctx.id());
                    monoio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            }
        }
    }
}
