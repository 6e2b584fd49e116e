//! `kind = "transform"`: `request` and `response` tables of operations, `max_body_bytes`,
//! `on_oversize`, `on_non_json`, `on_malformed`.
//!
//! Refused with key and line: a header name that is not a token or that the gateway writes
//! itself (framing, hop-by-hop, forwarding and tracing fields), a query parameter name with
//! characters that need encoding, query operations on the response side, a template with an
//! unknown placeholder or a control character, a malformed JSON path (or `*` anywhere but at
//! the end of a `remove_json` path), a `set_json` value that is not a string, number or
//! boolean, a transform that changes nothing, and `on_*` values other than `pass`/`refuse`.
//! The route parameters templates name are kept with their keys and spans: each route using
//! the policy must capture them (checked with the routes, `routes::transform_params`).

use std::ops::Range;
use std::sync::Arc;

use toml::Spanned;

use super::super::matcher::{has_control, is_token};
use super::KindCx;
use crate::compose::template::Source;
use crate::compose::template::Template;
use crate::config::file::{Ordered, RawTransformSide};
use crate::json::{FieldPath, Segment};
use crate::policy::transform::{
    resolve, BodyRules, FieldOps, JsonOps, JsonValue, OnBody, ParamUse, Side, Transform,
};

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &[
    "request",
    "response",
    "max_body_bytes",
    "on_oversize",
    "on_non_json",
    "on_malformed",
];

/// `max_body_bytes` when absent.
const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
/// Largest `max_body_bytes` (the body is held in memory).
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Request fields the gateway writes itself (or that frame the message): not transformable.
const REQUEST_MANAGED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "via",
    "x-request-id",
    "traceparent",
    "tracestate",
];
/// Response fields the gateway writes itself (or that frame the message).
const RESPONSE_MANAGED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "connection",
    "keep-alive",
    "trailer",
    "upgrade",
    "via",
    "vary",
    "x-request-id",
];

/// Compiles a `transform` table.
pub(super) fn compile(k: &mut KindCx<'_, '_, '_>) -> Option<Arc<Transform>> {
    let raw = k.raw;
    let before = k.cx.problems.len();
    let mut params = Vec::new();
    let request = match &raw.request {
        Some(side) => compile_side(k, "request", side.get_ref(), REQUEST_MANAGED, &mut params),
        None => Side::default(),
    };
    let response = match &raw.response {
        Some(side) => {
            let managed = RESPONSE_MANAGED;
            let compiled = compile_side(k, "response", side.get_ref(), managed, &mut params);
            if !compiled.query.is_empty() {
                let message = "a response has no query: query operations belong to `request`";
                k.problem("response", side.span(), message.into());
            }
            compiled
        }
        None => Side::default(),
    };
    if request.is_empty() && response.is_empty() && k.cx.problems.len() == before {
        let message = "a transform changes nothing: give it `request` or `response` operations";
        k.problem_at_kind(message.into());
    }
    let max_bytes = k.cx.size(
        &format!("{}.max_body_bytes", k.key),
        &raw.max_body_bytes,
        1..=MAX_BODY,
        DEFAULT_MAX_BODY,
    );
    let body = BodyRules {
        max_bytes,
        on_oversize: on_body(k, "on_oversize", &raw.on_oversize, OnBody::Pass),
        on_non_json: on_body(k, "on_non_json", &raw.on_non_json, OnBody::Pass),
        on_malformed: on_body(k, "on_malformed", &raw.on_malformed, OnBody::Refuse),
    };
    Some(Arc::new(Transform {
        name: k.name.to_string(),
        request,
        response,
        body,
        params,
    }))
}

/// `pass` or `refuse`.
fn on_body(
    k: &mut KindCx<'_, '_, '_>,
    sub: &str,
    value: &Option<Spanned<String>>,
    default: OnBody,
) -> OnBody {
    match value.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
        None => default,
        Some(("pass", _)) => OnBody::Pass,
        Some(("refuse", _)) => OnBody::Refuse,
        Some((other, span)) => {
            let message = format!("unknown value `{other}`: expected `pass` or `refuse`");
            k.problem(sub, span, message);
            default
        }
    }
}

/// What names of one kind (headers, query parameters) must look like.
#[derive(Clone, Copy)]
struct Names {
    /// Checks a name; the error says why it is refused.
    check: fn(&str, &[&str]) -> Result<(), String>,
    /// Names refused on this side.
    managed: &'static [&'static str],
}

