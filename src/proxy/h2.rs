//! HTTP/2 client connections: the connection driver and its streams.
//!
//! A connection that negotiated `h2` with ALPN, or that opened with the h2c preface on a
//! listener with `server.h2c`, is served here instead of by the HTTP/1.1 request loop. One
//! task per connection runs the h2 connection (accepting streams, its flow control and
//! defences) together with the socket pumps of `http2::wire`; each accepted stream runs in a
//! task of its own on the same worker, so the streams of one connection are served
//! concurrently. A stream task is the same pipeline as an HTTP/1.1 request: a `ClientConn`
//! whose byte stream is the h2 stream (`http2::downstream`), serving exactly one request.
//!
//! Defences on top of h2's own (which bounds CONTINUATION frames and the decoded header list,
//! refuses streams over `max_concurrent_streams`, answers malformed frames with the right
//! stream or connection error, and counts resets of streams not yet accepted): streams the
//! client resets after they were accepted, or that h2 reset for protocol errors, are counted
//! per second, and past `max_resets_per_second` the connection is closed with
//! `GOAWAY(ENHANCE_YOUR_CALM)` (rapid reset, CVE-2023-44487). A reset stream's pipeline is
//! dropped at once, upstream exchange included.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use monoio::net::TcpStream;
use rustls::ServerConnection;

use super::connection::ClientConn;
use super::context::WorkerContext;
use super::error::ProxyError;
use super::exchange::Open;
use super::secure::TlsInfo;
use crate::config::Upstream;
use crate::http::ip_text::IpText;
use crate::http::Method;
use crate::http2::downstream::{reset_by_client, take_arrived, H2Downstream, Slot};
use crate::http2::head::Arrival;
use crate::http2::pool::OpenError;
use crate::http2::upstream::{DialOwned, H2Upstream};
use crate::http2::wire::{self, Transport, Wire};
use crate::http2::Http2Settings;
use crate::http2::{grpc, head};
use crate::tls::stream::TlsStream;
use crate::tls::{ClientStream, UpstreamStream};
use crate::upstream::UpstreamConn;

/// Most request body bytes taken with the head when the client sent no `content-length`: a
/// body that arrived whole within this is given a length (see `head::Arrival`). The retry
/// limit on bodies in hand is the same size.
const ARRIVED_MAX: usize = 64 * 1024;

/// What the streams of one connection share.
#[derive(Debug)]
struct ConnState {
    peer: SocketAddr,
    /// `peer`'s IP as text, for every stream's `X-Forwarded-For`.
    peer_ip: IpText,
    tls: Option<Box<TlsInfo>>,
    resets: ResetCounter,
    open_streams: Cell<usize>,
}

/// Resets per one-second window.
#[derive(Debug)]
struct ResetCounter {
    window_start: Cell<Instant>,
    count: Cell<u32>,
    max: u32,
}

impl ResetCounter {
    fn new(max: u32) -> Self {
        Self {
            window_start: Cell::new(Instant::now()),
            count: Cell::new(0),
            max,
        }
    }

    fn record(&self) {
        let now = Instant::now();
        if now.duration_since(self.window_start.get()) >= Duration::from_secs(1) {
            self.window_start.set(now);
            self.count.set(0);
        }
        self.count.set(self.count.get().saturating_add(1));
    }

    fn exceeded(&self) -> bool {
        self.count.get() > self.max && self.window_start.get().elapsed() < Duration::from_secs(1)
    }
}

/// Serves a TLS connection that negotiated `h2`.
pub(super) async fn serve_tls(
    ctx: Rc<WorkerContext>,
    stream: Box<TlsStream<ServerConnection>>,
    peer: SocketAddr,
    tls: Option<Box<TlsInfo>>,
    open: Open,
) {
    let (tcp, session, leftover) = stream.into_parts();
    let transport = Transport::Tls {
        tcp,
        session: Box::new(rustls::Connection::Server(session)),
        leftover,
    };
    serve(ctx, transport, &[], peer, tls, open).await;
}

/// Serves a plain connection that opened with the h2c preface; `sniffed` are the bytes the
/// HTTP/1.1 reader already took from the socket.
pub(super) async fn serve_h2c(
    ctx: Rc<WorkerContext>,
    tcp: TcpStream,
    sniffed: &[u8],
    peer: SocketAddr,
    open: Open,
) {
    serve(ctx, Transport::Plain(tcp), sniffed, peer, None, open).await;
}

async fn serve(
    ctx: Rc<WorkerContext>,
    transport: Transport,
    replay: &[u8],
    peer: SocketAddr,
    tls: Option<Box<TlsInfo>>,
    open: Open,
) {
    let settings = ctx.snapshot().server.http2;
    let (io, pumps) = wire::wire(transport);
    pumps.replay(replay);
    let state = Rc::new(ConnState {
        peer,
        peer_ip: IpText::new(peer.ip()),
        tls,
        resets: ResetCounter::new(settings.max_resets_per_second),
        open_streams: Cell::new(0),
    });
    ctx.metrics().protocols().h2_connection(true);
    // Past the drain's grace period the connection is dropped wherever it is.
    let drain = Rc::clone(ctx.drain());
    monoio::select! {
        _ = drain.aborted() => {}
        _ = pumps.run_with(drive(&ctx, io, settings, &state)) => {}
    }
    ctx.metrics().protocols().h2_connection(false);
    drop(open);
}

