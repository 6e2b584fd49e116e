//! The upstream exchange of a proxied request:
//!
//! 1. write the upstream head (and a small buffered body in the same write);
//! 2. pick a target (balancer, health, breaker: see `attempt.rs`), take a pooled connection
//!    to it or open one;
//! 3. send; stream the rest of the body (after `100 Continue` if the client asked);
//! 4. read the response head (skipping interim 1xx), write it to the client, stream the body;
//! 5. return the upstream connection to the pool if the exchange ended cleanly.
//!
//! A request whose bytes are all still in hand and whose method is idempotent is replayed once
//! on a fresh connection when a reused connection fails before any response byte arrived;
//! retries to other targets follow the group's `retry` policy (`attempt.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::attempt::{refused_early, Attempt, Plan};
use super::body::{relay, BodyEnd, MinRate, RelayError, RelayOptions};
use super::connection::{ClientConn, Next, BODY_BUF};
use super::context::WorkerContext;
use super::error::ProxyError;
use super::stages::{BodyObserver, Unobserved};
use super::timer::Timer;
use crate::config::{HostPolicy, ProxyAction, Snapshot, Upstream, UpstreamId};
use crate::http::writer::{
    must_dechunk, write_continue, write_downstream_response, write_upstream_request_with,
    BodyOverride, DownstreamInfo, ForwardInfo,
};
use crate::http::{
    parse_response, BodyFraming, HeadEdits, RequestHead, ResponseFraming, ResponseHead, Version,
};
use crate::io_buf::write_all_reuse;
use crate::metrics::{TlsFailure, TlsSide};
use crate::policy::Chain;
use crate::upstream::{connect, ConnectError, UpstreamConn};

/// Bodies up to this size that are already buffered travel in the same write as their head.
const INLINE_BODY: u64 = 64 * 1024;
/// Largest upstream response head.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most header fields in an upstream response.
const MAX_RESPONSE_HEADERS: usize = 128;

impl ClientConn {
    /// Proxies one request to the route's upstream group.
    pub(super) async fn forward(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        action: &ProxyAction,
        policies: &Chain,
        head: &RequestHead,
    ) -> Result<Next, ProxyError> {
        if let BodyFraming::Length(n) = head.framing {
            if n > self.body_rules.max_bytes {
                return Err(ProxyError::BodyTooLarge);
            }
        }
        let Some(cache) = action.cache else {
            return self
                .forward_to_group(ctx, snapshot, action, policies, head)
                .await;
        };
        if let Some(next) = self
            .cache_lookup(ctx, snapshot, action, cache, head)
            .await?
        {
            return Ok(next);
        }
        let result = self
            .forward_to_group(ctx, snapshot, action, policies, head)
            .await;
        self.cache_finish(ctx, snapshot);
        match result {
            Err(e) => self.cache_after_failure(ctx, snapshot, head, e).await,
            ok => ok,
        }
    }

    /// Forwards to the group the route chooses (after the cache stage, if any).
    async fn forward_to_group(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        action: &ProxyAction,
        policies: &Chain,
        head: &RequestHead,
    ) -> Result<Next, ProxyError> {
        let id = self.choose_group(ctx, &action.groups);
        self.exchange.group = Some(id);
        let upstream = snapshot.upstream(id);
        let mut deadline = None;
        if upstream.protocol.is_h2() {
            self.detect_grpc_web();
            deadline = self.grpc_web_deadline();
        }
        if let Some(rules) = &action.upgrade {
            self.accept_upgrade(ctx, snapshot, rules, upstream, head)?;
        }
        let groups = ctx.upstreams();
        // Refused before anything of the request is consumed, so the connection stays usable.
        // Settled below with the outcome; if this future is dropped first (the client's
        // connection aborted, its HTTP/2 stream reset, shutdown), the drop cancels it.
        let admitted = groups
            .admit(id, upstream, Instant::now())
            .map_err(refused_early)?;
        // A gRPC-Web call's deadline: past it, DEADLINE_EXCEEDED if nothing was answered yet
        // (`reply_error`), the connection closed otherwise. Each arm builds its own future.
        let result = match deadline {
            None => {
                self.forward_admitted(ctx, snapshot, action, policies, head, id)
                    .await
            }
            Some(limit) => ctx
                .timer()
                .timeout(
                    limit,
                    self.forward_admitted(ctx, snapshot, action, policies, head, id),
                )
                .await
                .unwrap_or(Err(ProxyError::UpstreamTimeout)),
        };
        if upstream.breaker.is_some() {
            let success = match &result {
                Ok(_) => Some(self.exchange.status < 500),
                Err(e) => e.upstream_failed().map(|failed| !failed),
            };
            admitted.settle(success, Instant::now());
        }
        result
    }

