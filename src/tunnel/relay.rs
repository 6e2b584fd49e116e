//! Copying a tunnel's two directions at once until both ends closed, or a limit ends it.
//!
//! ```text
//! client ──read──▶ up buffer ──(frame check)──▶ upstream      (one future)
//! client ◀──────── down buffer ◀──read──────── upstream      (another, same task)
//! ```
//!
//! Each direction owns one bounded buffer ([`TUNNEL_BUF`]) and never reads before it wrote
//! what it holds: a slow reader on one side stalls its direction (TCP backpressure reaches
//! the sender) instead of growing memory. An end of stream is passed on as a half-close, and
//! the other direction goes on until its own end. Watchdogs race the copying: no byte either
//! way for `idle`, the tunnel's `max` life, and the worker's shutdown deadline; whichever
//! ends the tunnel drops both directions (a dropped read loses its bytes, which no one is
//! left to receive). With frame checks on, a tunnel refused for a client frame gets close
//! 1009 or 1002 and one ended by the shutdown deadline close 1001, on each side whose
//! direction stopped at a frame boundary (bounded by [`CLOSE_WRITE_LIMIT`]).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};

use super::frames::{write_close, CloseCode, FrameScanner, Sender};
use super::halves::{ReadHalf, WriteHalf};
use super::rules::TunnelLimits;
use crate::io_buf::ReadBuf;
use crate::server::fairness::Budget;
use crate::server::Drain;

/// Largest buffer of one direction.
pub const TUNNEL_BUF: usize = 16 * 1024;

/// How long the gateway's own close frames may take to write (a peer that reads nothing
/// must not hold a shutting-down worker).
pub const CLOSE_WRITE_LIMIT: Duration = Duration::from_secs(1);

/// Why a tunnel closed (the `reason` label of its metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client ended its side first, then the upstream.
    ClientClosed,
    /// The upstream ended its side first, then the client.
    UpstreamClosed,
    /// Reading from or writing to the client failed.
    ClientError,
    /// Reading from or writing to the upstream failed.
    UpstreamError,
    /// No byte either way for the idle timeout.
    Idle,
    /// The tunnel reached its longest life.
    MaxDuration,
    /// The worker's shutdown grace ended.
    Shutdown,
    /// A client message exceeded `max_message_bytes` (closed with 1009).
    MessageTooBig,
    /// A client frame broke RFC 6455 (closed with 1002).
    ProtocolError,
}

impl CloseReason {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::UpstreamClosed => "upstream_closed",
            CloseReason::ClientError => "client_error",
            CloseReason::UpstreamError => "upstream_error",
            CloseReason::Idle => "idle",
            CloseReason::MaxDuration => "max_duration",
            CloseReason::Shutdown => "shutdown",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::ProtocolError => "protocol_error",
        }
    }
}

/// The two ends of a tunnel, split, with the bytes each side sent ahead of the switch.
#[derive(Debug)]
pub struct Ends {
    /// The client's read half.
    pub client_read: ReadHalf,
    /// The client's write half.
    pub client_write: WriteHalf,
    /// The upstream's read half.
    pub upstream_read: ReadHalf,
    /// The upstream's write half.
    pub upstream_write: WriteHalf,
    /// Client bytes after the request head (frames sent before the 101 arrived).
    pub from_client: ReadBuf,
    /// Upstream bytes after the 101 head.
    pub from_upstream: ReadBuf,
}

/// What the tunnel carried, live: the watchdogs and the metrics read it after the copying
/// futures are gone, and the worker's metrics flush reads it while the tunnel is open.
#[derive(Debug)]
pub struct Traffic {
    /// The tunnel's route.
    route: Box<str>,
    /// When a byte last moved either way.
    last: Cell<Instant>,
    /// Client to upstream.
    pub up: Cell<u64>,
    /// Upstream to client.
    pub down: Cell<u64>,
    /// Bytes each way already handed to the metrics.
    reported: Cell<(u64, u64)>,
}

impl Traffic {
    /// A fresh byte count for a tunnel of `route`.
    pub fn new(route: &str) -> Self {
        Self {
            route: Box::from(route),
            last: Cell::new(Instant::now()),
            up: Cell::new(0),
            down: Cell::new(0),
            reported: Cell::new((0, 0)),
        }
    }

    /// The tunnel's route.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Bytes each way (up, down) moved since the last call, now counted as reported.
    pub fn unreported(&self) -> (u64, u64) {
        let (up, down) = (self.up.get(), self.down.get());
        let (was_up, was_down) = self.reported.replace((up, down));
        (up - was_up, down - was_down)
    }
}

