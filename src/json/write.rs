//! Serialization of a [`Node`]: raw text is copied, expanded levels are written compactly.
//!
//! [`encoded_len`] gives the exact number of bytes [`write`] will produce, so a response can
//! announce its `Content-Length` and be written once, with no intermediate buffer.

use super::node::{Key, Node};

/// Appends `node` as JSON text.
pub fn write(node: &Node<'_>, out: &mut Vec<u8>) {
    match node {
        Node::Raw(text) => out.extend_from_slice(text.as_bytes()),
        Node::Object(members) => {
            out.push(b'{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_key(key, out);
                out.push(b':');
                write(value, out);
            }
            out.push(b'}');
        }
        Node::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
    }
}

/// The number of bytes [`write`] appends for `node`.
pub fn encoded_len(node: &Node<'_>) -> usize {
    match node {
        Node::Raw(text) => text.len(),
        Node::Object(members) => {
            let commas = members.len().saturating_sub(1);
            let inner: usize = members
                .iter()
                .map(|(k, v)| key_len(k) + 1 + encoded_len(v))
                .sum();
            2 + commas + inner
        }
        Node::Array(items) => {
            let commas = items.len().saturating_sub(1);
            2 + commas + items.iter().map(encoded_len).sum::<usize>()
        }
    }
}

/// Appends `s` as a JSON string (quoted and escaped).
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The number of bytes [`write_str`] appends for `s`.
fn str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

fn write_key(key: &Key<'_>, out: &mut Vec<u8>) {
    match key {
        Key::Raw(raw) => {
            out.push(b'"');
            out.extend_from_slice(raw.as_bytes());
            out.push(b'"');
        }
        Key::Text(text) => write_str(text, out),
    }
}

fn key_len(key: &Key<'_>) -> usize {
    match key {
        Key::Raw(raw) => raw.len() + 2,
        Key::Text(text) => str_len(text),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn written(node: &Node<'_>) -> String {
        let mut out = Vec::new();
        write(node, &mut out);
        assert_eq!(out.len(), encoded_len(node), "encoded_len is exact");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn writes_raw_text_verbatim_and_expanded_levels_compactly() {
        let mut node = Node::new("{ \"a\" : [1, 2], \"b\":{\"c\": true} }");
        assert_eq!(written(&node), "{ \"a\" : [1, 2], \"b\":{\"c\": true} }");
        node.expand().expect("ok");
        assert_eq!(written(&node), "{\"a\":[1, 2],\"b\":{\"c\": true}}");
    }

    #[test]
    fn escapes_text_keys() {
        let node = Node::Object(vec![(
            Key::Text(Cow::Borrowed("q\"\\\n\u{1}é")),
            Node::Array(vec![]),
        )]);
        let text = written(&node);
        assert_eq!(text, "{\"q\\\"\\\\\\n\\u0001é\":[]}");
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert!(back.get("q\"\\\n\u{1}é").is_some());
    }

    #[test]
    fn empty_containers() {
        assert_eq!(written(&Node::Object(vec![])), "{}");
        assert_eq!(written(&Node::Array(vec![])), "[]");
    }
}
