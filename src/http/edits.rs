//! Field edits a stage makes to a relayed head: fields removed by name and complete field
//! lines added. The request writer applies them to the forwarded request (e.g. the cache's
//! conditional revalidation), the response writer to the client's head (e.g. the cache's tag
//! field removed, a compressor's `Content-Encoding` added).
//!
//! One `HeadEdits` is owned by a connection and cleared per message: once its buffers have
//! grown to their working size, editing allocates nothing.

use super::headers::trim_ows;
use super::HeaderSpan;

/// Fields removed from and added to one head.
#[derive(Debug, Default, Clone)]
pub struct HeadEdits {
    /// Lower-case names of removed fields, each followed by `\n`.
    removed: Vec<u8>,
    /// Complete field lines (`Name: value\r\n`) added after the relayed fields.
    added: Vec<u8>,
    /// Tokens merged into the head's `Vary` (`Origin`, `Accept-Encoding`), comma-separated:
    /// the relayed `Vary` fields become one field listing theirs and these, each once.
    vary: Vec<u8>,
}

impl HeadEdits {
    /// No edits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every edit (keeps the buffers).
    pub fn clear(&mut self) {
        self.removed.clear();
        self.added.clear();
        self.vary.clear();
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty() && self.vary.is_empty()
    }

    /// Merges `token` (a field name) into the head's `Vary`: the response says it depends
    /// on that request field, without a second `Vary` field and without repeating a name the
    /// upstream listed; `Vary: *` stays as it is.
    pub fn merge_vary(&mut self, token: &[u8]) {
        if !list_has(&self.vary, token) {
            if !self.vary.is_empty() {
                self.vary.extend_from_slice(b", ");
            }
            self.vary.extend_from_slice(token);
        }
    }

    /// Whether the relayed `Vary` fields are replaced by a merged one.
    pub fn merges_vary(&self) -> bool {
        !self.vary.is_empty()
    }

