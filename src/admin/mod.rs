//! The admin API, on its own listener (never the public one): `/healthz`, `/readyz`,
//! `/metrics`, `/config`, `/upstreams`, `/openapi.json` and `POST /reload`.
//!
//! Admin traffic is rare and small, so this is a plain blocking thread serving one request
//! per connection, far from the workers. Anything that needs the gateway's state is asked of
//! the control thread over its channel; readiness is read directly so that `/readyz` answers
//! while the control thread is busy shutting down.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};

use crate::config::AdminSettings;
use crate::http::writer::write_static_response;
use crate::http::{parse_request, HeadLimits, HeaderSpan, Method, Version};
use crate::server::control::{ControlEvent, Readiness, ReloadOutcome};

/// Longest wait for an admin client or for the control thread.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest admin request head.
const MAX_HEAD: usize = 8 * 1024;

/// A running admin listener.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
}

impl AdminServer {
    /// Binds the admin listener and serves it on a thread of its own for the life of the
    /// process.
    pub fn start(
        settings: &AdminSettings,
        events: Sender<ControlEvent>,
        readiness: Arc<Readiness>,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(settings.listen).map_err(|e| {
            io::Error::new(e.kind(), format!("admin listener {}: {e}", settings.listen))
        })?;
        let local_addr = listener.local_addr()?;
        let api = Api {
            token: settings.token.clone(),
            events,
            readiness,
        };
        std::thread::Builder::new()
            .name("ringgate-admin".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    if let Err(e) = api.serve(stream) {
                        log::debug!("admin connection: {e}");
                    }
                }
            })?;
        Ok(Self { local_addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// An answer: status, content type, body.
type Answer = (u16, &'static str, Vec<u8>);

struct Api {
    token: Option<String>,
    events: Sender<ControlEvent>,
    readiness: Arc<Readiness>,
}

impl Api {
    fn serve(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_read_timeout(Some(ADMIN_TIMEOUT))?;
        stream.set_write_timeout(Some(ADMIN_TIMEOUT))?;
        let mut buf = Vec::with_capacity(1024);
        let mut headers = Vec::new();
        let limits = HeadLimits {
            max_head_bytes: MAX_HEAD,
            max_headers: 64,
            max_uri_bytes: 1024,
        };
        let head = loop {
            match parse_request(&buf, &limits, &mut headers) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => {
                    let status = e.status();
                    return respond(
                        &mut stream,
                        (status, TEXT, b"bad request\n".to_vec()),
                        false,
                    );
                }
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let target = head.target.of(&buf);
        let path = target.split(|&b| b == b'?').next().unwrap_or_default();
        let query = target.get(path.len() + 1..).unwrap_or_default();
        let answer = if self.authorized(&buf, &headers) {
            if path == b"/cache/purge" {
                self.purge(head.method_kind, query)
            } else {
                self.route(head.method_kind, path)
            }
        } else {
            (
                401,
                TEXT,
                b"unauthorized: send Authorization: Bearer <admin.token>\n".to_vec(),
            )
        };
        respond(&mut stream, answer, head.method_kind == Method::Head)
    }

    fn authorized(&self, buf: &[u8], headers: &[HeaderSpan]) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let sent = headers
            .iter()
            .find(|h| h.name.of(buf).eq_ignore_ascii_case(b"authorization"))
            .map(|h| h.value.of(buf))
            .and_then(|v| v.strip_prefix(b"Bearer "));
        sent.is_some_and(|sent| constant_time_eq(sent, token.as_bytes()))
    }

    fn route(&self, method: Method, path: &[u8]) -> Answer {
        let read = matches!(method, Method::Get | Method::Head);
        match path {
            b"/healthz" if read => (200, TEXT, b"ok\n".to_vec()),
            b"/readyz" if read => self.readyz(),
            b"/metrics" if read => self.ask(ControlEvent::Metrics, PROMETHEUS),
            b"/config" if read => self.ask(ControlEvent::Config, TOML),
            b"/upstreams" if read => self.ask(ControlEvent::Upstreams, JSON),
            b"/openapi.json" if read => self.ask(ControlEvent::OpenApi, JSON),
            b"/reload" if method == Method::Post => self.reload(),
            b"/healthz" | b"/readyz" | b"/metrics" | b"/config" | b"/upstreams"
            | b"/openapi.json" | b"/reload" => (405, TEXT, b"method not allowed\n".to_vec()),
            _ => (404, TEXT, b"not found\n".to_vec()),
        }
    }

    /// `POST /cache/purge?url=URL`, `?prefix=/PATH[&host=HOST]` or `?tag=TAG` (values
    /// percent-encoded): removes the entries from every worker's caches (and other instances'
    /// with `[redis]`); answers `{"purged": N}`, or 400 naming what is wrong.
    fn purge(&self, method: Method, query: &[u8]) -> Answer {
        if method != Method::Post {
            return (
                405,
                TEXT,
                b"method not allowed: POST /cache/purge
"
                .to_vec(),
            );
        }
        let purge = match purge_request(query) {
            Ok(purge) => purge,
            Err(message) => {
                return (
                    400,
                    TEXT,
                    format!(
                        "{message}
"
                    )
                    .into_bytes(),
                )
            }
        };
        let (tx, rx) = bounded(1);
        if self.events.send(ControlEvent::Purge(purge, tx)).is_err() {
            return (
                503,
                TEXT,
                b"shutting down
"
                .to_vec(),
            );
        }
        match rx.recv_timeout(ADMIN_TIMEOUT) {
            Ok(n) => (200, JSON, format!("{{\"purged\":{n}}}\n").into_bytes()),
            Err(_) => (
                503,
                TEXT,
                b"control thread busy
"
                .to_vec(),
            ),
        }
    }

    fn readyz(&self) -> Answer {
        if self.readiness.is_ready() {
            (200, TEXT, b"ready\n".to_vec())
        } else {
            (503, TEXT, b"not ready\n".to_vec())
        }
    }

    /// Asks the control thread for a text and answers with it.
    fn ask(&self, event: fn(Sender<String>) -> ControlEvent, content_type: &'static str) -> Answer {
        let (tx, rx) = bounded(1);
        if self.events.send(event(tx)).is_err() {
            return (503, TEXT, b"shutting down\n".to_vec());
        }
        match rx.recv_timeout(ADMIN_TIMEOUT) {
            Ok(text) => (200, content_type, text.into_bytes()),
            Err(_) => (503, TEXT, b"control thread busy\n".to_vec()),
        }
    }

    fn reload(&self) -> Answer {
        let (tx, rx) = bounded(1);
        if self.events.send(ControlEvent::Reload(Some(tx))).is_err() {
            return (503, TEXT, b"shutting down\n".to_vec());
        }
        match rx.recv_timeout(ADMIN_TIMEOUT) {
            Ok(ReloadOutcome::Applied(summary)) => (200, TEXT, format!("{summary}\n").into_bytes()),
            Ok(ReloadOutcome::Refused(problems)) => {
                let body = format!(
                    "reload refused, the running configuration stays in force:\n{problems}\n"
                );
                (400, TEXT, body.into_bytes())
            }
            Err(_) => (503, TEXT, b"control thread busy\n".to_vec()),
        }
    }
}

/// The purge a `/cache/purge` query names: exactly one of `url`, `prefix` (with an optional
/// `host`) and `tag`.
fn purge_request(query: &[u8]) -> Result<crate::cache::Purge, String> {
    use crate::cache::Purge;
    let (mut url, mut prefix, mut host, mut tag) = (None, None, None, None);
    for pair in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        let value = percent_encoding::percent_decode(value)
            .decode_utf8()
            .map_err(|_| "a parameter is not UTF-8 after percent-decoding".to_string())?
            .into_owned();
        match name {
            b"url" => url = Some(value),
            b"prefix" => prefix = Some(value),
            b"host" => host = Some(value),
            b"tag" => tag = Some(value),
            other => {
                return Err(format!(
                    "unknown parameter `{}`: expected url, prefix (with host) or tag",
                    String::from_utf8_lossy(other)
                ))
            }
        }
    }
    match (url, prefix, tag) {
        (Some(url), None, None) if host.is_none() => Purge::url(&url),
        (None, Some(prefix), None) => Purge::prefix(&prefix, host.as_deref()),
        (None, None, Some(tag)) if host.is_none() => Purge::tag(&tag),
        (None, None, None) => Err("name what to purge: url=, prefix= or tag=".to_string()),
        _ => Err("give exactly one of url=, prefix= or tag= (host= only with prefix=)".to_string()),
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const TOML: &str = "application/toml";
const JSON: &str = "application/json";

fn respond(
    stream: &mut TcpStream,
    (status, content_type, body): Answer,
    head_only: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(body.len() + 256);
    let headers = [("Content-Type".to_string(), content_type.to_string())];
    write_static_response(
        &mut out,
        status,
        &headers,
        &body,
        head_only,
        Version::Http11,
        false,
        b"",
        b"",
    );
    stream.write_all(&out)
}

/// Compares without an early exit, so the time taken does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison_needs_every_byte() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"s3creT", b"s3cret"));
    }
}
