//! Field-level rules shared by the parsers and the writers: byte classes, list elements,
//! hop-by-hop names, `Connection`-named fields and `Host` authority syntax.
//!
//! Everything here is allocation-free and works on byte slices of the caller's buffer.

use super::HeaderSpan;

/// Header names that describe one connection, never forwarded (RFC 9110 §7.6.1, plus the
/// legacy `Keep-Alive`/`Proxy-Connection` and the proxy-auth pair that belongs to this hop).
const HOP_BY_HOP: [&[u8]; 9] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authorization",
    b"proxy-authenticate",
];

/// Whether `b` may appear in a field name (RFC 9110 `tchar`).
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `b` may appear in a field value: HTAB, visible ASCII, space, obs-text; no CTLs.
pub fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// `s` without leading and trailing spaces and tabs.
pub fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(start), Some(end)) => s.get(start..=end).unwrap_or_default(),
        _ => &[],
    }
}

/// The non-empty elements of a comma-separated field value, trimmed (RFC 9110 §5.6.1 says
/// empty elements are to be ignored).
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Whether `name` is a hop-by-hop field that a proxy must not forward.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Whether a `Connection` field in `headers` lists `name` as a connection option, which makes
/// that field hop-by-hop too.
pub fn connection_names(buf: &[u8], headers: &[HeaderSpan], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.of(buf).eq_ignore_ascii_case(b"connection"))
        .flat_map(|h| list_elements(h.value.of(buf)))
        .any(|token| token.eq_ignore_ascii_case(name))
}

/// Whether any field in `headers` is `Connection` (lets writers skip the per-field lookup).
pub fn has_connection_field(buf: &[u8], headers: &[HeaderSpan]) -> bool {
    headers
        .iter()
        .any(|h| h.name.of(buf).eq_ignore_ascii_case(b"connection"))
}

/// Whether `value` is a `Host` authority: `host [":" port]` where host is a bracketed IP
/// literal or a reg-name. Stricter than RFC 3986 in one point: `,` is refused so that no
/// intermediary can read the value as a list of hosts.
pub fn is_valid_authority(value: &[u8]) -> bool {
    let (host_ok, port) = if let Some(rest) = value.strip_prefix(b"[") {
        match rest.iter().position(|&b| b == b']') {
            Some(close) => {
                let (inner, after) = rest.split_at(close);
                let ip_ok = !inner.is_empty()
                    && inner
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                (ip_ok, after.get(1..).unwrap_or_default())
            }
            None => return false,
        }
    } else {
        let colon = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let (host, after) = value.split_at(colon);
        (!host.is_empty() && is_reg_name(host), after)
    };
    host_ok && is_port_suffix(port)
}

/// `reg-name` bytes: unreserved, sub-delims except `,`, and well-formed pct-encodings.
fn is_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = host.get(i) {
        if b == b'%' {
            let hex_ok = host
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if !hex_ok {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=".contains(&b)) {
            return false;
        }
        i += 1;
    }
    true
}

/// Empty, or `:` followed by at most five digits up to 65535 (an empty port is allowed).
fn is_port_suffix(suffix: &[u8]) -> bool {
    let Some(digits) = suffix.strip_prefix(b":") else {
        return suffix.is_empty();
    };
    if digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let port = digits
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    port <= 65535
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_optional_whitespace() {
        assert_eq!(trim_ows(b" \tab c\t "), b"ab c");
        assert_eq!(trim_ows(b"  "), b"");
    }

    #[test]
    fn list_elements_skip_empty_ones() {
        let v: Vec<&[u8]> = list_elements(b" a ,, b,").collect();
        assert_eq!(v, vec![&b"a"[..], &b"b"[..]]);
    }

    #[test]
    fn hop_by_hop_names_match_case_insensitively() {
        assert!(is_hop_by_hop(b"Transfer-Encoding"));
        assert!(is_hop_by_hop(b"KEEP-ALIVE"));
        assert!(!is_hop_by_hop(b"Content-Type"));
    }

    #[test]
    fn authority_accepts_names_ips_and_ports() {
        for ok in [
            &b"example.com"[..],
            b"example.com:8080",
            b"127.0.0.1:80",
            b"[::1]:443",
            b"[2001:db8::1]",
            b"a%20b",
            b"host:",
        ] {
            assert!(is_valid_authority(ok), "{:?}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn authority_rejects_userinfo_paths_spaces_and_lists() {
        for bad in [
            &b""[..],
            b"a b",
            b"user@host",
            b"host/path",
            b"a,b",
            b":80",
            b"host:99999",
            b"host:8a",
            b"[::1",
            b"[::1]x",
            b"[]",
            b"%zz",
            b"host\\x",
        ] {
            assert!(
                !is_valid_authority(bad),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
