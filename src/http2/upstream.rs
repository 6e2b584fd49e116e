//! One request to an HTTP/2 upstream as the pipeline's upstream byte stream: the request the
//! pipeline writes (an HTTP/1.1 head and framed body) goes out as an h2 stream, and the
//! response comes back as an HTTP/1.1 message (chunked when the upstream gave no length,
//! its trailers in the chunked trailer section, which is how `grpc-status` reaches an
//! HTTP/1.1 reader and, re-framed, an HTTP/2 client).
//!
//! A stream the target refused without processing it (`REFUSED_STREAM`, or above the last
//! stream id of its `GOAWAY`) is sent again on another connection when the gateway still
//! holds the whole request (RFC 9113 §8.7 says such a request was not processed, whatever its
//! method).

use std::future::{poll_fn, Future};

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, IoVecWrapper, IoVecWrapperMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;

use super::downstream::h2_io_error;
use super::head;
use super::pool::{Dial, H2Pool, StreamLease};
use super::pump::SharedPump;
use crate::http::{BodyFraming, ChunkedDecoder, HeaderSpan};
use crate::io_buf::{io_buf_bytes, ReadBuf};

/// The most request bytes kept for sending a refused stream again.
const MAX_REPLAY: usize = 64 * 1024;
/// Times a refused stream is sent again.
const MAX_REFUSED_RETRIES: usize = 2;
/// Initial capacity of the staged response bytes (a typical head, or a small message).
const STAGED: usize = 512;
/// Largest request head buffer and staged response buffer a spare keeps (a stream that grew
/// them more gives them up).
const MAX_SPARE_HEAD: usize = 16 * 1024;
const MAX_SPARE_STAGED: usize = 16 * 1024;
/// Initial input buffer of the pipeline's upstream connection on a stream (the response as
/// the pipeline reads it).
pub const READ_BUF: usize = 4 * 1024;
/// Initial capacity of the request head's field spans (grown when a head has more).
const SPANS: usize = 24;

/// The request side.
enum Req {
    /// Collecting the request head.
    Head(Vec<u8>),
    /// Sending a `content-length` body: bytes left.
    Length(SendStream<Bytes>, u64),
    /// Sending a chunked body; the trailer section so far.
    Chunked(SendStream<Bytes>, ChunkedDecoder, Vec<u8>),
    /// The request is sent.
    Sent,
}

/// The response side.
enum Resp {
    /// Nothing asked yet.
    Idle,
    /// Waiting for the response head.
    Waiting(ResponseFuture),
    /// Reading the body; whether it is written chunked.
    Body(RecvStream, bool),
    /// All of it was read.
    Done,
}

/// An h2 stream to an upstream, read and written by the pipeline like a connection.
pub struct H2Upstream {
    pool: Rc<H2Pool>,
    addr: SocketAddr,
    dial: DialOwned,
    lease: Option<StreamLease>,
    scheme: http::uri::Scheme,
    req: Req,
    resp: Resp,
    staged: Vec<u8>,
    staged_pos: usize,
    spans: Vec<HeaderSpan>,
    /// The request head's buffer once the head went out, kept for the next stream.
    sent_head: Vec<u8>,
    /// Every request byte written, while `replayable`.
    replay: Vec<u8>,
    /// Whether `replay` holds the whole request so far (it fits in [`MAX_REPLAY`] and no
    /// response came yet).
    replayable: bool,
    refused: usize,
    /// Whether any response byte was handed to the pipeline.
    answered: bool,
    /// Whether the client takes trailers (an HTTP/2 client, or `TE: trailers`): otherwise
    /// the upstream's trailers are dropped, as HTTP/1.1 clients that did not ask for them
    /// may not parse a trailer section.
    keep_trailers: bool,
    /// The request body's relay while the response is read (a full-duplex exchange): polled
    /// with every wait for the response, dropped with the stream.
    pump: Option<SharedPump>,
    /// An error met while waiting for the response head outside a read, for the next read.
    failed: Option<io::Error>,
    /// The input buffer of the pipeline's upstream connection on this stream, until the
    /// pipeline takes it ([`H2Upstream::take_read_buf`]) and after it gives it back.
    read_buf: Option<ReadBuf>,
}