    /// The forwarding of a request its group's breaker admitted.
    async fn forward_admitted(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        action: &ProxyAction,
        policies: &Chain,
        head: &RequestHead,
        id: UpstreamId,
    ) -> Result<Next, ProxyError> {
        let upstream = snapshot.upstream(id);
        let hash = self.balance_hash(upstream);
        if let Some(web) = self.grpc_web {
            self.grpc_web_request(snapshot, head, web).await?;
        }
        self.write_upstream_head(snapshot, head, action, policies);
        if upstream.protocol.is_h2() {
            // Read while the head's spans still point into the input.
            self.takes_trailers = self.http2
                || self.grpc_web.is_some()
                || super::connection::find_header(self.input.data(), &self.headers, "te")
                    .is_some_and(super::h2::te_has_trailers);
        }
        let body_in_hand = if self.body.is_held() {
            self.take_held_body(head)
        } else {
            self.input.consume(head.head_len);
            self.await_small_body(ctx.timer(), snapshot, head).await?;
            self.take_buffered_body(head)
        };
        let mirror = action
            .mirror
            .as_ref()
            .and_then(|m| self.take_mirror(ctx, snapshot, m, head, body_in_hand));
        if let (BodyFraming::Length(n), false) = (head.framing, self.body.is_held()) {
            self.exchange.bytes_in += n;
        }
        let idempotent = head.method_kind.is_idempotent();
        let upstream_started = Instant::now();
        let plan = Plan {
            id,
            hash,
            body_in_hand,
            replayable: body_in_hand && idempotent,
            retryable: body_in_hand && (idempotent || action.retry_non_idempotent),
            started: upstream_started,
        };
        let result = self
            .exchange_with(ctx, snapshot, head, upstream, plan)
            .await;
        let result = self.finish_duplex(result);
        self.exchange.upstream = Some(upstream_started.elapsed());
        if let Some(mirror) = mirror {
            mirror.start();
        }
        result
    }

    /// Steps 2–5 of the exchange (see the module docs), the attempts bounded by
    /// `timeouts.total`.
    async fn exchange_with(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        head: &RequestHead,
        upstream: &Upstream,
        plan: Plan,
    ) -> Result<Next, ProxyError> {
        // The attempts future is built in each arm, not bound to a local first: a local
        // moved into the timeout would be laid out twice in the request task.
        let (conn, response, attempt) = match upstream.timeouts.total {
            None => self.attempts(ctx, snapshot, head, upstream, plan).await?,
            Some(total) => match ctx
                .timer()
                .timeout(total, self.attempts(ctx, snapshot, head, upstream, plan))
                .await
            {
                Ok(result) => result?,
                Err(_) => return Err(ProxyError::UpstreamTimeout),
            },
        };
        let status = response.status;
        self.out.clear();
        let result = self
            .respond_from_upstream(ctx, snapshot, conn, upstream, head, response)
            .await;
        let outcome = match &result {
            Ok(_) => Some(status < 500),
            Err(e) => e.upstream_failed().map(|failed| !failed),
        };
        attempt.finish(outcome);
        result
    }

    /// One attempt on `addr`: send the request, read the response head. A pooled connection
    /// found closed is replaced once by a fresh one to the same target when the request is
    /// replayable (the stale keep-alive race).
    pub(super) async fn attempt_once(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        head: &RequestHead,
        upstream: &Upstream,
        attempt: &Attempt<'_>,
        plan: Plan,
    ) -> Result<(UpstreamConn, ResponseHead), ProxyError> {
        let addr = attempt.addr();
        let send = self.send_head(ctx, upstream, addr, attempt.started(), plan.replayable);
        let mut conn = send.await?;
        if !plan.body_in_hand {
            let opts = self.request_relay_options(snapshot, upstream);
            let sent = match self.duplex_pump(&mut conn, head, opts) {
                Some(pump) => self.send_body_duplex(&mut conn, pump).await,
                None => self.send_body(&mut conn, head, opts).await,
            };
            if let Err(e) = sent {
                let response = self
                    .early_answer(ctx.timer(), &mut conn, upstream, head, e)
                    .await?;
                return Ok((conn, response));
            }
        }
        match self
            .read_response_head(ctx.timer(), &mut conn, upstream, head)
            .await
        {
            Ok(response) => Ok((conn, response)),
            Err(e) if plan.replayable && conn.reused && is_retryable(&e) => {
                let mut conn = self.resend_fresh(ctx, addr, upstream).await?;
                let response = self
                    .read_response_head(ctx.timer(), &mut conn, upstream, head)
                    .await?;
                Ok((conn, response))
            }
            Err(e) => Err(e),
        }
    }

