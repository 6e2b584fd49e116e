//! Request-target splitting and path normalization: the one place that decides which path a
//! request is matched and forwarded with (the rule is documented for users in
//! `docs/routing.md`, "Path normalization").
//!
//! Security-critical: the router and the upstream must see the same path, so every trick that
//! makes two spellings of a path differ (dot segments, encoded dots, doubled slashes) is
//! resolved here, and every byte that upstreams interpret differently is refused.
//!
//! No allocation: runs on the hot path and writes into a caller-owned, reused `String`.

/// A request-target split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Authority of an absolute-form target (`http://host:port/path`).
    pub authority: Option<&'a [u8]>,
    /// The path as sent (starts with `/`).
    pub path: &'a [u8],
    /// The query without `?`, if any.
    pub query: Option<&'a [u8]>,
}

/// Why a request-target or path is refused (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not origin-form or absolute-form with an `http`/`https` scheme (`*`, authority-form,
    /// a relative path, an empty target, an empty authority or one with user info).
    #[error("invalid request target")]
    Invalid,
    /// A `#` fragment, which a client must never send.
    #[error("fragment in request target")]
    Fragment,
    /// A byte that is not allowed in a path (control, space, `\`, non-ASCII, ...).
    #[error("byte 0x{0:02x} not allowed in path")]
    Byte(u8),
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-escape in path")]
    Escape,
    /// `%00`, which truncates paths in C-based upstreams.
    #[error("encoded NUL in path")]
    EncodedNul,
}

/// Splits an origin-form or absolute-form request-target.
pub fn split_target(target: &[u8]) -> Result<Target<'_>, PathError> {
    if target.contains(&b'#') {
        return Err(PathError::Fragment);
    }
    let (before_query, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (target.get(..q).unwrap_or_default(), target.get(q + 1..)),
        None => (target, None),
    };
    if before_query.first() == Some(&b'/') {
        return Ok(Target {
            authority: None,
            path: before_query,
            query,
        });
    }
    let rest = strip_scheme(before_query).ok_or(PathError::Invalid)?;
    let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(slash);
    // User info is deprecated for http(s) and only serves to confuse which host is meant.
    if authority.is_empty() || authority.contains(&b'@') {
        return Err(PathError::Invalid);
    }
    let path: &[u8] = if path.is_empty() { b"/" } else { path };
    Ok(Target {
        authority: Some(authority),
        path,
        query,
    })
}

/// `target` after a case-insensitive `http://` or `https://`.
fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    [&b"http://"[..], &b"https://"[..]]
        .iter()
        .find_map(|scheme| {
            let head = target.get(..scheme.len())?;
            let rest = target.get(scheme.len()..)?;
            head.eq_ignore_ascii_case(scheme).then_some(rest)
        })
}

/// Writes the normalized form of `path` into `out` (cleared first).
///
/// The rule: `%2e`/`%2E` decode to `.`; every other escape stays as sent but must be two hex
/// digits and not `%00`; empty segments collapse; `.` segments go; `..` removes the previous
/// segment and stops at the root; a trailing `/` (or a trailing dot segment) is kept as `/`;
/// only RFC 3986 path characters are allowed. `out` does not grow once its capacity reaches
/// `path.len() + 1`.
pub fn normalize_path(path: &[u8], out: &mut String) -> Result<(), PathError> {
    out.clear();
    let body = match path.split_first() {
        Some((b'/', body)) => body,
        _ => return Err(PathError::Invalid),
    };
    let mut trailing_slash = false;
    for segment in body.split(|&b| b == b'/') {
        trailing_slash = match dot_count(segment) {
            Some(1) => true,
            Some(_) => {
                pop_segment(out);
                true
            }
            None if segment.is_empty() => true,
            None => {
                push_segment(segment, out)?;
                false
            }
        };
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(())
}

/// `Some(1)` for a `.` segment, `Some(2)` for `..`, counting `%2e` as a dot; `None` otherwise.
fn dot_count(segment: &[u8]) -> Option<u8> {
    let mut rest = segment;
    let mut dots = 0u8;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', after @ ..] => after,
            [b'%', b'2', b'e' | b'E', after @ ..] => after,
            _ => return None,
        };
        dots += 1;
        if dots > 2 {
            return None;
        }
    }
    (dots > 0).then_some(dots)
}

