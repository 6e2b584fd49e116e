//! A TLS stream split into a read half and a write half that run at the same time, for a
//! tunnel that copies both directions at once.
//!
//! The socket is split with monoio's own `into_split`; the rustls session is shared in an
//! `Rc<RefCell<_>>` and borrowed only between awaits (reading records in, taking plaintext
//! out, encrypting, taking records out), never across one. Records rustls queues while
//! reading (a key update answer, an alert) go out with the write half's next write.
//! Nothing here is `unsafe`: plaintext is copied out of rustls into the caller's
//! [`ReadBuf`] and in from a byte slice.

use std::cell::RefCell;
use std::io::{self, BufRead};
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf};
use monoio::net::TcpStream;
use rustls::{ConnectionCommon, SideData};

use super::stream::{TlsStream, RECORD_BUF};
use crate::io_buf::ReadBuf;

/// The reading half: TLS records in, plaintext out.
#[derive(Debug)]
pub struct TlsReadHalf<C> {
    io: OwnedReadHalf<TcpStream>,
    session: Rc<RefCell<C>>,
    /// TLS bytes read from the socket; `incoming[pos..]` are not yet handed to rustls.
    incoming: Vec<u8>,
    pos: usize,
}

/// The writing half: plaintext in, TLS records out.
#[derive(Debug)]
pub struct TlsWriteHalf<C> {
    io: OwnedWriteHalf<TcpStream>,
    session: Rc<RefCell<C>>,
    /// TLS bytes rustls produced, being written (reused between writes).
    outgoing: Vec<u8>,
}

/// Splits a stream whose handshake is complete; bytes it had read and not yet handed to
/// rustls stay with the read half.
pub fn split<C, SD>(stream: TlsStream<C>) -> (TlsReadHalf<C>, TlsWriteHalf<C>)
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    let (io, session, incoming) = stream.into_parts();
    let (read, write) = monoio::io::Splitable::into_split(io);
    let session = Rc::new(RefCell::new(session));
    (
        TlsReadHalf {
            io: read,
            session: Rc::clone(&session),
            incoming,
            pos: 0,
        },
        TlsWriteHalf {
            io: write,
            session,
            outgoing: Vec::new(),
        },
    )
}

impl<C, SD> TlsReadHalf<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    /// Appends decrypted bytes to `buf` (growing it up to `max`); `Ok(0)` at the end of the
    /// stream (or when `buf` is full at `max`, which callers avoid).
    pub async fn read_into(&mut self, buf: &mut ReadBuf, max: usize) -> io::Result<usize> {
        loop {
            {
                let mut session = self.session.borrow_mut();
                let mut reader = session.reader();
                match reader.fill_buf() {
                    Ok(chunk) => {
                        let n = buf.append(chunk, max);
                        reader.consume(n);
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if !self.fill_tls().await? {
                return Ok(0);
            }
        }
    }

    /// Reads from the socket (unless bytes are left over) and hands the bytes to rustls.
    /// Returns `false` at end of stream.
    async fn fill_tls(&mut self) -> io::Result<bool> {
        if self.pos >= self.incoming.len() {
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
        let mut session = self.session.borrow_mut();
        let mut unread = &self.incoming[self.pos..];
        let fed = session.read_tls(&mut unread)?;
        self.pos += fed;
        session
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(true)
    }
}

impl<C, SD> TlsWriteHalf<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    /// Encrypts and writes all of `data`.
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = io::Write::write(&mut self.session.borrow_mut().writer(), data)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
            self.flush_tls().await?;
        }
        // Records queued by the read half (a key update answer) go out even with no data.
        self.flush_tls().await
    }

    /// Sends `close_notify` and shuts the socket's write side.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.session.borrow_mut().send_close_notify();
        self.flush_tls().await?;
        self.io.shutdown().await
    }

    /// Writes everything rustls has queued.
    async fn flush_tls(&mut self) -> io::Result<()> {
        loop {
            let mut out = std::mem::take(&mut self.outgoing);
            out.clear();
            {
                let mut session = self.session.borrow_mut();
                if !session.wants_write() {
                    self.outgoing = out;
                    return Ok(());
                }
                session.write_tls(&mut out)?;
            }
            let (result, out) = self.io.write_all(out).await;
            self.outgoing = out;
            result?;
        }
    }
}
