//! A rustls session over a monoio `TcpStream`, with monoio's owned-buffer I/O traits.
//!
//! Cancel safety: every socket operation lends one of the stream's two buffers and gets it
//! back with the result, and reads never write (except the alert sent before a read fails). If the operation is dropped (a timeout), the buffer goes with it and
//! an empty one takes its place, so the stream stays usable: a later read allocates a new
//! buffer. (Bytes that the dropped read had received are lost, as they are on a plain
//! socket; callers close the connection after every timeout except the idle grace, which
//! drops a read that received nothing.)
//!
//! Memory: the session (rustls' own state and buffers) plus up to one TLS record in each
//! direction here. [`TlsStream::release_buffers`] frees the record buffers of an idle
//! connection.

use std::io::{self, BufRead};
use std::ops::{Deref, DerefMut};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, IoVecWrapper, IoVecWrapperMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::{ConnectionCommon, SideData};

/// Room for one full TLS record (16 KiB of payload plus header, padding and tag).
pub(super) const RECORD_BUF: usize = 16 * 1024 + 512;

/// A TLS connection: the socket, the rustls session and the record buffers.
#[derive(Debug)]
pub struct TlsStream<C> {
    io: TcpStream,
    session: C,
    /// TLS bytes read from the socket; `incoming[pos..]` are not yet handed to rustls.
    incoming: Vec<u8>,
    pos: usize,
    /// TLS bytes rustls produced, being written (reused between writes).
    outgoing: Vec<u8>,
}

impl<C, SD> TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    /// Wraps a connected socket and a fresh session; [`TlsStream::handshake`] comes next.
    pub fn new(io: TcpStream, session: C) -> Self {
        Self {
            io,
            session,
            incoming: Vec::new(),
            pos: 0,
            outgoing: Vec::new(),
        }
    }

    /// The underlying socket (for readiness and socket options).
    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// The rustls session (negotiated parameters, peer certificates).
    pub fn session(&self) -> &C {
        &self.session
    }

    /// Runs the handshake to completion, or fails on a TLS error or an early close.
    pub async fn handshake(&mut self) -> io::Result<()> {
        while self.session.is_handshaking() {
            if self.session.wants_write() {
                self.flush_tls().await?;
            }
            if !self.session.is_handshaking() {
                break;
            }
            if !self.session.wants_read() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS handshake stalled",
                ));
            }
            if !self.fill_tls().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                ));
            }
        }
        // The last flight (and TLS 1.3 session tickets) go out now.
        self.flush_tls().await
    }

    /// Takes the connection apart after the handshake: the socket, the session, and the TLS
    /// bytes already read but not yet processed (a client's first flight after `Finished`),
    /// for an HTTP/2 connection that does its TLS in its own adapter.
    pub fn into_parts(self) -> (TcpStream, C, Vec<u8>) {
        let leftover = self.incoming.get(self.pos..).unwrap_or_default().to_vec();
        (self.io, self.session, leftover)
    }

    /// Whether TLS bytes already read are waiting for rustls (the socket may stay quiet
    /// while the next request is already here).
    pub fn has_buffered_input(&self) -> bool {
        self.pos < self.incoming.len()
    }

    /// Frees the record buffers of an idle connection; they are allocated again on use.
    pub fn release_buffers(&mut self) {
        if !self.has_buffered_input() {
            self.incoming = Vec::new();
            self.pos = 0;
        }
        self.outgoing = Vec::new();
    }

    /// Reads from the socket (unless bytes are left over) and hands the bytes to rustls.
    /// Returns `false` at end of stream.
    async fn fill_tls(&mut self) -> io::Result<bool> {
        if !self.has_buffered_input() {
            let mut buf = std::mem::take(&mut self.incoming);
            self.pos = 0;
            buf.clear();
            buf.reserve_exact(RECORD_BUF);
            let capacity = buf.capacity();
            let (result, slice) = self.io.read(buf.slice_mut(0..capacity)).await;
            self.incoming = slice.into_inner();
            if result? == 0 {
                return Ok(false);
            }
        }
        let mut unread = &self.incoming[self.pos..];
        let fed = self.session.read_tls(&mut unread)?;
        self.pos += fed;
        if let Err(error) = self.session.process_new_packets() {
            // rustls queued an alert for the peer: send it before failing.
            let _ = self.flush_tls().await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(true)
    }

    /// Writes everything rustls has queued.
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            let mut out = std::mem::take(&mut self.outgoing);
            out.clear();
            self.session.write_tls(&mut out)?;
            let (result, out) = self.io.write_all(out).await;
            self.outgoing = out;
            result?;
        }
        Ok(())
    }

    /// Moves decrypted bytes into `buf`; `Ok(0)` at the end of the stream.
    async fn read_plain<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        loop {
            let mut reader = self.session.reader();
            match reader.fill_buf() {
                Ok(chunk) => {
                    // Reading from a slice copies synchronously; monoio does the raw copy.
                    let mut chunk: &[u8] = chunk;
                    let (result, buf) = chunk.read(buf).await;
                    if let Ok(n) = result {
                        reader.consume(n);
                    }
                    return (result, buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (Err(e), buf),
            }
            // Records rustls queued while reading (a key update, a warning alert) go out with
            // the next write: a read never writes, so a dropped read (the idle grace) cannot
            // cut a record in half.
            match self.fill_tls().await {
                Ok(true) => {}
                Ok(false) => return (Ok(0), buf),
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Encrypts `data` and writes it; returns how much was taken.
    async fn write_plain(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = io::Write::write(&mut self.session.writer(), data)?;
        self.flush_tls().await?;
        Ok(n)
    }
}

impl<C, SD> AsyncReadRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read_plain(buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let wrapped = match IoVecWrapperMut::new(buf) {
            Ok(wrapped) => wrapped,
            Err(buf) => return (Ok(0), buf),
        };
        let (result, wrapped) = self.read_plain(wrapped).await;
        (result, wrapped.into_inner())
    }
}

impl<C, SD> AsyncWriteRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let result = self.write_plain(crate::io_buf::io_buf_bytes(&buf)).await;
        (result, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let wrapped = match IoVecWrapper::new(buf) {
            Ok(wrapped) => wrapped,
            Err(buf) => return (Ok(0), buf),
        };
        let (result, wrapped) = self.write(wrapped).await;
        (result, wrapped.into_inner())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await?;
        self.io.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.send_close_notify();
        self.flush_tls().await?;
        self.io.shutdown().await
    }
}
