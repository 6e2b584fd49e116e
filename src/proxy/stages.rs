//! Response stages: what sees an upstream response on its way to the client.
//!
//! ```text
//! response head ─▶ response transform ─▶ compress ─▶ cache store (streaming)
//! ```
//!
//! A route's response stages are set up per request in [`ResponseStages`] (owned by the
//! connection, reused, cleared per request). The forward path (`forward.rs`) checks
//! [`ResponseStages::is_active`] once per response: a route without response stages takes
//! the plain relay and pays nothing else (no allocation, no copy, no dynamic call).
//!
//! With stages, the response goes through the same relay, with two additions:
//! - **head edits** ([`HeadEdits`]): fields the stages remove from the upstream's head and
//!   fields they add (the cache removes its tag field; a compressor adds `Content-Encoding`
//!   and `Vary`). The client's head and the head the cache stores are both written through
//!   them, so a stored response is exactly what the client got, edits included.
//! - **a body observer** ([`BodyObserver`]): sees the payload bytes (de-chunked) as they are
//!   written to the client. The cache store is the observer: it keeps a copy and publishes
//!   the entry only when the body completed.
//!
//! Stages that change the body bytes (transform, compress) sit between the relay's reads
//! and its writes, before the observer: they receive payload pieces, emit new pieces, and the
//! body is re-framed for the client (chunked, or `Content-Length` when the whole output was
//! known before the head went out). [`Rewrite`] is their interface and [`relay_rewritten`]
//! the relay that runs them; the cache observes what they emit, so a cached compressible
//! response is stored compressed (its own length, the head with `Content-Encoding`, the
//! merged `Vary: Accept-Encoding` and the weak `ETag`), keyed by the coding the policy
//! negotiated (`cache::key`), and never recompressed per hit.
//!
//! No locks: all of this runs inside one worker.

use std::io;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::body::{BodyEnd, RelayError};
use super::connection::{ClientConn, Next, BODY_BUF};
use super::context::WorkerContext;
use super::error::ProxyError;
use crate::config::{Snapshot, Upstream};
use crate::http::writer::{
    write_chunk_size, write_downstream_response, DownstreamInfo, CHUNK_DATA_END, LAST_CHUNK,
};
use crate::http::{ChunkedDecoder, HeadEdits, RequestHead, ResponseFraming, ResponseHead, Version};
use crate::io_buf::{write_all_reuse, ReadBuf};
use crate::upstream::UpstreamConn;

/// Sees the payload of a response body (de-chunked) as it is written to the client.
pub(crate) trait BodyObserver {
    /// Whether this observer wants the bytes at all (lets the relay skip work for
    /// [`Unobserved`] at compile time).
    const OBSERVES: bool = true;

    /// The next payload bytes, in order.
    fn payload(&mut self, bytes: &[u8]);
}

/// No observer: the plain relay.
pub(crate) struct Unobserved;

impl BodyObserver for Unobserved {
    const OBSERVES: bool = false;

    #[inline(always)]
    fn payload(&mut self, _bytes: &[u8]) {}
}

/// A stage that changes the body bytes (a transform, a compressor).
pub(crate) trait Rewrite {
    /// Takes the next payload piece; appends whatever output is ready to `out`.
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError>;
    /// The body's trailer section (`name: value\r\n` lines), when it had one, before
    /// [`Rewrite::finish`]; appends output to `out`. Trailers are dropped unless a stage
    /// turns them into body bytes (gRPC-Web's trailer frame).
    fn trailers(&mut self, section: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let _ = (section, out);
        Ok(())
    }
    /// The body ended: appends the rest of the output to `out`.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError>;
}

/// A rewriting stage could not process the body (malformed input, over its size limit).
#[derive(Debug, thiserror::Error)]
#[error("response stage failed: {0}")]
pub(crate) struct RewriteError(pub String);

