//! What HTTPS adds to a client connection: the handshake on a TLS listener, the verified
//! client identity, the `Strict-Transport-Security` field, and redirects of plain-HTTP
//! requests to HTTPS.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::ServerConnection;

use super::connection::{ClientConn, Next};
use super::context::WorkerContext;
use super::error::ProxyError;
use crate::config::{Snapshot, TlsListener};
use crate::http::writer::write_static_response;
use crate::http::{Method, RequestHead};
use crate::io_buf::write_all_reuse;
use crate::metrics::{TlsFailure, TlsSide};
use crate::router::normalize::split_target;
use crate::tls::outcome;
use crate::tls::stream::TlsStream;
use crate::tls::ClientStream;

/// What a connection accepted on a TLS listener knows about its session.
#[derive(Debug, Clone)]
pub(super) struct TlsInfo {
    /// The listener's configured address (its settings are looked up per request, so a
    /// reload's new HSTS or header name applies to open connections too).
    pub(super) listen: SocketAddr,
    /// The verified client certificate's subject, if the client sent one.
    pub(super) client_subject: Option<Box<str>>,
}

impl TlsInfo {
    /// The listener's settings in `snapshot`, if it is still configured.
    pub(super) fn listener<'s>(&self, snapshot: &'s Snapshot) -> Option<&'s TlsListener> {
        snapshot.server.tls_listener(self.listen)
    }
}

/// Runs the server handshake for a connection accepted on the TLS listener configured at
/// `listen`, within `server.timeouts.head_read` (a client that connects and sends nothing is
/// cut off then). `None` if it failed (logged and counted) or the listener is no longer
/// configured.
pub(super) async fn accept(
    ctx: &Rc<WorkerContext>,
    tcp: TcpStream,
    peer: SocketAddr,
    listen: SocketAddr,
) -> Option<(ClientStream, TlsInfo)> {
    let snapshot = ctx.snapshot();
    let listener = snapshot.server.tls_listener(listen)?;
    let session = match ServerConnection::new(Arc::clone(&listener.config)) {
        Ok(session) => session,
        Err(e) => {
            log::warn!("{peer}: cannot start a TLS session: {e}");
            return None;
        }
    };
    let mut stream = TlsStream::new(tcp, session);
    let timeout = snapshot.server.timeouts.head_read;
    let metrics = ctx.metrics();
    match monoio::time::timeout(timeout, stream.handshake()).await {
        Ok(Ok(())) => {
            if let Some((version, resumed)) = outcome::completed(stream.session()) {
                metrics.tls_handshake(version, resumed);
            }
        }
        Ok(Err(e)) => {
            log::debug!("{peer}: TLS handshake failed: {e}");
            metrics.tls_failure(TlsSide::Client, outcome::failure_cause(&e));
            return None;
        }
        Err(_) => {
            log::debug!("{peer}: TLS handshake timed out");
            metrics.tls_failure(TlsSide::Client, TlsFailure::Timeout);
            return None;
        }
    }
    let info = TlsInfo {
        listen,
        client_subject: crate::tls::peer_subject(stream.session().peer_certificates()),
    };
    Some((ClientStream::Tls(Box::new(stream)), info))
}

/// Adds `Strict-Transport-Security: value` at the end of the response head that starts at
/// `out[start..]` (the head the gateway just wrote; a body may follow it).
pub(super) fn add_hsts(out: &mut Vec<u8>, start: usize, value: &str) {
    let Some(end) = out
        .get(start..)
        .and_then(|head| head.windows(4).position(|w| w == b"\r\n\r\n"))
    else {
        return;
    };
    let at = start + end + 2;
    let field = [b"Strict-Transport-Security: ", value.as_bytes(), b"\r\n"].concat();
    out.splice(at..at, field);
}

/// Appends the path and query of request-target `target` (origin-form, or absolute-form
/// whose scheme and authority the redirect replaces) to `location`; `/` if it has none.
fn push_path_and_query(location: &mut String, target: &[u8]) {
    let Ok(target) = split_target(target) else {
        location.push('/');
        return;
    };
    location.push_str(&String::from_utf8_lossy(target.path));
    if let Some(query) = target.query {
        location.push('?');
        location.push_str(&String::from_utf8_lossy(query));
    }
}

impl ClientConn {
    /// `Strict-Transport-Security` for the response head just written from `start`, on a
    /// TLS listener that sets `hsts`.
    pub(super) fn finish_secure_head(&mut self, snapshot: &Snapshot, start: usize) {
        let Some(tls) = &self.tls else { return };
        if let Some(hsts) = tls.listener(snapshot).and_then(|l| l.hsts.as_deref()) {
            add_hsts(&mut self.out, start, hsts);
        }
    }

    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub(super) fn proto(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Answers a plain-HTTP request on a `redirect_https` route with `308` to the same host
    /// and target over HTTPS on `port`.
    pub(super) async fn redirect_https(
        &mut self,
        ctx: &WorkerContext,
        port: u16,
        head: &RequestHead,
    ) -> Result<Next, ProxyError> {
        let host = self.match_host();
        if host.is_empty() {
            return Err(ProxyError::BadTarget);
        }
        let mut location = String::with_capacity(host.len() + 64);
        location.push_str("https://");
        location.push_str(host);
        if port != 443 {
            location.push(':');
            location.push_str(&port.to_string());
        }
        push_path_and_query(&mut location, head.target.of(self.input.data()));
        let headers = [("Location".to_string(), location)];
        let body_buffered = self.consume_request(head);
        let keep_alive = head.keep_alive && body_buffered && !ctx.drain().is_draining();
        self.out.clear();
        write_static_response(
            &mut self.out,
            308,
            &headers,
            b"",
            head.method_kind == Method::Head,
            head.version,
            keep_alive,
            &self.request_id,
            &self.response_headers,
        );
        self.response_started = true;
        self.exchange.status = 308;
        self.exchange.bytes_out += self.out.len() as u64;
        write_all_reuse(&mut self.stream, &mut self.out)
            .await
            .map_err(ProxyError::ClientGone)?;
        Ok(if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsts_goes_before_the_blank_line() {
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
        add_hsts(&mut out, 0, "max-age=60");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nStrict-Transport-Security: max-age=60\r\n\r\nok"
        );
        let mut partial = b"HTTP/1.1 200 OK\r\n".to_vec();
        add_hsts(&mut partial, 0, "max-age=60");
        assert_eq!(partial, b"HTTP/1.1 200 OK\r\n");
    }

    #[test]
    fn redirects_keep_the_path_and_query_of_any_target_form() {
        for (target, expected) in [
            (&b"/a/b?c=d"[..], "/a/b?c=d"),
            (b"/", "/"),
            (b"http://gateway.test/a/b?c=d", "/a/b?c=d"),
            (b"HTTP://gateway.test:8080/x", "/x"),
            (b"http://gateway.test?q=1", "/?q=1"),
            (b"http://gateway.test", "/"),
            (b"*", "/"),
        ] {
            let mut location = String::from("https://h");
            push_path_and_query(&mut location, target);
            assert_eq!(location, format!("https://h{expected}"), "{target:?}");
        }
    }
}
