//! `validate` policies on request input: query strings, cookies and path segments decoded
//! into JSON instances, and buffered bodies checked against a schema by media type.
//!
//! Input: a selector byte, then the part (for a body: the `Content-Type` line, then the
//! body). No panic. Decoding never grows text past what its escapes allow and leaves text
//! without escapes as it is; a percent-encoded segment decodes to itself. A body the check
//! lets through on a JSON schema route is JSON of a JSON media type that the schema accepts;
//! a refusal is 400 or 415 with at most [`MAX_VIOLATIONS`] violations.

use std::sync::{Arc, OnceLock};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use ringgate::policy::validate::{
    form_decode, percent_decode, query_pairs, BodyRule, Fields, PartRule, Schema, Validate,
    MAX_VIOLATIONS,
};
use serde_json::json;

fn policy() -> &'static Validate {
    static POLICY: OnceLock<Validate> = OnceLock::new();
    POLICY.get_or_init(|| {
        let query = json!({
            "type": "object",
            "properties": {
                "limit": { "type": "integer", "minimum": 1, "maximum": 100 },
                "ratio": { "type": ["number", "null"] },
                "on": { "type": "boolean" },
                "tags": { "type": "array", "items": { "type": "string", "maxLength": 8 } },
                "ids": { "type": "array", "items": { "type": "integer" } },
                "q": { "type": "string", "pattern": "^[a-z]+$" },
                "email": { "type": "string", "format": "email" }
            },
            "additionalProperties": false
        });
        let body = json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": { "type": "string", "minLength": 1 },
                "age": { "type": "integer", "minimum": 0 },
                "when": { "type": "string", "format": "date-time" },
                "items": { "type": "array", "maxItems": 4, "items": { "$ref": "#/$defs/item" } }
            },
            "$defs": { "item": { "type": "object", "properties": { "id": { "type": "string", "format": "uuid" } } } }
        });
        let rule = |schema: &serde_json::Value| PartRule {
            schema: Schema::compile(schema, None).expect("the fuzz schema compiles"),
            fields: Fields::from_object_schema(schema, true, false),
        };
        Validate {
            name: "fuzz".into(),
            status: 400,
            query: Some(rule(&query)),
            headers: None,
            cookies: None,
            path: None,
            body: Some(BodyRule {
                schema: Some(Schema::compile(&body, None).expect("the fuzz body schema compiles")),
                required: true,
                media_types: Vec::new(),
            }),
            described: Arc::default(),
        }
    })
}

pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => query(rest),
        1 => body(rest),
        _ => decoding(rest),
    }
}

fn query(text: &[u8]) {
    let policy = policy();
    let Some(rule) = &policy.query else {
        return;
    };
    let instance = rule.fields.instance(query_pairs(text));
    assert!(instance.is_object());
    let mut violations = Vec::new();
    if !rule.schema.is_valid(&instance) {
        rule.schema.violations(&instance, "query", &mut violations);
        assert!(
            !violations.is_empty(),
            "an invalid instance without violations"
        );
    }
    assert!(violations.len() <= MAX_VIOLATIONS);
}

fn body(rest: &[u8]) {
    let (content_type, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let policy = policy();
    match policy.check_body(content_type, body) {
        Ok(()) => {
            let media = content_type
                .and_then(|c| std::str::from_utf8(c).ok())
                .unwrap_or_default();
            assert!(
                ringgate::openapi::document::is_json_media_type(media),
                "a body of media type {media:?} passed a JSON-only rule"
            );
            let value: serde_json::Value =
                serde_json::from_slice(body).expect("a body that passed is JSON");
            let schema = policy.body.as_ref().and_then(|b| b.schema.as_ref());
            assert!(schema.is_some_and(|s| s.is_valid(&value)));
        }
        Err(denial) => {
            assert!(
                matches!(denial.status, 400 | 415),
                "status {}",
                denial.status
            );
            assert!(denial.violations.len() <= MAX_VIOLATIONS + 1);
        }
    }
}

fn decoding(text: &[u8]) {
    let decoded = form_decode(text);
    // Every byte decodes to at most one byte, or U+FFFD (3 bytes) when it is not UTF-8.
    assert!(decoded.len() <= text.len() * 3);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if !text.contains(['%', '+']) {
        assert_eq!(decoded, text);
    }
    let encoded: String = utf8_percent_encode(text, NON_ALPHANUMERIC).collect();
    assert_eq!(percent_decode(&encoded), text);
    if !text.contains('%') {
        assert_eq!(percent_decode(text), text);
    }
}