/// Removes the last segment written to `out` (nothing at the root: `..` never climbs above it).
fn pop_segment(out: &mut String) {
    let cut = out.rfind('/').unwrap_or(0);
    out.truncate(cut);
}

/// Validates `segment` and appends `/segment`, decoding `%2e` to `.`.
fn push_segment(segment: &[u8], out: &mut String) -> Result<(), PathError> {
    out.push('/');
    let mut rest = segment;
    while let Some((&b, tail)) = rest.split_first() {
        rest = match (b, tail) {
            (b'%', &[hi, lo, ref after @ ..]) => {
                push_escape(hi, lo, out)?;
                after
            }
            (b'%', _) => return Err(PathError::Escape),
            _ if is_pchar(b) => {
                out.push(char::from(b));
                tail
            }
            _ => return Err(PathError::Byte(b)),
        };
    }
    Ok(())
}

/// Validates the escape `%hi lo` and appends it, or `.` for `%2e`.
fn push_escape(hi: u8, lo: u8, out: &mut String) -> Result<(), PathError> {
    match (hex(hi)? << 4) | hex(lo)? {
        0 => return Err(PathError::EncodedNul),
        b'.' => out.push('.'),
        _ => {
            out.push('%');
            out.push(char::from(hi));
            out.push(char::from(lo));
        }
    }
    Ok(())
}

/// The value of one hex digit.
fn hex(b: u8) -> Result<u8, PathError> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(PathError::Escape),
    }
}