/// One side (`request` or `response`).
fn compile_side(
    k: &mut KindCx<'_, '_, '_>,
    side: &str,
    raw: &RawTransformSide,
    managed: &'static [&'static str],
    params: &mut Vec<ParamUse>,
) -> Side {
    let headers = Names {
        check: check_header,
        managed,
    };
    let query = Names {
        check: check_param,
        managed: &[],
    };
    let at = |what: &str| format!("{side}.{what}");
    Side {
        headers: FieldOps {
            remove: names(k, &at("remove_headers"), &raw.remove_headers, headers),
            rename: renames(k, &at("rename_headers"), &raw.rename_headers, headers),
            set: valued(k, &at("set_headers"), &raw.set_headers, headers, params),
            add: valued(k, &at("add_headers"), &raw.add_headers, headers, params),
            append: valued(
                k,
                &at("append_headers"),
                &raw.append_headers,
                headers,
                params,
            ),
        },
        query: FieldOps {
            remove: names(k, &at("remove_query"), &raw.remove_query, query),
            rename: renames(k, &at("rename_query"), &raw.rename_query, query),
            set: valued(k, &at("set_query"), &raw.set_query, query, params),
            add: valued(k, &at("add_query"), &raw.add_query, query, params),
            append: valued(k, &at("append_query"), &raw.append_query, query, params),
        },
        json: JsonOps {
            remove: json_removes(k, &at("remove_json"), &raw.remove_json),
            rename: json_renames(k, &at("rename_json"), &raw.rename_json),
            set: json_sets(k, &at("set_json"), &raw.set_json, params),
        },
    }
}

fn check_header(name: &str, managed: &[&str]) -> Result<(), String> {
    if !is_token(name) {
        return Err(format!("invalid header name `{name}`"));
    }
    if managed.iter().any(|m| m.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "`{name}` is written by the gateway itself and cannot be transformed"
        ));
    }
    Ok(())
}

fn check_param(name: &str, _: &[&str]) -> Result<(), String> {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~[]".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "invalid query parameter name `{name}`: letters, digits and `-._~[]` only"
        ))
    }
}

/// A checked name, or a problem at `key`.
fn name(
    k: &mut KindCx<'_, '_, '_>,
    key: &str,
    value: &Spanned<String>,
    names: Names,
) -> Option<Box<str>> {
    match (names.check)(value.get_ref(), names.managed) {
        Ok(()) => Some(value.get_ref().as_str().into()),
        Err(message) => {
            k.problem(key, value.span(), message);
            None
        }
    }
}

fn names(
    k: &mut KindCx<'_, '_, '_>,
    key: &str,
    list: &Option<Vec<Spanned<String>>>,
    kind: Names,
) -> Vec<Box<str>> {
    let mut out = Vec::new();
    for (i, entry) in list.iter().flatten().enumerate() {
        out.extend(name(k, &format!("{key}[{i}]"), entry, kind));
    }
    out
}

fn renames(
    k: &mut KindCx<'_, '_, '_>,
    key: &str,
    table: &Option<Ordered<String>>,
    kind: Names,
) -> Vec<(Box<str>, Box<str>)> {
    let mut out = Vec::new();
    for (from, to) in table.iter().flat_map(|t| &t.0) {
        let sub = format!("{key}.{}", from.get_ref());
        let old = name(k, &sub, from, kind);
        let new = name(k, &sub, to, kind);
        if let (Some(old), Some(new)) = (old, new) {
            out.push((old, new));
        }
    }
    out
}

fn valued(
    k: &mut KindCx<'_, '_, '_>,
    key: &str,
    table: &Option<Ordered<String>>,
    kind: Names,
    params: &mut Vec<ParamUse>,
) -> Vec<(Box<str>, Template)> {
    let mut out = Vec::new();
    for (field, value) in table.iter().flat_map(|t| &t.0) {
        let sub = format!("{key}.{}", field.get_ref());
        let checked = name(k, &sub, field, kind);
        let template = template(k, &sub, value.get_ref(), value.span(), params);
        if let (Some(n), Some(t)) = (checked, template) {
            out.push((n, t));
        }
    }
    out
}

/// A value template, or a problem at `key`; the route parameters it names go to `params`
/// (each route using the policy must capture them: checked with the routes).
fn template(
    k: &mut KindCx<'_, '_, '_>,
    key: &str,
    text: &str,
    span: Range<usize>,
    params: &mut Vec<ParamUse>,
) -> Option<Template> {
    if has_control(text) {
        k.problem(key, span, "control characters are not allowed".into());
        return None;
    }
    match Template::parse(text, false, &mut resolve) {
        Ok(t) => {
            for source in t.sources() {
                if let Source::ParamName(name) = source {
                    params.push(ParamUse {
                        name: name.clone(),
                        key: format!("{}.{key}", k.key),
                        span: span.clone(),
                    });
                }
            }
            Some(t)
        }
        Err(message) => {
            k.problem(key, span, format!("invalid template: {message}"));
            None
        }
    }
}

