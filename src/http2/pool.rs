//! A worker's HTTP/2 upstream connections: a small set of multiplexed connections per target.
//!
//! A stream goes on the open connection with the fewest streams in flight while that is
//! under its cap (the group's `max_streams_per_connection`, lowered by the target's
//! `SETTINGS_MAX_CONCURRENT_STREAMS`); when every connection is full and fewer than
//! `max_connections_per_target` are open or opening, another is opened, and the streams that
//! arrive meanwhile wait for it (up to the streams it will take) instead of opening more. A
//! connection the target sent `GOAWAY` on, or that stopped answering PINGs, takes no new
//! stream and closes when its streams are done. Each connection is driven by a task of its own on the worker.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use ahash::AHashMap;
use bytes::Bytes;
use h2::client::SendRequest;

use super::settings::{UpstreamHttp2, UpstreamProtocol};
use super::wire::{self, Transport};
use crate::tls::{UpstreamStream, UpstreamTls};
use crate::upstream::{connect, ConnectError};

/// One multiplexed connection to a target.
#[derive(Debug)]
pub struct H2Conn {
    sender: RefCell<SendRequest<Bytes>>,
    /// Streams in flight on it.
    active: Cell<usize>,
    /// Whether it still takes streams.
    open: Cell<bool>,
    /// The TLS configuration it was made with (a reload makes new ones).
    tls_config: Option<Arc<rustls::ClientConfig>>,
}

impl H2Conn {
    /// Stops giving the connection new streams.
    pub fn retire(&self) {
        self.open.set(false);
    }

    fn usable(&self, tls: Option<&UpstreamTls>) -> bool {
        let same_tls = match (&self.tls_config, tls) {
            (None, None) => true,
            (Some(mine), Some(wanted)) => Arc::ptr_eq(mine, &wanted.config),
            _ => false,
        };
        self.open.get() && same_tls
    }

    /// A handle to send a request on, once the connection may open another stream.
    pub async fn ready(&self) -> Result<SendRequest<Bytes>, h2::Error> {
        let mut sender = self.sender.borrow().clone();
        let ready = poll_fn(|cx| sender.poll_ready(cx)).await;
        if ready.is_err() {
            self.retire();
        }
        ready.map(|()| sender)
    }
}

/// A stream's claim on its connection: counted in flight until dropped.
#[derive(Debug)]
pub struct StreamLease {
    conn: Rc<H2Conn>,
}

impl StreamLease {
    /// The connection the stream runs on.
    pub fn conn(&self) -> &Rc<H2Conn> {
        &self.conn
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.conn
            .active
            .set(self.conn.active.get().saturating_sub(1));
    }
}

/// Why no stream could be had.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Connecting (TCP or TLS) failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The target did not agree to HTTP/2 (ALPN) or failed the h2 handshake.
    #[error("HTTP/2 handshake with {addr} failed: {reason}")]
    Handshake {
        /// Target.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
}

/// Settings of one group's connections, as the pool needs them.
#[derive(Debug, Clone, Copy)]
pub struct Dial<'a> {
    /// h2 (TLS) or h2c.
    pub protocol: UpstreamProtocol,
    /// TLS settings of an h2 group.
    pub tls: Option<&'a UpstreamTls>,
    /// The group's connect timeout.
    pub connect_timeout: Duration,
    /// The group's HTTP/2 settings.
    pub settings: UpstreamHttp2,
    /// An idle connection (no streams) closes after this.
    pub idle_timeout: Duration,
}

/// A target's connections, and the opens under way.
#[derive(Debug, Default)]
struct Target {
    conns: Vec<Rc<H2Conn>>,
    /// Connections being opened (connect and handshake under way).
    opening: usize,
    /// Leases waiting for one of those.
    waiting: usize,
    /// Opens finished (with or without a connection): a waiting lease looks again after one.
    finished: u64,
    /// Whether the last open to finish failed.
    last_failed: bool,
    /// The tasks of the waiting leases.
    wakers: Vec<Waker>,
}

/// What a lease does next.
enum Pick {
    /// Take a stream on this connection.
    Conn(Rc<H2Conn>),
    /// Open a connection (counted in `Target::opening`).
    Open,
    /// Wait for a connection being opened: it will have room.
    Wait,
}

/// The worker's HTTP/2 upstream connections.
#[derive(Debug, Default)]
pub struct H2Pool {
    targets: RefCell<AHashMap<SocketAddr, Target>>,
    /// Buffers of finished upstream streams, for the next ones.
    spares: crate::spares::Spares<super::upstream::StreamBuffers>,
}

impl H2Pool {
    /// The spare buffers of upstream streams (which count the streams open).
    pub fn spares(&self) -> &crate::spares::Spares<super::upstream::StreamBuffers> {
        &self.spares
    }

