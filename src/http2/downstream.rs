//! One client stream as the pipeline's byte stream: the request body is read from h2 `DATA`
//! frames (chunked when its length is unknown, trailers included), and the response the
//! pipeline writes (an HTTP/1.1 message) is sent as `HEADERS`, `DATA` and trailers.
//!
//! This is the h2 implementation of the pipeline's writer interface: the pipeline writes a
//! response head and a framed body to its client stream, the HTTP/1.1 implementation is the
//! socket, this one re-frames. Response bodies honour the client's flow control: nothing is
//! queued beyond the capacity h2 assigns (plus `max_send_buffer`), so a client that stops
//! reading holds one bounded buffer, and the pipeline's write timeout (`body_idle`) ends the
//! stream.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::ops::Range;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, IoVecWrapper, IoVecWrapperMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;

use super::head::{self, BodyFraming};
use super::pump::SharedPump;
use crate::http::{parse_response, ChunkedDecoder, HeaderSpan, Method, ResponseFraming};
use crate::io_buf::io_buf_bytes;

/// Largest response head the pipeline writes (its own limit on upstream heads).
const MAX_HEAD: usize = 64 * 1024;
/// Initial capacity of the response head as the pipeline writes it.
const HEAD: usize = 512;
/// Initial capacity of the response head's field spans (grown when a head has more).
const SPANS: usize = 16;

/// The stream's response handles, shared with the task that watches for the client's reset.
#[derive(Debug)]
pub struct Slot {
    respond: Option<SendResponse<Bytes>>,
    send: Option<SendStream<Bytes>>,
}

impl Slot {
    /// A slot for a stream whose response has not started.
    pub fn new(respond: SendResponse<Bytes>) -> Rc<RefCell<Slot>> {
        Rc::new(RefCell::new(Slot {
            respond: Some(respond),
            send: None,
        }))
    }

    /// Ready with the reason when the client resets the stream.
    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<h2::Reason> {
        let polled = match (&mut self.send, &mut self.respond) {
            (Some(send), _) => send.poll_reset(cx),
            (None, Some(respond)) => respond.poll_reset(cx),
            (None, None) => return Poll::Pending,
        };
        match polled {
            Poll::Ready(Ok(reason)) => Poll::Ready(reason),
            Poll::Ready(Err(_)) => Poll::Ready(h2::Reason::CANCEL),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Ends the call with a gRPC status: trailers-only if no response started, else the
    /// status in trailers after what was sent.
    pub fn grpc_status(&mut self, code: super::grpc::Code, message: &str) {
        let mut fields = http::HeaderMap::new();
        fields.insert("grpc-status", http::HeaderValue::from(code as u8 as u16));
        if let Ok(value) = http::HeaderValue::from_str(message) {
            fields.insert("grpc-message", value);
        }
        if let Some(send) = &mut self.send {
            if send.send_trailers(fields).is_err() {
                send.send_reset(h2::Reason::CANCEL);
            }
        } else if let Some(mut respond) = self.respond.take() {
            let mut response = http::Response::new(());
            *response.headers_mut() = fields;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            let _ = respond.send_response(response, true);
        }
    }

    /// Resets the stream from the gateway's side (a response that could not be completed).
    pub fn reset(&mut self, reason: h2::Reason) {
        if let Some(send) = &mut self.send {
            send.send_reset(reason);
        } else if let Some(respond) = &mut self.respond {
            respond.send_reset(reason);
        }
    }
}

/// Takes the request body bytes h2 has already received (at most `cap`) into `arrived`,
/// without waiting for more. Returns whether they are the whole body (the stream ended, with
/// no trailers to follow).
pub async fn take_arrived(body: &mut RecvStream, cap: usize, arrived: &mut Vec<u8>) -> bool {
    poll_fn(|cx| loop {
        if arrived.len() >= cap {
            return Poll::Ready(false);
        }
        match body.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                let _ = body.flow_control().release_capacity(data.len());
                arrived.extend_from_slice(&data);
            }
            // An error is met again by the pipeline's next read.
            Poll::Ready(Some(Err(_))) | Poll::Pending => return Poll::Ready(false),
            // Ended: whole unless trailers wait behind the data.
            Poll::Ready(None) => return Poll::Ready(body.is_end_stream()),
        }
    })
    .await
}

/// A client stream's buffers, kept for the next stream (`crate::spares`): the request body
/// bytes that arrived with the head, the response head as the pipeline writes it, its field
/// spans, and the data pieces of a chunked body write.
#[derive(Debug)]
pub struct StreamBuffers {
    /// The request body bytes taken with the head ([`take_arrived`]).
    pub arrived: Vec<u8>,
    head: Vec<u8>,
    spans: Vec<HeaderSpan>,
    pieces: Vec<Range<usize>>,
}

