//! The two ends of a tunnel taken apart into read and write halves, so that both directions
//! are copied at the same time inside one task: plain sockets through monoio's own split,
//! TLS sessions through `tls::split` (the session shared between the halves).
//!
//! An enum, like `tls::transport`: every read and write is one `match` and a static call.

use std::io;

use monoio::io::{AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use rustls::{ClientConnection, ServerConnection};

use crate::io_buf::ReadBuf;
use crate::tls::split::{split, TlsReadHalf, TlsWriteHalf};
use crate::tls::{ClientStream, UpstreamStream};

/// The reading half of one end.
#[derive(Debug)]
pub enum ReadHalf {
    /// A plain socket.
    Plain(OwnedReadHalf<TcpStream>),
    /// A client's TLS session.
    ServerTls(TlsReadHalf<ServerConnection>),
    /// An upstream's TLS session.
    ClientTls(TlsReadHalf<ClientConnection>),
}

/// The writing half of one end.
#[derive(Debug)]
pub enum WriteHalf {
    /// A plain socket.
    Plain(OwnedWriteHalf<TcpStream>),
    /// A client's TLS session.
    ServerTls(TlsWriteHalf<ServerConnection>),
    /// An upstream's TLS session.
    ClientTls(TlsWriteHalf<ClientConnection>),
}

/// A stream that is not a socket of its own (an HTTP/2 stream) cannot be tunnelled.
#[derive(Debug, thiserror::Error)]
#[error("an HTTP/2 stream cannot carry a tunnel")]
pub struct NotTunnelable;

/// Splits the client's stream.
pub fn client(stream: ClientStream) -> Result<(ReadHalf, WriteHalf), NotTunnelable> {
    match stream {
        ClientStream::Plain(tcp) => Ok(plain(tcp)),
        ClientStream::Tls(tls) => {
            let (r, w) = split(*tls);
            Ok((ReadHalf::ServerTls(r), WriteHalf::ServerTls(w)))
        }
        ClientStream::H2(_) => Err(NotTunnelable),
    }
}

/// Splits the upstream's stream.
pub fn upstream(stream: UpstreamStream) -> Result<(ReadHalf, WriteHalf), NotTunnelable> {
    match stream {
        UpstreamStream::Plain(tcp) => Ok(plain(tcp)),
        UpstreamStream::Tls(tls) => {
            let (r, w) = split(*tls);
            Ok((ReadHalf::ClientTls(r), WriteHalf::ClientTls(w)))
        }
        UpstreamStream::H2(_) => Err(NotTunnelable),
    }
}

fn plain(tcp: TcpStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = tcp.into_split();
    (ReadHalf::Plain(r), WriteHalf::Plain(w))
}

impl ReadHalf {
    /// Reads once into `buf` (growing it up to `max`); `Ok(0)` at the end of the stream.
    pub async fn read_into(&mut self, buf: &mut ReadBuf, max: usize) -> io::Result<usize> {
        match self {
            ReadHalf::Plain(r) => buf.fill(r, max).await,
            ReadHalf::ServerTls(r) => r.read_into(buf, max).await,
            ReadHalf::ClientTls(r) => r.read_into(buf, max).await,
        }
    }
}

impl WriteHalf {
    /// Writes the first `n` bytes of `buf` and consumes them.
    pub async fn write_from(&mut self, buf: &mut ReadBuf, n: usize) -> io::Result<()> {
        match self {
            WriteHalf::Plain(w) => buf.write_to(w, n).await,
            WriteHalf::ServerTls(w) => {
                w.write_all(&buf.data()[..n]).await?;
                buf.consume(n);
                Ok(())
            }
            WriteHalf::ClientTls(w) => {
                w.write_all(&buf.data()[..n]).await?;
                buf.consume(n);
                Ok(())
            }
        }
    }

    /// Writes all of `bytes` (a close frame of the gateway's own).
    pub async fn write_bytes(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        match self {
            WriteHalf::Plain(w) => {
                let (result, _) = monoio::io::AsyncWriteRentExt::write_all(w, bytes).await;
                result.map(|_| ())
            }
            WriteHalf::ServerTls(w) => w.write_all(&bytes).await,
            WriteHalf::ClientTls(w) => w.write_all(&bytes).await,
        }
    }

    /// Ends this direction: a TCP half-close (after TLS `close_notify`).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(w) => w.shutdown().await,
            WriteHalf::ServerTls(w) => w.shutdown().await,
            WriteHalf::ClientTls(w) => w.shutdown().await,
        }
    }
}
