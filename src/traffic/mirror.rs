//! Request mirroring: a share of a route's requests is copied to a shadow upstream group,
//! fire-and-forget, on the same worker.
//!
//! The copy is the exact upstream request (head and body) the real exchange sends, so only
//! requests whose whole body is already in hand can be mirrored; the others are skipped and
//! counted. The shadow exchange runs in its own task, started once the client's response is
//! written, with its own keep-alive pool and a per-route, per-worker bound on mirrors in
//! flight (over the bound: dropped and counted). Its response is read and thrown away under
//! the shadow group's timeouts. It never touches the client's connection, so it can neither
//! delay nor fail the real response.
//!
//! Hot path: deciding is a few integer operations on per-worker `Cell`s; nothing allocates
//! unless the request is mirrored (then: the copy of its bytes and the task).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::config::{PoolSettings, UpstreamId, UpstreamTimeouts};
use crate::http::{parse_response, Method, ResponseFraming};
use crate::metrics::MirrorOutcome;
use crate::tls::UpstreamTls;
use crate::upstream::{connect, Pool, UpstreamConn};

/// One million: `percent` is kept in parts per million so that fractions such as 0.5 work.
pub const PER_MILLION: u32 = 1_000_000;
/// Largest shadow response head read.
const MAX_HEAD: usize = 64 * 1024;
/// Largest read while draining a shadow response body.
const DRAIN_BUF: usize = 64 * 1024;
/// Most header fields in a shadow response head.
const MAX_HEADERS: usize = 128;

/// A route's `mirror`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSettings {
    /// The shadow group.
    pub upstream: UpstreamId,
    /// Share of requests mirrored, in parts per million (1..=1,000,000).
    pub per_million: u32,
    /// Mirrors in flight per worker for this route; more are dropped.
    pub max_in_flight: usize,
    /// This mirror's index among the snapshot's mirrors: its per-worker state.
    pub slot: usize,
}

/// One mirror's per-worker state.
#[derive(Debug, Default, Clone)]
struct Slot {
    /// Parts per million accumulated since the last mirrored request.
    credit: u32,
    /// Shadow exchanges running now.
    in_flight: usize,
}

/// A worker's mirroring state: sampling credit and in-flight counts per route, the shadow
/// pool, and the outcome counters the metrics flush collects.
#[derive(Debug, Default)]
pub struct Mirrors {
    slots: RefCell<Vec<Slot>>,
    pool: Pool,
    outcomes: [Cell<u64>; MirrorOutcome::ALL.len()],
}

impl Mirrors {
    /// Empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples the request and, if it is taken and a place is free, reserves an in-flight
    /// place for its copy. `copyable`: the whole request is in hand. Counts the outcome.
    pub fn decide(
        self: &Rc<Self>,
        settings: &MirrorSettings,
        copyable: bool,
    ) -> Option<Reservation> {
        let mut slots = self.slots.borrow_mut();
        if slots.len() <= settings.slot {
            slots.resize(settings.slot + 1, Slot::default());
        }
        let slot = &mut slots[settings.slot];
        slot.credit += settings.per_million;
        if slot.credit < PER_MILLION {
            return None;
        }
        slot.credit -= PER_MILLION;
        if !copyable {
            self.count(MirrorOutcome::Skipped);
            return None;
        }
        if slot.in_flight >= settings.max_in_flight {
            self.count(MirrorOutcome::Dropped);
            return None;
        }
        slot.in_flight += 1;
        self.count(MirrorOutcome::Mirrored);
        Some(Reservation {
            mirrors: Rc::clone(self),
            slot: settings.slot,
        })
    }

    /// Closes the shadow pool's expired idle connections.
    pub fn sweep(&self, now: std::time::Instant) {
        self.pool.sweep(now);
    }

    /// Mirrors of `slot` in flight now.
    pub fn in_flight(&self, slot: usize) -> usize {
        self.slots.borrow().get(slot).map_or(0, |s| s.in_flight)
    }

    /// The outcome counts since the last call, indexed by [`MirrorOutcome::index`]; resets them.
    pub fn take_counts(&self) -> [u64; MirrorOutcome::ALL.len()] {
        std::array::from_fn(|i| self.outcomes[i].replace(0))
    }

    fn count(&self, outcome: MirrorOutcome) {
        let c = &self.outcomes[outcome.index()];
        c.set(c.get() + 1);
    }
}

/// An in-flight place held for one mirrored request, freed when dropped: whether the shadow
/// exchange ends, its task is dropped, or the copy is never sent.
#[derive(Debug)]
pub struct Reservation {
    mirrors: Rc<Mirrors>,
    slot: usize,
}

impl Reservation {
    /// Task: sends `request` to the shadow and reads and discards the response.
    pub async fn exchange(self, shadow: Shadow, request: Vec<u8>) {
        let outcome = match shadow_exchange(&self.mirrors.pool, &shadow, request).await {
            Ok(()) => MirrorOutcome::Completed,
            Err(Failed) => MirrorOutcome::Failed,
        };
        self.mirrors.count(outcome);
    }

    /// The copy could not be sent (the shadow group has no target): counted as failed.
    pub fn abandon(self) {
        self.mirrors.count(MirrorOutcome::Failed);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(slot) = self.mirrors.slots.borrow_mut().get_mut(self.slot) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
        }
    }
}

/// Where a mirrored request goes and how long it may take.
#[derive(Debug, Clone)]
pub struct Shadow {
    /// The shadow target, picked by the group's balancer.
    pub addr: SocketAddr,
    /// The request's method (it decides whether the response has a body).
    pub method: Method,
    /// The shadow group's timeouts.
    pub timeouts: UpstreamTimeouts,
    /// The shadow group's pool settings.
    pub pool: PoolSettings,
    /// TLS to the shadow's targets, if the group has it.
    pub tls: Option<UpstreamTls>,
}

