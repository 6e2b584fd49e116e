//! `kind = "validate"`: the request's contract, checked at the edge. A request whose query,
//! headers, cookies, path parameters or JSON body do not conform is answered 400 (or 422,
//! `status`) as RFC 9457 `application/problem+json` listing each violation with its JSON
//! pointer, and never reaches the upstream.
//!
//! The contract comes from an OpenAPI 3.x operation (`openapi_file` + `operation`) or from
//! JSON Schemas for the query, the headers and the body. Schemas are compiled once per
//! snapshot (`config::compile::policies::validate`).
//!
//! Two checks, at two moments: [`Validate::check`] runs in the policy chain on the head
//! (query, headers, cookies, path); [`Validate::check_body`] runs once the body is buffered.
//! A part without a rule costs nothing; a part with one costs the parse into a JSON value
//! (its instance) and the schema's `is_valid`, which allocates nothing for a passing
//! instance. Only a failing request pays for the error list.

mod params;
mod schema;

use std::sync::Arc;

use serde_json::Value;

pub use params::{form_decode, percent_decode, query_pairs, Fields, Kind};
pub use schema::{Schema, MAX_VIOLATIONS};

use super::{Challenge, Denial, RequestView};
use crate::http::problem::{cause, Violation};

/// One request part's rule: its schema and how its text reads as JSON.
#[derive(Debug)]
pub struct PartRule {
    /// The schema of the part's object (names to values).
    pub schema: Schema,
    /// The names it declares and their kinds.
    pub fields: Fields,
}

/// The body's rule.
#[derive(Debug)]
pub struct BodyRule {
    /// The JSON body's schema; `None`: any body of an accepted media type passes.
    pub schema: Option<Schema>,
    /// Whether a request without a body is refused.
    pub required: bool,
    /// The media types (or ranges, `application/*`) accepted; empty: JSON only when a schema
    /// is set, else anything.
    pub media_types: Vec<String>,
}

/// A compiled `validate` policy.
#[derive(Debug)]
pub struct Validate {
    /// The policy's name.
    pub name: String,
    /// The status of a refusal: 400 or 422.
    pub status: u16,
    /// The query string's rule.
    pub query: Option<PartRule>,
    /// The headers' rule (names lower-case).
    pub headers: Option<PartRule>,
    /// The cookies' rule.
    pub cookies: Option<PartRule>,
    /// The path parameters' rule (names as in the route's template).
    pub path: Option<PartRule>,
    /// The body's rule.
    pub body: Option<BodyRule>,
    /// How the contract reads in an OpenAPI document (the export uses it).
    pub described: Arc<Described>,
}

/// The contract as OpenAPI 3.1 objects, for the exported document.
#[derive(Debug, Default)]
pub struct Described {
    /// Parameter Objects.
    pub parameters: Vec<Value>,
    /// The Request Body Object, if any.
    pub request_body: Option<Value>,
}

impl Validate {
    /// Checks the head's parts; a refusal lists every violation found.
    pub fn check(&self, req: &RequestView<'_>) -> Result<(), Denial> {
        let mut violations = Vec::new();
        if let Some(rule) = &self.query {
            let instance = rule
                .fields
                .instance(query_pairs(req.query.unwrap_or_default()));
            check_part(rule, &instance, "query", &mut violations);
        }
        if let Some(rule) = &self.headers {
            let data = req.data;
            let pairs = req.headers.iter().map(|h| {
                let name = String::from_utf8_lossy(h.name.of(data)).to_ascii_lowercase();
                (name, String::from_utf8_lossy(h.value.of(data)).into_owned())
            });
            let instance = rule.fields.instance(joined(pairs));
            check_part(rule, &instance, "header", &mut violations);
        }
        if let Some(rule) = &self.cookies {
            let pairs = params::cookie_pairs(req.headers_named("cookie"));
            let instance = rule.fields.instance(pairs);
            check_part(rule, &instance, "cookie", &mut violations);
        }
        if let Some(rule) = &self.path {
            let pairs = rule.fields.named.iter().filter_map(|(name, _)| {
                let value = req.path_params.and_then(|p| p.get(name))?;
                Some((name.clone(), percent_decode(value)))
            });
            let instance = rule.fields.instance(pairs);
            check_part(rule, &instance, "path", &mut violations);
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(self.refusal(violations))
        }
    }

    /// Whether this policy has a rule for the body (then the body must be buffered and
    /// [`Validate::check_body`] called before the request goes upstream).
    pub fn checks_body(&self) -> bool {
        self.body.is_some()
    }