/// The per-request state of the response stages of a connection.
#[derive(Debug, Default)]
pub(super) struct ResponseStages {
    /// Whether any response stage applies to the current request.
    active: bool,
    /// What the stages change in the client's head (and in the stored head).
    pub(super) edits: HeadEdits,
    /// Bytes at the front of the connection's `response_headers` holding the gateway's own
    /// `Vary` line (a `cors` route's `Vary: Origin`): the gateway's answers carry it as is; a
    /// relayed response leaves it out and merges the token into the upstream's `Vary`
    /// through `edits` instead, so the client never gets two `Vary` fields.
    pub(super) vary_line: usize,
    /// The route's `compress` policy and the coding the request negotiated (see
    /// `proxy::compress`).
    pub(super) compress: Option<super::compress::Negotiated>,
    /// A whole compressed body (see `proxy::compress`), kept for the connection's next one.
    pub(super) compressed: Vec<u8>,
    /// The route's `transform` policy, prepared while the request was in hand (see
    /// `proxy::transform`); kept, released, from request to request once a transform
    /// route has used it.
    pub(super) transform: Option<Box<super::transform::Prepared>>,
}

impl ResponseStages {
    /// Forgets the previous request's stages (keeps the buffers).
    pub(super) fn clear(&mut self) {
        if self.active {
            self.active = false;
            self.edits.clear();
            self.vary_line = 0;
            self.compress = None;
            if let Some(prepared) = &mut self.transform {
                prepared.release();
            }
        }
    }

    /// Marks the stages of the current request as active.
    pub(super) fn activate(&mut self) {
        self.active = true;
    }

    /// Whether the current response goes through response stages.
    #[inline]
    pub(super) fn is_active(&self) -> bool {
        self.active
    }
}

/// How a rewritten body is framed for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reframe {
    /// `Transfer-Encoding: chunked` (HTTP/1.1 clients).
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 clients).
    Close,
}

/// How [`relay_rewritten`] behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RewriteOptions {
    /// Longest wait for the source to send more.
    pub read_idle: Duration,
    /// Longest wait for the client to accept a write.
    pub write_timeout: Duration,
    /// Largest input buffer, and the most output held back before the head is sent.
    pub max_buffer: usize,
    /// Framing when the output outgrows `max_buffer` before the body ended.
    pub reframe: Reframe,
    /// Send output as soon as a stage emits it (a stream of messages, gRPC-Web), instead of
    /// holding it back up to `max_buffer` to answer with a length.
    pub stream: bool,
}

/// Relays a body through `rewrite`: reads the upstream body framed as `end` from `source`
/// (buffered bytes in `buf`), feeds its payload to `rewrite`, lets `observer` see the output
/// and writes it to `sink`. `head` holds the client's head *without* its framing field and
/// final empty line: when the whole output fits in `max_buffer` it is sent with
/// `Content-Length`, otherwise as `reframe` says, as soon as the output outgrows the buffer.
/// Returns the bytes written (head included). On failure, `head` holds the head again if it
/// was never sent (else it is empty).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn relay_rewritten<S, D, R, O>(
    source: &mut S,
    buf: &mut ReadBuf,
    sink: &mut D,
    end: BodyEnd,
    opts: RewriteOptions,
    rewrite: &mut R,
    observer: &mut O,
    head: &mut Vec<u8>,
) -> Result<u64, RelayError>
where
    S: AsyncReadRent,
    D: AsyncWriteRent,
    R: Rewrite + ?Sized,
    O: BodyObserver,
{
    let mut out = Sender {
        head: Some(std::mem::take(head)),
        pending: Vec::new(),
        frame: Vec::new(),
        written: 0,
        opts,
    };
    let result = rewrite_body(source, buf, sink, end, rewrite, observer, &mut out).await;
    // The caller's buffer comes back: on a failure before the head went out it still holds
    // the head (nothing reached the client, which can get an error answer instead); else
    // empty.
    match (out.head.take(), &result) {
        (Some(unsent), Err(_)) => *head = unsent,
        _ => {
            *head = std::mem::take(&mut out.frame);
            head.clear();
        }
    }
    result.map(|()| out.written)
}

