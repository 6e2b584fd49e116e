//! The HTTP/1.1 Upgrade mechanism (RFC 9110 §7.8) as a proxy meets it: which of a route's
//! protocols a request offers to switch to, whether a WebSocket opening handshake is
//! well-formed (RFC 6455 §4.1–4.2.1), and whether an upstream's `101` switched to the
//! protocol that was asked for.
//!
//! Nothing here allocates or does I/O: every function reads the parsed head in place.
//! `h2c` never appears in a route's protocols (the config refuses it), so it is never
//! offered: an `Upgrade: h2c` request is forwarded as a plain request, its `Upgrade` field
//! dropped as hop-by-hop (h2c smuggling through proxies is a known way around path rules).

use super::headers::{list_elements, ConnectionTokens};
use super::{BodyFraming, HeaderSpan, Method, RequestHead, Version};

/// The protocol token of RFC 6455.
pub const WEBSOCKET: &str = "websocket";

/// The only WebSocket version there is (RFC 6455 §4.1): the value a 426 answer names.
pub const WEBSOCKET_VERSION: &[u8] = b"13";

/// What a request's `Upgrade` offers that a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Index of the accepted protocol in the route's list.
    pub protocol: usize,
    /// Whether `Connection` lists `upgrade`, as a sender of `Upgrade` must (RFC 9110 §7.8).
    pub connection_upgrade: bool,
}

/// The first protocol of `accepted` (lower-case tokens) that the request's `Upgrade`
/// fields list, compared case-insensitively as whole `name[/version]` elements. HTTP/1.0
/// requests never upgrade (RFC 9110 §7.8: a server ignores `Upgrade` received in 1.0).
pub fn offered(
    buf: &[u8],
    head: &RequestHead,
    headers: &[HeaderSpan],
    accepted: &[Box<str>],
) -> Option<Offer> {
    if head.version != Version::Http11 {
        return None;
    }
    let protocol = headers
        .iter()
        .filter(|h| h.name.of(buf).eq_ignore_ascii_case(b"upgrade"))
        .flat_map(|h| list_elements(h.value.of(buf)))
        .find_map(|token| {
            accepted
                .iter()
                .position(|p| token.eq_ignore_ascii_case(p.as_bytes()))
        })?;
    Some(Offer {
        protocol,
        connection_upgrade: ConnectionTokens::gather(buf, headers).names(b"upgrade"),
    })
}

/// Why a WebSocket opening handshake is refused (400, or 426 for the version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeFault {
    /// The method is not `GET`.
    #[error("a WebSocket handshake must be a GET request")]
    NotGet,
    /// `Connection` does not list `upgrade`.
    #[error("a WebSocket handshake must send Connection: upgrade")]
    NoConnectionUpgrade,
    /// The request has a body.
    #[error("a WebSocket handshake must not have a body")]
    HasBody,
    /// `Sec-WebSocket-Key` is missing, repeated, or not 16 bytes in base64.
    #[error("invalid Sec-WebSocket-Key")]
    BadKey,
    /// `Sec-WebSocket-Version` is missing or not `13` (answered 426).
    #[error("unsupported Sec-WebSocket-Version")]
    UnsupportedVersion,
}

impl HandshakeFault {
    /// The status the client is answered with.
    pub fn status(self) -> u16 {
        match self {
            HandshakeFault::UnsupportedVersion => 426,
            _ => 400,
        }
    }
}

/// Checks an RFC 6455 opening handshake (§4.2.1): `GET`, no body, `Connection: upgrade`,
/// exactly one `Sec-WebSocket-Key` of 16 base64-encoded bytes, `Sec-WebSocket-Version: 13`.
/// `Upgrade: websocket` and HTTP/1.1 are what made [`offered`] return the offer.
pub fn check_websocket(
    buf: &[u8],
    head: &RequestHead,
    headers: &[HeaderSpan],
    offer: Offer,
) -> Result<(), HandshakeFault> {
    if head.method_kind != Method::Get {
        return Err(HandshakeFault::NotGet);
    }
    if !offer.connection_upgrade {
        return Err(HandshakeFault::NoConnectionUpgrade);
    }
    if head.framing != BodyFraming::None {
        return Err(HandshakeFault::HasBody);
    }
    let mut keys = fields(buf, headers, b"sec-websocket-key");
    match (keys.next(), keys.next()) {
        (Some(key), None) if is_websocket_key(key) => {}
        _ => return Err(HandshakeFault::BadKey),
    }
    // The version field may list several versions a client can speak (§4.4).
    let speaks_13 = fields(buf, headers, b"sec-websocket-version")
        .flat_map(list_elements)
        .any(|v| v == WEBSOCKET_VERSION);
    if !speaks_13 {
        return Err(HandshakeFault::UnsupportedVersion);
    }
    Ok(())
}

/// Whether an upstream's `101` switched to `protocol`: its `Upgrade` field names exactly
/// that protocol (RFC 9110 §15.2.2: the server names the protocol it switches to).
pub fn switched_to(buf: &[u8], headers: &[HeaderSpan], protocol: &str) -> bool {
    let mut protocols = fields(buf, headers, b"upgrade").flat_map(list_elements);
    matches!(
        (protocols.next(), protocols.next()),
        (Some(p), None) if p.eq_ignore_ascii_case(protocol.as_bytes())
    )
}

/// The values of every field named `name`.
fn fields<'a>(
    buf: &'a [u8],
    headers: &'a [HeaderSpan],
    name: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.of(buf).eq_ignore_ascii_case(name))
        .map(move |h| h.value.of(buf))
}

