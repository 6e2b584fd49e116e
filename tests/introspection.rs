//! `kind = "introspect"` and OpenID Connect discovery through the running gateway, against
//! an authorization server stand-in (`common::authz_server`): active tokens pass with their
//! identity and scopes, a revoked token is refused once the cache TTL has passed, an
//! unreachable server is a 503, and a burst of requests with one token makes at most one
//! introspection call per worker.
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::authz_server::{AuthServer, CLIENT_ID, CLIENT_SECRET};
use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
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
name = "reports"
match = {{ path_prefix = "/reports" }}
upstream = "echo"
policies = ["opaque", "need-read", "staff-only"]

[policies.opaque]
kind = "introspect"
upstream = "idp"
path = "/introspect"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
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

    fn a_revoked_token_is_refused_once_the_cache_ttl_has_passed(driver: &str) {
        let up = Upstream::echo("echo");
        let idp = AuthServer::start();
        idp.set_token("tok", r#"{"active":true,"sub":"alice"}"#);
        let gw = gateway(driver, &up, idp.addr(), "1s", 1);
        assert_eq!(get(&gw, "/api/a", "tok").status, 200);
        idp.revoke("tok");
        let revoked = Instant::now();
        // Within the TTL the cached result may still pass; after it the token is refused.
        // (1 s TTL; the bound below leaves room for a loaded machine.)
        loop {
            let r = get(&gw, "/api/a", "tok");
            if r.status == 401 {
                break;
            }
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(
                revoked.elapsed() < Duration::from_secs(8),
                "a revoked token still passes {:?} after revocation with a 1 s TTL",
                revoked.elapsed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(idp.introspections(), 2, "one lookup before and one after the TTL");
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
        let gw = Arc::new(gateway(driver, &up, idp.addr(), "30s", workers));
        let (clients, each) = (50, 20);
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let addr = gw.addr();
                std::thread::spawn(move || {
                    let mut raw = Raw::connect(addr);
                    let mut ok = 0;
                    for _ in 0..each {
                        raw.send("GET /api/b HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer burst\r\n\r\n");
                        if raw.read_response().status == 200 {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let ok: usize = threads.into_iter().map(|t| t.join().expect("client")).sum();
        assert_eq!(ok, clients * each);
        let calls = idp.introspections();
        assert!(
            (1..=workers).contains(&calls),
            "{} requests with one token made {calls} introspection calls on {workers} workers",
            clients * each
        );
    }

    fn oidc_discovery_supplies_the_keys_and_the_issuer_is_checked(driver: &str) {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        use ring::signature::KeyPair;
        let idp = AuthServer::start();
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("ec");
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("ec");
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        };
        idp.set_jwks(&serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1",
            "x": b64(&point[1..33]), "y": b64(&point[33..]),
        }]}).to_string());
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(&format!(
                r#"
[[routes]]
name = "admin"
upstream = "echo"
policies = ["oidc", "admins"]

[policies.oidc]
kind = "jwt"
algorithms = ["ES256"]
issuer = "{}"
groups_claim = "roles"

[policies.admins]
kind = "authz"
allow_groups = ["admin"]
"#,
                idp.issuer()
            ))
            .start();
        let sign = |iss: &str, roles: &[&str]| {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("k1".into());
            let claims = serde_json::json!({ "sub": "ann", "iss": iss, "exp": now() + 600, "roles": roles });
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(pkcs8.as_ref())).expect("sign")
        };
        let good = sign(&idp.issuer(), &["admin"]);
        // The keys arrive once the discovery document and the JWKS are fetched.
        common::wait_until("the discovered keys", Duration::from_secs(10), || {
            get(&gw, "/x", &good).status == 200
        });
        assert!(idp.discoveries() >= 1);
        assert_eq!(get(&gw, "/x", &sign("https://evil.test", &["admin"])).status, 401);
        assert_eq!(get(&gw, "/x", &sign(&idp.issuer(), &["guest"])).status, 403);
    }
}