/// The sending half of a request whose head went out: its body, taken out of the stream
/// ([`H2Upstream::take_request`]) to be relayed while the response is read.
pub struct RequestSender(Req);

impl std::fmt::Debug for RequestSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSender").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for H2Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Upstream")
            .field("addr", &self.addr)
            .finish()
    }
}

/// [`Dial`] without the borrow, kept for a retry on another connection.
#[derive(Debug, Clone)]
pub struct DialOwned {
    /// h2 or h2c.
    pub protocol: super::UpstreamProtocol,
    /// TLS of an h2 group.
    pub tls: Option<crate::tls::UpstreamTls>,
    /// Connect timeout.
    pub connect_timeout: std::time::Duration,
    /// HTTP/2 settings.
    pub settings: super::UpstreamHttp2,
    /// Idle connection timeout.
    pub idle_timeout: std::time::Duration,
}

impl DialOwned {
    fn borrow(&self) -> Dial<'_> {
        Dial {
            protocol: self.protocol,
            tls: self.tls.as_ref(),
            connect_timeout: self.connect_timeout,
            settings: self.settings,
            idle_timeout: self.idle_timeout,
        }
    }
}

impl H2Upstream {
    /// A stream to `addr` on a connection of `pool` (one is opened if needed).
    pub async fn open(
        pool: Rc<H2Pool>,
        addr: SocketAddr,
        dial: DialOwned,
        keep_trailers: bool,
    ) -> Result<Self, super::pool::OpenError> {
        let lease = pool.lease(addr, dial.borrow(), None).await?;
        pool.spares().opened();
        let buffers = pool.spares().take();
        let scheme = match dial.protocol {
            super::UpstreamProtocol::H2 => http::uri::Scheme::HTTPS,
            _ => http::uri::Scheme::HTTP,
        };
        Ok(Self {
            pool,
            addr,
            dial,
            lease: Some(lease),
            scheme,
            req: Req::Head(buffers.head),
            resp: Resp::Idle,
            staged: buffers.staged,
            staged_pos: 0,
            spans: buffers.spans,
            sent_head: Vec::new(),
            replay: buffers.replay,
            replayable: true,
            refused: 0,
            answered: false,
            keep_trailers,
            pump: None,
            failed: None,
            read_buf: buffers.read_buf,
        })
    }

    /// The input buffer for the pipeline's upstream connection on this stream (a finished
    /// stream's, or a fresh one of [`READ_BUF`] bytes).
    pub fn take_read_buf(&mut self) -> ReadBuf {
        self.read_buf
            .take()
            .unwrap_or_else(|| ReadBuf::with_capacity(READ_BUF))
    }

    /// Takes back that input buffer once the exchange is done, for the next stream.
    pub fn keep_read_buf(&mut self, buf: ReadBuf) {
        self.read_buf = Some(buf);
    }

    /// The request can no longer be sent again (it outgrew the replay copy, its body was
    /// taken out, or a response came).
    fn stop_replay(&mut self) {
        self.replayable = false;
        self.replay.clear();
    }

    /// Whether the response was read whole (the stream ended cleanly).
    pub fn is_complete(&self) -> bool {
        matches!(self.resp, Resp::Done)
    }

    /// Takes the sending half of a request whose head went out and whose body is still to
    /// come; the stream is then never sent again (it no longer holds the whole request).
    pub fn take_request(&mut self) -> Option<RequestSender> {
        if !matches!(self.req, Req::Length(..) | Req::Chunked(..)) {
            return None;
        }
        self.stop_replay();
        Some(RequestSender(std::mem::replace(&mut self.req, Req::Sent)))
    }

    /// Waits for the response head (an error is kept for the next read). Cancel-safe.
    pub async fn response_head(&mut self) {
        if !matches!(self.resp, Resp::Waiting(_)) || self.staged_pos < self.staged.len() {
            return;
        }
        if let Err(e) = self.stage_response().await {
            self.failed = Some(e);
        }
    }

    /// Drives `pump` (the request body's relay) whenever the response is waited for, until
    /// it ends; its error fails the read that meets it.
    pub fn drive(&mut self, pump: SharedPump) {
        self.pump = Some(pump);
    }

