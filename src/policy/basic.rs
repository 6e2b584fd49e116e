//! `kind = "basic"`: HTTP Basic authentication (RFC 7617) against consumers'
//! `password_hash` (argon2 PHC strings or bcrypt).
//!
//! Password hashes are slow on purpose (argon2id at the OWASP parameters m=19 MiB, t=2 takes
//! some 20–50 ms; bcrypt cost 10 about 50–80 ms) and the verification runs on the worker, which
//! blocks it for that long. So each worker caches successful verifications (see
//! `PolicyState`): keyed by a keyed hash of the credential, confirmed by a constant-time
//! comparison of a SHA-256 digest of user, password and stored hash (so a changed hash in a
//! reloaded config misses), kept for a bounded time and in bounded number. A client sending
//! the same good credential again pays a few hundred nanoseconds. Failed verifications are
//! not cached: put an `ip_filter` or a rate limit in front of routes exposed to guessing.

use std::sync::Arc;

use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::consumers::Consumers;
use super::{Authn, Challenge, Denial, Forwarding, Identity, PolicyState, RequestView};

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
}

impl Basic {
    /// Absent without `Authorization: Basic`; else accepted or 401.
    pub fn check(
        &self,
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
            if let Some(hash) = self.consumers.any_password_hash() {
                verify_password(password, hash);
            }
            return refused();
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
        if !cached {
            if !verify_password(password, hash) {
                return refused();
            }
            state.cache_basic(key, digest);
        }
        identity.set_consumer(id, &consumer.name, &self.forwarding);
        Authn::Accepted
    }

    /// The 401 with `Basic realm="..."`.
    pub fn denial(&self) -> Denial {
        Denial {
            status: 401,
            message: "unauthorized: valid credentials required",
            challenge: Challenge::Basic {
                realm: Arc::clone(&self.realm),
            },
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

    #[test]
    fn reads_basic_credentials_only() {
        assert_eq!(basic_credential(b"Basic YTpi"), Some(&b"YTpi"[..]));
        assert_eq!(basic_credential(b"basic  YTpi "), Some(&b"YTpi"[..]));
        assert_eq!(basic_credential(b"Bearer YTpi"), None);
    }
}
