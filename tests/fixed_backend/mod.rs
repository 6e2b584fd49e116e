//! A minimal keep-alive HTTP backend and client that allocate nothing per request: one
//! fixed response to every request head. Shared by `tests/allocations.rs` (where any
//! allocation would be counted against the gateway) and `benches/proxy_path.rs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests answered by every backend of the process.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// Requests the backends of this process answered so far.
#[allow(dead_code)]
pub fn served() -> u64 {
    SERVED.load(Ordering::Relaxed)
}

/// The response the backend sends to every request.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nhello world!\n";

/// Starts a backend on 127.0.0.1:0 that serves every accepted connection on its own thread.
pub fn start() -> SocketAddr {
    start_with(RESPONSE)
}

/// [`start`] answering every request with `response` (a whole response, framed by
/// `Content-Length`) instead of [`RESPONSE`].
pub fn start_with(response: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, response));
        }
    });
    addr
}

/// Answers every request head on `stream` with `response` until the peer closes.
fn serve(mut stream: TcpStream, response: &[u8]) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 8192];
    let mut filled = 0;
    loop {
        let Ok(n) = stream.read(&mut buf[filled..]) else {
            return;
        };
        if n == 0 {
            return;
        }
        filled += n;
        while let Some(end) = head_end(&buf[..filled]) {
            SERVED.fetch_add(1, Ordering::Relaxed);
            if stream.write_all(response).is_err() {
                return;
            }
            buf.copy_within(end..filled, 0);
            filled -= end;
        }
    }
}

/// Sends `request` and reads one `200` response, framed by its `Content-Length`, into
/// `buf` (large enough for it).
pub fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut [u8]) {
    stream.write_all(request).expect("write request");
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).expect("read response");
        assert!(n > 0, "connection closed before the response was complete");
        filled += n;
        if let Some(end) = head_end(&buf[..filled]) {
            assert!(
                buf.starts_with(b"HTTP/1.1 200 "),
                "unexpected response: {}",
                String::from_utf8_lossy(&buf[..end])
            );
            if filled >= end + content_length(&buf[..end]) {
                return;
            }
        }
    }
}

/// The `Content-Length` of a response head (parsed in place: the client allocates nothing).
fn content_length(head: &[u8]) -> usize {
    let text = std::str::from_utf8(head).expect("ASCII head");
    text.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .expect("a Content-Length")
}

/// One past the end of the first head in `bytes`, if complete.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}
