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

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::connection::{serve, ClientConn};
use super::exchange::Open;
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
pub(super) async fn park(stream: ClientStream, served: u64, tls: Option<Box<TlsInfo>>, open: Open) {
    let mut stream = stream;
    if let ClientStream::Tls(session) = &mut stream {
        if session.has_buffered_input() {
            // The next request's bytes are already read: serve them now.
            resume(stream, served, tls, open);
            return;
        }
        session.release_buffers();
    }
    let ready = {
        // Only HTTP/1.1 connections park; an HTTP/2 stream has no socket of its own.
        let Some(tcp) = stream.tcp() else { return };
        let ctx = open.ctx();
        let idle = ctx.snapshot().server.timeouts.keepalive_idle;
        let deadline = Instant::now() + idle.saturating_sub(GRACE);
        let clock = ctx.idle_clock();
        clock.ensure_ticking();
        // The deadline is the worker's coarse idle clock, not a monoio timer per connection
        // (640 bytes, 128-byte aligned: see `proxy::idle_clock`). The futures are built
        // inside `select!`: one bound to a local first would be laid out twice.
        // Relaxed readiness: a false positive only means the resumed read waits itself.
        monoio::select! {
            _ = ctx.drain().started() => false,
            _ = clock.until(deadline) => false,
            result = tcp.readable(true) => result.is_ok(),
        }
    };
    if ready {
        resume(stream, served, tls, open);
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
    /// task then took); with the worker's idle clock it is a few hundred.
    #[test]
    fn parked_connection_stays_small() {
        let (size, align) = layout(park);
        eprintln!("parked connection future: {size} bytes, {align}-byte aligned");
        assert!(
            size <= 512,
            "the parked connection future grew to {size} bytes"
        );
        assert!(
            align <= 16,
            "the parked connection future is {align}-byte aligned"
        );
    }
}
