//! `kind = "introspect"` and OpenID Connect discovery through the running gateway, against
//! an authorization server stand-in (`common::authz_server`): active tokens pass with their
//! identity and scopes, a revoked token is refused once the cache TTL has passed, an
//! unreachable server is a 503, and a burst of requests with one token makes at most one
//! introspection call per worker. OIDC: keys from discovery, a discovery document naming
//! another issuer refused. A route with `errors = "problem"` on a text server.
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::authz_server::{AuthServer, CLIENT_ID, CLIENT_SECRET};
use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::process::Ringgate;
use common::upstream::{refused_addr, Echoed, Upstream};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn gateway(
    driver: &str,
    up: &Upstream,
    idp: SocketAddr,
    cache_ttl: &str,
    workers: usize,
) -> Gateway {
    let credentials = format!("client_secret = \"{CLIENT_SECRET}\"");
    gateway_with(driver, up, idp, cache_ttl, workers, &credentials)
}

/// [`gateway`] with `credentials` (the client secret's key) in the introspect policy.
fn gateway_with(
    driver: &str,
    up: &Upstream,
    idp: SocketAddr,
    cache_ttl: &str,
    workers: usize,
    credentials: &str,
) -> Gateway {
    GatewayConfig::new(driver)
        .workers(workers)
        .upstream("echo", &[up.addr()])
        .upstream("idp", &[idp])
        .routes(&format!(
            r#"
[[routes]]
name = "api"
match = {{ path_prefix = "/api" }}
upstream = "echo"
policies = ["opaque"]

[[routes]]
name = "burst"
match = {{ path_exact = "/burst" }}
respond = {{ status = 200, body = "ok" }}
policies = ["opaque"]

[[routes]]
name = "reports"
match = {{ path_prefix = "/reports" }}
upstream = "echo"
policies = ["opaque", "need-read", "staff-only"]

[policies.opaque]
kind = "introspect"
upstream = "idp"
path = "/introspect"
client_id = "{CLIENT_ID}"
{credentials}
cache_ttl = "{cache_ttl}"
timeout = "2s"
groups_claim = "roles"
forward_claims = {{ scope = "X-Scopes" }}

[policies.need-read]
kind = "authz"
require_scopes = ["reports:read"]

[policies.staff-only]
kind = "authz"
allow_groups = ["staff"]
"#
        ))
        .start()
}

fn get(gw: &Gateway, path: &str, token: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nX-Consumer: forged\r\nConnection: close\r\n\r\n"
    ));
    raw.read_response()
}

/// An RFC 9457 problem document answered with `status`, its members checked.
fn problem_document(r: &RawResponse, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let doc: serde_json::Value = serde_json::from_slice(&r.body).expect("problem JSON");
    assert_eq!(doc["status"], status);
    assert!(doc["detail"].is_string(), "{doc}");
    assert_eq!(
        doc["request_id"].as_str(),
        r.header("x-request-id"),
        "the document's request id is the answer's"
    );
    doc
}

/// An ES256 key whose public half the stand-in serves as its JWKS (kid `k1`).
struct SigningKey(Vec<u8>);

impl SigningKey {
    fn served_by(idp: &AuthServer) -> SigningKey {
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("ec");
        let pair =
            ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("ec");
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        };
        idp.set_jwks(
            &serde_json::json!({ "keys": [{
                "kty": "EC", "crv": "P-256", "kid": "k1",
                "x": b64(&point[1..33]), "y": b64(&point[33..]),
            }]})
            .to_string(),
        );
        SigningKey(pkcs8.as_ref().to_vec())
    }

    /// A token for `ann` from `iss`, with these roles, valid for ten minutes.
    fn sign(&self, iss: &str, roles: &[&str]) -> String {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let claims =
            serde_json::json!({ "sub": "ann", "iss": iss, "exp": now() + 600, "roles": roles });
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&self.0)).expect("sign")
    }
}

