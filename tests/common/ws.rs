//! A real WebSocket upstream (tungstenite, one thread per connection, plain or TLS) and
//! WebSocket clients through the gateway.
//!
//! The upstream echoes text and binary messages, answers pings (tungstenite does), and
//! understands a few commands sent as text: `close-me` (it starts the close handshake),
//! `flood N` (it sends N bytes in 64 KiB binary messages as fast as the socket takes them,
//! noting where a write first blocked for half a second). A handshake to `…/deny` is answered
//! 403 without switching. It records every handshake's header fields, every data message
//! received (text as sent, binary as its length) and the code of every close frame received.
//!
//! Included by `tests/websocket.rs` only (`#[path]`), so other test binaries do not build it.

// Test support: the upstream's threads share their records under a lock, and tungstenite's
// error types are what they are.
#![allow(clippy::disallowed_types, clippy::result_large_err)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::{ServerConfig, ServerConnection};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use crate::common::tls::Issued;
use crate::common::IO_TIMEOUT;

/// Header fields of one handshake, names lower case.
pub type Fields = Vec<(String, String)>;

#[derive(Default)]
struct State {
    handshakes: AtomicUsize,
    open: AtomicUsize,
    closed: AtomicUsize,
    fields: Mutex<Vec<Fields>>,
    /// Bytes written by a `flood` when a write first blocked (0: not yet).
    flood_blocked_at: AtomicU64,
    /// Data messages received: text as sent, binary as `<N bytes>`.
    received: Mutex<Vec<String>>,
    /// Close frames received: their codes (`None`: no code).
    close_codes: Mutex<Vec<Option<u16>>>,
}

/// The WebSocket upstream.
pub struct WsUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl WsUpstream {
    /// A plain (`ws://`) upstream.
    pub fn start() -> WsUpstream {
        Self::start_with(None)
    }

    /// A TLS (`wss://`) upstream presenting `identity`.
    pub fn start_tls(identity: &Issued) -> WsUpstream {
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(&identity.cert)
            .expect("cert file")
            .collect::<Result<Vec<_>, _>>()
            .expect("cert pem");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&identity.key).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("upstream cert");
        Self::start_with(Some(Arc::new(config)))
    }

    fn start_with(tls: Option<Arc<ServerConfig>>) -> WsUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind ws upstream");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, stopped) = (Arc::clone(&state), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (state, tls) = (Arc::clone(&thread_state), tls.clone());
                let _ = std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || serve(stream, tls, &state));
            }
        });
        WsUpstream {
            addr,
            state,
            stop,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Handshakes received (switched or denied).
    pub fn handshakes(&self) -> usize {
        self.state.handshakes.load(Ordering::SeqCst)
    }

    /// WebSocket connections open now.
    pub fn open(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// WebSocket connections that ended.
    pub fn closed(&self) -> usize {
        self.state.closed.load(Ordering::SeqCst)
    }

    /// The header fields of every handshake so far.
    pub fn fields(&self) -> Vec<Fields> {
        self.state
            .fields
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Bytes a flood had written when its first write blocked (0: none blocked yet).
    pub fn flood_blocked_at(&self) -> u64 {
        self.state.flood_blocked_at.load(Ordering::SeqCst)
    }

    /// Data messages received so far (text as sent, binary as `<N bytes>`).
    pub fn received(&self) -> Vec<String> {
        self.state
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The codes of the close frames received so far.
    pub fn close_codes(&self) -> Vec<Option<u16>> {
        self.state
            .close_codes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for WsUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// The value of field `name` in `fields`.
pub fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn serve(tcp: TcpStream, tls: Option<Arc<ServerConfig>>, state: &State) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    match tls {
        None => serve_ws(tcp, state),
        Some(config) => {
            let Ok(conn) = ServerConnection::new(config) else {
                return;
            };
            serve_ws(rustls::StreamOwned::new(conn, tcp), state);
        }
    }
}

fn serve_ws<S: Read + Write + Blocking>(stream: S, state: &State) {
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        state.handshakes.fetch_add(1, Ordering::SeqCst);
        let fields = request
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        state
            .fields
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fields);
        if request.uri().path().ends_with("/deny") {
            let mut denied = ErrorResponse::new(Some("denied".to_string()));
            *denied.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
            let length = tungstenite::http::HeaderValue::from_static("6");
            denied.headers_mut().insert("content-length", length);
            return Err(denied);
        }
        Ok(response)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else {
        return;
    };
    state.open.fetch_add(1, Ordering::SeqCst);
    loop {
        let message = match ws.read() {
            Ok(m) => m,
            Err(_) => break,
        };
        record(&message, state);
        let result = match &message {
            Message::Text(t) if t.as_str() == "close-me" => ws.close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            })),
            Message::Text(t) if t.as_str().starts_with("flood ") => {
                let n = t.as_str()[6..].parse().unwrap_or(0);
                flood(&mut ws, n, state);
                Ok(())
            }
            Message::Text(_) | Message::Binary(_) => ws.send(message),
            _ => Ok(()),
        };
        if result.is_err() {
            let _ = ws.flush();
        }
    }
    // The socket is closed before the connection counts as ended.
    drop(ws);
    state.open.fetch_sub(1, Ordering::SeqCst);
    state.closed.fetch_add(1, Ordering::SeqCst);
}

