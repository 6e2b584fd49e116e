//! A real HTTP/1.1 upstream server for tests: std threads, one per connection, keep-alive,
//! Content-Length and chunked request bodies, and a behaviour chosen by the test.
//!
//! It counts the connections it accepted and the requests it received (so a test can assert
//! that a rejected request never reached it), records every request's head, and shuts down
//! cleanly when dropped: sockets are shut down, gates opened, threads joined.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::body::{self, Checksum};
use super::IO_TIMEOUT;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A gate the test opens: an upstream in [`Behavior::Gate`] holds its response until then.
#[derive(Clone, Default)]
pub struct Gate {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets every waiting (and future) response through.
    pub fn open(&self) {
        *lock(&self.inner.0) = true;
        self.inner.1.notify_all();
    }

    /// Blocks until the gate opens, at most [`IO_TIMEOUT`].
    pub fn wait_open(&self) {
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        let mut open = lock(&self.inner.0);
        while !*open && std::time::Instant::now() < deadline {
            open = self
                .inner
                .1
                .wait_timeout(open, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn wait(&self, stop: &AtomicBool) {
        let mut open = lock(&self.inner.0);
        while !*open && !stop.load(Ordering::SeqCst) {
            open = self
                .inner
                .1
                .wait_timeout(open, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// What the upstream does with each request.
#[derive(Clone)]
pub enum Behavior {
    /// 200 with a body describing the request (see [`Echoed`]).
    Echo,
    /// 200 with `len` bytes of the test pattern, framed by Content-Length or chunked.
    Fixed { len: u64, chunked: bool },
    /// This status; 204 and 304 (and 1xx) without a body, others with `status N\n`.
    Status(u16),
    /// A fixed response: status, extra headers, body (Content-Length added).
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Waits until the gate opens, then echoes.
    Gate(Gate),
    /// Echoes with `Connection: close`, then closes.
    CloseAfterResponse,
    /// Echoes as keep-alive, but closes the connection without a word after the `n`-th
    /// response on it.
    CloseSilentlyAfter(usize),
    /// Echoes as keep-alive `n` times on a connection; reads the next request on it and closes
    /// without answering (the stale pooled connection a proxy must retry idempotent requests on).
    DropNextAfter(usize),
    /// Announces `Content-Length: 100000`, sends 1000 bytes, closes.
    CloseMidBody,
    /// Announces `Content-Length: 100000`, sends 1000 bytes, then stalls (holds the connection
    /// open, sending nothing) until the peer closes it.
    StallMidBody,
    /// Reads the request and never answers (holds the connection until it is closed).
    NeverAnswer,
    /// Reads each request and closes the connection without answering: a server being
    /// killed, its workers gone while its listening socket still takes connections (see
    /// [`Upstream::kill`]).
    Dying,
    /// Answers this status (with `connection: close`) as soon as the request head is in,
    /// without reading the body, then closes: an upstream refusing an upload early (413,
    /// 401). The request is recorded with a body length of 0.
    EarlyAnswer(u16),
    /// Sends these bytes as they are (one or more interim 1xx heads, such as
    /// `HTTP/1.1 103 Early Hints`), flushes them, then echoes.
    InterimThenEcho(Vec<u8>),
    /// Whatever the function decides for each request (a per-path backend for tests).
    Handler(Handler),
}

/// A test backend's answer to one request, chosen by a [`Behavior::Handler`].
pub enum Handled {
    /// After `delay` (the backend's own slowness), this response (Content-Length added).
    Respond {
        delay: std::time::Duration,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Close the connection without answering.
    Close,
    /// These bytes as they are (a truncated or malformed response), then close.
    Raw(Vec<u8>),
}

impl Handled {
    /// A 200 JSON answer after `delay_ms`.
    pub fn json(delay_ms: u64, body: &str) -> Handled {
        Handled::Respond {
            delay: std::time::Duration::from_millis(delay_ms),
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// The function of a [`Behavior::Handler`].
pub type Handler = std::sync::Arc<dyn Fn(&Recorded) -> Handled + Send + Sync>;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    /// Minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// Header fields in received order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_sum: String,
    /// Which accepted connection (1-based) carried it.
    pub conn: usize,
}

impl Recorded {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn describe(&self, upstream: &str) -> String {
        let mut s = String::new();
        s.push_str(&format!("upstream {upstream}\n"));
        s.push_str(&format!("method {}\n", self.method));
        s.push_str(&format!("target {}\n", self.target));
        s.push_str(&format!("version 1.{}\n", self.version));
        s.push_str(&format!("conn {}\n", self.conn));
        s.push_str(&format!("body-length {}\n", self.body_len));
        s.push_str(&format!("body-sum {}\n", self.body_sum));
        for (n, v) in &self.headers {
            s.push_str(&format!("header {n}: {v}\n"));
        }
        s
    }
}

/// An echo response body, parsed back.
#[derive(Clone, Debug)]
pub struct Echoed {
    pub upstream: String,
    pub method: String,
    pub target: String,
    pub version: String,
    pub conn: usize,
    pub body_len: u64,
    pub body_sum: String,
    pub headers: Vec<(String, String)>,
}

impl Echoed {
    /// Parses the body an echoing upstream sent; panics (failing the test) on anything else.
    pub fn parse(text: &str) -> Echoed {
        let mut e = Echoed {
            upstream: String::new(),
            method: String::new(),
            target: String::new(),
            version: String::new(),
            conn: 0,
            body_len: 0,
            body_sum: String::new(),
            headers: Vec::new(),
        };
        let mut seen_method = false;
        for line in text.lines() {
            let (key, rest) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("not an echo body: {text:?}"));
            match key {
                "upstream" => e.upstream = rest.to_string(),
                "method" => {
                    e.method = rest.to_string();
                    seen_method = true;
                }
                "target" => e.target = rest.to_string(),
                "version" => e.version = rest.to_string(),
                "conn" => e.conn = rest.parse().expect("conn number"),
                "body-length" => e.body_len = rest.parse().expect("body length"),
                "body-sum" => e.body_sum = rest.to_string(),
                "header" => {
                    let (n, v) = rest
                        .split_once(": ")
                        .unwrap_or((rest.trim_end_matches(':'), ""));
                    e.headers.push((n.to_string(), v.to_string()));
                }
                _ => panic!("not an echo body: {text:?}"),
            }
        }
        assert!(seen_method, "not an echo body: {text:?}");
        e
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

struct Shared {
    name: String,
    behavior: Mutex<Behavior>,
    stop: AtomicBool,
    connections: AtomicUsize,
    closed: AtomicUsize,
    protocol_errors: AtomicUsize,
    /// Requests whose head was received; guarded for `wait_for_requests`.
    requests: Mutex<Vec<Recorded>>,
    requests_changed: Condvar,
    heads: AtomicUsize,
    conns: Mutex<Vec<(TcpStream, Option<JoinHandle<()>>)>>,
}

/// A running test upstream. Dropping it stops it.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts an upstream on 127.0.0.1:0 that behaves as told; `name` appears in echo bodies
    /// (`upstream NAME`) and in the `x-upstream` response header.
    pub fn start(name: &str, behavior: Behavior) -> Upstream {
        let listener = listen_local(UPSTREAM_BACKLOG).expect("bind test upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            behavior: Mutex::new(behavior),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            protocol_errors: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            requests_changed: Condvar::new(),
            heads: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let accept_shared = shared.clone();
        let accept = std::thread::Builder::new()
            .name(format!("upstream-{name}-accept"))
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("spawn upstream accept thread");
        Upstream {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// An echoing upstream.
    pub fn echo(name: &str) -> Upstream {
        Self::start(name, Behavior::Echo)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes what the upstream does with the requests that follow.
    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.shared.behavior) = behavior;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections that ended so far.
    pub fn closed_connections(&self) -> usize {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Connections accepted and not yet ended.
    pub fn open_connections(&self) -> usize {
        // `closed` is counted after `connections`, so read it first.
        let closed = self.closed_connections();
        self.connections() - closed
    }

    /// Requests whose head was received so far (whether or not answered).
    pub fn requests(&self) -> usize {
        self.shared.heads.load(Ordering::SeqCst)
    }

    /// Requests the upstream could not parse (a gateway that forwards garbage).
    pub fn protocol_errors(&self) -> usize {
        self.shared.protocol_errors.load(Ordering::SeqCst)
    }

    /// Every request recorded so far, in arrival order.
    pub fn recorded(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// The last request recorded.
    pub fn last_request(&self) -> Option<Recorded> {
        lock(&self.shared.requests).last().cloned()
    }

    /// Blocks until at least `n` requests were recorded; panics after [`IO_TIMEOUT`].
    pub fn wait_for_requests(&self, n: usize) {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut reqs = lock(&self.shared.requests);
        while reqs.len() < n {
            let now = Instant::now();
            assert!(
                now < deadline,
                "upstream {}: waited for {n} requests, saw {}",
                self.shared.name,
                reqs.len()
            );
            reqs = self
                .shared
                .requests_changed
                .wait_timeout(reqs, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Blocks until at least `n` connections ended; panics after [`IO_TIMEOUT`].
    pub fn wait_for_closed_connections(&self, n: usize) {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut reqs = lock(&self.shared.requests);
        while self.closed_connections() < n {
            let now = Instant::now();
            assert!(
                now < deadline,
                "upstream {}: waited for {n} closed connections, saw {}",
                self.shared.name,
                self.closed_connections()
            );
            reqs = self
                .shared
                .requests_changed
                .wait_timeout(reqs, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Upstream {
    /// Dies the way a server process killed with SIGTERM does: the connections it holds are
    /// closed at once, requests in flight unanswered; for `dying` its listening socket still
    /// completes connections (the kernel's backlog outlives the workers), each closed as
    /// soon as its request arrives; then the socket goes and connects are refused.
    pub fn kill(self, dying: Duration) {
        self.set_behavior(Behavior::Dying);
        for (stream, _) in lock(&self.shared.conns).iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        std::thread::sleep(dying);
        drop(self);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Behavior::Gate(gate) = &*lock(&self.shared.behavior) {
            gate.open();
        }
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let conns = std::mem::take(&mut *lock(&self.shared.conns));
        for (stream, _) in &conns {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for (_, handle) in conns {
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
    }
}

/// An address on which nothing listens: connecting to it is refused.
pub fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// An address where a TCP connect hangs (the SYN goes unanswered) for as long as this lives.
///
/// A listener with a zero backlog that never accepts, its accept queue filled by connections
/// held here: Linux drops the SYNs of further connects while the queue is full. Made without
/// root or firewall rules; [`hanging_addr`] checks that a connect really hangs before handing
/// it out.
pub struct HangingAddr {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

impl HangingAddr {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// How long [`hanging_addr`] lets a probe connect try before it counts as hanging.
const HANG_PROBE: Duration = Duration::from_millis(300);

/// Makes a [`HangingAddr`]; panics (failing the test, never making it flaky) if connects to a
/// full accept queue still complete on this machine.
pub fn hanging_addr() -> HangingAddr {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    listener.bind(&any.into()).expect("bind");
    listener.listen(0).expect("listen(0)");
    let addr = listener
        .local_addr()
        .expect("local_addr")
        .as_socket()
        .expect("an inet address");
    let mut fillers = Vec::new();
    // A zero backlog admits one connection; allow a few in case a kernel admits more.
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, HANG_PROBE) {
            Ok(stream) => fillers.push(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                return HangingAddr {
                    addr,
                    _listener: listener,
                    _fillers: fillers,
                };
            }
            Err(e) => panic!("probe connect to a full backlog failed instead of hanging: {e}"),
        }
    }
    panic!(
        "no hanging address: {} connects to a listen(0) socket that never accepts all completed",
        fillers.len()
    )
}

/// Accept queue of a test upstream. `TcpListener::bind` asks for 128; a gateway that reads a
/// burst of hundreds of requests in one round connects for all of them at once, and a SYN
/// that finds the queue full is dropped and retried only after a second, past the tests'
/// one-second connect timeout. Production backends listen with a larger backlog too.
const UPSTREAM_BACKLOG: i32 = 4096;

/// A listener on 127.0.0.1, on a port the kernel picks, with an accept queue of `backlog`.
fn listen_local(backlog: i32) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let conn = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let (Ok(clone), Ok(closer)) = (stream.try_clone(), stream.try_clone()) else {
            continue;
        };
        let conn_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name(format!("upstream-{}-conn{conn}", shared.name))
            .spawn(move || {
                let _ = serve(stream, &conn_shared, conn);
                // Other handles to the socket are kept for drop: close it explicitly.
                let _ = closer.shutdown(Shutdown::Both);
                conn_shared.closed.fetch_add(1, Ordering::SeqCst);
                let _guard = lock(&conn_shared.requests);
                conn_shared.requests_changed.notify_all();
            })
            .expect("spawn upstream connection thread");
        lock(&shared.conns).push((clone, Some(handle)));
    }
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    version: u8,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn wants_close(&self) -> bool {
        let conn = self.get("connection").unwrap_or("").to_ascii_lowercase();
        if self.version == 0 {
            !conn.contains("keep-alive")
        } else {
            conn.split(',').any(|t| t.trim() == "close")
        }
    }
}

enum ReadHead {
    Head(Head),
    Eof,
    Bad,
}

fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<ReadHead> {
    let mut raw = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take(64 * 1024)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(if raw.is_empty() {
                ReadHead::Eof
            } else {
                ReadHead::Bad
            });
        }
        raw.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            if raw.len() == line.len() {
                // Tolerate empty lines before a request line (RFC 9112 section 2.2).
                raw.clear();
                continue;
            }
            break;
        }
        if raw.len() > 1024 * 1024 {
            return Ok(ReadHead::Bad);
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => Ok(ReadHead::Head(Head {
            method: req.method.unwrap_or("").to_string(),
            target: req.path.unwrap_or("").to_string(),
            version: req.version.unwrap_or(1),
            headers: req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        })),
        _ => Ok(ReadHead::Bad),
    }
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

fn framing(head: &Head) -> Option<Framing> {
    let te: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .map(|(_, v)| v.as_str())
        .collect();
    let cl: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_str())
        .collect();
    // Be as strict as the gateway must be: anything ambiguous is a protocol error here,
    // so a gateway that forwards it fails the test.
    if !te.is_empty() {
        if !cl.is_empty() || te.len() != 1 || !te[0].trim().eq_ignore_ascii_case("chunked") {
            return None;
        }
        return Some(Framing::Chunked);
    }
    match cl.as_slice() {
        [] => Some(Framing::None),
        [one] => one
            .trim()
            .parse()
            .ok()
            .filter(|_| one.trim().bytes().all(|b| b.is_ascii_digit()))
            .map(Framing::Length),
        _ => None,
    }
}

fn read_body(reader: &mut BufReader<TcpStream>, framing: &Framing) -> io::Result<Option<Checksum>> {
    let mut sum = Checksum::new();
    match framing {
        Framing::None => {}
        Framing::Length(len) => copy_exact(reader, *len, &mut sum)?,
        Framing::Chunked => loop {
            let mut line = Vec::new();
            reader.by_ref().take(4096).read_until(b'\n', &mut line)?;
            let Some(text) = line.strip_suffix(b"\r\n") else {
                return Ok(None);
            };
            let text = String::from_utf8_lossy(text);
            let size_text = text.split(';').next().unwrap_or("").trim();
            let Ok(size) = u64::from_str_radix(size_text, 16) else {
                return Ok(None);
            };
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut trailer = Vec::new();
                    reader.by_ref().take(4096).read_until(b'\n', &mut trailer)?;
                    if trailer == b"\r\n" {
                        break;
                    }
                    if trailer.is_empty() {
                        return Ok(None);
                    }
                }
                break;
            }
            copy_exact(reader, size, &mut sum)?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Ok(None);
            }
        },
    }
    Ok(Some(sum))
}

fn copy_exact(reader: &mut BufReader<TcpStream>, len: u64, sum: &mut Checksum) -> io::Result<()> {
    let copied = io::copy(&mut reader.by_ref().take(len), sum)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "body cut short",
        ));
    }
    Ok(())
}

fn serve(stream: TcpStream, shared: &Shared, conn: usize) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(64 * 1024, stream.try_clone()?);
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut served_here = 0usize;
    loop {
        let head = match read_head(&mut reader)? {
            ReadHead::Head(head) => head,
            ReadHead::Eof => return Ok(()),
            ReadHead::Bad => {
                shared.protocol_errors.fetch_add(1, Ordering::SeqCst);
                let _ = out.write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                let _ = out.flush();
                return Ok(());
            }
        };
        shared.heads.fetch_add(1, Ordering::SeqCst);
        let Some(framing) = framing(&head) else {
            shared.protocol_errors.fetch_add(1, Ordering::SeqCst);
            let _ = out.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            let _ = out.flush();
            return Ok(());
        };
        let has_body = !matches!(framing, Framing::None | Framing::Length(0));
        if let Behavior::EarlyAnswer(status) = *lock(&shared.behavior) {
            let mut reqs = lock(&shared.requests);
            reqs.push(Recorded {
                method: head.method.clone(),
                target: head.target.clone(),
                version: head.version,
                headers: head.headers.clone(),
                body_len: 0,
                body_sum: String::new(),
                conn,
            });
            shared.requests_changed.notify_all();
            drop(reqs);
            let body = format!("early {status}\n");
            write!(
                out,
                "HTTP/1.1 {status} Early\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )?;
            out.flush()?;
            let _ = reader.get_ref().shutdown(Shutdown::Write);
            return Ok(());
        }
        if has_body
            && head
                .get("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            out.flush()?;
        }
        let Some(sum) = read_body(&mut reader, &framing)? else {
            shared.protocol_errors.fetch_add(1, Ordering::SeqCst);
            let _ = out.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            let _ = out.flush();
            return Ok(());
        };
        let recorded = Recorded {
            method: head.method.clone(),
            target: head.target.clone(),
            version: head.version,
            headers: head.headers.clone(),
            body_len: sum.len(),
            body_sum: sum.hex(),
            conn,
        };
        {
            let mut reqs = lock(&shared.requests);
            reqs.push(recorded.clone());
            shared.requests_changed.notify_all();
        }
        served_here += 1;
        let behavior = lock(&shared.behavior).clone();
        let is_head = head.method == "HEAD";
        let client_close = head.wants_close();
        let keep = if head.version == 0 {
            "connection: keep-alive\r\n"
        } else {
            ""
        };
        let common = format!(
            "x-upstream: {}\r\nx-upstream-conn: {conn}\r\n{keep}",
            shared.name
        );
        match behavior {
            Behavior::Dying | Behavior::EarlyAnswer(_) => {
                let _ = reader.get_ref().shutdown(Shutdown::Both);
                return Ok(());
            }
            Behavior::DropNextAfter(n) if served_here > n => {
                let _ = reader.get_ref().shutdown(Shutdown::Both);
                return Ok(());
            }
            Behavior::DropNextAfter(_) => {
                write_echo(&mut out, &recorded, shared, &common, is_head, false)?
            }
            Behavior::StallMidBody => {
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\n{common}content-length: 100000\r\n\r\n"
                )?;
                out.write_all(&body::pattern(1000))?;
                out.flush()?;
                hold_until_closed(&mut reader, shared)?;
                return Ok(());
            }
            Behavior::Echo => write_echo(&mut out, &recorded, shared, &common, is_head, false)?,
            Behavior::Gate(gate) => {
                gate.wait(&shared.stop);
                write_echo(&mut out, &recorded, shared, &common, is_head, false)?;
            }
            Behavior::CloseAfterResponse => {
                write_echo(&mut out, &recorded, shared, &common, is_head, true)?;
                out.flush()?;
                return Ok(());
            }
            Behavior::CloseSilentlyAfter(n) => {
                write_echo(&mut out, &recorded, shared, &common, is_head, false)?;
                if served_here >= n {
                    out.flush()?;
                    let _ = reader.get_ref().shutdown(Shutdown::Both);
                    return Ok(());
                }
            }
            Behavior::Fixed { len, chunked } => {
                if chunked {
                    write!(
                        out,
                        "HTTP/1.1 200 OK\r\n{common}transfer-encoding: chunked\r\n\r\n"
                    )?;
                    if !is_head {
                        body::for_each_pattern_chunk(len, |chunk| {
                            write!(out, "{:x}\r\n", chunk.len())?;
                            out.write_all(chunk)?;
                            out.write_all(b"\r\n")
                        })?;
                        out.write_all(b"0\r\n\r\n")?;
                    }
                } else {
                    write!(
                        out,
                        "HTTP/1.1 200 OK\r\n{common}content-length: {len}\r\n\r\n"
                    )?;
                    if !is_head {
                        body::write_pattern(&mut out, len)?;
                    }
                }
            }
            Behavior::Status(status) => {
                if status < 200 || status == 204 || status == 304 {
                    write!(out, "HTTP/1.1 {status} Whatever\r\n{common}\r\n")?;
                } else {
                    let body = format!("status {status}\n");
                    write!(
                        out,
                        "HTTP/1.1 {status} Whatever\r\n{common}content-length: {}\r\n\r\n",
                        body.len()
                    )?;
                    if !is_head {
                        out.write_all(body.as_bytes())?;
                    }
                }
            }
            Behavior::Respond {
                status,
                headers,
                body,
            } => {
                write!(out, "HTTP/1.1 {status} Whatever\r\n{common}")?;
                for (n, v) in &headers {
                    write!(out, "{n}: {v}\r\n")?;
                }
                write!(out, "content-length: {}\r\n\r\n", body.len())?;
                if !is_head {
                    out.write_all(&body)?;
                }
            }
            Behavior::CloseMidBody => {
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\n{common}content-length: 100000\r\n\r\n"
                )?;
                out.write_all(&body::pattern(1000))?;
                out.flush()?;
                let _ = reader.get_ref().shutdown(Shutdown::Both);
                return Ok(());
            }
            Behavior::NeverAnswer => {
                hold_until_closed(&mut reader, shared)?;
                return Ok(());
            }
            Behavior::InterimThenEcho(interim) => {
                out.write_all(&interim)?;
                out.flush()?;
                write_echo(&mut out, &recorded, shared, &common, is_head, false)?;
            }
            Behavior::Handler(handler) => match handler(&recorded) {
                Handled::Close => {
                    let _ = reader.get_ref().shutdown(Shutdown::Both);
                    return Ok(());
                }
                Handled::Raw(bytes) => {
                    out.write_all(&bytes)?;
                    out.flush()?;
                    let _ = reader.get_ref().shutdown(Shutdown::Both);
                    return Ok(());
                }
                Handled::Respond {
                    delay,
                    status,
                    headers,
                    body,
                } => {
                    std::thread::sleep(delay);
                    write!(out, "HTTP/1.1 {status} Whatever\r\n{common}")?;
                    for (n, v) in &headers {
                        write!(out, "{n}: {v}\r\n")?;
                    }
                    // 304 and 204 carry no body (and no length here).
                    if status == 304 || status == 204 {
                        write!(out, "\r\n")?;
                    } else {
                        write!(out, "content-length: {}\r\n\r\n", body.len())?;
                        if !is_head {
                            out.write_all(&body)?;
                        }
                    }
                }
            },
        }
        out.flush()?;
        if client_close {
            return Ok(());
        }
    }
}

/// Holds the connection, discarding input, until the peer (or the test's drop) closes it.
fn hold_until_closed(reader: &mut BufReader<TcpStream>, shared: &Shared) -> io::Result<()> {
    let mut sink = [0u8; 4096];
    while !shared.stop.load(Ordering::SeqCst) {
        if reader.read(&mut sink)? == 0 {
            return Ok(());
        }
    }
    Ok(())
}

fn write_echo(
    out: &mut impl Write,
    recorded: &Recorded,
    shared: &Shared,
    common: &str,
    is_head: bool,
    close: bool,
) -> io::Result<()> {
    let body = recorded.describe(&shared.name);
    let close = if close { "connection: close\r\n" } else { "" };
    write!(
        out,
        "HTTP/1.1 200 OK\r\n{common}{close}content-type: text/plain\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )?;
    if !is_head {
        out.write_all(body.as_bytes())?;
    }
    Ok(())
}

/// Counts of requests per upstream name in echo bodies.
pub fn tally(names: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for n in names {
        *map.entry(n).or_insert(0) += 1;
    }
    map
}

/// An origin that records the exact bytes of each request it receives (head and
/// `Content-Length` body, as sent on the wire) and answers every request with the same
/// bytes, byte for byte: for tests that check what the gateway wrote upstream exactly.
pub struct RecordingOrigin {
    pub addr: SocketAddr,
    seen: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl RecordingOrigin {
    /// Answers every request with `reply` as it is (a whole response: head and body).
    pub fn start(reply: Vec<u8>) -> RecordingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, seen) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (tx, reply) = (tx.clone(), reply.clone());
                std::thread::spawn(move || record_and_reply(stream, &tx, &reply));
            }
        });
        RecordingOrigin { addr, seen }
    }

    /// A `200` with `fields` (each ending in CRLF) and `body` framed by its length.
    pub fn answering(fields: &str, body: &[u8]) -> RecordingOrigin {
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\n{fields}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(body);
        RecordingOrigin::start(reply)
    }

    /// A `200` with `fields` and `body` in chunks of `size` bytes.
    pub fn answering_chunked(fields: &str, body: &[u8], size: usize) -> RecordingOrigin {
        let mut reply =
            format!("HTTP/1.1 200 OK\r\n{fields}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
        for chunk in body.chunks(size.max(1)) {
            reply.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            reply.extend_from_slice(chunk);
            reply.extend_from_slice(b"\r\n");
        }
        reply.extend_from_slice(b"0\r\n\r\n");
        RecordingOrigin::start(reply)
    }

    /// The exact bytes of the next request the origin received (waits up to [`IO_TIMEOUT`]).
    pub fn next_seen(&self) -> Vec<u8> {
        self.seen
            .recv_timeout(IO_TIMEOUT)
            .expect("the origin received a request")
    }

    /// Whether a request arrived that was not taken with [`RecordingOrigin::next_seen`]
    /// (every request is recorded before it is answered, so after the client got its
    /// answer, `false` means the gateway did not ask the origin).
    pub fn has_unseen(&self) -> bool {
        self.seen.try_recv().is_ok()
    }
}

fn record_and_reply(mut stream: TcpStream, tx: &std::sync::mpsc::Sender<Vec<u8>>, reply: &[u8]) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        got.extend_from_slice(&buf[..n]);
        while let Some(len) = whole_request(&got) {
            let request: Vec<u8> = got.drain(..len).collect();
            let _ = tx.send(request);
            if stream.write_all(reply).is_err() {
                return;
            }
        }
    }
}

/// The length of the first whole request in `got` (head and `Content-Length` body).
fn whole_request(got: &[u8]) -> Option<usize> {
    let end = got.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (got.len() >= end + 4 + len).then_some(end + 4 + len)
}

/// A recorded request's head (request line and fields, each line ending in CRLF) as text,
/// and its body.
pub fn split_request(request: &[u8]) -> (String, Vec<u8>) {
    let end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    (
        String::from_utf8_lossy(&request[..end + 2]).into_owned(),
        request[end + 4..].to_vec(),
    )
}

/// The lines `name: value` of `head` whose field name is one of `names` (case-insensitive),
/// in order, as written.
pub fn lines_named(head: &str, names: &[&str]) -> Vec<String> {
    head.split("\r\n")
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| names.iter().any(|w| w.eq_ignore_ascii_case(n)))
        })
        .map(str::to_string)
        .collect()
}
