//! The lazy tree: a value is its raw text until something needs to look inside it.
//!
//! [`Node::expand`] turns the raw text of an object or array into one level of members whose
//! values are raw text again (serde_json reads the level; `RawValue` finds where each member
//! ends without building it). Lookups, filters and edits expand only along the paths they
//! follow, so a 256 KiB document with one field removed is scanned, not rebuilt.
//!
//! Every `Node::Raw` holds well-formed JSON: the document was [`check`]ed before it became a
//! node, and every piece cut from it is one of its values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::path::Segment;
use super::JsonError;

/// An object member's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// As it appeared in a document, without escapes: written back verbatim.
    Raw(&'a str),
    /// Any text (from configuration, or unescaped from a document): escaped when written.
    Text(Cow<'a, str>),
}

impl Key<'_> {
    /// The name as text.
    pub fn text(&self) -> &str {
        match self {
            Key::Raw(s) => s,
            Key::Text(s) => s,
        }
    }
}

/// What kind of value a node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `{...}`
    Object,
    /// `[...]`
    Array,
    /// `"..."`
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
}

/// A JSON value, expanded only where it was looked into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node<'a> {
    /// Well-formed JSON text, written back exactly as it is.
    Raw(&'a str),
    /// An expanded object: members in document order (duplicates kept).
    Object(Vec<(Key<'a>, Node<'a>)>),
    /// An expanded array.
    Array(Vec<Node<'a>>),
}

/// The JSON text of `body` without surrounding white space, if it is exactly one well-formed
/// JSON value in UTF-8.
pub fn check(body: &[u8]) -> Result<&str, JsonError> {
    let text = std::str::from_utf8(body).map_err(|_| JsonError::NotUtf8)?;
    let text = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    if text.is_empty() {
        return Err(JsonError::Empty);
    }
    serde_json::from_str::<IgnoredAny>(text).map_err(|e| JsonError::Syntax(e.to_string()))?;
    Ok(text)
}

impl<'a> Node<'a> {
    /// A node for a [`check`]ed document.
    pub fn new(text: &'a str) -> Self {
        Node::Raw(text)
    }

    /// What kind of value this is.
    pub fn kind(&self) -> Kind {
        match self {
            Node::Object(_) => Kind::Object,
            Node::Array(_) => Kind::Array,
            Node::Raw(text) => raw_kind(text),
        }
    }

    /// Expands an object or array held as raw text into one level of members; scalars and
    /// expanded nodes are left as they are.
    pub fn expand(&mut self) -> Result<(), JsonError> {
        let Node::Raw(text) = *self else {
            return Ok(());
        };
        match raw_kind(text) {
            Kind::Object | Kind::Array => {}
            _ => return Ok(()),
        }
        let level = serde_json::from_str::<Level<'a>>(text)
            .map_err(|e| JsonError::Syntax(e.to_string()))?;
        *self = match level {
            Level::Object(members) => Node::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k, Node::Raw(v.get())))
                    .collect(),
            ),
            Level::Array(items) => {
                Node::Array(items.into_iter().map(|v| Node::Raw(v.get())).collect())
            }
            Level::Scalar => Node::Raw(text),
        };
        Ok(())
    }

    /// The value of member `key` (the last one, if the name repeats), expanding this node;
    /// `None` if this is no object or has no such member.
    pub fn member_mut(&mut self, key: &str) -> Result<Option<&mut Node<'a>>, JsonError> {
        self.expand()?;
        let Node::Object(members) = self else {
            return Ok(None);
        };
        Ok(members
            .iter_mut()
            .rev()
            .find(|(k, _)| k.text() == key)
            .map(|(_, v)| v))
    }

    /// Sets member `key` of an object: an existing member of that name keeps its place and
    /// takes the new value (`Ok(true)`), else the member is appended (`Ok(false)`). `Err` if
    /// this is not an object.
    pub fn set(&mut self, key: Key<'a>, value: Node<'a>) -> Result<bool, NotAnObject> {
        self.expand().map_err(|_| NotAnObject)?;
        let Node::Object(members) = self else {
            return Err(NotAnObject);
        };
        if let Some(slot) = members
            .iter_mut()
            .rev()
            .find(|(k, _)| k.text() == key.text())
        {
            slot.1 = value;
            return Ok(true);
        }
        members.push((key, value));
        Ok(false)
    }

    /// The node `path` leads to (keys and indexes; arrays are not transparent here), taken out
    /// of this one; `None` if it does not exist.
    pub fn take(mut self, path: &[Segment]) -> Result<Option<Node<'a>>, JsonError> {
        for segment in path {
            self.expand()?;
            let next = match (segment, self) {
                (Segment::Key(k), Node::Object(members)) => members
                    .into_iter()
                    .rev()
                    .find(|(name, _)| name.text() == &**k)
                    .map(|(_, v)| v),
                (Segment::Index(i), Node::Array(items)) => items.into_iter().nth(*i),
                _ => None,
            };
            match next {
                Some(node) => self = node,
                None => return Ok(None),
            }
        }
        Ok(Some(self))
    }

    /// Calls `visit` on every node `path` reaches from this one, in document order. Arrays are
    /// transparent: a key applied to an array applies to each element.
    pub fn for_each_mut<E>(
        &mut self,
        path: &[Segment],
        visit: &mut dyn FnMut(&mut Node<'a>) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<JsonError>,
    {
        let Some((first, rest)) = path.split_first() else {
            return visit(self);
        };
        self.expand()?;
        match (first, self) {
            (Segment::Key(k), Node::Object(members)) => {
                if let Some((_, v)) = members.iter_mut().rev().find(|(n, _)| n.text() == &**k) {
                    v.for_each_mut(rest, visit)?;
                }
            }
            (Segment::Key(_), Node::Array(items)) => {
                for item in items {
                    item.for_each_mut(path, visit)?;
                }
            }
            (Segment::Each, Node::Array(items)) => {
                for item in items {
                    item.for_each_mut(rest, visit)?;
                }
            }
            (Segment::Index(i), Node::Array(items)) => {
                if let Some(item) = items.get_mut(*i) {
                    item.for_each_mut(rest, visit)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The raw text of every value `path` reaches in this node, in document order (see
    /// [`Node::for_each_mut`]); values are expanded on the way but the node is not kept.
    pub fn collect(text: &'a str, path: &[Segment]) -> Result<Vec<&'a str>, JsonError> {
        let mut out = Vec::new();
        collect_into(Node::Raw(text), path, &mut out)?;
        Ok(out)
    }

    /// The text form of a scalar: a string's contents (unescaped), a number or boolean as
    /// written; `None` for `null`, objects and arrays.
    pub fn scalar_text(raw: &'a str) -> Option<Cow<'a, str>> {
        match raw_kind(raw) {
            Kind::String => {
                let inner = raw.get(1..raw.len().saturating_sub(1))?;
                if inner.contains('\\') {
                    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
                } else {
                    Some(Cow::Borrowed(inner))
                }
            }
            Kind::Number | Kind::Bool => Some(Cow::Borrowed(raw)),
            Kind::Null | Kind::Object | Kind::Array => None,
        }
    }
}

/// [`Node::set`] on something that is not an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAnObject;

fn collect_into<'a>(
    mut node: Node<'a>,
    path: &[Segment],
    out: &mut Vec<&'a str>,
) -> Result<(), JsonError> {
    let Some((first, rest)) = path.split_first() else {
        if let Node::Raw(text) = node {
            out.push(text);
        }
        return Ok(());
    };
    node.expand()?;
    match (first, node) {
        (Segment::Key(k), Node::Object(members)) => {
            if let Some((_, v)) = members.into_iter().rev().find(|(n, _)| n.text() == &**k) {
                collect_into(v, rest, out)?;
            }
        }
        (Segment::Key(_), Node::Array(items)) => {
            for item in items {
                collect_into(item, path, out)?;
            }
        }
        (Segment::Each, Node::Array(items)) => {
            for item in items {
                collect_into(item, rest, out)?;
            }
        }
        (Segment::Index(i), Node::Array(items)) => {
            if let Some(item) = items.into_iter().nth(*i) {
                collect_into(item, rest, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The kind of a well-formed JSON text, told by its first byte.
fn raw_kind(text: &str) -> Kind {
    match text.as_bytes().first() {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::String,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'n') | None => Kind::Null,
        Some(_) => Kind::Number,
    }
}

/// One level of a document, as serde_json reads it.
enum Level<'a> {
    Object(Vec<(Key<'a>, &'a RawValue)>),
    Array(Vec<&'a RawValue>),
    Scalar,
}

impl<'de> Deserialize<'de> for Level<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LevelVisitor)
    }
}

struct LevelVisitor;

impl<'de> Visitor<'de> for LevelVisitor {
    type Value = Level<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(KeyDe(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            members.push((key, value));
        }
        Ok(Level::Object(members))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(8));
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            items.push(item);
        }
        Ok(Level::Array(items))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Level::Scalar)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Level::Scalar)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Level::Scalar)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Level::Scalar)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Level::Scalar)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Level::Scalar)
    }
}