/// 16 bytes in base64: 22 alphabet characters and `==` (RFC 6455 §4.1, item 7).
fn is_websocket_key(key: &[u8]) -> bool {
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    key.len() == 24 && key[..22].iter().all(alphabet) && &key[22..] == b"=="
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, HeadLimits};

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 64,
        max_uri_bytes: 4096,
    };

    fn accepted(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|s| Box::from(*s)).collect()
    }

    /// Parses `head` and runs `f` on it.
    fn with_head<R>(head: &str, f: impl FnOnce(&[u8], &RequestHead, &[HeaderSpan]) -> R) -> R {
        let mut headers = Vec::new();
        let parsed = parse_request(head.as_bytes(), &LIMITS, &mut headers)
            .expect("valid head")
            .expect("complete head");
        f(head.as_bytes(), &parsed, &headers)
    }

    fn handshake(extra: &str) -> String {
        format!("GET /chat HTTP/1.1\r\nHost: a\r\n{extra}\r\n")
    }

    const GOOD: &str = "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    fn check(extra: &str) -> Result<(), HandshakeFault> {
        with_head(&handshake(extra), |buf, head, headers| {
            let offer = offered(buf, head, headers, &accepted(&[WEBSOCKET])).expect("offered");
            check_websocket(buf, head, headers, offer)
        })
    }

    #[test]
    fn accepts_the_rfc_6455_sample_handshake() {
        assert_eq!(check(GOOD), Ok(()));
    }

    #[test]
    fn offer_picks_the_first_accepted_protocol_case_insensitively() {
        let head = handshake("Upgrade: foo/2, WebSocket\r\nConnection: upgrade\r\n");
        with_head(&head, |buf, head, headers| {
            let offer = offered(buf, head, headers, &accepted(&["tcp", WEBSOCKET]));
            assert_eq!(
                offer,
                Some(Offer {
                    protocol: 1,
                    connection_upgrade: true
                })
            );
        });
    }

    #[test]
    fn h2c_and_unlisted_protocols_are_not_offered() {
        let head = handshake("Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n");
        with_head(&head, |buf, head, headers| {
            assert_eq!(offered(buf, head, headers, &accepted(&[WEBSOCKET])), None);
        });
        let head = handshake("Upgrade: websocket/2\r\nConnection: upgrade\r\n");
        with_head(&head, |buf, head, headers| {
            assert_eq!(offered(buf, head, headers, &accepted(&[WEBSOCKET])), None);
        });
    }

    #[test]
    fn http_1_0_requests_never_upgrade() {
        let head = format!("GET / HTTP/1.0\r\n{GOOD}\r\n");
        with_head(&head, |buf, head, headers| {
            assert_eq!(offered(buf, head, headers, &accepted(&[WEBSOCKET])), None);
        });
    }

    #[test]
    fn refuses_a_handshake_without_connection_upgrade() {
        let extra = "Upgrade: websocket\r\nConnection: keep-alive\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        assert_eq!(check(extra), Err(HandshakeFault::NoConnectionUpgrade));
    }

    #[test]
    fn refuses_a_handshake_that_is_not_a_get() {
        let head = format!("POST /chat HTTP/1.1\r\nHost: a\r\n{GOOD}\r\n");
        let fault = with_head(&head, |buf, head, headers| {
            let offer = offered(buf, head, headers, &accepted(&[WEBSOCKET])).expect("offered");
            check_websocket(buf, head, headers, offer)
        });
        assert_eq!(fault, Err(HandshakeFault::NotGet));
    }

    #[test]
    fn refuses_a_handshake_with_a_body() {
        assert_eq!(
            check(&format!("{GOOD}Content-Length: 3\r\n")),
            Err(HandshakeFault::HasBody)
        );
    }

    #[test]
    fn refuses_missing_repeated_and_malformed_keys() {
        let base = "Connection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
        for keys in [
            "",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n",
            "Sec-WebSocket-Key: c2hvcnQ=\r\n",
        ] {
            assert_eq!(
                check(&format!("{base}{keys}")),
                Err(HandshakeFault::BadKey),
                "{keys:?}"
            );
        }
    }

    #[test]
    fn refuses_other_versions_with_426_and_accepts_a_list_naming_13() {
        let base = "Connection: upgrade\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        for version in [
            "",
            "Sec-WebSocket-Version: 8\r\n",
            "Sec-WebSocket-Version: 130\r\n",
        ] {
            let fault = check(&format!("{base}{version}"));
            assert_eq!(
                fault,
                Err(HandshakeFault::UnsupportedVersion),
                "{version:?}"
            );
            assert_eq!(HandshakeFault::UnsupportedVersion.status(), 426);
        }
        assert_eq!(
            check(&format!("{base}Sec-WebSocket-Version: 8, 13\r\n")),
            Ok(())
        );
    }

    #[test]
    fn an_upstream_101_must_name_the_protocol_asked_for() {
        let cases = [
            ("Upgrade: websocket\r\n", true),
            ("Upgrade: WebSocket\r\n", true),
            ("", false),
            ("Upgrade: h2c\r\n", false),
            ("Upgrade: websocket, h2c\r\n", false),
        ];
        for (field, ok) in cases {
            let text = format!("HTTP/1.1 101 Switching Protocols\r\n{field}\r\n");
            let mut headers = Vec::new();
            let head =
                crate::http::parse_response(text.as_bytes(), Method::Get, 8192, 64, &mut headers)
                    .expect("valid")
                    .expect("complete");
            assert_eq!(head.status, 101);
            assert_eq!(
                switched_to(text.as_bytes(), &headers, WEBSOCKET),
                ok,
                "{field:?}"
            );
        }
    }
}
