//! One blocking health probe: `GET path` over a fresh connection (TLS when the group talks
//! TLS to its targets), status line read, closed. Runs on the health thread (never on a
//! worker), bounded by the check's timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;

use super::active::HealthCheck;
use crate::config::UpstreamTls;

/// Probes `addr`: whether it answered `check.path` with an expected status in time.
pub fn probe(addr: SocketAddr, check: &HealthCheck, tls: Option<&UpstreamTls>) -> bool {
    status(addr, check, tls).is_some_and(|s| check.expected_status.contains(s))
}

/// The status `addr` answered with, or `None` (refused, timed out, handshake failed, not
/// HTTP).
pub fn status(addr: SocketAddr, check: &HealthCheck, tls: Option<&UpstreamTls>) -> Option<u16> {
    let deadline = Instant::now() + check.timeout;
    let tcp = TcpStream::connect_timeout(&addr, check.timeout).ok()?;
    let sock = tcp.try_clone().ok()?;
    let timeouts = move || -> Option<()> {
        let left = remaining(deadline)?;
        sock.set_read_timeout(Some(left)).ok()?;
        sock.set_write_timeout(Some(left)).ok()
    };
    match tls {
        None => exchange(tcp, addr, check, timeouts),
        Some(tls) => {
            let name = tls
                .server_name
                .clone()
                .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
            let session = rustls::ClientConnection::new(Arc::clone(&tls.config), name).ok()?;
            exchange(
                rustls::StreamOwned::new(session, tcp),
                addr,
                check,
                timeouts,
            )
        }
    }
}

/// Writes the probe and reads the status line, setting the socket timeouts to what is left
/// of the deadline before each step.
fn exchange(
    mut stream: impl Read + Write,
    addr: SocketAddr,
    check: &HealthCheck,
    timeouts: impl Fn() -> Option<()>,
) -> Option<u16> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ringgate-health\r\nConnection: close\r\n\r\n",
        check.path
    );
    timeouts()?;
    stream.write_all(request.as_bytes()).ok()?;
    stream.flush().ok()?;
    let mut buf = [0u8; 64];
    let mut len = 0;
    // "HTTP/1.1 200" is 12 bytes.
    while len < 12 {
        timeouts()?;
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return None,
            Ok(n) => len += n,
        }
    }
    parse_status(&buf[..len])
}

fn remaining(deadline: Instant) -> Option<std::time::Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

/// The status of an HTTP/1.x status line's beginning.
fn parse_status(line: &[u8]) -> Option<u16> {
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::active::StatusRange;
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    fn check() -> HealthCheck {
        HealthCheck {
            path: "/healthz".into(),
            expected_status: StatusRange {
                low: 200,
                high: 299,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            unhealthy_after: 1,
            healthy_after: 1,
        }
    }

    fn serve_once(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut req = [0u8; 1024];
                let n = s.read(&mut req).unwrap_or(0);
                assert!(req[..n].starts_with(b"GET /healthz HTTP/1.1\r\n"));
                let _ = s.write_all(answer);
            }
        });
        addr
    }

    #[test]
    fn reads_the_status_of_the_health_path() {
        let addr = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert!(probe(addr, &check(), None));
        let addr = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(status(addr, &check(), None), Some(503));
    }

    #[test]
    fn refused_garbage_and_silence_fail() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let silent = listener.local_addr().expect("addr");
        assert!(!probe(silent, &check(), None), "never answers: timeout");
        drop(listener);
        assert!(!probe(silent, &check(), None), "refused");
        let addr = serve_once(b"SSH-2.0-OpenSSH\r\n");
        assert!(!probe(addr, &check(), None));
    }
}
