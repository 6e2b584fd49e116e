//! A verified token: its claims and what was derived from them once, at verification.

use serde_json::{Map, Value};

use super::super::consumers::ConsumerId;
use super::super::identity::{is_field_value, push_field};

/// A token whose signature and time claims were checked.
#[derive(Debug)]
pub struct VerifiedToken {
    claims: Map<String, Value>,
    /// `exp`, seconds since the epoch.
    pub expires: Option<u64>,
    /// `nbf`, seconds since the epoch.
    pub not_before: Option<u64>,
    /// The consumer-claim value (`sub` by default), empty if absent or not a string.
    pub subject: String,
    /// The configured consumer the subject names, if any.
    pub consumer: Option<ConsumerId>,
    /// The token's groups (`groups_claim`: an array of strings, or space-separated text),
    /// for `authz` beside the consumer's configured groups.
    pub groups: Vec<String>,
    forwarded: Vec<u8>,
}

impl VerifiedToken {
    /// Derives the token's facts from its `claims`: the subject from `consumer_claim`, and
    /// the `forward_claims` rendered as header fields (values that are not safe in a header
    /// are left out).
    pub fn new(
        claims: Map<String, Value>,
        consumer_claim: &str,
        forward_claims: &[(String, String)],
        groups_claim: Option<&str>,
        consumer: impl Fn(&str) -> Option<ConsumerId>,
    ) -> Self {
        let groups = match groups_claim.and_then(|c| claims.get(c)) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(s)) => s
                .split(' ')
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        let number = |name: &str| claims.get(name).and_then(Value::as_u64);
        let subject = claims
            .get(consumer_claim)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut forwarded = Vec::new();
        for (claim, header) in forward_claims {
            let rendered = match claims.get(claim) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            if is_field_value(rendered.as_bytes()) {
                push_field(&mut forwarded, header.as_bytes(), rendered.as_bytes());
            }
        }
        VerifiedToken {
            expires: number("exp"),
            not_before: number("nbf"),
            consumer: consumer(&subject),
            groups,
            subject,
            claims,
            forwarded,
        }
    }

    /// Whether the token is usable at `now` (seconds), with `leeway`.
    pub fn current(&self, now: u64, leeway: u64) -> bool {
        self.expires
            .is_none_or(|exp| now < exp.saturating_add(leeway))
            && self
                .not_before
                .is_none_or(|nbf| now.saturating_add(leeway) >= nbf)
    }

    /// The header fields its forwarded claims go upstream in.
    pub fn forwarded_fields(&self) -> &[u8] {
        &self.forwarded
    }

    /// Whether `scope` is among the token's scopes: the space-separated `scope` claim
    /// (RFC 8693) or the `scp` array.
    pub fn has_scope(&self, scope: &str) -> bool {
        let in_scope = self
            .claims
            .get("scope")
            .and_then(Value::as_str)
            .is_some_and(|s| s.split(' ').any(|s| s == scope));
        in_scope || self.claim_has("scp", scope)
    }

    /// Whether claim `name` is the string `value`, or an array holding it.
    pub fn claim_has(&self, name: &str, value: &str) -> bool {
        match self.claims.get(name) {
            Some(Value::String(s)) => s == value,
            Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(value)),
            Some(Value::Bool(b)) => value == if *b { "true" } else { "false" },
            Some(Value::Number(n)) => n.to_string() == value,
            _ => false,
        }
    }

    /// Whether claim `name` is present.
    pub fn has_claim(&self, name: &str) -> bool {
        self.claims.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(json: &str) -> VerifiedToken {
        let claims: Map<String, Value> = serde_json::from_str(json).expect("json");
        let fwd = vec![
            ("sub".to_string(), "X-User-Id".to_string()),
            ("tenant".to_string(), "X-Tenant".to_string()),
            ("evil".to_string(), "X-Evil".to_string()),
        ];
        VerifiedToken::new(claims, "sub", &fwd, Some("roles"), |_| None)
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let t = token(r#"{"scope":"read:users write:users"}"#);
        assert!(t.has_scope("read:users") && !t.has_scope("read"));
        let t = token(r#"{"scp":["admin"]}"#);
        assert!(t.has_scope("admin"));
    }

    #[test]
    fn forwarded_claims_skip_unsafe_values() {
        let t = token(r#"{"sub":"u1","tenant":7,"evil":"a\r\nX-Admin: 1"}"#);
        assert_eq!(t.forwarded_fields(), b"X-User-Id: u1\r\nX-Tenant: 7\r\n");
        assert_eq!(t.subject, "u1");
    }

    #[test]
    fn groups_come_from_the_groups_claim() {
        assert_eq!(
            token(r#"{"roles":["admin","ops"]}"#).groups,
            ["admin", "ops"]
        );
        assert_eq!(token(r#"{"roles":"a b"}"#).groups, ["a", "b"]);
        assert!(token(r#"{"roles":7}"#).groups.is_empty());
    }

    #[test]
    fn time_window_honours_leeway() {
        let t = token(r#"{"exp":100,"nbf":50}"#);
        assert!(t.current(60, 0));
        assert!(!t.current(100, 0));
        assert!(t.current(105, 10));
        assert!(!t.current(45, 0));
        assert!(t.current(45, 10));
    }
}
