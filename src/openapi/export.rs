//! The running configuration as an OpenAPI 3.1 document (`GET /openapi.json` on the admin
//! API, `ringgate --openapi --config FILE`).
//!
//! Built from a compiled [`Snapshot`], never from the file: what it shows is what the
//! gateway enforces. Each route becomes one operation per method it matches:
//! - its path: `path_exact` as is, templates with their `{name}` parameters, and what OpenAPI
//!   cannot express (a prefix, a trailing `*`, any path) as a final `{rest}` parameter with
//!   `x-ringgate-match: prefix`;
//! - its host as the path item's `servers`, its header conditions as `x-ringgate-headers`;
//! - the security schemes its authentication policies imply (`api_key` as `apiKey`, `basic`
//!   as HTTP Basic, `jwt` as Bearer JWT or OpenID Connect with `issuer`, `introspect` as
//!   OAuth 2.0), alternatives as alternatives, `authz` scopes as the requirement's scopes;
//! - a `validate` policy's parameters and request body;
//! - its answers: a `respond` route's static response, or the upstream's (`default`); the
//!   rate-limit fields as response headers; 401/403/400/422/429 where policies answer them.

use serde_json::{json, Map, Value};

use crate::config::{ErrorFormat, Route, RouteAction, Snapshot};
use crate::policy::{ApiKey, Stage};
use crate::router::PathMatch;

/// The methods a route without a `methods` condition is described with.
const ANY_METHOD: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

/// The OpenAPI 3.1 document describing `snapshot`.
pub fn document(snapshot: &Snapshot) -> Value {
    let mut paths = Map::new();
    let mut schemes = Map::new();
    let scheme = if snapshot.server.tls.is_empty() {
        "http"
    } else {
        "https"
    };
    for route in (0..snapshot.router.len()).filter_map(|i| snapshot.router.get(i)) {
        let (path, prefix) = path_template(&route.matcher.path);
        let item = paths
            .entry(path.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects");
        if let Some(host) = &route.matcher.host {
            item.entry("servers").or_insert_with(|| json!([]));
            if let Some(Value::Array(servers)) = item.get_mut("servers") {
                let url = server_url(scheme, host);
                if !servers.iter().any(|s| s["url"] == url) {
                    servers.push(server(&url));
                }
            }
        }
        let methods: Vec<String> = if route.matcher.methods.is_empty() {
            ANY_METHOD.iter().map(|m| m.to_string()).collect()
        } else {
            route
                .matcher
                .methods
                .iter()
                .map(|m| m.to_ascii_lowercase())
                .filter(|m| super::document::METHODS.contains(&m.as_str()))
                .collect()
        };
        for method in methods {
            let operation = operation(snapshot, route, &path, &method, prefix, &mut schemes);
            if item.contains_key(&method) {
                // Another route serves this path and method too (another host or header
                // condition): OpenAPI has one operation per pair; the others are listed.
                let others = item
                    .entry("x-ringgate-alternatives")
                    .or_insert_with(|| json!([]));
                if let Value::Array(others) = others {
                    others.push(json!({ "method": method, "operation": operation }));
                }
            } else {
                item.insert(method, operation);
            }
        }
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ringgate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The routes of the running ringgate configuration, with the \
                            security, validation and rate limits it enforces.",
        },
        "paths": paths,
    });
    if !schemes.is_empty() {
        doc["components"] = json!({ "securitySchemes": schemes });
    }
    doc
}

/// The document as indented JSON text.
pub fn document_text(snapshot: &Snapshot) -> String {
    let mut text = serde_json::to_string_pretty(&document(snapshot)).unwrap_or_default();
    text.push('\n');
    text
}

/// The OpenAPI path of a route's path condition, and whether it stands for a prefix.
fn path_template(path: &PathMatch) -> (String, bool) {
    match path {
        PathMatch::Exact(p) => (p.clone(), false),
        PathMatch::Template(t) => match t.strip_suffix('*') {
            Some(head) => (format!("{head}{{{}}}", rest_name(t)), true),
            None => (t.clone(), false),
        },
        PathMatch::Prefix(p) => {
            let head = p.trim_end_matches('/');
            (format!("{head}/{{{}}}", rest_name(p)), true)
        }
        PathMatch::Any => ("/{rest}".to_string(), true),
    }
}

/// The name of the parameter standing for the rest of the path (not one of the template's).
fn rest_name(template: &str) -> &'static str {
    if template.contains("{rest}") {
        "ringgate_rest"
    } else {
        "rest"
    }
}

