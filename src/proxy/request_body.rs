//! Buffering a request body whole before it goes upstream, for the stages that need all of
//! it: a JSON body transform, request decompression, body validation.
//!
//! Only a route whose stages ask for the body pays for this; every other request streams its
//! body through `body.rs` as before. The body is read with the same timeouts and minimum rate
//! as a streamed one, and bounded: at most `limit` payload bytes are held, whether the client
//! framed it with `Content-Length` or chunked.
//!
//! While it is read, the request head and the body's raw bytes stay in the connection's input
//! buffer (the head's spans stay valid), and the payload is collected, de-chunked, into
//! [`RequestBody`]. Two outcomes:
//! - [`Buffered::Whole`]: the payload is in [`RequestBody::bytes`], where stages may replace
//!   it; the forwarded request then carries it with an exact `Content-Length` (never chunked,
//!   never the client's `Expect`).
//! - [`Buffered::TooLarge`]: the body passes `limit`. Nothing was lost: its raw bytes are
//!   still in the input buffer, so the caller either refuses (413) or forwards it unchanged,
//!   streaming as if it had never been looked at.
//!
//! An `Expect: 100-continue` request gets its `100 Continue` from the gateway before the body
//! is read (a `Content-Length` body over the limit is decided without reading it).

// The mechanism lands before its callers (the transform and compress stages, and the
// `validate` policy of issue 16) so that they can all build on one copy of it.
#![allow(dead_code)]

use super::body::MinRate;
use super::connection::{ClientConn, BODY_BUF};
use super::error::ProxyError;
use crate::config::Snapshot;
use crate::http::writer::write_continue;
use crate::http::{BodyFraming, ChunkedDecoder, RequestHead, Version};
use crate::io_buf::write_all_reuse;

/// Chunked framing may take this much room besides the payload (chunk-size lines,
/// extensions, trailers) before a body counts as too large: a body of one-byte chunks must
/// not hold several times `limit` in memory.
const FRAMING_ALLOWANCE: usize = 64 * 1024;

/// A request body read whole, owned by the connection and reused between requests.
#[derive(Debug, Default)]
pub(crate) struct RequestBody {
    /// The payload (de-chunked), or what a stage made of it.
    bytes: Vec<u8>,
    /// Bytes of the body as it arrived (framing included), after the head in the input.
    raw_len: usize,
    /// Whether the current request's body is held here.
    held: bool,
    /// Whether a stage decoded the client's `Content-Encoding` (then it is not forwarded).
    decoded: bool,
}

/// What [`ClientConn::buffer_request_body`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Buffered {
    /// The whole payload is in [`RequestBody::bytes`].
    Whole,
    /// The body passes the limit; its raw bytes are still unread or in the input buffer.
    TooLarge,
}

/// Capacity kept between requests; a larger body's buffer is released after its request.
const KEPT_CAPACITY: usize = 64 * 1024;

impl RequestBody {
    /// Forgets the previous request's body (called once per request).
    pub(crate) fn reset(&mut self) {
        self.bytes.clear();
        if self.bytes.capacity() > KEPT_CAPACITY {
            self.bytes = Vec::new();
        }
        self.raw_len = 0;
        self.held = false;
        self.decoded = false;
    }

    /// Whether the current request's body was read whole.
    pub(crate) fn is_held(&self) -> bool {
        self.held
    }

    /// The payload.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Replaces the payload (a stage's output); `decoded` says the client's
    /// `Content-Encoding` was undone, so the field is not forwarded.
    pub(crate) fn replace(&mut self, bytes: &mut Vec<u8>, decoded: bool) {
        std::mem::swap(&mut self.bytes, bytes);
        self.decoded |= decoded;
    }

    /// Whether the client's `Content-Encoding` was undone.
    pub(crate) fn decoded(&self) -> bool {
        self.decoded
    }

    /// Bytes the body took in the input buffer after the head (framing included).
    pub(crate) fn raw_len(&self) -> usize {
        self.raw_len
    }
}

