//! A worker's own state: the snapshot it serves with, its pool, cursors, request and trace ids.
//!
//! Only this worker touches it (`Rc`, `RefCell`, `Cell`). The snapshot is re-read from the
//! shared `ArcSwap` once per request, and wrapped in an `Rc` so that holding it for a request
//! never touches the `Arc`'s shared reference count.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::admission::Admission;
use super::idle_clock::IdleClock;
use super::request_id::RequestIds;
use super::timer::Timer;
use super::trace::TraceIds;
use crate::access_log::{Sink, FLUSH_INTERVAL};
use crate::config::Snapshot;
use crate::metrics::{MetricsDelta, WorkerMetrics};
use crate::policy::{PolicyState, Verifier};
use crate::rate_limit::{WorkerLink, REBALANCE_INTERVAL};
use crate::server::Drain;
use crate::traffic::TrafficState;
use crate::upstream::{Groups, Pool};

/// How often idle keys leave the rate-limit tables.
const LIMITS_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Everything one worker owns.
#[derive(Debug)]
pub struct WorkerContext {
    id: usize,
    shared: Arc<ArcSwap<Snapshot>>,
    // The Rc is the point: cloning it per request is a plain increment on this core, where
    // cloning the Arc would bounce its shared reference count between cores.
    #[allow(clippy::redundant_allocation)]
    current: RefCell<Rc<Arc<Snapshot>>>,
    drain: Rc<Drain>,
    pool: Pool,
    upstreams: Groups,
    request_ids: RequestIds,
    trace_ids: TraceIds,
    metrics: WorkerMetrics,
    traffic: TrafficState,
    access_log: Option<Sink>,
    admission: Admission,
    policies: PolicyState,
    limits_link: WorkerLink,
    idle_clock: Rc<IdleClock>,
    /// Every request's timeouts (one timer task for all of them).
    timer: Rc<Timer>,
    h2_pool: Rc<crate::http2::pool::H2Pool>,
    /// Buffers of finished HTTP/2 streams, for the next ones.
    spare_buffers: crate::spares::Spares<super::connection::ConnBuffers>,
    /// The h2 side's buffers of finished HTTP/2 client streams, for the next ones.
    downstream_spares: crate::spares::Spares<crate::http2::downstream::StreamBuffers>,
    tunnels: Rc<crate::tunnel::TunnelSlots>,
    live_tunnels: crate::tunnel::LiveTunnels,
    encoders: crate::coding::EncoderPool,
    caches: RefCell<crate::cache::WorkerCaches>,
    /// This context itself, for tasks the pipeline starts (background cache refreshes).
    me: std::rc::Weak<WorkerContext>,
    /// Where purges caused here go for the other workers (`server` relays them).
    purges: std::cell::OnceCell<crossbeam_channel::Sender<(usize, crate::cache::Purge)>>,
}

impl WorkerContext {
    /// State for worker `id`.
    pub fn new(
        id: usize,
        shared: Arc<ArcSwap<Snapshot>>,
        drain: Rc<Drain>,
        access_log: Option<Sink>,
        limits_link: WorkerLink,
        workers: usize,
        verifier: Verifier,
    ) -> Rc<Self> {
        let current = RefCell::new(Rc::new(shared.load_full()));
        let idle_clock = IdleClock::new(Rc::clone(&drain));
        Rc::new_cyclic(|me| Self {
            me: me.clone(),
            id,
            shared,
            current,
            drain,
            pool: Pool::new(),
            upstreams: Groups::new(id),
            request_ids: RequestIds::new(id),
            trace_ids: TraceIds::new(id),
            metrics: WorkerMetrics::new(id),
            traffic: TrafficState::new(),
            access_log,
            admission: Admission::default(),
            policies: PolicyState::new(id, workers, verifier),
            limits_link,
            idle_clock,
            timer: Timer::new(),
            h2_pool: Rc::default(),
            spare_buffers: Default::default(),
            downstream_spares: Default::default(),
            tunnels: Rc::default(),
            live_tunnels: crate::tunnel::LiveTunnels::default(),
            encoders: crate::coding::EncoderPool::default(),
            caches: RefCell::default(),
            purges: std::cell::OnceCell::new(),
        })
    }

    /// Sets where this worker's purges go for the other workers (once, at start).
    pub fn set_purges(&self, purges: crossbeam_channel::Sender<(usize, crate::cache::Purge)>) {
        let _ = self.purges.set(purges);
    }

    /// Applies `purge` to this worker's caches at once and hands it on for every other
    /// worker (RFC 9111 §4.4: the next request may land on any core). Never blocks: a full
    /// channel drops it (the relay drains it continuously).
    pub fn invalidate(&self, purge: crate::cache::Purge) -> usize {
        let gone = self.caches().purge(&purge);
        if let Some(tx) = self.purges.get() {
            let _ = tx.try_send((self.id, purge));
        }
        gone
    }

