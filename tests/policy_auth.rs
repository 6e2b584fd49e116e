//! API keys, HTTP Basic (argon2 and bcrypt), consumer headers and group authorization through
//! the running gateway, in front of a real upstream.
mod common;

use base64::Engine as _;
use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::upstream::Upstream;

const ALICE_KEY: &str = "alice-key-0123456789";
const BOB_KEY: &str = "bob-key-0123456789ab";

/// `sha256:<hex>` of a key, the way operators store keys.
fn digest(key: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An argon2id hash at cheap test parameters (the verification path is the same).
fn argon2_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"test-salt-16byte").expect("salt");
    let params = argon2::Params::new(256, 1, 1, None).expect("params");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

fn consumers() -> String {
    format!(
        r#"
[[consumers]]
name = "alice"
groups = ["admin", "staff"]
api_keys = ["{alice}"]
password_hash = "{alice_hash}"

[[consumers]]
name = "bob"
groups = ["staff", "contractors"]
api_keys = ["{bob}"]
password_hash = "{bob_hash}"
"#,
        alice = digest(ALICE_KEY),
        bob = BOB_KEY,
        alice_hash = argon2_hash("alice-pw"),
        bob_hash = bcrypt::hash("bob-pw", 4).expect("bcrypt"),
    )
}

/// `GET path` with extra header lines on a fresh connection.
fn get(gw: &Gateway, path: &str, extra: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ));
    raw.read_response()
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {encoded}\r\n")
}

fn gateway(driver: &str, up: &Upstream) -> Gateway {
    GatewayConfig::new(driver)
        .upstream("echo", &[up.addr()])
        .routes(&format!(
            r#"
[[routes]]
name = "keys"
match = {{ path_prefix = "/keys" }}
upstream = "echo"
policies = ["key"]

[[routes]]
name = "query-keys"
match = {{ path_prefix = "/query" }}
upstream = "echo"
policies = ["query-key"]

[[routes]]
name = "basic"
match = {{ path_prefix = "/basic" }}
upstream = "echo"
policies = ["login"]

[[routes]]
name = "admin"
match = {{ path_prefix = "/admin" }}
upstream = "echo"
policies = ["admins-only", "key", "login"]

[[routes]]
name = "staff"
match = {{ path_prefix = "/staff" }}
upstream = "echo"
policies = ["key", "staff-not-contractors"]

[[routes]]
name = "open"
match = {{ path_prefix = "/open" }}
upstream = "echo"

[policies.key]
kind = "api_key"

[policies.query-key]
kind = "api_key"
query = "api_key"
consumer_header = "X-Who"

[policies.login]
kind = "basic"
realm = "staff area"

[policies.admins-only]
kind = "authz"
allow_groups = ["admin"]

[policies.staff-not-contractors]
kind = "authz"
allow_groups = ["staff"]
deny_groups = ["contractors"]
{}"#,
            consumers()
        ))
        .start()
}

