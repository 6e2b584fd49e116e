//! `[composites.NAME]`: calls, their templates, shaping and fan-out, compiled into a call
//! graph (`crate::compose::plan`). Every reference is resolved here: an unknown call, a cycle,
//! or a field that the referenced call's own shaping removes is a problem with its key and
//! line, never a surprise at run time.

use std::collections::HashMap;
use std::sync::Arc;

use toml::Spanned;

use super::caches::CacheTable;
use super::matcher::{has_control, is_token};
use super::{check_name, route_traffic, Ctx};
use crate::cache::CacheId;
use crate::compose::graph;
use crate::compose::plan::{
    Batch, CallBody, CallPlan, Composite, Fanout, Lookup, Placement, Stitch, DEFAULT_MAX_FANOUT,
    DEFAULT_MAX_PART_BYTES, DEFAULT_TIMEOUT, GATEWAY_FIELDS,
};
use crate::compose::template::{Source, Template};
use crate::config::file::{Ordered, RawUpstream};
use crate::config::file_compose::{RawCall, RawCollection, RawComposite};
use crate::config::UpstreamId;
use crate::json::{FieldPath, Reach, Segment, Shape, ShapeSpec};

/// Names a call may not take: they start other kinds of placeholders.
const RESERVED: &[&str] = &["query", "header", "consumer", "each"];
/// Largest `max_part_bytes`.
const MAX_PART_LIMIT: u64 = 256 << 20;
/// Largest `max_fanout` and `batch.max`.
const MAX_FANOUT_LIMIT: i64 = 1000;

/// The compiled composites, by name.
#[derive(Debug, Default)]
pub(super) struct CompositeTable {
    by_name: Vec<(String, Option<Arc<Composite>>)>,
}

impl CompositeTable {
    /// `Some(None)`: defined but with problems (already reported); `None`: not defined.
    pub(super) fn get(&self, name: &str) -> Option<Option<&Arc<Composite>>> {
        self.by_name
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.as_ref())
    }

    /// The defined names, in file order.
    pub(super) fn names(&self) -> Vec<&str> {
        self.by_name.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// Compiles every `[composites.NAME]`.
pub(super) fn compile(
    cx: &mut Ctx<'_>,
    raw: Option<&Ordered<RawComposite>>,
    upstreams: &[RawUpstream],
    caches: &CacheTable,
) -> CompositeTable {
    let mut table = CompositeTable::default();
    for (name, composite) in raw.map(|o| o.0.as_slice()).unwrap_or_default() {
        let key = format!("composites.{}", name.get_ref());
        let before = cx.problems.len();
        if let Err(message) = check_name(name.get_ref()) {
            cx.problem(key.clone(), Some(name.span()), message);
        }
        let compiled =
            CompositeCompiler::new(cx, &key, name, upstreams, caches).run(composite.get_ref());
        let ok = cx.problems.len() == before;
        table.by_name.push((
            name.get_ref().clone(),
            compiled.filter(|_| ok).map(Arc::new),
        ));
    }
    table
}

/// What one call compiles to before references are resolved (pass 1).
struct Partial {
    group: Option<UpstreamId>,
    method: &'static str,
    idempotent: bool,
    shape: Shape,
    into: Placement,
    required: bool,
}

struct CompositeCompiler<'c, 't, 'r> {
    cx: &'c mut Ctx<'t>,
    key: &'r str,
    name: &'r Spanned<String>,
    upstreams: &'r [RawUpstream],
    caches: &'r CacheTable,
    /// Call name → index.
    index: HashMap<&'r str, usize>,
    /// Route parameters used, by slot.
    params: Vec<Box<str>>,
    /// Lookups registered on each call.
    lookups: Vec<Vec<Lookup>>,
    /// Each call's dependencies.
    deps: Vec<Vec<usize>>,
    /// Which calls fan out.
    fanouts: Vec<bool>,
}

/// How a referenced value is used, for the checks it must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// In a request target: one scalar.
    Target,
    /// In a JSON body: any value.
    Body,
    /// `foreach`: every element.
    Each,
}

impl<'c, 't, 'r> CompositeCompiler<'c, 't, 'r> {
    fn new(
        cx: &'c mut Ctx<'t>,
        key: &'r str,
        name: &'r Spanned<String>,
        upstreams: &'r [RawUpstream],
        caches: &'r CacheTable,
    ) -> Self {
        Self {
            cx,
            key,
            name,
            upstreams,
            caches,
            index: HashMap::new(),
            params: Vec::new(),
            lookups: Vec::new(),
            deps: Vec::new(),
            fanouts: Vec::new(),
        }
    }

