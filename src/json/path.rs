//! Field paths: `address.city`, `items[*].id`, `items[0].sku`, `[*].id`.
//!
//! Keys are separated by `.`; `[*]` stands for every element of an array and `[N]` for one.
//! A key cannot contain `.`, `[` or `]`. Operations that descend treat arrays as transparent
//! (a key applied to an array applies to each element), so `items.id` and `items[*].id` name
//! the same fields; `[*]` is there to say so explicitly and `[N]` to pick one element.

use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object member.
    Key(Box<str>),
    /// One array element.
    Index(usize),
    /// Every array element.
    Each,
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: Box<str>,
    segments: Vec<Segment>,
}

impl FieldPath {
    /// Parses `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut rest = text;
        let mut expect_key = true;
        if rest.is_empty() {
            return Err("empty field path".into());
        }
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
                let inner = &after[..end];
                segments.push(match inner {
                    "*" => Segment::Each,
                    n => {
                        Segment::Index(n.parse().map_err(|_| {
                            format!("`{text}`: `[{n}]` is neither `[*]` nor an index")
                        })?)
                    }
                });
                rest = &after[end + 1..];
                expect_key = false;
                if let Some(after_dot) = rest.strip_prefix('.') {
                    rest = after_dot;
                    expect_key = true;
                    if rest.is_empty() {
                        return Err(format!("`{text}` ends with `.`"));
                    }
                }
                continue;
            }
            if !expect_key {
                return Err(format!("`{text}`: expected `.` or `[` after `]`"));
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let key = &rest[..end];
            if key.is_empty() {
                return Err(format!("`{text}` has an empty key"));
            }
            if key.contains(']') {
                return Err(format!("`{text}`: `]` without `[`"));
            }
            segments.push(Segment::Key(key.into()));
            rest = &rest[end..];
            expect_key = false;
            if let Some(after_dot) = rest.strip_prefix('.') {
                rest = after_dot;
                expect_key = true;
                if rest.is_empty() {
                    return Err(format!("`{text}` ends with `.`"));
                }
            }
        }
        Ok(Self {
            text: text.into(),
            segments,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The steps, in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Only the keys, in order (what the path names when arrays are transparent).
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Key(k) => Some(&**k),
            _ => None,
        })
    }

    /// Whether the path picks single elements only (no `[*]`).
    pub fn is_single(&self) -> bool {
        !self.segments.contains(&Segment::Each)
    }

    /// The path without its last segment, and that segment; `None` for a one-step path.
    pub fn split_last(&self) -> Option<(FieldPath, &Segment)> {
        let (last, init) = self.segments.split_last()?;
        if init.is_empty() {
            return None;
        }
        let text = render(init);
        Some((
            FieldPath {
                text: text.into(),
                segments: init.to_vec(),
            },
            last,
        ))
    }

    /// The path after its first `n` segments (an empty path when `n` covers it all).
    pub fn skip(&self, n: usize) -> Vec<Segment> {
        self.segments.get(n..).unwrap_or_default().to_vec()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Writes `segments` back in path syntax.
fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Each => out.push_str("[*]"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<String> {
        FieldPath::parse(text)
            .expect("valid")
            .keys()
            .map(String::from)
            .collect()
    }

    #[test]
    fn parses_keys_indexes_and_wildcards() {
        let p = FieldPath::parse("orders.items[*].sku").expect("valid");
        assert_eq!(
            p.segments(),
            [
                Segment::Key("orders".into()),
                Segment::Key("items".into()),
                Segment::Each,
                Segment::Key("sku".into())
            ]
        );
        assert_eq!(keys("a[0].b"), ["a", "b"]);
        assert_eq!(
            FieldPath::parse("[*].id").expect("valid").segments()[0],
            Segment::Each
        );
        assert_eq!(
            FieldPath::parse("ids[*]").expect("valid").segments().len(),
            2
        );
        assert!(!FieldPath::parse("a[*]").expect("valid").is_single());
        assert!(FieldPath::parse("a[2].b").expect("valid").is_single());
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in [
            "", "a.", ".a", "a..b", "a[", "a[x]", "a[*]b", "a]b", "a[1].",
        ] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn splits_off_the_last_segment() {
        let p = FieldPath::parse("orders.items[*].sku").expect("valid");
        let (init, last) = p.split_last().expect("two or more steps");
        assert_eq!(init.as_str(), "orders.items[*]");
        assert_eq!(last, &Segment::Key("sku".into()));
        assert!(FieldPath::parse("a").expect("valid").split_last().is_none());
    }
}