/// A stream the client opened: its request and the handle to answer it.
type Accepted = (http::Request<RecvStream>, SendResponse<Bytes>);

/// What the accept loop woke up for.
enum Event {
    Stream(Option<Result<Box<Accepted>, h2::Error>>),
    Drain,
    Idle,
}

/// The connection's life: handshake, accept streams until the client or the gateway ends it,
/// then let the open streams finish.
async fn drive(ctx: &Rc<WorkerContext>, io: Wire, settings: Http2Settings, state: &Rc<ConnState>) {
    let timeouts = ctx.snapshot().server.timeouts;
    let handshake = settings.server_builder().handshake::<_, Bytes>(io);
    let mut conn = match monoio::time::timeout(timeouts.head_read, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            log::debug!("{}: HTTP/2 handshake failed: {e}", state.peer);
            return;
        }
        Err(_) => {
            log::debug!("{}: HTTP/2 handshake timed out", state.peer);
            return;
        }
    };
    let drain = Rc::clone(ctx.drain());
    loop {
        let event = monoio::select! {
            _ = drain.started() => Event::Drain,
            accepted = conn.accept() => Event::Stream(accepted.map(|r| r.map(Box::new))),
            _ = monoio::time::sleep(timeouts.keepalive_idle) => Event::Idle,
        };
        match event {
            Event::Stream(Some(Ok(accepted))) => {
                let (request, respond) = *accepted;
                if state.resets.exceeded() {
                    log::debug!("{}: HTTP/2 rapid reset: closing", state.peer);
                    ctx.metrics().protocols().h2_goaway(true);
                    conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    break;
                }
                monoio::spawn(serve_stream(
                    Rc::clone(ctx),
                    Rc::clone(state),
                    request,
                    respond,
                ));
            }
            Event::Stream(Some(Err(e))) => {
                log::debug!("{}: HTTP/2 connection error: {e}", state.peer);
                if e.is_go_away() && !e.is_remote() {
                    ctx.metrics().protocols().h2_goaway(true);
                } else if e.is_go_away() {
                    ctx.metrics().protocols().h2_goaway(false);
                }
                return;
            }
            Event::Stream(None) => return,
            Event::Drain => {
                ctx.metrics().protocols().h2_goaway(true);
                conn.graceful_shutdown();
                break;
            }
            Event::Idle if state.open_streams.get() == 0 => {
                ctx.metrics().protocols().h2_goaway(true);
                conn.graceful_shutdown();
                break;
            }
            Event::Idle => {}
        }
    }
    // Closing: h2 needs the connection polled to send its GOAWAY and finish open streams.
    // An error ends it: h2 keeps answering a failed connection's `accept` with the same
    // error at once, so looping on it would spin the worker and starve its other tasks.
    while let Some(accepted) = conn.accept().await {
        match accepted {
            Ok((request, respond)) => {
                monoio::spawn(serve_stream(
                    Rc::clone(ctx),
                    Rc::clone(state),
                    request,
                    respond,
                ));
            }
            Err(e) => {
                log::debug!("{}: HTTP/2 connection error while closing: {e}", state.peer);
                return;
            }
        }
    }
}

/// Counts a stream open (on its connection and in the worker's metrics) while it lives.
struct OpenStream<'a>(Rc<ConnState>, &'a WorkerContext);

impl<'a> OpenStream<'a> {
    fn new(state: &Rc<ConnState>, ctx: &'a WorkerContext) -> Self {
        state.open_streams.set(state.open_streams.get() + 1);
        ctx.metrics().protocols().h2_stream(true);
        ctx.spare_buffers().opened();
        ctx.downstream_spares().opened();
        Self(Rc::clone(state), ctx)
    }
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0
            .open_streams
            .set(self.0.open_streams.get().saturating_sub(1));
        self.1.metrics().protocols().h2_stream(false);
        self.1.spare_buffers().closed();
        self.1.downstream_spares().closed();
    }
}

