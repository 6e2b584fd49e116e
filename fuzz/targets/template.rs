//! Composition templates (`src/compose/template.rs`) and the composite's `Cache-Control`.
//!
//! Input: a selector byte (bit 0: body template), the template, then `\0`-separated values.
//! No panic. A target template renders its literal text as written and each value
//! percent-encoded so that it decodes back to itself. A body template whose load-time
//! sample is JSON (the check the config loader makes) renders JSON for any values: text of
//! any content, and JSON values from the input that are well-formed. `Cache-Control`
//! combination never loosens: `no-store` anywhere stays `no-store`.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use ringgate::compose::cache_control::Combined;
use ringgate::compose::template::{Piece, Source, Template, Value};

pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut parts = text.split('\0');
    let template = parts.next().unwrap_or_default();
    let values: Vec<&str> = parts.collect();
    let body = selector & 1 == 1;
    let Ok(parsed) = Template::parse(template, body, &mut resolve) else {
        return;
    };
    let literal: String = parsed
        .pieces()
        .iter()
        .filter_map(|p| match p {
            Piece::Text(t) => Some(&**t),
            Piece::Value { .. } => None,
        })
        .collect();
    assert!(literal.len() <= template.len());
    if body {
        check_body(&parsed, &values);
    } else {
        check_target(&parsed, &values);
    }
    cache_control(&values, selector & 2 == 2);
}

/// Names as composition resolves them, roughly: a few kinds of source; `bad*` is refused.
fn resolve(name: &str) -> Result<Source, String> {
    if name.starts_with("bad") {
        return Err(format!("unknown `{name}`"));
    }
    Ok(match name {
        "consumer" => Source::Consumer,
        "each" => Source::Each,
        n if n.starts_with("query.") => Source::Query(n[6..].into()),
        n if n.starts_with("header.") => Source::Header(n[7..].into()),
        n if n.contains('.') => Source::Field {
            call: n.len() % 3,
            lookup: 0,
        },
        n => Source::Param(n.len() % 4),
    })
}

/// The value of `source`: the input's values in turn; fields are JSON when the value is.
fn value<'v>(values: &[&'v str], source: &Source, json: bool) -> Option<Value<'v>> {
    let i = match source {
        Source::Param(i) => *i,
        Source::Field { call, .. } => *call,
        Source::Query(_) => 4,
        Source::Header(_) => 5,
        Source::Consumer => 6,
        Source::Each => 7,
        Source::RequestId | Source::ClientIp | Source::Route | Source::ParamName(_) => 8,
    };
    let text = values.get(i % values.len().max(1)).copied().unwrap_or("");
    let is_field = matches!(source, Source::Field { .. } | Source::Each);
    if json && is_field {
        if let Ok(checked) = ringgate::json::check(text.as_bytes()) {
            return Some(Value::Json(checked));
        }
    }
    Some(Value::Text(Cow::Borrowed(text)))
}

fn check_target(parsed: &Template, values: &[&str]) {
    let mut out = String::new();
    let rendered = parsed.render_target(&mut |s| value(values, s, true), &mut out);
    assert!(rendered.is_some());
    // Piece by piece: each value's encoding decodes back to it.
    for piece in parsed.pieces() {
        let Piece::Value { source, .. } = piece else {
            continue;
        };
        let one = Template::parse("{x}", false, &mut |_: &str| Ok(source.clone()))
            .expect("a lone placeholder parses");
        let mut encoded = String::new();
        one.render_target(&mut |s| value(values, s, true), &mut encoded);
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "an encoded value keeps a reserved character: {encoded}"
        );
        let expected = match value(values, source, true) {
            Some(Value::Text(t)) => t.into_owned(),
            Some(Value::Json(j)) => j.to_string(),
            None => unreachable!("every source has a value here"),
        };
        let decoded = percent_decode_str(&encoded).decode_utf8_lossy();
        assert_eq!(decoded, expected);
    }
}

fn check_body(parsed: &Template, values: &[&str]) {
    if ringgate::json::check(parsed.sample().as_bytes()).is_err() {
        return;
    }
    for json in [true, false] {
        let mut out = Vec::new();
        let rendered = parsed.render_body(&mut |s| value(values, s, json), &mut out);
        assert!(rendered.is_some());
        assert!(
            ringgate::json::check(&out).is_ok(),
            "a body template whose sample is JSON rendered no JSON: {}",
            String::from_utf8_lossy(&out)
        );
    }
}

fn cache_control(values: &[&str], incomplete: bool) {
    let mut combined = Combined::default();
    let mut no_store = false;
    for v in values {
        combined.add(v);
        no_store |= v.split(',').any(|d| {
            d.split('=')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("no-store")
        });
    }
    let value = combined.value(incomplete);
    if incomplete || no_store {
        assert_eq!(value.as_deref(), Some("no-store"));
    }
    if values.is_empty() && !incomplete {
        assert_eq!(value, None);
    }
}