driver_tests! {
    fn valid_api_key_passes_with_the_consumer_and_not_the_forged_header(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let r = get(&gw, "/keys", &format!("X-Api-Key: {ALICE_KEY}\r\nX-Consumer: root\r\n"));
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = up.last_request().expect("forwarded");
        assert_eq!(seen.header_all("x-consumer"), vec!["alice"]);
        // A plain configured key works the same; its owner is named.
        let r = get(&gw, "/keys", &format!("X-Api-Key: {BOB_KEY}\r\n"));
        assert_eq!(r.status, 200);
        assert_eq!(up.last_request().expect("forwarded").header_all("X-Consumer"), vec!["bob"]);
    }

    fn missing_or_wrong_api_key_is_401_with_a_challenge(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let r = get(&gw, "/keys", "");
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), Some("ApiKey header=\"X-Api-Key\""));
        let r = get(&gw, "/keys", "X-Api-Key: alice-key-012345678\r\n");
        assert_eq!(r.status, 401);
        let r = get(&gw, "/keys", &format!("X-Api-Key: {}\r\n", digest(ALICE_KEY)));
        assert_eq!(r.status, 401, "the stored digest is not a key");
        assert_eq!(up.requests(), 0);
    }

    fn api_key_in_a_query_parameter_and_a_custom_consumer_header(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let r = get(&gw, &format!("/query?x=1&api_key={ALICE_KEY}"), "X-Who: forged\r\n");
        assert_eq!(r.status, 200);
        let seen = up.last_request().expect("forwarded");
        assert_eq!(seen.header_all("x-who"), vec!["alice"]);
        assert_eq!(seen.header("x-consumer"), None);
        assert_eq!(get(&gw, "/query?api_key=nope", "").status, 401);
    }

    fn basic_accepts_argon2_and_bcrypt_hashes(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        for _ in 0..2 {
            // The second round is served from the worker's verification cache.
            let r = get(&gw, "/basic", &basic("alice", "alice-pw"));
            assert_eq!(r.status, 200);
            assert_eq!(up.last_request().expect("forwarded").header("x-consumer"), Some("alice"));
            let r = get(&gw, "/basic", &basic("bob", "bob-pw"));
            assert_eq!(r.status, 200);
            assert_eq!(up.last_request().expect("forwarded").header("x-consumer"), Some("bob"));
        }
    }

    fn basic_refuses_wrong_passwords_and_unknown_users(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        for (user, pw) in [("alice", "bob-pw"), ("bob", "alice-pw"), ("carol", "x"), ("alice", "")] {
            let r = get(&gw, "/basic", &basic(user, pw));
            assert_eq!(r.status, 401, "{user}:{pw}");
            assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"staff area\", charset=\"UTF-8\""));
        }
        assert_eq!(get(&gw, "/basic", "Authorization: Basic !!!\r\n").status, 401);
        assert_eq!(get(&gw, "/basic", "").status, 401);
        assert_eq!(up.requests(), 0);
    }

    fn group_allow_and_deny_answer_403(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        assert_eq!(get(&gw, "/admin", &format!("X-Api-Key: {ALICE_KEY}\r\n")).status, 200);
        assert_eq!(get(&gw, "/admin", &format!("X-Api-Key: {BOB_KEY}\r\n")).status, 403);
        // Either authentication policy may identify the consumer.
        assert_eq!(get(&gw, "/admin", &basic("alice", "alice-pw")).status, 200);
        assert_eq!(get(&gw, "/admin", &basic("bob", "bob-pw")).status, 403);
        let r = get(&gw, "/admin", "");
        assert_eq!(r.status, 401, "no credential at all is unauthenticated, not forbidden");
        assert_eq!(r.header("www-authenticate"), Some("ApiKey header=\"X-Api-Key\""), "the first policy's challenge");
        // A wrong credential for one scheme is not retried against the other.
        let extra = format!("X-Api-Key: wrong-key-0123456789\r\n{}", basic("alice", "alice-pw"));
        assert_eq!(get(&gw, "/admin", &extra).status, 401);
        assert_eq!(get(&gw, "/staff", &format!("X-Api-Key: {ALICE_KEY}\r\n")).status, 200);
        assert_eq!(get(&gw, "/staff", &format!("X-Api-Key: {BOB_KEY}\r\n")).status, 403, "deny wins");
    }

    fn identity_never_leaks_to_the_next_request_on_a_connection(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send(format!("GET /keys HTTP/1.1\r\nHost: t\r\nX-Api-Key: {ALICE_KEY}\r\n\r\n"));
        assert_eq!(raw.read_response().status, 200);
        raw.send("GET /open HTTP/1.1\r\nHost: t\r\nX-Consumer: forged\r\n\r\n");
        assert_eq!(raw.read_response().status, 200);
        let seen = up.last_request().expect("forwarded");
        assert_eq!(seen.header_all("x-consumer"), vec!["forged"], "a route without policies passes headers as sent");
        raw.send("GET /keys HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(raw.read_response().status, 401, "keep-alive after a denial");
        raw.send(format!("GET /keys HTTP/1.1\r\nHost: t\r\nX-Api-Key: {BOB_KEY}\r\n\r\n"));
        assert_eq!(raw.read_response().status, 200);
        assert_eq!(up.last_request().expect("forwarded").header_all("x-consumer"), vec!["bob"]);
    }
}

