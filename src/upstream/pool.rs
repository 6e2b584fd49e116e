//! A worker's keep-alive pool: idle connections per target, newest first.
//!
//! Invariants: a connection is in the pool only between two exchanges, after its response
//! was read completely; checkout hands out the most recently used connection that is neither
//! expired nor seen closed by the upstream (see [`TRUSTED_IDLE`]); the pool
//! never holds more than `max_idle_per_target` per target (the oldest go first).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ahash::AHashMap;

use super::connection::{UpstreamConn, UPSTREAM_BUF};
use super::liveness::{self, Liveness};
use crate::config::PoolSettings;
use crate::tls::UpstreamTls;

/// A connection idle for less than this is handed out without the liveness syscall: under
/// load connections come back within microseconds, and an upstream that closes one that fast
/// without saying `Connection: close` is covered by the retry of idempotent requests.
const TRUSTED_IDLE: Duration = Duration::from_millis(20);

/// A connection idle in the pool for this long gives its read buffer back at the next sweep
/// (see [`Pool::sweep`]); checkout gives it a new one. Under load connections come back
/// within microseconds and keep theirs; the ones a burst left behind give theirs back within
/// a sweep interval.
const BUFFER_KEPT: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Idle {
    conn: UpstreamConn,
    since: Instant,
    expires: Instant,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        self.expires > now
            && (now.duration_since(self.since) < TRUSTED_IDLE
                || liveness::check(&self.conn.stream) == Liveness::Open)
    }
}

/// Idle upstream connections of one worker, keyed by target address.
#[derive(Debug, Default)]
pub struct Pool {
    idle: RefCell<AHashMap<SocketAddr, VecDeque<Idle>>>,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest usable idle connection to `addr`, if any; stale ones found on the way are
    /// closed.
    pub fn checkout(&self, addr: SocketAddr) -> Option<UpstreamConn> {
        self.checkout_for(addr, None, Instant::now())
    }

    /// [`Pool::checkout`] of a connection made for `tls` (see [`UpstreamConn::made_for`]);
    /// idle connections made otherwise are closed on the way. `now` is a fresh clock reading
    /// (idle connections past their timeout at `now` are closed).
    pub fn checkout_for(
        &self,
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
        now: Instant,
    ) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let queue = idle.get_mut(&addr)?;
        while let Some(entry) = queue.pop_back() {
            if entry.usable(now) && entry.conn.made_for(tls) {
                let mut conn = entry.conn;
                conn.reused = true;
                conn.buf.grow_to(UPSTREAM_BUF);
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose exchange completed cleanly.
    pub fn checkin(&self, conn: UpstreamConn, settings: &PoolSettings) {
        // An HTTP/2 stream is done with its exchange; its connection stays in the h2 pool,
        // and its input buffer goes back with the stream's other buffers for the next one.
        if let crate::tls::UpstreamStream::H2(mut stream) = conn.stream {
            stream.keep_read_buf(conn.buf);
            return;
        }
        if settings.max_idle_per_target == 0 || !conn.buf.is_empty() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let queue = idle.entry(conn.addr).or_default();
        while queue.len() >= settings.max_idle_per_target {
            queue.pop_front();
        }
        let now = Instant::now();
        queue.push_back(Idle {
            conn,
            since: now,
            expires: now + settings.idle_timeout,
        });
    }

    /// Closes every idle connection whose idle timeout has passed, and frees the read buffer
    /// of each one idle for [`BUFFER_KEPT`] or more: a burst of requests can leave hundreds of
    /// connections in the pool, and their buffers would outlive it.
    pub fn sweep(&self, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        for queue in idle.values_mut() {
            // Entries are pushed in time order per target; expired ones sit at the front
            // unless settings changed with a reload, so check them all.
            queue.retain(|entry| entry.expires > now);
            for entry in queue.iter_mut() {
                if now.saturating_duration_since(entry.since) >= BUFFER_KEPT {
                    // Empty (checkin keeps only those): this frees it all.
                    entry.conn.buf.shrink_to(0);
                }
            }
        }
        idle.retain(|_, queue| !queue.is_empty());
    }

    /// Idle connections held for `addr`.
    pub fn idle_count(&self, addr: SocketAddr) -> usize {
        self.idle.borrow().get(&addr).map_or(0, VecDeque::len)
    }
}

/// How often a worker sweeps its pool for expired idle connections.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io_buf::ReadBuf;
    use crate::tls::UpstreamStream;

    fn settings() -> PoolSettings {
        PoolSettings {
            max_idle_per_target: 8,
            idle_timeout: Duration::from_secs(60),
        }
    }

    fn buffer_capacities(pool: &Pool, addr: SocketAddr) -> Vec<usize> {
        pool.idle.borrow()[&addr]
            .iter()
            .map(|entry| entry.conn.buf.capacity())
            .collect()
    }

    /// A connection idle past `BUFFER_KEPT` loses its read buffer at the sweep, a recent one
    /// keeps it, and checkout hands either out with a full-size buffer.
    #[test]
    fn long_idle_connections_give_their_buffers_back() {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("legacy runtime")
            .block_on(async {
                let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("address");
                let pool = Pool::new();
                let mut accepted = Vec::new();
                for _ in 0..2 {
                    let stream = monoio::net::TcpStream::connect(addr)
                        .await
                        .expect("connect");
                    accepted.push(listener.accept().await.expect("accept"));
                    let conn = UpstreamConn {
                        stream: UpstreamStream::Plain(stream),
                        buf: ReadBuf::with_capacity(UPSTREAM_BUF),
                        addr,
                        reused: false,
                        tls_config: None,
                    };
                    pool.checkin(conn, &settings());
                }
                let now = Instant::now();
                pool.sweep(now);
                assert_eq!(buffer_capacities(&pool, addr), [UPSTREAM_BUF, UPSTREAM_BUF]);
                // The older entry sits at the front: age only it past the threshold.
                pool.idle.borrow_mut().get_mut(&addr).expect("queue")[0].since = now - BUFFER_KEPT;
                pool.sweep(now);
                assert_eq!(buffer_capacities(&pool, addr), [0, UPSTREAM_BUF]);
                pool.sweep(now + BUFFER_KEPT);
                assert_eq!(buffer_capacities(&pool, addr), [0, 0]);
                for _ in 0..2 {
                    let conn = pool
                        .checkout_for(addr, None, now + BUFFER_KEPT)
                        .expect("a pooled connection");
                    assert!(conn.buf.capacity() >= UPSTREAM_BUF);
                }
                drop(accepted);
            });
    }
}