/// The loop of [`relay_rewritten`]: payload in, rewritten output to `out`.
async fn rewrite_body<S, D, R, O>(
    source: &mut S,
    buf: &mut ReadBuf,
    sink: &mut D,
    end: BodyEnd,
    rewrite: &mut R,
    observer: &mut O,
    out: &mut Sender,
) -> Result<(), RelayError>
where
    S: AsyncReadRent,
    D: AsyncWriteRent,
    R: Rewrite + ?Sized,
    O: BodyObserver,
{
    let opts = out.opts;
    let mut remaining = match end {
        BodyEnd::Length(n) => n,
        _ => u64::MAX,
    };
    let mut decoder = ChunkedDecoder::new();
    let mut input = Vec::new();
    let mut trailers = Vec::new();
    buf.grow_to(opts.max_buffer);
    loop {
        input.clear();
        let payload = Payload {
            input: &mut input,
            trailers: &mut trailers,
        };
        let done = take_payload(buf, end, &mut remaining, &mut decoder, payload)?;
        if !input.is_empty() {
            rewrite
                .data(&input, &mut out.pending)
                .map_err(|e| RelayError::SourceFraming(stage_fault(e)))?;
            out.flush_if_full(sink, observer).await?;
        }
        if done {
            break;
        }
        let read = buf.fill(source, opts.max_buffer);
        match monoio::time::timeout(opts.read_idle, read).await {
            Err(_) => return Err(RelayError::SourceTimeout),
            Ok(Err(e)) => return Err(RelayError::SourceIo(e)),
            Ok(Ok(0)) if end == BodyEnd::Close => break,
            Ok(Ok(0)) => return Err(RelayError::SourceClosed),
            Ok(Ok(_)) => {}
        }
    }
    if !trailers.is_empty() {
        rewrite
            .trailers(&trailers, &mut out.pending)
            .map_err(|e| RelayError::SourceFraming(stage_fault(e)))?;
    }
    rewrite
        .finish(&mut out.pending)
        .map_err(|e| RelayError::SourceFraming(stage_fault(e)))?;
    out.finish(sink, observer).await
}

/// A rewriting stage's failure, reported as a fault of the upstream's body (502 while no
/// byte was sent).
fn stage_fault(e: RewriteError) -> crate::http::HttpError {
    log::debug!("{e}");
    crate::http::HttpError::InvalidResponse(crate::http::ResponseFault::Malformed)
}

/// Where [`take_payload`] puts what it takes.
struct Payload<'a> {
    /// Payload bytes.
    input: &'a mut Vec<u8>,
    /// The trailer section's bytes (chunked bodies).
    trailers: &'a mut Vec<u8>,
}

/// Moves the payload bytes buffered in `buf` into `input` (and a trailer section into
/// `trailers`); returns whether the body ended.
fn take_payload(
    buf: &mut ReadBuf,
    end: BodyEnd,
    remaining: &mut u64,
    decoder: &mut ChunkedDecoder,
    Payload { input, trailers }: Payload<'_>,
) -> Result<bool, RelayError> {
    match end {
        BodyEnd::Length(_) => {
            let n = (*remaining).min(buf.len() as u64) as usize;
            input.extend_from_slice(&buf.data()[..n]);
            buf.consume(n);
            *remaining -= n as u64;
            Ok(*remaining == 0)
        }
        BodyEnd::Close => {
            input.extend_from_slice(buf.data());
            buf.consume(buf.len());
            Ok(false)
        }
        BodyEnd::Chunked => {
            let data = buf.data();
            let progress = decoder
                .advance_with_trailers(
                    data,
                    &mut |range| {
                        if let Some(piece) = data.get(range) {
                            input.extend_from_slice(piece);
                        }
                    },
                    &mut |b| trailers.push(b),
                )
                .map_err(RelayError::SourceFraming)?;
            buf.consume(progress.consumed);
            Ok(progress.done)
        }
    }
}

/// The client side of [`relay_rewritten`]: holds the head back until the framing is known.
struct Sender {
    /// The head, until it is sent.
    head: Option<Vec<u8>>,
    /// Output not written yet.
    pending: Vec<u8>,
    /// The next write: head, chunk framing and output.
    frame: Vec<u8>,
    written: u64,
    opts: RewriteOptions,
}

