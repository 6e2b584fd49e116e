//! A worker's state for its upstream groups: balancer, per-target load and passive health,
//! breaker, retry budget and counters. One [`Groups`] per worker, `RefCell`s borrowed only
//! for the length of one call (never across an `.await`), no locks, no atomics written, no
//! allocation per request (state is rebuilt only when a reload or DNS refresh changed the
//! group's targets; it is carried over by target address and group name).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::balance::{Balance, Balancer, Load, PickInput, Rng};
use super::breaker::{Breaker, BreakerState, Ticket};
use super::health::PassiveState;
use super::retry::{RetryBudget, RetryPolicy};
use super::targets::{LiveTargets, TargetSet};
use crate::config::{Upstream, UpstreamId};

/// Targets one request already tried (by index; indexes past 63 share a bit).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tried(u64);

impl Tried {
    fn bit(index: usize) -> u64 {
        1 << index.min(63)
    }

    /// Marks `index` as tried.
    pub fn add(&mut self, index: usize) {
        self.0 |= Self::bit(index);
    }

    /// Whether `index` was tried.
    pub fn contains(&self, index: usize) -> bool {
        self.0 & Self::bit(index) != 0
    }
}

/// A chosen target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picked {
    /// Its index in the set it was picked from.
    pub index: usize,
    /// Its address.
    pub addr: SocketAddr,
}

/// Why no request can go to the group now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The breaker is open; try again after this long.
    BreakerOpen(Duration),
    /// Every target is unhealthy or ejected; try again after this long.
    NoHealthyTarget(Duration),
}

/// Counters of one group on one worker since the last report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounters {
    /// Retries sent.
    pub retries: u64,
    /// Retries refused by the budget.
    pub budget_exhausted: u64,
    /// Requests refused by an open breaker.
    pub breaker_rejected: u64,
    /// Breaker transitions to open.
    pub breaker_opened: u64,
    /// Passive ejections.
    pub ejections: u64,
    /// Requests refused because no target was available.
    pub no_healthy_target: u64,
}

/// One group's state on one worker, for the admin API and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// Group name.
    pub name: String,
    /// `closed`, `open`, `half_open` or `none` (no breaker configured).
    pub breaker: &'static str,
    /// Targets this worker has ejected now.
    pub ejected: Vec<SocketAddr>,
    /// Counters since the previous report.
    pub counters: GroupCounters,
}

#[derive(Debug)]
struct GroupState {
    name: String,
    live: Arc<LiveTargets>,
    set: Arc<TargetSet>,
    loads: Vec<Load>,
    passive: Vec<PassiveState>,
    balancer: Balancer,
    breaker: Option<Breaker>,
    budget: RetryBudget,
    retry: RetryPolicy,
    counters: GroupCounters,
}

impl GroupState {
    fn new(up: &Upstream, worker: usize, now: Instant) -> Self {
        let set = up.live.current();
        Self {
            name: up.name.clone(),
            live: Arc::clone(&up.live),
            loads: vec![Load::default(); set.targets.len()],
            passive: vec![PassiveState::default(); set.targets.len()],
            balancer: Balancer::new(&up.balance, &set.weights, worker),
            breaker: up.breaker.map(|p| Breaker::new(p, now)),
            budget: RetryBudget::new(&up.retry, now),
            retry: up.retry.clone(),
            counters: GroupCounters::default(),
            set,
        }
    }

    /// Follows a new target set: per-target state is kept for addresses that stayed.
    fn follow(&mut self, set: Arc<TargetSet>, up: &Upstream, worker: usize) {
        let old = std::mem::replace(&mut self.set, set);
        let n = self.set.targets.len();
        let mut loads = vec![Load::default(); n];
        let mut passive = vec![PassiveState::default(); n];
        for (i, t) in self.set.targets.iter().enumerate() {
            if let Some(j) = old.index_of(t.addr) {
                loads[i] = self.loads[j];
                passive[i] = self.passive[j];
            }
        }
        self.loads = loads;
        self.passive = passive;
        self.balancer = Balancer::new(&up.balance, &self.set.weights, worker);
    }