    /// Frees the spare stream buffers beyond the recent demand (once per sweep interval).
    pub fn sweep_spares(&self) {
        self.spares.sweep();
    }

    /// A stream's lease on a connection to `addr`, opening one if every open connection is
    /// full and the cap allows. `exclude` is a connection that just failed the stream.
    ///
    /// Leases that arrive while a connection is being opened wait for it rather than open
    /// one each (a burst of streams would otherwise open a connection per stream, past
    /// `max_connections_per_target`), as many as it will take; after a failed open, each
    /// waiting lease tries a connection of its own.
    pub async fn lease(
        &self,
        addr: SocketAddr,
        dial: Dial<'_>,
        exclude: Option<&Rc<H2Conn>>,
    ) -> Result<StreamLease, OpenError> {
        let mut after_failure = false;
        loop {
            match self.pick(addr, dial, exclude, after_failure) {
                Pick::Conn(conn) => {
                    conn.active.set(conn.active.get() + 1);
                    return Ok(StreamLease { conn });
                }
                // Boxed: dialing (TCP, TLS and HTTP/2 handshakes) is ~3.4 KB of future, and
                // rare; inline, it would be laid out, and copied, in every future that
                // leases, which includes every read and write of every upstream stream
                // (`UpstreamStream`'s, HTTP/1.1 ones too).
                Pick::Open => return Box::pin(self.open_counted(addr, dial)).await,
                Pick::Wait => after_failure = self.wait_for_open(addr).await,
            }
        }
    }

    /// The least loaded usable connection with room; else an open if none is coming with
    /// room and the cap allows one; else the least loaded one (h2 queues the stream until
    /// one ends).
    fn pick(
        &self,
        addr: SocketAddr,
        dial: Dial<'_>,
        exclude: Option<&Rc<H2Conn>>,
        after_failure: bool,
    ) -> Pick {
        let mut targets = self.targets.borrow_mut();
        let target = targets.entry(addr).or_default();
        target.conns.retain(|c| c.open.get());
        let usable = || {
            target
                .conns
                .iter()
                .filter(|c| c.usable(dial.tls))
                .filter(|c| !exclude.is_some_and(|e| Rc::ptr_eq(e, c)))
        };
        let cap = dial.settings.max_streams_per_connection.max(1);
        let least = usable().min_by_key(|c| c.active.get());
        if let Some(least) = least {
            let peer_cap = least.sender.borrow().current_max_send_streams();
            if least.active.get() < cap.min(peer_cap.max(1)) {
                return Pick::Conn(Rc::clone(least));
            }
        }
        if after_failure {
            target.opening += 1;
            return Pick::Open;
        }
        if target.waiting < target.opening.saturating_mul(cap) {
            return Pick::Wait;
        }
        let max = dial.settings.max_connections_per_target.max(1);
        if usable().count() + target.opening < max {
            target.opening += 1;
            return Pick::Open;
        }
        match least {
            Some(least) => Pick::Conn(Rc::clone(least)),
            None => Pick::Wait,
        }
    }

    /// Opens a connection for a lease (counted in `opening` until it is in the list or
    /// failed, also when the lease is dropped meanwhile).
    async fn open_counted(
        &self,
        addr: SocketAddr,
        dial: Dial<'_>,
    ) -> Result<StreamLease, OpenError> {
        let mut opening = Opening {
            pool: self,
            addr,
            failed: false,
        };
        let conn = match open(addr, dial).await {
            Ok(conn) => conn,
            Err(e) => {
                opening.failed = true;
                return Err(e);
            }
        };
        conn.active.set(1);
        if let Some(target) = self.targets.borrow_mut().get_mut(&addr) {
            target.conns.retain(|c| c.open.get());
            target.conns.push(Rc::clone(&conn));
        }
        drop(opening);
        Ok(StreamLease { conn })
    }

