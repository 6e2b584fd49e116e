//! A scripted h2c upstream on raw frames, for what a library server will not do on cue:
//! refuse a stream, send `GOAWAY` with a stream in flight, stop answering PINGs. Each
//! connection runs on a thread of its own; every answer is `:status 200` with a body naming
//! the connection and stream (`conn N stream S`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::upstream::Gate;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const REFUSED_STREAM: u32 = 0x7;

/// What the upstream does on its first connection (later connections always answer).
#[derive(Clone)]
pub enum Script {
    /// Answer every stream.
    Answer,
    /// Refuse the first stream with `RST_STREAM(REFUSED_STREAM)`.
    RefuseFirstStream,
    /// Hold the first stream, send `GOAWAY` naming it as the last one processed, and answer
    /// it once the gate opens.
    GoAwayHolding(Gate),
    /// Answer streams, never answer a PING.
    IgnorePings,
}

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    closed: AtomicUsize,
    pings: AtomicUsize,
    streams: AtomicUsize,
    goaways_sent: AtomicUsize,
    data_sum: AtomicUsize,
    stop: AtomicBool,
}

/// The upstream; it stops accepting when dropped.
pub struct ScriptedH2 {
    addr: SocketAddr,
    counters: Arc<Counters>,
}

impl ScriptedH2 {
    /// Listens on an ephemeral port and follows `script`.
    pub fn start(script: Script) -> ScriptedH2 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("h2-scripted".into())
            .spawn(move || {
                for tcp in listener.incoming() {
                    if c.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(tcp) = tcp else { continue };
                    let n = c.connections.fetch_add(1, Ordering::SeqCst) + 1;
                    let script = if n == 1 {
                        script.clone()
                    } else {
                        Script::Answer
                    };
                    let c = Arc::clone(&c);
                    std::thread::spawn(move || {
                        let _ = serve(tcp, n, &script, &c);
                        c.closed.fetch_add(1, Ordering::SeqCst);
                    });
                }
            })
            .expect("spawn");
        ScriptedH2 { addr, counters }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Connections the gateway closed (or that ended) so far.
    pub fn closed(&self) -> usize {
        self.counters.closed.load(Ordering::SeqCst)
    }

    /// PINGs received so far.
    pub fn pings(&self) -> usize {
        self.counters.pings.load(Ordering::SeqCst)
    }

    /// Request streams received so far (answered or not).
    pub fn streams(&self) -> usize {
        self.counters.streams.load(Ordering::SeqCst)
    }

    /// GOAWAY frames sent so far.
    /// The sum of every DATA payload byte received, on all connections.
    pub fn data_sum(&self) -> usize {
        self.counters.data_sum.load(Ordering::SeqCst)
    }

    pub fn goaways_sent(&self) -> usize {
        self.counters.goaways_sent.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedH2 {
    fn drop(&mut self) {
        self.counters.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn send(out: &Mutex<TcpStream>, bytes: &[u8]) -> std::io::Result<()> {
    out.lock()
        .unwrap_or_else(|e| e.into_inner())
        .write_all(bytes)
}

/// `:status 200` (static table index 8) and a body naming the connection and stream.
fn answer(out: &Mutex<TcpStream>, conn: usize, stream: u32) -> std::io::Result<()> {
    let mut bytes = frame(HEADERS, END_HEADERS, stream, &[0x88]);
    let body = format!("conn {conn} stream {stream}");
    bytes.extend(frame(DATA, END_STREAM, stream, body.as_bytes()));
    send(out, &bytes)
}

fn serve(mut tcp: TcpStream, conn: usize, script: &Script, c: &Counters) -> std::io::Result<()> {
    let mut preface = [0u8; 24];
    tcp.read_exact(&mut preface)?;
    let out = Arc::new(Mutex::new(tcp.try_clone()?));
    send(&out, &frame(SETTINGS, 0, 0, &[]))?;
    let mut first = true;
    loop {
        let mut head = [0u8; 9];
        tcp.read_exact(&mut head)?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload)?;
        if kind == DATA {
            let sum: usize = payload.iter().map(|&b| usize::from(b)).sum();
            c.data_sum.fetch_add(sum, Ordering::SeqCst);
        }
        match kind {
            SETTINGS if flags & ACK == 0 => send(&out, &frame(SETTINGS, ACK, 0, &[]))?,
            PING if flags & ACK == 0 => {
                c.pings.fetch_add(1, Ordering::SeqCst);
                if !matches!(script, Script::IgnorePings) {
                    send(&out, &frame(PING, ACK, 0, &payload))?;
                }
            }
            HEADERS | DATA if flags & END_STREAM != 0 => {
                if kind == HEADERS {
                    c.streams.fetch_add(1, Ordering::SeqCst);
                }
                let is_first = std::mem::take(&mut first);
                match script {
                    Script::RefuseFirstStream if is_first => {
                        let code = REFUSED_STREAM.to_be_bytes();
                        send(&out, &frame(RST_STREAM, 0, stream, &code))?;
                    }
                    Script::GoAwayHolding(gate) if is_first => {
                        let mut goaway = stream.to_be_bytes().to_vec();
                        goaway.extend_from_slice(&0u32.to_be_bytes());
                        send(&out, &frame(GOAWAY, 0, 0, &goaway))?;
                        c.goaways_sent.fetch_add(1, Ordering::SeqCst);
                        let (gate, out) = (gate.clone(), Arc::clone(&out));
                        std::thread::spawn(move || {
                            gate.wait_open();
                            let _ = answer(&out, conn, stream);
                        });
                    }
                    _ => answer(&out, conn, stream)?,
                }
            }
            HEADERS => {
                c.streams.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}