    /// The response of an upstream that stopped taking the request body: it may have
    /// answered before the body was through (`413` for a body too large for it, `401` for
    /// a missing credential), which the client gets instead of a 502. The rest of the body
    /// is never sent, so neither connection can carry another request: the upstream one is
    /// not pooled, and the client one closes after the answer, lingering so that the
    /// client, still uploading, reads it. Without such an answer, the send's error stands.
    async fn early_answer(
        &mut self,
        timer: &Timer,
        conn: &mut UpstreamConn,
        upstream: &Upstream,
        head: &RequestHead,
        error: ProxyError,
    ) -> Result<ResponseHead, ProxyError> {
        if !matches!(error, ProxyError::UpstreamIo(_)) {
            return Err(error);
        }
        match self.read_response_head(timer, conn, upstream, head).await {
            Ok(response) => {
                self.linger = true;
                Ok(response)
            }
            Err(_) => Err(error),
        }
    }

    /// Writes the upstream request head into `out`.
    fn write_upstream_head(
        &mut self,
        snapshot: &Snapshot,
        head: &RequestHead,
        action: &ProxyAction,
        policies: &Chain,
    ) {
        let data = self.input.data();
        let host = match &action.host {
            HostPolicy::Preserve => preserved_host(data, head, snapshot, self.exchange.group),
            HostPolicy::Rewrite(host) => host.as_bytes(),
        };
        // Every forwarded request has a trace (assigned with the request id); the fallback
        // only keeps this function total.
        let trace = self.exchange.trace;
        let traceparent = trace.map(|t| t.traceparent());
        let client_subject = self.tls.as_ref().and_then(|tls| {
            let header = tls.listener(snapshot)?.client_subject_header.as_deref()?;
            Some((header, tls.client_subject.as_deref()?))
        });
        let fwd = ForwardInfo {
            path_and_query: self.upstream_path.as_bytes(),
            host,
            client_ip: self.peer_ip.as_bytes(),
            proto: self.proto(),
            identity_headers: &snapshot.server.identity_headers,
            client_subject,
            request_id: &self.request_id,
            request_id_from_client: self.request_id_from_client,
            traceparent: traceparent.as_ref().map_or(&[][..], |t| &t[..]),
            forward_tracestate: self.forward_tracestate,
            policy_strip: policies.stripped_headers(),
            hidden_credential: policies
                .hidden_credential(&self.identity)
                .and_then(|c| c.header),
            policy_fields: self.identity.upstream_fields(),
            edits: self.transform.with(&self.cache.request_edits),
            upgrade: self.upgrading.as_deref().map(|u| u.protocol()),
        };
        let body = if self.body.is_held() {
            BodyOverride {
                length: Some(self.body.bytes().len() as u64),
                drop_content_encoding: self.body.decoded(),
            }
        } else {
            BodyOverride::default()
        };
        self.out.clear();
        write_upstream_request_with(&mut self.out, data, head, &self.headers, &fwd, body);
    }

    /// Moves a body read whole by `buffer_request_body` (perhaps changed by a stage) into
    /// `out` after the head, and drops the request's bytes from the input. The whole request
    /// is then in hand.
    fn take_held_body(&mut self, head: &RequestHead) -> bool {
        self.input.consume(head.head_len + self.body.raw_len());
        self.exchange.bytes_in += self.body.raw_len() as u64;
        self.out.extend_from_slice(self.body.bytes());
        true
    }

