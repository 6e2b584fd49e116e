//! Counts heap allocations per request on a route with policies: the chain must not allocate
//! for a passing request on a warm keep-alive connection (credentials verified once are served
//! from the worker's caches). Same measurement as `allocations.rs`.

mod counting_alloc;
mod fixed_backend;

/// The route's policy chain on a passing request: an IP filter, an API key and a group check.
const API_KEY_CHAIN: &str = r#"policies = ["ip", "key", "staff"]
[policies.ip]
kind = "ip_filter"
allow = ["127.0.0.0/8"]
deny = ["10.0.0.0/8"]
[policies.key]
kind = "api_key"
[policies.staff]
kind = "authz"
allow_groups = ["staff"]
[[consumers]]
name = "alice"
groups = ["staff"]
api_keys = ["alice-key-0123456789"]
"#;

const API_KEY_REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: bench\r\nX-Api-Key: alice-key-0123456789\r\nX-Consumer: forged\r\n\r\n";

/// An API key in the query, hidden from the upstream (`hide_credentials`): the parameter is
/// removed from the forwarded query in place.
const HIDDEN_QUERY_KEY_CHAIN: &str = r#"policies = ["key"]
[policies.key]
kind = "api_key"
query = "api_key"
hide_credentials = true
[[consumers]]
name = "alice"
api_keys = ["alice-key-0123456789"]
"#;

const HIDDEN_QUERY_KEY_REQUEST: &[u8] =
    b"GET /hello?a=1&api_key=alice-key-0123456789&b=2 HTTP/1.1\r\nHost: bench\r\n\r\n";

/// A CORS policy with credentials and every kind of origin pattern, on an actual request
/// from an allowed origin: the origin is matched in a stack buffer, the CORS fields, the
/// upstream's `Access-Control-*` removal and the merged `Vary` are written into the
/// connection's reused buffers.
const CORS_CHAIN: &str = r#"policies = ["web"]
[policies.web]
kind = "cors"
origins = ["https://app.example.com", "https://*.example.org"]
origin_regexes = ['https://pr-[0-9]+\.preview\.example\.net']
headers = ["content-type", "authorization"]
expose_headers = ["x-request-id"]
credentials = true
"#;

const CORS_REQUEST: &[u8] =
    b"GET /hello HTTP/1.1\r\nHost: bench\r\nOrigin: https://pr-7.preview.example.net\r\n\r\n";

/// A `transform` of headers and query on both sides, with templates of every kind a header
/// can carry (consumer, request id, client address, route, a client header, a route-less
/// literal): values are rendered into the connection's reused buffers and fields are edited
/// as borrowed slices.
const TRANSFORM_CHAIN: &str = r#"policies = ["key", "shape"]
[policies.key]
kind = "api_key"
[policies.shape]
kind = "transform"
[policies.shape.request]
remove_headers = ["x-debug"]
rename_headers = { x-old = "x-new" }
set_headers = { x-consumer-name = "{consumer}", x-trace = "rg-{request_id}", x-client = "{client_ip}" }
add_headers = { x-route = "{route}" }
append_headers = { x-agent = "via {header.user-agent}" }
remove_query = ["debug"]
set_query = { who = "{consumer}" }
[policies.shape.response]
remove_headers = ["server"]
set_headers = { x-served-for = "{consumer}" }
[[consumers]]
name = "alice"
api_keys = ["alice-key-0123456789"]
"#;

const TRANSFORM_REQUEST: &[u8] = b"GET /hello?debug=1&a=2 HTTP/1.1\r\nHost: bench\r\nX-Api-Key: alice-key-0123456789\r\nX-Debug: 1\r\nX-Old: o\r\nUser-Agent: t/1\r\n\r\n";

/// An IP filter, a JWT (HS256, verified once, then served from the worker's cache) and a
/// scope check.
fn jwt_chain_and_request() -> (String, Vec<u8>) {
    let secret = "alloc-test-secret-of-32-bytes-or-more";
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let claims = serde_json::json!({ "sub": "alice", "exp": exp, "scope": "read" });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign");
    let chain = format!(
        r#"policies = ["ip", "jwt", "read"]
[policies.ip]
kind = "ip_filter"
allow = ["127.0.0.0/8", "::1"]
[policies.jwt]
kind = "jwt"
algorithms = ["HS256"]
secret = "{secret}"
forward_claims = {{ sub = "X-User-Id" }}
[policies.read]
kind = "authz"
require_scopes = ["read"]
"#
    );
    let request =
        format!("GET /hello HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n");
    (chain, request.into_bytes())
}

/// Basic authentication (bcrypt, verified once, then from the worker's cache).
fn basic_chain_and_request() -> (String, Vec<u8>) {
    let hash = bcrypt::hash("pw", 4).expect("bcrypt");
    let chain = format!(
        r#"policies = ["login"]
[policies.login]
kind = "basic"
[[consumers]]
name = "alice"
password_hash = "{hash}"
"#
    );
    // alice:pw
    let request =
        b"GET /hello HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic YWxpY2U6cHc=\r\n\r\n";
    (chain, request.to_vec())
}

fn assert_policy_budget(driver: &str, what: &str, chain: &str, request: &[u8]) {
    let per_request = counting_alloc::per_proxied_request_sending(driver, chain, request);
    println!("{driver}, {what}: {per_request:.2} allocations per proxied request");
    assert!(
        per_request <= counting_alloc::BUDGET,
        "{what}: {per_request} allocations per request"
    );
}

/// One test for every case and both drivers: the allocation counter is process-wide, so the
/// measurements must not overlap (another test's start-up would be counted).
#[test]
fn policy_chain_allocations_per_request_both_drivers() {
    let (jwt_chain, jwt_request) = jwt_chain_and_request();
    let (basic_chain, basic_request) = basic_chain_and_request();
    for driver in ["io_uring", "legacy"] {
        let baseline = counting_alloc::per_proxied_request(driver, "");
        println!("{driver}, no policies: {baseline:.2} allocations per proxied request");
        assert_policy_budget(
            driver,
            "ip + api key + groups",
            API_KEY_CHAIN,
            API_KEY_REQUEST,
        );
        assert_policy_budget(driver, "ip + jwt + scopes", &jwt_chain, &jwt_request);
        assert_policy_budget(driver, "basic", &basic_chain, &basic_request);
        assert_policy_budget(
            driver,
            "hidden query api key",
            HIDDEN_QUERY_KEY_CHAIN,
            HIDDEN_QUERY_KEY_REQUEST,
        );
        assert_policy_budget(driver, "cors", CORS_CHAIN, CORS_REQUEST);
        assert_policy_budget(
            driver,
            "api key + header and query transform",
            TRANSFORM_CHAIN,
            TRANSFORM_REQUEST,
        );
    }
}
