//! The byte streams of client and upstream connections: plain TCP, TLS over TCP, or one
//! HTTP/2 stream (see `crate::http2`), which the pipeline reads and writes like a connection.
//!
//! An enum, not a trait object: every read and write is one `match` and a static call, and
//! the plain variant adds no allocation. The TLS session and the HTTP/2 stream are boxed (one
//! allocation per TLS connection or h2 stream) so the plain variant keeps the connection
//! struct small.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::{ClientConnection, ServerConnection};

use super::stream::TlsStream;
use crate::http2::downstream::H2Downstream;
use crate::http2::upstream::H2Upstream;

/// A client connection's stream.
#[derive(Debug)]
pub enum ClientStream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS: the handshake is complete.
    Tls(Box<TlsStream<ServerConnection>>),
    /// One stream of an HTTP/2 connection.
    H2(Box<H2Downstream>),
}

/// An upstream connection's stream.
#[derive(Debug)]
pub enum UpstreamStream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS: the handshake is complete.
    Tls(Box<TlsStream<ClientConnection>>),
    /// One stream on a multiplexed HTTP/2 connection (never pooled: the connection is).
    H2(Box<H2Upstream>),
}

macro_rules! either_stream {
    ($name:ident) => {
        impl $name {
            /// The underlying socket (`None` for an HTTP/2 stream, which shares its
            /// connection's).
            pub fn tcp(&self) -> Option<&TcpStream> {
                match self {
                    Self::Plain(s) => Some(s),
                    Self::Tls(s) => Some(s.tcp()),
                    Self::H2(_) => None,
                }
            }

            /// Whether this is a TLS stream.
            pub fn is_tls(&self) -> bool {
                matches!(self, Self::Tls(_))
            }
        }

        impl AsRawFd for $name {
            /// The socket's descriptor; -1 for an HTTP/2 stream, which has none of its own
            /// (liveness checks and readiness waits never see one: such streams are neither
            /// pooled nor parked).
            fn as_raw_fd(&self) -> RawFd {
                self.tcp().map_or(-1, AsRawFd::as_raw_fd)
            }
        }

        impl AsyncReadRent for $name {
            async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    Self::Plain(s) => s.read(buf).await,
                    Self::Tls(s) => s.read(buf).await,
                    Self::H2(s) => s.read(buf).await,
                }
            }

            async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    Self::Plain(s) => s.readv(buf).await,
                    Self::Tls(s) => s.readv(buf).await,
                    Self::H2(s) => s.readv(buf).await,
                }
            }
        }

        impl AsyncWriteRent for $name {
            async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    Self::Plain(s) => s.write(buf).await,
                    Self::Tls(s) => s.write(buf).await,
                    Self::H2(s) => s.write(buf).await,
                }
            }

            async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    Self::Plain(s) => s.writev(buf).await,
                    Self::Tls(s) => s.writev(buf).await,
                    Self::H2(s) => s.writev(buf).await,
                }
            }

            async fn flush(&mut self) -> io::Result<()> {
                match self {
                    Self::Plain(s) => s.flush().await,
                    Self::Tls(s) => s.flush().await,
                    Self::H2(s) => s.flush().await,
                }
            }

            async fn shutdown(&mut self) -> io::Result<()> {
                match self {
                    Self::Plain(s) => s.shutdown().await,
                    Self::Tls(s) => s.shutdown().await,
                    Self::H2(s) => s.shutdown().await,
                }
            }
        }
    };
}

either_stream!(ClientStream);
either_stream!(UpstreamStream);
