//! The HTTP/1.1 Upgrade offer and the WebSocket handshake check (`http::upgrade`): no
//! panic; an offer names a protocol of the route's list that one of the request's `Upgrade`
//! elements spells (case aside), on HTTP/1.1 only; an accepted handshake is a `GET` without a
//! body whose `Connection` lists `upgrade`, with exactly one `Sec-WebSocket-Key` that is 16
//! bytes in base64 and a `Sec-WebSocket-Version` listing `13`, and the head the gateway writes
//! upstream for it is again an accepted handshake (unless the client's `Connection` named the
//! key or version fields, which makes them hop-by-hop); a `101` counts as switched only when
//! its `Upgrade` names exactly the protocol asked for.

use base64::Engine;
use ringgate::http::headers::{connection_names, list_elements};
use ringgate::http::upgrade::{check_websocket, offered, switched_to, HandshakeFault, WEBSOCKET};
use ringgate::http::writer::{write_upstream_request, ForwardInfo};
use ringgate::http::{
    parse_request, parse_response, BodyFraming, HeadLimits, HeaderSpan, Method, RequestHead,
    Version,
};

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 8192,
    max_headers: 64,
    max_uri_bytes: 2048,
};

pub fn run(data: &[u8]) {
    let accepted: [Box<str>; 2] = [Box::from("tcp"), Box::from(WEBSOCKET)];
    let mut headers = Vec::new();
    if let Ok(Some(head)) = parse_request(data, &LIMITS, &mut headers) {
        if let Some(offer) = offered(data, &head, &headers, &accepted) {
            assert_eq!(head.version, Version::Http11, "an HTTP/1.0 upgrade");
            let protocol = accepted[offer.protocol].as_bytes();
            assert!(
                values(data, &headers, b"upgrade")
                    .flat_map(list_elements)
                    .any(|p| p.eq_ignore_ascii_case(protocol)),
                "offered a protocol the request did not name"
            );
            assert_eq!(
                offer.connection_upgrade,
                connection_names(data, &headers, b"upgrade")
            );
            if &*accepted[offer.protocol] == WEBSOCKET {
                handshake(
                    data,
                    &head,
                    &headers,
                    check_websocket(data, &head, &headers, offer),
                );
            }
        }
    }
    if let Ok(Some(_)) = parse_response(data, Method::Get, 8192, 64, &mut headers) {
        if switched_to(data, &headers, WEBSOCKET) {
            let protocols: Vec<&[u8]> = values(data, &headers, b"upgrade")
                .flat_map(list_elements)
                .collect();
            assert!(protocols.len() == 1 && protocols[0].eq_ignore_ascii_case(b"websocket"));
        }
    }
}

/// The verdict against RFC 6455 §4.2.1 read directly from the fields, and what goes upstream
/// for an accepted handshake.
fn handshake(
    data: &[u8],
    head: &RequestHead,
    headers: &[HeaderSpan],
    verdict: Result<(), HandshakeFault>,
) {
    let keys: Vec<&[u8]> = values(data, headers, b"sec-websocket-key").collect();
    // 16 bytes in base64 with its padding; the bits after the 128th are not looked at.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let key_ok = keys.len() == 1
        && keys[0].len() == 24
        && lenient.decode(keys[0]).is_ok_and(|k| k.len() == 16);
    let expected = if head.method.of(data) != b"GET" {
        Err(HandshakeFault::NotGet)
    } else if !connection_names(data, headers, b"upgrade") {
        Err(HandshakeFault::NoConnectionUpgrade)
    } else if head.framing != BodyFraming::None {
        Err(HandshakeFault::HasBody)
    } else if !key_ok {
        Err(HandshakeFault::BadKey)
    } else if !values(data, headers, b"sec-websocket-version")
        .flat_map(list_elements)
        .any(|v| v == b"13")
    {
        Err(HandshakeFault::UnsupportedVersion)
    } else {
        Ok(())
    };
    assert_eq!(verdict, expected);
    if verdict.is_ok() {
        forwarded_is_a_handshake(data, head, headers);
    }
}

/// The head written upstream for an accepted handshake is one too.
fn forwarded_is_a_handshake(data: &[u8], head: &RequestHead, headers: &[HeaderSpan]) {
    let fwd = ForwardInfo {
        path_and_query: head.target.of(data),
        host: b"upstream",
        client_ip: b"127.0.0.1",
        proto: "http",
        request_id: b"fuzz",
        request_id_from_client: false,
        traceparent: b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        forward_tracestate: true,
        identity_headers: &[],
        client_subject: None,
        policy_strip: &[],
        hidden_credential: None,
        policy_fields: b"",
        edits: None,
        upgrade: Some(WEBSOCKET),
    };
    let mut out = Vec::new();
    write_upstream_request(&mut out, data, head, headers, &fwd);
    let big = HeadLimits {
        max_head_bytes: 1 << 20,
        max_headers: 256,
        max_uri_bytes: 1 << 20,
    };
    let mut again = Vec::new();
    let Ok(Some(up)) = parse_request(&out, &big, &mut again) else {
        panic!(
            "forwarded head refused: {:?}",
            String::from_utf8_lossy(&out)
        );
    };
    let websocket: [Box<str>; 1] = [Box::from(WEBSOCKET)];
    let offer = offered(&out, &up, &again, &websocket).expect("the upstream is offered websocket");
    let hop_by_hop_fields = connection_names(data, headers, b"sec-websocket-key")
        || connection_names(data, headers, b"sec-websocket-version");
    if !hop_by_hop_fields {
        assert_eq!(
            check_websocket(&out, &up, &again, offer),
            Ok(()),
            "forwarded handshake refused: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

/// The values of every field named `name`.
fn values<'a>(
    buf: &'a [u8],
    headers: &'a [HeaderSpan],
    name: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.of(buf).eq_ignore_ascii_case(name))
        .map(move |h| h.value.of(buf))
}
