//! Idle keep-alive connections, parked without buffers and without their request task.
//!
//! A connection's request task is large: its future holds every state of the pipeline, and
//! the connection holds its input and output buffers. Kept for every idle keep-alive
//! connection, that is ~10 KB each. So when a connection stays quiet for [`GRACE`] after a
//! response, its request task ends (freeing its buffers), and only the socket waits here in
//! a small task, for readability (a poll on io_uring, readiness on epoll). When the next
//! request arrives, a request task is spawned again with fresh buffers. Its idle deadline is
//! kept by the worker's coarse [`IdleClock`](super::idle_clock::IdleClock) (closed up to one
//! tick late), not by a timer of its own.
//!
//! A TLS connection parks with its session (rustls state, keys, and its buffers as rustls
//! keeps them) but without the stream's record buffers; see docs/architecture.md for the
//! measured size.
//!
//! Connections busy enough to send again within the grace never come here: the hot path is
//! unchanged.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::connection::{serve, ClientConn};
use super::exchange::Open;
use super::idle_clock::IdleDeadline;
use super::secure::TlsInfo;
use crate::tls::ClientStream;

/// How long a kept-alive connection waits with its buffers before it is parked.
pub(super) const GRACE: Duration = Duration::from_millis(100);

/// Waits (for the rest of `keepalive_idle`) until the client sends again, then resumes
/// serving; closes the connection on timeout, on end of stream, or when the worker drains.
///
/// Its future is what every idle connection costs (next to the socket), so it holds each
/// thing once: the worker context and the client address come from `open`, the TLS facts
/// are boxed (`None` for plain HTTP). `tests::parked_connection_stays_small` bounds it.
// Not an `async fn` on purpose: its arguments would be moved into locals of the future and
// held twice (~150 bytes more per idle connection); an `async` block uses its captures in
// place.
#[allow(clippy::manual_async_fn)]
pub(super) fn park(
    mut stream: ClientStream,
    served: u64,
    tls: Option<Box<TlsInfo>>,
    open: Open,
) -> impl Future<Output = ()> {
    async move {
        if let ClientStream::Tls(session) = &mut stream {
            if session.has_buffered_input() {
                // The next request's bytes are already read: serve them now.
                resume(stream, served, tls, open);
                return;
            }
            session.release_buffers();
        }
        let ctx = open.ctx();
        // Only HTTP/1.1 connections park (an HTTP/2 stream has no socket of its own), and
        // none once the worker drains.
        let Some(tcp) = stream.tcp().filter(|_| !ctx.drain().is_draining()) else {
            return;
        };
        let idle = ctx.snapshot().server.timeouts.keepalive_idle;
        let clock = ctx.idle_clock();
        clock.ensure_ticking();
        // The deadline is the worker's coarse idle clock, not a monoio timer per connection
        // (640 bytes, 128-byte aligned: see `proxy::idle_clock`); the clock also ends the
        // wait when the worker drains. Relaxed readiness: a false positive only means the
        // resumed read waits itself.
        let ready = ReadableBefore {
            readable: tcp.readable(true),
            deadline: clock.until(Instant::now() + idle.saturating_sub(GRACE)),
        }
        .await;
        if ready {
            resume(stream, served, tls, open);
        }
    }
}

pin_project_lite::pin_project! {
    /// Whether the socket became readable before the deadline: `select!` over the two
    /// without its bookkeeping, since this future is part of every parked connection.
    struct ReadableBefore<R> {
        #[pin]
        readable: R,
        deadline: IdleDeadline,
    }
}

impl<R: Future<Output = io::Result<()>>> Future for ReadableBefore<R> {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.project();
        if let Poll::Ready(result) = this.readable.poll(cx) {
            return Poll::Ready(result.is_ok());
        }
        match Pin::new(this.deadline).poll(cx) {
            Poll::Ready(()) => Poll::Ready(false),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Spawns a request task, with fresh buffers, for a parked connection the client wrote to.
fn resume(stream: ClientStream, served: u64, tls: Option<Box<TlsInfo>>, open: Open) {
    let ctx = Rc::clone(open.ctx());
    let conn = ClientConn::new(stream, open.peer(), served, tls);
    monoio::spawn(serve(ctx, conn, open));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn layout<A, B, C, D, F: Future>(_: fn(A, B, C, D) -> F) -> (usize, usize) {
        (std::mem::size_of::<F>(), std::mem::align_of::<F>())
    }

    /// Every idle keep-alive connection holds one parked future (in its task), so its size is
    /// the gateway's idle memory per connection, next to the socket. It was 1,280 bytes with
    /// a monoio timer inside (640 bytes, cache-padded to a 128-byte alignment that the whole
    /// task then took), 512 with the worker's idle clock; 272 once the arguments were held
    /// once (an `async` block), the drain left to the idle clock, the deadline to its slot,
    /// and `select!` to a two-way race. With monoio's task header and trailer (40 bytes) the
    /// task fits jemalloc's 320-byte size class; the next one up is 384.
    #[test]
    fn parked_connection_stays_small() {
        let (size, align) = layout(park);
        eprintln!("parked connection future: {size} bytes, {align}-byte aligned");
        assert!(
            size <= 272,
            "the parked connection future grew to {size} bytes"
        );
        assert!(
            align <= 16,
            "the parked connection future is {align}-byte aligned"
        );
    }
}
