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
//! response is stored compressed, keyed with the `Vary: Accept-Encoding` the compressor adds,
//! and never recompressed per hit.
//!
//! No locks: all of this runs inside one worker.

use std::io;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::body::{BodyEnd, RelayError};
use crate::http::writer::{write_chunk_size, CHUNK_DATA_END, LAST_CHUNK};
use crate::http::{ChunkedDecoder, HeadEdits};
use crate::io_buf::{write_all_reuse, ReadBuf};

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
    /// The route's `transform` policy, prepared while the request was in hand (see
    /// `proxy::transform`).
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
            self.transform = None;
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
    buf.grow_to(opts.max_buffer);
    loop {
        input.clear();
        let done = take_payload(buf, end, &mut remaining, &mut decoder, &mut input)?;
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

/// Moves the payload bytes buffered in `buf` into `input`; returns whether the body ended.
fn take_payload(
    buf: &mut ReadBuf,
    end: BodyEnd,
    remaining: &mut u64,
    decoder: &mut ChunkedDecoder,
    input: &mut Vec<u8>,
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
                .advance(data, &mut |range| {
                    if let Some(piece) = data.get(range) {
                        input.extend_from_slice(piece);
                    }
                })
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
        if self.head.is_some() && self.pending.len() <= self.opts.max_buffer {
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
        // The transform's edits come first (its header operations; a body it rewrites loses
        // its length, validators and coding), then the compressor's (`Vary`,
        // `Content-Encoding`, a weak `ETag`), so that a stored head carries the same `Vary`
        // the client got.
        let transform = match &self.stages.transform {
            Some(prepared) => prepared.plan(
                conn.buf.data(),
                &self.headers,
                &response,
                &mut self.stages.edits,
            )?,
            None => None,
        };
        let coding = match &self.stages.compress {
            Some(negotiated) => negotiated.plan(
                conn.buf.data(),
                &self.headers,
                &response,
                &mut self.stages.edits,
                transform.is_some(),
            ),
            None => None,
        };
        let store = match self.cache_on_response(ctx, snapshot, conn.buf.data(), &response, head) {
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
        let rewritten = coding.is_some() || transform.is_some();
        let result = match (rewritten, store) {
            // A compressed or transformed answer is not stored: an entry would need the
            // rewritten body with its own length and validators (storing encoded variants is
            // open work, see docs/caching.md). The client gets it rewritten; the next request
            // fetches again.
            (true, _) => {
                let stages = (transform, coding);
                self.relay_compressed(
                    ctx, snapshot, conn, upstream, head, response, &edits, stages,
                )
                .await
            }
            (false, Some(mut store)) => {
                let result = self
                    .relay_response(
                        ctx,
                        snapshot,
                        conn,
                        upstream,
                        head,
                        response,
                        Some(&edits),
                        &mut *store,
                    )
                    .await;
                if result.is_ok() {
                    self.cache_publish(ctx, snapshot, store, &response);
                }
                result
            }
            (false, None) => {
                self.relay_response(
                    ctx,
                    snapshot,
                    conn,
                    upstream,
                    head,
                    response,
                    Some(&edits),
                    &mut Unobserved,
                )
                .await
            }
        };
        self.stages.edits = edits;
        result
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
