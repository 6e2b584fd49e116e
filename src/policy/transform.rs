//! `kind = "transform"`: reshaping a route's requests and responses — header fields, query
//! parameters and JSON body fields, each side configured on its own (`request`, `response`).
//!
//! Every list of operations runs in one fixed order, each operation on what the previous
//! ones left:
//!
//! ```text
//! remove ─▶ rename ─▶ set ─▶ add ─▶ append
//! ```
//!
//! - `remove`: every field of that name goes (a JSON path ending in `*` empties the object or
//!   array it names: `internal.*`);
//! - `rename`: every field of the old name takes the new one, replacing fields that already
//!   had it (a renamed JSON member keeps its place);
//! - `set`: the field ends up with exactly this one value: the first field of that name
//!   takes it, the others go; absent, it is appended (JSON: missing parent objects are
//!   created);
//! - `add`: only if no field of that name is left (headers and query only);
//! - `append`: always one more field, even if the name is present (headers and query only).
//!
//! Values are templates (`{consumer}`, `{request_id}`, `{client_ip}`, `{route}`,
//! `{header.NAME}` of the client's request, and route parameters by name), rendered once per
//! request. When a template lacks a value (no consumer, no such header), a header or query
//! `set` removes the field instead, so a client can never supply a field the gateway sets
//! (no `X-Consumer-Name` of its own choosing on an unauthenticated request); `add`, `append`
//! and JSON `set` are skipped. A route parameter is never missing: every route using the policy must capture
//! the ones its templates name (checked when the configuration loads). JSON paths are the project's field paths (`crate::json`): arrays are
//! transparent, so `password` on a top-level array removes it from every element.
//!
//! This module holds the compiled policy and the pure operations; `proxy::transform` applies
//! them to a request and its response.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::compose::template::{Source, Template};
use crate::http::HeaderSpan;
use crate::json::{check, FieldPath, JsonError, Key, Node, Segment};

use super::PathParams;

/// A compiled `transform` policy.
#[derive(Debug)]
pub struct Transform {
    /// The policy's name.
    pub name: String,
    /// What changes in the request before it goes upstream.
    pub request: Side,
    /// What changes in the upstream's response before the client gets it.
    pub response: Side,
    /// How bodies are read for the JSON operations.
    pub body: BodyRules,
    /// The route parameters its templates name, for the configuration's check that every
    /// route using the policy captures them.
    pub params: Vec<ParamUse>,
}

/// A route parameter named by one of a policy's templates, and where that template is in
/// the configuration.
#[derive(Debug, Clone)]
pub struct ParamUse {
    /// The parameter (`id` of `{id}`).
    pub name: Box<str>,
    /// The template's key (`policies.NAME.request.set_headers.X-Id`).
    pub key: String,
    /// The template's span in the configuration text.
    pub span: std::ops::Range<usize>,
}

/// How JSON bodies are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRules {
    /// Largest body transformed (`max_body_bytes`, default 1 MiB; decoded size for a
    /// compressed response).
    pub max_bytes: u64,
    /// A larger body (`on_oversize`).
    pub on_oversize: OnBody,
    /// A body whose `Content-Type` is not JSON, or whose coding is not decodable
    /// (`on_non_json`).
    pub on_non_json: OnBody,
    /// A JSON body that does not parse (`on_malformed`).
    pub on_malformed: OnBody,
}

/// What happens to a body the JSON operations cannot apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBody {
    /// It goes on unchanged.
    Pass,
    /// The request is refused (413, 415 or 400) or the response answered 502.
    Refuse,
}

/// One side's operations.
#[derive(Debug, Default)]
pub struct Side {
    /// Header fields (names compared ASCII case-insensitively).
    pub headers: FieldOps,
    /// Query parameters (request side only; names compared exactly, in their encoded form).
    pub query: FieldOps,
    /// JSON body fields.
    pub json: JsonOps,
}

impl Side {
    /// Whether this side changes nothing.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.query.is_empty() && self.json.is_empty()
    }
}

/// Operations on named fields (headers, query parameters), in the fixed order.
#[derive(Debug, Default)]
pub struct FieldOps {
    /// Names removed.
    pub remove: Vec<Box<str>>,
    /// `(old, new)` names.
    pub rename: Vec<(Box<str>, Box<str>)>,
    /// Fields set to one value.
    pub set: Vec<(Box<str>, Template)>,
    /// Fields added when absent.
    pub add: Vec<(Box<str>, Template)>,
    /// Fields always appended.
    pub append: Vec<(Box<str>, Template)>,
}

