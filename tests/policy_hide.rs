//! `hide_credentials = true` on `api_key`, `basic` and `jwt`: the upstream does not see the
//! credential that authenticated the request (the header, or the API key's query parameter);
//! without it the credential goes upstream as sent.
mod common;

use base64::Engine as _;
use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::upstream::{Recorded, Upstream};

const KEY: &str = "alice-key-0123456789";
const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn get(gw: &Gateway, target: &str, extra: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ));
    raw.read_response()
}

/// `GET target`, which must pass; what the upstream received.
fn forwarded(gw: &Gateway, up: &Upstream, target: &str, extra: &str) -> Recorded {
    let r = get(gw, target, extra);
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    up.last_request().expect("forwarded")
}

fn basic() -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode("alice:pw");
    format!("Authorization: Basic {encoded}\r\n")
}

fn bearer() -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let claims = serde_json::json!({ "sub": "alice", "exp": exp });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    format!("Authorization: Bearer {token}\r\n")
}

fn gateway(driver: &str, up: &Upstream) -> Gateway {
    let hash = bcrypt::hash("pw", 4).expect("bcrypt");
    let mut routes = String::new();
    for (kind, keys) in [
        ("basic", String::new()),
        (
            "key",
            "kind = \"api_key\"\nheader = \"X-Api-Key\"\nquery = \"api_key\"\n".to_string(),
        ),
        (
            "jwt",
            format!("kind = \"jwt\"\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n"),
        ),
    ] {
        let keys = if keys.is_empty() {
            "kind = \"basic\"\n".to_string()
        } else {
            keys
        };
        for hide in [true, false] {
            let name = format!("{kind}-{}", if hide { "hide" } else { "keep" });
            routes.push_str(&format!(
                "[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"/{name}\" }}\n\
                 upstream = \"echo\"\npolicies = [\"{name}\"]\n\
                 [policies.{name}]\n{keys}hide_credentials = {hide}\n"
            ));
        }
    }
    routes.push_str(&format!(
        "[[consumers]]\nname = \"alice\"\napi_keys = [\"{KEY}\"]\npassword_hash = \"{hash}\"\n"
    ));
    GatewayConfig::new(driver)
        .upstream("echo", &[up.addr()])
        .routes(&routes)
        .start()
}

driver_tests! {
    fn hidden_credentials_do_not_reach_the_upstream(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        for (route, credential) in [("basic", basic()), ("jwt", bearer())] {
            let seen = forwarded(&gw, &up, &format!("/{route}-hide"), &credential);
            assert_eq!(seen.header("authorization"), None, "{route}");
            assert_eq!(seen.header("x-consumer"), Some("alice"), "{route}");
            let seen = forwarded(&gw, &up, &format!("/{route}-keep"), &credential);
            assert!(seen.header("authorization").is_some(), "{route}");
        }
        let key_header = format!("X-Api-Key: {KEY}\r\n");
        let seen = forwarded(&gw, &up, "/key-hide/a?x=1", &key_header);
        assert_eq!(seen.header("x-api-key"), None);
        assert_eq!(seen.target, "/key-hide/a?x=1");
        let seen = forwarded(&gw, &up, "/key-keep/a", &key_header);
        assert_eq!(seen.header("x-api-key"), Some(KEY));
    }

    fn a_hidden_query_key_is_removed_from_the_forwarded_query(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let cases = [
            (format!("/key-hide/a?api_key={KEY}"), "/key-hide/a".to_string()),
            (format!("/key-hide/a?x=1&api_key={KEY}&y=2"), "/key-hide/a?x=1&y=2".to_string()),
            (format!("/key-keep/a?x=1&api_key={KEY}"), format!("/key-keep/a?x=1&api_key={KEY}")),
        ];
        for (target, expected) in cases {
            let seen = forwarded(&gw, &up, &target, "");
            assert_eq!(seen.target, expected);
            assert_eq!(seen.header("x-consumer"), Some("alice"));
        }
    }
}