    fn index(&self, picked: Picked) -> Option<usize> {
        match self.set.targets.get(picked.index) {
            Some(t) if t.addr == picked.addr => Some(picked.index),
            _ => self.set.index_of(picked.addr),
        }
    }
}

/// How long a client should wait when no target is healthy: until the next health check.
fn retry_wait(up: &Upstream) -> Duration {
    up.health
        .as_ref()
        .map_or(Duration::from_secs(1), |h| h.interval)
}

/// A request its group admitted ([`Groups::admit`]), holding its breaker ticket until the
/// request ends. [`Admitted::settle`] records the outcome; dropping it unsettled (the
/// request's future was dropped: a composite's deadline, a failed required call, a client
/// that went away, shutdown) records the request as **cancelled**: no outcome, and a
/// half-open breaker's probe slot is given back (see `breaker.rs`). Without a breaker it
/// costs nothing either way.
#[must_use = "the ticket is settled when this is settled or dropped"]
#[derive(Debug)]
pub struct Admitted<'a> {
    groups: &'a Groups,
    id: UpstreamId,
    upstream: &'a Upstream,
    ticket: Ticket,
    settled: bool,
}

impl Admitted<'_> {
    /// Records the request's outcome: `Some(true)` success, `Some(false)` the upstream
    /// failed, `None` nothing learned about the upstream (the ticket is released).
    pub fn settle(mut self, success: Option<bool>, now: Instant) {
        self.end(success, now);
    }

    /// The breaker ticket (for tests and reports).
    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    fn end(&mut self, success: Option<bool>, now: Instant) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        self.groups
            .settle(self.id, self.upstream, self.ticket, success, now);
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.settled && self.upstream.breaker.is_some() {
            self.end(None, Instant::now());
        }
    }
}

/// A worker's state for every upstream group, indexed by [`UpstreamId`].
#[derive(Debug)]
pub struct Groups {
    worker: usize,
    rng: RefCell<Rng>,
    groups: RefCell<Vec<Option<GroupState>>>,
}

impl Groups {
    /// Empty state for worker `worker`.
    pub fn new(worker: usize) -> Self {
        Self {
            worker,
            rng: RefCell::new(Rng::new(worker as u64 + 0x51)),
            groups: RefCell::new(Vec::new()),
        }
    }