    /// A counted reference to this context (for a task the pipeline starts).
    pub fn rc(&self) -> Option<Rc<Self>> {
        self.me.upgrade()
    }

    /// A worker context on its own, for unit tests that run pieces of the pipeline on a
    /// runtime of their own: no rate-limit coordinator and no access log behind it, one
    /// verifier thread.
    #[cfg(test)]
    pub(crate) fn for_tests(snapshot: Snapshot) -> Rc<Self> {
        let shared = Arc::new(ArcSwap::from_pointee(snapshot));
        let link = WorkerLink {
            reports: crossbeam_channel::bounded(1).0,
            updates: flume::bounded(1).1,
        };
        let verifiers = crate::policy::VerifierPool::start(1, 1).expect("verifier thread");
        Self::new(0, shared, Drain::new(), None, link, 1, verifiers.verifier())
    }

    /// The worker's policy caches and decision counters.
    pub fn policies(&self) -> &PolicyState {
        &self.policies
    }

    /// Worker index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The snapshot in force now; picks up a swap since the last call.
    #[allow(clippy::redundant_allocation)]
    pub fn snapshot(&self) -> Rc<Arc<Snapshot>> {
        let latest = self.shared.load();
        let mut current = self.current.borrow_mut();
        if !Arc::ptr_eq(&latest, &current) {
            *current = Rc::new(Arc::clone(&latest));
        }
        Rc::clone(&current)
    }

    /// The worker's drain state.
    pub fn drain(&self) -> &Rc<Drain> {
        &self.drain
    }

    /// The idle deadlines of the worker's parked connections.
    pub(super) fn idle_clock(&self) -> &Rc<IdleClock> {
        &self.idle_clock
    }

    /// The worker's timer for request timeouts.
    pub(super) fn timer(&self) -> &Timer {
        &self.timer
    }

    /// The worker's open tunnels, under their caps.
    pub fn tunnels(&self) -> &Rc<crate::tunnel::TunnelSlots> {
        &self.tunnels
    }

    /// The byte counts of the worker's open tunnels, handed to the metrics at each flush.
    pub fn live_tunnels(&self) -> &crate::tunnel::LiveTunnels {
        &self.live_tunnels
    }

