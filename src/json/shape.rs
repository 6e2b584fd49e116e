//! Per-document shaping, compiled once from configuration and applied to lazy nodes.
//!
//! The operations run in a fixed order, each on what the previous one left:
//!
//! 1. `target`: descend into a sub-value (`data`, `result.items`); a missing target fails;
//! 2. `allow`: keep only these fields (dot paths; arrays are transparent, so `items.id` keeps
//!    `id` in every element of `items`);
//! 3. `deny`: remove these fields (same paths);
//! 4. `rename`: give fields new names (`{ "address.city" = "town" }`); a renamed field
//!    replaces a field that already had the new name, in the renamed field's place;
//! 5. `collection`: wrap a top-level array as `{NAME: [...]}`; anything else fails.
//!
//! [`Shape::select`] runs 1–3 and [`Shape::finish`] 4–5, so a caller can read or edit the
//! document in between (composition stitches fan-out results there) under its original
//! field names. [`Shape::reach`] says statically whether a path can survive 1–3, for
//! load-time checks of references into a shaped document.

use std::borrow::Cow;

use super::node::{Key, Kind, Node};
use super::path::{FieldPath, Segment};
use super::JsonError;

/// The shaping options as configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShapeSpec<'c> {
    /// `target`.
    pub target: Option<&'c str>,
    /// `allow`.
    pub allow: &'c [String],
    /// `deny`.
    pub deny: &'c [String],
    /// `rename`: field path, new name.
    pub rename: &'c [(String, String)],
    /// `collection`: the key a top-level array goes under.
    pub collection: Option<&'c str>,
}

/// A problem with one shaping option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// Which option: `target`, `allow`, `deny`, `rename` or `collection`.
    pub option: &'static str,
    /// The entry of a list (`allow[2]`) or table (`rename` key), if the option is one.
    pub entry: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Why shaping a document failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// The document could not be read.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// `target` names nothing in the document.
    #[error("target `{0}` is not in the document")]
    TargetMissing(String),
    /// `collection` on a document that is not an array.
    #[error("`collection` expects an array")]
    NotAnArray,
}

/// Whether a field path can exist after `target`, `allow` and `deny`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// It may exist, with whatever value the document has.
    Kept,
    /// It may exist, but only as an object (or array) holding some allowed fields.
    Container,
    /// It cannot exist; the message says which option removes it.
    Removed(String),
}

/// Shaping operations compiled from a [`ShapeSpec`].
#[derive(Debug, Clone, Default)]
pub struct Shape {
    target: Option<FieldPath>,
    allow: Option<Trie>,
    deny: Option<Trie>,
    rename: Option<Trie>,
    collection: Option<Box<str>>,
}

/// Field names by path: children per key, whether a configured path ends here, and the
/// new name a rename gives the field here.
#[derive(Debug, Clone, Default)]
struct Trie {
    children: Vec<(Box<str>, Trie)>,
    leaf: bool,
    rename: Option<Box<str>>,
    /// The configured path that ends here (for messages).
    path: Option<Box<str>>,
}

