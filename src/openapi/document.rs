//! Reading an OpenAPI 3.0 or 3.1 document (JSON or YAML) and finding one operation's request
//! contract in it: its parameters by location and its JSON request body schema.
//!
//! Config time only. References are followed within the document (`#/components/...`);
//! a `$ref` to another file or a URL is refused, so loading a document never touches the
//! network. OpenAPI 3.0 Schema Objects are not JSON Schema: `nullable: true` is rewritten as
//! a `"null"` type, and their schemas are compiled as Draft 4 (whose boolean
//! `exclusiveMinimum` and ignored `$ref` siblings are 3.0's); 3.1 schemas are 2020-12.

use std::path::Path;

use serde_json::{Map, Value};

/// The HTTP methods an OpenAPI Path Item may hold operations for.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// How deep `$ref` chains are followed before the document is called cyclic.
const MAX_REF_DEPTH: usize = 32;

/// A loaded document.
#[derive(Debug, Clone)]
pub struct Document {
    /// The whole document, JSON.
    pub root: Value,
    /// Whether it is OpenAPI 3.0 (else 3.1).
    pub v30: bool,
}

/// One parameter of an operation.
#[derive(Debug, Clone)]
pub struct Parameter {
    /// `name` (lower-cased for headers).
    pub name: String,
    /// `query`, `header`, `path` or `cookie`.
    pub location: String,
    /// `required`.
    pub required: bool,
    /// Its schema (references unresolved).
    pub schema: Value,
    /// `style`, defaulted by location.
    pub style: String,
    /// `explode`, defaulted by style.
    pub explode: bool,
    /// JSON pointer of the schema in the document (for error locations).
    pub pointer: String,
}

/// The request body of an operation.
#[derive(Debug, Clone)]
pub struct RequestBody {
    /// `required`.
    pub required: bool,
    /// The JSON media type's schema, if the body has a JSON media type with one.
    pub json_schema: Option<(Value, String)>,
    /// Every documented media type.
    pub media_types: Vec<String>,
}

/// What a request to one operation must look like.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `METHOD /path` as written in the document.
    pub label: String,
    /// Its parameters (path item's, overridden by the operation's).
    pub parameters: Vec<Parameter>,
    /// Its request body, if documented.
    pub body: Option<RequestBody>,
}

impl Document {
    /// Reads `path` (JSON when it parses as JSON, else YAML).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let root = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_value(root).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A document from its parsed JSON.
    pub fn from_value(root: Value) -> Result<Self, String> {
        let version = root
            .get("openapi")
            .and_then(Value::as_str)
            .ok_or("not an OpenAPI 3.x document: no `openapi` version string")?;
        let v30 = if version.starts_with("3.0") {
            true
        } else if version.starts_with("3.1") || version.starts_with("3.2") {
            false
        } else {
            return Err(format!(
                "OpenAPI version `{version}` is not supported: expected 3.0.x or 3.1.x"
            ));
        };
        Ok(Document { root, v30 })
    }

