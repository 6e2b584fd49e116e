//! Clients: ureq for normal traffic, and a raw TCP client for pipelining, malformed input and
//! slow clients. Every blocking read has a timeout ([`IO_TIMEOUT`]): a hang fails the test.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::body::Checksum;
use super::IO_TIMEOUT;

/// A response as a test sees it.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// Header fields in received order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
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

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A ureq agent with timeouts and no redirects. Keeps connections alive between calls.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(IO_TIMEOUT)
        .redirects(0)
        .build()
}

fn reply_from(result: Result<ureq::Response, ureq::Error>, what: &str) -> Reply {
    let resp = match result {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("{what}: transport error: {e}"),
    };
    let status = resp.status();
    let mut headers = Vec::new();
    for name in resp.headers_names() {
        for value in resp.all(&name) {
            headers.push((name.clone(), value.to_string()));
        }
    }
    let mut body = Vec::new();
    resp.into_reader()
        .take(64 * 1024 * 1024)
        .read_to_end(&mut body)
        .unwrap_or_else(|e| panic!("{what}: reading body: {e}"));
    Reply {
        status,
        headers,
        body,
    }
}

/// Sends a prepared request without a body.
pub fn call(req: ureq::Request) -> Reply {
    let what = format!("{} {}", req.method(), req.url());
    reply_from(req.call(), &what)
}

/// Sends a prepared request with a body (Content-Length framing).
pub fn send(req: ureq::Request, body: &[u8]) -> Reply {
    let what = format!("{} {}", req.method(), req.url());
    reply_from(req.send_bytes(body), &what)
}

/// GET with a fresh agent.
pub fn get(url: &str) -> Reply {
    call(agent().get(url))
}

