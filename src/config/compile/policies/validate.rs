//! `kind = "validate"`: an OpenAPI operation (`openapi_file` + `operation`) or JSON Schemas
//! (`query_schema`, `header_schema`, `body_schema`, inline or `*_file`), compiled once.
//!
//! A schema that does not compile is a problem at its key, naming the file and the JSON
//! pointer of the failing location inside it.

use std::ops::Range;
use std::sync::Arc;

use jsonschema::Draft;
use serde_json::{json, Map, Value};
use toml::Spanned;

use super::KindCx;
use crate::openapi::document::{self, Document, Operation, Parameter};
use crate::policy::validate::{BodyRule, Described, Fields, Kind, PartRule, Schema, Validate};

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &[
    "openapi_file",
    "operation",
    "query_schema",
    "query_schema_file",
    "header_schema",
    "header_schema_file",
    "body_schema",
    "body_schema_file",
    "body_required",
    "status",
];
/// `status` when absent.
pub const DEFAULT_STATUS: u16 = 400;

/// Compiles a `validate` table.
pub(super) fn compile(k: &mut KindCx<'_, '_, '_>) -> Option<Arc<Validate>> {
    let status = status(k)?;
    let raw = k.raw;
    let schema_keys = [
        &raw.query_schema,
        &raw.query_schema_file,
        &raw.header_schema,
        &raw.header_schema_file,
        &raw.body_schema,
        &raw.body_schema_file,
    ];
    let schemas_set = schema_keys.iter().any(|v| v.is_some());
    let validate = match (&raw.openapi_file, &raw.operation) {
        (Some(file), Some(operation)) => {
            if schemas_set {
                let message = "set either `openapi_file` + `operation` or the `*_schema` keys, \
                               not both"
                    .to_string();
                k.problem("openapi_file", file.span(), message);
                return None;
            }
            if let Some(required) = &raw.body_required {
                let message = "the OpenAPI operation's `requestBody.required` decides".to_string();
                k.problem("body_required", required.span(), message);
                return None;
            }
            from_openapi(k, file, operation, status)?
        }
        (Some(file), None) => {
            let message = "`operation` is required with `openapi_file` (an operationId or \
                           `METHOD /path`)"
                .to_string();
            k.problem("openapi_file", file.span(), message);
            return None;
        }
        (None, Some(operation)) => {
            let message = "`operation` needs `openapi_file`".to_string();
            k.problem("operation", operation.span(), message);
            return None;
        }
        (None, None) if !schemas_set => {
            let message = "set `openapi_file` + `operation`, or at least one of `query_schema`, \
                           `header_schema`, `body_schema` (or their `_file` forms)"
                .to_string();
            k.problem_at_kind(message);
            return None;
        }
        (None, None) => from_schemas(k, status)?,
    };
    Some(Arc::new(validate))
}

fn status(k: &mut KindCx<'_, '_, '_>) -> Option<u16> {
    let Some(value) = &k.raw.status else {
        return Some(DEFAULT_STATUS);
    };
    match *value.get_ref() {
        400 => Some(400),
        422 => Some(422),
        other => {
            let message = format!("{other} is not allowed: expected 400 or 422");
            k.problem("status", value.span(), message);
            None
        }
    }
}

/// The rules of one OpenAPI operation.
fn from_openapi(
    k: &mut KindCx<'_, '_, '_>,
    file: &Spanned<String>,
    operation: &Spanned<String>,
    status: u16,
) -> Option<Validate> {
    let path = k.cx.path(file.get_ref());
    let doc = match Document::load(&path) {
        Ok(doc) => doc,
        Err(message) => {
            k.problem("openapi_file", file.span(), message);
            return None;
        }
    };
    let op = match doc.operation(operation.get_ref()) {
        Ok(op) => op,
        Err(message) => {
            k.problem("operation", operation.span(), message);
            return None;
        }
    };
    let draft = if doc.v30 {
        Draft::Draft4
    } else {
        Draft::Draft202012
    };
    let fail = |k: &mut KindCx<'_, '_, '_>, message: String| {
        let message = format!("{}: {}: {message}", file.get_ref(), op.label);
        k.problem("openapi_file", file.span(), message);
    };
    let mut described = Described::default();
    let mut part = |location: &str, k: &mut KindCx<'_, '_, '_>| -> Result<Option<PartRule>, ()> {
        let params: Vec<&Parameter> = op
            .parameters
            .iter()
            .filter(|p| p.location == location)
            .collect();
        if params.is_empty() {
            return Ok(None);
        }
        let mut properties = Map::new();
        let mut required = Vec::new();
        let mut named = Vec::new();
        for p in &params {
            let standalone = doc.standalone_schema(&p.schema);
            if let Err(e) = Schema::compile(&standalone, Some(draft)) {
                fail(k, format!("{}: {e}", p.pointer));
                return Err(());
            }
            described.parameters.push(json!({
                "name": p.name,
                "in": p.location,
                "required": p.required,
                "schema": exported(&standalone, draft),
            }));
            properties.insert(p.name.clone(), p.schema.clone());
            if p.required {
                required.push(Value::String(p.name.clone()));
            }
            named.push((p.name.clone(), Kind::of(&p.schema, &doc.root, p.explode)));
        }
        let object = json!({ "type": "object", "properties": properties, "required": required });
        let schema =
            Schema::compile(&doc.standalone_schema(&object), Some(draft)).map_err(|e| {
                fail(k, e);
            })?;
        let fields = Fields {
            named,
            include_unnamed: false,
        };
        Ok(Some(PartRule { schema, fields }))
    };
    let query = part("query", k).ok()?;
    let headers = part("header", k).ok()?;
    let cookies = part("cookie", k).ok()?;
    let path_rule = part("path", k).ok()?;
    let body = match &op.body {
        None => None,
        Some(body) => Some(openapi_body(
            k,
            &doc,
            &op,
            body,
            draft,
            file,
            &mut described,
        )?),
    };
    Some(Validate {
        name: k.name.to_string(),
        status,
        query,
        headers,
        cookies,
        path: path_rule,
        body,
        described: Arc::new(described),
    })
}