    /// The operation named `wanted`: an `operationId`, or `METHOD /path` as in the document.
    pub fn operation(&self, wanted: &str) -> Result<Operation, String> {
        let paths = self
            .root
            .get("paths")
            .and_then(Value::as_object)
            .ok_or("the document has no `paths`")?;
        let by_route = wanted
            .split_once(' ')
            .map(|(m, p)| (m.to_ascii_lowercase(), p));
        for (path, item) in paths {
            let item_pointer = format!("/paths/{}", escape(path));
            let item = self.follow(item, &item_pointer)?.0;
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let id_matches = op.get("operationId").and_then(Value::as_str) == Some(wanted);
                let route_matches = by_route
                    .as_ref()
                    .is_some_and(|(m, p)| m == method && p == path);
                if id_matches || route_matches {
                    let pointer = format!("{item_pointer}/{method}");
                    return self.describe(item, &item_pointer, op, &pointer, method, path);
                }
            }
        }
        Err(format!(
            "no operation `{wanted}` in the document: name an operationId or `METHOD /path`"
        ))
    }

    fn describe(
        &self,
        item: &Value,
        item_pointer: &str,
        op: &Value,
        op_pointer: &str,
        method: &str,
        path: &str,
    ) -> Result<Operation, String> {
        let mut parameters: Vec<Parameter> = Vec::new();
        for (owner, pointer) in [(item, item_pointer), (op, op_pointer)] {
            let list = owner.get("parameters").and_then(Value::as_array);
            for (i, p) in list.into_iter().flatten().enumerate() {
                let param = self.parameter(p, &format!("{pointer}/parameters/{i}"))?;
                // An operation's parameter overrides the path item's of the same name and place.
                parameters.retain(|q| !(q.name == param.name && q.location == param.location));
                parameters.push(param);
            }
        }
        let body = match op.get("requestBody") {
            None => None,
            Some(body) => Some(self.request_body(body, &format!("{op_pointer}/requestBody"))?),
        };
        Ok(Operation {
            label: format!("{} {path}", method.to_ascii_uppercase()),
            parameters,
            body,
        })
    }

    fn parameter(&self, value: &Value, pointer: &str) -> Result<Parameter, String> {
        let (p, pointer) = self.follow(value, pointer)?;
        let field = |name: &str| p.get(name).and_then(Value::as_str);
        let name = field("name").ok_or_else(|| format!("{pointer}: a parameter needs `name`"))?;
        let location = field("in").ok_or_else(|| format!("{pointer}: a parameter needs `in`"))?;
        if !matches!(location, "query" | "header" | "path" | "cookie") {
            return Err(format!(
                "{pointer}/in: unknown parameter location `{location}`"
            ));
        }
        let schema = match (p.get("schema"), p.get("content")) {
            (Some(schema), _) => schema.clone(),
            (None, Some(_)) => {
                return Err(format!(
                    "{pointer}: parameters described by `content` are not supported; use `schema`"
                ))
            }
            (None, None) => Value::Bool(true),
        };
        let style = field("style")
            .unwrap_or(match location {
                "query" | "cookie" => "form",
                _ => "simple",
            })
            .to_string();
        if !matches!(style.as_str(), "form" | "simple") {
            return Err(format!(
                "{pointer}/style: style `{style}` is not supported (form and simple are)"
            ));
        }
        let explode = p
            .get("explode")
            .and_then(Value::as_bool)
            .unwrap_or(style == "form");
        let name = if location == "header" {
            name.to_ascii_lowercase()
        } else {
            name.to_string()
        };
        Ok(Parameter {
            name,
            location: location.to_string(),
            required: p.get("required").and_then(Value::as_bool).unwrap_or(false)
                || location == "path",
            schema,
            style,
            explode,
            pointer: format!("{pointer}/schema"),
        })
    }

    fn request_body(&self, value: &Value, pointer: &str) -> Result<RequestBody, String> {
        let (body, pointer) = self.follow(value, pointer)?;
        let content = body.get("content").and_then(Value::as_object);
        let media_types: Vec<String> = content.iter().flat_map(|c| c.keys().cloned()).collect();
        let json_schema = content.and_then(|c| {
            c.iter()
                .find(|(media, _)| is_json_media_type(media))
                .and_then(|(media, m)| {
                    let schema = m.get("schema")?.clone();
                    Some((
                        schema,
                        format!("{pointer}/content/{}/schema", escape(media)),
                    ))
                })
        });
        Ok(RequestBody {
            required: body
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            json_schema,
            media_types,
        })
    }

    /// `value`, or what its `$ref` chain points to, with its pointer.
    pub fn follow<'d>(
        &'d self,
        mut value: &'d Value,
        pointer: &str,
    ) -> Result<(&'d Value, String), String> {
        let mut pointer = pointer.to_string();
        for _ in 0..MAX_REF_DEPTH {
            let Some(target) = value.get("$ref").and_then(Value::as_str) else {
                return Ok((value, pointer));
            };
            let local = target.strip_prefix('#').ok_or_else(|| {
                format!("{pointer}/$ref: `{target}` is not a local reference (`#/...`)")
            })?;
            value = self
                .root
                .pointer(local)
                .ok_or_else(|| format!("{pointer}/$ref: `{target}` points at nothing"))?;
            pointer = local.to_string();
        }
        Err(format!("{pointer}: `$ref` chain too long or cyclic"))
    }

    /// A schema ready to compile on its own: 3.0 schemas rewritten, the document's
    /// `components` carried along so that its local `$ref`s resolve.
    pub fn standalone_schema(&self, schema: &Value) -> Value {
        let mut schema = schema.clone();
        if self.v30 {
            rewrite_v30(&mut schema);
        }
        let mut root = match schema {
            Value::Object(map) => map,
            other => {
                let mut map = Map::new();
                map.insert("allOf".into(), Value::Array(vec![other]));
                map
            }
        };
        if let Some(components) = self.root.get("components") {
            let mut components = components.clone();
            if self.v30 {
                rewrite_v30(&mut components);
            }
            root.entry("components").or_insert(components);
        }
        Value::Object(root)
    }
}