/// Largest buffer a spare keeps (a stream that grew one more gives it up).
const MAX_SPARE: usize = 16 * 1024;

impl crate::spares::Spare for StreamBuffers {
    fn fresh() -> Self {
        Self {
            arrived: Vec::new(),
            head: Vec::with_capacity(HEAD),
            spans: Vec::with_capacity(SPANS),
            pieces: Vec::new(),
        }
    }

    fn reusable(mut self) -> Option<Self> {
        if self.arrived.capacity() > MAX_SPARE || self.head.capacity() > MAX_SPARE {
            return None;
        }
        self.arrived.clear();
        self.head.clear();
        self.spans.clear();
        self.pieces.clear();
        Some(self)
    }
}

/// Waits until the client resets the stream.
pub async fn reset_by_client(slot: &Rc<RefCell<Slot>>) -> h2::Reason {
    poll_fn(|cx| slot.borrow_mut().poll_reset(cx)).await
}

/// Where the response stands.
#[derive(Debug)]
enum Out {
    /// Collecting the response head.
    Head,
    /// A `content-length` body: bytes still to send.
    Length(u64),
    /// A chunked body being decoded; the trailer section's bytes so far.
    Chunked(ChunkedDecoder, Vec<u8>),
    /// A body that ends when the pipeline finishes (the upstream closed to end it).
    UntilClose,
    /// The stream is ended.
    Done,
}

/// A client's request body as the pipeline reads it: h2 `DATA` frames, chunked when its
/// length is unknown (trailers included). It can be taken out of its stream
/// ([`H2Downstream::take_request_body`]) to be relayed while the response is written.
#[derive(Debug, Default)]
pub struct RequestBody {
    body: Option<RecvStream>,
    chunked: bool,
    /// Request body bytes framed for the pipeline, not yet read.
    staged: Vec<u8>,
    staged_pos: usize,
}

/// A client's h2 stream, read and written by the pipeline like a connection.
#[derive(Debug)]
pub struct H2Downstream {
    request: RequestBody,
    slot: Rc<RefCell<Slot>>,
    /// The request body's relay in a full-duplex exchange, polled while the response waits
    /// for the client's flow-control capacity.
    pump: Option<SharedPump>,
    out: Out,
    method: Method,
    head: Vec<u8>,
    spans: Vec<HeaderSpan>,
    /// The data pieces of a chunked body write, kept for the next write.
    pieces: Vec<Range<usize>>,
}

impl H2Downstream {
    /// The stream for a request whose body is `body`, framed as `framing` in the head given
    /// to the pipeline, on `buffers`; their `arrived` is what [`take_arrived`] took of the
    /// body, `whole` whether that was all of it.
    pub fn new(
        body: RecvStream,
        framing: BodyFraming,
        buffers: StreamBuffers,
        whole: bool,
        method: Method,
        slot: Rc<RefCell<Slot>>,
    ) -> Self {
        let chunked = framing == BodyFraming::Chunked;
        let StreamBuffers {
            arrived,
            head,
            spans,
            pieces,
        } = buffers;
        let staged = if chunked {
            let mut framed = Vec::with_capacity(arrived.len() + 16);
            head::write_chunk(&arrived, &mut framed);
            framed
        } else {
            arrived
        };
        Self {
            request: RequestBody {
                body: (framing != BodyFraming::None && !whole).then_some(body),
                chunked,
                staged,
                staged_pos: 0,
            },
            slot,
            pump: None,
            out: Out::Head,
            method,
            head,
            spans,
            pieces,
        }
    }

    /// Takes the stream's buffers out for the next stream (after the pipeline is done).
    pub fn take_buffers(&mut self) -> StreamBuffers {
        StreamBuffers {
            arrived: std::mem::take(&mut self.request.staged),
            head: std::mem::take(&mut self.head),
            spans: std::mem::take(&mut self.spans),
            pieces: std::mem::take(&mut self.pieces),
        }
    }

    /// Ends the stream after the pipeline is done with it: a body that ran until close gets
    /// its `END_STREAM`; a response that was never started or not finished is reset.
    pub fn finish(&mut self) {
        match self.out {
            Out::Done => {}
            Out::UntilClose => {
                let mut slot = self.slot.borrow_mut();
                if let Some(send) = &mut slot.send {
                    let _ = send.send_data(Bytes::new(), true);
                }
                self.out = Out::Done;
            }
            _ => {
                self.slot.borrow_mut().reset(h2::Reason::INTERNAL_ERROR);
                self.out = Out::Done;
            }
        }
    }

