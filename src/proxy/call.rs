//! Requests the gateway sends on its own behalf: composition calls, token introspection,
//! background cache refreshes.
//!
//! A [`Call`] goes to an upstream group exactly like a proxied request does: the group's
//! breaker admits it, the balancer picks among healthy, non-ejected targets, the worker's
//! keep-alive pool supplies the connection, failures are retried on other targets by the
//! group's `retry` policy and budget (the same [`Attempts`] loop as the proxied path; an
//! idempotent call whose target dies before answering is replayed once on another, as a
//! proxied request is), and each attempt's outcome feeds passive health, latency and the breaker. Unlike a proxied
//! request, the response is read whole into memory (bounded by [`Call::max_body`]).
//!
//! Hedging: with [`Call::hedge_after`], when the first attempt has not answered after that
//! long a second one goes to another target; the first complete answer wins and the other
//! attempt is dropped, which closes its connection (a connection is never pooled half-read).
//!
//! This is not the plain proxy path: a call allocates its request bytes, the response head
//! and body.

use std::net::SocketAddr;
use std::pin::pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::io::AsyncWriteRentExt;

use super::attempt::{Attempt, Attempts};
use super::context::WorkerContext;
use super::error::ProxyError;
use super::forward::open;
use super::timer::Timer;
use crate::config::{Snapshot, Upstream, UpstreamId};
use crate::http::{
    parse_response, ChunkedDecoder, HeaderSpan, HttpError, Method, ResponseFault, ResponseFraming,
};
use crate::tls::UpstreamStream;
use crate::upstream::{Failure, Refusal, UpstreamConn};

/// Largest response head a call accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a call's response.
const MAX_HEADERS: usize = 128;
/// Largest single read while receiving a body.
const READ_CHUNK: usize = 64 * 1024;

/// A request the gateway sends on its own behalf.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The group.
    pub group: UpstreamId,
    /// Request method, e.g. `"GET"`.
    pub method: &'a str,
    /// Origin-form target, e.g. `/users/42?tier=gold`, already percent-encoded.
    pub path_and_query: &'a str,
    /// `Host` header value; `None`: the group's name, as Nginx sends its upstream's name
    /// (an HTTP/1.1 request always carries a `Host`; servers answer one without it `400`).
    pub host: Option<&'a str>,
    /// Extra header lines, each `Name: value\r\n`, written as given (identity, trace and
    /// forwarded client headers are the caller's). Never hop-by-hop, `Host` or
    /// `Content-Length`.
    pub headers: &'a [u8],
    /// The request body; sent with `Content-Length` when not empty, or always for POST, PUT
    /// and PATCH.
    pub body: &'a [u8],
    /// Whether a failure after the request was sent may be retried on another target (and
    /// whether the call may be hedged); connect errors are retried per the group's policy
    /// either way.
    pub idempotent: bool,
    /// When the whole call (every attempt and backoff) must be over; the group's
    /// `timeouts.total` bounds it too, whichever ends first.
    pub deadline: Option<Instant>,
    /// Largest response body accepted; a larger one fails the call with
    /// [`CallError::TooLarge`].
    pub max_body: usize,
    /// Send a second attempt to another target when the first has not answered after this
    /// long (idempotent calls only).
    pub hedge_after: Option<Duration>,
    /// Consistent-hash key, for groups that balance by hash.
    pub hash: Option<u64>,
}

impl<'a> Call<'a> {
    /// A GET of `path_and_query` from `group` with no extra headers, no deadline and a
    /// 1 MiB body limit; adjust the fields from there.
    pub fn get(group: UpstreamId, path_and_query: &'a str) -> Self {
        Self {
            group,
            method: "GET",
            path_and_query,
            host: None,
            headers: b"",
            body: b"",
            idempotent: true,
            deadline: None,
            max_body: 1024 * 1024,
            hedge_after: None,
            hash: None,
        }
    }
}

/// A whole response to a [`Call`].
#[derive(Debug, Clone)]
pub struct CallResponse {
    /// Status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Bytes,
    /// The target that answered.
    pub target: SocketAddr,
    /// From the call's start to its answer, retries included.
    pub elapsed: Duration,
    head: Vec<u8>,
    headers: Vec<HeaderSpan>,
}

impl CallResponse {
    /// The value of the first header field named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Every header field, in order, as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|h| (h.name.of(&self.head), h.value.of(&self.head)))
    }
}

