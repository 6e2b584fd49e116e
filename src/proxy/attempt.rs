//! Attempts of one proxied request: target choice, retries and their limits.
//!
//! A request goes to the target the group's balancer picks among healthy, non-ejected
//! targets. A failure before the response head was written to the client (connect error,
//! timeout, reset, or a retried status such as 503) is retried on a *different* target when
//! all of these hold: the group's `retry.on` names the failure; the attempt cap is not
//! reached; the request can be replayed (its body is still in hand: a Content-Length body of
//! at most 64 KiB, read before sending; and the method is idempotent or the route set
//! `retry_non_idempotent` — connect errors are retried for any method, since nothing reached
//! the upstream); the worker's retry budget has a retry left. Retries wait a jittered,
//! growing backoff, and `timeouts.total` bounds every attempt and backoff together.
//!
//! Apart from `retry`: an idempotent request in hand whose target closes or resets the
//! connection before any byte of a response is replayed once on another target (see
//! [`ClientConn::may_replay`]), so that a target dying mid-flight costs the client nothing.
//!
//! Every attempt holds an [`Attempt`]: the target's in-flight count stays up until it ends
//! (even when the request's future is dropped by the total deadline), and its outcome feeds
//! the target's passive health and latency EWMA.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::connection::{find_header, ClientConn};
use super::context::WorkerContext;
use super::error::ProxyError;
use super::timer::Timer;
use crate::config::{Balance, HashKey, Snapshot, Upstream, UpstreamId};
use crate::http::{RequestHead, ResponseHead};
use crate::upstream::balance::{cookie_value, key_hash};
use crate::upstream::{Failure, Groups, Picked, Refusal, Tried, UpstreamConn};

/// What the attempts of one request may do.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    /// The group.
    pub id: UpstreamId,
    /// The request's consistent-hash key, if the group hashes.
    pub hash: Option<u64>,
    /// The whole request (head and body) is in `out`.
    pub body_in_hand: bool,
    /// A failed pooled connection may be replaced by a fresh one (idempotent, in hand).
    pub replayable: bool,
    /// A failure after the request was sent may be retried.
    pub retryable: bool,
    /// When the exchange with the group started: the first attempt's clock reading.
    pub started: Instant,
}

/// One attempt on one target, ended exactly once (explicitly or on drop).
pub(super) struct Attempt<'a> {
    groups: &'a Groups,
    id: UpstreamId,
    upstream: &'a Upstream,
    picked: Picked,
    started: Instant,
    head_after: Option<Duration>,
    done: bool,
}

impl<'a> Attempt<'a> {
    fn new(
        groups: &'a Groups,
        id: UpstreamId,
        upstream: &'a Upstream,
        picked: Picked,
        started: Instant,
    ) -> Self {
        Self {
            groups,
            id,
            upstream,
            picked,
            started,
            head_after: None,
            done: false,
        }
    }

    /// The target this attempt went to.
    pub(super) fn addr(&self) -> SocketAddr {
        self.picked.addr
    }

    /// When the attempt started (its target was picked).
    pub(super) fn started(&self) -> Instant {
        self.started
    }

    /// Marks the moment the response head arrived (the latency the balancer learns from).
    pub(super) fn answered(&mut self) {
        self.head_after = Some(self.started.elapsed());
    }

    /// Ends the attempt: `Some(true)` success, `Some(false)` the upstream failed, `None`
    /// neither (the client went away).
    pub(super) fn finish(mut self, outcome: Option<bool>) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: Option<bool>) {
        if self.done {
            return;
        }
        self.done = true;
        let now = Instant::now();
        let latency = self.head_after.unwrap_or_else(|| now - self.started);
        self.groups
            .finish(self.id, self.upstream, self.picked, outcome, latency, now);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.end(None);
    }
}

