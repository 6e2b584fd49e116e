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

use super::connection::UpstreamConn;
use super::liveness::{self, Liveness};
use crate::config::PoolSettings;
use crate::tls::UpstreamTls;

/// A connection idle for less than this is handed out without the liveness syscall: under
/// load connections come back within microseconds, and an upstream that closes one that fast
/// without saying `Connection: close` is covered by the retry of idempotent requests.
const TRUSTED_IDLE: Duration = Duration::from_millis(20);

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

    /// Closes every idle connection whose idle timeout has passed.
    pub fn sweep(&self, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        for queue in idle.values_mut() {
            // Entries are pushed in time order per target; expired ones sit at the front
            // unless settings changed with a reload, so check them all.
            queue.retain(|entry| entry.expires > now);
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
