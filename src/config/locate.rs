//! Turns a `toml::de::Error` into a [`Problem`] with a key path and a line.
//!
//! toml reports where an error is (a byte span) but not, publicly, which key it belongs to.
//! So the text is read a second time into a tree of keys with their spans, and the key whose
//! span starts last at or before the error is the one named: for a bad value that is its own
//! key, for an unknown key the key itself. An error on a table header (a missing field) names
//! the header. This runs only on failure and never fails itself: at worst the key is empty.

use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::{line_at, Problem};

/// The problem a deserialization error describes, with its key path where it can be found.
pub fn toml_problem(text: &str, err: &toml::de::Error) -> Problem {
    let mut message = err.message().trim().to_string();
    if message.is_empty() {
        // toml has no words for some syntax errors (a control character in a comment).
        message = "invalid TOML syntax".to_string();
    }
    let Some(span) = err.span() else {
        return Problem {
            key: String::new(),
            line: None,
            message,
        };
    };
    Problem {
        key: key_at(text, span.start).unwrap_or_default(),
        line: Some(line_at(text, span.start)),
        message,
    }
}

/// The key path the byte at `offset` belongs to, if one can be told.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)?
        .lines()
        .next()
        .unwrap_or("")
        .trim_start();
    if line.starts_with('[') {
        // A table header: `[server.limits]` or `[[routes]]`.
        let inner = line.split(']').next()?.trim_start_matches('[').trim();
        return Some(inner.to_string());
    }
    let tree = toml::from_str::<Node>(text).ok()?;
    let mut keys = Vec::new();
    flatten(&tree, "", &mut keys);
    keys.into_iter()
        .filter(|(start, _)| *start <= offset)
        .max_by_key(|(start, _)| *start)
        .map(|(_, path)| path)
}

/// Collects `(key start, key path)` for every key in the tree.
fn flatten(node: &Node, prefix: &str, out: &mut Vec<(usize, String)>) {
    match node {
        Node::Table(entries) => {
            for (key, child) in entries {
                let path = join(prefix, key.get_ref());
                out.push((key.span().start, path.clone()));
                flatten(child, &path, out);
            }
        }
        Node::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                flatten(child, &format!("{prefix}[{i}]"), out);
            }
        }
        Node::Leaf => {}
    }
}

/// `prefix.key`, quoting keys that are not bare TOML keys.
fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// Any TOML value, keeping only its keys (with their spans) and its shape.
enum Node {
    Table(Vec<(Spanned<String>, Node)>),
    Array(Vec<Node>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Table(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Node::Leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        a: Option<Inner>,
        list: Option<Vec<Inner>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: Option<u8>,
        s: String,
    }

    fn problem(text: &str) -> Problem {
        let err = toml::from_str::<Doc>(text).expect_err("invalid on purpose");
        toml_problem(text, &err)
    }

    #[test]
    fn a_syntax_error_without_words_still_says_what_is_wrong() {
        // Found by fuzzing: toml reports a NUL in a comment with an empty message.
        let p = problem("[a]\ns = \"x\"\n# a comment\0\n");
        assert_eq!(p.line, Some(3));
        assert_eq!(p.message, "invalid TOML syntax");
    }

    #[test]
    fn names_a_bad_value_by_its_key_and_line() {
        let p = problem("[a]\ns = \"x\"\nn = \"nope\"\n");
        assert_eq!((p.key.as_str(), p.line), ("a.n", Some(3)));
    }

    #[test]
    fn names_an_unknown_key_inside_an_array_of_inline_tables() {
        let p = problem("list = [\n  { s = \"x\" },\n  { s = \"y\", bogus = 1 },\n]\n");
        assert_eq!((p.key.as_str(), p.line), ("list[1].bogus", Some(3)));
        assert!(p.message.contains("bogus"), "{}", p.message);
    }

    #[test]
    fn names_an_unknown_top_level_table_by_its_header() {
        let p = problem("[a]\ns = \"x\"\n\n[admin]\nlisten = 1\n");
        assert_eq!((p.key.as_str(), p.line), ("admin", Some(4)));
    }

    #[test]
    fn reports_a_syntax_error_with_its_line() {
        let p = problem("[a]\ns = \"x\"\nn = = 1\n");
        assert_eq!(p.line, Some(3));
    }
}