fn openapi_body(
    k: &mut KindCx<'_, '_, '_>,
    doc: &Document,
    op: &Operation,
    body: &document::RequestBody,
    draft: Draft,
    file: &Spanned<String>,
    described: &mut Described,
) -> Option<BodyRule> {
    let mut content = Map::new();
    let mut schema = None;
    if let Some((raw, pointer)) = &body.json_schema {
        let standalone = doc.standalone_schema(raw);
        match Schema::compile(&standalone, Some(draft)) {
            Ok(compiled) => schema = Some(compiled),
            Err(e) => {
                let message = format!(
                    "{}: {} (request body): {pointer}: {e}",
                    file.get_ref(),
                    op.label
                );
                k.problem("openapi_file", file.span(), message);
                return None;
            }
        }
        content.insert(
            "application/json".into(),
            json!({ "schema": exported(&standalone, draft) }),
        );
    }
    for media in &body.media_types {
        content.entry(media.clone()).or_insert_with(|| json!({}));
    }
    described.request_body = Some(json!({ "required": body.required, "content": content }));
    Some(BodyRule {
        schema,
        required: body.required,
        media_types: body.media_types.clone(),
    })
}

/// The rules of the `*_schema` keys.
fn from_schemas(k: &mut KindCx<'_, '_, '_>, status: u16) -> Option<Validate> {
    let raw = k.raw;
    let mut described = Described::default();
    let mut ok = true;
    let mut part = |k: &mut KindCx<'_, '_, '_>,
                    inline: (&str, &Option<Spanned<String>>),
                    file: (&str, &Option<Spanned<String>>),
                    location: &str|
     -> Option<(Value, Schema)> {
        let (mut value, at) = match load_schema(k, inline, file) {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(()) => {
                ok = false;
                return None;
            }
        };
        if location == "header" {
            lower_case_names(&mut value);
        }
        match Schema::compile(&value, None) {
            Ok(schema) => {
                if location != "body" {
                    described.parameters.extend(parameters_of(&value, location));
                }
                Some((value, schema))
            }
            Err(e) => {
                let (key, span, origin) = at;
                k.problem(&key, span, format!("{origin}{e}"));
                ok = false;
                None
            }
        }
    };
    let query = part(
        k,
        ("query_schema", &raw.query_schema),
        ("query_schema_file", &raw.query_schema_file),
        "query",
    );
    let headers = part(
        k,
        ("header_schema", &raw.header_schema),
        ("header_schema_file", &raw.header_schema_file),
        "header",
    );
    let body = part(
        k,
        ("body_schema", &raw.body_schema),
        ("body_schema_file", &raw.body_schema_file),
        "body",
    );
    if !ok {
        return None;
    }
    let body_required = raw.body_required.as_ref().map(|v| *v.get_ref());
    if let (Some(required), None) = (&raw.body_required, &body) {
        let message = "only allowed with `body_schema` or `body_schema_file`".to_string();
        k.problem("body_required", required.span(), message);
        return None;
    }
    let body = body.map(|(value, schema)| {
        let required = body_required.unwrap_or(true);
        described.request_body = Some(json!({
            "required": required,
            "content": { "application/json": { "schema": value } },
        }));
        BodyRule {
            schema: Some(schema),
            required,
            media_types: Vec::new(),
        }
    });
    let rule = |found: Option<(Value, Schema)>, include_unnamed: bool| {
        found.map(|(value, schema)| PartRule {
            fields: Fields::from_object_schema(&value, include_unnamed, false),
            schema,
        })
    };
    Some(Validate {
        name: k.name.to_string(),
        status,
        query: rule(query, true),
        headers: rule(headers, false),
        cookies: None,
        path: None,
        body,
        described: Arc::new(described),
    })
}

