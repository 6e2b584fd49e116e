//! JSON shaping (`src/json`): well-formedness check, the lazy tree, field paths, shapes and
//! serialization.
//!
//! Input: lines of a shape spec (`t:PATH` target, `a:PATH` allow, `d:PATH` deny,
//! `r:FROM=TO` rename, `c:NAME` collection, `p:PATH` a path to look up), an empty line, then
//! the document. No panic. A field path that parses prints as it was written and parses
//! again to itself. A checked document, fully expanded and written, is the same JSON value
//! as the input; whatever a shape leaves is written as well-formed JSON whose length
//! [`encoded_len`] knew before.

use ringgate::json::{check, encoded_len, write, FieldPath, Node, Shape, ShapeSpec};

pub fn run(data: &[u8]) {
    let (spec, doc) = split(data);
    let Ok(spec) = std::str::from_utf8(spec) else {
        return;
    };
    let mut lines = Spec::default();
    for line in spec.lines() {
        lines.add(line);
    }
    for path in &lines.paths {
        check_path(path);
    }
    let Ok(text) = check(doc) else {
        return;
    };
    round_trip(text);
    for path in lines.paths.iter().filter_map(|p| FieldPath::parse(p).ok()) {
        if let Ok(found) = Node::collect(text, path.segments()) {
            for raw in found {
                assert!(
                    check(raw.as_bytes()).is_ok(),
                    "collected `{raw}` is not JSON"
                );
                let _ = Node::scalar_text(raw);
            }
        }
    }
    let shape_spec = ShapeSpec {
        target: lines.target.as_deref(),
        allow: &lines.allow,
        deny: &lines.deny,
        rename: &lines.rename,
        collection: lines.collection.as_deref(),
    };
    if let Ok(shape) = Shape::compile(&shape_spec) {
        for path in lines.paths.iter().filter_map(|p| FieldPath::parse(p).ok()) {
            let _ = shape.reach(&path);
        }
        if let Ok(node) = shape.apply(Node::new(text)) {
            assert_writes_json(&node);
        }
        if let Ok(Some(node)) = shape.targeted(text) {
            assert_writes_json(&node);
        }
    }
}

/// The spec (before the first empty line) and the document (after it); no empty line: all
/// document.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&[], data),
    }
}

#[derive(Default)]
struct Spec {
    target: Option<String>,
    allow: Vec<String>,
    deny: Vec<String>,
    rename: Vec<(String, String)>,
    collection: Option<String>,
    paths: Vec<String>,
}

impl Spec {
    fn add(&mut self, line: &str) {
        let Some((kind, rest)) = line.split_once(':') else {
            return;
        };
        let rest = rest.to_string();
        match kind {
            "t" => self.target = Some(rest),
            "a" => self.allow.push(rest),
            "d" => self.deny.push(rest),
            "r" => {
                if let Some((from, to)) = rest.split_once('=') {
                    self.rename.push((from.into(), to.into()));
                }
            }
            "c" => self.collection = Some(rest),
            "p" => self.paths.push(rest),
            _ => {}
        }
    }
}

fn check_path(text: &str) {
    if let Ok(path) = FieldPath::parse(text) {
        assert_eq!(path.as_str(), text);
        assert_eq!(path.to_string(), text);
        assert!(!path.segments().is_empty());
        let again = FieldPath::parse(path.as_str()).expect("a parsed path parses again");
        assert_eq!(again, path);
        if let Some((init, _)) = path.split_last() {
            let reparsed = FieldPath::parse(init.as_str()).expect("a path's prefix parses");
            assert_eq!(reparsed.segments(), init.segments());
        }
        assert!(path.skip(path.segments().len() + 1).is_empty());
    }
}

/// Every level expanded, then written: the same JSON value.
fn round_trip(text: &str) {
    let mut node = Node::new(text);
    expand_all(&mut node, 0);
    let out = assert_writes_json(&node);
    let before = serde_json::from_str::<serde_json::Value>(text);
    let after = serde_json::from_slice::<serde_json::Value>(&out);
    match (before, after) {
        (Ok(before), Ok(after)) => {
            assert_eq!(before, after, "expanding and writing changed the document")
        }
        // RFC 8259 sets no range on numbers and the gateway keeps them as written;
        // serde_json refuses one beyond f64 (`2E300000`): the written document must still
        // carry it.
        (Err(before), Err(after)) if is_range(&before) && is_range(&after) => {}
        // RFC 8259 §8.2: the grammar allows a `\u` escape of a lone UTF-16 surrogate
        // (`"\uDDDD"`); the gateway keeps escapes as written, serde_json refuses them:
        // the written document must carry it still.
        (Err(before), Err(after)) if is_surrogate(&before) && is_surrogate(&after) => {}
        (before, after) => panic!("checked JSON {before:?}, written JSON {after:?}"),
    }
}

fn is_range(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("number out of range")
}

/// serde_json's refusals of an unpaired surrogate escape.
fn is_surrogate(e: &serde_json::Error) -> bool {
    let text = e.to_string();
    text.starts_with("lone leading surrogate in hex escape")
        || text.starts_with("unexpected end of hex escape")
}

fn expand_all(node: &mut Node<'_>, depth: usize) {
    if depth > 64 || node.expand().is_err() {
        return;
    }
    match node {
        Node::Object(members) => members
            .iter_mut()
            .for_each(|(_, v)| expand_all(v, depth + 1)),
        Node::Array(items) => items.iter_mut().for_each(|v| expand_all(v, depth + 1)),
        Node::Raw(_) => {}
    }
}

fn assert_writes_json(node: &Node<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write(node, &mut out);
    assert_eq!(
        out.len(),
        encoded_len(node),
        "encoded_len disagrees with write"
    );
    assert!(
        check(&out).is_ok(),
        "written JSON is not well-formed: {}",
        String::from_utf8_lossy(&out)
    );
    out
}