impl Sender {
    /// Sends the head (streaming framing) and the output once the output outgrows the
    /// buffer; afterwards, sends output as it comes.
    async fn flush_if_full<D: AsyncWriteRent, O: BodyObserver>(
        &mut self,
        sink: &mut D,
        observer: &mut O,
    ) -> Result<(), RelayError> {
        if self.head.is_some() && !self.opts.stream && self.pending.len() <= self.opts.max_buffer {
            return Ok(());
        }
        if let Some(head) = self.head.take() {
            self.frame = head;
            if self.opts.reframe == Reframe::Chunked {
                self.frame
                    .extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
            self.frame.extend_from_slice(b"\r\n");
            self.send_frame(sink).await?;
        }
        self.send_pending(sink, observer).await
    }

    /// Sends whatever is left: with `Content-Length` if the head is still held back, else
    /// the last chunk.
    async fn finish<D: AsyncWriteRent, O: BodyObserver>(
        &mut self,
        sink: &mut D,
        observer: &mut O,
    ) -> Result<(), RelayError> {
        if let Some(head) = self.head.take() {
            use std::io::Write as _;
            observer.payload(&self.pending);
            self.frame = head;
            // io::Write on a Vec cannot fail.
            let _ = write!(self.frame, "Content-Length: {}\r\n\r\n", self.pending.len());
            self.frame.extend_from_slice(&self.pending);
            self.pending.clear();
            return self.send_frame(sink).await;
        }
        self.send_pending(sink, observer).await?;
        if self.opts.reframe == Reframe::Chunked {
            self.frame.clear();
            self.frame.extend_from_slice(LAST_CHUNK);
            self.send_frame(sink).await?;
        }
        Ok(())
    }

    async fn send_pending<D: AsyncWriteRent, O: BodyObserver>(
        &mut self,
        sink: &mut D,
        observer: &mut O,
    ) -> Result<(), RelayError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        observer.payload(&self.pending);
        self.frame.clear();
        if self.opts.reframe == Reframe::Chunked {
            write_chunk_size(&mut self.frame, self.pending.len() as u64);
            self.frame.extend_from_slice(&self.pending);
            self.frame.extend_from_slice(CHUNK_DATA_END);
        } else {
            self.frame.extend_from_slice(&self.pending);
        }
        self.pending.clear();
        self.send_frame(sink).await
    }

    async fn send_frame<D: AsyncWriteRent>(&mut self, sink: &mut D) -> Result<(), RelayError> {
        self.written += self.frame.len() as u64;
        let write = write_all_reuse(sink, &mut self.frame);
        match monoio::time::timeout(self.opts.write_timeout, write).await {
            Err(_) => Err(RelayError::Sink(io::Error::new(
                io::ErrorKind::TimedOut,
                "write timed out",
            ))),
            Ok(result) => result.map_err(RelayError::Sink),
        }
    }
}

/// An upstream response whose head was read: the connection, its group and the head.
pub(super) struct Exchange<'a> {
    pub(super) conn: UpstreamConn,
    pub(super) upstream: &'a Upstream,
    pub(super) response: ResponseHead,
}

/// How a rewritten response goes on once its head is written (see
/// [`ClientConn::start_rewritten`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct RewrittenStart {
    /// The upstream body's framing.
    pub(super) end: BodyEnd,
    /// The client's framing when the output is not known whole before the head goes out.
    pub(super) reframe: Reframe,
    /// Whether the client connection stays open after this response.
    pub(super) keep_alive: bool,
}

impl RewrittenStart {
    /// The connection's next step after the response.
    pub(super) fn next(&self) -> Next {
        if self.keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }
}

