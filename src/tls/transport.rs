//! The byte streams of client and upstream connections: plain TCP or TLS over TCP.
//!
//! An enum, not a trait object: every read and write is one `match` and a static call, and
//! the plain variant adds no allocation. The TLS session is boxed (one allocation per TLS
//! connection) so the plain variant keeps the connection struct small.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::{ClientConnection, ServerConnection};

use super::stream::TlsStream;

/// A client connection's stream.
#[derive(Debug)]
pub enum ClientStream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS: the handshake is complete.
    Tls(Box<TlsStream<ServerConnection>>),
}

/// An upstream connection's stream.
#[derive(Debug)]
pub enum UpstreamStream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS: the handshake is complete.
    Tls(Box<TlsStream<ClientConnection>>),
}

macro_rules! either_stream {
    ($name:ident) => {
        impl $name {
            /// The underlying socket.
            pub fn tcp(&self) -> &TcpStream {
                match self {
                    Self::Plain(s) => s,
                    Self::Tls(s) => s.tcp(),
                }
            }

            /// Whether this is a TLS stream.
            pub fn is_tls(&self) -> bool {
                matches!(self, Self::Tls(_))
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.tcp().as_raw_fd()
            }
        }

        impl AsyncReadRent for $name {
            async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    Self::Plain(s) => s.read(buf).await,
                    Self::Tls(s) => s.read(buf).await,
                }
            }

            async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    Self::Plain(s) => s.readv(buf).await,
                    Self::Tls(s) => s.readv(buf).await,
                }
            }
        }

        impl AsyncWriteRent for $name {
            async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    Self::Plain(s) => s.write(buf).await,
                    Self::Tls(s) => s.write(buf).await,
                }
            }

            async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    Self::Plain(s) => s.writev(buf).await,
                    Self::Tls(s) => s.writev(buf).await,
                }
            }

            async fn flush(&mut self) -> io::Result<()> {
                match self {
                    Self::Plain(s) => s.flush().await,
                    Self::Tls(s) => s.flush().await,
                }
            }

            async fn shutdown(&mut self) -> io::Result<()> {
                match self {
                    Self::Plain(s) => s.shutdown().await,
                    Self::Tls(s) => s.shutdown().await,
                }
            }
        }
    };
}

either_stream!(ClientStream);
either_stream!(UpstreamStream);