    /// Runs `f` on the state of group `id`, (re)building it if the snapshot or the group's
    /// target set changed since the last call.
    fn with<R>(
        &self,
        id: UpstreamId,
        up: &Upstream,
        now: Instant,
        f: impl FnOnce(&mut GroupState) -> R,
    ) -> R {
        let mut groups = self.groups.borrow_mut();
        if groups.len() <= id.0 {
            groups.resize_with(id.0 + 1, || None);
        }
        let current = groups[id.0]
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.live, &up.live));
        if !current {
            // A reload (or a new group): take over the same-named group's state, wherever
            // it was, keeping what still applies.
            let previous = groups
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.name == up.name))
                .and_then(|i| groups[i].take());
            groups[id.0] = Some(self.carry_over(previous, up, now));
        }
        let state = groups[id.0].get_or_insert_with(|| GroupState::new(up, self.worker, now));
        // Only DNS discovery republishes a group's targets after its snapshot is in force
        // (reloads adopt health before publishing), so other groups skip the load.
        if up.discovery.is_some() {
            let latest = up.live.load();
            if !Arc::ptr_eq(&latest, &state.set) {
                state.follow(Arc::clone(&latest), up, self.worker);
            }
        }
        f(state)
    }

    /// The state for `up` built from its previous incarnation, if any: per-target state is
    /// kept by address, breaker and budget while their policy is unchanged.
    fn carry_over(&self, previous: Option<GroupState>, up: &Upstream, now: Instant) -> GroupState {
        let fresh = GroupState::new(up, self.worker, now);
        let Some(mut old) = previous else {
            return fresh;
        };
        old.live = fresh.live;
        old.balancer = fresh.balancer;
        if old.breaker.as_ref().map(Breaker::policy) != up.breaker.as_ref() {
            old.breaker = fresh.breaker;
        }
        if old.retry != up.retry {
            old.budget = fresh.budget;
            old.retry = fresh.retry;
        }
        old.follow(fresh.set, up, self.worker);
        old
    }

    /// Lets a request through if a target is healthy (active checks) and the group's breaker
    /// admits it, and counts the request for the retry budget. The request's breaker ticket
    /// is settled through the returned [`Admitted`]: with its outcome, or on drop as
    /// cancelled.
    pub fn admit<'a>(
        &'a self,
        id: UpstreamId,
        up: &'a Upstream,
        now: Instant,
    ) -> Result<Admitted<'a>, Refusal> {
        let ticket = self.ticket(id, up, now)?;
        Ok(Admitted {
            groups: self,
            id,
            upstream: up,
            ticket,
            settled: false,
        })
    }

    fn ticket(&self, id: UpstreamId, up: &Upstream, now: Instant) -> Result<Ticket, Refusal> {
        self.with(id, up, now, |g| {
            if !g.set.health.iter().any(|h| h.is_healthy()) {
                g.counters.no_healthy_target += 1;
                return Err(Refusal::NoHealthyTarget(retry_wait(up)));
            }
            let ticket = match &mut g.breaker {
                None => Ticket::Normal,
                Some(b) => match b.admit(now) {
                    Ok(ticket) => ticket,
                    Err(wait) => {
                        g.counters.breaker_rejected += 1;
                        return Err(Refusal::BreakerOpen(wait));
                    }
                },
            };
            // Without retries the budget is never asked: counting requests for it is waste.
            if up.retry.attempts > 1 {
                g.budget.request(now);
            }
            Ok(ticket)
        })
    }

    /// Records a request's final outcome with the breaker (`None`: cancelled, or the client
    /// went away, which says nothing about the upstream). Nothing to do for a group without
    /// a breaker.
    fn settle(
        &self,
        id: UpstreamId,
        up: &Upstream,
        ticket: Ticket,
        success: Option<bool>,
        now: Instant,
    ) {
        if up.breaker.is_none() {
            return;
        }
        self.with(id, up, now, |g| {
            let Some(b) = &mut g.breaker else { return };
            let was_open = matches!(b.state(), BreakerState::Open { .. });
            match success {
                Some(ok) => b.record(ticket, ok, now),
                None => b.release(ticket),
            }
            if !was_open && matches!(b.state(), BreakerState::Open { .. }) {
                g.counters.breaker_opened += 1;
                log::warn!("upstream {}: circuit breaker opened", g.name);
            }
        });
    }

    /// Chooses a target: healthy, not ejected and not yet tried if there is one; else healthy
    /// and not ejected; else healthy (when ejections took every healthy target). The chosen
    /// target's in-flight count goes up until [`Groups::finish`].
    pub fn pick(
        &self,
        id: UpstreamId,
        up: &Upstream,
        hash: Option<u64>,
        tried: Tried,
        now: Instant,
    ) -> Result<Picked, Refusal> {
        self.with(id, up, now, |g| {
            // Disjoint field borrows: no reference-count traffic on the shared set.
            let GroupState {
                set,
                loads,
                passive,
                balancer,
                counters,
                ..
            } = g;
            let input = PickInput {
                weights: &set.weights,
                loads,
                hash,
                ring: set.ring.as_ref(),
            };
            let healthy = |i: usize| set.health[i].is_healthy();
            let picked = balancer
                .pick(&input, |i| {
                    healthy(i) && !passive[i].is_ejected(now) && !tried.contains(i)
                })
                .or_else(|| balancer.pick(&input, |i| healthy(i) && !passive[i].is_ejected(now)))
                .or_else(|| balancer.pick(&input, healthy));
            let Some(index) = picked else {
                counters.no_healthy_target += 1;
                return Err(Refusal::NoHealthyTarget(retry_wait(up)));
            };
            g.loads[index].in_flight += 1;
            Ok(Picked {
                index,
                addr: g.set.targets[index].addr,
            })
        })
    }

    /// A target for a request that is not tracked (a mirrored copy): healthy and not ejected
    /// if possible, without counting it in flight or feeding its outcome back.
    pub fn pick_untracked(
        &self,
        id: UpstreamId,
        up: &Upstream,
        now: Instant,
    ) -> Option<SocketAddr> {
        let picked = self.pick(id, up, None, Tried::default(), now).ok()?;
        self.with(id, up, now, |g| {
            if let Some(i) = g.index(picked) {
                g.loads[i].in_flight = g.loads[i].in_flight.saturating_sub(1);
            }
        });
        Some(picked.addr)
    }

    /// Ends an attempt on `picked`: in-flight count down, latency into the EWMA (on success),
    /// and the outcome into passive health (`None`: neither success nor failure).
    pub fn finish(
        &self,
        id: UpstreamId,
        up: &Upstream,
        picked: Picked,
        outcome: Option<bool>,
        latency: Duration,
        now: Instant,
    ) {
        self.with(id, up, now, |g| {
            let Some(i) = g.index(picked) else { return };
            let load = &mut g.loads[i];
            load.in_flight = load.in_flight.saturating_sub(1);
            match outcome {
                Some(true) => {
                    if tracks_latency(up) {
                        load.observe(latency, now);
                    }
                    g.passive[i].success();
                }
                Some(false) => {
                    // A failure counts as a slow answer for p2c, so it steers away.
                    if tracks_latency(up) {
                        load.observe(latency.max(up.timeouts.connect), now);
                    }
                    let Some(policy) = &up.passive else { return };
                    let ejected = g.passive.iter().filter(|p| p.is_ejected(now)).count();
                    let may_eject = ejected < policy.max_ejected(g.passive.len());
                    if g.passive[i].failure(policy, now, may_eject) {
                        g.counters.ejections += 1;
                        log::warn!(
                            "upstream {}: target {} ejected after consecutive failures",
                            g.name,
                            picked.addr
                        );
                    }
                }
                None => {}
            }
        });
    }

    /// Takes a retry from the group's budget; counts it either way.
    pub fn try_retry(&self, id: UpstreamId, up: &Upstream, now: Instant) -> bool {
        self.with(id, up, now, |g| {
            let ok = g.budget.try_retry(now);
            if ok {
                g.counters.retries += 1;
            } else {
                g.counters.budget_exhausted += 1;
            }
            ok
        })
    }

    /// The pause before retry number `retry` of group `up`.
    pub fn backoff(&self, up: &Upstream, retry: u32) -> Duration {
        up.retry.backoff(retry, &mut self.rng.borrow_mut())
    }

    /// Every group's state now, with its counters since the last report (which are reset).
    /// Empty when nothing ever happened, so idle workers send nothing.
    pub fn report(&self, now: Instant) -> Vec<GroupReport> {
        let mut groups = self.groups.borrow_mut();
        groups
            .iter_mut()
            .flatten()
            .map(|g| GroupReport {
                name: g.name.clone(),
                breaker: g
                    .breaker
                    .as_ref()
                    .map_or("none", |b| b.state_at(now).name()),
                ejected: g
                    .set
                    .targets
                    .iter()
                    .zip(&g.passive)
                    .filter(|(_, p)| p.is_ejected(now))
                    .map(|(t, _)| t.addr)
                    .collect(),
                counters: std::mem::take(&mut g.counters),
            })
            .collect()
    }
}

