//! `kind = "jwt"` through the running gateway: every algorithm family with keys generated at
//! test time, the attacks a verifier must refuse (each a 401 with a Bearer `invalid_token`
//! challenge), a JWKS URL served by a test upstream with key rotation, and scope and claim
//! authorization.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::upstream::{Behavior, Upstream};
use common::IO_TIMEOUT;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "users-api";

/// Keys made once per test binary: an RSA key (2048 bits), P-256, P-384 and Ed25519.
struct Keys {
    rsa_private_pem: String,
    rsa_public_pem: String,
    rsa_jwk: Value,
    ec256: (Vec<u8>, Value),
    ec384: (Vec<u8>, Value),
    ed: (Vec<u8>, Value),
    /// A second RSA-free signer for rotation: a fresh P-256 key.
    rotated: (Vec<u8>, Value),
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa");
        let public = private.to_public_key();
        let rsa_jwk = json!({
            "kty": "RSA", "kid": "rsa1", "use": "sig",
            "n": B64.encode(public.n().to_bytes_be()),
            "e": B64.encode(public.e().to_bytes_be()),
        });
        Keys {
            rsa_private_pem: private
                .to_pkcs8_pem(LineEnding::LF)
                .expect("pem")
                .to_string(),
            rsa_public_pem: public.to_public_key_pem(LineEnding::LF).expect("pem"),
            rsa_jwk,
            ec256: ec_key(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                "P-256",
                "ec256",
            ),
            ec384: ec_key(
                &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                "P-384",
                "ec384",
            ),
            ed: ed_key(),
            rotated: ec_key(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                "P-256",
                "rotated",
            ),
        }
    })
}

fn ec_key(
    alg: &'static ring::signature::EcdsaSigningAlgorithm,
    crv: &str,
    kid: &str,
) -> (Vec<u8>, Value) {
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("ec");
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("ec");
    let point = pair.public_key().as_ref();
    let half = (point.len() - 1) / 2;
    let jwk = json!({
        "kty": "EC", "crv": crv, "kid": kid,
        "x": B64.encode(&point[1..1 + half]),
        "y": B64.encode(&point[1 + half..]),
    });
    (pkcs8.as_ref().to_vec(), jwk)
}

fn ed_key() -> (Vec<u8>, Value) {
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("ed");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed");
    let jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "kid": "ed",
        "x": B64.encode(pair.public_key().as_ref()),
    });
    (pkcs8.as_ref().to_vec(), jwk)
}