impl ClientConn {
    /// Writes a response whose body a stage rewrites: the head with the stages' `edits` and
    /// no framing field, then the body through `stage` ([`relay_rewritten`]); `stream` sends
    /// the output as it comes; `observer` (the cache's store, or none) sees the output.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn relay_rewriting<R: Rewrite, O: BodyObserver>(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        exchange: Exchange<'_>,
        head: &RequestHead,
        edits: &HeadEdits,
        stage: &mut R,
        stream: bool,
        observer: &mut O,
    ) -> Result<Next, ProxyError> {
        let Exchange {
            mut conn,
            upstream,
            response,
        } = exchange;
        let start = self.start_rewritten(ctx, snapshot, &mut conn, &response, head, edits);
        let opts = RewriteOptions {
            read_idle: upstream.timeouts.idle,
            write_timeout: snapshot.server.timeouts.body_idle,
            max_buffer: BODY_BUF,
            reframe: start.reframe,
            stream,
        };
        let relayed = relay_rewritten(
            &mut conn.stream,
            &mut conn.buf,
            &mut self.stream,
            start.end,
            opts,
            stage,
            observer,
            &mut self.out,
        )
        .await;
        // The head is held back until output is ready: a failure before it went out (an
        // upstream that stalls or closes early) leaves it in `out`, and the client gets the
        // error answer (502/504) instead of a closed connection.
        self.response_started = self.out.is_empty();
        self.exchange.bytes_out += relayed.map_err(rewrite_relay_error)?;
        self.check_in_after_relay(ctx, conn, upstream, &response);
        Ok(start.next())
    }

    /// Starts a rewritten response: the client's head without its framing in `out` (see
    /// [`ClientConn::write_unframed_head`]), the upstream's head consumed from `conn`.
    pub(super) fn start_rewritten(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        conn: &mut UpstreamConn,
        response: &ResponseHead,
        head: &RequestHead,
        edits: &HeadEdits,
    ) -> RewrittenStart {
        let end = match response.framing {
            ResponseFraming::Length(n) => BodyEnd::Length(n),
            ResponseFraming::Chunked => BodyEnd::Chunked,
            ResponseFraming::UntilClose => BodyEnd::Close,
            ResponseFraming::None => BodyEnd::Length(0),
        };
        let reframe = if head.version == Version::Http10 {
            Reframe::Close
        } else {
            Reframe::Chunked
        };
        let keep_alive = head.keep_alive
            && !self.linger
            && reframe == Reframe::Chunked
            && !ctx.drain().is_draining();
        let client = (head.version, keep_alive);
        self.write_unframed_head(snapshot, conn.buf.data(), response, edits, client);
        conn.buf.consume(response.head_len);
        self.exchange.status = response.status;
        RewrittenStart {
            end,
            reframe,
            keep_alive,
        }
    }

    /// The client's head of a rewritten response in `out`, without its framing field and
    /// final empty line (`relay_rewritten` adds them once it knows the framing).
    fn write_unframed_head(
        &mut self,
        snapshot: &Snapshot,
        buf: &[u8],
        response: &ResponseHead,
        edits: &HeadEdits,
        (client_version, keep_alive): (Version, bool),
    ) {
        let unframed = ResponseHead {
            framing: ResponseFraming::None,
            ..*response
        };
        let info = DownstreamInfo {
            client_version,
            keep_alive,
            request_id: &self.request_id,
            extra_headers: self
                .response_headers
                .get(self.stages.vary_line..)
                .unwrap_or_default(),
            edits: Some(edits),
            upgrade: None,
        };
        self.out.clear();
        write_downstream_response(&mut self.out, buf, &unframed, &self.headers, &info);
        if self.tls.is_some() {
            self.finish_secure_head(snapshot, 0);
        }
        if self.out.ends_with(b"\r\n\r\n") {
            self.out.truncate(self.out.len() - 2);
        }
    }
}

/// A rewriting relay's failure as the client's answer.
fn rewrite_relay_error(e: RelayError) -> ProxyError {
    match e {
        RelayError::SourceIo(e) => ProxyError::UpstreamIo(e),
        RelayError::SourceClosed => ProxyError::UpstreamClosed,
        RelayError::SourceTimeout => ProxyError::UpstreamTimeout,
        RelayError::SourceFraming(e) => ProxyError::UpstreamProtocol(e),
        RelayError::TooLarge => ProxyError::UpstreamClosed,
        RelayError::Sink(e) => ProxyError::ClientGone(e),
    }
}