/// Whether the group's balancer reads the latency EWMA (only p2c does): the others skip
/// the clock arithmetic and the `exp` of every observation.
fn tracks_latency(up: &Upstream) -> bool {
    matches!(up.balance, Balance::P2cEwma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Snapshot, Target};
    use crate::upstream::HealthCheck;

    fn snapshot(extra: &str) -> Snapshot {
        let text = format!(
            "[[upstreams]]\nname = \"g\"\ntargets = [{{ addr = \"127.0.0.1:1\" }}, \
             {{ addr = \"127.0.0.1:2\" }}, {{ addr = \"127.0.0.1:3\" }}]\n{extra}\n"
        );
        load_str(&text, "t").expect("config")
    }

    fn port(p: Picked) -> u16 {
        p.addr.port()
    }

    fn mark_unhealthy(up: &Upstream, i: usize) {
        let check = HealthCheck {
            path: "/".into(),
            expected_status: crate::upstream::StatusRange {
                low: 200,
                high: 200,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_after: 1,
            healthy_after: 1,
        };
        up.live.current().health[i].record(false, &check);
    }

    #[test]
    fn picks_skip_unhealthy_and_already_tried_targets() {
        let s = snapshot("");
        let up = &s.upstreams[0];
        let g = Groups::new(0);
        let now = Instant::now();
        mark_unhealthy(up, 1);
        let mut tried = Tried::default();
        let first = g.pick(UpstreamId(0), up, None, tried, now).expect("pick");
        tried.add(first.index);
        let second = g.pick(UpstreamId(0), up, None, tried, now).expect("pick");
        assert_eq!((port(first), port(second)), (1, 3));
        tried.add(second.index);
        // Every healthy target tried: a tried one again rather than none.
        assert!(g.pick(UpstreamId(0), up, None, tried, now).is_ok());
        mark_unhealthy(up, 0);
        mark_unhealthy(up, 2);
        assert!(matches!(
            g.admit(UpstreamId(0), up, now),
            Err(Refusal::NoHealthyTarget(_))
        ));
        assert!(g
            .pick(UpstreamId(0), up, None, Tried::default(), now)
            .is_err());
    }

    #[test]
    fn passive_ejection_respects_the_cap_and_survives_a_new_target_set() {
        let s = snapshot(
            "resolve_every = \"1s\"\npassive = { consecutive_failures = 1, base_ejection = \"1m\", max_ejected_percent = 34 }",
        );
        let up = &s.upstreams[0];
        let g = Groups::new(0);
        let now = Instant::now();
        let id = UpstreamId(0);
        for _ in 0..6 {
            let p = g.pick(id, up, None, Tried::default(), now).expect("pick");
            g.finish(id, up, p, Some(false), Duration::from_millis(1), now);
        }
        let report = g.report(now);
        assert_eq!(report[0].ejected.len(), 1, "34% of 3 targets is one");
        assert_eq!(report[0].counters.ejections, 1);
        let ejected = report[0].ejected[0];
        // A DNS refresh adds a target: the ejection stays with its address.
        let mut targets = up.live.current().targets.clone();
        targets.push(Target {
            addr: "127.0.0.1:4".parse().expect("addr"),
            weight: 1,
        });
        up.live.store(TargetSet::build(targets, false, |_| None));
        for _ in 0..20 {
            let p = g.pick(id, up, None, Tried::default(), now).expect("pick");
            assert_ne!(p.addr, ejected);
            g.finish(id, up, p, Some(true), Duration::from_millis(1), now);
        }
        assert_eq!(g.report(now)[0].ejected, vec![ejected]);
    }

    #[test]
    fn in_flight_counts_follow_picks_and_finishes() {
        let s = snapshot("balance = \"least_conn\"");
        let up = &s.upstreams[0];
        let g = Groups::new(0);
        let now = Instant::now();
        let id = UpstreamId(0);
        let a = g.pick(id, up, None, Tried::default(), now).expect("pick");
        let b = g.pick(id, up, None, Tried::default(), now).expect("pick");
        let c = g.pick(id, up, None, Tried::default(), now).expect("pick");
        assert_eq!(
            [port(a), port(b), port(c)]
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len(),
            3
        );
        g.finish(id, up, b, Some(true), Duration::from_millis(1), now);
        // b is the only idle target now.
        assert_eq!(g.pick(id, up, None, Tried::default(), now), Ok(b));
    }

    #[test]
    fn the_breaker_refuses_and_counts() {
        let s = snapshot("breaker = { min_requests = 2, error_ratio = 1.0, open_for = \"1m\" }");
        let up = &s.upstreams[0];
        let g = Groups::new(0);
        let now = Instant::now();
        let id = UpstreamId(0);
        for _ in 0..2 {
            let t = g.admit(id, up, now).expect("closed");
            t.settle(Some(false), now);
        }
        assert!(matches!(g.admit(id, up, now), Err(Refusal::BreakerOpen(_))));
        let report = g.report(now);
        assert_eq!(report[0].breaker, "open");
        assert_eq!(report[0].counters.breaker_opened, 1);
        assert_eq!(report[0].counters.breaker_rejected, 1);
    }

    #[test]
    fn a_dropped_admission_is_cancelled_and_gives_its_probe_back() {
        let s = snapshot(
            "breaker = { min_requests = 1, error_ratio = 1.0, open_for = \"1s\", half_open_probes = 1 }",
        );
        let up = &s.upstreams[0];
        let g = Groups::new(0);
        let now = Instant::now();
        let id = UpstreamId(0);
        g.admit(id, up, now)
            .expect("closed")
            .settle(Some(false), now);
        let later = now + Duration::from_secs(2);
        for _ in 0..3 {
            let probe = g.admit(id, up, later).expect("the probe slot is free");
            assert!(matches!(probe.ticket(), Ticket::Probe { .. }));
            assert!(
                matches!(g.admit(id, up, later), Err(Refusal::BreakerOpen(_))),
                "one probe at a time"
            );
            // The request's future is dropped (deadline, client gone): cancelled.
            drop(probe);
            assert_eq!(g.report(later)[0].breaker, "half_open", "not a success");
        }
        g.admit(id, up, later)
            .expect("probe")
            .settle(Some(true), later);
        assert_eq!(g.report(later)[0].breaker, "closed");
    }

    #[test]
    fn a_reload_keeps_ejections_even_when_the_group_moved() {
        let passive = "passive = { consecutive_failures = 1, base_ejection = \"1m\", max_ejected_percent = 34 }";
        let s1 = snapshot(passive);
        let g = Groups::new(0);
        let now = Instant::now();
        let up = &s1.upstreams[0];
        let p = g
            .pick(UpstreamId(0), up, None, Tried::default(), now)
            .expect("pick");
        g.finish(
            UpstreamId(0),
            up,
            p,
            Some(false),
            Duration::from_millis(1),
            now,
        );
        // The reloaded file puts another group first: "g" is now UpstreamId(1).
        let text = format!(
            "[[upstreams]]\nname = \"other\"\ntargets = [{{ addr = \"127.0.0.1:9\" }}]\n\
             [[upstreams]]\nname = \"g\"\ntargets = [{{ addr = \"127.0.0.1:1\" }}, \
             {{ addr = \"127.0.0.1:2\" }}, {{ addr = \"127.0.0.1:3\" }}]\n{passive}\n"
        );
        let s2 = load_str(&text, "t").expect("config");
        let moved = &s2.upstreams[1];
        for _ in 0..10 {
            let q = g
                .pick(UpstreamId(1), moved, None, Tried::default(), now)
                .expect("pick");
            assert_ne!(q.addr, p.addr, "ejection lost in the reload");
            g.finish(
                UpstreamId(1),
                moved,
                q,
                Some(true),
                Duration::from_millis(1),
                now,
            );
        }
    }
}