/// One field: name and value, borrowed from the message, the configuration or the rendered
/// values.
pub type Field<'a> = (&'a [u8], &'a [u8]);

/// The rendered value templates of one list of operations (see [`FieldOps::templates`]):
/// the texts in one buffer, each template's a range of it. Kept by the connection, so that
/// rendering reuses its buffers from request to request.
#[derive(Debug, Default, Clone)]
pub struct Rendered {
    text: Vec<u8>,
    /// Each template's range of `text`; `None`: a value was missing.
    spans: Vec<Option<std::ops::Range<usize>>>,
}

impl Rendered {
    /// Renders the templates of `ops` from `vars`, replacing what was held.
    pub fn render(&mut self, vars: &Vars<'_>, ops: &FieldOps) {
        self.clear();
        for template in ops.templates() {
            let start = self.text.len();
            let span = match vars.render_into(template, &mut self.text) {
                Some(()) => Some(start..self.text.len()),
                None => {
                    self.text.truncate(start);
                    None
                }
            };
            self.spans.push(span);
        }
    }

    /// Appends one value (`None`: missing).
    pub fn push(&mut self, value: Option<&[u8]>) {
        let span = value.map(|v| {
            let start = self.text.len();
            self.text.extend_from_slice(v);
            start..self.text.len()
        });
        self.spans.push(span);
    }

    /// Appends one value percent-encoded for a query (`None`: missing).
    pub fn push_encoded(&mut self, value: Option<&[u8]>) {
        let span = value.map(|v| {
            let start = self.text.len();
            crate::compose::template::encode_bytes_into(
                &String::from_utf8_lossy(v),
                &mut self.text,
            );
            start..self.text.len()
        });
        self.spans.push(span);
    }

    /// Forgets the values (keeps the buffers).
    pub fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
    }

    /// The values in order (`None`: missing).
    pub fn values(&self) -> impl Iterator<Item = Option<&[u8]>> {
        self.spans
            .iter()
            .map(|span| span.clone().map(|range| &self.text[range]))
    }
}

/// Hands the allocation of an empty field list on as a list of another lifetime: the
/// connection keeps one `Vec<Field<'static>>` (always empty between requests) and each
/// request's edit borrows it for its own fields. Collecting an emptied vector's iterator
/// into a vector of the same layout reuses its allocation (`tests/policy_alloc.rs` fails if
/// it stops doing so).
#[allow(
    clippy::unnecessary_filter_map,
    reason = "`filter` cannot change the element's lifetime; nothing is left to filter"
)]
pub fn reuse_fields<'a, 'b>(mut fields: Vec<Field<'a>>) -> Vec<Field<'b>> {
    fields.clear();
    fields.into_iter().filter_map(|_| None).collect()
}

impl FieldOps {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    /// Every name an operation touches (old and new names of renames included).
    pub fn touched(&self) -> impl Iterator<Item = &str> {
        self.remove
            .iter()
            .map(|n| &**n)
            .chain(self.rename.iter().flat_map(|(a, b)| [&**a, &**b]))
            .chain(
                self.set
                    .iter()
                    .chain(&self.add)
                    .chain(&self.append)
                    .map(|(n, _)| &**n),
            )
    }

    /// The value templates in the order [`FieldOps::apply`] consumes them (set, add, append).
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.set
            .iter()
            .chain(&self.add)
            .chain(&self.append)
            .map(|(_, t)| t)
    }

    /// Runs the operations on `fields` in the fixed order; `values` are the rendered
    /// templates (see [`FieldOps::templates`]; a missing value skips its operation) and
    /// `same` says whether two names are the same field.
    pub fn apply<'a>(
        &'a self,
        fields: &mut Vec<Field<'a>>,
        values: &'a Rendered,
        same: fn(&[u8], &[u8]) -> bool,
    ) {
        let named = |name: &'a str| move |f: &Field<'_>| same(f.0, name.as_bytes());
        for name in &self.remove {
            fields.retain(|f| !named(name)(f));
        }
        for (from, to) in &self.rename {
            if !fields.iter().any(named(from)) || same(from.as_bytes(), to.as_bytes()) {
                continue;
            }
            fields.retain(|f| !named(to)(f));
            for f in fields.iter_mut().filter(|f| same(f.0, from.as_bytes())) {
                f.0 = to.as_bytes();
            }
        }
        let mut values = values.values();
        let mut next = || values.next().flatten();
        for (name, _) in &self.set {
            let Some(value) = next() else {
                fields.retain(|f| !named(name)(f));
                continue;
            };
            let field = (name.as_bytes(), value);
            match fields.iter().position(named(name)) {
                Some(first) => {
                    fields[first] = field;
                    let mut i = 0;
                    fields.retain(|f| {
                        i += 1;
                        i - 1 == first || !named(name)(f)
                    });
                }
                None => fields.push(field),
            }
        }
        for (name, _) in &self.add {
            let Some(value) = next() else { continue };
            if !fields.iter().any(named(name)) {
                fields.push((name.as_bytes(), value));
            }
        }
        for (name, _) in &self.append {
            let Some(value) = next() else { continue };
            fields.push((name.as_bytes(), value));
        }
    }
}