impl ClientConn {
    /// The consistent-hash key of the request (before its head is consumed).
    pub(super) fn balance_hash(&self, upstream: &Upstream) -> Option<u64> {
        let Balance::ConsistentHash(key) = &upstream.balance else {
            return None;
        };
        let data = self.input.data();
        match key {
            HashKey::Ip => Some(match self.peer.ip() {
                std::net::IpAddr::V4(ip) => key_hash(&ip.octets()),
                std::net::IpAddr::V6(ip) => key_hash(&ip.octets()),
            }),
            HashKey::Path => Some(key_hash(self.path.as_bytes())),
            HashKey::Header(name) => find_header(data, &self.headers, name).map(key_hash),
            HashKey::Cookie(name) => find_header(data, &self.headers, "cookie")
                .and_then(|v| cookie_value(v, name))
                .map(key_hash),
        }
    }

    /// Runs attempts until one yields a response head that is not retried, or a failure
    /// that is not retried. Returns the connection, the head, and the attempt to end once
    /// the response was relayed.
    pub(super) async fn attempts<'c>(
        &mut self,
        ctx: &'c WorkerContext,
        snapshot: &Snapshot,
        head: &RequestHead,
        upstream: &'c Upstream,
        plan: Plan,
    ) -> Result<(UpstreamConn, ResponseHead, Attempt<'c>), ProxyError> {
        let mut attempts = Attempts::new(ctx.upstreams(), plan.id, upstream, plan.hash);
        attempts.retryable = plan.retryable;
        attempts.replayable = plan.replayable;
        // The first attempt starts in the same run as the exchange, on its clock reading;
        // each later one (after a failure, perhaps a back-off) reads the clock again.
        let mut first = Some(plan.started);
        loop {
            let now = first.take().unwrap_or_else(Instant::now);
            let mut attempt = attempts.start_at(now).map_err(refused)?;
            let addr = attempt.addr();
            self.exchange.target = Some(addr);
            let result = self
                .attempt_once(ctx, snapshot, head, upstream, &attempt, plan)
                .await;
            // The request's bytes are still in `out` unless its body was streamed.
            let in_hand = !self.out.is_empty();
            let failure = match result {
                Ok((conn, response)) => {
                    attempt.answered();
                    let failure = Failure::Status(response.status);
                    if !attempts.take_retry(failure, in_hand) {
                        return Ok((conn, response, attempt));
                    }
                    attempt.finish(Some(false));
                    failure
                }
                Err(e) => {
                    attempt.finish(e.upstream_failed().map(|failed| !failed));
                    match e.retry_failure() {
                        Some(f) if attempts.take_retry(f, in_hand) => f,
                        Some(f) if attempts.take_replay(f, in_hand) => {
                            attempts.replayed(addr);
                            continue;
                        }
                        _ => return Err(e),
                    }
                }
            };
            attempts.back_off(ctx.timer(), failure, addr).await;
        }
    }
}

/// The attempts of one request on one group: the targets tried, the retries taken, and
/// whether another is allowed. Proxied requests and the gateway's own calls
/// (`proxy::call`) run their attempt loops on it, so both follow one retry policy.
pub(super) struct Attempts<'c> {
    groups: &'c Groups,
    id: UpstreamId,
    upstream: &'c Upstream,
    hash: Option<u64>,
    /// A failure after the request was sent may be retried (idempotent, or opted in);
    /// connect errors are retried either way.
    pub(super) retryable: bool,
    /// The request may be sent again whatever `retry` says about resets: it is idempotent
    /// (see [`Attempts::take_replay`]).
    pub(super) replayable: bool,
    /// The one replay after a target died was taken.
    replay_taken: bool,
    tried: Tried,
    retries: u32,
}

impl<'c> Attempts<'c> {
    /// No attempt made yet; failures after sending are not retried until `retryable` is set.
    pub(super) fn new(
        groups: &'c Groups,
        id: UpstreamId,
        upstream: &'c Upstream,
        hash: Option<u64>,
    ) -> Self {
        Self {
            groups,
            id,
            upstream,
            hash,
            retryable: false,
            replayable: false,
            replay_taken: false,
            tried: Tried::default(),
            retries: 0,
        }
    }

