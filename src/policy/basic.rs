//! `kind = "basic"`: HTTP Basic authentication (RFC 7617) against consumers'
//! `password_hash` (argon2 PHC strings or bcrypt).
//!
//! Password hashes are slow on purpose (argon2id at the OWASP parameters m=19 MiB, t=2 takes
//! some 20–50 ms; bcrypt cost 10 about 50–80 ms), so the worker never verifies one itself: it
//! hands the verification to the pool of `policy::verifier` and awaits the answer while it
//! serves its other connections ([`Authn::Verify`], then [`Verification::complete`]). A full
//! pool queue answers 503 at once ([`Authn::Busy`]).
//!
//! Each worker caches successful verifications (see `PolicyState`): keyed by a keyed hash of
//! the credential, confirmed by a constant-time comparison of a SHA-256 digest of user,
//! password and stored hash (so a changed hash in a reloaded config misses), kept for a
//! bounded time and in bounded number. A client sending the same good credential again pays a
//! few hundred nanoseconds, on the worker, without allocating. Failed verifications are not
//! cached: put an `ip_filter` or a rate limit in front of routes exposed to guessing.

use std::sync::Arc;

use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::consumers::ConsumerId;
use super::consumers::Consumers;
use super::verifier::Pending;
use super::{Authn, Challenge, Denial, Forwarding, Identity, PolicyState, RequestView};
use crate::http::problem::cause;

/// Longest decoded `user:password` accepted (a bound on the stack buffer).
const MAX_CREDENTIAL: usize = 512;

/// A compiled `basic` policy.
#[derive(Debug)]
pub struct Basic {
    /// The policy's name.
    pub name: String,
    /// `realm` of the challenge.
    pub realm: Arc<str>,
    /// The consumers (user name = consumer name) and their password hashes.
    pub consumers: Arc<Consumers>,
    /// What goes upstream on success.
    pub forwarding: Forwarding,
    /// `hide_credentials`: the `Authorization` field is not forwarded on success.
    pub hide_credentials: bool,
}

impl Basic {
    /// Absent without `Authorization: Basic`; else accepted from the worker's cache, 401,
    /// or a verification handed to the pool (busy when its queue is full).
    pub fn check(
        self: &Arc<Self>,
        req: &RequestView<'_>,
        identity: &mut Identity,
        state: &PolicyState,
    ) -> Authn {
        let Some(encoded) = req.header("authorization").and_then(basic_credential) else {
            return Authn::Absent;
        };
        let mut buf = [0u8; MAX_CREDENTIAL];
        let refused = || Authn::Refused(self.denial());
        let Ok(len) = base64::engine::general_purpose::STANDARD.decode_slice(encoded, &mut buf)
        else {
            return refused();
        };
        let credential = &buf[..len];
        let Some(colon) = credential.iter().position(|&b| b == b':') else {
            return refused();
        };
        let (user, password) = (&credential[..colon], &credential[colon + 1..]);
        let Some(id) = std::str::from_utf8(user)
            .ok()
            .and_then(|u| self.consumers.by_name(u))
        else {
            // An unknown user costs a verification like a known one, so that the answer's
            // timing does not tell which user names exist.
            return match self.consumers.any_password_hash() {
                Some(hash) => self.verify(state, password, hash, None),
                None => refused(),
            };
        };
        let consumer = self.consumers.get(id);
        let Some(hash) = consumer.password_hash.as_deref() else {
            return refused();
        };
        let digest = credential_digest(user, password, hash);
        let key = state.basic_cache_key(self, &digest);
        let cached = state
            .cached_basic(key)
            .is_some_and(|stored| bool::from(stored.ct_eq(&digest)));
        if cached {
            identity.set_consumer(id, &consumer.name, &self.forwarding);
            return Authn::Accepted;
        }
        let success = Success {
            key,
            digest,
            consumer: id,
        };
        self.verify(state, password, hash, Some(success))
    }

    /// Hands `password` to the verifier pool; `success` says what to record if it matches
    /// (`None`: an unknown user's decoy verification, refused whatever its answer).
    fn verify(
        self: &Arc<Self>,
        state: &PolicyState,
        password: &[u8],
        hash: &str,
        success: Option<Success>,
    ) -> Authn {
        match state.verifier().and_then(|v| v.submit(password, hash)) {
            Some(pending) => Authn::Verify(Verification {
                policy: Arc::clone(self),
                pending,
                success,
            }),
            None => Authn::Busy,
        }
    }

    /// The 401 with `Basic realm="..."`.
    pub fn denial(&self) -> Denial {
        Denial {
            status: 401,
            cause: cause::UNAUTHENTICATED,
            message: "unauthorized: valid credentials required",
            challenge: Challenge::Basic {
                realm: Arc::clone(&self.realm),
            },
            violations: Vec::new(),
        }
    }
}

/// What a verification that matched records.
#[derive(Debug)]
struct Success {
    /// The worker cache's key and digest of the credential.
    key: u64,
    digest: [u8; 32],
    consumer: ConsumerId,
}

/// A password verification running in the pool, awaited by the request's task.
#[derive(Debug)]
pub struct Verification {
    policy: Arc<Basic>,
    pending: Pending,
    success: Option<Success>,
}