/// `http://host` for a server; a wildcard host becomes a server variable.
fn server_url(scheme: &str, host: &str) -> String {
    match host.strip_prefix("*.") {
        Some(domain) => format!("{scheme}://{{subdomain}}.{domain}"),
        None => format!("{scheme}://{host}"),
    }
}

fn server(url: &str) -> Value {
    if url.contains("{subdomain}") {
        json!({ "url": url, "variables": { "subdomain": { "default": "www" } } })
    } else {
        json!({ "url": url })
    }
}

/// The names of the `{name}` parameters of an OpenAPI path.
fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn operation(
    snapshot: &Snapshot,
    route: &Route,
    path: &str,
    method: &str,
    prefix: bool,
    schemes: &mut Map<String, Value>,
) -> Value {
    let mut op = Map::new();
    op.insert(
        "operationId".into(),
        json!(format!("{}-{method}", route.name)),
    );
    op.insert("summary".into(), json!(format!("route `{}`", route.name)));
    op.insert("x-ringgate-route".into(), json!(route.name));
    if prefix {
        op.insert("x-ringgate-match".into(), json!("prefix"));
    }
    if route.matcher.methods.is_empty() {
        op.insert("x-ringgate-any-method".into(), json!(true));
    }
    if !route.matcher.headers.is_empty() {
        let headers: Map<String, Value> = route
            .matcher
            .headers
            .iter()
            .map(|(name, m)| {
                let value = match m {
                    crate::router::HeaderMatch::Present => json!("*"),
                    crate::router::HeaderMatch::Exact(v) => json!(v),
                };
                (name.clone(), value)
            })
            .collect();
        op.insert("x-ringgate-headers".into(), Value::Object(headers));
    }
    let mut parameters: Vec<Value> = Vec::new();
    let stages = route.policies.stages();
    for stage in stages {
        if let Stage::Validate(v) = stage {
            for p in &v.described.parameters {
                let same = |q: &Value| q["name"] == p["name"] && q["in"] == p["in"];
                if !parameters.iter().any(same) {
                    parameters.push(p.clone());
                }
            }
            if let Some(body) = &v.described.request_body {
                if method_has_body(method) {
                    op.insert("requestBody".into(), body.clone());
                }
            }
        }
    }
    for name in path_parameters(path) {
        let declared = parameters
            .iter()
            .any(|q| q["in"] == "path" && q["name"] == name);
        if !declared {
            parameters.push(json!({
                "name": name, "in": "path", "required": true, "schema": { "type": "string" }
            }));
        }
    }
    // Only the path's own parameters may be `in: path`.
    let names = path_parameters(path);
    parameters.retain(|q| q["in"] != "path" || names.iter().any(|n| q["name"] == *n));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    let security = security(stages, schemes);
    if !security.is_empty() {
        op.insert("security".into(), Value::Array(security));
    }
    let errors = route.errors.unwrap_or(snapshot.server.errors);
    op.insert("responses".into(), responses(route, stages, errors));
    Value::Object(op)
}

fn method_has_body(method: &str) -> bool {
    matches!(method, "post" | "put" | "patch" | "delete")
}

/// The security requirements of a chain's authentication stages (alternatives), with the
/// scopes its `authz` stages require; their schemes are added to `schemes`.
fn security(stages: &[Stage], schemes: &mut Map<String, Value>) -> Vec<Value> {
    let scopes: Vec<&str> = stages
        .iter()
        .filter_map(|s| match s {
            Stage::Authz(a) => Some(a.require_scopes.iter().map(String::as_str)),
            _ => None,
        })
        .flatten()
        .collect();
    let mut requirements = Vec::new();
    for stage in stages {
        for (name, scheme) in schemes_of(stage, &scopes) {
            schemes.entry(name.clone()).or_insert(scheme);
            requirements.push(json!({ name: scopes }));
        }
    }
    requirements
}

