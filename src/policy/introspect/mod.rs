//! `kind = "introspect"`: an opaque bearer token checked at the authorization server's
//! introspection endpoint (RFC 7662), through an upstream group of ringgate's own (pools,
//! balancing, health, timeouts, breaker: `proxy::call`), never a blocking client.
//!
//! In the chain: a token whose result the worker has cached decides at once (allocation
//! free on a hit: a keyed hash, a SHA-256 digest compared in constant time, the cached
//! claims shared by `Rc`). Otherwise the chain suspends ([`Authn::Introspect`]); the
//! request's task resolves the [`Lookup`] (joining a lookup of the same token already in
//! flight on this worker, or making the call) and resumes the chain with its [`Outcome`].
//!
//! Fails closed: no usable answer (unreachable, timeout, non-200, not JSON) is a 503, never
//! a pass; `active: false` (or an `exp` in the past) is a 401 `invalid_token`. Scopes and
//! claims of an active token feed `authz` and the forwarded identity headers like a JWT's.

mod cache;
mod flight;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use cache::{Found, IntrospectionCache, Outcome};

use super::consumers::Consumers;
use super::jwt::VerifiedToken;
use super::{Authn, Challenge, Denial, Forwarding, Identity, PolicyState, RequestView};
use crate::config::UpstreamId;
use crate::http::problem::cause;

/// Largest introspection response accepted.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// A compiled `introspect` policy.
#[derive(Debug)]
pub struct Introspect {
    /// The policy's name.
    pub name: String,
    /// `realm` of the Bearer challenge.
    pub realm: Arc<str>,
    /// The group the authorization server's endpoint is in.
    pub group: UpstreamId,
    /// The endpoint's path (origin form).
    pub path: String,
    /// The request's fixed header lines: `Authorization` (client_secret_basic),
    /// `Content-Type`, `Accept`.
    pub headers: Vec<u8>,
    /// `token_type_hint`, form-encoded, if any.
    pub token_type_hint: Option<String>,
    /// Time limit of one lookup, retries included.
    pub timeout: Duration,
    /// Longest time an active result is reused.
    pub cache_ttl: Duration,
    /// Time an inactive result is reused (zero: not cached).
    pub negative_cache_ttl: Duration,
    /// Most results kept per worker.
    pub max_cache_entries: usize,
    /// The claim naming the consumer (`sub`; `username` when it is absent).
    pub consumer_claim: String,
    /// The claim holding the token's groups for `authz` (`allow_groups`, `deny_groups`).
    pub groups_claim: Option<String>,
    /// Claims sent upstream: (claim, header).
    pub forward_claims: Vec<(String, String)>,
    /// The consumer header sent upstream.
    pub forwarding: Forwarding,
    /// Consumers a token's subject may name (for their groups).
    pub consumers: Arc<Consumers>,
    /// `hide_credentials`: the `Authorization` field is not forwarded on success.
    pub hide_credentials: bool,
    /// `token_url`: where clients get tokens (the OpenAPI export's OAuth 2.0 flow).
    pub token_url: Option<String>,
}

/// A token the worker must look up before the chain can go on.
#[derive(Debug)]
pub struct Lookup {
    policy: Arc<Introspect>,
    key: u64,
    digest: [u8; 32],
    /// The token, for the request body (dropped with the lookup).
    token: Box<[u8]>,
    /// What the cache said: wait on another request's flight, or lead one.
    found: Found,
}

/// A resolved lookup: the chain resumes with it.
#[derive(Debug)]
pub struct Introspected {
    policy: Arc<Introspect>,
    outcome: Outcome,
}

/// How the worker sends an introspection request: `proxy::call` on a worker, a stand-in
/// in tests. Returns the status and body, or `None` when no answer came.
///
/// Worker-local by design (its futures are not `Send`), hence `async fn` in the trait.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// POSTs `body` with the policy's headers to its endpoint, within `deadline`.
    async fn post(
        &self,
        policy: &Introspect,
        body: &[u8],
        deadline: Instant,
    ) -> Option<(u16, bytes::Bytes)>;
}

impl Introspect {
    /// Absent without a Bearer token; accepted or refused from the worker's cache; else a
    /// lookup to resolve.
    pub fn check(
        self: &Arc<Self>,
        req: &RequestView<'_>,
        identity: &mut Identity,
        state: &PolicyState,
    ) -> Authn {
        let Some(token) = req.header("authorization").and_then(super::jwt::bearer) else {
            return Authn::Absent;
        };
        let cache = &state.introspections;
        let key = cache.key(Arc::as_ptr(self) as usize, token);
        let digest: [u8; 32] = Sha256::digest(token).into();
        match cache.find(key, &digest, Instant::now()) {
            Found::Hit(outcome) => self.decide(outcome, identity),
            found => Authn::Introspect(Lookup {
                policy: Arc::clone(self),
                key,
                digest,
                token: token.into(),
                found,
            }),
        }
    }

    /// What an outcome means for the request.
    fn decide(&self, outcome: Outcome, identity: &mut Identity) -> Authn {
        match outcome {
            Outcome::Active(token) => {
                let (consumer, name) = (token.consumer, token.subject.clone());
                identity.set_token(token, consumer, &name, &self.forwarding);
                Authn::Accepted
            }
            Outcome::Inactive => Authn::Refused(self.denial(Some("token inactive"))),
            Outcome::Unavailable => Authn::Refused(unavailable()),
        }
    }