    /// Appends the merged `Vary` field line: the relayed `Vary` values of `headers` (spans
    /// into `buf`), then each merged token they do not list; `Vary: *` if they list `*`.
    pub fn write_vary(&self, out: &mut Vec<u8>, buf: &[u8], headers: &[HeaderSpan]) {
        let relayed = || {
            headers
                .iter()
                .filter(|h| h.name.of(buf).eq_ignore_ascii_case(b"vary"))
                .map(|h| h.value.of(buf))
        };
        if relayed().any(|v| list_has(v, b"*")) {
            out.extend_from_slice(b"Vary: *\r\n");
            return;
        }
        out.extend_from_slice(b"Vary: ");
        let mut first = true;
        for element in relayed().flat_map(elements) {
            if !first {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(element);
            first = false;
        }
        for token in elements(&self.vary) {
            if !relayed().any(|v| list_has(v, token)) {
                if !first {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(token);
                first = false;
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Removes every field named `name` (ASCII case-insensitive) from the relayed head.
    pub fn remove(&mut self, name: &[u8]) {
        if !self.removes(name) {
            self.removed.extend(name.iter().map(u8::to_ascii_lowercase));
            self.removed.push(b'\n');
        }
    }

    /// Adds the field `name: value` after the relayed ones. Values with CR, LF or NUL are
    /// refused (response splitting): returns whether the field was added.
    pub fn add(&mut self, name: &[u8], value: &[u8]) -> bool {
        if name
            .iter()
            .chain(value)
            .any(|&b| matches!(b, b'\r' | b'\n' | 0))
        {
            return false;
        }
        self.added.extend_from_slice(name);
        self.added.extend_from_slice(b": ");
        self.added.extend_from_slice(value);
        self.added.extend_from_slice(b"\r\n");
        true
    }

    /// Adds every edit of `other` to these.
    pub fn extend_from(&mut self, other: &HeadEdits) {
        self.removed.extend_from_slice(&other.removed);
        self.added.extend_from_slice(&other.added);
        for token in elements(&other.vary) {
            self.merge_vary(token);
        }
    }

    /// Whether fields named `name` are removed.
    pub fn removes(&self, name: &[u8]) -> bool {
        !self.removed.is_empty()
            && self
                .removed
                .split(|&b| b == b'\n')
                .any(|r| !r.is_empty() && r.eq_ignore_ascii_case(name))
    }

    /// The added field lines, each ending in CRLF.
    pub fn added(&self) -> &[u8] {
        &self.added
    }

    /// The added fields as `(name, value)` pairs.
    pub fn added_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        lines(&self.added)
    }

    /// The fields of a head after these edits: the relayed fields of `headers` (spans into
    /// `buf`) that are not removed, then the added ones. A merged `Vary` (see
    /// [`HeadEdits::merge_vary`]) is not among them: [`HeadEdits::write_vary`] writes it.
    pub fn fields<'a>(
        &'a self,
        buf: &'a [u8],
        headers: &'a [HeaderSpan],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        headers
            .iter()
            .map(move |h| (h.name.of(buf), h.value.of(buf)))
            .filter(move |(name, _)| !self.removes(name))
            .chain(self.added_fields())
    }
}

/// The non-empty elements of a comma-separated list, trimmed.
fn elements(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Whether the comma-separated `list` has `token` (ASCII case-insensitive).
fn list_has(list: &[u8], token: &[u8]) -> bool {
    elements(list).any(|e| e.eq_ignore_ascii_case(token))
}

/// `(name, value)` of each `Name: value\r\n` line of `block`.
pub fn lines(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    block.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], trim_ows(&line[colon + 1..])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Span;

    #[test]
    fn removed_names_match_case_insensitively_and_once() {
        let mut e = HeadEdits::new();
        e.remove(b"Surrogate-Key");
        e.remove(b"surrogate-key");
        assert!(e.removes(b"SURROGATE-KEY"));
        assert!(!e.removes(b"surrogate"));
        assert_eq!(e.removed, b"surrogate-key\n");
    }

    #[test]
    fn added_fields_refuse_line_breaks() {
        let mut e = HeadEdits::new();
        assert!(e.add(b"Cache-Status", b"ringgate; hit"));
        assert!(!e.add(b"X", b"a\r\nInjected: 1"));
        assert_eq!(e.added(), b"Cache-Status: ringgate; hit\r\n");
        let fields: Vec<_> = e.added_fields().collect();
        assert_eq!(fields, vec![(&b"Cache-Status"[..], &b"ringgate; hit"[..])]);
    }

    /// `(buf, headers)` of a head with the given field lines.
    fn head(lines: &[&str]) -> (Vec<u8>, Vec<HeaderSpan>) {
        let mut buf = Vec::new();
        let mut headers = Vec::new();
        for line in lines {
            let (name, _) = line.split_once(": ").expect("line");
            let at = |n: usize| u32::try_from(n).expect("small");
            let start = buf.len();
            buf.extend_from_slice(line.as_bytes());
            buf.extend_from_slice(b"\r\n");
            headers.push(HeaderSpan {
                name: Span {
                    start: at(start),
                    end: at(start + name.len()),
                },
                value: Span {
                    start: at(start + name.len() + 2),
                    end: at(start + line.len()),
                },
            });
        }
        (buf, headers)
    }

    fn merged(lines: &[&str], tokens: &[&[u8]]) -> String {
        let (buf, headers) = head(lines);
        let mut e = HeadEdits::new();
        for t in tokens {
            e.merge_vary(t);
        }
        let mut out = Vec::new();
        e.write_vary(&mut out, &buf, &headers);
        String::from_utf8(out).expect("text")
    }

    #[test]
    fn vary_is_merged_into_one_field_without_repeats() {
        assert_eq!(merged(&[], &[b"Origin"]), "Vary: Origin\r\n");
        assert_eq!(
            merged(
                &["Vary: Accept-Encoding", "Vary: origin, Cookie"],
                &[b"Origin"]
            ),
            "Vary: Accept-Encoding, origin, Cookie\r\n"
        );
        assert_eq!(
            merged(
                &["Vary: Accept"],
                &[b"Origin", b"Accept-Encoding", b"origin"]
            ),
            "Vary: Accept, Origin, Accept-Encoding\r\n"
        );
        assert_eq!(merged(&["Vary: *"], &[b"Origin"]), "Vary: *\r\n");
    }

    #[test]
    fn edited_fields_skip_removed_and_end_with_added() {
        let buf = b"A: 1\r\nB: 2\r\n";
        let headers = [
            HeaderSpan {
                name: Span { start: 0, end: 1 },
                value: Span { start: 3, end: 4 },
            },
            HeaderSpan {
                name: Span { start: 6, end: 7 },
                value: Span { start: 9, end: 10 },
            },
        ];
        let mut e = HeadEdits::new();
        e.remove(b"a");
        e.add(b"C", b"3");
        let fields: Vec<_> = e.fields(buf, &headers).collect();
        assert_eq!(fields, vec![(&b"B"[..], &b"2"[..]), (&b"C"[..], &b"3"[..])]);
    }
}