impl super::connection::ClientConn {
    /// The response of a request with response stages: the stages' head edits apply to the
    /// client's head, and the body passes the stages in their fixed order.
    pub(super) async fn respond_through_stages(
        &mut self,
        ctx: &super::context::WorkerContext,
        snapshot: &crate::config::Snapshot,
        conn: crate::upstream::UpstreamConn,
        upstream: &crate::config::Upstream,
        head: &crate::http::RequestHead,
        response: crate::http::ResponseHead,
    ) -> Result<super::connection::Next, super::error::ProxyError> {
        if let Some(web) = self.grpc_web {
            let exchange = Exchange {
                conn,
                upstream,
                response,
            };
            return self
                .relay_grpc_web(ctx, snapshot, exchange, head, web)
                .await;
        }
        // The transform's edits come first (its header operations; a body it rewrites loses
        // its length, validators and coding), then the compressor's (`Vary`,
        // `Content-Encoding`, a weak `ETag`), so that a stored head is the head the client
        // gets.
        let transform = match &mut self.stages.transform {
            Some(prepared) => prepared.plan(
                conn.buf.data(),
                &self.headers,
                &response,
                &mut self.stages.edits,
            )?,
            None => None,
        };
        let plan = match &self.stages.compress {
            Some(negotiated) => negotiated.plan(
                conn.buf.data(),
                &self.headers,
                &response,
                &mut self.stages.edits,
                transform.is_some(),
            ),
            None => super::compress::Plan::Untouched,
        };
        let buf = conn.buf.data();
        let store = match self.cache_on_response(ctx, snapshot, buf, &response, head, plan) {
            super::cached::OnResponse::Relay(store) => store,
            super::cached::OnResponse::Refreshed => {
                let mut conn = conn;
                conn.buf.consume(response.head_len);
                if response.keep_alive && response.framing == crate::http::ResponseFraming::None {
                    ctx.pool().checkin(conn, &upstream.pool);
                }
                return self.answer_after_upstream(ctx, snapshot, head, true).await;
            }
            // The failed response is dropped unread with its connection.
            super::cached::OnResponse::StaleOnError => {
                return self.answer_after_upstream(ctx, snapshot, head, false).await;
            }
        };
        let edits = std::mem::take(&mut self.stages.edits);
        // A transformed body is not stored: an entry would hold what this request's
        // transform made of it (see docs/caching.md). The client gets it rewritten (and
        // compressed after, if the route compresses); the next request fetches again.
        if let Some(plan_body) = transform {
            let exchange = Exchange {
                conn,
                upstream,
                response,
            };
            let result = self
                .relay_transformed(
                    ctx,
                    snapshot,
                    exchange,
                    head,
                    &edits,
                    plan_body,
                    plan.coding(),
                )
                .await;
            self.stages.edits = edits;
            return result;
        }
        // A compressed answer is stored as its coding's variant: the compressed bytes with
        // their own length, under the head the client got.
        let coding = plan.coding();
        let exchange = Exchange {
            conn,
            upstream,
            response,
        };
        let result = match store {
            Some(mut store) => {
                let result = self
                    .relay_observed(ctx, snapshot, exchange, head, &edits, coding, &mut *store)
                    .await;
                if result.is_ok() {
                    self.cache_publish(ctx, snapshot, store);
                }
                result
            }
            None => {
                self.relay_observed(
                    ctx,
                    snapshot,
                    exchange,
                    head,
                    &edits,
                    coding,
                    &mut Unobserved,
                )
                .await
            }
        };
        self.stages.edits = edits;
        result
    }
}

