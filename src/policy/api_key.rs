//! `kind = "api_key"`: a consumer's key in a header or a query parameter.
//!
//! The key is read in place from the parsed head (a query parameter is matched without
//! decoding: keys are expected to be URL-safe) and looked up by its SHA-256 digest in
//! [`Consumers`], compared in constant time. No allocation.

use std::sync::Arc;

use super::consumers::Consumers;
use super::{Authn, Challenge, Denial, Forwarding, Identity, RequestView};
use crate::http::problem::cause;

/// A compiled `api_key` policy.
#[derive(Debug)]
pub struct ApiKey {
    /// The policy's name.
    pub name: String,
    /// Header carrying the key (`X-Api-Key` by default), if the header is read.
    pub header: Option<String>,
    /// Query parameter carrying the key, if the query is read.
    pub query: Option<String>,
    /// The consumers whose keys are accepted.
    pub consumers: Arc<Consumers>,
    /// What goes upstream on success.
    pub forwarding: Forwarding,
    /// `WWW-Authenticate: ApiKey ...` location text.
    pub challenge: Arc<str>,
    /// `hide_credentials`: the key header and query parameter are not forwarded on success.
    pub hide_credentials: bool,
}

impl ApiKey {
    /// Absent when the request carries no key; 401 for a key no consumer owns.
    pub fn check(&self, req: &RequestView<'_>, identity: &mut Identity) -> Authn {
        let Some(key) = self.presented(req) else {
            return Authn::Absent;
        };
        match self.consumers.by_api_key(key) {
            Some(id) => {
                identity.set_consumer(id, &self.consumers.get(id).name, &self.forwarding);
                Authn::Accepted
            }
            None => Authn::Refused(self.denial("unauthorized: invalid API key")),
        }
    }

    /// The 401 this policy answers with.
    pub fn denial(&self, message: &'static str) -> Denial {
        Denial {
            status: 401,
            cause: cause::UNAUTHENTICATED,
            message,
            challenge: Challenge::ApiKey {
                location: Arc::clone(&self.challenge),
            },
            violations: Vec::new(),
        }
    }

    fn presented<'a>(&self, req: &RequestView<'a>) -> Option<&'a [u8]> {
        let from_header = self
            .header
            .as_deref()
            .and_then(|name| req.header(name))
            .filter(|v| !v.is_empty());
        from_header.or_else(|| {
            let name = self.query.as_deref()?;
            query_param(req.query?, name.as_bytes()).filter(|v| !v.is_empty())
        })
    }
}

/// The raw value of the first `name=value` pair in `query`.
pub fn query_param<'a>(query: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name).then(|| &pair[eq + 1..])
    })
}

/// Removes every `name=value` pair from the query of `target` (a path and query) in place;
/// the `?` goes too when nothing is left. For `hide_credentials`.
pub fn remove_query_param(target: &mut String, name: &str) {
    let Some(question) = target.find('?') else {
        return;
    };
    let mut start = question + 1;
    while start <= target.len() {
        let end = target[start..]
            .find('&')
            .map_or(target.len(), |i| start + i);
        let pair = &target.as_bytes()[start..end];
        let named = pair.len() > name.len()
            && pair.starts_with(name.as_bytes())
            && pair[name.len()] == b'=';
        if !named {
            start = end + 1;
        } else if end < target.len() {
            // The pair and the `&` after it.
            target.drain(start..=end);
        } else {
            // The last pair and the `&` or `?` before it.
            target.drain(start - 1..end);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_every_pair_of_the_hidden_parameter() {
        let cases = [
            ("/p?api_key=k", "/p"),
            ("/p?a=1&api_key=k", "/p?a=1"),
            ("/p?api_key=k&a=1", "/p?a=1"),
            ("/p?a=1&api_key=k&b=2&api_key=j", "/p?a=1&b=2"),
            ("/p?api_key=&xapi_key=1&api_key", "/p?xapi_key=1&api_key"),
            ("/p?a=1", "/p?a=1"),
            ("/p", "/p"),
        ];
        for (input, expected) in cases {
            let mut target = input.to_string();
            remove_query_param(&mut target, "api_key");
            assert_eq!(target, expected, "{input}");
        }
    }

    #[test]
    fn finds_a_query_parameter_by_exact_name() {
        assert_eq!(
            query_param(b"a=1&api_key=k2&b", b"api_key"),
            Some(&b"k2"[..])
        );
        assert_eq!(query_param(b"xapi_key=1", b"api_key"), None);
        assert_eq!(query_param(b"api_key", b"api_key"), None);
        assert_eq!(query_param(b"api_key=", b"api_key"), Some(&b""[..]));
    }
}