/// Notes a data message's content or a close frame's code.
fn record(message: &Message, state: &State) {
    match message {
        Message::Text(t) => push(&state.received, t.as_str().to_string()),
        Message::Binary(b) => push(&state.received, format!("<{} bytes>", b.len())),
        Message::Close(frame) => push(
            &state.close_codes,
            frame.as_ref().map(|f| u16::from(f.code)),
        ),
        _ => {}
    }
}

fn push<T>(into: &Mutex<Vec<T>>, item: T) {
    into.lock().unwrap_or_else(|e| e.into_inner()).push(item);
}

/// Streams whose write timeout can be set (to notice a blocked flood).
pub trait Blocking {
    fn set_write_timeout(&self, timeout: Option<Duration>);
}

impl Blocking for TcpStream {
    fn set_write_timeout(&self, timeout: Option<Duration>) {
        let _ = TcpStream::set_write_timeout(self, timeout);
    }
}

impl Blocking for rustls::StreamOwned<ServerConnection, TcpStream> {
    fn set_write_timeout(&self, timeout: Option<Duration>) {
        let _ = self.sock.set_write_timeout(timeout);
    }
}

/// Sends `n` bytes in 64 KiB messages; the first write that blocks for 500 ms records how
/// far it got, then the flood goes on without a timeout.
fn flood<S: Read + Write + Blocking>(ws: &mut WebSocket<S>, n: u64, state: &State) {
    let chunk = vec![0x5A; 64 * 1024];
    ws.get_ref()
        .set_write_timeout(Some(Duration::from_millis(500)));
    let mut sent = 0;
    while sent < n {
        let len = (n - sent).min(chunk.len() as u64) as usize;
        let mut result = ws.send(Message::binary(chunk[..len].to_vec()));
        while let Err(tungstenite::Error::Io(e)) = &result {
            if !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                return;
            }
            let _ = state.flood_blocked_at.compare_exchange(
                0,
                sent.max(1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            ws.get_ref().set_write_timeout(Some(IO_TIMEOUT));
            result = ws.flush();
        }
        if result.is_err() {
            return;
        }
        sent += len as u64;
    }
}

/// A plain WebSocket client connected through the gateway at `addr` to `path`.
pub fn connect(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    try_connect(addr, path).expect("websocket handshake through the gateway")
}

/// [`connect`], returning the handshake's failure (e.g. the gateway's or upstream's refusal).
pub fn try_connect(
    addr: SocketAddr,
    path: &str,
) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let url = format!("ws://{addr}{path}");
    match tungstenite::client(url.as_str(), tcp) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("blocking handshake interrupted")
        }
    }
}

/// Sends `text` and returns the next data message's text.
pub fn echo<S: Read + Write>(ws: &mut WebSocket<S>, text: &str) -> String {
    ws.send(Message::text(text)).expect("send");
    next_data(ws).to_text().expect("text").to_string()
}

/// The next text or binary message (pings and pongs skipped).
pub fn next_data<S: Read + Write>(ws: &mut WebSocket<S>) -> Message {
    loop {
        match ws.read().expect("read message") {
            m @ (Message::Text(_) | Message::Binary(_)) => return m,
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Reads until the peer's close frame and returns its code.
pub fn close_code<S: Read + Write>(ws: &mut WebSocket<S>) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}