    /// Reads the rest of a small Content-Length body before anything goes upstream, so that
    /// head and body leave in one write and the request stays replayable. Not when the client
    /// waits for `100 Continue` before sending it.
    async fn await_small_body(
        &mut self,
        timer: &Timer,
        snapshot: &Snapshot,
        head: &RequestHead,
    ) -> Result<(), ProxyError> {
        let BodyFraming::Length(n) = head.framing else {
            return Ok(());
        };
        if n > INLINE_BODY || head.expect_continue {
            return Ok(());
        }
        let n = n as usize;
        self.input.grow_to(n);
        let idle = snapshot.server.timeouts.body_idle;
        let min_rate = self.body_rules.min_rate;
        while self.input.len() < n {
            // The head is consumed: what is buffered is body.
            let received = self.input.len() as u64;
            let deadline = MinRate::read_deadline(min_rate.as_ref(), received, idle);
            let read = self.input.fill(&mut self.stream, BODY_BUF);
            match timer.timeout_at(deadline, read).await {
                Err(_) => return Err(ProxyError::ClientTimeout),
                Ok(Err(e)) => return Err(ProxyError::ClientGone(e)),
                Ok(Ok(0)) => return Err(ProxyError::ClientGone(closed())),
                Ok(Ok(_)) => {}
            }
        }
        Ok(())
    }

    /// Moves a body that is already buffered in full (and small) into `out`.
    /// Returns whether the whole request is now in `out`.
    fn take_buffered_body(&mut self, head: &RequestHead) -> bool {
        match head.framing {
            BodyFraming::None => true,
            BodyFraming::Chunked => false,
            BodyFraming::Length(n) => {
                if n > INLINE_BODY || (self.input.len() as u64) < n {
                    return false;
                }
                let n = n as usize;
                self.out.extend_from_slice(&self.input.data()[..n]);
                self.input.consume(n);
                true
            }
        }
    }

    /// Sends `out` to `addr` on a pooled or fresh connection; a reused connection that fails
    /// on write is replaced by a fresh one if the request is replayable.
    async fn send_head(
        &mut self,
        ctx: &WorkerContext,
        upstream: &Upstream,
        addr: SocketAddr,
        now: Instant,
        replayable: bool,
    ) -> Result<UpstreamConn, ProxyError> {
        let pooled = if upstream.protocol.is_h2() {
            // A stream on the worker's multiplexed connections to the target.
            None
        } else {
            ctx.pool().checkout_for(addr, upstream.tls.as_ref(), now)
        };
        let mut conn = match pooled {
            Some(conn) => {
                ctx.metrics().pool_hit();
                conn
            }
            None if upstream.protocol.is_h2() => {
                super::h2::upstream_stream(ctx, addr, upstream, self.takes_trailers).await?
            }
            None => {
                ctx.metrics().pool_miss();
                open(ctx, addr, upstream).await?
            }
        };
        match write_out(
            ctx.timer(),
            &mut conn,
            &mut self.out,
            upstream.timeouts.idle,
        )
        .await
        {
            Ok(()) => Ok(conn),
            Err(_) if conn.reused && replayable => self.resend_fresh(ctx, addr, upstream).await,
            Err(e) => Err(e),
        }
    }

    /// Opens a fresh connection to `addr` and writes the request still held in `out` on it:
    /// the one resend after a pooled connection turned out to be closed.
    async fn resend_fresh(
        &mut self,
        ctx: &WorkerContext,
        addr: SocketAddr,
        upstream: &Upstream,
    ) -> Result<UpstreamConn, ProxyError> {
        let mut conn = open(ctx, addr, upstream).await?;
        let idle = upstream.timeouts.idle;
        write_out(ctx.timer(), &mut conn, &mut self.out, idle).await?;
        Ok(conn)
    }

    /// Streams the request body from the client to the upstream.
    async fn send_body(
        &mut self,
        conn: &mut UpstreamConn,
        head: &RequestHead,
        opts: RelayOptions,
    ) -> Result<(), ProxyError> {
        let end = match head.framing {
            BodyFraming::None => return Ok(()),
            BodyFraming::Length(n) => BodyEnd::Length(n),
            BodyFraming::Chunked => BodyEnd::Chunked,
        };
        if head.expect_continue && head.version == Version::Http11 {
            self.scratch.clear();
            write_continue(&mut self.scratch);
            write_all_reuse(&mut self.stream, &mut self.scratch)
                .await
                .map_err(ProxyError::ClientGone)?;
        }
        let relayed = relay(
            &mut self.stream,
            &mut self.input,
            &mut conn.stream,
            end,
            opts,
            &mut self.scratch,
            &mut Unobserved,
        )
        .await
        .map_err(request_body_error)?;
        if end == BodyEnd::Chunked {
            self.exchange.bytes_in += relayed;
        }
        Ok(())
    }