impl Trie {
    fn child(&self, key: &str) -> Option<&Trie> {
        self.children
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, t)| t)
    }

    fn insert(&mut self, path: &FieldPath) -> &mut Trie {
        let mut node = self;
        for key in path.keys() {
            let i = match node.children.iter().position(|(k, _)| &**k == key) {
                Some(i) => i,
                None => {
                    node.children.push((key.into(), Trie::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[i].1;
        }
        node.leaf = true;
        node.path = Some(path.as_str().into());
        node
    }
}

impl Shape {
    /// Compiles the options, or says what is wrong with each bad one.
    pub fn compile(spec: &ShapeSpec<'_>) -> Result<Shape, Vec<SpecProblem>> {
        let mut problems = Vec::new();
        let target = spec.target.and_then(|t| match FieldPath::parse(t) {
            Ok(p) if p.is_single() => Some(p),
            Ok(_) => {
                problems.push(problem("target", None, "`[*]` cannot be a target".into()));
                None
            }
            Err(m) => {
                problems.push(problem("target", None, m));
                None
            }
        });
        let allow = field_trie("allow", spec.allow, &mut problems);
        let deny = field_trie("deny", spec.deny, &mut problems);
        let rename = rename_trie(spec.rename, &mut problems);
        let collection = spec.collection.map(Box::from);
        if collection.as_deref() == Some("") {
            problems.push(problem("collection", None, "must not be empty".into()));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Shape {
            target,
            allow,
            deny,
            rename,
            collection,
        })
    }

    /// Whether the shape leaves documents as they are (they can be spliced without parsing).
    pub fn is_identity(&self) -> bool {
        self.target.is_none()
            && self.allow.is_none()
            && self.deny.is_none()
            && self.rename.is_none()
            && self.collection.is_none()
    }

    /// Steps 1–3: `target`, `allow`, `deny`.
    pub fn select<'a>(&self, node: Node<'a>) -> Result<Node<'a>, ShapeError> {
        let node = match &self.target {
            None => node,
            Some(path) => node
                .take(path.segments())?
                .ok_or_else(|| ShapeError::TargetMissing(path.as_str().into()))?,
        };
        self.filter(node)
    }

    /// Steps 2–3 only (`allow`, `deny`), for values already cut out of a document (the
    /// elements of a batch answer).
    pub fn filter<'a>(&self, mut node: Node<'a>) -> Result<Node<'a>, ShapeError> {
        if let Some(trie) = &self.allow {
            allow(&mut node, trie)?;
        }
        if let Some(trie) = &self.deny {
            deny(&mut node, trie)?;
        }
        Ok(node)
    }

    /// Steps 4–5: `rename`, `collection`.
    pub fn finish<'a>(&'a self, mut node: Node<'a>) -> Result<Node<'a>, ShapeError> {
        if let Some(trie) = &self.rename {
            rename(&mut node, trie)?;
        }
        match &self.collection {
            None => Ok(node),
            Some(name) if node.kind() == Kind::Array => {
                Ok(Node::Object(vec![(Key::Text(Cow::Borrowed(name)), node)]))
            }
            Some(_) => Err(ShapeError::NotAnArray),
        }
    }

    /// Every step.
    pub fn apply<'a>(&'a self, node: Node<'a>) -> Result<Node<'a>, ShapeError> {
        self.finish(self.select(node)?)
    }

    /// The value `target` selects in `text` (the whole of it without a target), for lookups
    /// that must see what `select` would start from.
    pub fn targeted<'a>(&self, text: &'a str) -> Result<Option<Node<'a>>, JsonError> {
        match &self.target {
            None => Ok(Some(Node::Raw(text))),
            Some(path) => Node::Raw(text).take(path.segments()),
        }
    }

    /// Whether `path` (relative to the target) can exist after steps 1–3.
    pub fn reach(&self, path: &FieldPath) -> Reach {
        let keys: Vec<&str> = path.keys().collect();
        if let Some(deny) = &self.deny {
            let mut node = deny;
            for key in &keys {
                match node.child(key) {
                    None => break,
                    Some(child) if child.leaf => {
                        let by = child.path.as_deref().unwrap_or(key);
                        return Reach::Removed(format!("`deny` removes `{by}`"));
                    }
                    Some(child) => node = child,
                }
            }
        }
        let Some(allow) = &self.allow else {
            return Reach::Kept;
        };
        let mut node = allow;
        for key in &keys {
            match node.child(key) {
                Some(child) if child.leaf => return Reach::Kept,
                Some(child) => node = child,
                None => {
                    let kept: Vec<&str> = allowed_paths(allow);
                    return Reach::Removed(format!(
                        "`allow` keeps only {}",
                        kept.iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        if keys.is_empty() || !node.leaf {
            Reach::Container
        } else {
            Reach::Kept
        }
    }
}

fn allowed_paths(trie: &Trie) -> Vec<&str> {
    let mut out = Vec::new();
    fn walk<'t>(t: &'t Trie, out: &mut Vec<&'t str>) {
        if let Some(p) = &t.path {
            out.push(p);
        }
        for (_, c) in &t.children {
            walk(c, out);
        }
    }
    walk(trie, &mut out);
    out
}

fn problem(option: &'static str, entry: Option<String>, message: String) -> SpecProblem {
    SpecProblem {
        option,
        entry,
        message,
    }
}

/// A path usable in `allow`, `deny` and `rename`: keys and `[*]`, no indexes.
fn field_path(text: &str) -> Result<FieldPath, String> {
    let path = FieldPath::parse(text)?;
    if path
        .segments()
        .iter()
        .any(|s| matches!(s, Segment::Index(_)))
    {
        return Err(format!(
            "`{text}`: an index selects nothing here (arrays are transparent; use `[*]` or no brackets)"
        ));
    }
    if path.keys().next().is_none() {
        return Err(format!("`{text}` names no field"));
    }
    Ok(path)
}

fn field_trie(
    option: &'static str,
    paths: &[String],
    problems: &mut Vec<SpecProblem>,
) -> Option<Trie> {
    if paths.is_empty() {
        return None;
    }
    let mut trie = Trie::default();
    for (i, text) in paths.iter().enumerate() {
        match field_path(text) {
            Ok(path) => {
                trie.insert(&path);
            }
            Err(m) => problems.push(problem(option, Some(format!("[{i}]")), m)),
        }
    }
    Some(trie)
}

fn rename_trie(entries: &[(String, String)], problems: &mut Vec<SpecProblem>) -> Option<Trie> {
    if entries.is_empty() {
        return None;
    }
    let mut trie = Trie::default();
    let mut new_names: Vec<(Vec<String>, &str)> = Vec::new();
    for (from, to) in entries {
        let entry = Some(format!(".{from}"));
        let path = match field_path(from) {
            Ok(p) => p,
            Err(m) => {
                problems.push(problem("rename", entry, m));
                continue;
            }
        };
        if to.is_empty() || to.contains(['.', '[', ']']) {
            let m = format!("new name `{to}` must be one non-empty key (no `.`, `[`, `]`)");
            problems.push(problem("rename", entry, m));
            continue;
        }
        let parent: Vec<String> = {
            let keys: Vec<&str> = path.keys().collect();
            keys[..keys.len() - 1]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        if new_names
            .iter()
            .any(|(p, n)| *p == parent && *n == to.as_str())
        {
            let m = format!("two fields would be renamed to `{to}` in the same object");
            problems.push(problem("rename", entry, m));
            continue;
        }
        new_names.push((parent, to));
        trie.insert(&path).rename = Some(to.as_str().into());
    }
    Some(trie)
}

fn allow(node: &mut Node<'_>, trie: &Trie) -> Result<(), JsonError> {
    node.expand()?;
    match node {
        Node::Object(members) => {
            let mut failed = None;
            members.retain_mut(|(key, value)| {
                let Some(child) = trie.child(key.text()) else {
                    return false;
                };
                if child.leaf {
                    return true;
                }
                // An intermediate step: only a container can hold the allowed fields.
                if !matches!(value.kind(), Kind::Object | Kind::Array) {
                    return false;
                }
                if let Err(e) = allow(value, child) {
                    failed = Some(e);
                }
                true
            });
            failed.map_or(Ok(()), Err)
        }
        Node::Array(items) => items.iter_mut().try_for_each(|item| allow(item, trie)),
        Node::Raw(_) => Ok(()),
    }
}

fn deny(node: &mut Node<'_>, trie: &Trie) -> Result<(), JsonError> {
    node.expand()?;
    match node {
        Node::Object(members) => {
            let mut failed = None;
            members.retain_mut(|(key, value)| match trie.child(key.text()) {
                None => true,
                Some(child) if child.leaf => false,
                Some(child) => {
                    if let Err(e) = deny(value, child) {
                        failed = Some(e);
                    }
                    true
                }
            });
            failed.map_or(Ok(()), Err)
        }
        Node::Array(items) => items.iter_mut().try_for_each(|item| deny(item, trie)),
        Node::Raw(_) => Ok(()),
    }
}

fn rename<'a>(node: &mut Node<'a>, trie: &'a Trie) -> Result<(), JsonError> {
    node.expand()?;
    match node {
        Node::Object(members) => {
            // (member index, new name) of every renamed member.
            let mut renamed: Vec<(usize, &'a str)> = Vec::new();
            for (i, (key, value)) in members.iter_mut().enumerate() {
                let Some(child) = trie.child(key.text()) else {
                    continue;
                };
                if !child.children.is_empty() {
                    rename(value, child)?;
                }
                if let Some(new) = &child.rename {
                    *key = Key::Text(Cow::Borrowed(new));
                    renamed.push((i, new));
                }
            }
            if !renamed.is_empty() {
                // A renamed field wins over one that already had its new name (the first
                // renamed one, if the document repeated the old name).
                let mut i = 0;
                members.retain(|(key, _)| {
                    let index = i;
                    i += 1;
                    match renamed.iter().find(|(_, n)| *n == key.text()) {
                        None => true,
                        Some(&(winner, _)) => winner == index,
                    }
                });
            }
            Ok(())
        }
        Node::Array(items) => items.iter_mut().try_for_each(|item| rename(item, trie)),
        Node::Raw(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::write;

    fn shape(spec: ShapeSpec<'_>) -> Shape {
        Shape::compile(&spec).expect("valid spec")
    }

    fn apply(shape: &Shape, doc: &str) -> Result<String, ShapeError> {
        let node = shape.apply(Node::new(doc))?;
        let mut out = Vec::new();
        write(&node, &mut out);
        Ok(String::from_utf8(out).expect("UTF-8"))
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const USER: &str = r#"{"id": 7, "name": "Ada", "email": "a@x", "segment": "gold",
        "address": {"city": "Paris", "zip": "75001"}, "orders": [{"id": 1, "sku": "a"}, {"id": 2, "sku": "b"}]}"#;

    #[test]
    fn allow_keeps_dot_paths_through_arrays() {
        let allow = strings(&["id", "address.city", "orders.sku"]);
        let s = shape(ShapeSpec {
            allow: &allow,
            ..Default::default()
        });
        assert_eq!(
            apply(&s, USER).expect("ok"),
            r#"{"id":7,"address":{"city":"Paris"},"orders":[{"sku":"a"},{"sku":"b"}]}"#
        );
    }

    #[test]
    fn deny_removes_dot_paths_through_arrays() {
        let deny = strings(&["email", "address.zip", "orders[*].id", "segment", "name"]);
        let s = shape(ShapeSpec {
            deny: &deny,
            ..Default::default()
        });
        assert_eq!(
            apply(&s, USER).expect("ok"),
            r#"{"id":7,"address":{"city":"Paris"},"orders":[{"sku":"a"},{"sku":"b"}]}"#
        );
    }

    #[test]
    fn rename_nested_and_replacing_an_existing_name() {
        let rename = vec![
            ("segment".to_string(), "tier".to_string()),
            ("address.city".to_string(), "town".to_string()),
            ("email".to_string(), "name".to_string()),
        ];
        let allow = strings(&["name", "email", "segment", "address.city"]);
        let s = shape(ShapeSpec {
            allow: &allow,
            rename: &rename,
            ..Default::default()
        });
        assert_eq!(
            apply(&s, USER).expect("ok"),
            r#"{"name":"a@x","tier":"gold","address":{"town":"Paris"}}"#
        );
    }

    #[test]
    fn target_and_collection() {
        let s = shape(ShapeSpec {
            target: Some("data.items"),
            collection: Some("items"),
            ..Default::default()
        });
        assert_eq!(
            apply(&s, r#"{"data": {"items": [1, 2]}}"#).expect("ok"),
            r#"{"items":[1, 2]}"#
        );
        assert_eq!(
            apply(&s, r#"{"data": {}}"#),
            Err(ShapeError::TargetMissing("data.items".into()))
        );
        assert_eq!(
            apply(&s, r#"{"data": {"items": {}}}"#),
            Err(ShapeError::NotAnArray)
        );
    }

    #[test]
    fn identity_when_nothing_is_configured() {
        assert!(shape(ShapeSpec::default()).is_identity());
        let allow = strings(&["a"]);
        assert!(!shape(ShapeSpec {
            allow: &allow,
            ..Default::default()
        })
        .is_identity());
    }

    #[test]
    fn reach_tells_what_can_exist() {
        let allow = strings(&["id", "address.city", "orders.sku"]);
        let deny = strings(&["orders.sku"]);
        let s = shape(ShapeSpec {
            allow: &allow,
            deny: &deny,
            ..Default::default()
        });
        let reach = |p: &str| s.reach(&FieldPath::parse(p).expect("valid"));
        assert_eq!(reach("id"), Reach::Kept);
        assert_eq!(reach("address.city"), Reach::Kept);
        assert_eq!(reach("address"), Reach::Container);
        assert!(matches!(reach("email"), Reach::Removed(m) if m.contains("`allow` keeps only")));
        assert!(matches!(reach("orders[*].sku"), Reach::Removed(m) if m.contains("deny")));
        assert_eq!(
            shape(ShapeSpec::default()).reach(&FieldPath::parse("x").expect("valid")),
            Reach::Kept
        );
    }

    #[test]
    fn refuses_bad_options() {
        let allow = strings(&["a[0]", "ok", ""]);
        let rename = vec![
            ("a".to_string(), "x".to_string()),
            ("b".to_string(), "x".to_string()),
            ("c".to_string(), "d.e".to_string()),
        ];
        let problems = Shape::compile(&ShapeSpec {
            target: Some("a[*]"),
            allow: &allow,
            rename: &rename,
            ..Default::default()
        })
        .expect_err("invalid");
        let found: Vec<(&str, Option<&str>)> = problems
            .iter()
            .map(|p| (p.option, p.entry.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                ("target", None),
                ("allow", Some("[0]")),
                ("allow", Some("[2]")),
                ("rename", Some(".b")),
                ("rename", Some(".c")),
            ]
        );
    }

    #[test]
    fn malformed_documents_fail() {
        let s = shape(ShapeSpec {
            deny: &strings(&["a"]),
            ..Default::default()
        });
        // Raw nodes are trusted to be checked; an unchecked bad one is still an error, not a panic.
        assert!(apply(&s, "{\"a\": }").is_err());
    }
}