/// How one direction ended.
#[derive(Debug)]
enum DirectionEnd {
    /// Its source closed and the end was passed on.
    Closed,
    /// Reading from its source failed.
    SourceFailed(io::Error),
    /// Writing to its sink failed.
    SinkFailed(io::Error),
    /// A client frame broke a rule: the bytes before it went on.
    Refused(CloseCode),
}

/// One direction's state that outlives its future.
struct Direction {
    buf: ReadBuf,
    scanner: Option<FrameScanner>,
    /// A write is under way: if the direction is dropped now, its sink may have got part of
    /// a frame, and no frame of the gateway's own can follow.
    writing: bool,
}

impl Direction {
    /// Whether a close frame of the gateway's own may be written to this direction's sink.
    fn at_boundary(&self) -> bool {
        !self.writing && self.scanner.as_ref().is_some_and(FrameScanner::at_boundary)
    }
}

/// Copies both directions until the tunnel ends; returns why, with the byte counts in
/// `traffic`. `websocket` turns on frame checks when the limits ask for them.
pub async fn run(
    mut ends: Ends,
    limits: TunnelLimits,
    drain: &Rc<Drain>,
    traffic: &Traffic,
) -> CloseReason {
    let scanners = limits.max_message_bytes.map(|max| {
        let client = Sender::Client {
            max_message_bytes: max,
        };
        (FrameScanner::new(client), FrameScanner::new(Sender::Server))
    });
    let (up_scan, down_scan) = scanners.map_or((None, None), |(c, s)| (Some(c), Some(s)));
    let mut up = Direction {
        buf: std::mem::replace(&mut ends.from_client, ReadBuf::with_capacity(0)),
        scanner: up_scan,
        writing: false,
    };
    let mut down = Direction {
        buf: std::mem::replace(&mut ends.from_upstream, ReadBuf::with_capacity(0)),
        scanner: down_scan,
        writing: false,
    };
    let reason = {
        let copying = both(
            copy(
                &mut ends.client_read,
                &mut ends.upstream_write,
                &mut up,
                &traffic.up,
                &traffic.last,
            ),
            copy(
                &mut ends.upstream_read,
                &mut ends.client_write,
                &mut down,
                &traffic.down,
                &traffic.last,
            ),
        );
        monoio::select! {
            reason = copying => reason,
            _ = idle_watch(&traffic.last, limits.idle) => CloseReason::Idle,
            _ = lifetime(limits.max) => CloseReason::MaxDuration,
            _ = drain.aborted() => CloseReason::Shutdown,
        }
    };
    let code = match reason {
        CloseReason::MessageTooBig => Some(CloseCode::MessageTooBig),
        CloseReason::ProtocolError => Some(CloseCode::ProtocolError),
        // Only a frame-aware tunnel knows where a frame of its own may go.
        CloseReason::Shutdown if up.scanner.is_some() => Some(CloseCode::GoingAway),
        _ => None,
    };
    if let Some(code) = code {
        let closing = close_both(&mut ends, &up, &down, code);
        let _ = monoio::time::timeout(CLOSE_WRITE_LIMIT, closing).await;
    }
    reason
}

/// Sends close frames with `code` to each side whose direction stopped at a frame boundary
/// (to the upstream masked, as a client's), then half-closes both.
async fn close_both(ends: &mut Ends, up: &Direction, down: &Direction, code: CloseCode) {
    let mut frame = Vec::with_capacity(32);
    if down.at_boundary() {
        write_close(&mut frame, code, None);
        let _ = ends.client_write.write_bytes(frame).await;
        frame = Vec::with_capacity(32);
    }
    if up.at_boundary() {
        write_close(&mut frame, code, Some(masking_key()));
        let _ = ends.upstream_write.write_bytes(frame).await;
    }
    let _ = ends.client_write.shutdown().await;
    let _ = ends.upstream_write.shutdown().await;
}

/// A masking key for the gateway's own frames to a server (RFC 6455 §5.3 asks for an
/// unpredictable one; the std hasher's random keys are enough for one close frame).
fn masking_key() -> [u8; 4] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    let bits = h.finish();
    [
        bits as u8,
        (bits >> 8) as u8,
        (bits >> 16) as u8,
        (bits >> 24) as u8,
    ]
}

