//! The buffered duplex adapter between monoio's owned-buffer I/O and the poll-based
//! `tokio::io` traits the h2 crate is written against.
//!
//! h2 may offer different bytes to a `poll_write` that returned `Pending` (it re-encodes with
//! a higher-priority frame first), which a completion-based socket cannot honour: a buffer
//! handed to io_uring is gone. So h2 never touches the socket. It reads from and writes to
//! two bounded buffers in [`Wire`]; two pumps owned by the connection's task move bytes
//! between those buffers and the socket with monoio's owned-buffer reads and writes:
//!
//! ```text
//!   socket ─read pump─▶ inbound  ─poll_read──▶ h2
//!   socket ◀write pump─ outbound ◀poll_write── h2
//! ```
//!
//! `poll_write` copies into `outbound` while it is under [`MAX_OUTBOUND`] and returns
//! `Pending` (taking nothing) beyond, so a `Pending` never loses bytes; `poll_flush` is ready
//! once the write pump took everything. The read pump stops reading while h2 leaves more than
//! [`MAX_INBOUND`] unread: backpressure in both directions, memory bounded per connection.
//!
//! TLS is done here too, so one adapter serves plain TCP, TLS listeners and TLS upstreams: the
//! rustls session sits between the pumps and the buffers (decrypt after a read, encrypt before
//! a write) and is only ever borrowed between two awaits. Everything is one thread and one
//! task: `Rc<RefCell<_>>` and the task's own waker, no locks.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{self, BufRead, Write};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use crate::server::fairness::Budget;

/// Bytes one socket read asks for: a full TLS record, or a good share of a socket buffer.
const READ_CHUNK: usize = 16 * 1024 + 512;
/// The read pump pauses while h2 leaves this much unread.
pub const MAX_INBOUND: usize = 64 * 1024;
/// `poll_write` refuses more while this much waits for the write pump.
pub const MAX_OUTBOUND: usize = 64 * 1024;
/// Rounds of pumps and h2 one poll of the connection may run before it wakes itself instead.
const POLL_ROUNDS: usize = 4;
/// How long the write pump may keep flushing after the connection's work ended (a GOAWAY, the
/// last frames) before the socket is dropped.
const CLOSING_FLUSH: Duration = Duration::from_secs(1);

/// The socket under an HTTP/2 connection.
pub enum Transport {
    /// Plain TCP (h2c, or an h2c upstream).
    Plain(TcpStream),
    /// TLS whose handshake is complete; `leftover` holds TLS bytes already read from the
    /// socket and not yet handed to the session (the client's first flight may follow its
    /// `Finished` in the same segment).
    Tls {
        /// The socket.
        tcp: TcpStream,
        /// The session, client or server side.
        session: Box<rustls::Connection>,
        /// TLS bytes read but not yet processed.
        leftover: Vec<u8>,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Plain(_) => f.write_str("Transport::Plain"),
            Transport::Tls { .. } => f.write_str("Transport::Tls"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Open,
    Requested,
    Done,
}

/// The state h2 and the pumps share.
#[derive(Debug)]
struct Shared {
    inbound: Vec<u8>,
    in_pos: usize,
    in_eof: bool,
    in_error: Option<io::Error>,
    outbound: Vec<u8>,
    out_error: Option<io::ErrorKind>,
    shutdown: Shutdown,
    /// h2 is waiting for input.
    reader: Option<Waker>,
    /// h2 is waiting for room, a flush or the shutdown.
    writer: Option<Waker>,
    /// The connection task (both pumps run in it).
    task: Option<Waker>,
    read_parked: bool,
    write_parked: bool,
    /// The connection's task is being polled: a wake of it (a pump, or h2 on its own waker)
    /// only asks for another round within that poll (see [`Pumps::run_with`]).
    polling: bool,
    /// Another round was asked for during this poll.
    repoll: bool,
}

impl Shared {
    fn unread(&self) -> usize {
        self.inbound.len() - self.in_pos
    }

    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            self.wake(w);
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            self.wake(w);
        }
    }