    /// Whether the response was sent whole.
    pub fn is_complete(&self) -> bool {
        matches!(self.out, Out::Done)
    }

    /// Whether request body bytes may still come (staged or from the client).
    pub fn body_pending(&self) -> bool {
        self.request.body.is_some() || self.request.staged_pos < self.request.staged.len()
    }

    /// Drives `pump` (the request body's relay) whenever the response waits for capacity;
    /// its error fails that write.
    pub fn drive(&mut self, pump: SharedPump) {
        self.pump = Some(pump);
    }

    /// Takes the rest of the request body out of the stream, which then reads as ended.
    pub fn take_request_body(&mut self) -> RequestBody {
        std::mem::take(&mut self.request)
    }

    /// Takes bytes of the response the pipeline writes.
    async fn take(&mut self, data: &[u8]) -> io::Result<()> {
        if let Out::Head = self.out {
            self.head.extend_from_slice(data);
            return self.take_head().await;
        }
        self.take_body(data).await
    }

    /// Sends the response head once it is complete; what follows it is body.
    async fn take_head(&mut self) -> io::Result<()> {
        loop {
            let parsed = parse_response(&self.head, self.method, MAX_HEAD, 256, &mut self.spans)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let Some(response) = parsed else {
                return Ok(());
            };
            if (100..200).contains(&response.status) {
                self.send_interim(&response);
                self.head.drain(..response.head_len);
                continue;
            }
            let h2_response = head::response_from_head(&self.head, &response, &self.spans);
            let ended = response.framing == ResponseFraming::None;
            let send = {
                let mut slot = self.slot.borrow_mut();
                let Some(mut respond) = slot.respond.take() else {
                    return Err(io::Error::from(io::ErrorKind::BrokenPipe));
                };
                respond
                    .send_response(h2_response, ended)
                    .map_err(h2_io_error)?
            };
            self.out = match response.framing {
                ResponseFraming::None => Out::Done,
                ResponseFraming::Length(n) => Out::Length(n),
                ResponseFraming::Chunked => Out::Chunked(ChunkedDecoder::new(), Vec::new()),
                ResponseFraming::UntilClose => Out::UntilClose,
            };
            self.slot.borrow_mut().send = Some(send);
            // What followed the head is body, sent from the head's buffer (no copy of it).
            let mut head = std::mem::take(&mut self.head);
            let sent = self.take_body(&head[response.head_len..]).await;
            head.clear();
            self.head = head;
            return sent;
        }
    }

    /// Relays an interim response (103 Early Hints, 102) as an informational `HEADERS`
    /// frame. Never a 101: HTTP/2 has no protocol switch (RFC 9113 §8.6). One the h2
    /// library refuses is dropped: interim responses are advisory.
    fn send_interim(&mut self, response: &crate::http::ResponseHead) {
        if response.status == 101 {
            return;
        }
        let interim = head::response_from_head(&self.head, response, &self.spans);
        let mut slot = self.slot.borrow_mut();
        if let Some(respond) = slot.respond.as_mut() {
            if let Err(e) = respond.send_informational(interim) {
                log::debug!("interim {} not relayed: {e}", response.status);
            }
        }
    }