/// Why a shadow exchange failed (only counted, never reported to the client).
#[derive(Debug)]
struct Failed;

async fn shadow_exchange(pool: &Pool, shadow: &Shadow, request: Vec<u8>) -> Result<(), Failed> {
    let tls = shadow.tls.as_ref();
    let mut conn = match pool.checkout_for(shadow.addr, tls, std::time::Instant::now()) {
        Some(conn) => conn,
        None => connect(shadow.addr, shadow.timeouts.connect, tls)
            .await
            .map_err(|_| Failed)?,
    };
    write(&mut conn, request, shadow.timeouts.idle).await?;
    let reusable = discard_response(&mut conn, shadow).await?;
    if reusable {
        pool.checkin(conn, &shadow.pool);
    }
    Ok(())
}

async fn write(conn: &mut UpstreamConn, request: Vec<u8>, idle: Duration) -> Result<(), Failed> {
    use monoio::io::AsyncWriteRentExt;
    match monoio::time::timeout(idle, conn.stream.write_all(request)).await {
        Ok((Ok(_), _)) => Ok(()),
        _ => Err(Failed),
    }
}

/// Reads the final response and drops it. Returns whether the connection can be reused: a
/// response framed by length (or without a body) and keep-alive; a chunked or close-framed
/// body is not drained, the connection is closed instead.
async fn discard_response(conn: &mut UpstreamConn, shadow: &Shadow) -> Result<bool, Failed> {
    let mut headers = Vec::new();
    let mut wait = shadow.timeouts.first_byte;
    let response = loop {
        let parsed = parse_response(
            conn.buf.data(),
            shadow.method,
            MAX_HEAD,
            MAX_HEADERS,
            &mut headers,
        )
        .map_err(|_| Failed)?;
        match parsed {
            Some(r) if (100..200).contains(&r.status) && r.status != 101 => {
                conn.buf.consume(r.head_len);
                continue;
            }
            Some(r) if r.status == 101 => return Err(Failed),
            Some(r) => break r,
            None => {}
        }
        fill(conn, wait, MAX_HEAD).await?;
        wait = shadow.timeouts.idle;
    };
    conn.buf.consume(response.head_len);
    let mut left = match response.framing {
        ResponseFraming::None => 0,
        ResponseFraming::Length(n) => n,
        ResponseFraming::Chunked | ResponseFraming::UntilClose => return Ok(false),
    };
    loop {
        let n = (conn.buf.len() as u64).min(left);
        conn.buf.consume(n as usize);
        left -= n;
        if left == 0 {
            return Ok(response.keep_alive && conn.buf.is_empty());
        }
        fill(conn, shadow.timeouts.idle, DRAIN_BUF).await?;
    }
}

async fn fill(conn: &mut UpstreamConn, wait: Duration, max: usize) -> Result<(), Failed> {
    match monoio::time::timeout(wait, conn.buf.fill(&mut conn.stream, max)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        _ => Err(Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(percent: u32, max_in_flight: usize) -> MirrorSettings {
        MirrorSettings {
            upstream: UpstreamId(0),
            per_million: percent * 10_000,
            max_in_flight,
            slot: 0,
        }
    }

    /// Decides `n` times, keeping the reservations (as shadow tasks still running would).
    fn decide_n(m: &Rc<Mirrors>, s: &MirrorSettings, n: usize) -> Vec<Reservation> {
        (0..n).filter_map(|_| m.decide(s, true)).collect()
    }

    #[test]
    fn samples_exactly_the_configured_share() {
        let m = Rc::new(Mirrors::new());
        assert_eq!(decide_n(&m, &settings(10, usize::MAX), 1000).len(), 100);
        let m = Rc::new(Mirrors::new());
        assert_eq!(decide_n(&m, &settings(100, usize::MAX), 50).len(), 50);
        let half = MirrorSettings {
            per_million: 5_000,
            ..settings(0, usize::MAX)
        };
        let m = Rc::new(Mirrors::new());
        assert_eq!(decide_n(&m, &half, 1000).len(), 5, "0.5 percent");
    }

    #[test]
    fn drops_over_the_in_flight_bound_and_frees_places() {
        let m = Rc::new(Mirrors::new());
        let s = settings(100, 2);
        let mut held = decide_n(&m, &s, 5);
        assert_eq!(held.len(), 2);
        assert_eq!(m.in_flight(0), 2);
        let counts = m.take_counts();
        assert_eq!(counts[MirrorOutcome::Mirrored.index()], 2);
        assert_eq!(counts[MirrorOutcome::Dropped.index()], 3);
        drop(held.pop());
        assert_eq!(m.in_flight(0), 1);
        assert!(m.decide(&s, true).is_some(), "a freed place is reused");
        held.pop().expect("held").abandon();
        assert_eq!(m.in_flight(0), 0);
        assert_eq!(m.take_counts()[MirrorOutcome::Failed.index()], 1);
    }

    #[test]
    fn skips_requests_whose_body_is_not_in_hand() {
        let m = Rc::new(Mirrors::new());
        assert!(m.decide(&settings(100, 8), false).is_none());
        assert_eq!(m.in_flight(0), 0);
        assert_eq!(m.take_counts()[MirrorOutcome::Skipped.index()], 1);
        assert_eq!(
            m.take_counts(),
            [0; MirrorOutcome::ALL.len()],
            "counts reset"
        );
    }
}
