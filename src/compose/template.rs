//! Templates of a call's path and body: literal text with `{placeholders}`.
//!
//! A placeholder is `{` directly followed by a name (`[A-Za-z_]`, then letters, digits and
//! `_ . - [ ] *`) and `}`; any other brace is literal text, so a JSON body template reads as
//! the JSON it produces (`{"user": {user.id}}`). What a name means is decided by the caller
//! that compiles the template ([`Template::parse`] takes a resolver): in composition a bare
//! name is a route parameter, `query.NAME`, `header.NAME`, `consumer`, `each`, or
//! `CALL.field.path` of an earlier call.
//!
//! Rendering: into a request target, a value is percent-encoded (everything but RFC 3986
//! unreserved characters); into a JSON body, outside a string a value is written as JSON
//! (strings quoted, fields of other calls as the JSON they are) and inside a string as
//! escaped text.

use std::borrow::Cow;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a placeholder stands for; decided by the resolver given to [`Template::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Route parameter, by the composite's parameter slot.
    Param(usize),
    /// A query parameter of the client's request.
    Query(Box<str>),
    /// A header of the client's request (lower-case name).
    Header(Box<str>),
    /// The consumer the route's policies authenticated.
    Consumer,
    /// A field of another call's document: the call and the index of the lookup on it.
    Field {
        /// The call read from.
        call: usize,
        /// Index into that call's lookups.
        lookup: usize,
    },
    /// The fan-out element (or the batch's list).
    Each,
    /// The request's id (`transform` templates).
    RequestId,
    /// The client's address as the route's policies established it (`transform`).
    ClientIp,
    /// The matched route's name (`transform`).
    Route,
    /// A route parameter by name (`transform`: a policy serves routes with different
    /// templates, so it names the parameter instead of a slot).
    ParamName(Box<str>),
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(Box<str>),
    /// A placeholder; `in_string` for a body placeholder inside a JSON string literal.
    Value {
        /// What it stands for.
        source: Source,
        /// Inside a JSON string (body templates only).
        in_string: bool,
    },
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Characters left as they are in an encoded value: RFC 3986 unreserved.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The value of a placeholder at render time.
#[derive(Debug, Clone)]
pub enum Value<'v> {
    /// Text (a route parameter, a header, a string field's contents, a number as written).
    Text(Cow<'v, str>),
    /// JSON as it is (a field of another call that is an object, array, number or bool; in a
    /// target or inside a string it is written as its text).
    Json(&'v str),
}

impl Template {
    /// Parses `text`, asking `resolve` what each placeholder name means; `body` tracks JSON
    /// string context for body templates.
    pub fn parse(
        text: &str,
        body: bool,
        resolve: &mut dyn FnMut(&str) -> Result<Source, String>,
    ) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut in_string = false;
        let mut escaped = false;
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'{' && !escaped {
                if let Some(len) = placeholder_len(&text[i + 1..]) {
                    let name = &text[i + 1..i + 1 + len];
                    let source = resolve(name)?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal).into()));
                    }
                    pieces.push(Piece::Value { source, in_string });
                    i += len + 2;
                    continue;
                }
            }
            if body {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                } else if b == b'"' {
                    in_string = true;
                }
            }
            // `text` is a str and `i` advances byte by byte: push whole characters.
            let ch_len = utf8_len(b);
            literal.push_str(&text[i..(i + ch_len).min(text.len())]);
            i += ch_len;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal.into()));
        }
        Ok(Template { pieces })
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// Every placeholder's source, in order.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Value { source, .. } => Some(source),
            Piece::Text(_) => None,
        })
    }

    /// Whether any placeholder is `source`.
    pub fn uses(&self, source: &Source) -> bool {
        self.sources().any(|s| s == source)
    }

    /// The template with every placeholder given a stand-in value (`null` outside strings,
    /// `x` inside), to check at load that a body template produces JSON.
    pub fn sample(&self) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value {
                    in_string: true, ..
                } => out.push('x'),
                Piece::Value { .. } => out.push_str("null"),
            }
        }
        out
    }

    /// Renders a request target: placeholder values percent-encoded. `None` if a value is
    /// missing.
    pub fn render_target<'v>(
        &self,
        value: &mut dyn FnMut(&Source) -> Option<Value<'v>>,
        out: &mut String,
    ) -> Option<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value { source, .. } => match value(source)? {
                    Value::Text(t) => out.extend(utf8_percent_encode(&t, ENCODE)),
                    Value::Json(t) => out.extend(utf8_percent_encode(t, ENCODE)),
                },
            }
        }
        Some(())
    }

    /// Renders plain text (a header field or a query value before encoding): placeholder
    /// values written as they are. `None` if a value is missing.
    pub fn render_text<'v>(
        &self,
        value: &mut dyn FnMut(&Source) -> Option<Value<'v>>,
        out: &mut Vec<u8>,
    ) -> Option<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Value { source, .. } => match value(source)? {
                    Value::Text(t) => out.extend_from_slice(t.as_bytes()),
                    Value::Json(t) => out.extend_from_slice(t.as_bytes()),
                },
            }
        }
        Some(())
    }

    /// Renders as plain text, `write` putting each placeholder's value at the end of `out`;
    /// `None` (with `out` partly written) if `write` finds a value missing.
    pub fn render_with(
        &self,
        out: &mut Vec<u8>,
        write: &mut dyn FnMut(&Source, &mut Vec<u8>) -> Option<()>,
    ) -> Option<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Value { source, .. } => write(source, out)?,
            }
        }
        Some(())
    }

    /// Renders a JSON body. `None` if a value is missing.
    pub fn render_body<'v>(
        &self,
        value: &mut dyn FnMut(&Source) -> Option<Value<'v>>,
        out: &mut Vec<u8>,
    ) -> Option<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Value { source, in_string } => match (value(source)?, in_string) {
                    (Value::Json(json), false) => out.extend_from_slice(json.as_bytes()),
                    (Value::Text(t), false) => crate::json::write_str(&t, out),
                    (Value::Json(json), true) if json.len() >= 2 && json.starts_with('"') => {
                        // A JSON string's contents are already escaped for a string.
                        out.extend_from_slice(&json.as_bytes()[1..json.len() - 1]);
                    }
                    (Value::Json(json), true) => {
                        let start = out.len();
                        crate::json::write_str(json, out);
                        out.remove(start);
                        out.pop();
                    }
                    (Value::Text(t), true) => {
                        let start = out.len();
                        crate::json::write_str(&t, out);
                        // Keep the escaped contents without the quotes.
                        out.remove(start);
                        out.pop();
                    }
                },
            }
        }
        Some(())
    }
}

/// Percent-encodes `text` onto `out` as a placeholder value is.
pub fn encode_into(text: &str, out: &mut String) {
    out.extend(utf8_percent_encode(text, ENCODE));
}

/// Appends `text` percent-encoded as [`encode_into`] does, to a byte buffer.
pub fn encode_bytes_into(text: &str, out: &mut Vec<u8>) {
    for piece in utf8_percent_encode(text, ENCODE) {
        out.extend_from_slice(piece.as_bytes());
    }
}

/// The length of a placeholder name starting `rest` (after `{`), if `rest` holds one.
fn placeholder_len(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    let first = *bytes.first()?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let len = bytes
        .iter()
        .position(|&b| {
            !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'[' | b']' | b'*'))
        })
        .unwrap_or(bytes.len());
    (bytes.get(len) == Some(&b'}')).then_some(len)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(name: &str) -> Result<Source, String> {
        match name {
            "user" => Ok(Source::Param(0)),
            "consumer" => Ok(Source::Consumer),
            "each" => Ok(Source::Each),
            n if n.starts_with("query.") => Ok(Source::Query(n[6..].into())),
            "user.segment" => Ok(Source::Field { call: 0, lookup: 0 }),
            "user.address" => Ok(Source::Field { call: 0, lookup: 1 }),
            "user.tier" => Ok(Source::Field { call: 0, lookup: 2 }),
            other => Err(format!("unknown `{other}`")),
        }
    }

    fn values(source: &Source) -> Option<Value<'static>> {
        match source {
            Source::Param(0) => Some(Value::Text("a/b c".into())),
            Source::Consumer => Some(Value::Text("acme".into())),
            Source::Query(_) => None,
            Source::Field { lookup: 0, .. } => Some(Value::Text("gold \"vip\"".into())),
            Source::Field { lookup: 2, .. } => Some(Value::Json("\"gold \\\"vip\\\"\"")),
            Source::Field { .. } => Some(Value::Json("{\"city\": \"Paris\"}")),
            _ => Some(Value::Text("x".into())),
        }
    }

    #[test]
    fn parses_placeholders_and_leaves_other_braces() {
        let t = Template::parse("/u/{user}/r?t={user.segment}&x={1}", false, &mut resolve)
            .expect("valid");
        assert_eq!(
            t.pieces(),
            [
                Piece::Text("/u/".into()),
                Piece::Value {
                    source: Source::Param(0),
                    in_string: false
                },
                Piece::Text("/r?t=".into()),
                Piece::Value {
                    source: Source::Field { call: 0, lookup: 0 },
                    in_string: false
                },
                Piece::Text("&x={1}".into()),
            ]
        );
        assert!(Template::parse("/{nope}", false, &mut resolve).is_err());
    }

    #[test]
    fn renders_targets_percent_encoded() {
        let t = Template::parse("/u/{user}?t={user.segment}", false, &mut resolve).expect("ok");
        let mut out = String::new();
        t.render_target(&mut values, &mut out).expect("all present");
        assert_eq!(out, "/u/a%2Fb%20c?t=gold%20%22vip%22");
        let missing = Template::parse("/q/{query.x}", false, &mut resolve).expect("ok");
        assert!(missing
            .render_target(&mut values, &mut String::new())
            .is_none());
    }

    #[test]
    fn renders_bodies_as_json_inside_and_outside_strings() {
        let t = Template::parse(
            r#"{"who": {consumer}, "note": "tier {user.segment}!", "at": {user.address}, "t": "{user.tier}"}"#,
            true,
            &mut resolve,
        )
        .expect("ok");
        assert_eq!(
            t.sample(),
            r#"{"who": null, "note": "tier x!", "at": null, "t": "x"}"#
        );
        let mut out = Vec::new();
        t.render_body(&mut values, &mut out).expect("all present");
        let text = String::from_utf8(out).expect("UTF-8");
        assert_eq!(
            text,
            r#"{"who": "acme", "note": "tier gold \"vip\"!", "at": {"city": "Paris"}, "t": "gold \"vip\""}"#
        );
        serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
    }

    #[test]
    fn escaped_quotes_do_not_end_a_string() {
        let t = Template::parse(r#"{"a": "x\"{consumer}"}"#, true, &mut resolve).expect("ok");
        assert!(matches!(
            t.pieces()[1],
            Piece::Value {
                in_string: true,
                ..
            }
        ));
    }
}