/// Serves one stream through the pipeline.
async fn serve_stream(
    ctx: Rc<WorkerContext>,
    state: Rc<ConnState>,
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let _open = OpenStream::new(&state, &ctx);
    let (parts, mut body) = request.into_parts();
    let slot = Slot::new(respond);
    let mut stream_buffers = ctx.downstream_spares().take();
    let (whole, arrival) = if body.is_end_stream() {
        (false, Arrival::NoBody)
    } else {
        let arrived = &mut stream_buffers.arrived;
        let whole = take_arrived(&mut body, ARRIVED_MAX, arrived).await;
        let arrival = if whole {
            Arrival::Whole(arrived.len() as u64)
        } else {
            Arrival::Streaming
        };
        (whole, arrival)
    };
    // The request head goes straight into the pipeline's input buffer.
    let mut buffers = ctx.stream_buffers();
    let written = buffers
        .input()
        .append_with(|out| head::write_request_head(&parts, arrival, out));
    let framing = match written {
        Ok(framing) => framing,
        Err(e) => {
            log::debug!("{}: malformed HTTP/2 request: {e}", state.peer);
            slot.borrow_mut().reset(h2::Reason::PROTOCOL_ERROR);
            state.resets.record();
            ctx.return_stream_buffers(buffers);
            return;
        }
    };
    let method = method_kind(&parts.method);
    let downstream = H2Downstream::new(
        body,
        framing,
        stream_buffers,
        whole,
        method,
        Rc::clone(&slot),
    );
    let mut conn = ClientConn::with_buffers(
        ClientStream::H2(Box::new(downstream)),
        state.peer,
        state.peer_ip,
        0,
        state.tls.clone(),
        buffers,
    );
    conn.http2 = true;
    conn.grpc = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| grpc::is_grpc(v.as_bytes()));
    // A gRPC client's deadline bounds the whole call, streaming included.
    let deadline = conn
        .grpc
        .then(|| parts.headers.get("grpc-timeout"))
        .flatten()
        .and_then(|v| grpc::parse_timeout(v.as_bytes()));
    let ended = monoio::select! {
        _ = conn.serve_one(&ctx) => Ended::Served,
        reason = reset_by_client(&slot) => Ended::Reset(reason),
        _ = deadline_passed(deadline) => Ended::Deadline,
    };
    let reset = match ended {
        Ended::Served => None,
        Ended::Reset(reason) => Some(reason),
        Ended::Deadline => {
            log::debug!("{}: gRPC deadline passed", state.peer);
            ctx.metrics()
                .error(crate::metrics::ErrorCause::UpstreamTimeout);
            slot.borrow_mut()
                .grpc_status(grpc::Code::DeadlineExceeded, "deadline exceeded");
            return;
        }
    };
    match reset {
        Some(reason) => {
            log::debug!(
                "{}: HTTP/2 stream reset by the client ({reason:?})",
                state.peer
            );
            ctx.metrics().protocols().h2_reset(false);
            state.resets.record();
        }
        None => {
            if let ClientStream::H2(downstream) = &mut conn.stream {
                if !downstream.is_complete() {
                    ctx.metrics().protocols().h2_reset(true);
                }
                downstream.finish();
                ctx.downstream_spares().give_back(downstream.take_buffers());
            }
        }
    }
    ctx.return_stream_buffers(conn.into_buffers());
}

/// How a stream's service ended.
enum Ended {
    Served,
    Reset(h2::Reason),
    Deadline,
}

/// Resolves once a gRPC call's deadline passed; never without one (the pipeline's own
/// timeouts apply), and then without a timer per stream.
async fn deadline_passed(deadline: Option<Duration>) {
    match deadline {
        Some(deadline) => monoio::time::sleep(deadline).await,
        None => std::future::pending().await,
    }
}

/// The codec's method class for an h2 request.
fn method_kind(method: &http::Method) -> Method {
    match *method {
        http::Method::GET => Method::Get,
        http::Method::HEAD => Method::Head,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::DELETE => Method::Delete,
        http::Method::OPTIONS => Method::Options,
        http::Method::PATCH => Method::Patch,
        http::Method::TRACE => Method::Trace,
        http::Method::CONNECT => Method::Connect,
        _ => Method::Other,
    }
}

/// A stream to `addr` of the h2/h2c group `upstream`, as the pipeline's upstream connection.
/// `keep_trailers`: the client takes trailers (see `H2Upstream`).
pub(super) async fn upstream_stream(
    ctx: &WorkerContext,
    addr: SocketAddr,
    upstream: &Upstream,
    keep_trailers: bool,
) -> Result<UpstreamConn, ProxyError> {
    let dial = DialOwned {
        protocol: upstream.protocol,
        tls: upstream.tls.clone(),
        connect_timeout: upstream.timeouts.connect,
        settings: upstream.http2,
        idle_timeout: upstream.pool.idle_timeout,
    };
    let mut stream = H2Upstream::open(Rc::clone(ctx.h2_pool()), addr, dial, keep_trailers)
        .await
        .map_err(|e| match e {
            OpenError::Connect(e) => super::forward::connect_failed(ctx, e),
            OpenError::Handshake { reason, .. } => {
                ProxyError::Connect(std::io::Error::other(reason))
            }
        })?;
    let buf = stream.take_read_buf();
    Ok(UpstreamConn {
        stream: UpstreamStream::H2(Box::new(stream)),
        buf,
        addr,
        reused: false,
        tls_config: None,
    })
}

/// Whether a `TE` field value names `trailers`.
pub(super) fn te_has_trailers(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
}