    /// Wakes `w`, or, if it is the connection's task and that task is being polled, asks
    /// for another round of the poll instead (no self-wake, no re-queued task).
    fn wake(&mut self, w: Waker) {
        if self.polling && self.task.as_ref().is_some_and(|t| t.will_wake(&w)) {
            self.repoll = true;
        } else {
            w.wake();
        }
    }

    fn wake_read_pump(&mut self) {
        if self.read_parked && self.unread() < MAX_INBOUND {
            self.read_parked = false;
            self.wake_task();
        }
    }

    fn wake_write_pump(&mut self) {
        if self.write_parked {
            self.write_parked = false;
            self.wake_task();
        }
    }

    fn wake_task(&mut self) {
        if self.polling {
            self.repoll = true;
        } else if let Some(w) = &self.task {
            w.wake_by_ref();
        }
    }

    /// Appends decrypted or plain input for h2.
    fn push_input(&mut self, bytes: &[u8]) {
        if self.in_pos > 0 && self.in_pos * 2 >= self.inbound.len() {
            self.inbound.drain(..self.in_pos);
            self.in_pos = 0;
        }
        self.inbound.extend_from_slice(bytes);
        self.wake_reader();
    }
}

/// The h2 side of the adapter: `tokio::io::AsyncRead + AsyncWrite` over the two buffers.
#[derive(Debug)]
pub struct Wire {
    shared: Rc<RefCell<Shared>>,
}

/// The socket side: the pumps, run with [`Pumps::run_with`] around the connection's work.
pub struct Pumps {
    shared: Rc<RefCell<Shared>>,
    transport: Transport,
}

impl std::fmt::Debug for Pumps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pumps")
            .field("transport", &self.transport)
            .finish()
    }
}

/// An adapter over `transport`.
pub fn wire(transport: Transport) -> (Wire, Pumps) {
    let shared = new_shared();
    let wire = Wire {
        shared: Rc::clone(&shared),
    };
    (wire, Pumps { shared, transport })
}

fn new_shared() -> Rc<RefCell<Shared>> {
    Rc::new(RefCell::new(Shared {
        inbound: Vec::new(),
        in_pos: 0,
        in_eof: false,
        in_error: None,
        outbound: Vec::new(),
        out_error: None,
        shutdown: Shutdown::Open,
        reader: None,
        writer: None,
        task: None,
        read_parked: false,
        write_parked: false,
        polling: false,
        repoll: false,
    }))
}

impl Pumps {
    /// Hands bytes that were read from the socket before the adapter existed (an h2c
    /// preface sniffed by the HTTP/1.1 reader) to h2 first. Plain transports only; TLS
    /// leftovers travel in [`Transport::Tls`].
    pub fn replay(&self, bytes: &[u8]) {
        self.shared.borrow_mut().push_input(bytes);
    }