/// A member name: borrowed when it has no escapes, else unescaped into an owned string.
struct KeyDe<'a>(Key<'a>);

impl<'de> Deserialize<'de> for KeyDe<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = KeyDe<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(KeyDe(Key::Raw(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(KeyDe(Key::Text(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(KeyDe(Key::Text(Cow::Owned(v))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::FieldPath;

    fn segments(path: &str) -> Vec<Segment> {
        FieldPath::parse(path).expect("valid").segments().to_vec()
    }

    #[test]
    fn check_accepts_one_value_and_trims_white_space() {
        assert_eq!(check(b" {\"a\": 1}\n"), Ok("{\"a\": 1}"));
        assert_eq!(check(b"42"), Ok("42"));
        assert_eq!(check(b"  "), Err(JsonError::Empty));
        assert_eq!(check(b"\xff"), Err(JsonError::NotUtf8));
        for bad in [&b"{\"a\":}"[..], b"{} {}", b"<html>", b"[1,]", b"\"\x01\""] {
            assert!(matches!(check(bad), Err(JsonError::Syntax(_))), "{bad:?}");
        }
    }

    #[test]
    fn expands_one_level_and_keeps_the_rest_raw() {
        let mut node = Node::new(r#"{"a": {"b": [1, 2]}, "c\u0041": "x"}"#);
        node.expand().expect("well-formed");
        let Node::Object(members) = &node else {
            panic!("an object")
        };
        assert_eq!(members[0], (Key::Raw("a"), Node::Raw(r#"{"b": [1, 2]}"#)));
        assert_eq!(members[1].0.text(), "cA");
        assert!(matches!(members[1].0, Key::Text(_)));
    }

    #[test]
    fn collects_through_arrays() {
        let doc = r#"{"items": [{"id": 1}, {"id": "b"}, {"no": 0}, {"id": 1}]}"#;
        assert_eq!(
            Node::collect(doc, &segments("items[*].id")).expect("ok"),
            ["1", "\"b\"", "1"]
        );
        assert_eq!(
            Node::collect(doc, &segments("items.id")).expect("ok"),
            ["1", "\"b\"", "1"]
        );
        assert_eq!(
            Node::collect(doc, &segments("items[1].id")).expect("ok"),
            ["\"b\""]
        );
        assert!(Node::collect(doc, &segments("nope.id"))
            .expect("ok")
            .is_empty());
    }

    #[test]
    fn scalar_text_unescapes_strings_and_refuses_containers() {
        assert_eq!(Node::scalar_text("\"gold\"").as_deref(), Some("gold"));
        assert_eq!(Node::scalar_text(r#""a\"b""#).as_deref(), Some("a\"b"));
        assert_eq!(Node::scalar_text("12.5").as_deref(), Some("12.5"));
        assert_eq!(Node::scalar_text("true").as_deref(), Some("true"));
        assert_eq!(Node::scalar_text("null"), None);
        assert_eq!(Node::scalar_text("{}"), None);
    }

    #[test]
    fn set_replaces_in_place_or_appends() {
        let mut node = Node::new(r#"{"a": 1, "b": 2}"#);
        assert_eq!(node.set(Key::Raw("a"), Node::Raw("3")), Ok(true));
        assert_eq!(node.set(Key::Raw("c"), Node::Raw("4")), Ok(false));
        assert_eq!(
            node,
            Node::Object(vec![
                (Key::Raw("a"), Node::Raw("3")),
                (Key::Raw("b"), Node::Raw("2")),
                (Key::Raw("c"), Node::Raw("4")),
            ])
        );
        assert_eq!(
            Node::new("[1]").set(Key::Raw("a"), Node::Raw("1")),
            Err(NotAnObject)
        );
    }

    #[test]
    fn take_follows_keys_and_indexes() {
        let node = Node::new(r#"{"data": {"list": [10, 20]}}"#);
        assert_eq!(
            node.clone().take(&segments("data.list[1]")).expect("ok"),
            Some(Node::Raw("20"))
        );
        assert_eq!(node.take(&segments("data.x")).expect("ok"), None);
    }
}
