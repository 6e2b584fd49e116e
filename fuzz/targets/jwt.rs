//! JWT header and claims parsing, through the policy chain a route runs (`jwt`, then `authz`
//! on scopes and claim values).
//!
//! The first byte picks the mode. Odd: the rest is the `Authorization` value as sent. Even:
//! the rest is a JOSE header and a claims set (split at the first newline), encoded and
//! signed with the policy's HS256 secret, so that the claims get past the signature and into
//! the claim checks; an even mode of 2 or 6 breaks the signature instead.
//!
//! No panic. A request that passes is authenticated, and the header fields sent upstream
//! for it (the consumer, the forwarded claims) are well formed: `Name: value` lines without
//! control characters, whatever the claims held.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use ringgate::config::{load_str, Snapshot};
use ringgate::http::{parse_request, HeadLimits};
use ringgate::metrics::WorkerMetrics;
use ringgate::policy::{Identity, PolicyState, RequestView};

const SECRET: &str = "fuzz-secret-of-at-least-32-bytes!!";

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let text = format!(
            r#"
[[upstreams]]
name = "u"
targets = [{{ addr = "127.0.0.1:1" }}]
[[routes]]
name = "r"
upstream = "u"
policies = ["jwt", "authz"]
[policies.jwt]
kind = "jwt"
algorithms = ["HS256", "HS384"]
secret = "{SECRET}"
required_claims = ["exp", "sub"]
issuer = ["a", "b"]
audience = "users"
forward_claims = {{ sub = "X-User", tenant = "X-Tenant", roles = "X-Roles" }}
[policies.authz]
kind = "authz"
require_scopes = ["read"]
require_claims = {{ role = ["admin", "owner"] }}
[[consumers]]
name = "alice"
groups = ["admin"]
"#
        );
        match load_str(&text, "fuzz") {
            Ok(s) => s,
            Err(e) => panic!("fuzz config: {e}"),
        }
    })
}

/// The `Authorization` value for `data` (see the module docs).
fn authorization(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    if mode % 2 == 1 {
        return Some(rest.to_vec());
    }
    let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (header, claims) = rest.split_at(cut);
    let claims = claims.get(1..).unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let mut signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).ok()?;
    if mode % 8 == 2 || mode % 8 == 6 {
        signature = signature.chars().rev().collect();
    }
    Some(format!("Bearer {signing_input}.{signature}").into_bytes())
}

pub fn run(data: &[u8]) {
    let Some(value) = authorization(data) else {
        return;
    };
    if value.iter().any(|&b| b == b'\r' || b == b'\n') {
        return;
    }
    let mut request = b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: ".to_vec();
    request.extend_from_slice(&value);
    request.extend_from_slice(b"\r\n\r\n");
    let limits = HeadLimits {
        max_head_bytes: 1 << 20,
        max_headers: 16,
        max_uri_bytes: 1024,
    };
    let mut headers = Vec::new();
    let Ok(Some(_)) = parse_request(&request, &limits, &mut headers) else {
        return;
    };
    let snapshot = snapshot();
    let Some(route) = snapshot.router.get(0) else {
        panic!("fuzz route missing");
    };
    let view = RequestView {
        data: &request,
        headers: &headers,
        query: None,
        peer: std::net::IpAddr::from([127, 0, 0, 1]),
        trusted_proxies: &[],
        route: &route.name,
        path_params: None,
    };
    let mut identity = Identity::default();
    let mut fields = Vec::new();
    let state = PolicyState::default();
    let metrics = WorkerMetrics::new(0);
    if route
        .policies
        .check(&view, &mut identity, &state, &metrics, &mut fields)
        .is_ok()
    {
        assert!(identity.is_authenticated(), "accepted without a token");
        check_fields(identity.upstream_fields());
    }
}

/// Header fields written for the upstream: `Name: value\r\n` lines, no stray control bytes.
fn check_fields(fields: &[u8]) {
    let text = String::from_utf8_lossy(fields);
    for line in text.split_terminator("\r\n") {
        let (name, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("upstream field without a name: {line:?}"));
        assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'));
        assert!(
            value
                .bytes()
                .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
            "control byte in upstream field {line:?}"
        );
    }
}