    /// The worker's response caches, matched to the latest snapshot's `[caches]` (a reload
    /// keeps the caches whose name and key shape survive). Borrowed only between awaits.
    pub fn caches(&self) -> std::cell::RefMut<'_, crate::cache::WorkerCaches> {
        let mut caches = self.caches.borrow_mut();
        caches.sync(&self.shared.load().caches);
        caches
    }

    /// The worker's cache `id` of `snapshot` (a request's snapshot may be older than the
    /// caches: it is then found by name and key shape). Borrowed only between awaits.
    pub fn cache(
        &self,
        snapshot: &Snapshot,
        id: crate::cache::CacheId,
    ) -> Option<std::cell::RefMut<'_, crate::cache::WorkerCache>> {
        let settings = snapshot.caches.get(id.0)?;
        let caches = self.caches();
        std::cell::RefMut::filter_map(caches, |c| c.resolve(settings, id)).ok()
    }

    /// Buffers for an HTTP/2 stream's pipeline: a finished stream's, or fresh ones.
    pub(super) fn stream_buffers(&self) -> super::connection::ConnBuffers {
        self.spare_buffers.take()
    }

    /// The spare HTTP/2 stream buffers, which count the open streams (`proxy::h2`).
    pub(super) fn spare_buffers(&self) -> &crate::spares::Spares<super::connection::ConnBuffers> {
        &self.spare_buffers
    }

    /// The spare h2-side buffers of client streams (`http2::downstream`).
    pub(super) fn downstream_spares(
        &self,
    ) -> &crate::spares::Spares<crate::http2::downstream::StreamBuffers> {
        &self.downstream_spares
    }

    /// Takes back a finished stream's buffers for the next streams (see `crate::spares`).
    pub(super) fn return_stream_buffers(&self, buffers: super::connection::ConnBuffers) {
        self.spare_buffers.give_back(buffers);
    }

    /// The worker's multiplexed HTTP/2 upstream connections.
    pub fn h2_pool(&self) -> &Rc<crate::http2::pool::H2Pool> {
        &self.h2_pool
    }

    /// The worker's keep-alive pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The worker's response encoders, reused between responses (`compress` policies).
    pub fn encoders(&self) -> &crate::coding::EncoderPool {
        &self.encoders
    }

    /// The worker's state for its upstream groups (balancers, breakers, budgets).
    pub fn upstreams(&self) -> &Groups {
        &self.upstreams
    }

    /// The worker's request id generator.
    pub fn request_ids(&self) -> &RequestIds {
        &self.request_ids
    }

    /// The worker's trace and span id generator.
    pub fn trace_ids(&self) -> &TraceIds {
        &self.trace_ids
    }

    /// The worker's metrics recorder.
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.metrics
    }

    /// The worker's open-connection counts and caps.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The worker's split counters and mirroring state.
    pub fn traffic(&self) -> &TrafficState {
        &self.traffic
    }

    /// The interval's metrics delta, mirror outcomes and upstream group state included.
    pub(crate) fn take_delta(&self) -> MetricsDelta {
        self.live_tunnels
            .report(|route, up, down| self.metrics.tunnel_bytes(route, up, down));
        let mut delta = self.metrics.take_delta();
        delta.mirror = self.traffic.mirrors().take_counts();
        delta.groups = self.upstreams.report(Instant::now());
        delta.caches = self
            .caches()
            .iter_mut()
            .map(|c| crate::metrics::CacheDelta {
                name: c.settings.name.clone(),
                counts: std::mem::take(&mut c.counts),
                entries: c.store.len() as u64,
                bytes: c.store.bytes() as u64,
            })
            .collect();
        delta
    }

    /// The worker's access log, if one is configured.
    pub fn access_log(&self) -> Option<&Sink> {
        self.access_log.as_ref()
    }

    /// Task: every [`FLUSH_INTERVAL`], hands the access log's partial batch to the writer
    /// and reports dropped lines. The worker flushes once more after its last request.
    pub async fn flush_access_log(ctx: Rc<Self>) {
        let drain = Rc::clone(&ctx.drain);
        loop {
            monoio::select! {
                _ = drain.started() => break,
                _ = monoio::time::sleep(FLUSH_INTERVAL) => {}
            }
            if let Some(log) = &ctx.access_log {
                log.flush();
                log.report_drops();
            }
        }
    }

    /// Task: every `metrics.merge_interval`, hands the interval's figures to the control
    /// thread. A full channel (nobody merging) drops the delta rather than block the worker.
    pub async fn flush_metrics(ctx: Rc<Self>, deltas: crossbeam_channel::Sender<MetricsDelta>) {
        let drain = Rc::clone(&ctx.drain);
        loop {
            let interval = ctx.snapshot().metrics.merge_interval;
            monoio::select! {
                _ = drain.started() => break,
                _ = monoio::time::sleep(interval) => {}
            }
            let _ = deltas.try_send(ctx.take_delta());
        }
        let _ = deltas.try_send(ctx.take_delta());
    }

    /// Task: every [`REBALANCE_INTERVAL`], reports the demand of shared rate limits to the
    /// coordinator (dropped if its channel is full) and, every [`LIMITS_SWEEP`], drops idle
    /// keys from the rate-limit tables.
    pub async fn report_rate_limits(ctx: Rc<Self>) {
        let drain = Rc::clone(&ctx.drain);
        let mut last_sweep = Instant::now();
        loop {
            monoio::select! {
                _ = drain.started() => break,
                _ = monoio::time::sleep(REBALANCE_INTERVAL) => {}
            }
            for report in ctx.policies.rate_limits.take_reports() {
                let _ = ctx.limits_link.reports.try_send(report);
            }
            if last_sweep.elapsed() >= LIMITS_SWEEP {
                ctx.policies.rate_limits.sweep();
                last_sweep = Instant::now();
            }
        }
    }

    /// Task: applies the coordinator's rate-limit shares as they arrive.
    pub async fn apply_rate_limit_shares(ctx: Rc<Self>) {
        let drain = Rc::clone(&ctx.drain);
        let updates = ctx.limits_link.updates.clone();
        loop {
            monoio::select! {
                _ = drain.started() => break,
                update = updates.recv_async() => match update {
                    Ok(update) => ctx.policies.rate_limits.apply(&update),
                    Err(_) => break,
                }
            }
        }
    }

    /// Task: every second until the worker drains, closes expired idle upstream connections,
    /// and frees the HTTP/2 stream buffers beyond the recent demand (`crate::spares`).
    pub async fn sweep_idle_connections(ctx: Rc<Self>) {
        let drain = Rc::clone(&ctx.drain);
        loop {
            monoio::select! {
                _ = drain.started() => break,
                _ = monoio::time::sleep(crate::upstream::SWEEP_INTERVAL) => {
                    let now = Instant::now();
                    ctx.pool.sweep(now);
                    ctx.traffic.mirrors().sweep(now);
                    ctx.spare_buffers.sweep();
                    ctx.downstream_spares.sweep();
                    ctx.h2_pool.sweep_spares();
                }
            }
        }
    }
}