    fn run(mut self, raw: &'r RawComposite) -> Option<Composite> {
        let key = self.key;
        let timeout = self
            .cx
            .timeout(&format!("{key}.timeout"), &raw.timeout, DEFAULT_TIMEOUT);
        let max_part = self.cx.size(
            &format!("{key}.max_part_bytes"),
            &raw.max_part_bytes,
            1..=MAX_PART_LIMIT,
            DEFAULT_MAX_PART_BYTES as u64,
        );
        let forward = self.header_list(
            &format!("{key}.forward_headers"),
            raw.forward_headers.as_deref(),
        );
        if raw.calls.is_empty() {
            let message = "a composite needs at least one `[[composites.NAME.calls]]`".to_string();
            self.cx.problem(key, Some(self.name.span()), message);
            return None;
        }
        self.name_calls(&raw.calls);
        let n = raw.calls.len();
        self.lookups = vec![Vec::new(); n];
        self.deps = vec![Vec::new(); n];
        self.fanouts = raw.calls.iter().map(|c| c.foreach.is_some()).collect();
        let partials: Vec<Partial> = raw
            .calls
            .iter()
            .enumerate()
            .map(|(i, call)| self.partial(i, call))
            .collect();
        let mut calls = Vec::with_capacity(n);
        let mut stitched = vec![false; n];
        for (i, call) in raw.calls.iter().enumerate() {
            let compiled = self.call(i, call, &partials, max_part, &forward, &mut stitched);
            calls.push(compiled);
        }
        self.check_placements(&raw.calls, &partials);
        let caches: Vec<Option<CacheId>> = raw
            .calls
            .iter()
            .enumerate()
            .map(|(i, call)| self.cache(i, call, &partials[i]))
            .collect();
        let order = match graph::order(&self.deps) {
            Ok(order) => order,
            Err(cycle) => {
                let names: Vec<&str> = cycle
                    .iter()
                    .map(|&c| raw.calls[c].name.get_ref().as_str())
                    .collect();
                let first = cycle[0];
                let message = format!("the calls form a cycle: {}", names.join(" → "));
                self.cx.problem(
                    format!("{key}.calls[{first}].path"),
                    Some(raw.calls[first].path.span()),
                    message,
                );
                return None;
            }
        };
        let mut plans = Vec::with_capacity(n);
        for (i, (call, partial)) in calls.into_iter().zip(partials).enumerate() {
            let (path, body, fanout, hedge_after, timeout, max_part_bytes, forward_headers) = call?;
            plans.push(CallPlan {
                name: raw.calls[i].name.get_ref().as_str().into(),
                group: partial.group?,
                method: partial.method,
                idempotent: partial.idempotent,
                path,
                body,
                timeout,
                required: partial.required,
                shape: partial.shape,
                into: if fanout.as_ref().is_some_and(|f: &Fanout| f.stitch.is_some()) {
                    Placement::Stitched
                } else {
                    partial.into
                },
                deps: std::mem::take(&mut self.deps[i]),
                fanout,
                hedge_after,
                max_part_bytes,
                forward_headers,
                lookups: std::mem::take(&mut self.lookups[i]),
                stitched_into: stitched[i],
                cache: caches[i],
            });
        }
        let client_body = plans.iter().any(|c| matches!(c.body, CallBody::Client));
        Some(Composite {
            name: self.name.get_ref().as_str().into(),
            timeout,
            calls: plans,
            order,
            params: self.params,
            client_body,
        })
    }

    /// `cache = "NAME"`: a defined `[caches.NAME]`, on a GET call.
    fn cache(&mut self, i: usize, raw: &RawCall, partial: &Partial) -> Option<CacheId> {
        let name = raw.cache.as_ref()?;
        let ckey = format!("{}.calls[{i}]", self.key);
        let id = self.caches.resolve(self.cx, &ckey, name)?;
        if partial.method != "GET" {
            let message = format!(
                "only GET calls are cached; this call is `{}`",
                partial.method
            );
            self.cx
                .problem(format!("{ckey}.cache"), Some(name.span()), message);
            return None;
        }
        Some(id)
    }

    /// Records every call's name; duplicates and reserved names are problems.
    fn name_calls(&mut self, calls: &'r [RawCall]) {
        for (i, call) in calls.iter().enumerate() {
            let name = call.name.get_ref().as_str();
            let key = format!("{}.calls[{i}].name", self.key);
            let problem = if let Err(m) = check_name(name) {
                Some(m)
            } else if RESERVED.contains(&name) {
                Some(format!(
                    "`{name}` is reserved (`{{{name}...}}` placeholders mean something else)"
                ))
            } else if self.index.contains_key(name) {
                Some(format!("duplicate call name `{name}`"))
            } else {
                None
            };
            match problem {
                Some(message) => self.cx.problem(key, Some(call.name.span()), message),
                None => {
                    self.index.insert(name, i);
                }
            }
        }
    }