/// A JSON path; `wildcard_end` allows `*` as its last key.
fn json_path(
    k: &mut KindCx<'_, '_, '_>,
    key: &str,
    text: &Spanned<String>,
    wildcard_end: bool,
) -> Option<FieldPath> {
    let path = match FieldPath::parse(text.get_ref()) {
        Ok(p) => p,
        Err(message) => {
            k.problem(key, text.span(), format!("invalid JSON path: {message}"));
            return None;
        }
    };
    let segments = path.segments();
    let misplaced = segments.iter().enumerate().any(|(i, s)| {
        matches!(s, Segment::Key(key) if &**key == "*")
            && !(wildcard_end && i + 1 == segments.len())
    });
    if misplaced {
        let message = format!(
            "`{}`: `*` may only end a `remove_json` path (`internal.*`)",
            text.get_ref()
        );
        k.problem(key, text.span(), message);
        return None;
    }
    Some(path)
}

fn json_removes(
    k: &mut KindCx<'_, '_, '_>,
    key: &str,
    list: &Option<Vec<Spanned<String>>>,
) -> Vec<FieldPath> {
    let mut out = Vec::new();
    for (i, entry) in list.iter().flatten().enumerate() {
        out.extend(json_path(k, &format!("{key}[{i}]"), entry, true));
    }
    out
}

fn json_renames(
    k: &mut KindCx<'_, '_, '_>,
    key: &str,
    table: &Option<Ordered<String>>,
) -> Vec<(FieldPath, Box<str>)> {
    let mut out = Vec::new();
    for (from, to) in table.iter().flat_map(|t| &t.0) {
        let sub = format!("{key}.{}", from.get_ref());
        let Some(path) = json_path(k, &sub, from, false) else {
            continue;
        };
        if !matches!(path.segments().last(), Some(Segment::Key(_))) {
            let message = "a renamed path must end in a member name".to_string();
            k.problem(&sub, from.span(), message);
            continue;
        }
        let new = to.get_ref();
        if new.is_empty() || new.contains(['.', '[', ']']) || has_control(new) {
            let message = format!("`{new}` is not a member name (no `.`, `[` or `]`)");
            k.problem(&sub, to.span(), message);
            continue;
        }
        out.push((path, new.as_str().into()));
    }
    out
}