/// RFC 3986 `pchar` minus `%` (escapes are handled apart): unreserved, sub-delims, `:`, `@`.
/// Everything else, `\` and bytes >= 0x80 included, is refused.
pub(crate) fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, PathError> {
        let mut out = String::new();
        normalize_path(path.as_bytes(), &mut out).map(|()| out)
    }

    fn ok(path: &str) -> String {
        match norm(path) {
            Ok(out) => out,
            Err(e) => panic!("{path:?} refused: {e}"),
        }
    }

    #[test]
    fn dot_dot_removes_previous_segment() {
        assert_eq!(ok("/admin/../public"), "/public");
        assert_eq!(ok("/a/b/../../c"), "/c");
    }

    #[test]
    fn encoded_dots_are_dot_segments() {
        assert_eq!(ok("/a/%2e%2e/b"), "/b");
        assert_eq!(ok("/%2e/a"), "/a");
        assert_eq!(ok("/a/b/%2E%2e/"), "/a/");
        assert_eq!(ok("/a/.%2E/b"), "/b");
        assert_eq!(ok("/a/%2e./b"), "/b");
    }

    #[test]
    fn encoded_dot_inside_a_segment_is_decoded() {
        assert_eq!(ok("/file%2ejson"), "/file.json");
    }

    #[test]
    fn repeated_slashes_collapse() {
        assert_eq!(ok("//a///b"), "/a/b");
        assert_eq!(ok("//"), "/");
        assert_eq!(ok("/a//"), "/a/");
    }

    #[test]
    fn single_dot_segments_are_removed() {
        assert_eq!(ok("/a/./b"), "/a/b");
        assert_eq!(ok("/./"), "/");
        assert_eq!(ok("/."), "/");
    }

    #[test]
    fn dot_dot_never_climbs_above_root() {
        assert_eq!(ok("/../a"), "/a");
        assert_eq!(ok("/../../a/.."), "/");
        assert_eq!(ok("/.."), "/");
    }

    #[test]
    fn trailing_slash_is_kept() {
        assert_eq!(ok("/a/b/"), "/a/b/");
        assert_eq!(ok("/a/b/."), "/a/b/");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/.."), "/");
        assert_eq!(ok("/a/b"), "/a/b");
        assert_eq!(ok("/"), "/");
    }

    #[test]
    fn encoded_slash_is_not_a_separator() {
        assert_eq!(ok("/..%2f"), "/..%2f");
        assert_eq!(ok("/a/..%2Fb"), "/a/..%2Fb");
        assert_eq!(ok("/a%2f..%2fb"), "/a%2f..%2fb");
    }

    #[test]
    fn three_dots_are_a_literal_segment() {
        assert_eq!(ok("/a/.../b"), "/a/.../b");
        assert_eq!(ok("/a/.a/b"), "/a/.a/b");
    }

    #[test]
    fn other_escapes_are_kept_as_sent() {
        assert_eq!(ok("/a%20b/%C3%A9"), "/a%20b/%C3%A9");
        assert_eq!(ok("/%5c"), "/%5c");
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert_eq!(norm("/a%"), Err(PathError::Escape));
        assert_eq!(norm("/a%2"), Err(PathError::Escape));
        assert_eq!(norm("/a%zz"), Err(PathError::Escape));
        assert_eq!(norm("/a%%30"), Err(PathError::Escape));
    }

    #[test]
    fn encoded_nul_is_refused() {
        assert_eq!(norm("/a%00b"), Err(PathError::EncodedNul));
    }

    #[test]
    fn bytes_outside_pchar_are_refused() {
        for bad in [
            "/a b", "/a\\b", "/a\0", "/a\tb", "/a\x7f", "/a\"b", "/a<b", "/a{b}", "/a|b",
        ] {
            assert!(matches!(norm(bad), Err(PathError::Byte(_))), "{bad:?}");
        }
        assert_eq!(
            normalize_path(b"/caf\xc3\xa9", &mut String::new()),
            Err(PathError::Byte(0xc3))
        );
    }

    #[test]
    fn refused_even_inside_a_removed_segment() {
        assert_eq!(norm("/a\\b/.."), Err(PathError::Byte(b'\\')));
    }

    #[test]
    fn path_must_start_with_slash() {
        assert_eq!(norm(""), Err(PathError::Invalid));
        assert_eq!(norm("a/b"), Err(PathError::Invalid));
    }

    #[test]
    fn sub_delims_and_colon_are_allowed() {
        assert_eq!(ok("/a:b@c/!$&'()*+,;=~_-"), "/a:b@c/!$&'()*+,;=~_-");
    }

    #[test]
    fn output_reuses_capacity() {
        let mut out = String::with_capacity(64);
        let before = out.capacity();
        for p in ["/a/../b/./c//d/", "/x/%2e%2e/y", "/"] {
            normalize_path(p.as_bytes(), &mut out).unwrap();
            assert_eq!(out.capacity(), before);
        }
    }

    #[test]
    fn origin_form_splits_path_and_query() {
        let t = split_target(b"/a/b?x=1&y").unwrap();
        assert_eq!(
            t,
            Target {
                authority: None,
                path: b"/a/b",
                query: Some(b"x=1&y")
            }
        );
        let t = split_target(b"/a?").unwrap();
        assert_eq!(t.query, Some(&b""[..]));
        assert_eq!(split_target(b"/").unwrap().query, None);
    }

    #[test]
    fn absolute_form_yields_authority() {
        let t = split_target(b"http://api.example.com:8080/v1?q").unwrap();
        assert_eq!(t.authority, Some(&b"api.example.com:8080"[..]));
        assert_eq!(t.path, b"/v1");
        assert_eq!(t.query, Some(&b"q"[..]));
        let t = split_target(b"HTTPS://Example.com").unwrap();
        assert_eq!(
            (t.authority, t.path),
            (Some(&b"Example.com"[..]), &b"/"[..])
        );
        let t = split_target(b"http://h?q=/x").unwrap();
        assert_eq!((t.path, t.query), (&b"/"[..], Some(&b"q=/x"[..])));
    }

    #[test]
    fn other_target_forms_are_refused() {
        for bad in [
            &b"*"[..],
            b"example.com:443",
            b"a/b",
            b"",
            b"ftp://h/x",
            b"http:///x",
            b"http://u@h/",
        ] {
            assert_eq!(
                split_target(bad),
                Err(PathError::Invalid),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn fragments_are_refused() {
        assert_eq!(split_target(b"/a#b"), Err(PathError::Fragment));
        assert_eq!(split_target(b"/a?x#b"), Err(PathError::Fragment));
    }
}