fn jwks(keys: &[&Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// A new file under the temp dir holding `text` (tests run in parallel: never shared).
fn file(name: &str, text: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("ringgate-jwt-{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write key file");
    path.display().to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Claims that pass every check of the policies below.
fn good_claims() -> Value {
    json!({ "sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now() })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let k = keys();
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(SECRET.as_bytes())
        }
        Algorithm::ES256 => EncodingKey::from_ec_der(&k.ec256.0),
        Algorithm::ES384 => EncodingKey::from_ec_der(&k.ec384.0),
        Algorithm::EdDSA => EncodingKey::from_ed_der(&k.ed.0),
        _ => EncodingKey::from_rsa_pem(k.rsa_private_pem.as_bytes()).expect("rsa pem"),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

fn get(gw: &Gateway, path: &str, token: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nX-User-Id: forged\r\nConnection: close\r\n\r\n"
    ));
    raw.read_response()
}

/// Asserts a 401 whose challenge names `invalid_token` and `description`.
fn assert_invalid(r: &RawResponse, description: &str) {
    assert_eq!(r.status, 401, "{}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"api\", error=\"invalid_token\"")
            && challenge.contains(&format!("error_description=\"{description}\"")),
        "challenge: {challenge}"
    );
}

const ALL: &str =
    r#"["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]"#;

fn gateway(driver: &str, up: &Upstream) -> Gateway {
    let k = keys();
    let set = jwks(&[&k.rsa_jwk, &k.ec256.1, &k.ec384.1, &k.ed.1]);
    let jwks_file = file(&format!("{driver}-jwks.json"), &set);
    let pem_file = file(&format!("{driver}-rsa.pem"), &k.rsa_public_pem);
    GatewayConfig::new(driver)
        .upstream("echo", &[up.addr()])
        .routes(&format!(
            r#"
[[routes]]
name = "jwks"
match = {{ path_prefix = "/jwks" }}
upstream = "echo"
policies = ["jwks"]

[[routes]]
name = "hs"
match = {{ path_prefix = "/hs" }}
upstream = "echo"
policies = ["hs"]

[[routes]]
name = "pem"
match = {{ path_prefix = "/pem" }}
upstream = "echo"
policies = ["pem"]

[[routes]]
name = "scoped"
match = {{ path_prefix = "/scoped" }}
upstream = "echo"
policies = ["need-scope", "jwks"]

[policies.jwks]
kind = "jwt"
realm = "api"
algorithms = {ALL}
jwks_file = "{jwks_file}"
issuer = "{ISSUER}"
audience = ["{AUDIENCE}", "other-api"]
required_claims = ["sub", "exp"]
forward_claims = {{ sub = "X-User-Id", role = "X-Role" }}

[policies.hs]
kind = "jwt"
realm = "api"
algorithms = ["HS256", "HS384", "HS512"]
secret = "{SECRET}"

[policies.pem]
kind = "jwt"
realm = "api"
algorithms = ["RS256"]
public_key_file = "{pem_file}"

[policies.need-scope]
kind = "authz"
require_scopes = ["read:users"]
require_claims = {{ role = ["admin", "owner"] }}
"#
        ))
        .start()
}

driver_tests! {
    fn every_algorithm_family_verifies_and_claims_go_upstream(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let cases = [
            (Algorithm::RS256, "rsa1"), (Algorithm::RS384, "rsa1"), (Algorithm::RS512, "rsa1"),
            (Algorithm::PS256, "rsa1"), (Algorithm::ES256, "ec256"), (Algorithm::ES384, "ec384"),
            (Algorithm::EdDSA, "ed"),
        ];
        for (alg, kid) in cases {
            let r = get(&gw, "/jwks", &sign(alg, Some(kid), &good_claims()));
            assert_eq!(r.status, 200, "{alg:?}: {}", r.text());
            let seen = up.last_request().expect("forwarded");
            assert_eq!(seen.header_all("x-user-id"), vec!["user-1"], "{alg:?}: the forged copy is dropped");
            assert_eq!(seen.header_all("x-consumer"), vec!["user-1"]);
        }
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let r = get(&gw, "/hs", &sign(alg, None, &json!({ "sub": "h", "exp": now() + 60 })));
            assert_eq!(r.status, 200, "{alg:?}: {}", r.text());
        }
        let r = get(&gw, "/pem", &sign(Algorithm::RS256, None, &good_claims()));
        assert_eq!(r.status, 200, "PEM public key: {}", r.text());
    }

    fn missing_token_gets_a_bare_bearer_challenge(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send("GET /jwks HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = raw.read_response();
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"api\""));
    }

    fn alg_none_is_refused(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = B64.encode(good_claims().to_string());
        assert_invalid(&get(&gw, "/jwks", &format!("{header}.{payload}.")), "malformed token");
        assert_invalid(&get(&gw, "/hs", &format!("{header}.{payload}.")), "malformed token");
    }

    fn hs256_signed_with_the_rsa_public_key_is_refused(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let k = keys();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa1".into());
        let forged = jsonwebtoken::encode(
            &header,
            &good_claims(),
            &EncodingKey::from_secret(k.rsa_public_pem.as_bytes()),
        )
        .expect("sign");
        // The JWKS policy allows HS256 too, but no HMAC key: the RSA key never verifies it.
        assert_invalid(&get(&gw, "/jwks", &forged), "no key for this algorithm");
        // The PEM policy allows only RS256.
        assert_invalid(&get(&gw, "/pem", &forged), "algorithm not allowed");
        assert_eq!(up.requests(), 0);
    }

    fn unknown_kid_is_refused(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let token = sign(Algorithm::ES256, Some("nope"), &good_claims());
        assert_invalid(&get(&gw, "/jwks", &token), "unknown key id");
        assert_eq!(up.requests(), 0);
    }

    fn bad_signature_is_refused(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let token = sign(Algorithm::ES256, Some("ec256"), &good_claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut claims = good_claims();
        claims["sub"] = json!("admin");
        let tampered = B64.encode(claims.to_string());
        parts[1] = &tampered;
        assert_invalid(&get(&gw, "/jwks", &parts.join(".")), "invalid signature");
        let wrong_secret = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({ "exp": now() + 60 }),
            &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes"),
        )
        .expect("sign");
        assert_invalid(&get(&gw, "/hs", &wrong_secret), "invalid signature");
        assert_eq!(up.requests(), 0);
    }

    fn token_under_another_keys_kid_is_refused(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let token = sign(Algorithm::RS256, Some("ec256"), &good_claims());
        assert_invalid(&get(&gw, "/jwks", &token), "no key for this algorithm");
    }

    fn expired_token_is_refused(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        // The policy's default leeway is 30 s: an hour is well outside it.
        assert_invalid(&get(&gw, "/jwks", &with_claim("exp", json!(now() - 3600))), "token expired");
        assert_eq!(get(&gw, "/jwks", &with_claim("exp", json!(now() - 5))).status, 200, "within the leeway");
    }

    fn not_yet_valid_token_is_refused(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        assert_invalid(&get(&gw, "/jwks", &with_claim("nbf", json!(now() + 3600))), "token not yet valid");
        assert_invalid(&get(&gw, "/jwks", &with_claim("iat", json!(now() + 3600))), "token issued in the future");
        assert_eq!(get(&gw, "/jwks", &with_claim("nbf", json!(now() + 5))).status, 200, "within the leeway");
    }

    fn wrong_issuer_is_refused(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        assert_invalid(&get(&gw, "/jwks", &with_claim("iss", json!("https://evil.test"))), "wrong issuer");
        assert_invalid(&get(&gw, "/jwks", &without_claim("iss")), "required claim missing");
    }

    fn wrong_audience_is_refused(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        assert_invalid(&get(&gw, "/jwks", &with_claim("aud", json!("billing-api"))), "wrong audience");
        assert_invalid(&get(&gw, "/jwks", &without_claim("aud")), "required claim missing");
        assert_eq!(get(&gw, "/jwks", &with_claim("aud", json!("other-api"))).status, 200, "any listed audience");
    }

    fn missing_required_claim_is_refused(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        assert_invalid(&get(&gw, "/jwks", &without_claim("sub")), "required claim missing");
        assert_invalid(&get(&gw, "/jwks", &without_claim("exp")), "required claim missing");
        // `exp` is required by default.
        let r = get(&gw, "/hs", &sign(Algorithm::HS256, None, &json!({ "sub": "h" })));
        assert_invalid(&r, "required claim missing");
    }

    fn scopes_and_claim_values_answer_403(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let with = |scope: &str, role: &str| {
            let mut c = good_claims();
            c["scope"] = json!(scope);
            c["role"] = json!(role);
            sign(Algorithm::EdDSA, Some("ed"), &c)
        };
        let r = get(&gw, "/scoped", &with("read:users write:users", "admin"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(up.last_request().expect("forwarded").header("x-role"), Some("admin"));
        assert_eq!(get(&gw, "/scoped", &with("write:users", "admin")).status, 403);
        assert_eq!(get(&gw, "/scoped", &with("read:users", "guest")).status, 403);
        assert_eq!(get(&gw, "/scoped", "garbage").status, 401, "authentication still comes first");
    }

    fn jwks_url_is_fetched_and_a_rotated_kid_is_picked_up(driver: &str) {
        let k = keys();
        let serve = |set: String| Behavior::Respond {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: set.into_bytes(),
        };
        let issuer = Upstream::start("issuer", serve(jwks(&[&k.ec256.1])));
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(&format!(
                r#"
[[routes]]
name = "r"
upstream = "echo"
policies = ["remote"]

[policies.remote]
kind = "jwt"
realm = "api"
algorithms = ["ES256"]
jwks_url = "http://{}/jwks.json"
jwks_refresh = "1h"
jwks_cooldown = "50ms"
"#,
                issuer.addr()
            ))
            .start();
        let old = sign(Algorithm::ES256, Some("ec256"), &good_claims());
        assert_eq!(status_within(&gw, &old, 200), 200, "the first fetch serves the first key");
        // Rotation: the issuer now publishes only the new key.
        issuer.set_behavior(serve(jwks(&[&k.rotated.1])));
        let new = rotated_token(&good_claims());
        assert_eq!(status_within(&gw, &new, 200), 200, "an unknown kid triggers a refresh");
        let r = get(&gw, "/", &old);
        assert_invalid(&r, "unknown key id");
    }
}

/// A good ES256 token with `claim` set to `value`.
fn with_claim(claim: &str, value: Value) -> String {
    let mut claims = good_claims();
    claims[claim] = value;
    sign(Algorithm::ES256, Some("ec256"), &claims)
}

/// A good ES256 token without `claim`.
fn without_claim(claim: &str) -> String {
    let mut claims = good_claims();
    claims.as_object_mut().expect("object").remove(claim);
    sign(Algorithm::ES256, Some("ec256"), &claims)
}

fn rotated_token(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("rotated".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ec_der(&keys().rotated.0),
    )
    .expect("sign")
}

/// Repeats `GET /` with `token` until it answers `want` or the I/O timeout passes; returns
/// the last status. Each 401 for an unknown kid asks the refresher for the new keys.
fn status_within(gw: &Gateway, token: &str, want: u16) -> u16 {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let status = get(gw, "/", token).status;
        if status == want || Instant::now() > deadline {
            return status;
        }
        std::thread::yield_now();
    }
}