/// Header names are compared ASCII case-insensitively.
pub fn same_header(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Query parameter names are compared exactly.
pub fn same_param(a: &[u8], b: &[u8]) -> bool {
    a == b
}

/// Operations on JSON body fields, in the fixed order (remove, rename, set).
#[derive(Debug, Default)]
pub struct JsonOps {
    /// Paths removed (a last segment `*` empties the object or array).
    pub remove: Vec<FieldPath>,
    /// `(path, new member name)`.
    pub rename: Vec<(FieldPath, Box<str>)>,
    /// `(path, value)`.
    pub set: Vec<(FieldPath, JsonValue)>,
}

/// The value a JSON `set` writes.
#[derive(Debug, Clone)]
pub enum JsonValue {
    /// A number or boolean from the configuration, as JSON text.
    Literal(Box<str>),
    /// A string template; the rendered text is written as a JSON string.
    Text(Template),
}

impl JsonOps {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.rename.is_empty() && self.set.is_empty()
    }

    /// The `set` values rendered as JSON text, in order (`None`: a template value is missing).
    pub fn render(&self, vars: &Vars<'_>) -> Vec<Option<String>> {
        self.set
            .iter()
            .map(|(_, value)| match value {
                JsonValue::Literal(text) => Some(text.to_string()),
                JsonValue::Text(template) => {
                    let text = vars.render(template)?;
                    let mut out = Vec::with_capacity(text.len() + 2);
                    crate::json::write_str(&String::from_utf8_lossy(&text), &mut out);
                    String::from_utf8(out).ok()
                }
            })
            .collect()
    }

    /// Applies the operations to the JSON document `body`, writing the result to `out`;
    /// `values` are [`JsonOps::render`]'s.
    pub fn apply(
        &self,
        body: &[u8],
        values: &[Option<String>],
        out: &mut Vec<u8>,
    ) -> Result<(), JsonError> {
        let text = check(body)?;
        let mut root = Node::new(text);
        for path in &self.remove {
            if let Some((parent, last)) = split(path) {
                on_parents(&mut root, parent, &mut |node| remove_member(node, last))?;
            }
        }
        for (path, to) in &self.rename {
            if let Some((parent, Segment::Key(from))) = split(path) {
                on_parents(&mut root, parent, &mut |node| rename_member(node, from, to))?;
            }
        }
        for ((path, _), value) in self.set.iter().zip(values) {
            if let Some(value) = value {
                set_at(&mut root, path.segments(), &Node::Raw(value))?;
            }
        }
        crate::json::write(&root, out);
        Ok(())
    }
}

fn split(path: &FieldPath) -> Option<(&[Segment], &Segment)> {
    let (last, parent) = path.segments().split_last()?;
    Some((parent, last))
}

/// Calls `f` on every node `parent` reaches; a key path applied to an array applies to
/// each element (arrays are transparent).
fn on_parents<'a>(
    root: &mut Node<'a>,
    parent: &[Segment],
    f: &mut dyn FnMut(&mut Node<'a>) -> Result<(), JsonError>,
) -> Result<(), JsonError> {
    root.for_each_mut(parent, f)
}

/// Removes `last` from `node` (each element's, for an array and a key).
fn remove_member(node: &mut Node<'_>, last: &Segment) -> Result<(), JsonError> {
    node.expand()?;
    match (last, node) {
        (Segment::Key(k), Node::Object(members)) if &**k == "*" => members.clear(),
        (Segment::Key(k), Node::Object(members)) => members.retain(|(n, _)| n.text() != &**k),
        (Segment::Key(_), Node::Array(items)) => {
            for item in items {
                remove_member(item, last)?;
            }
        }
        (Segment::Each, Node::Array(items)) => items.clear(),
        (Segment::Index(i), Node::Array(items)) if *i < items.len() => {
            items.remove(*i);
        }
        _ => {}
    }
    Ok(())
}