/// One route behind an API key and Basic, for `consumers`.
fn reloadable(driver: &str, up: &Upstream, consumers: &str) -> GatewayConfig {
    GatewayConfig::new(driver)
        .upstream("echo", &[up.addr()])
        .routes(&format!(
            "[[routes]]\nname = \"r\"\nupstream = \"echo\"\npolicies = [\"key\", \"login\"]\n\
             [policies.key]\nkind = \"api_key\"\n[policies.login]\nkind = \"basic\"\n{consumers}"
        ))
}

driver_tests! {
    fn a_reload_revokes_keys_and_changed_passwords(driver: &str) {
        let up = Upstream::echo("echo");
        let before = format!(
            "[[consumers]]\nname = \"alice\"\napi_keys = [\"{ALICE_KEY}\"]\npassword_hash = \"{}\"\n",
            argon2_hash("old-pw")
        );
        let config = reloadable(driver, &up, &before);
        let gw = config.start();
        // One connection throughout: a kept-alive connection gets no exemption from a reload.
        let mut raw = Raw::connect(gw.addr());
        let mut ask = |extra: &str| {
            raw.send(format!("GET / HTTP/1.1\r\nHost: t\r\n{extra}\r\n"));
            raw.read_response().status
        };
        assert_eq!(ask(&format!("X-Api-Key: {ALICE_KEY}\r\n")), 200);
        assert_eq!(ask(&basic("alice", "old-pw")), 200, "now cached by the worker");
        let after = format!(
            "[[consumers]]\nname = \"alice\"\napi_keys = [\"{BOB_KEY}\"]\npassword_hash = \"{}\"\n",
            argon2_hash("new-pw")
        );
        gw.store(&reloadable(driver, &up, &after));
        assert_eq!(ask(&format!("X-Api-Key: {ALICE_KEY}\r\n")), 401, "the revoked key");
        assert_eq!(ask(&basic("alice", "old-pw")), 401, "the cached old password");
        assert_eq!(ask(&basic("alice", "new-pw")), 200);
        assert_eq!(ask(&format!("X-Api-Key: {BOB_KEY}\r\n")), 200);
    }
}

/// Re-reads `path` until it holds at least `n` lines (bounded by `IO_TIMEOUT`).
fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + common::IO_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} lines of {n}:\n{text}",
            lines.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

driver_tests! {
    fn the_access_log_names_the_consumer_and_the_denial(driver: &str) {
        let up = Upstream::echo("echo");
        let path = std::env::temp_dir().join(format!(
            "ringgate-policy-log-{driver}-{}.log",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let consumers = format!("[[consumers]]\nname = \"alice\"\napi_keys = [\"{ALICE_KEY}\"]\n");
        let config = reloadable(driver, &up, &consumers).routes(&format!(
            "[access_log]\nformat = \"json\"\npath = \"{}\"\n",
            path.display()
        ));
        let gw = config.start();
        assert_eq!(get(&gw, "/", &format!("X-Api-Key: {ALICE_KEY}\r\n")).status, 200);
        assert_eq!(get(&gw, "/", "").status, 401);
        let lines = wait_for_lines(&path, 2);
        assert!(lines[0].contains("\"status\":200") && lines[0].contains("\"consumer\":\"alice\""), "{}", lines[0]);
        assert!(lines[1].contains("\"status\":401") && lines[1].contains("\"consumer\":null"), "{}", lines[1]);
        drop(gw);
        let _ = std::fs::remove_file(&path);
    }
}