    /// Pass 1: what a call is on its own.
    fn partial(&mut self, i: usize, raw: &RawCall) -> Partial {
        let ckey = format!("{}.calls[{i}]", self.key);
        let group = route_traffic::resolve(
            self.cx,
            &format!("{ckey}.upstream"),
            &raw.upstream,
            self.upstreams,
        );
        let (method, idempotent) = match raw.method.as_ref() {
            None => ("GET", true),
            Some(m) => match m.get_ref().as_str() {
                "GET" => ("GET", true),
                "POST" => ("POST", false),
                "PUT" => ("PUT", true),
                "PATCH" => ("PATCH", false),
                "DELETE" => ("DELETE", true),
                other => {
                    let message = format!(
                        "method `{other}` is not supported: use GET, POST, PUT, PATCH or DELETE (upper case)"
                    );
                    self.cx
                        .problem(format!("{ckey}.method"), Some(m.span()), message);
                    ("GET", true)
                }
            },
        };
        let shape = self.shape(&ckey, raw);
        let into = match raw.into.as_ref() {
            None => Placement::Key(vec![raw.name.get_ref().as_str().into()]),
            Some(into) if into.get_ref() == "." => Placement::Root,
            Some(into) => match FieldPath::parse(into.get_ref()) {
                Ok(path) if path.segments().iter().all(|s| matches!(s, Segment::Key(_))) => {
                    Placement::Key(path.keys().map(Box::from).collect())
                }
                Ok(_) => {
                    let message =
                        "`into` is a key path (`a.b`) or `.`, without brackets".to_string();
                    self.cx
                        .problem(format!("{ckey}.into"), Some(into.span()), message);
                    Placement::Root
                }
                Err(message) => {
                    self.cx
                        .problem(format!("{ckey}.into"), Some(into.span()), message);
                    Placement::Root
                }
            },
        };
        Partial {
            group,
            method,
            idempotent,
            shape,
            into,
            required: raw.required.as_ref().is_some_and(|r| *r.get_ref()),
        }
    }