/// Renames member `from` of `node` (each element's, for an array) to `to`.
fn rename_member(node: &mut Node<'_>, from: &str, to: &str) -> Result<(), JsonError> {
    node.expand()?;
    match node {
        Node::Object(members) => {
            if from == to || !members.iter().any(|(n, _)| n.text() == from) {
                return Ok(());
            }
            members.retain(|(n, _)| n.text() != to);
            for (name, _) in members.iter_mut().filter(|(n, _)| n.text() == from) {
                *name = Key::Text(Cow::Owned(to.to_string()));
            }
        }
        Node::Array(items) => {
            for item in items {
                rename_member(item, from, to)?;
            }
        }
        Node::Raw(_) => {}
    }
    Ok(())
}

/// Sets the value at `path` under `node`, creating missing parent objects; arrays are
/// transparent; a scalar in the way leaves the document as it is.
fn set_at<'a>(node: &mut Node<'a>, path: &[Segment], value: &Node<'a>) -> Result<(), JsonError> {
    let Some((first, rest)) = path.split_first() else {
        *node = value.clone();
        return Ok(());
    };
    node.expand()?;
    match (first, &mut *node) {
        (Segment::Key(_), Node::Array(items)) => {
            for item in items {
                set_at(item, path, value)?;
            }
        }
        (Segment::Each, Node::Array(items)) => {
            for item in items {
                set_at(item, rest, value)?;
            }
        }
        (Segment::Index(i), Node::Array(items)) => {
            if let Some(item) = items.get_mut(*i) {
                set_at(item, rest, value)?;
            }
        }
        (Segment::Key(k), Node::Object(_)) => {
            let key = || Key::Text(Cow::Owned(k.to_string()));
            if rest.is_empty() {
                let _ = node.set(key(), value.clone());
                return Ok(());
            }
            if node.member_mut(k)?.is_none() {
                let _ = node.set(key(), Node::Object(Vec::new()));
            }
            if let Some(child) = node.member_mut(k)? {
                set_at(child, rest, value)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// What templates are rendered from: the client's request and what the gateway knows of it.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// The input buffer the head was parsed from.
    pub data: &'a [u8],
    /// The request's header fields (spans into `data`).
    pub headers: &'a [HeaderSpan],
    /// The consumer the route's policies authenticated.
    pub consumer: Option<&'a str>,
    /// The request id.
    pub request_id: &'a [u8],
    /// The client's address.
    pub client_ip: IpAddr,
    /// The route's name.
    pub route: &'a str,
    /// The route's path parameters.
    pub params: Option<PathParams<'a>>,
}

impl Vars<'_> {
    /// Renders `template` as plain text; `None` if a value is missing.
    pub fn render(&self, template: &Template) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.render_into(template, &mut out)?;
        Some(out)
    }

    /// Renders `template` as plain text at the end of `out`; `None` (with `out` partly
    /// written) if a value is missing. Allocates nothing but `out`'s growth.
    pub fn render_into(&self, template: &Template, out: &mut Vec<u8>) -> Option<()> {
        template.render_with(out, &mut |source, out| self.write_value(source, out))
    }

    /// Writes the value of `source` at the end of `out`; `None` if it has none (or it is not
    /// UTF-8 text).
    fn write_value(&self, source: &Source, out: &mut Vec<u8>) -> Option<()> {
        let text = |bytes: &[u8], out: &mut Vec<u8>| {
            std::str::from_utf8(bytes).ok()?;
            out.extend_from_slice(bytes);
            Some(())
        };
        match source {
            Source::Consumer => text(self.consumer?.as_bytes(), out),
            Source::Route => text(self.route.as_bytes(), out),
            Source::RequestId => text(self.request_id, out),
            Source::ClientIp => {
                use std::io::Write as _;
                write!(out, "{}", self.client_ip).ok()
            }
            Source::Header(name) => {
                let data = self.data;
                let value = self
                    .headers
                    .iter()
                    .find(|h| h.name.of(data).eq_ignore_ascii_case(name.as_bytes()))?
                    .value
                    .of(data);
                text(value, out)
            }
            Source::ParamName(name) => {
                let raw = self.params?.get(name)?;
                let start = out.len();
                out.extend(percent_encoding::percent_decode_str(raw));
                std::str::from_utf8(&out[start..]).ok().map(|_| ())
            }
            Source::Param(_) | Source::Query(_) | Source::Field { .. } | Source::Each => None,
        }
    }
}