    /// How a request body is relayed to `upstream`.
    fn request_relay_options(&self, snapshot: &Snapshot, upstream: &Upstream) -> RelayOptions {
        RelayOptions {
            read_idle: snapshot.server.timeouts.body_idle,
            write_timeout: upstream.timeouts.idle,
            limit: Some(self.body_rules.max_bytes),
            max_buffer: BODY_BUF,
            dechunk: false,
            min_rate: self.body_rules.min_rate,
        }
    }

    /// Reads the final response head, passing interim 1xx responses to HTTP/1.1 clients.
    async fn read_response_head(
        &mut self,
        timer: &Timer,
        conn: &mut UpstreamConn,
        upstream: &Upstream,
        head: &RequestHead,
    ) -> Result<ResponseHead, ProxyError> {
        let mut received = false;
        loop {
            if !conn.buf.is_empty() {
                let parsed = parse_response(
                    conn.buf.data(),
                    head.method_kind,
                    MAX_RESPONSE_HEAD,
                    MAX_RESPONSE_HEADERS,
                    &mut self.headers,
                )
                .map_err(ProxyError::UpstreamProtocol)?;
                if let Some(response) = parsed {
                    let switching = response.status == 101 && self.upgrading.is_some();
                    if !(100..200).contains(&response.status) || switching {
                        return Ok(response);
                    }
                    self.pass_interim(conn, head, &response).await?;
                    continue;
                }
            }
            let wait = if received {
                upstream.timeouts.idle
            } else {
                upstream.timeouts.first_byte
            };
            let read = conn.buf.fill(&mut conn.stream, MAX_RESPONSE_HEAD);
            match timer.timeout(wait, read).await {
                Err(_) => return Err(ProxyError::UpstreamTimeout),
                Ok(Err(_)) if !received => return Err(ProxyError::UpstreamClosed),
                Ok(Err(e)) => return Err(ProxyError::UpstreamIo(e)),
                Ok(Ok(0)) if !received => return Err(ProxyError::UpstreamClosed),
                Ok(Ok(0)) => return Err(ProxyError::UpstreamIo(closed())),
                Ok(Ok(_)) => received = true,
            }
        }
    }

    /// Forwards a 1xx interim response (never 100, which the gateway answers itself, and
    /// never 101: a 101 to a request that asked for no upgrade is a 502).
    async fn pass_interim(
        &mut self,
        conn: &mut UpstreamConn,
        head: &RequestHead,
        response: &ResponseHead,
    ) -> Result<(), ProxyError> {
        if response.status == 101 {
            return Err(ProxyError::UnexpectedUpgrade);
        }
        let forward = response.status != 100 && head.version == Version::Http11;
        if forward {
            // `scratch`, not `out`: `out` still holds the request for a possible retry.
            self.scratch.clear();
            self.scratch
                .extend_from_slice(&conn.buf.data()[..response.head_len]);
            write_all_reuse(&mut self.stream, &mut self.scratch)
                .await
                .map_err(ProxyError::ClientGone)?;
        }
        conn.buf.consume(response.head_len);
        Ok(())
    }

    /// Writes the response to the client and returns the upstream connection to the pool;
    /// a route with response stages goes through them (see `stages.rs`).
    async fn respond_from_upstream(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        conn: UpstreamConn,
        upstream: &Upstream,
        head: &RequestHead,
        response: ResponseHead,
    ) -> Result<Next, ProxyError> {
        if response.status == 101 {
            return self.switch_protocols(snapshot, conn, head, response).await;
        }
        if self.stages.is_active() {
            return self
                .respond_through_stages(ctx, snapshot, conn, upstream, head, response)
                .await;
        }
        self.relay_response(
            ctx,
            snapshot,
            conn,
            upstream,
            head,
            response,
            None,
            &mut Unobserved,
        )
        .await
    }