    /// The 401 this policy answers with; `None` when no token was presented.
    pub fn denial(&self, refusal: Option<&'static str>) -> Denial {
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

    /// The form body of an introspection request for `token`.
    fn request_body(&self, token: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(token.len() + 48);
        body.extend_from_slice(b"token=");
        form_encode(token, &mut body);
        if let Some(hint) = &self.token_type_hint {
            body.extend_from_slice(b"&token_type_hint=");
            form_encode(hint.as_bytes(), &mut body);
        }
        body
    }

    /// Reads the server's answer: the outcome and how long it may be reused.
    fn read_answer(&self, answer: Option<(u16, bytes::Bytes)>, now: u64) -> (Outcome, Duration) {
        let Some((200, body)) = answer else {
            return (Outcome::Unavailable, Duration::ZERO);
        };
        let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(&body) else {
            return (Outcome::Unavailable, Duration::ZERO);
        };
        let inactive = (Outcome::Inactive, self.negative_cache_ttl);
        if claims.get("active") != Some(&Value::Bool(true)) {
            return inactive;
        }
        let exp = claims.get("exp").and_then(Value::as_u64);
        let nbf = claims.get("nbf").and_then(Value::as_u64);
        if exp.is_some_and(|exp| exp <= now) || nbf.is_some_and(|nbf| nbf > now) {
            return inactive;
        }
        let ttl = exp.map_or(self.cache_ttl, |exp| {
            self.cache_ttl.min(Duration::from_secs(exp - now))
        });
        let claim = if claims.contains_key(&self.consumer_claim) {
            self.consumer_claim.as_str()
        } else {
            "username"
        };
        let token = VerifiedToken::new(
            claims,
            claim,
            &self.forward_claims,
            self.groups_claim.as_deref(),
            |name| self.consumers.by_name(name),
        );
        (Outcome::Active(Rc::new(token)), ttl)
    }
}

impl Lookup {
    /// Resolves the lookup: waits for the flight of this token already on its way, or
    /// makes the call through `transport` and publishes the outcome to the cache and to
    /// every request waiting. Dropping this future abandons a flight it leads.
    pub async fn resolve<T: Transport>(self, state: &PolicyState, transport: &T) -> Introspected {
        let outcome = self.outcome(state, transport).await;
        Introspected {
            policy: Arc::clone(&self.policy),
            outcome,
        }
    }

    async fn outcome<T: Transport>(&self, state: &PolicyState, transport: &T) -> Outcome {
        let cache = &state.introspections;
        let mut found = self.found.clone();
        loop {
            let flight = match found {
                Found::Hit(outcome) => return outcome,
                Found::Wait(flight) => {
                    if let Some(outcome) = flight.wait().await {
                        return outcome;
                    }
                    found = cache.find(self.key, &self.digest, Instant::now());
                    continue;
                }
                Found::Lead(flight) => flight,
            };
            let abandon = Abandon {
                cache,
                key: self.key,
                flight: &flight,
                armed: true,
            };
            let policy = &self.policy;
            let body = policy.request_body(&self.token);
            let deadline = Instant::now() + policy.timeout;
            let answer = transport.post(policy, &body, deadline).await;
            let (outcome, ttl) = policy.read_answer(answer, now_secs());
            abandon.disarm();
            cache.finish(
                self.key,
                self.digest,
                outcome.clone(),
                ttl,
                Instant::now(),
                policy.max_cache_entries,
            );
            return outcome;
        }
    }
}

impl Introspected {
    /// The chain goes on with the outcome: accepted, 401 or 503.
    pub fn complete(self, identity: &mut Identity) -> Result<(), Denial> {
        match self.policy.decide(self.outcome, identity) {
            Authn::Accepted => Ok(()),
            Authn::Refused(denial) => Err(denial),
            _ => Err(unavailable()),
        }
    }
}

impl Drop for Lookup {
    /// A lookup dropped before it was resolved (its request's task went away) leaves the
    /// flight it would have led to the next request.
    fn drop(&mut self) {
        if let Found::Lead(flight) = &self.found {
            if !flight.is_settled() {
                flight.abandon();
            }
        }
    }
}

/// Abandons the led flight unless disarmed (the lookup's future was dropped mid-call).
struct Abandon<'a> {
    cache: &'a IntrospectionCache,
    key: u64,
    flight: &'a Rc<flight::Flight<Outcome>>,
    armed: bool,
}

impl Abandon<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.cache.abandon(self.key, self.flight);
        }
    }
}

/// 503 with `Retry-After`: the authorization server gave no usable answer.
pub fn unavailable() -> Denial {
    Denial {
        status: 503,
        cause: cause::INTROSPECTION_UNAVAILABLE,
        message: "service unavailable: the token could not be checked, retry later",
        challenge: Challenge::None,
        violations: Vec::new(),
    }
}

/// `application/x-www-form-urlencoded` encoding of `bytes` (unreserved bytes as they are).
fn form_encode(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