impl Verification {
    /// Waits for the pool's answer: whether the password matched.
    pub async fn verified(&self) -> bool {
        self.pending.verified().await
    }

    /// Accepts the request (caching the credential and setting `identity`) when `verified`
    /// and the user is known; else its 401.
    pub fn complete(
        self,
        verified: bool,
        identity: &mut Identity,
        state: &PolicyState,
    ) -> Result<(), Denial> {
        match self.success {
            Some(success) if verified => {
                state.cache_basic(success.key, success.digest);
                let name = &self.policy.consumers.get(success.consumer).name;
                identity.set_consumer(success.consumer, name, &self.policy.forwarding);
                Ok(())
            }
            _ => Err(self.policy.denial()),
        }
    }
}

/// The base64 part of an `Authorization: Basic ...` value.
fn basic_credential(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    scheme
        .eq_ignore_ascii_case(b"basic ")
        .then(|| rest.trim_ascii())
        .filter(|c| !c.is_empty() && c.len() <= MAX_CREDENTIAL * 4 / 3)
}

/// SHA-256 over user, password and the stored hash, each length-prefixed.
fn credential_digest(user: &[u8], password: &[u8], hash: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [user, password, hash.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// Whether `password` matches `hash` (argon2 PHC or bcrypt).
pub fn verify_password(password: &[u8], hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password, &parsed)
                .is_ok()
        })
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

/// Whether `hash` is a password hash this module can verify.
pub fn is_password_hash(hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        argon2::password_hash::PasswordHash::new(hash).is_ok()
    } else {
        ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| hash.starts_with(p))
            && hash.len() == 60
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_argon2_and_bcrypt_hashes() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let params = argon2::Params::new(64, 1, 1, None).expect("params");
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let hash = argon.hash_password(b"pw", &salt).expect("hash").to_string();
        assert!(is_password_hash(&hash));
        assert!(verify_password(b"pw", &hash));
        assert!(!verify_password(b"pX", &hash));
        let hash = bcrypt::hash("pw", 4).expect("bcrypt");
        assert!(is_password_hash(&hash));
        assert!(verify_password(b"pw", &hash));
        assert!(!verify_password(b"pX", &hash));
        assert!(!is_password_hash("pw"));
    }

    /// Runs `route`'s chain (of the config `text`) on a request with `authorization`.
    fn check_with(
        state: &PolicyState,
        text: &str,
        fields: &mut Vec<u8>,
    ) -> Result<crate::policy::Checked, Denial> {
        let snapshot = crate::config::load_str(text, "t").expect("valid");
        let route = snapshot.router.get(0).expect("route");
        // alice:pw
        let request = b"GET / HTTP/1.1\r\nHost: t\r\nAuthorization: Basic YWxpY2U6cHc=\r\n\r\n";
        let limits = crate::http::HeadLimits {
            max_head_bytes: 4096,
            max_headers: 16,
            max_uri_bytes: 1024,
        };
        let mut headers = Vec::new();
        let parsed = crate::http::parse_request(request, &limits, &mut headers);
        assert!(matches!(parsed, Ok(Some(_))));
        let view = RequestView {
            data: request,
            headers: &headers,
            query: None,
            peer: std::net::IpAddr::from([127, 0, 0, 1]),
            trusted_proxies: &[],
            route: "r",
            path_params: None,
        };
        let metrics = crate::metrics::WorkerMetrics::new(0);
        let mut identity = Identity::default();
        route
            .policies
            .check(&view, &mut identity, state, &metrics, fields)
    }

    fn config() -> String {
        let hash = bcrypt::hash("pw", 4).expect("bcrypt");
        format!(
            "[policies.b]\nkind = \"basic\"\n[[consumers]]\nname = \"alice\"\n\
             password_hash = \"{hash}\"\n[[routes]]\nname = \"r\"\npolicies = [\"b\"]\n\
             respond = {{ status = 200 }}\n"
        )
    }

    #[test]
    fn an_uncached_password_suspends_the_chain_for_the_pool() {
        let pool = crate::policy::VerifierPool::start(1, 1).expect("pool");
        let state = PolicyState::new(0, 1, pool.verifier());
        let mut fields = Vec::new();
        let checked = check_with(&state, &config(), &mut fields);
        assert!(matches!(checked, Ok(crate::policy::Checked::Verifying(_))));
        drop((checked, state));
        pool.join();
    }

    #[test]
    fn a_password_with_no_verifier_free_is_answered_busy_with_retry_after() {
        // No pool: nothing can take the verification.
        let state = PolicyState::default();
        let mut fields = Vec::new();
        let denial = check_with(&state, &config(), &mut fields).expect_err("busy");
        assert_eq!(denial.status, 503);
        assert_eq!(fields, b"Retry-After: 1\r\n");
    }

    #[test]
    fn reads_basic_credentials_only() {
        assert_eq!(basic_credential(b"Basic YTpi"), Some(&b"YTpi"[..]));
        assert_eq!(basic_credential(b"basic  YTpi "), Some(&b"YTpi"[..]));
        assert_eq!(basic_credential(b"Bearer YTpi"), None);
    }
}
