//! One upstream connection (plain TCP or TLS) with its input buffer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::io_buf::ReadBuf;
use crate::tls::{UpstreamStream, UpstreamTls};

/// Initial input buffer of an upstream connection; it grows while relaying large bodies.
pub const UPSTREAM_BUF: usize = 8 * 1024;

/// A connection to one target, fresh or taken from the pool.
#[derive(Debug)]
pub struct UpstreamConn {
    /// The socket, or the TLS session over it.
    pub stream: UpstreamStream,
    /// Bytes read from the upstream and not yet relayed.
    pub buf: ReadBuf,
    /// The target.
    pub addr: SocketAddr,
    /// Whether the connection served an earlier request (a failure on it may be retried).
    pub reused: bool,
    /// The TLS configuration the session was made with (`None`: plain). Pools are keyed by
    /// target address, which groups with different TLS settings may share.
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
}

impl UpstreamConn {
    /// Whether this connection was made the way `tls` asks for (plain, or TLS with that very
    /// configuration: the same roots, client certificate and server name policy). A reload
    /// compiles new configurations, so connections pooled before it are not handed out.
    pub fn made_for(&self, tls: Option<&UpstreamTls>) -> bool {
        match (&self.tls_config, tls) {
            (None, None) => true,
            (Some(mine), Some(wanted)) => Arc::ptr_eq(mine, &wanted.config),
            _ => false,
        }
    }
}

/// Why a connection to a target could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connect did not complete within the timeout.
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    /// The connect failed.
    #[error("connect to {addr} failed: {source}")]
    Io {
        /// Target.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The TCP connect completed, but the TLS handshake did not within the timeout.
    #[error("TLS handshake with {0} timed out")]
    HandshakeTimeout(SocketAddr),
    /// The TLS handshake failed (untrusted or mismatched certificate, protocol error).
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// Target.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Opens a fresh connection to `addr` within `timeout` (TCP connect and, with `tls`, the
/// handshake together).
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&UpstreamTls>,
) -> Result<UpstreamConn, ConnectError> {
    let deadline = std::time::Instant::now() + timeout;
    let connected = monoio::time::timeout_at(deadline.into(), TcpStream::connect_addr(addr));
    let tcp = match connected.await {
        Err(_) => return Err(ConnectError::Timeout(addr)),
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(stream)) => stream,
    };
    // Heads and small bodies go out in one write each; Nagle would only add latency.
    let _ = tcp.set_nodelay(true);
    let stream = match tls {
        None => UpstreamStream::Plain(tcp),
        Some(tls) => {
            let handshake = crate::tls::upstream::handshake(tcp, tls, addr);
            match monoio::time::timeout_at(deadline.into(), handshake).await {
                Err(_) => return Err(ConnectError::HandshakeTimeout(addr)),
                Ok(Err(source)) => return Err(ConnectError::Tls { addr, source }),
                Ok(Ok(session)) => UpstreamStream::Tls(Box::new(session)),
            }
        }
    };
    Ok(UpstreamConn {
        stream,
        buf: ReadBuf::with_capacity(UPSTREAM_BUF),
        addr,
        reused: false,
        tls_config: tls.map(|tls| Arc::clone(&tls.config)),
    })
}