/// A route behind a `jwt` policy whose keys come from `issuer`'s discovery document (re-read
/// every 200 ms), and `authz` allowing the `admin` group.
fn oidc_routes(issuer: &str) -> String {
    format!(
        r#"
[[routes]]
name = "admin"
upstream = "echo"
policies = ["oidc", "admins"]

[policies.oidc]
kind = "jwt"
algorithms = ["ES256"]
issuer = "{issuer}"
groups_claim = "roles"
jwks_refresh = "200ms"
jwks_cooldown = "100ms"

[policies.admins]
kind = "authz"
allow_groups = ["admin"]
"#
    )
}

/// Reads the admin API's `/metrics` until every line of `want` is in it (bounded).
fn metrics_until(admin: SocketAddr, token: &str, want: &[&str]) {
    let deadline = Instant::now() + common::IO_TIMEOUT;
    loop {
        let req = common::client::agent()
            .get(&format!("http://{admin}/metrics"))
            .set("Authorization", &format!("Bearer {token}"));
        let text = String::from_utf8_lossy(&common::client::call(req).body).into_owned();
        if want.iter().all(|w| text.lines().any(|l| l == *w)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {want:?}:\n{text}"
        );
    }
}

driver_tests! {
    fn introspected_tokens_pass_with_their_identity_scopes_and_groups(driver: &str) {
        let up = Upstream::echo("echo");
        let idp = AuthServer::start();
        let exp = now() + 600;
        idp.set_token(
            "tok-alice",
            &format!(r#"{{"active":true,"sub":"alice","scope":"reports:read users:read","roles":["staff"],"exp":{exp}}}"#),
        );
        idp.set_token("tok-bob", r#"{"active":true,"username":"bob","scope":"users:read"}"#);
        let gw = gateway(driver, &up, idp.addr(), "30s", 1);

        let r = get(&gw, "/reports/1", "tok-alice");
        assert_eq!(r.status, 200, "{}", r.text());
        let echoed = Echoed::parse(&r.text());
        assert_eq!(echoed.header("x-consumer"), Some("alice"));
        assert_eq!(echoed.header("x-scopes"), Some("reports:read users:read"));
        assert_eq!(idp.bad_credentials(), 0, "client_secret_basic was not accepted");

        // `username` names the consumer when `sub` is absent; scopes feed authz.
        assert_eq!(get(&gw, "/api/x", "tok-bob").status, 200);
        let r = get(&gw, "/reports/1", "tok-bob");
        assert_eq!(r.status, 403, "{}", r.text());

        let r = get(&gw, "/api/x", "unknown-token");
        assert_eq!(r.status, 401);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /api/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(raw.read_response().status, 401);
        // Cached: the three known tokens were each asked about once.
        let before = idp.introspections();
        assert_eq!(get(&gw, "/reports/2", "tok-alice").status, 200);
        assert_eq!(idp.introspections(), before);
        assert_eq!(up.requests(), 3);
    }

    fn the_client_secret_may_come_from_a_file(driver: &str) {
        let up = Upstream::echo("echo");
        let idp = AuthServer::start();
        idp.set_token("tok", r#"{"active":true,"sub":"alice"}"#);
        let path = std::env::temp_dir().join(format!(
            "ringgate-introspect-secret-{}-{driver}",
            std::process::id()
        ));
        std::fs::write(&path, format!("{CLIENT_SECRET}\n")).expect("write the secret");
        let credentials = format!("client_secret_file = {:?}", path.display().to_string());
        let gw = gateway_with(driver, &up, idp.addr(), "30s", 1, &credentials);
        let r = get(&gw, "/api/a", "tok");
        let _ = std::fs::remove_file(&path);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(idp.introspections(), 1);
        assert_eq!(idp.bad_credentials(), 0, "the file's secret (newline dropped) was not sent");
    }

    fn a_revoked_token_is_refused_once_the_cache_ttl_has_passed(driver: &str) {
        let up = Upstream::echo("echo");
        let idp = AuthServer::start();
        idp.set_token("tok", r#"{"active":true,"sub":"alice"}"#);
        let ttl = Duration::from_secs(2);
        let gw = gateway(driver, &up, idp.addr(), "2s", 1);
        // The result is cached when its answer arrives: between `asked` and `answered`, so it
        // is fresh until at least `asked + ttl` and stale from `answered + ttl` on.
        let asked = Instant::now();
        assert_eq!(get(&gw, "/api/a", "tok").status, 200);
        let answered = Instant::now();
        assert_eq!(idp.introspections(), 1);
        idp.revoke("tok");

        // Within the TTL the cached result answers: no new call, the revocation unseen.
        let r = get(&gw, "/api/a", "tok");
        assert!(
            asked.elapsed() < ttl,
            "too slow to observe the cache: {:?} for two requests",
            asked.elapsed()
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(idp.introspections(), 1, "a fresh cached result was not used");

        // Once the TTL has passed (time itself is what is tested: wait for it), the very next
        // request asks again and is refused.
        std::thread::sleep((answered + ttl).saturating_duration_since(Instant::now()));
        let r = get(&gw, "/api/a", "tok");
        assert_eq!(r.status, 401, "a revoked token passed after the TTL: {}", r.text());
        assert_eq!(idp.introspections(), 2, "one lookup before and one after the TTL");
        assert_eq!(up.requests(), 2);
    }

    fn an_unreachable_authorization_server_is_a_503(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up, refused_addr(), "30s", 1);
        let r = get(&gw, "/api/a", "tok");
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.header("retry-after").is_some());
        assert_eq!(up.requests(), 0, "failed open");
    }

    fn one_token_in_a_burst_costs_at_most_one_call_per_worker(driver: &str) {
        let up = Upstream::echo("echo");
        let idp = AuthServer::start();
        idp.set_token("burst", r#"{"active":true,"sub":"alice"}"#);
        // A slow answer, so that the burst's lookups overlap the first one on each worker.
        idp.set_delay(Duration::from_millis(300));
        let workers = 2;
        let gw = gateway(driver, &up, idp.addr(), "30s", workers);
        // 1,000 requests in flight at once: every connection sends its request before any
        // answer is read. The route answers itself (an upstream behind it would only test
        // how many connections the stand-in backend accepts at once).
        let requests = 1000;
        let mut clients: Vec<Raw> = (0..requests).map(|_| Raw::connect(gw.addr())).collect();
        for raw in &mut clients {
            raw.send("GET /burst HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer burst\r\nConnection: close\r\n\r\n");
        }
        let mut statuses = std::collections::BTreeMap::new();
        for raw in &mut clients {
            let r = raw.read_response();
            let entry = statuses.entry(r.status).or_insert((0, String::new()));
            entry.0 += 1;
            if r.status != 200 {
                entry.1 = r.text();
            }
        }
        assert_eq!(statuses.get(&200).map(|s| s.0), Some(requests), "{statuses:?}");
        let calls = idp.introspections();
        assert!(
            (1..=workers).contains(&calls),
            "{requests} concurrent requests with one token made {calls} introspection calls on {workers} workers"
        );
    }

    fn oidc_discovery_supplies_the_keys_and_the_issuer_is_checked(driver: &str) {
        let idp = AuthServer::start();
        let key = SigningKey::served_by(&idp);
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(&oidc_routes(&idp.issuer()))
            .start();
        let good = key.sign(&idp.issuer(), &["admin"]);
        // The keys arrive once the discovery document and the JWKS are fetched.
        common::wait_until("the discovered keys", Duration::from_secs(10), || {
            get(&gw, "/x", &good).status == 200
        });
        // The discovery document is re-read on the `jwks_refresh` schedule, with no traffic.
        common::wait_until("the discovery re-read on schedule", Duration::from_secs(10), || {
            idp.discoveries() >= 3
        });
        assert_eq!(get(&gw, "/x", &key.sign("https://evil.test", &["admin"])).status, 401);
        assert_eq!(get(&gw, "/x", &key.sign(&idp.issuer(), &["guest"])).status, 403);
    }

    fn a_discovery_document_naming_another_issuer_gives_no_keys(driver: &str) {
        let idp = AuthServer::start();
        let key = SigningKey::served_by(&idp);
        idp.set_discovery_issuer(Some("https://impostor.test"));
        let up = Upstream::echo("echo");
        let admin_token = "introspection-admin-token";
        let config = GatewayConfig::new(driver)
            .merge_interval("100ms")
            .upstream("echo", &[up.addr()])
            .routes(&oidc_routes(&idp.issuer()))
            .tables(&format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{admin_token}\"\n"))
            .render();
        let gw = Ringgate::spawn(&config, &[]);
        let line = gw.wait_for_line("admin API listening on");
        let admin: SocketAddr = line
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("admin addr");
        // The refresher reads the document (twice: on start and on schedule), refuses it for
        // its issuer, says why in the log, and never fetches the JWKS it points at.
        common::wait_until("two reads of the discovery document", Duration::from_secs(10), || {
            idp.discoveries() >= 2
        });
        let complaint = format!(
            "{}/.well-known/openid-configuration: the discovery document's `issuer` is not `{}`",
            idp.issuer(),
            idp.issuer()
        );
        common::wait_until("the refusal in the log", Duration::from_secs(10), || {
            gw.log().contains(&complaint)
        });
        assert_eq!(idp.jwks_fetches(), 0, "the JWKS of another issuer's document was fetched");
        // A token of the configured issuer, signed with the key that JWKS holds: refused.
        let good = key.sign(&idp.issuer(), &["admin"]);
        let mut raw = Raw::connect(gw.addr());
        raw.send(format!(
            "GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {good}\r\nConnection: close\r\n\r\n"
        ));
        let r = raw.read_response();
        assert_eq!(r.status, 401, "{}", r.text());
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(challenge.contains("unknown key id"), "{challenge}");
        assert_eq!(up.requests(), 0);
        // The metrics count the refusal as the policy's (no metric counts failed refreshes:
        // the log line above is the only sign of the cause).
        metrics_until(admin, admin_token, &[
            r#"ringgate_policy_decisions_total{policy="oidc",outcome="unauthenticated"} 1"#,
            r#"ringgate_policy_decisions_total{policy="oidc",outcome="allowed"} 0"#,
        ]);
        // Once the document names the configured issuer, the next refresh brings the keys.
        idp.set_discovery_issuer(None);
        common::wait_until("the keys after the issuer is fixed", Duration::from_secs(10), || {
            let mut raw = Raw::connect(gw.addr());
            raw.send(format!(
                "GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {good}\r\nConnection: close\r\n\r\n"
            ));
            raw.read_response().status == 200
        });
        assert!(idp.jwks_fetches() >= 1);
    }

    fn one_route_answers_problem_documents_on_a_text_server(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .upstream("idp", &[refused_addr()])
            .upstream("dead", &[refused_addr()])
            .routes(&format!(
                r#"
[[routes]]
name = "problems"
match = {{ path_prefix = "/p" }}
upstream = "echo"
errors = "problem"
policies = ["opaque"]

[[routes]]
name = "texts"
match = {{ path_prefix = "/t" }}
upstream = "echo"
policies = ["opaque"]

[[routes]]
name = "problems-dead"
match = {{ path_prefix = "/dead-p" }}
upstream = "dead"
errors = "problem"

[[routes]]
name = "texts-dead"
match = {{ path_prefix = "/dead-t" }}
upstream = "dead"

[policies.opaque]
kind = "introspect"
upstream = "idp"
path = "/introspect"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
timeout = "2s"
"#
            ))
            .start();
        // The authorization server is down: a problem document of its own type on the route
        // that asks for them, plain text on the other.
        let r = get(&gw, "/p/a", "tok");
        let doc = problem_document(&r, 503);
        assert_eq!(doc["type"], "https://ringgate.dev/problems/introspection-unavailable");
        assert_eq!(doc["title"], "Service Unavailable");
        assert!(r.header("retry-after").is_some());
        let r = get(&gw, "/t/a", "tok");
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(r.header("retry-after").is_some());
        // No token: the 401 keeps its challenge either way.
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /p/a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = raw.read_response();
        let doc = problem_document(&r, 401);
        assert_eq!(doc["type"], "https://ringgate.dev/problems/unauthenticated");
        assert!(r.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")));
        // The gateway's own upstream failures follow the route too.
        let r = get(&gw, "/dead-p/a", "tok");
        let doc = problem_document(&r, 502);
        assert_eq!(doc["type"], "https://ringgate.dev/problems/upstream-connect-failed");
        let r = get(&gw, "/dead-t/a", "tok");
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        // And where no route matches, the server's setting holds: text.
        let r = get(&gw, "/nowhere", "tok");
        assert_eq!(r.status, 404, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(up.requests(), 0);
    }
}