/// A response read off a raw socket.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
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

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the `Connection` header carries `token`.
    pub fn connection_has(&self, token: &str) -> bool {
        self.header_all("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// How a read ended when the peer was expected to close.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Orderly FIN.
    Eof,
    /// Connection reset.
    Reset,
}

/// A raw TCP client with a read buffer.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Changes the read timeout (default [`IO_TIMEOUT`]).
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set_read_timeout");
    }

    /// Writes all of `bytes`; panics on error.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Writes all of `bytes`, reporting errors (for writes the gateway may refuse).
    pub fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> io::Result<()> {
        self.stream.write_all(bytes.as_ref())
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads more bytes into the buffer: Ok(0) on EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn fill_or_panic(&mut self, what: &str) {
        match self.fill() {
            Ok(0) => panic!(
                "{what}: connection closed early; have {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => panic!(
                "{what}: timed out after {IO_TIMEOUT:?}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e) => panic!("{what}: {e}; have {:?}", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// Reads one response head (any status, 1xx included); None on EOF before any byte.
    fn read_head(&mut self) -> io::Result<Option<RawResponse>> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = RawResponse {
                        version: format!("HTTP/1.{}", resp.version.unwrap_or(1)),
                        status: resp.code.unwrap_or(0),
                        reason: resp.reason.unwrap_or("").to_string(),
                        headers: resp
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                    };
                    self.buf.drain(..n);
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => panic!(
                    "unparsable response ({e}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
            match self.fill() {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => panic!(
                    "connection closed inside a response head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(_) => {}
                Err(e) if self.buf.is_empty() && is_reset(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one interim or final response head without a body (for `100 Continue`).
    pub fn read_head_only(&mut self) -> RawResponse {
        match self.read_head() {
            Ok(Some(head)) => head,
            Ok(None) => panic!("connection closed before a response"),
            Err(e) => panic!("reading a response head: {e}"),
        }
    }

    /// Reads the next final response (skipping 1xx) to a request with this method.
    pub fn read_response_to(&mut self, method: &str) -> RawResponse {
        match self.try_read_response_to(method) {
            Ok(Some(resp)) => resp,
            Ok(None) => panic!("connection closed before a response"),
            Err(e) => panic!("reading a response: {e}"),
        }
    }

    /// Reads the next final response to a GET-like request.
    pub fn read_response(&mut self) -> RawResponse {
        self.read_response_to("GET")
    }

    /// Like [`Raw::read_response_to`], but Ok(None) when the connection closes (or is reset)
    /// before the first byte of a response, and Err on a timeout or a response cut short.
    pub fn try_read_response_to(&mut self, method: &str) -> io::Result<Option<RawResponse>> {
        let mut body = Vec::new();
        let head = self.read_response_with(method, &mut |chunk| body.extend_from_slice(chunk))?;
        Ok(head.map(|mut h| {
            h.body = body;
            h
        }))
    }

    /// Reads the next final response and checksums its body without keeping it (for large
    /// bodies); the returned response's `body` is empty.
    pub fn read_response_summed(&mut self, method: &str) -> (RawResponse, Checksum) {
        let mut sum = Checksum::new();
        match self.read_response_with(method, &mut |chunk| sum.update(chunk)) {
            Ok(Some(head)) => (head, sum),
            Ok(None) => panic!("connection closed before a response"),
            Err(e) => panic!("reading a response after {} body bytes: {e}", sum.len()),
        }
    }

    /// Reads the next final response to a request with this method, and the interim 1xx
    /// responses that came before it, in order.
    pub fn read_response_and_interims(&mut self, method: &str) -> (Vec<RawResponse>, RawResponse) {
        let mut interims = Vec::new();
        let mut head = loop {
            match self.read_head() {
                Ok(Some(h)) if is_interim(h.status) => interims.push(h),
                Ok(Some(h)) => break h,
                Ok(None) => {
                    panic!("connection closed before a final response; interim: {interims:?}")
                }
                Err(e) => panic!("reading a response head: {e}; interim so far: {interims:?}"),
            }
        };
        let mut body = Vec::new();
        self.read_body(&head, method, &mut |chunk| body.extend_from_slice(chunk))
            .unwrap_or_else(|e| panic!("reading the body of {head:?}: {e}"));
        head.body = body;
        (interims, head)
    }

    /// Reads the next final response (skipping 1xx), handing body bytes to `sink` as they come.
    pub fn read_response_with(
        &mut self,
        method: &str,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Option<RawResponse>> {
        let head = loop {
            match self.read_head()? {
                None => return Ok(None),
                Some(h) if is_interim(h.status) => continue,
                Some(h) => break h,
            }
        };
        self.read_body(&head, method, sink)?;
        Ok(Some(head))
    }

    /// Reads the body that `head` (the response to `method`) announces.
    fn read_body(
        &mut self,
        head: &RawResponse,
        method: &str,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<()> {
        if method == "HEAD"
            || (100..200).contains(&head.status)
            || head.status == 204
            || head.status == 304
        {
            return Ok(());
        }
        let chunked = head
            .header_all("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            self.read_chunked(sink)?;
        } else if let Some(len) = head.header("content-length") {
            let len: u64 = len
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad content-length {len:?}"));
            self.read_exact_into(len, sink)?;
        } else {
            // Delimited by close.
            loop {
                sink(&self.buf);
                self.buf.clear();
                match self.fill() {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if is_reset(&e) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn read_exact_into(&mut self, len: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let mut left = len;
        loop {
            let take = (self.buf.len() as u64).min(left) as usize;
            sink(&self.buf[..take]);
            self.buf.drain(..take);
            left -= take as u64;
            if left == 0 {
                return Ok(());
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body cut short: {} of {len} bytes", len - left),
                ));
            }
        }
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..pos].to_vec();
                self.buf.drain(..pos + 2);
                return Ok(line);
            }
            if self.buf.len() > 64 * 1024 {
                panic!("chunk line longer than 64 KiB from gateway");
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed inside a chunk line",
                ));
            }
        }
    }

    fn read_chunked(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        loop {
            let line = self.read_line()?;
            let text = String::from_utf8_lossy(&line);
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line from gateway: {text:?}"));
            if size == 0 {
                while !self.read_line()?.is_empty() {}
                return Ok(());
            }
            self.read_exact_into(size, sink)?;
            let crlf = self.read_line()?;
            assert!(
                crlf.is_empty(),
                "chunk not followed by CRLF: {:?}",
                String::from_utf8_lossy(&crlf)
            );
        }
    }

    /// Waits for the peer to close: EOF or reset. Panics if more bytes arrive, or on timeout.
    pub fn expect_closed(&mut self) -> Closed {
        assert!(
            self.buf.is_empty(),
            "expected the connection to close, but unread bytes remain: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        match self.fill() {
            Ok(0) => Closed::Eof,
            Ok(_) => panic!(
                "expected the connection to close, got more bytes: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e) if is_reset(&e) => Closed::Reset,
            Err(e) if is_timeout(&e) => {
                panic!("expected the connection to close; still open after {IO_TIMEOUT:?}")
            }
            Err(e) => panic!("expected the connection to close; got {e}"),
        }
    }

    /// Reads everything until the peer closes; panics on timeout.
    pub fn read_until_closed(&mut self) -> Vec<u8> {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if is_reset(&e) => break,
                Err(e) => panic!(
                    "reading until close: {e}; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Reads until `n` bytes are buffered; panics on close or timeout.
    pub fn read_at_least(&mut self, n: usize) -> &[u8] {
        while self.buf.len() < n {
            self.fill_or_panic("read_at_least");
        }
        &self.buf
    }

    /// Time how long the peer takes to close (or reset) the connection.
    pub fn time_until_closed(&mut self) -> Duration {
        let start = Instant::now();
        self.read_until_closed();
        start.elapsed()
    }
}

/// An interim response: 1xx other than `101 Switching Protocols`, which is final.
fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A minimal GET request with `Host: example.com` (HTTP/1.1).
pub fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n")
}

/// One keep-alive HTTP/1.1 connection that sends request after request on the same socket,
/// reading each response before the next request. With several workers, every request of a
/// session is served by the worker that accepted its connection (per-worker state such as a
/// cache then gives exact counts).
pub struct Session {
    raw: Raw,
    host: String,
    /// Set when a response said `Connection: close` (no further request may be sent).
    closed_by: Option<String>,
}

impl Session {
    /// Connects to `addr`; every request sends `Host: host`.
    pub fn connect(addr: SocketAddr, host: &str) -> Session {
        Session {
            raw: Raw::connect(addr),
            host: host.to_string(),
            closed_by: None,
        }
    }

    /// `METHOD path` with the session's `Host` and `extra` header lines (each ending in CRLF).
    pub fn request(&mut self, method: &str, path: &str, extra: &str) -> RawResponse {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{extra}\r\n",
            self.host
        );
        self.send(method, &head)
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> RawResponse {
        self.request("GET", path, "")
    }

    /// Sends a whole request as written (its head names the method `method`) and reads the
    /// response. Panics if an earlier response closed the connection.
    pub fn send(&mut self, method: &str, request: &str) -> RawResponse {
        if let Some(last) = &self.closed_by {
            panic!("the session is closed: the gateway said `Connection: close` to {last}");
        }
        self.raw.send(request);
        let response = self.raw.read_response_to(method);
        if response.connection_has("close") {
            self.closed_by = Some(request.lines().next().unwrap_or("").to_string());
        }
        response
    }
}