impl ClientConn {
    /// Reads the body of `head` whole (see the module docs), holding at most `limit` payload
    /// bytes. The head must still be at the start of the input buffer. A request without a
    /// body is [`Buffered::Whole`] with an empty payload. Calling it again for the same
    /// request returns the same answer without reading.
    pub(crate) async fn buffer_request_body(
        &mut self,
        snapshot: &Snapshot,
        head: &RequestHead,
        limit: u64,
    ) -> Result<Buffered, ProxyError> {
        if self.body.held {
            return Ok(if self.body.bytes.len() as u64 <= limit {
                Buffered::Whole
            } else {
                Buffered::TooLarge
            });
        }
        let buffered = match head.framing {
            BodyFraming::None => Buffered::Whole,
            BodyFraming::Length(n) if n > limit => Buffered::TooLarge,
            BodyFraming::Length(n) => {
                // Fits in usize: n <= limit, and limits are sizes held in memory.
                let n = usize::try_from(n).map_err(|_| ProxyError::BodyTooLarge)?;
                self.continue_if_expected(head).await?;
                self.read_input_until(
                    snapshot,
                    head.head_len,
                    head.head_len + n,
                    head.head_len + n,
                )
                .await?;
                let body = &self.input.data()[head.head_len..head.head_len + n];
                self.body.bytes.clear();
                self.body.bytes.extend_from_slice(body);
                self.body.raw_len = n;
                Buffered::Whole
            }
            BodyFraming::Chunked => {
                self.continue_if_expected(head).await?;
                self.read_chunked(snapshot, head, limit).await?
            }
        };
        if buffered == Buffered::Whole {
            self.body.held = true;
        }
        Ok(buffered)
    }

    /// Sends `100 Continue` when the client waits for it and has not sent its body yet.
    async fn continue_if_expected(&mut self, head: &RequestHead) -> Result<(), ProxyError> {
        if !head.expect_continue || head.version != Version::Http11 {
            return Ok(());
        }
        if self.input.len() > head.head_len {
            return Ok(());
        }
        self.scratch.clear();
        write_continue(&mut self.scratch);
        write_all_reuse(&mut self.stream, &mut self.scratch)
            .await
            .map_err(ProxyError::ClientGone)
    }

    /// De-chunks the body into `self.body` as it arrives, until the last chunk or the limit.
    async fn read_chunked(
        &mut self,
        snapshot: &Snapshot,
        head: &RequestHead,
        limit: u64,
    ) -> Result<Buffered, ProxyError> {
        let start = head.head_len;
        let limit_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
        let max_raw = limit_bytes.saturating_add(FRAMING_ALLOWANCE);
        let mut decoder = ChunkedDecoder::new();
        let mut parsed = start;
        self.body.bytes.clear();
        loop {
            let data = self.input.data();
            let fresh = data.get(parsed..).unwrap_or_default();
            let bytes = &mut self.body.bytes;
            let progress = decoder
                .advance(fresh, &mut |range| {
                    if let Some(piece) = fresh.get(range) {
                        bytes.extend_from_slice(piece);
                    }
                })
                .map_err(ProxyError::BadRequest)?;
            parsed += progress.consumed;
            if decoder.payload_bytes() > limit || parsed - start > max_raw {
                self.body.bytes.clear();
                return Ok(Buffered::TooLarge);
            }
            if progress.done {
                self.body.raw_len = parsed - start;
                return Ok(Buffered::Whole);
            }
            let cap = start.saturating_add(max_raw).saturating_add(1);
            self.read_input_until(snapshot, start, parsed + 1, cap)
                .await?;
        }
    }

    /// Reads from the client until the input buffer holds at least `want` bytes, growing it
    /// up to `max_capacity`, under the body's idle timeout and minimum rate (the body starts
    /// at `body_start` in the buffer).
    async fn read_input_until(
        &mut self,
        snapshot: &Snapshot,
        body_start: usize,
        want: usize,
        max_capacity: usize,
    ) -> Result<(), ProxyError> {
        let idle = snapshot.server.timeouts.body_idle;
        let min_rate = self.body_rules.min_rate;
        let ceiling = max_capacity.max(want);
        if self.input.capacity() < want {
            self.input.grow_to(want.min(ceiling));
        }
        while self.input.len() < want {
            let received = self.input.len().saturating_sub(body_start) as u64;
            let deadline = MinRate::read_deadline(min_rate.as_ref(), received, idle);
            let read = self.input.fill(&mut self.stream, ceiling.max(BODY_BUF));
            match monoio::time::timeout_at(deadline.into(), read).await {
                Err(_) => return Err(ProxyError::ClientTimeout),
                Ok(Err(e)) => return Err(ProxyError::ClientGone(e)),
                Ok(Ok(0)) => return Err(ProxyError::ClientGone(closed())),
                Ok(Ok(_)) => {}
            }
        }
        Ok(())
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "client closed mid-body")
}