    /// Runs `main` (the h2 connection's work) with both pumps in the same task, then lets
    /// the write pump flush what `main` left (within [`CLOSING_FLUSH`]).
    pub async fn run_with<F: Future>(self, main: F) -> F::Output {
        let Pumps { shared, transport } = self;
        let (tcp, session, leftover) = match transport {
            Transport::Plain(tcp) => (tcp, None, Vec::new()),
            Transport::Tls {
                tcp,
                session,
                leftover,
            } => (tcp, Some(Rc::new(RefCell::new(*session))), leftover),
        };
        let (rd, wr) = tcp.into_split();
        let mut read = pin!(read_pump(Rc::clone(&shared), rd, session.clone(), leftover));
        let mut write = pin!(write_pump(Rc::clone(&shared), wr, session));
        let mut main = pin!(main);
        let (mut read_done, mut write_done) = (false, false);
        let output = poll_fn(|cx| {
            register_task(&shared, cx);
            shared.borrow_mut().polling = true;
            // Bytes h2 wrote go to the write pump, and input the read pump took goes to h2,
            // in further rounds of this poll rather than through a wake of the task itself
            // (which re-queues it and polls everything again).
            for _ in 0..POLL_ROUNDS {
                if !read_done && read.as_mut().poll(cx).is_ready() {
                    read_done = true;
                }
                if !write_done && write.as_mut().poll(cx).is_ready() {
                    write_done = true;
                }
                let polled = main.as_mut().poll(cx);
                let again = std::mem::take(&mut shared.borrow_mut().repoll);
                if polled.is_ready() || !again {
                    shared.borrow_mut().polling = false;
                    return polled;
                }
            }
            shared.borrow_mut().polling = false;
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await;
        if !write_done {
            {
                let mut s = shared.borrow_mut();
                if s.shutdown == Shutdown::Open {
                    s.shutdown = Shutdown::Requested;
                }
                s.write_parked = false;
            }
            let flush = poll_fn(|cx| {
                register_task(&shared, cx);
                write.as_mut().poll(cx)
            });
            let _ = monoio::time::timeout(CLOSING_FLUSH, flush).await;
        }
        output
    }
}

fn register_task(shared: &Rc<RefCell<Shared>>, cx: &Context<'_>) {
    let mut s = shared.borrow_mut();
    if !s.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        s.task = Some(cx.waker().clone());
    }
}

/// Socket → (decrypt) → `inbound`, pausing while h2 leaves [`MAX_INBOUND`] unread.
async fn read_pump<R: AsyncReadRent>(
    shared: Rc<RefCell<Shared>>,
    mut rd: R,
    session: Option<Rc<RefCell<rustls::Connection>>>,
    leftover: Vec<u8>,
) {
    if let Some(session) = &session {
        // Plaintext the handshake already decrypted, then the bytes read past it.
        if let Err(e) = decrypt(&shared, session, &leftover) {
            fail_input(&shared, e);
            return;
        }
    }
    let mut buf = Vec::with_capacity(READ_CHUNK);
    // A socket that always has data (a frame flood) must not keep the worker to itself.
    let mut budget = Budget::new();
    loop {
        poll_fn(|_| {
            let mut s = shared.borrow_mut();
            if s.unread() >= MAX_INBOUND {
                s.read_parked = true;
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        buf.clear();
        let (result, returned) = budget.run(pin!(rd.read(buf))).await;
        buf = returned;
        let n = match result {
            Ok(n) => n,
            Err(e) => {
                fail_input(&shared, e);
                return;
            }
        };
        if n == 0 {
            let mut s = shared.borrow_mut();
            s.in_eof = true;
            s.wake_reader();
            return;
        }
        match &session {
            None => shared.borrow_mut().push_input(&buf[..n]),
            Some(session) => {
                if let Err(e) = decrypt(&shared, session, &buf[..n]) {
                    fail_input(&shared, e);
                    return;
                }
            }
        }
    }
}

fn fail_input(shared: &Rc<RefCell<Shared>>, e: io::Error) {
    let mut s = shared.borrow_mut();
    s.in_error = Some(e);
    s.wake_reader();
    // A TLS alert may be queued for the peer.
    s.wake_write_pump();
}

/// Feeds TLS bytes to the session and moves the plaintext into `inbound`.
fn decrypt(
    shared: &Rc<RefCell<Shared>>,
    session: &Rc<RefCell<rustls::Connection>>,
    mut tls: &[u8],
) -> io::Result<()> {
    let mut session = session.borrow_mut();
    loop {
        if !tls.is_empty() {
            session.read_tls(&mut tls)?;
        }
        let state = session
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut reader = session.reader();
        loop {
            match reader.fill_buf() {
                Ok([]) => {
                    let mut s = shared.borrow_mut();
                    s.in_eof = true;
                    s.wake_reader();
                    break;
                }
                Ok(chunk) => {
                    let n = chunk.len();
                    shared.borrow_mut().push_input(chunk);
                    reader.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let _ = state;
        if tls.is_empty() {
            break;
        }
    }
    if session.wants_write() {
        shared.borrow_mut().wake_write_pump();
    }
    Ok(())
}

/// `outbound` → (encrypt) → socket; shuts the socket down once asked and drained.
async fn write_pump<W: AsyncWriteRent>(
    shared: Rc<RefCell<Shared>>,
    mut wr: W,
    session: Option<Rc<RefCell<rustls::Connection>>>,
) {
    let mut plain = Vec::new();
    let mut cipher = Vec::new();
    let mut budget = Budget::new();
    loop {
        let shutting_down = poll_fn(|_| {
            let mut s = shared.borrow_mut();
            let tls_pending = session.as_ref().is_some_and(|t| t.borrow().wants_write());
            if !s.outbound.is_empty() || tls_pending {
                return Poll::Ready(false);
            }
            if s.shutdown == Shutdown::Requested {
                return Poll::Ready(true);
            }
            s.write_parked = true;
            Poll::Pending
        })
        .await;
        if shutting_down {
            if let Some(session) = &session {
                session.borrow_mut().send_close_notify();
                cipher.clear();
                let drained = drain_tls(&mut session.borrow_mut(), &mut cipher);
                if drained.is_ok() && !cipher.is_empty() {
                    let _ = wr.write_all(std::mem::take(&mut cipher)).await;
                }
            }
            let _ = wr.shutdown().await;
            let mut s = shared.borrow_mut();
            s.shutdown = Shutdown::Done;
            s.wake_writer();
            return;
        }
        {
            let mut s = shared.borrow_mut();
            plain.clear();
            std::mem::swap(&mut plain, &mut s.outbound);
            // Room again, and a flush that waited is done once these bytes are taken.
            s.wake_writer();
        }
        let out = match &session {
            None => std::mem::take(&mut plain),
            Some(session) => {
                cipher.clear();
                if let Err(e) = encrypt(&mut session.borrow_mut(), &plain, &mut cipher) {
                    fail_output(&shared, e.kind());
                    return;
                }
                std::mem::take(&mut cipher)
            }
        };
        let (result, mut returned) = budget.run(pin!(wr.write_all(out))).await;
        returned.clear();
        match &session {
            None => plain = returned,
            Some(_) => cipher = returned,
        }
        if let Err(e) = result {
            fail_output(&shared, e.kind());
            return;
        }
    }
}

fn fail_output(shared: &Rc<RefCell<Shared>>, kind: io::ErrorKind) {
    let mut s = shared.borrow_mut();
    s.out_error = Some(kind);
    s.shutdown = Shutdown::Done;
    s.wake_writer();
}

/// Encrypts `plain` into `cipher`.
fn encrypt(session: &mut rustls::Connection, plain: &[u8], cipher: &mut Vec<u8>) -> io::Result<()> {
    let mut taken = 0;
    while taken < plain.len() {
        let n = session.writer().write(&plain[taken..])?;
        taken += n;
        let before = cipher.len();
        drain_tls(session, cipher)?;
        if n == 0 && cipher.len() == before {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "TLS session refused plaintext",
            ));
        }
    }
    drain_tls(session, cipher)
}

fn drain_tls(session: &mut rustls::Connection, cipher: &mut Vec<u8>) -> io::Result<()> {
    while session.wants_write() {
        session.write_tls(cipher)?;
    }
    Ok(())
}

impl tokio::io::AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.shared.borrow_mut();
        let unread = s.unread();
        if unread > 0 {
            let n = unread.min(buf.remaining());
            let start = s.in_pos;
            buf.put_slice(&s.inbound[start..start + n]);
            s.in_pos += n;
            if s.in_pos == s.inbound.len() {
                s.inbound.clear();
                s.in_pos = 0;
            }
            s.wake_read_pump();
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = s.in_error.take() {
            s.in_eof = true;
            return Poll::Ready(Err(e));
        }
        if s.in_eof {
            return Poll::Ready(Ok(()));
        }
        s.reader = Some(cx.waker().clone());
        s.wake_read_pump();
        Poll::Pending
    }
}

impl Wire {
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.shared.borrow_mut();
        if let Some(kind) = s.out_error {
            return Poll::Ready(Err(io::Error::from(kind)));
        }
        if s.shutdown != Shutdown::Open {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        if s.outbound.len() >= MAX_OUTBOUND {
            s.writer = Some(cx.waker().clone());
            s.wake_write_pump();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = std::task::ready!(self.poll_room(cx)) {
            return Poll::Ready(Err(e));
        }
        let mut s = self.shared.borrow_mut();
        s.outbound.extend_from_slice(data);
        s.wake_write_pump();
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = std::task::ready!(self.poll_room(cx)) {
            return Poll::Ready(Err(e));
        }
        let mut s = self.shared.borrow_mut();
        let mut n = 0;
        for buf in bufs {
            s.outbound.extend_from_slice(buf);
            n += buf.len();
        }
        s.wake_write_pump();
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.shared.borrow_mut();
        if let Some(kind) = s.out_error {
            return Poll::Ready(Err(io::Error::from(kind)));
        }
        if s.outbound.is_empty() {
            return Poll::Ready(Ok(()));
        }
        s.writer = Some(cx.waker().clone());
        s.wake_write_pump();
        Poll::Pending
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.shared.borrow_mut();
        match s.shutdown {
            Shutdown::Done => return Poll::Ready(Ok(())),
            Shutdown::Open => s.shutdown = Shutdown::Requested,
            Shutdown::Requested => {}
        }
        s.writer = Some(cx.waker().clone());
        s.wake_write_pump();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncRead, AsyncWrite};

    fn noop_cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn a_full_outbound_buffer_takes_nothing_until_drained() {
        let (wire, pumps) = wire_pair();
        let mut wire = wire;
        let mut cx = noop_cx();
        let big = vec![7u8; MAX_OUTBOUND];
        let first = Pin::new(&mut wire).poll_write(&mut cx, &big);
        assert!(matches!(first, Poll::Ready(Ok(n)) if n == MAX_OUTBOUND));
        assert!(Pin::new(&mut wire).poll_write(&mut cx, b"x").is_pending());
        assert!(Pin::new(&mut wire).poll_flush(&mut cx).is_pending());
        assert_eq!(pumps.borrow().outbound.len(), MAX_OUTBOUND);
        pumps.borrow_mut().outbound.clear();
        assert!(Pin::new(&mut wire).poll_flush(&mut cx).is_ready());
        assert!(matches!(
            Pin::new(&mut wire).poll_write(&mut cx, b"x"),
            Poll::Ready(Ok(1))
        ));
    }

    #[test]
    fn reads_serve_input_in_order_then_end_of_stream() {
        let (mut wire, pumps) = wire_pair();
        pumps.borrow_mut().push_input(b"hello ");
        pumps.borrow_mut().push_input(b"world");
        let mut cx = noop_cx();
        let mut storage = [0u8; 4];
        let mut out = Vec::new();
        loop {
            let mut buf = tokio::io::ReadBuf::new(&mut storage);
            match Pin::new(&mut wire).poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
                Poll::Ready(Ok(())) => out.extend_from_slice(buf.filled()),
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => pumps.borrow_mut().in_eof = true,
            }
        }
        assert_eq!(out, b"hello world");
    }

    fn wire_pair() -> (Wire, Rc<RefCell<Shared>>) {
        let shared = new_shared();
        (
            Wire {
                shared: Rc::clone(&shared),
            },
            shared,
        )
    }
}