    /// Writes the response head (with the response stages' `edits`, if any) and relays the
    /// body, which `observer` sees on its way; returns the upstream connection to the pool
    /// if the exchange ended cleanly.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn relay_response<O: BodyObserver>(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        mut conn: UpstreamConn,
        upstream: &Upstream,
        head: &RequestHead,
        response: ResponseHead,
        edits: Option<&HeadEdits>,
        observer: &mut O,
    ) -> Result<Next, ProxyError> {
        let dechunk = must_dechunk(&response, head.version);
        // `linger`: the request body was cut short by an early answer (see `early_answer`).
        let keep_alive = head.keep_alive
            && !self.linger
            && !dechunk
            && response.framing != ResponseFraming::UntilClose
            && !ctx.drain().is_draining();
        // With edits, the gateway's own `Vary` line is merged into the upstream's instead.
        let skip = if edits.is_some() {
            self.stages.vary_line
        } else {
            0
        };
        let info = DownstreamInfo {
            client_version: head.version,
            keep_alive,
            request_id: &self.request_id,
            extra_headers: self.response_headers.get(skip..).unwrap_or_default(),
            edits,
            upgrade: None,
        };
        write_downstream_response(
            &mut self.out,
            conn.buf.data(),
            &response,
            &self.headers,
            &info,
        );
        if self.tls.is_some() {
            self.finish_secure_head(snapshot, 0);
        }
        conn.buf.consume(response.head_len);
        if let ResponseFraming::Length(n) = response.framing {
            if n <= INLINE_BODY {
                read_small_body(ctx.timer(), &mut conn, n as usize, upstream.timeouts.idle).await?;
            }
        }
        let end = match response.framing {
            ResponseFraming::None => None,
            ResponseFraming::Length(n) if n <= INLINE_BODY && conn.buf.len() as u64 >= n => {
                let body = &conn.buf.data()[..n as usize];
                observer.payload(body);
                self.out.extend_from_slice(body);
                conn.buf.consume(n as usize);
                None
            }
            ResponseFraming::Length(n) => Some(BodyEnd::Length(n)),
            ResponseFraming::Chunked => Some(BodyEnd::Chunked),
            ResponseFraming::UntilClose => Some(BodyEnd::Close),
        };
        self.response_started = true;
        self.exchange.status = response.status;
        self.exchange.bytes_out += self.out.len() as u64;
        write_all_reuse(&mut self.stream, &mut self.out)
            .await
            .map_err(ProxyError::ClientGone)?;
        if let Some(end) = end {
            self.exchange.bytes_out += self
                .relay_response_body(&mut conn, snapshot, upstream, end, dechunk, observer)
                .await?;
        }
        self.check_in_after_relay(ctx, conn, upstream, &response);
        Ok(if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    /// Returns an upstream connection whose response was relayed whole to the pool, unless
    /// the upstream said it closes, the body ended with the connection, or the request body
    /// was cut short (`linger`).
    pub(super) fn check_in_after_relay(
        &self,
        ctx: &WorkerContext,
        mut conn: UpstreamConn,
        upstream: &Upstream,
        response: &ResponseHead,
    ) {
        if response.keep_alive && response.framing != ResponseFraming::UntilClose && !self.linger {
            conn.buf.shrink_to(crate::upstream::UPSTREAM_BUF);
            ctx.pool().checkin(conn, &upstream.pool);
        }
    }

    async fn relay_response_body<O: BodyObserver>(
        &mut self,
        conn: &mut UpstreamConn,
        snapshot: &Snapshot,
        upstream: &Upstream,
        end: BodyEnd,
        dechunk: bool,
        observer: &mut O,
    ) -> Result<u64, ProxyError> {
        let opts = RelayOptions {
            read_idle: upstream.timeouts.idle,
            write_timeout: snapshot.server.timeouts.body_idle,
            limit: None,
            max_buffer: BODY_BUF,
            dechunk,
            min_rate: None,
        };
        relay(
            &mut conn.stream,
            &mut conn.buf,
            &mut self.stream,
            end,
            opts,
            &mut self.scratch,
            observer,
        )
        .await
        .map_err(|e| match e {
            RelayError::SourceIo(e) => ProxyError::UpstreamIo(e),
            RelayError::SourceClosed => ProxyError::UpstreamClosed,
            RelayError::SourceTimeout => ProxyError::UpstreamTimeout,
            RelayError::SourceFraming(e) => ProxyError::UpstreamProtocol(e),
            RelayError::TooLarge => ProxyError::UpstreamClosed,
            RelayError::Sink(e) => ProxyError::ClientGone(e),
        })
    }
}

/// Reads the rest of a small response body into the connection's buffer, so that the client
/// gets head and body in one write (and an upstream that stalls or closes early gets a clean
/// 504/502 instead of a truncated response).
async fn read_small_body(
    timer: &Timer,
    conn: &mut UpstreamConn,
    n: usize,
    idle: Duration,
) -> Result<(), ProxyError> {
    if conn.buf.len() >= n {
        return Ok(());
    }
    conn.buf.grow_to(n);
    while conn.buf.len() < n {
        let read = conn.buf.fill(&mut conn.stream, BODY_BUF);
        match timer.timeout(idle, read).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout),
            Ok(Err(e)) => return Err(ProxyError::UpstreamIo(e)),
            Ok(Ok(0)) => return Err(ProxyError::UpstreamIo(closed())),
            Ok(Ok(_)) => {}
        }
    }
    Ok(())
}