/// Where a problem with a schema goes: key, span, and a prefix naming the file.
type At = (String, Range<usize>, String);

/// The schema of an inline key or a file key (at most one of them), parsed.
fn load_schema(
    k: &mut KindCx<'_, '_, '_>,
    (inline_key, inline): (&str, &Option<Spanned<String>>),
    (file_key, file): (&str, &Option<Spanned<String>>),
) -> Result<Option<(Value, At)>, ()> {
    match (inline, file) {
        (Some(_), Some(f)) => {
            let message = format!("set `{inline_key}` or `{file_key}`, not both");
            k.problem(file_key, f.span(), message);
            Err(())
        }
        (Some(text), None) => match document::parse(text.get_ref()) {
            Ok(value) => Ok(Some((
                value,
                (inline_key.to_string(), text.span(), String::new()),
            ))),
            Err(e) => {
                k.problem(inline_key, text.span(), format!("not a JSON Schema: {e}"));
                Err(())
            }
        },
        (None, Some(name)) => {
            let path = k.cx.path(name.get_ref());
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))
                .and_then(|text| document::parse(&text));
            match parsed {
                Ok(value) => {
                    let origin = format!("{}: ", name.get_ref());
                    Ok(Some((value, (file_key.to_string(), name.span(), origin))))
                }
                Err(e) => {
                    k.problem(file_key, name.span(), e);
                    Err(())
                }
            }
        }
        (None, None) => Ok(None),
    }
}

/// Header names are case-insensitive: a header schema's `properties` and `required` are
/// read in lower case, as request headers are presented to it.
fn lower_case_names(schema: &mut Value) {
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        let lowered: Map<String, Value> = std::mem::take(properties)
            .into_iter()
            .map(|(name, v)| (name.to_ascii_lowercase(), v))
            .collect();
        *properties = lowered;
    }
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        for name in required.iter_mut() {
            if let Value::String(s) = name {
                s.make_ascii_lowercase();
            }
        }
    }
}

/// OpenAPI Parameter Objects for the top-level properties of a part's object schema.
fn parameters_of(schema: &Value, location: &str) -> Vec<Value> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, s)| {
            json!({
                "name": name,
                "in": location,
                "required": required.contains(&name.as_str()),
                "schema": s,
            })
        })
        .collect()
}

/// A schema as the exported document shows it: references into its own document replaced
/// by what they point to (the exported document has other `components`).
fn exported(standalone: &Value, draft: Draft) -> Value {
    let mut value = jsonschema::options()
        .with_draft(draft)
        .dereference(standalone)
        .unwrap_or_else(|_| standalone.clone());
    if let Value::Object(map) = &mut value {
        map.remove("components");
    }
    value
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    fn one(key: &str, line: usize) -> Vec<(String, Option<usize>)> {
        vec![(key.to_string(), Some(line))]
    }

    #[test]
    fn needs_a_contract() {
        let text = "[policies.v]\nkind = \"validate\"\nstatus = 422\n";
        assert_eq!(problems(text), one("policies.v", 2));
    }

    #[test]
    fn refuses_other_statuses_and_mixed_modes() {
        let text = "[policies.v]\nkind = \"validate\"\nbody_schema = \"{}\"\nstatus = 418\n";
        assert_eq!(problems(text), one("policies.v.status", 4));
        let text = "[policies.v]\nkind = \"validate\"\nopenapi_file = \"a.yaml\"\n\
                    operation = \"x\"\nbody_schema = \"{}\"\n";
        assert_eq!(problems(text), one("policies.v.openapi_file", 3));
        let text = "[policies.v]\nkind = \"validate\"\noperation = \"x\"\n";
        assert_eq!(problems(text), one("policies.v.operation", 3));
    }

    #[test]
    fn a_bad_inline_schema_is_a_problem_at_its_key_with_the_location() {
        let text = "[policies.v]\nkind = \"validate\"\n\
                    body_schema = '{\"type\": \"object\", \"properties\": {\"n\": {\"type\": 5}}}'\n";
        assert_eq!(problems(text), one("policies.v.body_schema", 3));
        let found = crate::config::compile::check_without_router(&format!(
            "[[upstreams]]\nname = \"u\"\ntargets = [{{ addr = \"127.0.0.1:1\" }}]\n{text}"
        ));
        assert!(
            found[0].message.contains("/properties/n/type"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn a_missing_file_or_operation_is_named() {
        let text = "[policies.v]\nkind = \"validate\"\nbody_schema_file = \"/nonexistent.json\"\n";
        assert_eq!(problems(text), one("policies.v.body_schema_file", 3));
        let text = "[policies.v]\nkind = \"validate\"\nopenapi_file = \"/nonexistent.yaml\"\n\
                    operation = \"getUser\"\n";
        assert_eq!(problems(text), one("policies.v.openapi_file", 3));
    }
}