    async fn take_body(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.out {
            Out::Head | Out::Done => Ok(()),
            Out::Length(remaining) => {
                let take = (*remaining).min(data.len() as u64) as usize;
                let last = take as u64 == *remaining;
                *remaining -= take as u64;
                if last {
                    self.out = Out::Done;
                }
                send_all(&self.slot, self.pump.as_ref(), &data[..take], last).await
            }
            Out::UntilClose => send_all(&self.slot, self.pump.as_ref(), data, false).await,
            Out::Chunked(decoder, trailers) => {
                let mut pieces = std::mem::take(&mut self.pieces);
                pieces.clear();
                let progress = decoder
                    .advance_with_trailers(data, &mut |r| pieces.push(r), &mut |b| trailers.push(b))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let trailers = progress.done.then(|| head::parse_trailers(trailers));
                if progress.done {
                    self.out = Out::Done;
                }
                // The stream ends with the trailers, or with the last piece of data.
                let end_with_data = trailers.as_ref().is_some_and(http::HeaderMap::is_empty);
                let count = pieces.len();
                for (i, range) in pieces.iter().enumerate() {
                    send_all(
                        &self.slot,
                        self.pump.as_ref(),
                        &data[range.clone()],
                        end_with_data && i + 1 == count,
                    )
                    .await?;
                }
                self.pieces = pieces;
                match trailers {
                    Some(map) if !map.is_empty() => {
                        let mut slot = self.slot.borrow_mut();
                        let send = slot.send.as_mut().ok_or_else(closed)?;
                        send.send_trailers(map).map_err(h2_io_error)
                    }
                    Some(_) if count == 0 => {
                        send_all(&self.slot, self.pump.as_ref(), &[], true).await
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

impl RequestBody {
    /// Frames the next piece of the request body into `staged`; `false` at its end.
    async fn stage_body(&mut self) -> io::Result<bool> {
        let Some(body) = &mut self.body else {
            return Ok(false);
        };
        self.staged.clear();
        self.staged_pos = 0;
        loop {
            match body.data().await {
                Some(Ok(data)) => {
                    let _ = body.flow_control().release_capacity(data.len());
                    if data.is_empty() {
                        continue;
                    }
                    if self.chunked {
                        head::write_chunk(&data, &mut self.staged);
                    } else {
                        self.staged.extend_from_slice(&data);
                    }
                    return Ok(true);
                }
                Some(Err(e)) => return Err(h2_io_error(e)),
                None => {
                    if self.chunked {
                        let trailers = body.trailers().await.map_err(h2_io_error)?;
                        head::write_last_chunk(trailers.as_ref(), &mut self.staged);
                    }
                    self.body = None;
                    return Ok(!self.staged.is_empty());
                }
            }
        }
    }

    async fn read_body<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        loop {
            if self.staged_pos < self.staged.len() {
                let mut pending = &self.staged[self.staged_pos..];
                let (result, buf) = pending.read(buf).await;
                if let Ok(n) = result {
                    self.staged_pos += n;
                }
                return (result, buf);
            }
            match self.stage_body().await {
                Ok(true) => {}
                Ok(false) => return (Ok(0), buf),
                Err(e) => return (Err(e), buf),
            }
        }
    }
}

impl AsyncReadRent for RequestBody {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read_body(buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let wrapped = match IoVecWrapperMut::new(buf) {
            Ok(wrapped) => wrapped,
            Err(buf) => return (Ok(0), buf),
        };
        let (result, wrapped) = self.read_body(wrapped).await;
        (result, wrapped.into_inner())
    }
}

/// Sends `data` on the stream as flow control lets it out; `end` ends the stream with it.
/// `pump`, if any, is polled while capacity is awaited.
async fn send_all(
    slot: &Rc<RefCell<Slot>>,
    pump: Option<&SharedPump>,
    data: &[u8],
    end: bool,
) -> io::Result<()> {
    let mut sent = 0;
    while sent < data.len() {
        let want = data.len() - sent;
        let capacity = {
            let mut s = slot.borrow_mut();
            let send = s.send.as_mut().ok_or_else(closed)?;
            send.reserve_capacity(want);
            send.capacity()
        };
        let capacity = if capacity > 0 {
            capacity
        } else {
            poll_fn(|cx| {
                if let Some(Poll::Ready(e)) = pump.map(|p| p.poll_failure(cx)) {
                    return Poll::Ready(Err(e));
                }
                let mut s = slot.borrow_mut();
                let Some(send) = s.send.as_mut() else {
                    return Poll::Ready(Err(closed()));
                };
                match send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(0))) | Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(n))) => Poll::Ready(Ok(n)),
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Err(h2_io_error(e))),
                    Poll::Ready(None) => Poll::Ready(Err(closed())),
                }
            })
            .await?
        };
        let n = capacity.min(want);
        let last = end && sent + n == data.len();
        let mut s = slot.borrow_mut();
        let send = s.send.as_mut().ok_or_else(closed)?;
        send.send_data(head::owned(&data[sent..sent + n]), last)
            .map_err(h2_io_error)?;
        sent += n;
    }
    if data.is_empty() && end {
        let mut s = slot.borrow_mut();
        let send = s.send.as_mut().ok_or_else(closed)?;
        send.send_data(Bytes::new(), true).map_err(h2_io_error)?;
    }
    Ok(())
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "HTTP/2 stream closed")
}

/// An h2 error as the I/O error the pipeline's relays understand.
pub fn h2_io_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::from(io::ErrorKind::ConnectionReset));
    }
    io::Error::new(io::ErrorKind::ConnectionReset, e)
}

impl AsyncReadRent for H2Downstream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.request.read_body(buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.request.readv(buf).await
    }
}

impl AsyncWriteRent for H2Downstream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let data = io_buf_bytes(&buf);
        let n = data.len();
        let result = self.take(data).await.map(|()| n);
        (result, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let wrapped = match IoVecWrapper::new(buf) {
            Ok(wrapped) => wrapped,
            Err(buf) => return (Ok(0), buf),
        };
        let (result, wrapped) = self.write(wrapped).await;
        (result, wrapped.into_inner())
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.finish();
        Ok(())
    }
}