fn json_sets(
    k: &mut KindCx<'_, '_, '_>,
    key: &str,
    table: &Option<Ordered<toml::Value>>,
    params: &mut Vec<ParamUse>,
) -> Vec<(FieldPath, JsonValue)> {
    let mut out = Vec::new();
    for (field, value) in table.iter().flat_map(|t| &t.0) {
        let sub = format!("{key}.{}", field.get_ref());
        let path = json_path(k, &sub, field, false);
        let compiled = match value.get_ref() {
            toml::Value::String(text) => {
                template(k, &sub, text, value.span(), params).map(JsonValue::Text)
            }
            toml::Value::Integer(n) => Some(JsonValue::Literal(n.to_string().into())),
            toml::Value::Boolean(b) => Some(JsonValue::Literal(b.to_string().into())),
            toml::Value::Float(f) if f.is_finite() => {
                Some(JsonValue::Literal(f.to_string().into()))
            }
            _ => {
                let message = "expected a string (template), a number or a boolean".to_string();
                k.problem(&sub, value.span(), message);
                None
            }
        };
        if let (Some(path), Some(value)) = (path, compiled) {
            out.push((path, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    fn at(key: &str, line: usize) -> Vec<(String, Option<usize>)> {
        vec![(format!("policies.t.{key}"), Some(line))]
    }

    const HEAD: &str = "[policies.t]\nkind = \"transform\"\n";

    #[test]
    fn a_full_policy_compiles() {
        let text = format!(
            "{HEAD}max_body_bytes = \"2MiB\"\non_oversize = \"refuse\"\n\
             on_non_json = \"pass\"\non_malformed = \"pass\"\n\
             [policies.t.request]\nremove_headers = [\"X-Debug\"]\n\
             rename_headers = {{ \"X-Old\" = \"X-New\" }}\n\
             set_headers = {{ \"X-Consumer-Name\" = \"{{consumer}}\", \"X-Via\" = \"{{route}}/{{id}}\" }}\n\
             add_headers = {{ \"X-Ip\" = \"{{client_ip}}\" }}\n\
             append_headers = {{ \"X-Trace\" = \"{{request_id}} {{header.user-agent}}\" }}\n\
             remove_query = [\"debug\"]\nrename_query = {{ q = \"search\" }}\n\
             set_query = {{ v = \"2\" }}\n\
             remove_json = [\"password\", \"internal.*\", \"items[*].secret\"]\n\
             rename_json = {{ \"user.name\" = \"login\" }}\n\
             set_json = {{ \"meta.by\" = \"{{consumer}}\", \"meta.n\" = 3, \"meta.ok\" = true }}\n\
             [policies.t.response]\nremove_headers = [\"Server\"]\nremove_json = [\"ssn\"]\n"
        );
        assert_eq!(problems(&text), vec![]);
    }

    #[test]
    fn invalid_and_managed_header_names_are_refused() {
        let text = format!("{HEAD}request = {{ remove_headers = [\"X Bad\"] }}\n");
        assert_eq!(problems(&text), at("request.remove_headers[0]", 3));
        let text =
            format!("{HEAD}request = {{ set_headers = {{ \"Content-Length\" = \"1\" }} }}\n");
        assert_eq!(problems(&text), at("request.set_headers.Content-Length", 3));
        let text = format!(
            "{HEAD}response = {{ rename_headers = {{ \"X-A\" = \"Transfer-Encoding\" }} }}\n"
        );
        assert_eq!(problems(&text), at("response.rename_headers.X-A", 3));
    }

    #[test]
    fn invalid_templates_are_refused() {
        for value in ["{nope.x}", "{header.}", "a\\r\\nb"] {
            let text =
                format!("{HEAD}[policies.t.request]\nset_headers = {{ X-A = \"{value}\" }}\n");
            assert_eq!(problems(&text), at("request.set_headers.X-A", 4), "{value}");
        }
    }

    #[test]
    fn bad_paths_values_and_options_are_refused() {
        let cases = [
            (
                "request = { remove_json = [\"a..b\"] }",
                "request.remove_json[0]",
            ),
            (
                "request = { remove_json = [\"*.a\"] }",
                "request.remove_json[0]",
            ),
            (
                "request = { rename_json = { \"a\" = \"b.c\" } }",
                "request.rename_json.a",
            ),
            (
                "request = { set_json = { \"a\" = [1] } }",
                "request.set_json.a",
            ),
            ("response = { set_query = { a = \"1\" } }", "response"),
        ];
        for (body, key) in cases {
            let text = format!("{HEAD}{body}\n");
            assert_eq!(problems(&text), at(key, 3), "{body}");
        }
        let text =
            format!("{HEAD}on_malformed = \"maybe\"\nrequest = {{ remove_json = [\"a\"] }}\n");
        assert_eq!(problems(&text), at("on_malformed", 3));
        let text = format!("{HEAD}request = {{ remove_query = [\"a b\"] }}\n");
        assert_eq!(problems(&text), at("request.remove_query[0]", 3));
    }

    #[test]
    fn a_transform_that_changes_nothing_is_refused() {
        assert_eq!(problems(HEAD), vec![("policies.t".to_string(), Some(2))]);
    }

    /// A route parameter named by a template must be captured by every route using the
    /// policy: a problem at the template's key and line naming the route; a route that
    /// captures it, or a policy no route lacking it uses, is fine.
    #[test]
    fn route_parameters_must_be_captured_by_each_route_using_the_policy() {
        let policy = format!(
            "{HEAD}[policies.t.request]\nset_headers = {{ X-Id = \"user-{{id}}\" }}\n\
             set_json = {{ \"by\" = \"{{route}}\", \"uid\" = \"{{uid}}\" }}\n"
        );
        let route = |name: &str, path: &str| {
            format!(
                "[[routes]]\nname = \"{name}\"\nmatch = {{ path = \"{path}\" }}\n\
                 upstream = \"u\"\npolicies = [\"t\"]\n"
            )
        };
        let both = route("both", "/users/{id}/{uid}");
        assert_eq!(problems(&format!("{policy}{both}")), vec![]);
        // Shared by a route capturing both and one capturing `id` only: `{uid}` is refused,
        // at its own line, once (for the route lacking it).
        let text = format!("{policy}{both}{}", route("ids", "/items/{id}"));
        assert_eq!(problems(&text), at("request.set_json.uid", 5));
        let problems = crate::config::compile::check_without_router(&format!(
            "{}{text}",
            super::super::tests::ROUTE
        ));
        let message = &problems[0].message;
        assert!(
            message.contains("`{uid}`") && message.contains("route `ids`"),
            "{message}"
        );
        // A prefix route captures nothing: both templates are refused.
        let text = format!(
            "{policy}[[routes]]\nname = \"p\"\nmatch = {{ path_prefix = \"/p\" }}\n\
             upstream = \"u\"\npolicies = [\"t\"]\n"
        );
        let mut expected = at("request.set_headers.X-Id", 4);
        expected.extend(at("request.set_json.uid", 5));
        assert_eq!(super::super::tests::problems(&text), expected);
    }
}