/// Runs both directions: a clean end of one waits for the other, a failure ends both.
async fn both(
    up: impl Future<Output = DirectionEnd>,
    down: impl Future<Output = DirectionEnd>,
) -> CloseReason {
    let (up, down) = (pin!(up), pin!(down));
    match select(up, down).await {
        Either::Left((DirectionEnd::Closed, down)) => match down.await {
            DirectionEnd::Closed => CloseReason::ClientClosed,
            end => down_failure(end),
        },
        Either::Left((end, down)) => {
            settle(down).await;
            up_failure(end)
        }
        Either::Right((DirectionEnd::Closed, up)) => match up.await {
            DirectionEnd::Closed => CloseReason::UpstreamClosed,
            end => up_failure(end),
        },
        Either::Right((end, up)) => {
            settle(up).await;
            down_failure(end)
        }
    }
}

/// Polls the direction that is about to be dropped once more. Its write may have completed
/// in the same loop round in which the other direction ended (the completions arrive
/// together), and only a poll records that (`Direction::writing`); without it the gateway
/// would think a frame half-written and send that side no close frame.
async fn settle(mut direction: Pin<&mut impl Future<Output = DirectionEnd>>) {
    std::future::poll_fn(|cx| {
        let _ = direction.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
}

/// Client to upstream: reads fail on the client's side, writes on the upstream's.
fn up_failure(end: DirectionEnd) -> CloseReason {
    log_failure("client to upstream", &end);
    match end {
        DirectionEnd::Closed => CloseReason::ClientClosed,
        DirectionEnd::SourceFailed(_) => CloseReason::ClientError,
        DirectionEnd::SinkFailed(_) => CloseReason::UpstreamError,
        DirectionEnd::Refused(CloseCode::MessageTooBig) => CloseReason::MessageTooBig,
        DirectionEnd::Refused(_) => CloseReason::ProtocolError,
    }
}

/// Upstream to client: the other way round.
fn down_failure(end: DirectionEnd) -> CloseReason {
    log_failure("upstream to client", &end);
    match end {
        DirectionEnd::Closed => CloseReason::UpstreamClosed,
        DirectionEnd::SourceFailed(_) => CloseReason::UpstreamError,
        DirectionEnd::SinkFailed(_) => CloseReason::ClientError,
        // Server frames are never refused.
        DirectionEnd::Refused(_) => CloseReason::UpstreamError,
    }
}

fn log_failure(direction: &str, end: &DirectionEnd) {
    match end {
        DirectionEnd::SourceFailed(e) => log::debug!("tunnel {direction}: read failed: {e}"),
        DirectionEnd::SinkFailed(e) => log::debug!("tunnel {direction}: write failed: {e}"),
        _ => {}
    }
}

/// Copies one direction: writes what is in hand (with frame checks, the whole frames of
/// it), then reads more, until the source ends.
async fn copy(
    from: &mut ReadHalf,
    to: &mut WriteHalf,
    dir: &mut Direction,
    moved: &Cell<u64>,
    last: &Cell<Instant>,
) -> DirectionEnd {
    // A source that always has data must not keep the worker to itself (legacy driver).
    let mut budget = Budget::new();
    loop {
        if !dir.buf.is_empty() {
            let (n, refused) = match dir.scanner.as_mut().map(|s| s.forwardable(dir.buf.data())) {
                None => (dir.buf.len(), None),
                Some(Ok(n)) => (n, None),
                Some(Err(v)) => (v.forwardable, Some(v.code)),
            };
            if n > 0 {
                dir.writing = true;
                if let Err(e) = to.write_from(&mut dir.buf, n).await {
                    return DirectionEnd::SinkFailed(e);
                }
                dir.writing = false;
                moved.set(moved.get() + n as u64);
                last.set(Instant::now());
            }
            if let Some(code) = refused {
                return DirectionEnd::Refused(code);
            }
        }
        let read = pin!(from.read_into(&mut dir.buf, TUNNEL_BUF));
        match budget.run(read).await {
            Ok(0) => {
                // Bytes still held are an incomplete frame header: nothing to pass on.
                return match to.shutdown().await {
                    Ok(()) => DirectionEnd::Closed,
                    Err(e) => DirectionEnd::SinkFailed(e),
                };
            }
            Ok(_) => last.set(Instant::now()),
            Err(e) => return DirectionEnd::SourceFailed(e),
        }
    }
}

/// Resolves once no byte moved for `idle`.
async fn idle_watch(last: &Cell<Instant>, idle: Duration) {
    loop {
        let deadline = last.get() + idle;
        if Instant::now() >= deadline {
            return;
        }
        monoio::time::sleep_until(deadline.into()).await;
    }
}

/// Resolves after `max`, or never.
async fn lifetime(max: Option<Duration>) {
    match max {
        Some(max) => monoio::time::sleep(max).await,
        None => std::future::pending().await,
    }
}