    /// [`Self::stage_response`], driving the pump meanwhile.
    async fn stage_with_pump(&mut self) -> io::Result<bool> {
        let Some(pump) = self.pump.take() else {
            return self.stage_response().await;
        };
        let staged = {
            let mut stage = std::pin::pin!(self.stage_response());
            poll_fn(|cx| {
                if let Poll::Ready(e) = pump.poll_failure(cx) {
                    return Poll::Ready(Err(e));
                }
                stage.as_mut().poll(cx)
            })
            .await
        };
        if pump.is_running() {
            self.pump = Some(pump);
        }
        staged
    }

    async fn take(&mut self, data: &[u8]) -> io::Result<()> {
        if self.replayable {
            if self.replay.len() + data.len() <= MAX_REPLAY {
                self.replay.extend_from_slice(data);
            } else {
                self.stop_replay();
            }
        }
        self.send(data).await
    }

    async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.req {
            Req::Head(buf) => {
                buf.extend_from_slice(data);
                self.start_request().await
            }
            req => send_body(req, data).await,
        }
    }

    /// Sends the h2 request once its head is complete; what follows the head is body.
    async fn start_request(&mut self) -> io::Result<()> {
        let Req::Head(buf) = &mut self.req else {
            return Ok(());
        };
        let parsed = head::upstream_request(buf, &self.scheme, &mut self.spans)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let Some(parsed) = parsed else {
            return Ok(());
        };
        let head_len = parsed.head.head_len;
        let Req::Head(mut written) = std::mem::replace(&mut self.req, Req::Sent) else {
            return Ok(());
        };
        let mut sender = self.ready_sender().await?;
        let ended = parsed.head.framing == BodyFraming::None;
        let (response, send) = sender
            .send_request(parsed.request, ended)
            .map_err(h2_io_error)?;
        self.resp = Resp::Waiting(response);
        self.req = match parsed.head.framing {
            BodyFraming::None => Req::Sent,
            BodyFraming::Length(n) => Req::Length(send, n),
            BodyFraming::Chunked => Req::Chunked(send, ChunkedDecoder::new(), Vec::new()),
        };
        // What followed the head is body: sent from the head's buffer, no copy of it.
        let sent = match written.get(head_len..) {
            Some(body) if !body.is_empty() => send_body(&mut self.req, body).await,
            _ => Ok(()),
        };
        // Kept empty: a refused stream's resend collects its head in it again.
        written.clear();
        self.sent_head = written;
        sent
    }

    /// A handle to open the stream with, on the leased connection or, when that one takes no
    /// new stream (it closed, or the target sent `GOAWAY`), on another: nothing of the
    /// request was sent yet, so moving it is always safe.
    async fn ready_sender(&mut self) -> io::Result<SendRequest<Bytes>> {
        let mut moves = 0;
        loop {
            let lease = self.lease.as_ref().ok_or_else(closed)?;
            let error = match lease.conn().ready().await {
                Ok(sender) => return Ok(sender),
                Err(e) => e,
            };
            if moves == MAX_REFUSED_RETRIES {
                return Err(h2_io_error(error));
            }
            moves += 1;
            // `ready` retired the connection: the pool does not hand it out again.
            let failed = self.lease.take();
            let exclude = failed.as_ref().map(|l| Rc::clone(l.conn()));
            drop(failed);
            // Boxed: rare, and inline it would be laid out in every write of every upstream
            // stream, HTTP/1.1 ones included.
            let lease = Box::pin(
                self.pool
                    .lease(self.addr, self.dial.borrow(), exclude.as_ref()),
            )
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e))?;
            self.lease = Some(lease);
        }
    }

    /// Sends the whole request again on another connection (the last one refused it).
    async fn resend(&mut self) -> io::Result<bool> {
        if !self.replayable {
            return Ok(false);
        }
        let replay = self.replay.clone();
        if self.refused >= MAX_REFUSED_RETRIES || !matches!(self.req, Req::Sent) {
            return Ok(false);
        }
        self.refused += 1;
        let failed = self.lease.take();
        if let Some(lease) = &failed {
            lease.conn().retire();
        }
        let exclude = failed.as_ref().map(|l| Rc::clone(l.conn()));
        let lease = self
            .pool
            .lease(self.addr, self.dial.borrow(), exclude.as_ref())
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e))?;
        drop(failed);
        self.lease = Some(lease);
        self.req = Req::Head(std::mem::take(&mut self.sent_head));
        self.resp = Resp::Idle;
        self.send(&replay).await?;
        Ok(true)
    }

    /// Frames the next piece of the response into `staged`; `false` at its end.
    async fn stage_response(&mut self) -> io::Result<bool> {
        self.staged.clear();
        self.staged_pos = 0;
        loop {
            match &mut self.resp {
                Resp::Idle | Resp::Done => return Ok(false),
                Resp::Waiting(future) => match future.await {
                    Ok(response) => {
                        let (parts, body) = response.into_parts();
                        let ended = body.is_end_stream();
                        let chunked = head::write_response_head(&parts, ended, &mut self.staged);
                        self.resp = if ended {
                            Resp::Done
                        } else {
                            Resp::Body(body, chunked)
                        };
                        self.stop_replay();
                        return Ok(true);
                    }
                    Err(e) if is_unprocessed(&e) && !self.answered => {
                        // Boxed: a refused stream is rare, and the resend (a new lease and
                        // the whole request again) would otherwise be laid out in every
                        // read of every upstream stream, HTTP/1.1 ones included.
                        if !Box::pin(self.resend()).await? {
                            return Err(h2_io_error(e));
                        }
                    }
                    Err(e) => return Err(h2_io_error(e)),
                },
                Resp::Body(body, chunked) => {
                    let chunked = *chunked;
                    match body.data().await {
                        Some(Ok(data)) => {
                            let _ = body.flow_control().release_capacity(data.len());
                            if data.is_empty() {
                                continue;
                            }
                            if chunked {
                                head::write_chunk(&data, &mut self.staged);
                            } else {
                                self.staged.extend_from_slice(&data);
                            }
                            return Ok(true);
                        }
                        Some(Err(e)) => return Err(h2_io_error(e)),
                        None => {
                            if chunked {
                                let trailers = body.trailers().await.map_err(h2_io_error)?;
                                let trailers = trailers.as_ref().filter(|_| self.keep_trailers);
                                head::write_last_chunk(trailers, &mut self.staged);
                            }
                            self.resp = Resp::Done;
                            return Ok(!self.staged.is_empty());
                        }
                    }
                }
            }
        }
    }

    async fn read_response<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        loop {
            if self.staged_pos < self.staged.len() {
                let mut pending = &self.staged[self.staged_pos..];
                let (result, buf) = pending.read(buf).await;
                if let Ok(n) = result {
                    self.staged_pos += n;
                    self.answered = true;
                }
                return (result, buf);
            }
            let staged = match self.failed.take() {
                Some(e) => Err(e),
                None => self.stage_with_pump().await,
            };
            match staged {
                Ok(true) => {}
                Ok(false) => return (Ok(0), buf),
                // Refused before any response: the pipeline sees a close before the response
                // (`UpstreamClosed`), which it may retry like a stale keep-alive connection.
                Err(e) if !self.answered && e.kind() == io::ErrorKind::ConnectionReset => {
                    return (Ok(0), buf)
                }
                Err(e) => return (Err(e), buf),
            }
        }
    }
}

