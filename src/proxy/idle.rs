//! Idle keep-alive connections, parked without buffers and without their request task.
//!
//! A connection's request task is large: its future holds every state of the pipeline, and
//! the connection holds its input and output buffers. Kept for every idle keep-alive
//! connection, that is ~10 KB each. So when a connection stays quiet for [`GRACE`] after a
//! response, its request task ends (freeing its buffers), and only the socket waits here in
//! a small task, for readability (a poll on io_uring, readiness on epoll). When the next
//! request arrives, a request task is spawned again with fresh buffers.
//!
//! A TLS connection parks with its session (rustls state, keys, and its buffers as rustls
//! keeps them) but without the stream's record buffers; see docs/architecture.md for the
//! measured size.
//!
//! Connections busy enough to send again within the grace never come here: the hot path is
//! unchanged.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use super::connection::{serve, ClientConn};
use super::context::WorkerContext;
use super::exchange::Open;
use super::secure::TlsInfo;
use crate::tls::ClientStream;

/// How long a kept-alive connection waits with its buffers before it is parked.
pub(super) const GRACE: Duration = Duration::from_millis(100);

/// Waits (for the rest of `keepalive_idle`) until the client sends again, then resumes
/// serving; closes the connection on timeout, on end of stream, or when the worker drains.
pub(super) async fn park(
    ctx: Rc<WorkerContext>,
    mut stream: ClientStream,
    peer: SocketAddr,
    served: u64,
    tls: Option<TlsInfo>,
    open: Open,
) {
    if let ClientStream::Tls(session) = &mut stream {
        if session.has_buffered_input() {
            // The next request's bytes are already read: serve them now.
            monoio::spawn(serve(ctx, ClientConn::new(stream, peer, served, tls), open));
            return;
        }
        session.release_buffers();
    }
    let idle = ctx.snapshot().server.timeouts.keepalive_idle;
    let remaining = idle.saturating_sub(GRACE);
    let drain = Rc::clone(ctx.drain());
    let ready = {
        // Relaxed readiness: a false positive only means the resumed read waits itself.
        let readable = monoio::time::timeout(remaining, stream.tcp().readable(true));
        monoio::select! {
            _ = drain.started() => false,
            result = readable => matches!(result, Ok(Ok(()))),
        }
    };
    if ready {
        monoio::spawn(serve(ctx, ClientConn::new(stream, peer, served, tls), open));
    }
}
