//! Raw HTTP/2 frames for the defence tests: a prior-knowledge client that writes whatever
//! frames a test builds (floods, malformed frames, bombs) and reads frames back one by one,
//! acknowledging the gateway's SETTINGS.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame as read back.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        let b = &self.payload[at..at + 4];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// A raw HTTP/2 connection (prior knowledge).
pub struct Raw {
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK literal field without indexing, new name, no Huffman (lengths < 127).
pub fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x00, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&hpack_len(value.len()));
    out.extend_from_slice(value.as_bytes());
    out
}

/// An HPACK string length (7-bit prefix integer, no Huffman).
pub fn hpack_len(n: usize) -> Vec<u8> {
    if n < 127 {
        return vec![n as u8];
    }
    let mut out = vec![127];
    let mut rest = n - 127;
    while rest >= 128 {
        out.push((rest % 128 + 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
    out
}

/// `GET path` on `http://authority`: static-table pseudo-headers, a literal `:authority`.
pub fn get_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    block.push(0x04); // :path, literal without indexing (static name 4)
    block.extend_from_slice(&hpack_len(path.len()));
    block.extend_from_slice(path.as_bytes());
    block.push(0x01); // :authority, literal without indexing (static name 1)
    block.extend_from_slice(&hpack_len(9));
    block.extend_from_slice(b"gw.test:1");
    block
}

impl Raw {
    pub fn connect(addr: SocketAddr, settings: &[(u16, u32)]) -> Raw {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(super::IO_TIMEOUT))
            .expect("timeout");
        let mut raw = Raw {
            tcp,
            buf: Vec::new(),
        };
        let mut payload = Vec::new();
        for (id, value) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &payload));
        raw.send(&hello);
        raw
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).expect("write");
    }

    /// Writes, tolerating a connection the gateway already closed.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).is_ok()
    }

    pub fn request(&mut self, stream: u32, path: &str) {
        self.send(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &get_block(path),
        ));
    }

    /// The next frame; `None` when the connection closed.
    pub fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes([
                            self.buf[5],
                            self.buf[6],
                            self.buf[7],
                            self.buf[8],
                        ]) & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    if f.kind == SETTINGS && f.flags & 1 == 0 {
                        let ack = frame(SETTINGS, 1, 0, &[]);
                        let _ = self.tcp.write_all(&ack);
                    }
                    return Some(f);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.tcp.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Frames until `want` matches one, or the connection closes (`None`).
    pub fn until(&mut self, want: impl Fn(&Frame) -> bool) -> Option<Frame> {
        while let Some(f) = self.next() {
            if want(&f) {
                return Some(f);
            }
        }
        None
    }

    pub fn goaway(&mut self) -> Option<Frame> {
        self.until(|f| f.kind == GOAWAY)
    }
}

/// A fresh connection to `addr` gets `GET /after` answered with `:status 200`; returns how
/// long the answer took.
pub fn served_within(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut raw = Raw::connect(addr, &[]);
    raw.request(1, "/after");
    let headers = raw
        .until(|f| f.kind == HEADERS && f.stream == 1)
        .expect("answer");
    assert!(
        headers.payload.contains(&0x88),
        "expected :status 200, got {headers:?}"
    );
    started.elapsed()
}