impl Drop for H2Upstream {
    fn drop(&mut self) {
        let head = match &mut self.req {
            Req::Head(head) => std::mem::take(head),
            _ => std::mem::take(&mut self.sent_head),
        };
        let spares = self.pool.spares();
        spares.give_back(StreamBuffers {
            head,
            replay: std::mem::take(&mut self.replay),
            staged: std::mem::take(&mut self.staged),
            spans: std::mem::take(&mut self.spans),
            read_buf: self.read_buf.take(),
        });
        spares.closed();
    }
}

/// An upstream stream's buffers, kept for the next stream (`crate::spares`).
#[derive(Debug)]
pub struct StreamBuffers {
    head: Vec<u8>,
    replay: Vec<u8>,
    staged: Vec<u8>,
    spans: Vec<HeaderSpan>,
    read_buf: Option<ReadBuf>,
}

impl crate::spares::Spare for StreamBuffers {
    fn fresh() -> Self {
        Self {
            head: Vec::new(),
            replay: Vec::new(),
            staged: Vec::with_capacity(STAGED),
            spans: Vec::with_capacity(SPANS),
            read_buf: Some(ReadBuf::with_capacity(READ_BUF)),
        }
    }

    fn reusable(mut self) -> Option<Self> {
        if self.head.capacity() > MAX_SPARE_HEAD || self.staged.capacity() > MAX_SPARE_STAGED {
            return None;
        }
        self.head.clear();
        self.replay.clear();
        self.staged.clear();
        self.spans.clear();
        // Only an empty buffer at its working size is kept (the next stream takes a fresh one
        // otherwise).
        self.read_buf = self
            .read_buf
            .filter(|b| b.is_empty() && b.capacity() == READ_BUF);
        Some(self)
    }
}