impl super::connection::ClientConn {
    /// Relays the response compressed with `coding` (or as it is), with `observer` (the
    /// cache's store, or none) seeing the body the client gets.
    #[allow(clippy::too_many_arguments)]
    async fn relay_observed<O: BodyObserver>(
        &mut self,
        ctx: &super::context::WorkerContext,
        snapshot: &crate::config::Snapshot,
        exchange: Exchange<'_>,
        head: &crate::http::RequestHead,
        edits: &HeadEdits,
        coding: Option<crate::policy::compress::Coding>,
        observer: &mut O,
    ) -> Result<super::connection::Next, super::error::ProxyError> {
        let Exchange {
            conn,
            upstream,
            response,
        } = exchange;
        match coding {
            Some(coding) => {
                self.relay_compressed(
                    ctx, snapshot, conn, upstream, head, response, edits, coding, observer,
                )
                .await
            }
            None => {
                self.relay_response(
                    ctx,
                    snapshot,
                    conn,
                    upstream,
                    head,
                    response,
                    Some(edits),
                    observer,
                )
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rewriting stage for the tests: upper-cases ASCII and doubles every byte.
    struct Doubler;

    impl Rewrite for Doubler {
        fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
            for b in input {
                out.push(b.to_ascii_uppercase());
                out.push(b.to_ascii_uppercase());
            }
            Ok(())
        }
        fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
            out.extend_from_slice(b"!");
            Ok(())
        }
    }

    #[derive(Default)]
    struct Collect(Vec<u8>);

    impl BodyObserver for Collect {
        fn payload(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }

    /// Runs `relay_rewritten` over a real loopback connection pair: `upstream` bytes are
    /// what the source sends; returns what the client received and what the observer saw.
    fn run(upstream: &'static [u8], end: BodyEnd, max_buffer: usize) -> (Vec<u8>, Vec<u8>) {
        use monoio::net::{TcpListener, TcpStream};
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let source_l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let sink_l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let (sa, ka) = (
                source_l.local_addr().expect("addr"),
                sink_l.local_addr().expect("addr"),
            );
            monoio::spawn(async move {
                use monoio::io::AsyncWriteRentExt;
                let mut s = TcpStream::connect(sa).await.expect("connect");
                let _ = s.write_all(upstream.to_vec()).await;
            });
            let (mut source, _) = source_l.accept().await.expect("accept");
            let reader = monoio::spawn(async move {
                let mut c = TcpStream::connect(ka).await.expect("connect");
                let mut got = Vec::new();
                loop {
                    let (r, b) = c.read(vec![0u8; 4096]).await;
                    match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&b[..n]),
                    }
                }
                got
            });
            let (mut sink, _) = sink_l.accept().await.expect("accept");
            let mut buf = ReadBuf::with_capacity(16);
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            let opts = RewriteOptions {
                read_idle: Duration::from_secs(5),
                write_timeout: Duration::from_secs(5),
                max_buffer,
                reframe: Reframe::Chunked,
                stream: false,
            };
            let mut seen = Collect::default();
            relay_rewritten(
                &mut source,
                &mut buf,
                &mut sink,
                end,
                opts,
                &mut Doubler,
                &mut seen,
                &mut head,
            )
            .await
            .expect("relay");
            drop(sink);
            (reader.await, seen.0)
        })
    }

    #[test]
    fn small_output_is_sent_with_its_length() {
        let (client, seen) = run(b"abc", BodyEnd::Length(3), 1024);
        assert_eq!(
            client,
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nAABBCC!".to_vec()
        );
        assert_eq!(seen, b"AABBCC!");
    }

    #[test]
    fn output_beyond_the_buffer_is_chunked_and_observed_whole() {
        let (client, seen) = run(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", BodyEnd::Chunked, 4);
        let text = String::from_utf8(client).expect("text");
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "{text}"
        );
        assert!(text.ends_with("0\r\n\r\n"), "{text}");
        assert_eq!(seen, b"AABBCCDDEE!");
        let body = &text["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".len()..];
        let mut decoded = Vec::new();
        let mut decoder = ChunkedDecoder::new();
        let progress = decoder
            .advance(body.as_bytes(), &mut |r| {
                decoded.extend_from_slice(&body.as_bytes()[r])
            })
            .expect("valid chunked");
        assert!(progress.done);
        assert_eq!(decoded, b"AABBCCDDEE!");
    }
}