/// The `Host` a route that preserves it sends: the client's `Host`, else the authority of an
/// absolute-form target, else (an HTTP/1.0 request without either) the upstream group's
/// name, as Nginx sends its upstream's name: never an empty `Host`.
fn preserved_host<'a>(
    data: &'a [u8],
    head: &RequestHead,
    snapshot: &'a Snapshot,
    group: Option<UpstreamId>,
) -> &'a [u8] {
    if let Some(host) = head.host {
        return host.of(data);
    }
    let authority = crate::router::normalize::split_target(head.target.of(data))
        .ok()
        .and_then(|t| t.authority);
    match (authority, group) {
        (Some(authority), _) => authority,
        (None, Some(id)) => snapshot.upstream(id).name.as_bytes(),
        (None, None) => b"",
    }
}

/// Opens a fresh connection to `addr`; a failed TLS handshake is counted by its cause.
pub(super) async fn open(
    ctx: &WorkerContext,
    addr: std::net::SocketAddr,
    upstream: &Upstream,
) -> Result<UpstreamConn, ProxyError> {
    let tls = upstream.tls.as_ref();
    connect(addr, upstream.timeouts.connect, tls)
        .await
        .map_err(|e| connect_failed(ctx, e))
}

/// The client's answer to a failed connect; a failed TLS handshake is counted by its cause.
pub(super) fn connect_failed(ctx: &WorkerContext, e: ConnectError) -> ProxyError {
    match e {
        ConnectError::Timeout(_) => ProxyError::ConnectTimeout,
        ConnectError::HandshakeTimeout(_) => {
            ctx.metrics()
                .tls_failure(TlsSide::Upstream, TlsFailure::Timeout);
            ProxyError::ConnectTimeout
        }
        ConnectError::Tls { source, .. } => {
            let cause = crate::tls::outcome::failure_cause(&source);
            ctx.metrics().tls_failure(TlsSide::Upstream, cause);
            ProxyError::Connect(source)
        }
        ConnectError::Io { source, .. } => ProxyError::Connect(source),
    }
}

/// Writes `out` to the upstream, keeping its contents for a possible retry.
async fn write_out(
    timer: &Timer,
    conn: &mut UpstreamConn,
    out: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), ProxyError> {
    use monoio::io::AsyncWriteRentExt;
    let buf = std::mem::take(out);
    let write = conn.stream.write_all(buf);
    let (result, buf) = match timer.timeout(timeout, write).await {
        Err(_) => return Err(ProxyError::UpstreamTimeout),
        Ok(pair) => pair,
    };
    *out = buf;
    result.map(|_| ()).map_err(ProxyError::UpstreamIo)
}

/// A failed request body relay as the client's answer.
pub(super) fn request_body_error(e: RelayError) -> ProxyError {
    match e {
        RelayError::SourceIo(e) => ProxyError::ClientGone(e),
        RelayError::SourceClosed => ProxyError::ClientGone(closed()),
        RelayError::SourceTimeout => ProxyError::ClientTimeout,
        RelayError::SourceFraming(e) => ProxyError::BadRequest(e),
        RelayError::TooLarge => ProxyError::BodyTooLarge,
        RelayError::Sink(e) => ProxyError::UpstreamIo(e),
    }
}

/// Whether an exchange that failed this way on a reused connection may be replayed.
fn is_retryable(error: &ProxyError) -> bool {
    matches!(error, ProxyError::UpstreamClosed)
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed mid-message")
}