    /// Picks a target (one not tried yet, if any is available) and starts an attempt on it.
    pub(super) fn start(&mut self) -> Result<Attempt<'c>, Refusal> {
        // One clock read for the pick and the attempt's start.
        self.start_at(Instant::now())
    }

    /// [`Attempts::start`] with the clock read at `now` (just before, in the same run).
    pub(super) fn start_at(&mut self, now: Instant) -> Result<Attempt<'c>, Refusal> {
        let picked = self
            .groups
            .pick(self.id, self.upstream, self.hash, self.tried, now)?;
        self.tried.add(picked.index);
        Ok(Attempt::new(
            self.groups,
            self.id,
            self.upstream,
            picked,
            now,
        ))
    }

    /// Whether `failure` gets another attempt: the group's policy names it, the attempt cap
    /// is not reached, the request can be sent again (`in_hand`, and `retryable` unless
    /// nothing was sent), and the worker's retry budget has one left (which this takes).
    pub(super) fn take_retry(&self, failure: Failure, in_hand: bool) -> bool {
        let policy = &self.upstream.retry;
        if self.retries + 1 >= policy.attempts || !policy.retries_on(failure) || !in_hand {
            return false;
        }
        // A connect error sent nothing: the request is intact whatever its method or body.
        let replay = match failure {
            Failure::ConnectError => true,
            _ => self.retryable,
        };
        replay
            && self
                .groups
                .try_retry(self.id, self.upstream, Instant::now())
    }

    /// Whether a request whose target closed or reset the connection before any byte of a
    /// response is sent once more on another target, whatever the group's `retry` says.
    ///
    /// The target died with the request in flight (a restart, a crash, a kill): nothing of
    /// the response exists, so for a request that may be replayed (`replayable`: idempotent,
    /// and `in_hand`) the client must not see the death. This is the cross-target
    /// counterpart of the replay of a stale pooled connection on a fresh one, and covers
    /// what that one cannot: a fresh connection that the dying target's kernel accepted
    /// into its backlog and then reset, and a stale connection's replay to the same target
    /// that met the same fate. Once per request, without backoff (the target is gone, not
    /// overloaded), and outside `attempts` and the retry budget. Asked after
    /// [`Attempts::take_retry`] refused, so a `retry.on` that names resets keeps its cap.
    pub(super) fn take_replay(&mut self, failure: Failure, in_hand: bool) -> bool {
        if failure != Failure::Reset || !self.replayable || !in_hand || self.replay_taken {
            return false;
        }
        self.replay_taken = true;
        true
    }

    /// Logs the replay [`Attempts::take_replay`] allowed (it waits no backoff).
    pub(super) fn replayed(&self, from: SocketAddr) {
        log::debug!(
            "{}: {from} closed before answering, replayed on another target",
            self.upstream.name
        );
    }

    /// Counts the retry [`Attempts::take_retry`] allowed and waits its backoff (on the
    /// worker's `timer`).
    pub(super) async fn back_off(&mut self, timer: &Timer, failure: Failure, from: SocketAddr) {
        self.retries += 1;
        log::debug!(
            "{}: {failure:?} from {from}, retry {}",
            self.upstream.name,
            self.retries
        );
        let pause = self.groups.backoff(self.upstream, self.retries);
        timer.sleep_until(Instant::now() + pause).await;
    }
}

/// A refusal after the request was consumed (the connection cannot be kept).
fn refused(refusal: Refusal) -> ProxyError {
    match refusal {
        Refusal::BreakerOpen(wait) | Refusal::NoHealthyTarget(wait) => {
            ProxyError::Unavailable(wait)
        }
    }
}

/// A refusal before anything of the request was consumed (the connection may be kept).
pub(super) fn refused_early(refusal: Refusal) -> ProxyError {
    match refusal {
        Refusal::BreakerOpen(wait) => ProxyError::BreakerOpen(wait),
        Refusal::NoHealthyTarget(wait) => ProxyError::NoHealthyTarget(wait),
    }
}