/// Why a call got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The breaker is open or no target is healthy; worth trying again after this long.
    #[error("upstream unavailable")]
    Unavailable(Duration),
    /// No connection could be opened (after any retries).
    #[error("upstream connect failed")]
    Connect,
    /// The deadline or one of the group's timeouts passed.
    #[error("upstream timed out")]
    Timeout,
    /// The upstream closed, reset or sent an invalid response (after any retries).
    #[error("upstream failed")]
    Upstream,
    /// The response body is larger than [`Call::max_body`].
    #[error("upstream response too large")]
    TooLarge,
}

impl CallError {
    /// The status the gateway would answer for this failure (502, 503 or 504).
    pub fn status(self) -> u16 {
        match self {
            CallError::Unavailable(_) => 503,
            CallError::Timeout => 504,
            CallError::Connect | CallError::Upstream | CallError::TooLarge => 502,
        }
    }
}

/// How one attempt failed: a proxy error (classified for retries and health as on the
/// proxied path), a body over the limit (an answer, so not the upstream's failure), or the
/// caller's deadline (the caller gave up: nothing learned about the upstream).
#[derive(Debug)]
enum Fault {
    Proxy(ProxyError),
    TooLarge,
    GaveUp,
}

impl From<ProxyError> for Fault {
    fn from(e: ProxyError) -> Self {
        Fault::Proxy(e)
    }
}

impl Fault {
    fn upstream_failed(&self) -> Option<bool> {
        match self {
            Fault::Proxy(e) => e.upstream_failed(),
            Fault::TooLarge => Some(false),
            Fault::GaveUp => None,
        }
    }

    fn retry_failure(&self) -> Option<Failure> {
        match self {
            Fault::Proxy(e) => e.retry_failure(),
            Fault::TooLarge | Fault::GaveUp => None,
        }
    }

    fn into_error(self) -> CallError {
        match self {
            Fault::TooLarge => CallError::TooLarge,
            Fault::GaveUp => CallError::Timeout,
            Fault::Proxy(e) => match e {
                ProxyError::NoHealthyTarget(d)
                | ProxyError::BreakerOpen(d)
                | ProxyError::Unavailable(d) => CallError::Unavailable(d),
                ProxyError::NoTarget => CallError::Unavailable(Duration::from_secs(1)),
                ProxyError::Connect(_) => CallError::Connect,
                ProxyError::ConnectTimeout | ProxyError::UpstreamTimeout => CallError::Timeout,
                _ => CallError::Upstream,
            },
        }
    }
}

/// Sends `call` to its group and reads the whole response. Dropping the future cancels
/// the call and closes its upstream connections.
///
/// The call (every attempt, backoff and body read) is bounded by the earlier of
/// [`Call::deadline`] and the group's `timeouts.total` from now. Both end it with
/// [`CallError::Timeout`], but the breaker hears them differently: the group's own
/// timeouts are the upstream's failure, as for a proxied request; the caller's deadline (a
/// composite's deadline or a call's own `timeout`) is the caller giving up, so the call is
/// **cancelled** for the breaker (no outcome; a probe's slot is given back), exactly as when
/// the future is dropped. A group shared with proxied routes is not opened by a composite's
/// tighter budget.
pub async fn call(
    ctx: &WorkerContext,
    snapshot: &Snapshot,
    call: &Call<'_>,
) -> Result<CallResponse, CallError> {
    let started = Instant::now();
    let upstream = snapshot.upstream(call.group);
    // Settled with the outcome below; dropped unsettled (this future dropped), cancelled.
    let admitted = ctx
        .upstreams()
        .admit(call.group, upstream, started)
        .map_err(|r| Fault::Proxy(refused(r)).into_error())?;
    let request = request_bytes(call, &upstream.name);
    // Pinned in place: the timeout below holds a reference, not a copy of the future.
    let mut attempts = pin!(run(ctx, upstream, call, &request));
    let result = match bound(call.deadline, upstream.timeouts.total.map(|t| started + t)) {
        None => attempts.as_mut().await,
        Some((at, fault)) => ctx
            .timer()
            .timeout_at(at, attempts)
            .await
            .unwrap_or_else(|_| Err(fault())),
    };
    let success = match &result {
        Ok(response) => Some(response.status < 500),
        Err(fault) => fault.upstream_failed().map(|failed| !failed),
    };
    admitted.settle(success, Instant::now());
    let elapsed = started.elapsed();
    let result = result.map_err(Fault::into_error);
    let status = result.as_ref().map_or_else(|e| e.status(), |r| r.status);
    ctx.metrics()
        .record_upstream_call(&upstream.name, status, elapsed);
    result.map(|mut response| {
        response.elapsed = elapsed;
        response
    })
}