/// Whether the target did not process the stream (safe to send again).
fn is_unprocessed(e: &h2::Error) -> bool {
    e.reason() == Some(h2::Reason::REFUSED_STREAM) || (e.is_go_away() && e.is_remote())
}

/// Sends `data` as flow control lets it out; `end` ends the stream with it.
async fn send_all(send: &mut SendStream<Bytes>, data: &[u8], end: bool) -> io::Result<()> {
    let mut sent = 0;
    while sent < data.len() {
        let want = data.len() - sent;
        send.reserve_capacity(want);
        let mut capacity = send.capacity();
        if capacity == 0 {
            capacity = poll_fn(|cx| match send.poll_capacity(cx) {
                Poll::Ready(Some(Ok(0))) | Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(n))) => Poll::Ready(Ok(n)),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Err(h2_io_error(e))),
                Poll::Ready(None) => Poll::Ready(Err(closed())),
            })
            .await?;
        }
        let n = capacity.min(want);
        let last = end && sent + n == data.len();
        send.send_data(head::owned(&data[sent..sent + n]), last)
            .map_err(h2_io_error)?;
        sent += n;
    }
    if data.is_empty() && end {
        send.send_data(Bytes::new(), true).map_err(h2_io_error)?;
    }
    Ok(())
}

/// Sends body bytes of a request whose head went out; `Req::Sent` takes nothing more.
async fn send_body(req: &mut Req, data: &[u8]) -> io::Result<()> {
    match req {
        // The head is collected by `H2Upstream::send` only.
        Req::Head(_) => Err(closed()),
        Req::Length(send, remaining) => {
            let take = (*remaining).min(data.len() as u64) as usize;
            *remaining -= take as u64;
            let last = *remaining == 0;
            send_all(send, &data[..take], last).await?;
            if last {
                *req = Req::Sent;
            }
            Ok(())
        }
        Req::Chunked(send, decoder, trailers) => {
            let mut pieces: Vec<Range<usize>> = Vec::new();
            let progress = decoder
                .advance_with_trailers(data, &mut |r| pieces.push(r), &mut |b| trailers.push(b))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let trailers = progress.done.then(|| head::parse_trailers(trailers));
            let end_with_data = trailers.as_ref().is_some_and(http::HeaderMap::is_empty);
            let count = pieces.len();
            for (i, range) in pieces.into_iter().enumerate() {
                send_all(send, &data[range], end_with_data && i + 1 == count).await?;
            }
            match trailers {
                Some(map) if !map.is_empty() => send.send_trailers(map).map_err(h2_io_error)?,
                Some(_) if count == 0 => send_all(send, &[], true).await?,
                _ => {}
            }
            if progress.done {
                *req = Req::Sent;
            }
            Ok(())
        }
        Req::Sent => Ok(()),
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "HTTP/2 stream closed")
}

impl AsyncWriteRent for RequestSender {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let data = io_buf_bytes(&buf);
        let n = data.len();
        let result = send_body(&mut self.0, data).await.map(|()| n);
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
        Ok(())
    }
}

impl AsyncReadRent for H2Upstream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read_response(buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let wrapped = match IoVecWrapperMut::new(buf) {
            Ok(wrapped) => wrapped,
            Err(buf) => return (Ok(0), buf),
        };
        let (result, wrapped) = self.read_response(wrapped).await;
        (result, wrapped.into_inner())
    }
}

impl AsyncWriteRent for H2Upstream {
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
        Ok(())
    }
}