    /// Refuses a body this policy would parse whose `Content-Encoding` is not `identity`
    /// (415, RFC 9110 §15.5.16): its schema is about the decoded JSON, which the gateway does
    /// not reconstruct. Called before the body is read.
    pub fn check_coding(&self, content_encoding: Option<&[u8]>) -> Result<(), Denial> {
        let parses = self.body.as_ref().is_some_and(|rule| rule.schema.is_some());
        let coded =
            content_encoding.is_some_and(|c| !c.trim_ascii().eq_ignore_ascii_case(b"identity"));
        if !(parses && coded) {
            return Ok(());
        }
        Err(Denial {
            status: 415,
            cause: cause::UNSUPPORTED_MEDIA_TYPE,
            message: "unsupported media type",
            challenge: Challenge::None,
            violations: vec![Violation {
                location: "header",
                pointer: "/content-encoding".into(),
                detail: "a validated body must be sent without a content coding".into(),
            }],
        })
    }

    /// Checks a buffered body whose `Content-Type` is `content_type`.
    pub fn check_body(&self, content_type: Option<&[u8]>, body: &[u8]) -> Result<(), Denial> {
        let Some(rule) = &self.body else {
            return Ok(());
        };
        if body.is_empty() {
            if rule.required {
                let violation = Violation {
                    location: "body",
                    pointer: String::new(),
                    detail: "a request body is required".into(),
                };
                return Err(self.refusal(vec![violation]));
            }
            return Ok(());
        }
        let media = content_type
            .and_then(|c| std::str::from_utf8(c).ok())
            .unwrap_or_default();
        let json = crate::openapi::document::is_json_media_type(media);
        let accepted = if rule.media_types.is_empty() {
            json || rule.schema.is_none()
        } else {
            rule.media_types.iter().any(|m| media_matches(m, media))
        };
        if !accepted {
            return Err(unsupported_media_type(&rule.media_types));
        }
        let Some(schema) = rule.schema.as_ref().filter(|_| json) else {
            return Ok(());
        };
        let instance: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let violation = Violation {
                    location: "body",
                    pointer: String::new(),
                    detail: format!("invalid JSON: {e}"),
                };
                return Err(self.refusal(vec![violation]));
            }
        };
        if schema.is_valid(&instance) {
            return Ok(());
        }
        let mut violations = Vec::new();
        schema.violations(&instance, "body", &mut violations);
        Err(self.refusal(violations))
    }

    fn refusal(&self, violations: Vec<Violation>) -> Denial {
        Denial {
            status: self.status,
            cause: cause::REQUEST_INVALID,
            message: "the request does not match its API contract",
            challenge: Challenge::None,
            violations,
        }
    }
}

/// Checks one part's instance; its violations are appended.
fn check_part(rule: &PartRule, instance: &Value, location: &'static str, out: &mut Vec<Violation>) {
    if !rule.schema.is_valid(instance) {
        rule.schema.violations(instance, location, out);
    }
}

/// Header fields with the same name joined into one value, `, `-separated (RFC 9110 §5.3).
fn joined(pairs: impl Iterator<Item = (String, String)>) -> impl Iterator<Item = (String, String)> {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (name, value) in pairs {
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(&value);
            }
            None => merged.push((name, value)),
        }
    }
    merged.into_iter()
}

/// Whether media type `actual` (with parameters) is in range `pattern` (`type/sub`,
/// `type/*` or `*/*`; case-insensitive).
fn media_matches(pattern: &str, actual: &str) -> bool {
    fn essence(m: &str) -> &str {
        m.split(';').next().unwrap_or("").trim()
    }
    let (pattern, actual) = (essence(pattern), essence(actual));
    if actual.is_empty() {
        return false;
    }
    match pattern.split_once('/') {
        Some(("*", "*")) => true,
        Some((kind, "*")) => actual
            .split_once('/')
            .is_some_and(|(k, _)| k.eq_ignore_ascii_case(kind)),
        _ => pattern.eq_ignore_ascii_case(actual),
    }
}

/// 415, naming what is accepted.
fn unsupported_media_type(accepted: &[String]) -> Denial {
    let detail = if accepted.is_empty() {
        "the body must be JSON (Content-Type: application/json)".to_string()
    } else {
        format!("the body must be one of: {}", accepted.join(", "))
    };
    Denial {
        status: 415,
        cause: cause::UNSUPPORTED_MEDIA_TYPE,
        message: "unsupported media type",
        challenge: Challenge::None,
        violations: vec![Violation {
            location: "header",
            pointer: "/content-type".into(),
            detail,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ranges_match_by_essence() {
        assert!(media_matches(
            "application/json",
            "Application/JSON; charset=utf-8"
        ));
        assert!(media_matches(
            "application/*",
            "application/merge-patch+json"
        ));
        assert!(media_matches("*/*", "text/plain"));
        assert!(!media_matches("application/json", "text/json"));
        assert!(!media_matches("*/*", ""));
    }

    #[test]
    fn repeated_headers_join_in_order() {
        let pairs = [("a", "1"), ("b", "x"), ("a", "2")]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()));
        let out: Vec<_> = joined(pairs).collect();
        assert_eq!(
            out,
            [("a", "1, 2"), ("b", "x")].map(|(n, v)| (n.to_string(), v.to_string()))
        );
    }
}