    fn shape(&mut self, ckey: &str, raw: &RawCall) -> Shape {
        let allow: Vec<String> = strings(raw.allow.as_deref());
        let deny: Vec<String> = strings(raw.deny.as_deref());
        let rename: Vec<(String, String)> = raw
            .rename
            .iter()
            .flat_map(|r| &r.0)
            .map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone()))
            .collect();
        let collection = match raw.collection.as_ref().map(|c| c.get_ref()) {
            None | Some(RawCollection::Enabled(false)) => None,
            Some(RawCollection::Enabled(true)) => Some("collection"),
            Some(RawCollection::Key(k)) => Some(k.as_str()),
        };
        let spec = ShapeSpec {
            target: raw.target.as_ref().map(|t| t.get_ref().as_str()),
            allow: &allow,
            deny: &deny,
            rename: &rename,
            collection,
        };
        match Shape::compile(&spec) {
            Ok(shape) => shape,
            Err(problems) => {
                for p in problems {
                    let span = match p.option {
                        "target" => raw.target.as_ref().map(Spanned::span),
                        "collection" => raw.collection.as_ref().map(Spanned::span),
                        "allow" | "deny" => {
                            let list = if p.option == "allow" {
                                &raw.allow
                            } else {
                                &raw.deny
                            };
                            let index = p
                                .entry
                                .as_deref()
                                .and_then(|e| e.trim_matches(['[', ']']).parse::<usize>().ok());
                            list.as_ref().and_then(|l| l.get(index?)).map(Spanned::span)
                        }
                        _ => raw.rename.as_ref().and_then(|r| {
                            let entry = p.entry.as_deref()?.strip_prefix('.')?;
                            r.0.iter()
                                .find(|(k, _)| k.get_ref() == entry)
                                .map(|(k, _)| k.span())
                        }),
                    };
                    let entry = p.entry.unwrap_or_default();
                    self.cx
                        .problem(format!("{ckey}.{}{entry}", p.option), span, p.message);
                }
                Shape::default()
            }
        }
    }

    /// Pass 2: templates, fan-out and everything that refers to other calls.
    #[allow(clippy::type_complexity)]
    fn call(
        &mut self,
        i: usize,
        raw: &'r RawCall,
        partials: &[Partial],
        max_part: u64,
        forward: &[Box<str>],
        stitched: &mut [bool],
    ) -> Option<(
        Template,
        CallBody,
        Option<Fanout>,
        Option<std::time::Duration>,
        Option<std::time::Duration>,
        usize,
        Vec<Box<str>>,
    )> {
        let ckey = format!("{}.calls[{i}]", self.key);
        let before = self.cx.problems.len();
        let fanout = self.fanout(i, &ckey, raw, partials, stitched);
        // The path is checked against what was configured, even if `foreach` had problems.
        let path = self.path(
            i,
            &ckey,
            raw,
            partials,
            raw.foreach.is_some(),
            raw.batch.is_some(),
        );
        let body = self.body(i, &ckey, raw, partials, fanout.is_some());
        let hedge_after = raw.hedge.as_ref().and_then(|h| {
            let after = h.get_ref().after.get_ref().0;
            let problem = if !partials[i].idempotent {
                Some(format!(
                    "only idempotent calls are hedged; `{}` is not",
                    partials[i].method
                ))
            } else if after.is_zero() {
                Some("`after` must be greater than zero".to_string())
            } else {
                None
            };
            match problem {
                Some(message) => {
                    self.cx
                        .problem(format!("{ckey}.hedge"), Some(h.span()), message);
                    None
                }
                None => Some(after),
            }
        });
        let timeout = raw.timeout.as_ref().map(|_| {
            self.cx
                .timeout(&format!("{ckey}.timeout"), &raw.timeout, DEFAULT_TIMEOUT)
        });
        let max_part_bytes = self.cx.size(
            &format!("{ckey}.max_part_bytes"),
            &raw.max_part_bytes,
            1..=MAX_PART_LIMIT,
            max_part,
        ) as usize;
        let forward_headers = match raw.forward_headers.as_deref() {
            Some(list) => self.header_list(&format!("{ckey}.forward_headers"), Some(list)),
            None => forward.to_vec(),
        };
        let path = path?;
        let body = body?;
        (self.cx.problems.len() == before).then_some((
            path,
            body,
            fanout,
            hedge_after,
            timeout,
            max_part_bytes,
            forward_headers,
        ))
    }

    fn path(
        &mut self,
        i: usize,
        ckey: &str,
        raw: &RawCall,
        partials: &[Partial],
        fanout: bool,
        batch: bool,
    ) -> Option<Template> {
        let text = raw.path.get_ref();
        let key = format!("{ckey}.path");
        let span = raw.path.span();
        if !text.starts_with('/') || text.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
            let message = format!(
                "`{text}` must start with `/` and hold no spaces, control characters or `#`"
            );
            self.cx.problem(key, Some(span), message);
            return None;
        }
        let mut resolve = |name: &str| self.resolve(i, name, Use::Target, partials);
        let template = match Template::parse(text, false, &mut resolve) {
            Ok(t) => t,
            Err(message) => {
                self.cx.problem(key, Some(span), message);
                return None;
            }
        };
        let uses_each = template.uses(&Source::Each);
        let problem = match (fanout, batch, uses_each) {
            (false, _, true) => Some("`{each}` is only for calls with `foreach`"),
            (true, false, false) => {
                Some("a `foreach` call puts `{each}` in its path (or sets `batch`)")
            }
            (true, true, true) => Some(
                "a `batch` call gets its values in the `batch.param` query parameter, not `{each}`",
            ),
            _ => None,
        };
        if let Some(message) = problem {
            self.cx.problem(key, Some(span), message.to_string());
            return None;
        }
        Some(template)
    }

    fn body(
        &mut self,
        i: usize,
        ckey: &str,
        raw: &RawCall,
        partials: &[Partial],
        fanout: bool,
    ) -> Option<CallBody> {
        let Some(body) = raw.body.as_ref() else {
            return Some(CallBody::None);
        };
        let key = format!("{ckey}.body");
        let method = partials[i].method;
        if !matches!(method, "POST" | "PUT" | "PATCH") {
            let message = format!(
                "a `{method}` call sends no body; set `method = \"POST\"`, `PUT` or `PATCH`"
            );
            self.cx.problem(key, Some(body.span()), message);
            return None;
        }
        if body.get_ref() == "client" {
            return Some(CallBody::Client);
        }
        let _ = fanout;
        let mut resolve = |name: &str| self.resolve(i, name, Use::Body, partials);
        let template = match Template::parse(body.get_ref(), true, &mut resolve) {
            Ok(t) => t,
            Err(message) => {
                self.cx.problem(key, Some(body.span()), message);
                return None;
            }
        };
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&template.sample()) {
            let message = format!("the body template does not make JSON ({e}); write `\"client\"` to send the client's body");
            self.cx.problem(key, Some(body.span()), message);
            return None;
        }
        Some(CallBody::Template(template))
    }

    /// `foreach`, `max_fanout`, `batch`, `stitch`.
    fn fanout(
        &mut self,
        i: usize,
        ckey: &str,
        raw: &RawCall,
        partials: &[Partial],
        stitched: &mut [bool],
    ) -> Option<Fanout> {
        let Some(foreach) = raw.foreach.as_ref() else {
            for (name, span) in [
                ("max_fanout", raw.max_fanout.as_ref().map(Spanned::span)),
                ("batch", raw.batch.as_ref().map(Spanned::span)),
                ("stitch", raw.stitch.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    let message = "only allowed with `foreach`".to_string();
                    self.cx
                        .problem(format!("{ckey}.{name}"), Some(span), message);
                }
            }
            return None;
        };
        let key = format!("{ckey}.foreach");
        let (source, path) = self
            .reference(i, foreach.get_ref(), Use::Each, partials)
            .map_err(|message| self.cx.problem(key.clone(), Some(foreach.span()), message))
            .ok()?;
        let lookup = self.register(source, path.clone(), true);
        let max = self.cx.int(
            &format!("{ckey}.max_fanout"),
            &raw.max_fanout,
            1..=MAX_FANOUT_LIMIT,
            DEFAULT_MAX_FANOUT as i64,
        ) as usize;
        let batch = raw.batch.as_ref().and_then(|b| {
            let b = b.get_ref();
            let bkey = format!("{ckey}.batch");
            if !is_token(b.param.get_ref()) || b.param.get_ref().contains(['&', '=']) {
                let message = format!("invalid query parameter name `{}`", b.param.get_ref());
                self.cx
                    .problem(format!("{bkey}.param"), Some(b.param.span()), message);
                return None;
            }
            let per_call = self.cx.int(
                &format!("{bkey}.max"),
                &b.max,
                1..=MAX_FANOUT_LIMIT,
                DEFAULT_MAX_FANOUT as i64,
            ) as usize;
            let key_text = b.key.as_ref().map_or("id", |k| k.get_ref().as_str());
            let key_path = match FieldPath::parse(key_text) {
                Ok(p) if p.is_single() => p,
                Ok(_) | Err(_) => {
                    let message = format!("`{key_text}` is not a field path without `[*]`");
                    self.cx.problem(
                        format!("{bkey}.key"),
                        b.key.as_ref().map(Spanned::span),
                        message,
                    );
                    return None;
                }
            };
            Some(Batch {
                param: b.param.get_ref().as_str().into(),
                max: per_call,
                key: key_path,
            })
        });
        let stitch = raw.stitch.as_ref().and_then(|s| {
            let result = self.stitch(source, &path, s.get_ref());
            match result {
                Ok(stitch) => {
                    stitched[source] = true;
                    Some(stitch)
                }
                Err(message) => {
                    self.cx
                        .problem(format!("{ckey}.stitch"), Some(s.span()), message);
                    None
                }
            }
        });
        if raw.into.is_some() && raw.stitch.is_some() {
            let span = raw.into.as_ref().map(Spanned::span);
            let message =
                "a stitched call writes into its source; `into` would do nothing".to_string();
            self.cx.problem(format!("{ckey}.into"), span, message);
        }
        Some(Fanout {
            source,
            lookup,
            max,
            batch,
            stitch,
        })
    }

    /// `stitch = "SOURCE.elements.field"` against `foreach = "SOURCE.elements.value"`.
    fn stitch(&self, source: usize, each: &FieldPath, text: &str) -> Result<Stitch, String> {
        let (call, rel) = text
            .split_once('.')
            .ok_or_else(|| format!("`{text}` must start with the `foreach` call's name"))?;
        if self.index.get(call) != Some(&source) {
            return Err(format!(
                "`{text}` must write into the call `foreach` reads (`{}`)",
                each_call_name(self, source)
            ));
        }
        let target = FieldPath::parse(rel)?;
        let segments = each.segments();
        let keys_equal = |a: &[Segment], b: &[Segment]| {
            let strip = |s: &[Segment]| -> Vec<Segment> {
                s.iter()
                    .filter(|x| !matches!(x, Segment::Each))
                    .cloned()
                    .collect()
            };
            strip(a) == strip(b)
        };
        match segments.last() {
            Some(Segment::Key(value_key)) => {
                let elements = &segments[..segments.len() - 1];
                let t = target.segments();
                match t.split_last() {
                    Some((Segment::Key(field), init)) if keys_equal(init, elements) => Ok(Stitch {
                        elements: elements.to_vec(),
                        value_key: Some(value_key.clone()),
                        field: Some(field.clone()),
                    }),
                    _ => Err(format!(
                        "`{text}` must name a field of the elements `foreach` reads (`{}.FIELD`)",
                        render_segments(elements)
                    )),
                }
            }
            _ => {
                if keys_equal(target.segments(), segments) {
                    Ok(Stitch {
                        elements: segments.to_vec(),
                        value_key: None,
                        field: None,
                    })
                } else {
                    Err(format!(
                        "`{text}` must be the `foreach` path itself (each value is replaced by its result)"
                    ))
                }
            }
        }
    }

    /// Resolves a placeholder name of call `i`'s templates.
    fn resolve(
        &mut self,
        i: usize,
        name: &str,
        use_: Use,
        partials: &[Partial],
    ) -> Result<Source, String> {
        if name == "each" {
            return Ok(Source::Each);
        }
        if name == "consumer" {
            return Ok(Source::Consumer);
        }
        if let Some(q) = name.strip_prefix("query.") {
            if q.is_empty() || q.contains(['.', '[', ']']) {
                return Err(format!("`{{{name}}}`: expected `{{query.NAME}}`"));
            }
            return Ok(Source::Query(q.into()));
        }
        if let Some(h) = name.strip_prefix("header.") {
            if !is_token(h) {
                return Err(format!("`{{{name}}}`: expected `{{header.NAME}}`"));
            }
            return Ok(Source::Header(h.to_ascii_lowercase().into()));
        }
        if !name.contains(['.', '[']) {
            let slot = match self.params.iter().position(|p| &**p == name) {
                Some(slot) => slot,
                None => {
                    self.params.push(name.into());
                    self.params.len() - 1
                }
            };
            return Ok(Source::Param(slot));
        }
        let (call, path) = self.reference(i, name, use_, partials)?;
        let lookup = self.register(call, path, false);
        Ok(Source::Field { call, lookup })
    }

    /// `CALL.field.path`, checked against what call `CALL` can produce.
    fn reference(
        &mut self,
        i: usize,
        text: &str,
        use_: Use,
        partials: &[Partial],
    ) -> Result<(usize, FieldPath), String> {
        let path = FieldPath::parse(text)?;
        let Some(Segment::Key(call_name)) = path.segments().first() else {
            return Err(format!("`{text}` must start with a call's name"));
        };
        let Some(&call) = self.index.get(&**call_name) else {
            let known: Vec<&str> = {
                let mut v: Vec<(&&str, &usize)> = self.index.iter().collect();
                v.sort_by_key(|(_, i)| **i);
                v.into_iter().map(|(n, _)| *n).collect()
            };
            return Err(format!(
                "unknown call `{call_name}` in `{text}`; calls: {}",
                known.join(", ")
            ));
        };
        let rest = path.skip(1);
        let rel = FieldPath::parse(&render_segments(&rest)).map_err(|_| {
            format!("`{text}` names a whole call; name one of its fields (`{call_name}.FIELD`)")
        })?;
        if call == i {
            return Err(format!("a call cannot read its own result (`{text}`)"));
        }
        let source = &partials[call];
        if !source.idempotent {
            return Err(format!(
                "`{call_name}` is a `{}` call: nothing may depend on it",
                source.method
            ));
        }
        if self.is_fanout(call) {
            return Err(format!(
                "`{call_name}` fans out (`foreach`): its results cannot be read"
            ));
        }
        if use_ == Use::Target && !rel.is_single() {
            return Err(format!(
                "`{text}` reaches many values; fan out with `foreach` instead"
            ));
        }
        match source.shape.reach(&rel) {
            Reach::Removed(why) => {
                return Err(format!(
                    "`{text}` cannot exist: {why} (in call `{call_name}`)"
                ));
            }
            Reach::Container if use_ != Use::Body => {
                return Err(format!(
                    "`{text}` is an object after `{call_name}`'s `allow`; name a field inside it"
                ));
            }
            _ => {}
        }
        if !self.deps[i].contains(&call) {
            self.deps[i].push(call);
        }
        Ok((call, rel))
    }

    /// Whether call `call` has `foreach` (read from the raw list through the index).
    fn is_fanout(&self, call: usize) -> bool {
        self.fanouts.get(call).copied().unwrap_or(false)
    }

    /// Registers a lookup of `path` on `call`; returns its index.
    fn register(&mut self, call: usize, path: FieldPath, many: bool) -> usize {
        let lookups = &mut self.lookups[call];
        if let Some(pos) = lookups
            .iter()
            .position(|l| l.path == path && l.many == many)
        {
            return pos;
        }
        lookups.push(Lookup { path, many });
        lookups.len() - 1
    }

    /// Two calls placed at the same key would overwrite each other: refused.
    fn check_placements(&mut self, calls: &[RawCall], partials: &[Partial]) {
        let mut seen: Vec<(&Vec<Box<str>>, usize)> = Vec::new();
        for (i, partial) in partials.iter().enumerate() {
            let Placement::Key(path) = &partial.into else {
                continue;
            };
            if calls[i].stitch.is_some() {
                continue;
            }
            if let Some((_, first)) = seen.iter().find(|(p, _)| *p == path) {
                let message = format!(
                    "calls `{}` and `{}` would both be placed at `{}`",
                    calls[*first].name.get_ref(),
                    calls[i].name.get_ref(),
                    path.join(".")
                );
                let span = calls[i]
                    .into
                    .as_ref()
                    .map_or(calls[i].name.span(), Spanned::span);
                self.cx
                    .problem(format!("{}.calls[{i}].into", self.key), Some(span), message);
            } else {
                seen.push((path, i));
            }
        }
    }

    /// Header names: tokens, lower-cased.
    fn header_list(&mut self, key: &str, list: Option<&[Spanned<String>]>) -> Vec<Box<str>> {
        let mut out = Vec::new();
        for (i, name) in list.unwrap_or_default().iter().enumerate() {
            let text = name.get_ref();
            if !is_token(text) || has_control(text) {
                let message = format!("invalid header name `{text}`");
                self.cx
                    .problem(format!("{key}[{i}]"), Some(name.span()), message);
                continue;
            }
            let lower = text.to_ascii_lowercase();
            if crate::http::headers::is_hop_by_hop(lower.as_bytes())
                || GATEWAY_FIELDS.contains(&lower.as_str())
            {
                let message =
                    format!("`{lower}` is not forwarded: the gateway writes it for each call");
                self.cx
                    .problem(format!("{key}[{i}]"), Some(name.span()), message);
                continue;
            }
            out.push(lower.into());
        }
        out
    }
}

