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

use std::time::{Duration, Instant};

use super::connection::{find_header, ClientConn};
use super::context::WorkerContext;
use super::error::ProxyError;
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
        let groups = ctx.upstreams();
        let mut tried = Tried::default();
        let mut retries = 0u32;
        let mut replayed = false;
        loop {
            // One clock read for the pick and the attempt's start.
            let now = Instant::now();
            let picked = groups
                .pick(plan.id, upstream, plan.hash, tried, now)
                .map_err(refused)?;
            tried.add(picked.index);
            self.exchange.target = Some(picked.addr);
            let mut attempt = Attempt::new(groups, plan.id, upstream, picked, now);
            let result = self
                .attempt_once(ctx, snapshot, head, upstream, picked.addr, plan)
                .await;
            let failure = match result {
                Ok((conn, response)) => {
                    attempt.head_after = Some(attempt.started.elapsed());
                    let failure = Failure::Status(response.status);
                    if !self.may_retry(groups, upstream, plan, failure, retries) {
                        return Ok((conn, response, attempt));
                    }
                    attempt.finish(Some(false));
                    failure
                }
                Err(e) => {
                    attempt.finish(e.upstream_failed().map(|failed| !failed));
                    match e.retry_failure() {
                        Some(f) if self.may_retry(groups, upstream, plan, f, retries) => f,
                        Some(Failure::Reset) if !replayed && self.may_replay(plan) => {
                            replayed = true;
                            log::debug!(
                                "{}: {} closed before answering, replayed on another target",
                                upstream.name,
                                picked.addr
                            );
                            continue;
                        }
                        _ => return Err(e),
                    }
                }
            };
            retries += 1;
            log::debug!(
                "{}: {failure:?} from {}, retry {retries}",
                upstream.name,
                picked.addr
            );
            monoio::time::sleep(groups.backoff(upstream, retries)).await;
        }
    }

    /// Whether a request whose target closed or reset the connection before any byte of a
    /// response is replayed on another target, whatever the group's `retry` says.
    ///
    /// The target died with the request in flight (a restart, a crash, a kill): nothing of
    /// the response exists, so for a request that may be replayed (idempotent, body in
    /// hand) the client must not see the death. This is the cross-target counterpart of
    /// the replay on a fresh connection in `attempt_once`, and covers what that one cannot:
    /// a fresh connection that the dying target's kernel accepted into its backlog and
    /// then reset, and a stale pooled connection whose replay to the same target met the
    /// same fate. Once per request, without backoff (the target is gone, not overloaded),
    /// and outside `attempts` and the budget, like the stale-connection replay.
    fn may_replay(&self, plan: Plan) -> bool {
        plan.replayable && !self.out.is_empty()
    }

    /// Whether `failure` after `retries` retries gets another attempt (takes from the budget).
    fn may_retry(
        &self,
        groups: &Groups,
        upstream: &Upstream,
        plan: Plan,
        failure: Failure,
        retries: u32,
    ) -> bool {
        let policy = &upstream.retry;
        if retries + 1 >= policy.attempts || !policy.retries_on(failure) || self.out.is_empty() {
            return false;
        }
        // A connect error sent nothing: the request is intact whatever its method or body.
        let replay = match failure {
            Failure::ConnectError => true,
            _ => plan.retryable,
        };
        replay && groups.try_retry(plan.id, upstream, Instant::now())
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
