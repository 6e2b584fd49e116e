//! Method and header conditions: compiled at build, checked after host and path matched.
//!
//! No allocation: [`Conditions::accepts`] runs on the hot path; it compares slices only.

use super::HeaderMatch;

/// A lower-case header name and the value it must have (`None`: any value).
type HeaderCondition = (Box<str>, Option<Box<[u8]>>);

/// A route's method and header conditions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    /// Allowed method tokens (compared exactly: methods are case-sensitive); empty allows all.
    methods: Box<[Box<str>]>,
    /// Lower-case header names with the value required, if any.
    headers: Box<[HeaderCondition]>,
}

impl Conditions {
    /// Compiles methods and headers, returning one message per bad entry as `(field, message)`.
    pub(crate) fn compile(
        methods: &[String],
        headers: &[(String, HeaderMatch)],
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        for m in methods.iter().filter(|m| !is_token(m)) {
            errors.push(("match.methods", format!("{m:?} is not a method token")));
        }
        for (name, _) in headers.iter().filter(|(n, _)| !is_token(n)) {
            errors.push(("match.headers", format!("{name:?} is not a header name")));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let headers = headers
            .iter()
            .map(|(name, m)| {
                let value = match m {
                    HeaderMatch::Present => None,
                    HeaderMatch::Exact(v) => Some(v.as_bytes().into()),
                };
                (name.to_ascii_lowercase().into_boxed_str(), value)
            })
            .collect();
        let methods = methods.iter().map(|m| m.as_str().into()).collect();
        Ok(Conditions { methods, headers })
    }

    /// Whether there is a method condition (for specificity).
    pub(crate) fn has_methods(&self) -> bool {
        !self.methods.is_empty()
    }

    /// Number of header conditions (for specificity).
    pub(crate) fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// Whether a request with `method` and these headers satisfies every condition.
    pub(crate) fn accepts<'h>(
        &self,
        method: &str,
        header: &dyn Fn(&str) -> Option<&'h [u8]>,
    ) -> bool {
        let method_ok = self.methods.is_empty() || self.methods.iter().any(|m| &**m == method);
        method_ok
            && self
                .headers
                .iter()
                .all(|(name, want)| match (header(name), want) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(got), Some(want)) => got == &**want,
                })
    }
}

/// RFC 9110 `token`: what methods and header names are made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_headers(_: &str) -> Option<&'static [u8]> {
        None
    }

    #[test]
    fn empty_methods_allow_all() {
        let c = Conditions::compile(&[], &[]).unwrap();
        assert!(c.accepts("PURGE", &no_headers));
    }

    #[test]
    fn methods_are_case_sensitive() {
        let c = Conditions::compile(&["GET".into()], &[]).unwrap();
        assert!(c.accepts("GET", &no_headers));
        assert!(!c.accepts("get", &no_headers));
    }

    #[test]
    fn header_conditions_all_apply() {
        let hs = vec![
            ("X-Env".to_string(), HeaderMatch::Exact("canary".into())),
            ("x-user".to_string(), HeaderMatch::Present),
        ];
        let c = Conditions::compile(&[], &hs).unwrap();
        let both = |n: &str| match n {
            "x-env" => Some(&b"canary"[..]),
            "x-user" => Some(&b""[..]),
            _ => None,
        };
        let wrong = |n: &str| match n {
            "x-env" => Some(&b"Canary"[..]),
            "x-user" => Some(&b"u"[..]),
            _ => None,
        };
        assert!(c.accepts("GET", &both));
        assert!(!c.accepts("GET", &wrong));
        assert!(!c.accepts("GET", &no_headers));
    }

    #[test]
    fn bad_tokens_are_refused() {
        let e = Conditions::compile(
            &["G ET".into(), String::new()],
            &[("a:b".into(), HeaderMatch::Present)],
        );
        assert_eq!(e.unwrap_err().len(), 3);
    }
}