/// The security schemes one stage implies, by name.
fn schemes_of(stage: &Stage, scopes: &[&str]) -> Vec<(String, Value)> {
    match stage {
        Stage::ApiKey(p) => api_key_schemes(p),
        Stage::Basic(p) => vec![(
            p.name.clone(),
            json!({ "type": "http", "scheme": "basic", "description": format!("realm `{}`", p.realm) }),
        )],
        Stage::Jwt(p) => {
            let scheme = match p.discovery_url() {
                Some(url) => json!({ "type": "openIdConnect", "openIdConnectUrl": url }),
                None => json!({ "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }),
            };
            vec![(p.name.clone(), scheme)]
        }
        Stage::Introspect(p) => {
            let description = "OAuth 2.0 access token, checked by token introspection (RFC 7662)";
            let scheme = match &p.token_url {
                Some(url) => {
                    let scopes: Map<String, Value> =
                        scopes.iter().map(|s| (s.to_string(), json!(""))).collect();
                    json!({
                        "type": "oauth2",
                        "description": description,
                        "flows": { "clientCredentials": { "tokenUrl": url, "scopes": scopes } },
                    })
                }
                None => json!({ "type": "http", "scheme": "bearer", "description": description }),
            };
            vec![(p.name.clone(), scheme)]
        }
        _ => Vec::new(),
    }
}

fn api_key_schemes(p: &ApiKey) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Some(header) = &p.header {
        out.push((
            p.name.clone(),
            json!({ "type": "apiKey", "in": "header", "name": header }),
        ));
    }
    if let Some(query) = &p.query {
        let name = if p.header.is_some() {
            format!("{}-query", p.name)
        } else {
            p.name.clone()
        };
        out.push((
            name,
            json!({ "type": "apiKey", "in": "query", "name": query }),
        ));
    }
    out
}

/// The answers of a route: its own (static or the upstream's), and the policies' refusals.
fn responses(route: &Route, stages: &[Stage], errors: ErrorFormat) -> Value {
    let mut responses = Map::new();
    let limits: Vec<&str> = stages
        .iter()
        .filter_map(|s| match s {
            Stage::RateLimit(p) => Some(p.name.as_str()),
            _ => None,
        })
        .collect();
    let limit_headers = |retry_after: bool| -> Value {
        let mut headers = Map::new();
        if !limits.is_empty() {
            headers.insert(
                "RateLimit-Policy".into(),
                header(&format!("rate-limit policies: {}", limits.join(", "))),
            );
            headers.insert(
                "RateLimit".into(),
                header("requests remaining and seconds until the window resets"),
            );
        }
        if retry_after {
            headers.insert("Retry-After".into(), header("seconds to wait"));
        }
        Value::Object(headers)
    };
    let mut own = match &route.action {
        RouteAction::Respond(r) => {
            let mut response = json!({ "description": "answered by the gateway" });
            let content_type = r
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.clone());
            if !r.body.is_empty() {
                let media = content_type.unwrap_or_else(|| "application/octet-stream".into());
                response["content"] = json!({
                    media: { "example": String::from_utf8_lossy(&r.body) }
                });
            }
            (r.status.to_string(), response)
        }
        RouteAction::Proxy(_) => (
            "default".to_string(),
            json!({ "description": "the upstream's response" }),
        ),
        RouteAction::Compose(action) => ("200".to_string(), composite_response(&action.composite)),
    };
    if !limits.is_empty() {
        own.1["headers"] = limit_headers(false);
    }
    responses.insert(own.0, own.1);
    let error = |description: &str, problem: bool| -> Value {
        let media = if problem || errors == ErrorFormat::Problem {
            "application/problem+json"
        } else {
            "text/plain"
        };
        json!({ "description": description, "content": { media: { "schema": { "type": if problem || errors == ErrorFormat::Problem { "object" } else { "string" } } } } })
    };
    if stages
        .iter()
        .any(|s| s.phase() == crate::policy::Phase::Authentication)
    {
        let mut unauthorized = error("no or invalid credentials", false);
        unauthorized["headers"] = json!({ "WWW-Authenticate": header("the challenge") });
        responses.insert("401".into(), unauthorized);
    }
    if stages
        .iter()
        .any(|s| matches!(s, Stage::Authz(_) | Stage::IpFilter(_)))
    {
        responses.insert("403".into(), error("not allowed", false));
    }
    if let Some(status) = stages.iter().find_map(|s| match s {
        Stage::Validate(v) => Some(v.status),
        _ => None,
    }) {
        responses.insert(
            status.to_string(),
            error(
                "the request does not match its contract; `errors` lists each violation",
                true,
            ),
        );
        if stages
            .iter()
            .any(|s| matches!(s, Stage::Validate(v) if v.checks_body()))
        {
            responses.insert("415".into(), error("unsupported media type", true));
        }
    }
    if !limits.is_empty() {
        let mut limited = error("over a rate limit", false);
        limited["headers"] = limit_headers(true);
        responses.insert("429".into(), limited);
    }
    Value::Object(responses)
}

fn header(description: &str) -> Value {
    json!({ "description": description, "schema": { "type": "string" } })
}