fn strings(list: Option<&[Spanned<String>]>) -> Vec<String> {
    list.unwrap_or_default()
        .iter()
        .map(|s| s.get_ref().clone())
        .collect()
}

fn each_call_name(c: &CompositeCompiler<'_, '_, '_>, source: usize) -> String {
    c.index
        .iter()
        .find(|(_, &i)| i == source)
        .map(|(n, _)| n.to_string())
        .unwrap_or_default()
}

fn render_segments(segments: &[Segment]) -> String {
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
    use crate::config::compile::{check_without_router, keys_and_lines};

    const HEAD: &str = "[[upstreams]]\nname = \"u\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n";

    /// `(key, line)` of each problem; lines count from the first line of `body`.
    fn problems(body: &str) -> Vec<(String, Option<usize>)> {
        let offset = HEAD.lines().count();
        keys_and_lines(&check_without_router(&format!("{HEAD}{body}")))
            .into_iter()
            .map(|(k, l)| (k, l.map(|l| l - offset)))
            .collect()
    }

    fn message(body: &str) -> String {
        check_without_router(&format!("{HEAD}{body}"))
            .first()
            .map(|p| p.message.clone())
            .unwrap_or_default()
    }

    fn calls(calls: &str) -> String {
        format!("[composites.c]\n{calls}")
    }

    #[test]
    fn a_valid_composite_has_no_problems() {
        let text = calls(
            "[[composites.c.calls]]\nname = \"user\"\nupstream = \"u\"\npath = \"/u/{id}\"\n\
             allow = [\"id\", \"segment\"]\nrename = { segment = \"tier\" }\n\
             [[composites.c.calls]]\nname = \"reco\"\nupstream = \"u\"\npath = \"/r?t={user.segment}\"\n",
        );
        assert_eq!(problems(&text), vec![]);
    }

    #[test]
    fn a_call_names_a_defined_cache_on_a_get() {
        let cache = "[caches.parts]\nmax_bytes = \"1MiB\"\n";
        let ok = calls(
            "[[composites.c.calls]]\nname = \"user\"\nupstream = \"u\"\npath = \"/u\"\n\
             cache = \"parts\"\n",
        );
        assert_eq!(problems(&format!("{ok}{cache}")), vec![]);
        let unknown = calls(
            "[[composites.c.calls]]\nname = \"user\"\nupstream = \"u\"\npath = \"/u\"\n\
             cache = \"nope\"\n",
        );
        assert_eq!(
            problems(&format!("{unknown}{cache}")),
            vec![("composites.c.calls[0].cache".to_string(), Some(6))]
        );
        assert!(
            message(&format!("{unknown}{cache}")).contains("unknown cache `nope`; defined: parts")
        );
        let post = calls(
            "[[composites.c.calls]]\nname = \"user\"\nupstream = \"u\"\npath = \"/u\"\n\
             method = \"POST\"\ncache = \"parts\"\n",
        );
        assert_eq!(
            problems(&format!("{post}{cache}")),
            vec![("composites.c.calls[0].cache".to_string(), Some(7))]
        );
    }

    #[test]
    fn unknown_calls_and_upstreams() {
        let text = calls(
            "[[composites.c.calls]]\nname = \"a\"\nupstream = \"nope\"\npath = \"/a?x={zz.y}\"\n",
        );
        assert_eq!(
            problems(&text),
            vec![
                ("composites.c.calls[0].upstream".to_string(), Some(4)),
                ("composites.c.calls[0].path".to_string(), Some(5)),
            ]
        );
        assert!(check_without_router(&format!("{HEAD}{text}"))[1]
            .message
            .contains("unknown call `zz`"));
    }

    #[test]
    fn fields_the_referenced_call_removes_cannot_be_read() {
        let text = calls(
            "[[composites.c.calls]]\nname = \"user\"\nupstream = \"u\"\npath = \"/u\"\n\
             allow = [\"id\", \"address.city\"]\n\
             [[composites.c.calls]]\nname = \"reco\"\nupstream = \"u\"\npath = \"/r?e={user.email}\"\n\
             [[composites.c.calls]]\nname = \"geo\"\nupstream = \"u\"\npath = \"/g?a={user.address}\"\n",
        );
        assert_eq!(
            problems(&text),
            vec![
                ("composites.c.calls[1].path".to_string(), Some(10)),
                ("composites.c.calls[2].path".to_string(), Some(14)),
            ]
        );
        assert!(message(&text).contains("cannot exist: `allow` keeps only `id`, `address.city`"));
    }

    #[test]
    fn denied_fields_cannot_be_read_and_post_calls_cannot_be_depended_on() {
        let text = calls(
            "[[composites.c.calls]]\nname = \"user\"\nupstream = \"u\"\npath = \"/u\"\ndeny = [\"token\"]\n\
             [[composites.c.calls]]\nname = \"a\"\nupstream = \"u\"\npath = \"/a?t={user.token}\"\n\
             [[composites.c.calls]]\nname = \"w\"\nupstream = \"u\"\npath = \"/w\"\nmethod = \"POST\"\n\
             [[composites.c.calls]]\nname = \"b\"\nupstream = \"u\"\npath = \"/b?t={w.id}\"\n",
        );
        assert_eq!(
            problems(&text),
            vec![
                ("composites.c.calls[1].path".to_string(), Some(10)),
                ("composites.c.calls[3].path".to_string(), Some(19)),
            ]
        );
    }

    #[test]
    fn cycles_are_refused_with_the_path_around_them() {
        let text = calls(
            "[[composites.c.calls]]\nname = \"a\"\nupstream = \"u\"\npath = \"/a?x={c.v}\"\n\
             [[composites.c.calls]]\nname = \"b\"\nupstream = \"u\"\npath = \"/b?x={a.v}\"\n\
             [[composites.c.calls]]\nname = \"c\"\nupstream = \"u\"\npath = \"/c?x={b.v}\"\n",
        );
        assert_eq!(
            problems(&text),
            vec![("composites.c.calls[0].path".to_string(), Some(5))]
        );
        assert!(
            message(&text).contains("a → c → b → a"),
            "{}",
            message(&text)
        );
    }

    #[test]
    fn option_rules() {
        let text = calls(
            "[[composites.c.calls]]\nname = \"query\"\nupstream = \"u\"\npath = \"/q\"\n\
             [[composites.c.calls]]\nname = \"p\"\nupstream = \"u\"\npath = \"/p\"\nmethod = \"POST\"\nhedge = { after = \"10ms\" }\n\
             [[composites.c.calls]]\nname = \"g\"\nupstream = \"u\"\npath = \"/g\"\nbody = \"client\"\n\
             [[composites.c.calls]]\nname = \"f\"\nupstream = \"u\"\npath = \"/f\"\nmax_fanout = 3\n\
             [[composites.c.calls]]\nname = \"t\"\nupstream = \"u\"\npath = \"/t\"\nmethod = \"POST\"\nbody = '{\"a\": }'\n\
             [[composites.c.calls]]\nname = \"s\"\nupstream = \"u\"\npath = \"/s\"\nallow = [\"a[0]\"]\n",
        );
        assert_eq!(
            problems(&text),
            vec![
                ("composites.c.calls[0].name".to_string(), Some(3)),
                ("composites.c.calls[5].allow[0]".to_string(), Some(32)),
                ("composites.c.calls[1].hedge".to_string(), Some(11)),
                ("composites.c.calls[2].body".to_string(), Some(16)),
                ("composites.c.calls[3].max_fanout".to_string(), Some(21)),
                ("composites.c.calls[4].body".to_string(), Some(27)),
            ]
        );
    }

    #[test]
    fn fan_out_rules() {
        let text = calls(
            "[[composites.c.calls]]\nname = \"o\"\nupstream = \"u\"\npath = \"/o\"\n\
             [[composites.c.calls]]\nname = \"p\"\nupstream = \"u\"\npath = \"/p\"\nforeach = \"o.items[*].id\"\n\
             [[composites.c.calls]]\nname = \"q\"\nupstream = \"u\"\npath = \"/q/{each}\"\nforeach = \"o.items[*].id\"\nstitch = \"o.other[*].x\"\n\
             [[composites.c.calls]]\nname = \"r\"\nupstream = \"u\"\npath = \"/r/{each}\"\nforeach = \"p.x\"\n",
        );
        assert_eq!(
            problems(&text),
            vec![
                ("composites.c.calls[1].path".to_string(), Some(9)),
                ("composites.c.calls[2].stitch".to_string(), Some(16)),
                ("composites.c.calls[3].foreach".to_string(), Some(21)),
            ]
        );
    }

    #[test]
    fn forward_headers_refuse_what_the_gateway_writes_per_call() {
        let text = format!(
            "[composites.c]\nforward_headers = [\"Accept-Language\", \"Connection\", \"X-Request-Id\"]\n{}",
            "[[composites.c.calls]]\nname = \"a\"\nupstream = \"u\"\npath = \"/a\"\n\
             forward_headers = [\"traceparent\", \"bad name\", \"x-tag\"]\n"
        );
        assert_eq!(
            problems(&text),
            vec![
                ("composites.c.forward_headers[1]".to_string(), Some(2)),
                ("composites.c.forward_headers[2]".to_string(), Some(2)),
                (
                    "composites.c.calls[0].forward_headers[0]".to_string(),
                    Some(7)
                ),
                (
                    "composites.c.calls[0].forward_headers[1]".to_string(),
                    Some(7)
                ),
            ]
        );
        assert!(
            message(&text).contains("`connection` is not forwarded"),
            "{}",
            message(&text)
        );
    }

    #[test]
    fn routes_must_capture_the_parameters_and_name_a_defined_composite() {
        let text = calls(
            "[[composites.c.calls]]\nname = \"a\"\nupstream = \"u\"\npath = \"/a/{id}\"\n\
             [[routes]]\nname = \"r1\"\nmatch = { path = \"/x/{other}\" }\ncompose = \"c\"\n\
             [[routes]]\nname = \"r2\"\ncompose = \"missing\"\n\
             [[routes]]\nname = \"r3\"\ncompose = \"c\"\nupstream = \"u\"\n",
        );
        assert_eq!(
            problems(&text),
            vec![
                ("routes[0].compose".to_string(), Some(9)),
                ("routes[1].compose".to_string(), Some(12)),
                ("routes[2].compose".to_string(), Some(15)),
            ]
        );
    }
}
