//! The OpenAPI export through the binary: `ringgate --openapi --config FILE` and the admin
//! API's `/openapi.json` give the same document, and a real OpenAPI 3.1 validator
//! (openapi-spec-validator, installed by `.ci/run`) accepts it.
mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::client;
use common::process::{temp_config, Ringgate};

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
workers = 1
pin_workers = false

[admin]
listen = "127.0.0.1:0"

[[upstreams]]
name = "users"
targets = [{ addr = "127.0.0.1:1" }]

[[upstreams]]
name = "idp"
targets = [{ addr = "127.0.0.1:2" }]

[[consumers]]
name = "alice"
api_keys = ["a-plain-key-of-16-chars"]

[policies.key]
kind = "api_key"
header = "X-Api-Key"
query = "api_key"

[policies.login]
kind = "basic"

[policies.bearer]
kind = "jwt"
algorithms = ["HS256"]
secret = "0123456789abcdef0123456789abcdef"

[policies.opaque]
kind = "introspect"
upstream = "idp"
path = "/introspect"
token_url = "https://idp.example.com/oauth2/token"

[policies.readers]
kind = "authz"
require_scopes = ["users:read"]

[policies.per-client]
kind = "rate_limit"
key = "ip"
rate = "10/s"

[policies.user-shape]
kind = "validate"
query_schema = '{"type": "object", "properties": {"limit": {"type": "integer", "maximum": 100}}}'
body_schema = '{"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}'

[[routes]]
name = "users"
match = { host = "api.example.com", path = "/users/{id}", methods = ["GET", "PUT"] }
upstream = "users"
policies = ["bearer", "opaque", "readers", "per-client", "user-shape"]

[[routes]]
name = "legacy"
match = { path_prefix = "/legacy", headers = { "X-Legacy" = "1" } }
upstream = "users"
policies = ["key", "login"]

[[routes]]
name = "files"
match = { path = "/files/{bucket}/*", methods = ["GET"] }
upstream = "users"

[[routes]]
name = "health"
match = { path_exact = "/health" }
respond = { status = 200, body = "ok", headers = { "Content-Type" = "text/plain" } }
"#;

fn admin_addr(gw: &Ringgate) -> SocketAddr {
    let line = gw.wait_for_line("admin API listening on");
    line.rsplit(' ')
        .next()
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in `{line}`"))
}

/// Runs openapi-spec-validator on `document`; panics with its report when it refuses it.
fn assert_valid_openapi_31(document: &str) {
    let path = std::env::temp_dir().join(format!("ringgate-openapi-{}.json", std::process::id()));
    std::fs::write(&path, document).expect("write document");
    let output = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&path)
        .output()
        .expect("python3 runs (install openapi-spec-validator: see .ci/run)");
    let _ = std::fs::remove_file(&path);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !report.contains("No module named"),
        "openapi-spec-validator is not installed (`python3 -m pip install openapi-spec-validator`, see .ci/run): {report}"
    );
    assert!(
        output.status.success(),
        "the validator refused the document:\n{report}\n{document}"
    );
    assert!(report.contains("OK"), "{report}");
}

#[test]
fn the_exported_document_is_valid_openapi_31_from_the_cli_and_the_admin_api() {
    let config = temp_config(CONFIG);
    let output = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .arg("--openapi")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run ringgate --openapi");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    assert_valid_openapi_31(&printed);

    let doc: serde_json::Value = serde_json::from_str(&printed).expect("JSON");
    let users = &doc["paths"]["/users/{id}"];
    assert_eq!(
        users["get"]["security"],
        serde_json::json!([{ "bearer": ["users:read"] }, { "opaque": ["users:read"] }])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["opaque"]["type"],
        "oauth2"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["login"]["scheme"],
        "basic"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["key-query"]["in"],
        "query"
    );
    assert!(users["put"]["requestBody"].is_object());
    assert!(users["get"]["responses"]["429"]["headers"]["RateLimit"].is_object());
    assert_eq!(
        doc["paths"]["/legacy/{rest}"]["get"]["x-ringgate-match"],
        "prefix"
    );
    assert!(doc["paths"]["/files/{bucket}/{rest}"]["get"].is_object());

    let gw = Ringgate::spawn(CONFIG, &[]);
    let admin = admin_addr(&gw);
    let reply = client::get(&format!("http://{admin}/openapi.json"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.text(), printed, "the admin API and the CLI disagree");
}
