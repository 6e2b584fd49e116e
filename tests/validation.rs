//! `kind = "validate"` and `errors = "problem"` through the running gateway: valid requests
//! reach the upstream, invalid ones are answered 400/422/415 as RFC 9457 problem+json
//! listing each violation with its JSON pointer and never reach it; the OpenAPI operation
//! form reads a YAML document with local `$ref`s.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::upstream::Upstream;
use serde_json::Value;

const SPEC: &str = r#"
openapi: 3.1.0
info: { title: users, version: "1" }
paths:
  /users/{id}:
    put:
      operationId: putUser
      parameters:
        - { name: id, in: path, required: true, schema: { type: integer, minimum: 1 } }
        - { name: X-Tenant, in: header, required: true, schema: { type: string, pattern: "^[a-z]+$" } }
        - { name: dry_run, in: query, schema: { type: boolean } }
      requestBody:
        required: true
        content:
          application/json:
            schema: { $ref: '#/components/schemas/User' }
      responses:
        "200": { description: ok }
components:
  schemas:
    User:
      type: object
      required: [name, email]
      additionalProperties: false
      properties:
        name: { type: string, minLength: 1 }
        email: { type: string, format: email }
        tags: { type: array, items: { type: string }, maxItems: 3 }
"#;

fn spec_file(driver: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "ringgate-spec-{}-{driver}-{n}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, SPEC).expect("write spec");
    path.display().to_string()
}

fn gateway(driver: &str, up: &Upstream) -> Gateway {
    GatewayConfig::new(driver)
        .server("errors", "\"problem\"")
        .upstream("echo", &[up.addr()])
        .routes(&format!(
            r#"
[[routes]]
name = "users"
match = {{ path = "/users/{{id}}", methods = ["PUT"] }}
upstream = "echo"
policies = ["users-contract"]

[[routes]]
name = "search"
match = {{ path_exact = "/search" }}
upstream = "echo"
policies = ["search-contract"]

[[routes]]
name = "plain"
match = {{ path_exact = "/plain" }}
upstream = "echo"
errors = "text"
policies = ["key"]

[[consumers]]
name = "alice"
api_keys = ["a-plain-key-of-16-chars"]

[policies.key]
kind = "api_key"
header = "X-Api-Key"

[policies.users-contract]
kind = "validate"
openapi_file = "{}"
operation = "putUser"
status = 422

[policies.search-contract]
kind = "validate"
query_schema = '{{"type": "object", "required": ["q"], "additionalProperties": false, "properties": {{"q": {{"type": "string", "minLength": 2}}, "limit": {{"type": "integer", "maximum": 100}}}}}}'
header_schema = '{{"type": "object", "required": ["X-Client"], "properties": {{"X-Client": {{"enum": ["web", "ios"]}}}}}}'
"#,
            spec_file(driver)
        ))
        .start()
}

fn send(gw: &Gateway, request: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(request);
    raw.read_response()
}

fn put(gw: &Gateway, path: &str, tenant: &str, content_type: &str, body: &str) -> RawResponse {
    send(
        gw,
        &format!(
            "PUT {path} HTTP/1.1\r\nHost: t\r\nX-Tenant: {tenant}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The problem document of `r`, checked for RFC 9457's members.
fn problem(r: &RawResponse, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let doc: Value = serde_json::from_slice(&r.body).expect("problem JSON");
    assert_eq!(doc["status"], status);
    assert!(doc["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("https://ringgate.dev/problems/")));
    doc
}

fn pointers(doc: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = doc["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["in"].as_str().unwrap_or_default().to_string(),
                e["pointer"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

driver_tests! {
    fn an_openapi_operation_lets_valid_requests_through_and_refuses_the_rest(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let good = r#"{"name":"Ann","email":"ann@example.com","tags":["a"]}"#;
        let r = put(&gw, "/users/7?dry_run=true", "acme", "application/json", good);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(up.requests(), 1);

        let bad = r#"{"name":"","email":"nope","tags":["a","b","c","d"],"admin":true}"#;
        let r = put(&gw, "/users/0?dry_run=maybe", "ACME", "application/json", bad);
        let doc = problem(&r, 422);
        assert!(doc["type"].as_str().is_some_and(|t| t.ends_with("/request-invalid")));
        assert_eq!(
            pointers(&doc),
            [
                ("header", "/x-tenant"),
                ("path", "/id"),
                ("query", "/dry_run"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        // The head failed: the body is not looked at, and nothing went upstream.
        assert_eq!(up.requests(), 1);

        let r = put(&gw, "/users/7", "acme", "application/json", bad);
        let doc = problem(&r, 422);
        assert_eq!(
            pointers(&doc),
            [("body", ""), ("body", "/email"), ("body", "/name"), ("body", "/tags")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let doc = problem(&put(&gw, "/users/7", "acme", "application/json", "{not json"), 422);
        assert_eq!(pointers(&doc), [("body".to_string(), String::new())]);
        problem(&put(&gw, "/users/7", "acme", "text/plain", good), 415);
        problem(&put(&gw, "/users/7", "acme", "application/json", ""), 422);
        assert_eq!(up.requests(), 1);
    }

    fn json_schemas_check_the_query_and_headers(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let get = |target: &str, client: &str| {
            send(&gw, &format!("GET {target} HTTP/1.1\r\nHost: t\r\nx-client: {client}\r\nConnection: close\r\n\r\n"))
        };
        assert_eq!(get("/search?q=rust&limit=10", "web").status, 200);
        let doc = problem(&get("/search?q=r&limit=500&debug=1", "tv"), 400);
        assert_eq!(
            pointers(&doc),
            [("header", "/x-client"), ("query", ""), ("query", "/limit"), ("query", "/q")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let r = send(&gw, "GET /search HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let doc = problem(&r, 400);
        assert_eq!(doc["errors"].as_array().map(Vec::len), Some(2), "{doc}");
        assert_eq!(up.requests(), 1);
    }

    fn gateway_errors_are_problem_documents_where_configured(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let r = send(&gw, "GET /nowhere HTTP/1.1\r\nHost: t\r\nX-Request-Id: req-1\r\n\r\n");
        let doc = problem(&r, 404);
        assert_eq!(doc["type"], "https://ringgate.dev/problems/no-route");
        assert_eq!(doc["request_id"], "req-1");
        // A route may keep plain text.
        let r = send(&gw, "GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 401);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(r.header("www-authenticate").is_some());
    }
}