/// What a transform template placeholder may name: `consumer`, `request_id`, `client_ip`,
/// `route`, `header.NAME`, or a route parameter (any other plain name).
pub fn resolve(name: &str) -> Result<Source, String> {
    Ok(match name {
        "consumer" => Source::Consumer,
        "request_id" => Source::RequestId,
        "client_ip" => Source::ClientIp,
        "route" => Source::Route,
        _ => {
            if let Some(header) = name.strip_prefix("header.") {
                let valid = !header.is_empty()
                    && header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !valid {
                    return Err(format!("`{{{name}}}`: `{header}` is not a header name"));
                }
                return Ok(Source::Header(header.to_ascii_lowercase().into()));
            }
            let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !plain {
                return Err(format!(
                    "unknown placeholder `{{{name}}}`; known: {{consumer}}, {{request_id}}, \
                     {{client_ip}}, {{route}}, {{header.NAME}}, route parameters"
                ));
            }
            Source::ParamName(name.into())
        }
    })
}

/// Whether a `Content-Type` value is JSON: `application/json` or any `+json` type.
pub fn is_json(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .map(crate::http::headers::trim_ows)
        .unwrap_or_default();
    let Some(slash) = essence.iter().position(|&b| b == b'/') else {
        return false;
    };
    let subtype = &essence[slash + 1..];
    essence.eq_ignore_ascii_case(b"application/json")
        || (subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// The buffers query operations work in, kept by the connection from request to request.
#[derive(Debug, Default)]
pub struct QueryScratch {
    /// The original query (the fields borrow it while the target is rewritten).
    query: String,
    /// The values, percent-encoded.
    encoded: Rendered,
    /// An empty field list whose allocation each request reuses (see [`reuse_fields`]).
    fields: Vec<Field<'static>>,
}

/// Applies `ops` to the query of `path_and_query` (in place); `values` are the rendered
/// templates, percent-encoded here.
pub fn apply_query(
    ops: &FieldOps,
    values: &Rendered,
    path_and_query: &mut String,
    scratch: &mut QueryScratch,
) {
    let QueryScratch {
        query,
        encoded,
        fields,
    } = scratch;
    let path_len = path_and_query.find('?').unwrap_or(path_and_query.len());
    query.clear();
    query.push_str(path_and_query.get(path_len + 1..).unwrap_or_default());
    let mut list = reuse_fields(std::mem::take(fields));
    list.extend(query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k.as_bytes(), v.as_bytes())
    }));
    encoded.clear();
    for value in values.values() {
        encoded.push_encoded(value);
    }
    ops.apply(&mut list, encoded, same_param);
    path_and_query.truncate(path_len);
    for (i, (name, value)) in list.iter().enumerate() {
        path_and_query.push(if i == 0 { '?' } else { '&' });
        path_and_query.push_str(&String::from_utf8_lossy(name));
        path_and_query.push('=');
        path_and_query.push_str(&String::from_utf8_lossy(value));
    }
    *fields = reuse_fields(list);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> Template {
        Template::parse(text, false, &mut resolve).expect("template")
    }

    fn named(list: &[(&str, &str)]) -> Vec<(Box<str>, Template)> {
        list.iter()
            .map(|(n, v)| ((*n).into(), template(v)))
            .collect()
    }

    fn fields<'a>(list: &[(&'a str, &'a str)]) -> Vec<Field<'a>> {
        list.iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect()
    }

    fn literal_values(ops: &FieldOps) -> Rendered {
        let mut values = Rendered::default();
        for t in ops.templates() {
            let mut out = Vec::new();
            values.push(t.render_text(&mut |_| None, &mut out).map(|()| &out[..]));
        }
        values
    }

    fn missing(n: usize) -> Rendered {
        let mut values = Rendered::default();
        (0..n).for_each(|_| values.push(None));
        values
    }

    /// The fixed order: remove, rename, set, add, append, each on what the previous left.
    #[test]
    fn operations_run_in_the_fixed_order() {
        let ops = FieldOps {
            remove: vec!["x-a".into()],
            rename: vec![("x-b".into(), "x-a".into())],
            set: named(&[("x-a", "set")]),
            add: named(&[("x-a", "added"), ("x-c", "c")]),
            append: named(&[("x-a", "appended")]),
        };
        let mut f = fields(&[("X-A", "1"), ("X-B", "2"), ("X-B", "3"), ("Other", "o")]);
        let values = literal_values(&ops);
        ops.apply(&mut f, &values, same_header);
        // remove drops X-A; rename makes both X-B fields x-a; set keeps one with "set";
        // add skips x-a (present) and adds x-c; append adds a second x-a.
        assert_eq!(
            f,
            fields(&[
                ("x-a", "set"),
                ("Other", "o"),
                ("x-c", "c"),
                ("x-a", "appended")
            ])
        );
    }

    #[test]
    fn a_missing_template_value_removes_what_set_would_set_and_skips_the_rest() {
        let ops = FieldOps {
            set: named(&[("x-consumer", "{consumer}")]),
            add: named(&[("x-added", "{consumer}")]),
            append: named(&[("x-appended", "{consumer}")]),
            ..FieldOps::default()
        };
        let mut f = fields(&[("x-consumer", "spoofed"), ("x-appended", "client")]);
        let values = missing(3);
        ops.apply(&mut f, &values, same_header);
        assert_eq!(f, fields(&[("x-appended", "client")]));
    }

    #[test]
    fn query_parameters_are_rewritten_and_values_encoded() {
        let ops = FieldOps {
            remove: vec!["debug".into()],
            rename: vec![("q".into(), "search".into())],
            set: named(&[("v", "2")]),
            append: named(&[("tag", "a b")]),
            ..FieldOps::default()
        };
        let mut scratch = QueryScratch::default();
        let values = literal_values(&ops);
        let mut path = "/p?q=x&debug=1&v=1&v=0".to_string();
        apply_query(&ops, &values, &mut path, &mut scratch);
        assert_eq!(path, "/p?search=x&v=2&tag=a%20b");
        let mut path = "/p".to_string();
        apply_query(&ops, &values, &mut path, &mut scratch);
        assert_eq!(path, "/p?v=2&tag=a%20b");
    }

    fn json(ops: &JsonOps, body: &str) -> Result<String, JsonError> {
        let values: Vec<Option<String>> = ops
            .set
            .iter()
            .map(|(_, v)| match v {
                JsonValue::Literal(t) => Some(t.to_string()),
                JsonValue::Text(_) => Some("\"t\"".to_string()),
            })
            .collect();
        let mut out = Vec::new();
        ops.apply(body.as_bytes(), &values, &mut out)?;
        Ok(String::from_utf8(out).expect("utf-8"))
    }

    fn path(p: &str) -> FieldPath {
        FieldPath::parse(p).expect("path")
    }

    #[test]
    fn json_fields_are_removed_renamed_and_set_in_order() {
        let ops = JsonOps {
            remove: vec![path("password"), path("internal.*"), path("items.secret")],
            rename: vec![(path("user.name"), "login".into())],
            set: vec![
                (path("meta.source"), JsonValue::Text(template("x"))),
                (path("user.login"), JsonValue::Literal("7".into())),
            ],
        };
        let body = r#"{"password":"p","user":{"name":"ann","login":"old"},
            "internal":{"a":1,"b":[2]},"items":[{"id":1,"secret":"s"},{"id":2}]}"#;
        assert_eq!(
            json(&ops, body).expect("json"),
            r#"{"user":{"login":7},"internal":{},"items":[{"id":1},{"id":2}],"meta":{"source":"t"}}"#
        );
    }

    #[test]
    fn arrays_are_transparent_and_malformed_json_is_an_error() {
        let ops = JsonOps {
            remove: vec![path("ssn")],
            ..JsonOps::default()
        };
        assert_eq!(
            json(&ops, r#"[{"ssn":1,"a":2},{"ssn":3}]"#).expect("json"),
            r#"[{"a":2},{}]"#
        );
        assert!(json(&ops, r#"{"ssn": 1"#).is_err());
        assert!(json(&ops, "").is_err());
    }

    #[test]
    fn json_content_types_are_recognised() {
        for yes in [
            &b"application/json"[..],
            b"Application/JSON; charset=utf-8",
            b"application/problem+json",
        ] {
            assert!(is_json(yes), "{yes:?}");
        }
        for no in [&b"text/plain"[..], b"application/jsonx", b"json", b"+json"] {
            assert!(!is_json(no), "{no:?}");
        }
    }
}