    /// Waits until an open to `addr` finished; returns whether it failed.
    async fn wait_for_open(&self, addr: SocketAddr) -> bool {
        let seen = {
            let mut targets = self.targets.borrow_mut();
            let target = targets.entry(addr).or_default();
            target.waiting += 1;
            target.finished
        };
        let _waiting = Waiting { pool: self, addr };
        poll_fn(|cx| {
            let mut targets = self.targets.borrow_mut();
            let Some(target) = targets.get_mut(&addr) else {
                return Poll::Ready(false);
            };
            if target.finished != seen {
                return Poll::Ready(target.last_failed);
            }
            target.wakers.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Connections held for `addr` (open or draining).
    pub fn connections(&self, addr: SocketAddr) -> usize {
        self.targets
            .borrow()
            .get(&addr)
            .map_or(0, |t| t.conns.len())
    }
}

/// An open under way, counted in its target's `opening`; dropping it ends the count and
/// wakes the leases that wait.
struct Opening<'a> {
    pool: &'a H2Pool,
    addr: SocketAddr,
    failed: bool,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        let wakers = {
            let mut targets = self.pool.targets.borrow_mut();
            let Some(target) = targets.get_mut(&self.addr) else {
                return;
            };
            target.opening = target.opening.saturating_sub(1);
            target.finished = target.finished.wrapping_add(1);
            target.last_failed = self.failed;
            std::mem::take(&mut target.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

/// A lease waiting for an open, counted in its target's `waiting` while it waits.
struct Waiting<'a> {
    pool: &'a H2Pool,
    addr: SocketAddr,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(target) = self.pool.targets.borrow_mut().get_mut(&self.addr) {
            target.waiting = target.waiting.saturating_sub(1);
        }
    }
}

/// Opens a connection, runs the h2 handshake and starts its driver task.
async fn open(addr: SocketAddr, dial: Dial<'_>) -> Result<Rc<H2Conn>, OpenError> {
    let tls = match dial.protocol {
        UpstreamProtocol::H2 => dial.tls,
        _ => None,
    };
    let conn = connect(addr, dial.connect_timeout, tls).await?;
    let tls_config = conn.tls_config.clone();
    let transport = match conn.stream {
        UpstreamStream::Plain(tcp) => Transport::Plain(tcp),
        UpstreamStream::Tls(tls) => {
            let (tcp, session, leftover) = tls.into_parts();
            if session.alpn_protocol() != Some(b"h2") {
                return Err(OpenError::Handshake {
                    addr,
                    reason: "the target did not negotiate h2 (ALPN)".into(),
                });
            }
            Transport::Tls {
                tcp,
                session: Box::new(rustls::Connection::Client(session)),
                leftover,
            }
        }
        UpstreamStream::H2(_) => unreachable_transport(addr)?,
    };
    let (io, pumps) = wire::wire(transport);
    // Once per new connection, not per request: a channel is fine here.
    let (handshake_tx, handshake_rx) = flume::bounded(1);
    let settings = dial.settings;
    let idle_timeout = dial.idle_timeout;
    let connect_timeout = dial.connect_timeout;
    let driver = async move {
        let builder = settings.client_builder();
        let handshake = monoio::time::timeout(connect_timeout, builder.handshake(io)).await;
        let (sender, mut connection) = match handshake {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                let _ = handshake_tx.try_send(Err(e.to_string()));
                return;
            }
            Err(_) => {
                let _ = handshake_tx.try_send(Err("timed out".to_string()));
                return;
            }
        };
        let ping = connection.ping_pong();
        let conn = Rc::new(H2Conn {
            sender: RefCell::new(sender),
            active: Cell::new(0),
            open: Cell::new(true),
            tls_config,
        });
        let _ = handshake_tx.try_send(Ok(Rc::clone(&conn)));
        let watched = Rc::clone(&conn);
        monoio::select! {
            result = &mut connection => {
                if let Err(e) = result {
                    log::debug!("{addr}: HTTP/2 upstream connection ended: {e}");
                }
            }
            () = liveness(&watched, ping, settings, idle_timeout) => {
                log::debug!("{addr}: HTTP/2 upstream connection closed (ping timeout or idle)");
            }
        }
        watched.retire();
    };
    monoio::spawn(pumps.run_with(driver));
    match handshake_rx.recv_async().await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(reason)) => Err(OpenError::Handshake { addr, reason }),
        Err(_) => Err(OpenError::Handshake {
            addr,
            reason: "connection closed".into(),
        }),
    }
}

fn unreachable_transport(addr: SocketAddr) -> Result<Transport, OpenError> {
    Err(OpenError::Handshake {
        addr,
        reason: "unexpected stream type".into(),
    })
}

/// PINGs the target every `ping_interval` and returns when one goes unanswered for
/// `ping_timeout`, or when the connection had no stream for `idle_timeout`.
async fn liveness(
    conn: &H2Conn,
    ping: Option<h2::PingPong>,
    settings: UpstreamHttp2,
    idle_timeout: Duration,
) {
    let mut ping = ping;
    let mut idle_for = Duration::ZERO;
    let tick = settings
        .ping_interval
        .min(idle_timeout)
        .max(Duration::from_millis(10));
    loop {
        monoio::time::sleep(tick).await;
        if conn.active.get() == 0 {
            idle_for += tick;
            if idle_for >= idle_timeout {
                return;
            }
        } else {
            idle_for = Duration::ZERO;
        }
        if let Some(ping) = &mut ping {
            let pong = ping.ping(h2::Ping::opaque());
            match monoio::time::timeout(settings.ping_timeout, pong).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
        }
    }
}