/// The instant that ends a call, and what ending there means: the caller's `deadline`
/// (the caller gave up) or the group's `timeouts.total` (the upstream timed out), the
/// earlier; the group's on a tie.
fn bound(deadline: Option<Instant>, total: Option<Instant>) -> Option<(Instant, fn() -> Fault)> {
    let upstream_timeout: fn() -> Fault = || Fault::Proxy(ProxyError::UpstreamTimeout);
    match (deadline, total) {
        (None, None) => None,
        (Some(d), Some(t)) if t <= d => Some((t, upstream_timeout)),
        (Some(d), _) => Some((d, || Fault::GaveUp)),
        (None, Some(t)) => Some((t, upstream_timeout)),
    }
}

/// The request's bytes: request line, `Host` (the call's, else `group`'s name), the
/// caller's headers, framing, body.
fn request_bytes(call: &Call<'_>, group: &str) -> Bytes {
    let mut out = Vec::with_capacity(128 + call.headers.len() + call.body.len());
    out.extend_from_slice(call.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(call.path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(b"Host: ");
    out.extend_from_slice(call.host.unwrap_or(group).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(call.headers);
    let method = Method::from_token(call.method.as_bytes());
    let has_body = matches!(method, Method::Post | Method::Put | Method::Patch);
    if has_body || !call.body.is_empty() {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(call.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(call.body);
    Bytes::from(out)
}

/// The attempt loop: like the proxied path's, with hedging on the first attempt.
async fn run(
    ctx: &WorkerContext,
    upstream: &Upstream,
    call: &Call<'_>,
    request: &Bytes,
) -> Result<CallResponse, Fault> {
    let mut attempts = Attempts::new(ctx.upstreams(), call.group, upstream, call.hash);
    attempts.retryable = call.idempotent;
    attempts.replayable = call.idempotent;
    let mut hedge = call.hedge_after.filter(|_| call.idempotent);
    loop {
        let first = attempts.start().map_err(refused)?;
        let from = first.addr();
        let result = match hedge.take() {
            None => exchange(ctx, upstream, call, request, first).await,
            // Boxed: two attempts side by side would double the size of every call's future
            // (moved whole when the call is started); hedging is the rare case.
            Some(after) => {
                Box::pin(hedged(
                    ctx,
                    upstream,
                    call,
                    request,
                    first,
                    &mut attempts,
                    after,
                ))
                .await
            }
        };
        let failure = match &result {
            Ok(response) => Failure::Status(response.status),
            Err(fault) => match fault.retry_failure() {
                Some(failure) => failure,
                None => return result,
            },
        };
        // The request's bytes are kept for the whole call: always in hand.
        if attempts.take_retry(failure, true) {
            attempts.back_off(ctx.timer(), failure, from).await;
        } else if attempts.take_replay(failure, true) {
            attempts.replayed(from);
        } else {
            return result;
        }
    }
}

/// Runs `first`; if it has not answered after `after`, races a second attempt on another
/// target against it. The first answer wins; a failure waits for the other attempt.
async fn hedged(
    ctx: &WorkerContext,
    upstream: &Upstream,
    call: &Call<'_>,
    request: &Bytes,
    first: Attempt<'_>,
    attempts: &mut Attempts<'_>,
    after: Duration,
) -> Result<CallResponse, Fault> {
    let mut primary = pin!(exchange(ctx, upstream, call, request, first));
    let second = monoio::select! {
        result = primary.as_mut() => return result,
        _ = ctx.timer().sleep_until(Instant::now() + after) => attempts.start(),
    };
    let Ok(second) = second else {
        return primary.await;
    };
    let mut secondary = pin!(exchange(ctx, upstream, call, request, second));
    monoio::select! {
        result = primary.as_mut() => match result {
            Ok(response) => Ok(response),
            Err(_) => secondary.await,
        },
        result = secondary.as_mut() => match result {
            Ok(response) => Ok(response),
            Err(_) => primary.await,
        },
    }
}

/// One attempt: send the request on a pooled or fresh connection, read the whole response,
/// and end the attempt with its outcome.
async fn exchange(
    ctx: &WorkerContext,
    upstream: &Upstream,
    call: &Call<'_>,
    request: &Bytes,
    mut attempt: Attempt<'_>,
) -> Result<CallResponse, Fault> {
    let addr = attempt.addr();
    let result = send(ctx, upstream, call, request, addr).await;
    if result.is_ok() {
        attempt.answered();
    }
    let outcome = match &result {
        Ok(response) => Some(response.status < 500),
        Err(fault) => fault.upstream_failed().map(|failed| !failed),
    };
    attempt.finish(outcome);
    result
}

/// Sends on a pooled connection if one is idle (replaced once by a fresh one when it turns
/// out closed before answering an idempotent call), else on a fresh one.
async fn send(
    ctx: &WorkerContext,
    upstream: &Upstream,
    call: &Call<'_>,
    request: &Bytes,
    addr: SocketAddr,
) -> Result<CallResponse, Fault> {
    if upstream.protocol.is_h2() {
        // Boxed, like a fresh connection below: the common case (a pooled HTTP/1.1
        // connection) keeps a small future.
        return Box::pin(send_h2(ctx, upstream, call, request, addr)).await;
    }
    let pooled = ctx
        .pool()
        .checkout_for(addr, upstream.tls.as_ref(), Instant::now());
    if pooled.is_some() {
        ctx.metrics().pool_hit();
    } else {
        ctx.metrics().pool_miss();
    }
    let reused = pooled.is_some();
    let conn = match pooled {
        Some(conn) => conn,
        None => Box::pin(open(ctx, addr, upstream)).await?,
    };
    match roundtrip(ctx, conn, upstream, call, request).await {
        Err(Fault::Proxy(ProxyError::UpstreamClosed)) if reused && call.idempotent => {
            let conn = Box::pin(open(ctx, addr, upstream)).await?;
            roundtrip(ctx, conn, upstream, call, request).await
        }
        result => result,
    }
}

/// Sends on a stream of the worker's multiplexed connections to an h2/h2c target (the
/// stream is moved to another connection by `http2::upstream` when the target refuses it or
/// goes away). The request's `Host` becomes the stream's `:authority`.
async fn send_h2(
    ctx: &WorkerContext,
    upstream: &Upstream,
    call: &Call<'_>,
    request: &Bytes,
    addr: SocketAddr,
) -> Result<CallResponse, Fault> {
    let conn = super::h2::upstream_stream(ctx, addr, upstream, false).await?;
    roundtrip(ctx, conn, upstream, call, request).await
}

/// Writes the request and reads the whole response on `conn`; returns it to the pool when
/// the exchange ended cleanly (an HTTP/1.1 connection; an h2 stream just ends).
async fn roundtrip(
    ctx: &WorkerContext,
    mut conn: UpstreamConn,
    upstream: &Upstream,
    call: &Call<'_>,
    request: &Bytes,
) -> Result<CallResponse, Fault> {
    let timeouts = upstream.timeouts;
    let timer = ctx.timer();
    match timer
        .timeout(timeouts.idle, write_request(&mut conn, request))
        .await
    {
        Err(_) => return Err(ProxyError::UpstreamTimeout.into()),
        // Nothing of a response arrived: the same class as a close before the head.
        Ok(Err(_)) => return Err(ProxyError::UpstreamClosed.into()),
        Ok(Ok(())) => {}
    }
    let method = Method::from_token(call.method.as_bytes());
    let mut headers = Vec::new();
    let response = read_head(timer, &mut conn, upstream, method, &mut headers).await?;
    let head = conn.buf.data()[..response.head_len].to_vec();
    conn.buf.consume(response.head_len);
    let body = read_body(
        timer,
        &mut conn,
        response.framing,
        call.max_body,
        timeouts.idle,
    )
    .await?;
    let reusable = response.keep_alive
        && response.framing != ResponseFraming::UntilClose
        && conn.buf.is_empty()
        && !matches!(conn.stream, UpstreamStream::H2(_));
    let target = conn.addr;
    if reusable {
        conn.buf.shrink_to(crate::upstream::UPSTREAM_BUF);
        ctx.pool().checkin(conn, &upstream.pool);
    }
    Ok(CallResponse {
        status: response.status,
        body,
        target,
        elapsed: Duration::ZERO,
        head,
        headers,
    })
}

/// Reads the final response head, skipping interim 1xx responses (a 101 is an error: the
/// call asked for no upgrade).
async fn read_head(
    timer: &Timer,
    conn: &mut UpstreamConn,
    upstream: &Upstream,
    method: Method,
    headers: &mut Vec<HeaderSpan>,
) -> Result<crate::http::ResponseHead, Fault> {
    let mut received = false;
    loop {
        if !conn.buf.is_empty() {
            let parsed = parse_response(conn.buf.data(), method, MAX_HEAD, MAX_HEADERS, headers)
                .map_err(ProxyError::UpstreamProtocol)?;
            match parsed {
                Some(r) if r.status == 101 => return Err(ProxyError::UnexpectedUpgrade.into()),
                Some(r) if (100..200).contains(&r.status) => {
                    conn.buf.consume(r.head_len);
                    continue;
                }
                Some(r) => return Ok(r),
                None => {}
            }
        }
        let wait = if received {
            upstream.timeouts.idle
        } else {
            upstream.timeouts.first_byte
        };
        let read = read_more(conn, MAX_HEAD);
        match timer.timeout(wait, read).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout.into()),
            Ok(Err(_) | Ok(0)) if !received => return Err(ProxyError::UpstreamClosed.into()),
            Ok(Err(e)) => return Err(ProxyError::UpstreamIo(e).into()),
            Ok(Ok(0)) => return Err(ProxyError::UpstreamIo(closed()).into()),
            Ok(Ok(_)) => received = true,
        }
    }
}

/// Reads a whole body framed as `framing`, at most `max` bytes of payload.
async fn read_body(
    timer: &Timer,
    conn: &mut UpstreamConn,
    framing: ResponseFraming,
    max: usize,
    idle: Duration,
) -> Result<Bytes, Fault> {
    match framing {
        ResponseFraming::None => Ok(Bytes::new()),
        ResponseFraming::Length(n) => {
            let n = usize::try_from(n).map_err(|_| Fault::TooLarge)?;
            if n > max {
                return Err(Fault::TooLarge);
            }
            conn.buf.grow_to(n);
            while conn.buf.len() < n {
                fill(timer, conn, idle).await?;
            }
            let body = Bytes::copy_from_slice(&conn.buf.data()[..n]);
            conn.buf.consume(n);
            Ok(body)
        }
        ResponseFraming::Chunked => read_chunked(timer, conn, max, idle).await,
        ResponseFraming::UntilClose => {
            let mut body = Vec::new();
            loop {
                body.extend_from_slice(conn.buf.data());
                let n = conn.buf.len();
                conn.buf.consume(n);
                if body.len() > max {
                    return Err(Fault::TooLarge);
                }
                let read = read_more(conn, READ_CHUNK);
                match timer.timeout(idle, read).await {
                    Err(_) => return Err(ProxyError::UpstreamTimeout.into()),
                    Ok(Err(e)) => return Err(ProxyError::UpstreamIo(e).into()),
                    Ok(Ok(0)) => return Ok(Bytes::from(body)),
                    Ok(Ok(_)) => {}
                }
            }
        }
    }
}

/// Decodes a chunked body into one buffer (trailers are read and dropped).
async fn read_chunked(
    timer: &Timer,
    conn: &mut UpstreamConn,
    max: usize,
    idle: Duration,
) -> Result<Bytes, Fault> {
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    loop {
        let data = conn.buf.data();
        let progress = decoder
            .advance(data, &mut |range| body.extend_from_slice(&data[range]))
            .map_err(|_| ProxyError::UpstreamProtocol(invalid_chunked()))?;
        conn.buf.consume(progress.consumed);
        if body.len() > max || decoder.pending_chunk_bytes() > (max - body.len()) as u64 {
            return Err(Fault::TooLarge);
        }
        if progress.done {
            return Ok(Bytes::from(body));
        }
        fill(timer, conn, idle).await?;
    }
}

/// One read into the connection's buffer; end of stream mid-body is an error.
async fn fill(timer: &Timer, conn: &mut UpstreamConn, idle: Duration) -> Result<(), Fault> {
    let read = read_more(conn, READ_CHUNK.max(conn.buf.capacity()));
    match timer.timeout(idle, read).await {
        Err(_) => Err(ProxyError::UpstreamTimeout.into()),
        Ok(Err(e)) => Err(ProxyError::UpstreamIo(e).into()),
        Ok(Ok(0)) => Err(ProxyError::UpstreamIo(closed()).into()),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Writes the whole request.
async fn write_request(conn: &mut UpstreamConn, request: &Bytes) -> std::io::Result<()> {
    conn.stream.write_all(request.clone()).await.0.map(drop)
}

/// One read into the connection's buffer, at most `max` bytes of capacity.
async fn read_more(conn: &mut UpstreamConn, max: usize) -> std::io::Result<usize> {
    conn.buf.fill(&mut conn.stream, max).await
}

fn refused(refusal: Refusal) -> ProxyError {
    match refusal {
        Refusal::BreakerOpen(wait) => ProxyError::BreakerOpen(wait),
        Refusal::NoHealthyTarget(wait) => ProxyError::NoHealthyTarget(wait),
    }
}

fn invalid_chunked() -> HttpError {
    HttpError::InvalidResponse(ResponseFault::Malformed)
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed mid-message")
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