/// A composite route's answer: a JSON object with one member per call placed under a key
/// (in config order), what is known of each without the backends' own schemas, and the
/// `Composite-Missing` field of partial answers.
fn composite_response(composite: &crate::compose::Composite) -> Value {
    use crate::compose::plan::Placement;
    let mut properties = Map::new();
    let mut required = Vec::new();
    for call in &composite.calls {
        let Placement::Key(path) = &call.into else {
            continue;
        };
        let Some(first) = path.first() else { continue };
        let description = if path.len() > 1 {
            format!("from call `{}` (at `{}`)", call.name, path.join("."))
        } else {
            format!("from call `{}`", call.name)
        };
        properties
            .entry(first.to_string())
            .or_insert_with(|| json!({ "description": description }));
        if call.required && path.len() == 1 {
            required.push(Value::String(first.to_string()));
        }
    }
    let mut schema = json!({ "type": "object", "properties": properties });
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    json!({
        "description": format!("composite `{}` of {} backend calls", composite.name, composite.calls.len()),
        "headers": {
            "Composite-Missing": {
                "description": "the optional calls left out of a partial answer",
                "schema": { "type": "string" }
            }
        },
        "content": { "application/json": { "schema": schema } }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_conditions_become_openapi_paths() {
        assert_eq!(
            path_template(&PathMatch::Exact("/health".into())),
            ("/health".into(), false)
        );
        assert_eq!(
            path_template(&PathMatch::Template("/u/{id}".into())),
            ("/u/{id}".into(), false)
        );
        assert_eq!(
            path_template(&PathMatch::Template("/u/{id}/*".into())),
            ("/u/{id}/{rest}".into(), true)
        );
        assert_eq!(
            path_template(&PathMatch::Template("/f/{rest}/*".into())),
            ("/f/{rest}/{ringgate_rest}".into(), true)
        );
        assert_eq!(
            path_template(&PathMatch::Prefix("/v1".into())),
            ("/v1/{rest}".into(), true)
        );
        assert_eq!(
            path_template(&PathMatch::Prefix("/".into())),
            ("/{rest}".into(), true)
        );
        assert_eq!(path_template(&PathMatch::Any), ("/{rest}".into(), true));
    }

    #[test]
    fn routes_policies_and_limits_are_described() {
        let text = r#"
[[upstreams]]
name = "u"
targets = [{ addr = "127.0.0.1:1" }]

[[consumers]]
name = "alice"
api_keys = ["a-plain-key-of-16-chars"]

[policies.key]
kind = "api_key"
header = "X-Api-Key"

[policies.scoped]
kind = "authz"
allow_groups = ["staff"]

[policies.per-client]
kind = "rate_limit"
key = "ip"
rate = "10/s"

[policies.shape]
kind = "validate"
query_schema = '{"type": "object", "properties": {"limit": {"type": "integer"}}, "required": ["limit"]}'
body_schema = '{"type": "object"}'

[[routes]]
name = "users"
match = { host = "api.example.com", path = "/users/{id}", methods = ["GET", "PUT"] }
upstream = "u"
policies = ["key", "scoped", "per-client", "shape"]

[[routes]]
name = "health"
match = { path_exact = "/health" }
respond = { status = 200, body = "ok", headers = { "Content-Type" = "text/plain" } }
"#;
        let snapshot = crate::config::load_str(text, "t.toml").expect("compiles");
        let doc = document(&snapshot);
        assert_eq!(doc["openapi"], "3.1.0");
        let item = &doc["paths"]["/users/{id}"];
        assert_eq!(item["servers"][0]["url"], "http://api.example.com");
        let put = &item["put"];
        assert_eq!(put["security"], json!([{ "key": [] }]));
        let params = put["parameters"].as_array().expect("parameters");
        assert!(params
            .iter()
            .any(|p| p["name"] == "id" && p["in"] == "path"));
        assert!(params
            .iter()
            .any(|p| p["name"] == "limit" && p["in"] == "query" && p["required"] == true));
        assert!(put["requestBody"]["content"]["application/json"]["schema"].is_object());
        assert!(item["get"].get("requestBody").is_none());
        assert!(put["responses"]["429"]["headers"]["RateLimit-Policy"].is_object());
        assert!(put["responses"]["default"]["headers"]["RateLimit"].is_object());
        assert!(put["responses"]["400"].is_object() && put["responses"]["401"].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"]["key"],
            json!({ "type": "apiKey", "in": "header", "name": "X-Api-Key" })
        );
        let health = &doc["paths"]["/health"]["get"];
        assert_eq!(
            health["responses"]["200"]["content"]["text/plain"]["example"],
            "ok"
        );
        assert_eq!(health["x-ringgate-any-method"], true);
    }
}