/// Whether a media type carries JSON: `application/json` or a `+json` suffix.
pub fn is_json_media_type(media: &str) -> bool {
    let essence = media.split(';').next().unwrap_or("").trim().as_bytes();
    let suffix = b"+json";
    essence.eq_ignore_ascii_case(b"application/json")
        || (essence.len() > suffix.len()
            && essence[essence.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
}

/// Parses JSON or YAML text into JSON.
pub fn parse(text: &str) -> Result<Value, String> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(value);
    }
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("neither JSON nor YAML: {e}"))?;
    yaml_to_json(yaml)
}

/// YAML to JSON; mapping keys that are numbers or booleans (`200:` under `responses`)
/// become their text.
fn yaml_to_json(yaml: serde_yaml_ng::Value) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).map_err(|e| e.to_string())?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    _ => return Err("a mapping key is neither a string nor a number".into()),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

/// Rewrites OpenAPI 3.0 `nullable: true` as JSON Schema's `"null"` type, everywhere.
fn rewrite_v30(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get_mut("type") {
                    Some(Value::String(t)) => {
                        let t = std::mem::take(t);
                        map.insert("type".into(), serde_json::json!([t, "null"]));
                    }
                    Some(_) => {}
                    None => {}
                }
                if let Some(Value::Array(values)) = map.get_mut("enum") {
                    if !values.contains(&Value::Null) {
                        values.push(Value::Null);
                    }
                }
            }
            map.values_mut().for_each(rewrite_v30);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_v30),
        _ => {}
    }
}

/// A JSON pointer segment (RFC 6901: `~` as `~0`, `/` as `~1`).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r"
openapi: 3.0.3
info: { title: t, version: '1' }
paths:
  /users/{id}:
    parameters:
      - { name: id, in: path, required: true, schema: { type: integer } }
      - { name: X-Tenant, in: header, schema: { type: string } }
    put:
      operationId: putUser
      parameters:
        - { name: X-Tenant, in: header, required: true, schema: { type: string, minLength: 2 } }
        - $ref: '#/components/parameters/Verbose'
      requestBody:
        $ref: '#/components/requestBodies/User'
      responses:
        200: { description: ok }
components:
  parameters:
    Verbose: { name: verbose, in: query, schema: { type: boolean } }
  requestBodies:
    User:
      required: true
      content:
        application/json:
          schema: { $ref: '#/components/schemas/User' }
  schemas:
    User:
      type: object
      properties:
        nick: { type: string, nullable: true }
";

    #[test]
    fn finds_an_operation_by_id_or_route_with_inherited_and_referenced_parts() {
        let doc = Document::from_value(parse(YAML).expect("yaml")).expect("openapi");
        assert!(doc.v30);
        for wanted in ["putUser", "PUT /users/{id}"] {
            let op = doc.operation(wanted).expect("found");
            assert_eq!(op.label, "PUT /users/{id}");
            let names: Vec<(&str, &str, bool)> = op
                .parameters
                .iter()
                .map(|p| (p.name.as_str(), p.location.as_str(), p.required))
                .collect();
            assert_eq!(
                names,
                [
                    ("id", "path", true),
                    ("x-tenant", "header", true),
                    ("verbose", "query", false),
                ]
            );
            let body = op.body.expect("body");
            assert!(body.required);
            let (schema, pointer) = body.json_schema.expect("json schema");
            assert_eq!(schema["$ref"], "#/components/schemas/User");
            assert_eq!(
                pointer,
                "/components/requestBodies/User/content/application~1json/schema"
            );
        }
        assert!(doc.operation("getUser").is_err());
    }

    #[test]
    fn yaml_number_keys_become_strings() {
        let doc = parse(YAML).expect("yaml");
        assert!(doc["paths"]["/users/{id}"]["put"]["responses"]["200"].is_object());
    }

    #[test]
    fn a_v30_schema_standalone_has_null_types_and_the_components() {
        let doc = Document::from_value(parse(YAML).expect("yaml")).expect("openapi");
        let schema =
            doc.standalone_schema(&serde_json::json!({ "$ref": "#/components/schemas/User" }));
        assert_eq!(
            schema["components"]["schemas"]["User"]["properties"]["nick"]["type"],
            serde_json::json!(["string", "null"])
        );
    }

    #[test]
    fn refuses_remote_references_and_unknown_versions() {
        let doc = Document::from_value(serde_json::json!({
            "openapi": "3.1.0",
            "paths": { "/a": { "get": { "operationId": "a", "parameters": [{ "$ref": "other.yaml#/p" }] } } }
        }))
        .expect("openapi");
        let err = doc.operation("a").expect_err("remote ref");
        assert!(err.contains("not a local reference"), "{err}");
        assert!(Document::from_value(serde_json::json!({ "swagger": "2.0" })).is_err());
        assert!(Document::from_value(serde_json::json!({ "openapi": "4.0.0" })).is_err());
    }
}
