//! An authorization server stand-in: RFC 7662 introspection (`POST /introspect`, form body,
//! client_secret_basic checked), OpenID Connect discovery
//! (`/.well-known/openid-configuration`) and a JWKS (`/jwks`), on 127.0.0.1:0, keep-alive.
//!
//! Tokens are registered with the JSON the endpoint answers for them; unknown tokens are
//! `{"active": false}`. Every introspection, discovery and JWKS request is counted. `delay`
//! holds each introspection answer that long (a slow server, so that concurrent lookups
//! overlap). The discovery document names the stand-in as its issuer unless told to name
//! another (`set_discovery_issuer`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

/// The client credentials the stand-in accepts.
pub const CLIENT_ID: &str = "ringgate";
pub const CLIENT_SECRET: &str = "s3cret:with/odd chars";

#[derive(Default)]
struct State {
    tokens: Mutex<HashMap<String, String>>,
    jwks: Mutex<String>,
    introspections: AtomicUsize,
    discoveries: AtomicUsize,
    jwks_fetches: AtomicUsize,
    discovery_issuer: Mutex<Option<String>>,
    bad_credentials: AtomicUsize,
    delay: Mutex<Duration>,
    stop: AtomicBool,
}

/// A running stand-in (stops when dropped).
pub struct AuthServer {
    addr: SocketAddr,
    state: Arc<State>,
}

impl AuthServer {
    pub fn start() -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state, addr));
            }
        });
        AuthServer { addr, state }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (the issuer).
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers `claims` (a JSON object) for `token`.
    pub fn set_token(&self, token: &str, claims: &str) {
        let mut tokens = self.state.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.insert(token.to_string(), claims.to_string());
    }

    /// Revokes `token`: it is inactive from now on.
    pub fn revoke(&self, token: &str) {
        self.set_token(token, r#"{"active":false}"#);
    }

    pub fn set_jwks(&self, jwks: &str) {
        *self.state.jwks.lock().unwrap_or_else(|e| e.into_inner()) = jwks.to_string();
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    /// Introspection requests received.
    pub fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }

    pub fn discoveries(&self) -> usize {
        self.state.discoveries.load(Ordering::SeqCst)
    }

    /// JWKS requests received.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Makes the discovery document name `issuer` (`None`: the stand-in itself again).
    pub fn set_discovery_issuer(&self, issuer: Option<&str>) {
        *self
            .state
            .discovery_issuer
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = issuer.map(str::to_string);
    }

    /// Introspection requests whose client credentials were wrong.
    pub fn bad_credentials(&self) -> usize {
        self.state.bad_credentials.load(Ordering::SeqCst)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, state: &State, addr: SocketAddr) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || state.stop.load(Ordering::SeqCst) {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut length = 0;
        let mut authorization = String::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "authorization" => authorization = value.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, answer) = match (method.as_str(), path.as_str()) {
            ("POST", "/introspect") => introspect(state, &authorization, &body),
            ("GET", "/.well-known/openid-configuration") => {
                state.discoveries.fetch_add(1, Ordering::SeqCst);
                let base = format!("http://{addr}");
                let issuer = state
                    .discovery_issuer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_else(|| base.clone());
                (
                    200,
                    format!(
                        r#"{{"issuer":"{issuer}","jwks_uri":"{base}/jwks","introspection_endpoint":"{base}/introspect"}}"#
                    ),
                )
            }
            ("GET", "/jwks") => {
                state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                (
                    200,
                    state.jwks.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                )
            }
            _ => (404, "{}".to_string()),
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn introspect(state: &State, authorization: &str, body: &[u8]) -> (u16, String) {
    state.introspections.fetch_add(1, Ordering::SeqCst);
    let delay = *state.delay.lock().unwrap_or_else(|e| e.into_inner());
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let expected = base64::engine::general_purpose::STANDARD.encode(format!(
        "{CLIENT_ID}:{}",
        CLIENT_SECRET
            .replace(':', "%3A")
            .replace('/', "%2F")
            .replace(' ', "%20")
    ));
    if authorization != format!("Basic {expected}") {
        state.bad_credentials.fetch_add(1, Ordering::SeqCst);
        return (401, r#"{"error":"invalid_client"}"#.to_string());
    }
    let body = String::from_utf8_lossy(body);
    let token = body
        .split('&')
        .find_map(|p| p.strip_prefix("token="))
        .map(decode)
        .unwrap_or_default();
    let tokens = state.tokens.lock().unwrap_or_else(|e| e.into_inner());
    let claims = tokens
        .get(&token)
        .cloned()
        .unwrap_or_else(|| r#"{"active":false}"#.to_string());
    (200, claims)
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
