//! Measures `Chain::check` on a passing request: an IP filter plus an API key (SHA-256 of the
//! presented key, digest lookup, constant-time compare), an IP filter plus a cached HS256 JWT
//! (keyed hash, constant-time token compare), and the naive baseline of finding the key
//! header alone.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ringgate::config::{load_str, Snapshot};
use ringgate::http::{parse_request, HeadLimits};
use ringgate::metrics::WorkerMetrics;
use ringgate::policy::{Identity, PolicyState, RequestView};

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 16 * 1024,
    max_headers: 64,
    max_uri_bytes: 8192,
};

const SECRET: &str = "bench-secret-of-at-least-32-bytes!!";

fn snapshot(policies: &str) -> Snapshot {
    let text = format!(
        r#"
[[upstreams]]
name = "u"
targets = [{{ addr = "127.0.0.1:1" }}]
[[routes]]
name = "r"
upstream = "u"
policies = {policies}
[policies.ip]
kind = "ip_filter"
allow = ["127.0.0.0/8"]
[policies.key]
kind = "api_key"
[policies.jwt]
kind = "jwt"
algorithms = ["HS256"]
secret = "{SECRET}"
[[consumers]]
name = "alice"
api_keys = ["alice-key-0123456789"]
"#
    );
    match load_str(&text, "bench") {
        Ok(s) => s,
        Err(e) => panic!("bench config: {e}"),
    }
}

fn token() -> String {
    let claims = serde_json::json!({ "sub": "alice", "exp": 4_000_000_000u64 });
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    match jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key) {
        Ok(t) => t,
        Err(e) => panic!("sign: {e}"),
    }
}

fn bench_chain(c: &mut Criterion, name: &str, policies: &str, request: &[u8], header: &str) {
    let snapshot = snapshot(policies);
    let route = snapshot.router.get(0).expect("route");
    let mut headers = Vec::with_capacity(32);
    if !matches!(parse_request(request, &LIMITS, &mut headers), Ok(Some(_))) {
        panic!("bench input must parse");
    }
    let view = RequestView {
        data: request,
        headers: &headers,
        query: None,
        peer: "127.0.0.1".parse().expect("ip"),
        trusted_proxies: &[],
        route: &route.name,
        path_params: None,
    };
    let mut identity = Identity::default();
    let mut fields = Vec::with_capacity(256);
    let state = PolicyState::default();
    let metrics = WorkerMetrics::new(0);
    c.bench_function(name, |b| {
        b.iter(|| {
            fields.clear();
            let result = route.policies.check(
                black_box(&view),
                &mut identity,
                &state,
                &metrics,
                &mut fields,
            );
            assert!(result.is_ok());
        })
    });
    c.bench_function(&format!("{name}/baseline_find_header"), |b| {
        b.iter(|| black_box(view.header(black_box(header))))
    });
}

fn policies(c: &mut Criterion) {
    bench_chain(
        c,
        "chain/ip_filter+api_key",
        r#"["ip", "key"]"#,
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Api-Key: alice-key-0123456789\r\n\r\n",
        "x-api-key",
    );
    let request = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAuthorization: Bearer {}\r\n\r\n",
        token()
    );
    bench_chain(
        c,
        "chain/ip_filter+jwt_cached",
        r#"["ip", "jwt"]"#,
        request.as_bytes(),
        "authorization",
    );
}

criterion_group!(benches, policies);
criterion_main!(benches);
