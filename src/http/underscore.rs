//! What happens to request header fields whose name contains `_` (`[server]
//! underscores_in_headers`).
//!
//! `X-User_Id` is a valid field name, but servers that map fields to CGI-style variables
//! (`HTTP_X_USER_ID`) cannot tell it from `X-User-Id`, so a client could pass a second value
//! for a field the gateway checked or set under the other spelling. Like Nginx, the gateway
//! drops such fields by default, before anything reads them (routing, policies, the upstream
//! head): to the rest of the pipeline they were never sent.

use super::{HeaderSpan, HttpError};

/// The policy for request header names with `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscorePolicy {
    /// Ignore the field, as if it had not been sent (the default, like Nginx).
    #[default]
    Drop,
    /// Treat it like any other field.
    Pass,
    /// Answer 400.
    Refuse,
}

/// Applies `policy` to the parsed fields of a head in `buf`. No allocation: dropped fields
/// are removed from `headers` in place; the head's bytes stay as they are.
pub fn apply(
    policy: UnderscorePolicy,
    buf: &[u8],
    headers: &mut Vec<HeaderSpan>,
) -> Result<(), HttpError> {
    let has_underscore = |h: &HeaderSpan| h.name.of(buf).contains(&b'_');
    match policy {
        UnderscorePolicy::Pass => Ok(()),
        UnderscorePolicy::Drop => {
            if headers.iter().any(has_underscore) {
                headers.retain(|h| !has_underscore(h));
            }
            Ok(())
        }
        UnderscorePolicy::Refuse if headers.iter().any(has_underscore) => {
            Err(HttpError::UnderscoreInHeaderName)
        }
        UnderscorePolicy::Refuse => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, HeadLimits};

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 4096,
        max_headers: 32,
        max_uri_bytes: 1024,
    };
    const RAW: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\nX-User_Id: 7\r\nX-User-Id: 8\r\n_: x\r\n\r\n";

    fn names(policy: UnderscorePolicy) -> Result<Vec<String>, HttpError> {
        let mut headers = Vec::new();
        parse_request(RAW, &LIMITS, &mut headers)?;
        apply(policy, RAW, &mut headers)?;
        Ok(headers
            .iter()
            .map(|h| String::from_utf8_lossy(h.name.of(RAW)).into_owned())
            .collect())
    }

    #[test]
    fn drop_removes_only_the_names_with_underscores() {
        assert_eq!(
            names(UnderscorePolicy::Drop).unwrap(),
            ["Host", "X-User-Id"]
        );
    }

    #[test]
    fn pass_keeps_every_field() {
        assert_eq!(
            names(UnderscorePolicy::Pass).unwrap(),
            ["Host", "X-User_Id", "X-User-Id", "_"]
        );
    }

    #[test]
    fn refuse_is_a_400() {
        let err = names(UnderscorePolicy::Refuse).unwrap_err();
        assert_eq!(err, HttpError::UnderscoreInHeaderName);
        assert_eq!(err.status(), 400);
        let mut headers = Vec::new();
        let clean = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        parse_request(clean, &LIMITS, &mut headers).unwrap();
        assert_eq!(apply(UnderscorePolicy::Refuse, clean, &mut headers), Ok(()));
    }
}
