//! `kind = "jwt"`: a bearer JSON Web Token, verified with jsonwebtoken.
//!
//! Checks, in order: the `Authorization: Bearer` token parses; its `alg` is one the policy
//! allows (`none` is not an algorithm jsonwebtoken knows, so it never parses); a key with its
//! `kid` exists and allows that `alg` (an unknown `kid` asks the JWKS refresher for an early
//! refresh); the signature; `exp` and `nbf` with `leeway`; `iat` not in the future; `iss`;
//! `aud`; the required claims. Each failure is a 401 with
//! `WWW-Authenticate: Bearer error="invalid_token", error_description="..."`.
//!
//! Verifying allocates (base64, JSON), so each worker caches verified tokens (see
//! `PolicyState`): a token seen again is matched by a keyed hash and a constant-time
//! comparison, its time window re-checked, and its cached identity reused, allocation-free.
//! A cached verification is dropped when the policy's keys change.

mod keys;
mod refresh;
mod token;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

pub use keys::{jwks_keys, pem_key, secret_key, Key, KeySet, KeyStore, HMAC, RSA};
pub use refresh::{store as refreshed_store, RefreshSettings};
pub use token::VerifiedToken;

use super::consumers::Consumers;
use super::{Authn, Challenge, Denial, Forwarding, Identity, PolicyState, RequestView};
use crate::http::problem::cause;

/// A compiled `jwt` policy.
#[derive(Debug)]
pub struct Jwt {
    /// The policy's name.
    pub name: String,
    /// `realm` of the Bearer challenge.
    pub realm: Arc<str>,
    /// Algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// The verification keys.
    pub keys: Arc<KeyStore>,
    /// Accepted `iss` values (empty: not checked).
    pub issuer: Vec<String>,
    /// Accepted `aud` values (empty: not checked).
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// Claims every token must carry.
    pub required_claims: Vec<String>,
    /// The claim naming the consumer (`sub`).
    pub consumer_claim: String,
    /// Claims sent upstream: (claim, header).
    pub forward_claims: Vec<(String, String)>,
    /// The consumer header sent upstream.
    pub forwarding: Forwarding,
    /// Consumers a token's subject may name (for their groups).
    pub consumers: Arc<Consumers>,
    /// `hide_credentials`: the `Authorization` field is not forwarded on success.
    pub hide_credentials: bool,
    /// The OpenID Connect discovery document's URL, when the keys come from `issuer`.
    pub discovery: Option<String>,
    /// The claim holding the token's groups for `authz`.
    pub groups_claim: Option<String>,
}

/// Why a token was refused: the `error_description`.
type Refusal = &'static str;

impl Jwt {
    /// Absent without a Bearer token; else accepted or refused (see the module docs).
    pub fn check(
        &self,
        req: &RequestView<'_>,
        identity: &mut Identity,
        state: &PolicyState,
    ) -> Authn {
        let Some(token) = req.header("authorization").and_then(bearer) else {
            return Authn::Absent;
        };
        let now = now_secs();
        let keys = self.keys.load();
        let cache_key = state.jwt_cache_key(self, token);
        let verified = match state.cached_token(cache_key, token, keys.generation) {
            Some(t) if t.current(now, self.leeway) => t,
            _ => match self.verify(token, &keys, now) {
                Ok(claims) => {
                    let t = Rc::new(VerifiedToken::new(
                        claims,
                        &self.consumer_claim,
                        &self.forward_claims,
                        self.groups_claim.as_deref(),
                        |name| self.consumers.by_name(name),
                    ));
                    state.cache_token(cache_key, token, keys.generation, Rc::clone(&t));
                    t
                }
                Err(refusal) => return Authn::Refused(self.denial(Some(refusal))),
            },
        };
        let (consumer, name) = (verified.consumer, verified.subject.as_str());
        identity.set_token(Rc::clone(&verified), consumer, name, &self.forwarding);
        Authn::Accepted
    }

    /// The OpenID Connect discovery URL its keys come from, if `issuer` names one.
    pub fn discovery_url(&self) -> Option<&str> {
        self.discovery.as_deref()
    }

    /// The 401 this policy answers with; `None` when no token was presented.
    pub fn denial(&self, refusal: Option<Refusal>) -> Denial {
        Denial {
            status: 401,
            cause: cause::UNAUTHENTICATED,
            message: "unauthorized: invalid or missing bearer token",
            challenge: Challenge::Bearer {
                realm: Arc::clone(&self.realm),
                error: refusal.map(|_| "invalid_token"),
                description: refusal.unwrap_or(""),
            },
            violations: Vec::new(),
        }
    }

    /// Full verification of `token` (bytes from the request).
    fn verify(&self, token: &[u8], keys: &KeySet, now: u64) -> Result<Map<String, Value>, Refusal> {
        let token = std::str::from_utf8(token).map_err(|_| "malformed token")?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        if !self.algorithms.contains(&header.alg) {
            return Err("algorithm not allowed");
        }
        let key = match keys.find(header.kid.as_deref(), header.alg) {
            Ok(key) => key,
            Err(true) => {
                self.keys.request_refresh();
                return Err("unknown key id");
            }
            Err(false) => return Err("no key for this algorithm"),
        };
        let validation = self.validation(header.alg);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| refusal(e.kind()))?;
        let claims = data.claims;
        if let Some(iat) = claims.get("iat").and_then(Value::as_u64) {
            if iat > now.saturating_add(self.leeway) {
                return Err("token issued in the future");
            }
        }
        if self.required_claims.iter().any(|c| !claims.contains_key(c)) {
            return Err("required claim missing");
        }
        Ok(claims)
    }

    /// jsonwebtoken's checks for a token of `alg` (only on a cache miss).
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        // jsonwebtoken checks `iss` and `aud` only when present: a configured one is required.
        v.required_spec_claims.clear();
        if self.issuer.is_empty() {
            v.iss = None;
        } else {
            v.set_issuer(&self.issuer);
            v.required_spec_claims.insert("iss".into());
        }
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audience);
            v.required_spec_claims.insert("aud".into());
        }
        v
    }
}

/// The `error_description` of a jsonwebtoken failure.
fn refusal(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::InvalidSignature => "invalid signature",
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidAlgorithm => "algorithm not allowed",
        ErrorKind::MissingRequiredClaim(_) => "required claim missing",
        _ => "malformed token",
    }
}

/// The token of an `Authorization: Bearer <token>` value.
pub(crate) fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Seconds since the epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_tokens_only() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
    }
}
