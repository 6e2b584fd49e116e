//! Request policies: the checks a route runs between routing and forwarding.
//!
//! A route lists named policies (`policies = ["jwt-users", "office-only"]`); compilation turns
//! the list into a [`Chain`]: a boxed slice of [`Stage`]s, one enum variant per policy kind,
//! sorted into the fixed [`Phase`] order below whatever order the route listed them in.
//!
//! ```text
//! cors (preflights answered here) ─▶ ip_filter ─▶ authentication (api_key | basic | jwt)
//!      ─▶ authorization (authz) ─▶ validate (head; the body once buffered) ─▶ rate_limit
//!      ─▶ compress (request bodies decoded; the response's coding negotiated)
//!      ─▶ transform (headers, query, JSON body reshaped; the response's transform prepared)
//! ```
//!
//! Why a fixed order and not the listing order: each phase needs what the one before it
//! established, and the cheap, unauthenticated checks must run before the expensive ones.
//! - `cors` first (see `cors`): a browser never sends credentials on a preflight, so a
//!   preflight must be answered before authentication, rate limits and the IP filter could
//!   refuse it; the preflight answer publishes only the policy itself. The connection runs
//!   this phase before the chain (it may answer the request itself, and it sets the CORS
//!   fields that every later answer, a 401/403/429 included, carries so that the page can
//!   read it); actual requests go on through every other phase.
//! - `ip_filter` first: it needs only the peer address, costs a few comparisons, and an
//!   address that is refused must not get to exercise password hashing or JWT verification.
//! - authentication next: it establishes the consumer that authorization and a
//!   `key = "consumer"` rate limit need.
//! - authorization after authentication, for the same reason.
//! - `validate` after authorization: an unauthenticated client learns nothing about the
//!   contract, and a malformed request is refused before it counts against a limit.
//! - rate limits last among the checks, so that they count the requests of identified
//!   consumers and so that refused requests (401/403) do not consume a consumer's allowance.
//! - `compress` after every check (see `compress`): it refuses nothing a check would have
//!   refused first, a compressed request body is only decoded (CPU, memory) for a request
//!   that passed, and the response's coding is negotiated for requests that go upstream.
//!   The connection applies it after the chain ([`Chain::compress`]); the chain skips it.
//! - `transform` last (see `transform`): it reshapes only a request every check accepted,
//!   its templates can use what authentication established (`{consumer}`), and a JSON body
//!   transform sees the body `compress` decoded. On the response side the order mirrors it:
//!   transform, then compress. The connection applies it after `compress`
//!   ([`Chain::transform`]); the chain skips it.
//!
//! A config that listed `rate_limit` before `jwt` would otherwise silently key its limit on
//! nobody; the fixed order makes the meaning of a route independent of list order.
//!
//! Several authentication policies on one route are alternatives ("any of"): they are tried
//! in the route's listing order; a policy whose credential is absent passes the turn to the
//! next; the first whose credential is present decides, accepting or refusing the request (a
//! presented but invalid credential is never retried against a weaker scheme). If none finds
//! its credential the request is refused with 401 and the first policy's challenge.
//!
//! Adding a kind (e.g. `rate_limit`):
//! - here: a module with its compiled policy type and its `check`; a [`Stage`] variant, its
//!   arm in `Stage::phase` (e.g. [`Phase::RateLimit`]) and `Stage::name`, and its call in
//!   [`Chain::check`]. A stage reads the request through [`RequestView`] and what earlier
//!   phases established through [`Identity`] (`client_ip`, `consumer_name()`); per-worker
//!   mutable state belongs in [`PolicyState`]. A refusal is a [`Denial`] (status, body text,
//!   [`Challenge`]); its [`Outcome`] is counted per policy in the metrics.
//! - config: the kind's keys in `raw_policy!` (`config/file.rs`), and a module in
//!   `config/compile/policies/` with `KEYS` and `compile`, wired into its `mod.rs`.
//!
//! No locks here and, for a passing request on a warm connection, no allocation: headers are
//! read in place from the parsed head, per-worker caches live in [`PolicyState`].

pub mod api_key;
pub mod authz;
pub mod basic;
pub mod client_addr;
pub mod compress;
pub mod consumers;
pub mod cors;
pub mod identity;
pub mod introspect;
pub mod ip_filter;
pub mod jwt;
pub mod rate_limit;
pub mod state;
pub mod transform;
pub mod validate;
pub mod verifier;

use std::net::IpAddr;
use std::sync::Arc;

use crate::http::problem::{cause, Violation};
use crate::http::HeaderSpan;
pub use crate::metrics::PolicyOutcome as Outcome;
use crate::metrics::WorkerMetrics;
use crate::router::Params;

pub use api_key::ApiKey;
pub use authz::Authz;
pub use basic::{Basic, Verification};
pub use compress::Compress;
pub use consumers::{Consumer, ConsumerId, Consumers};
pub use cors::Cors;
pub use identity::{Forwarding, Identity};
pub use introspect::{Introspect, Introspected, Lookup, Transport};
pub use ip_filter::IpFilter;
pub use jwt::Jwt;
pub use state::PolicyState;
pub use transform::Transform;
pub use validate::Validate;
pub use verifier::{Verifier, VerifierPool};

use crate::rate_limit::RateLimitPolicy;

/// The phases a chain runs in, in this order. See the module docs for why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// CORS: preflights answered, the response fields of the others set.
    Cors,
    /// Client address allow/deny lists.
    IpFilter,
    /// Who the client is: API key, HTTP Basic, JWT.
    Authentication,
    /// What the identified client may do: groups, scopes, claims.
    Authorization,
    /// Whether the request keeps its API contract (query, headers, path, body).
    Validate,
    /// How often it may do it.
    RateLimit,
    /// Content codings: request bodies decoded, responses compressed.
    Compress,
    /// Headers, query and JSON bodies reshaped.
    Transform,
}

/// One compiled policy in a route's chain. Static dispatch: every kind is a variant.
#[derive(Debug, Clone)]
pub enum Stage {
    /// `kind = "cors"` (run by the connection before the chain: see [`Chain::cors`]).
    Cors(Arc<Cors>),
    /// `kind = "ip_filter"`.
    IpFilter(Arc<IpFilter>),
    /// `kind = "api_key"`.
    ApiKey(Arc<ApiKey>),
    /// `kind = "basic"`.
    Basic(Arc<Basic>),
    /// `kind = "jwt"`.
    Jwt(Arc<Jwt>),
    /// `kind = "introspect"`.
    Introspect(Arc<Introspect>),
    /// `kind = "authz"`.
    Authz(Arc<Authz>),
    /// `kind = "validate"`.
    Validate(Arc<Validate>),
    /// `kind = "rate_limit"`.
    RateLimit(Arc<RateLimitPolicy>),
    /// `kind = "compress"` (applied by the connection after the chain: see
    /// [`Chain::compress`]).
    Compress(Arc<Compress>),
    /// `kind = "transform"` (applied by the connection after `compress`: see
    /// [`Chain::transform`]).
    Transform(Arc<Transform>),
}

/// What an authentication stage found.
#[derive(Debug)]
pub enum Authn {
    /// Its credential is not in the request: the next authentication stage may try.
    Absent,
    /// The credential is good; the identity is set.
    Accepted,
    /// The credential is present and bad.
    Refused(Denial),
    /// The credential must be verified by the password verifier pool: the chain suspends
    /// until it answers (see [`Checked::Verifying`]).
    Verify(Verification),
    /// The token must be looked up at the authorization server: the chain suspends until
    /// the lookup is resolved (see [`Checked::Verifying`]).
    Introspect(Lookup),
    /// The credential needs the verifier pool, whose queue is full: 503 at once.
    Busy,
}

impl Stage {
    /// The phase this stage runs in.
    pub fn phase(&self) -> Phase {
        match self {
            Stage::Cors(_) => Phase::Cors,
            Stage::Compress(_) => Phase::Compress,
            Stage::Transform(_) => Phase::Transform,
            Stage::IpFilter(_) => Phase::IpFilter,
            Stage::ApiKey(_) | Stage::Basic(_) | Stage::Jwt(_) | Stage::Introspect(_) => {
                Phase::Authentication
            }
            Stage::Authz(_) => Phase::Authorization,
            Stage::Validate(_) => Phase::Validate,
            Stage::RateLimit(_) => Phase::RateLimit,
        }
    }

    /// The policy's configured name (for metrics and logs).
    pub fn name(&self) -> &str {
        match self {
            Stage::Cors(p) => &p.name,
            Stage::Compress(p) => &p.name,
            Stage::Transform(p) => &p.name,
            Stage::IpFilter(p) => &p.name,
            Stage::ApiKey(p) => &p.name,
            Stage::Basic(p) => &p.name,
            Stage::Jwt(p) => &p.name,
            Stage::Introspect(p) => &p.name,
            Stage::Authz(p) => &p.name,
            Stage::Validate(p) => &p.name,
            Stage::RateLimit(p) => &p.name,
        }
    }

    /// Runs an authentication stage (stages of other phases find nothing).
    fn authenticate(
        &self,
        req: &RequestView<'_>,
        identity: &mut Identity,
        state: &PolicyState,
    ) -> Authn {
        match self {
            Stage::ApiKey(p) => p.check(req, identity),
            Stage::Basic(p) => p.check(req, identity, state),
            Stage::Jwt(p) => p.check(req, identity, state),
            Stage::Introspect(p) => p.check(req, identity, state),
            Stage::Cors(_)
            | Stage::Compress(_)
            | Stage::Transform(_)
            | Stage::IpFilter(_)
            | Stage::Authz(_)
            | Stage::Validate(_)
            | Stage::RateLimit(_) => Authn::Absent,
        }
    }

    /// The 401 of an authentication stage whose credential was absent.
    fn missing(&self) -> Denial {
        match self {
            Stage::ApiKey(p) => p.denial("unauthorized: API key required"),
            Stage::Basic(p) => p.denial(),
            Stage::Jwt(p) => p.denial(None),
            Stage::Introspect(p) => p.denial(None),
            Stage::Cors(_)
            | Stage::Compress(_)
            | Stage::Transform(_)
            | Stage::IpFilter(_)
            | Stage::Authz(_)
            | Stage::Validate(_)
            | Stage::RateLimit(_) => Denial::forbidden(cause::FORBIDDEN, "forbidden"),
        }
    }

    /// Where this stage's credential is, when `hide_credentials` keeps it from the upstream
    /// after the stage accepted the request.
    fn hidden_credential(&self) -> Option<Credential<'_>> {
        match self {
            Stage::ApiKey(p) if p.hide_credentials => Some(Credential {
                header: p.header.as_deref(),
                query: p.query.as_deref(),
            }),
            Stage::Basic(p) if p.hide_credentials => Some(Credential::AUTHORIZATION),
            Stage::Jwt(p) if p.hide_credentials => Some(Credential::AUTHORIZATION),
            Stage::Introspect(p) if p.hide_credentials => Some(Credential::AUTHORIZATION),
            _ => None,
        }
    }

    /// Header names this stage sends upstream (the client's copies are dropped).
    fn sent_headers(&self) -> Vec<String> {
        let (forwarding, claims) = match self {
            Stage::ApiKey(p) => (&p.forwarding, &[][..]),
            Stage::Basic(p) => (&p.forwarding, &[][..]),
            Stage::Jwt(p) => (&p.forwarding, p.forward_claims.as_slice()),
            Stage::Introspect(p) => (&p.forwarding, p.forward_claims.as_slice()),
            Stage::Cors(_)
            | Stage::Compress(_)
            | Stage::Transform(_)
            | Stage::IpFilter(_)
            | Stage::Authz(_)
            | Stage::Validate(_)
            | Stage::RateLimit(_) => return Vec::new(),
        };
        forwarding
            .consumer_header
            .iter()
            .cloned()
            .chain(claims.iter().map(|(_, header)| header.clone()))
            .collect()
    }
}

/// A route's compiled policy chain, in [`Phase`] order.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    stages: Box<[Stage]>,
    strip: Box<[Box<str>]>,
}

impl Chain {
    /// Sorts `stages` into phase order, keeping the listing order within a phase (which is
    /// the order alternatives are tried in).
    pub fn new(mut stages: Vec<Stage>) -> Self {
        stages.sort_by_key(Stage::phase);
        let mut strip: Vec<Box<str>> = Vec::new();
        for name in stages.iter().flat_map(Stage::sent_headers) {
            if !strip.iter().any(|s| s.eq_ignore_ascii_case(&name)) {
                strip.push(name.into());
            }
        }
        Chain {
            stages: stages.into_boxed_slice(),
            strip: strip.into_boxed_slice(),
        }
    }

    /// Request headers the gateway sets itself for this route (consumer, forwarded claims):
    /// the client's copies are never forwarded, whether or not the request authenticated.
    pub fn stripped_headers(&self) -> &[Box<str>] {
        &self.strip
    }

    /// Whether the chain authenticates requests.
    pub fn authenticates(&self) -> bool {
        self.stages
            .iter()
            .any(|s| s.phase() == Phase::Authentication)
    }

    /// Whether the route has no policies (then nothing runs).
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The route's `cors` policy, if any. It sorts first (phase [`Phase::Cors`]); the
    /// connection applies it before [`Chain::check`], which skips it.
    pub fn cors(&self) -> Option<&Cors> {
        match self.stages.first() {
            Some(Stage::Cors(p)) => Some(p),
            _ => None,
        }
    }

    /// The route's `compress` policy, if any. It sorts last (phase [`Phase::Compress`]);
    /// the connection applies it after [`Chain::check`], which skips it.
    pub fn compress(&self) -> Option<&Arc<Compress>> {
        self.stages.iter().rev().take(2).find_map(|s| match s {
            Stage::Compress(p) => Some(p),
            _ => None,
        })
    }

    /// The route's `transform` policy, if any. It sorts last (phase [`Phase::Transform`]);
    /// the connection applies it after `compress`, and [`Chain::check`] skips it.
    pub fn transform(&self) -> Option<&Arc<Transform>> {
        match self.stages.last() {
            Some(Stage::Transform(p)) => Some(p),
            _ => None,
        }
    }

    /// The stages, in the order they run.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Runs every stage against `req`. On success `identity` holds what authentication
    /// established; on refusal the [`Denial`] says how to answer. Each deciding stage's
    /// outcome is counted in `metrics`; `state` holds the worker's caches and rate-limit
    /// tables. Stages append the header lines the response must carry (rate-limit fields,
    /// `Retry-After`) to `fields`.
    ///
    /// A `basic` stage whose password is not in the worker's cache suspends the chain:
    /// [`Checked::Verifying`] carries the verification; the caller awaits its
    /// [`Suspended::answer`] and calls [`Chain::resume`] with it and the same arguments. Nothing is allocated otherwise.
    pub fn check(
        &self,
        req: &RequestView<'_>,
        identity: &mut Identity,
        state: &PolicyState,
        metrics: &WorkerMetrics,
        fields: &mut Vec<u8>,
    ) -> Result<Checked, Denial> {
        identity.clear();
        identity.client_ip = client_addr::client_addr(req, req.trusted_proxies);
        self.run(0, req, identity, state, metrics, fields)
    }

    /// Goes on with a chain suspended by a password verification, once the pool answered.
    pub fn resume(
        &self,
        answered: Answered,
        req: &RequestView<'_>,
        identity: &mut Identity,
        state: &PolicyState,
        metrics: &WorkerMetrics,
        fields: &mut Vec<u8>,
    ) -> Result<Checked, Denial> {
        let Answered { stage, answer } = answered;
        let name = self.stages.get(stage).map_or("", Stage::name);
        let completed = match answer {
            Answer::Password {
                verification,
                verified,
            } => verification.complete(verified, identity, state),
            Answer::Introspected(introspected) => introspected.complete(identity),
        };
        match completed {
            Ok(()) => {
                metrics.policy_decision(name, Outcome::Allowed);
                identity.set_accepted_by(stage);
            }
            Err(denial) => {
                metrics.policy_decision(name, denial.outcome());
                if denial.status == 503 {
                    fields.extend_from_slice(BUSY_RETRY_AFTER);
                }
                return Err(denial);
            }
        }
        self.run(stage + 1, req, identity, state, metrics, fields)
    }

    /// Whether a stage checks the request body (then it must be buffered whole before the
    /// upstream exchange, and [`Chain::check_body`] called on it).
    pub fn checks_body(&self) -> bool {
        self.stages
            .iter()
            .any(|s| matches!(s, Stage::Validate(p) if p.checks_body()))
    }

    /// Refuses a request whose body a `validate` stage would parse but which carries a content
    /// coding (see [`validate::Validate::check_coding`]); called before the body is read.
    pub fn check_body_coding(
        &self,
        content_encoding: Option<&[u8]>,
        metrics: &WorkerMetrics,
    ) -> Result<(), Denial> {
        for stage in self.stages.iter() {
            let Stage::Validate(p) = stage else { continue };
            if let Err(denial) = p.check_coding(content_encoding) {
                metrics.policy_decision(stage.name(), denial.outcome());
                return Err(denial);
            }
        }
        Ok(())
    }

    /// Runs the body rules of the chain's `validate` stages on the buffered `body`, once
    /// [`Chain::check`] passed; each such stage's decision is counted here.
    pub fn check_body(
        &self,
        content_type: Option<&[u8]>,
        body: &[u8],
        metrics: &WorkerMetrics,
    ) -> Result<(), Denial> {
        for stage in self.stages.iter() {
            let Stage::Validate(p) = stage else { continue };
            if !p.checks_body() {
                continue;
            }
            let result = p.check_body(content_type, body);
            metrics.policy_decision(stage.name(), outcome_of(&result));
            result?;
        }
        Ok(())
    }

    /// Where the credential that authenticated the request is, if its stage hides it from
    /// the upstream (`hide_credentials`).
    pub fn hidden_credential(&self, identity: &Identity) -> Option<Credential<'_>> {
        let stage = identity.accepted_by().and_then(|i| self.stages.get(i))?;
        stage.hidden_credential()
    }

    /// Runs the stages from index `from` on.
    fn run(
        &self,
        from: usize,
        req: &RequestView<'_>,
        identity: &mut Identity,
        state: &PolicyState,
        metrics: &WorkerMetrics,
        fields: &mut Vec<u8>,
    ) -> Result<Checked, Denial> {
        // The first authentication stage whose credential was absent, in case none is found.
        // A chain resumes only after an authentication stage decided, so none is lost.
        let mut missing: Option<&Stage> = None;
        for (i, stage) in self.stages.iter().enumerate().skip(from) {
            if stage.phase() == Phase::Authentication {
                // Alternatives: once one accepted, the others are not consulted.
                if identity.is_authenticated() {
                    continue;
                }
                match stage.authenticate(req, identity, state) {
                    Authn::Absent => {
                        missing.get_or_insert(stage);
                    }
                    Authn::Accepted => {
                        missing = None;
                        metrics.policy_decision(stage.name(), Outcome::Allowed);
                        identity.set_accepted_by(i);
                    }
                    Authn::Refused(denial) => {
                        metrics.policy_decision(stage.name(), denial.outcome());
                        return Err(denial);
                    }
                    Authn::Verify(verification) => {
                        return Ok(Checked::Verifying(Suspended {
                            stage: i,
                            wait: Wait::Password(verification),
                        }));
                    }
                    Authn::Introspect(lookup) => {
                        return Ok(Checked::Verifying(Suspended {
                            stage: i,
                            wait: Wait::Introspection(lookup),
                        }));
                    }
                    Authn::Busy => {
                        let denial = Denial::busy();
                        metrics.policy_decision(stage.name(), denial.outcome());
                        fields.extend_from_slice(BUSY_RETRY_AFTER);
                        return Err(denial);
                    }
                }
                continue;
            }
            unauthenticated(missing, identity, metrics)?;
            let result = match stage {
                // Applied by the connection before the chain (see `Chain::cors`).
                Stage::Cors(_) => continue,
                // Applied by the connection after the chain (see `Chain::compress`).
                Stage::Compress(_) => continue,
                // Applied by the connection after `compress` (see `Chain::transform`).
                Stage::Transform(_) => continue,
                Stage::IpFilter(p) => p.check(req, identity),
                Stage::Authz(p) => p.check(identity),
                // A policy with a body rule decides once the body was checked too.
                Stage::Validate(p) if p.checks_body() => {
                    if let Err(denial) = p.check(req) {
                        metrics.policy_decision(stage.name(), denial.outcome());
                        return Err(denial);
                    }
                    continue;
                }
                Stage::Validate(p) => p.check(req),
                Stage::ApiKey(_) | Stage::Basic(_) | Stage::Jwt(_) | Stage::Introspect(_) => Ok(()),
                Stage::RateLimit(p) => {
                    rate_limit::check(p, req, identity, &state.rate_limits, fields)
                }
            };
            metrics.policy_decision(stage.name(), outcome_of(&result));
            result?;
        }
        unauthenticated(missing, identity, metrics).map(|()| Checked::Passed)
    }
}

/// `Retry-After` of the 503 answered when the password verifier pool is busy.
const BUSY_RETRY_AFTER: &[u8] = b"Retry-After: 1\r\n";

/// What a chain run decided when it refused nothing.
#[derive(Debug)]
#[must_use]
pub enum Checked {
    /// Every stage passed.
    Passed,
    /// A password verification or a token introspection must be awaited, then the chain
    /// resumed.
    Verifying(Suspended),
}

/// A chain suspended on asynchronous work (see [`Chain::check`]).
#[derive(Debug)]
pub struct Suspended {
    /// Index of the suspended stage.
    stage: usize,
    wait: Wait,
}

/// What a suspended chain waits for.
#[derive(Debug)]
enum Wait {
    /// The password verifier pool.
    Password(Verification),
    /// The authorization server (through `transport`).
    Introspection(Lookup),
}

impl Suspended {
    /// Waits for the answer (the verifier pool's, or the introspection's, looked up
    /// through `transport` with the worker's `state`); the chain goes on with
    /// [`Chain::resume`].
    pub async fn answer<T: Transport>(self, state: &PolicyState, transport: &T) -> Answered {
        let answer = match self.wait {
            Wait::Password(verification) => {
                let verified = verification.verified().await;
                Answer::Password {
                    verification,
                    verified,
                }
            }
            Wait::Introspection(lookup) => {
                Answer::Introspected(lookup.resolve(state, transport).await)
            }
        };
        Answered {
            stage: self.stage,
            answer,
        }
    }
}

/// A suspended chain whose wait is over.
#[derive(Debug)]
pub struct Answered {
    stage: usize,
    answer: Answer,
}

#[derive(Debug)]
enum Answer {
    Password {
        verification: Verification,
        /// Whether the password matched.
        verified: bool,
    },
    Introspected(Introspected),
}

/// Where an authentication credential travels in the request, for `hide_credentials`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential<'a> {
    /// The header field carrying it.
    pub header: Option<&'a str>,
    /// The query parameter carrying it.
    pub query: Option<&'a str>,
}

impl Credential<'static> {
    /// The `Authorization` field (`basic`, `jwt`).
    const AUTHORIZATION: Self = Credential {
        header: Some("authorization"),
        query: None,
    };
}

/// The 401 of the first authentication stage when none found its credential.
fn unauthenticated(
    missing: Option<&Stage>,
    identity: &Identity,
    metrics: &WorkerMetrics,
) -> Result<(), Denial> {
    match missing {
        Some(stage) if !identity.is_authenticated() => {
            let denial = stage.missing();
            metrics.policy_decision(stage.name(), denial.outcome());
            Err(denial)
        }
        _ => Ok(()),
    }
}

fn outcome_of(result: &Result<(), Denial>) -> Outcome {
    match result {
        Ok(()) => Outcome::Allowed,
        Err(d) => d.outcome(),
    }
}

/// What a policy sees of the request: the parsed head, read in place.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The input buffer the head was parsed from.
    pub data: &'a [u8],
    /// The head's header fields (spans into `data`).
    pub headers: &'a [HeaderSpan],
    /// The query string (after `?`), if any.
    pub query: Option<&'a [u8]>,
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// `[server] trusted_proxies`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: &'a [ipnet::IpNet],
    /// The matched route's name.
    pub route: &'a str,
    /// The route template's parameters (`{id}`), when the caller has them.
    pub path_params: Option<PathParams<'a>>,
}

/// The parameters a route's path template captured, by name.
#[derive(Debug, Clone, Copy)]
pub struct PathParams<'a> {
    /// The template's parameter names, in capture order.
    pub names: &'a [Box<str>],
    /// The captures.
    pub params: &'a Params,
    /// The normalized path they were captured from.
    pub path: &'a str,
}

impl<'a> PathParams<'a> {
    /// The captured value of `name` (still percent-encoded).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let i = self.names.iter().position(|n| &**n == name)?;
        self.params.get(i, self.path)
    }
}

impl<'a> RequestView<'a> {
    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let data = self.data;
        self.headers
            .iter()
            .find(|h| h.name.of(data).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.of(data))
    }

    /// The values of every header named `name`, in order.
    pub fn headers_named<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        let data = self.data;
        self.headers
            .iter()
            .filter(move |h| h.name.of(data).eq_ignore_ascii_case(name.as_bytes()))
            .map(move |h| h.value.of(data))
    }
}

/// How a refused request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// 401, 403 (429 for limits, 503 when the password verifier pool is busy).
    pub status: u16,
    /// The cause's stable name, the last segment of its problem+json `type`
    /// (`unauthenticated`, `group-denied`, `rate-limited`, ...).
    pub cause: &'static str,
    /// Short body text; names the cause class, never a secret.
    pub message: &'static str,
    /// The `WWW-Authenticate` challenge of a 401.
    pub challenge: Challenge,
    /// What a `validate` policy found wrong (empty for every other refusal). A refusal
    /// with violations is always answered as problem+json.
    pub violations: Vec<Violation>,
}

impl Denial {
    /// 403 for `cause` (its problem type), with `message`.
    pub fn forbidden(cause: &'static str, message: &'static str) -> Self {
        Denial {
            status: 403,
            cause,
            message,
            challenge: Challenge::None,
            violations: Vec::new(),
        }
    }

    /// 503 with `Retry-After`: the password verifier pool's queue is full.
    pub fn busy() -> Self {
        Denial {
            status: 503,
            cause: cause::VERIFIER_BUSY,
            message: "service unavailable: password verification busy, retry later",
            challenge: Challenge::None,
            violations: Vec::new(),
        }
    }

    /// The outcome counted in the metrics.
    pub fn outcome(&self) -> Outcome {
        match self.status {
            401 => Outcome::Unauthenticated,
            403 => Outcome::Forbidden,
            429 => Outcome::Limited,
            503 => Outcome::Busy,
            _ => Outcome::Refused,
        }
    }
}

/// The `WWW-Authenticate` field of a 401 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No challenge (403, 429).
    None,
    /// `Basic realm="..."` (RFC 7617); the realm was checked for quotes at compile time.
    Basic {
        /// The protection space.
        realm: Arc<str>,
    },
    /// `Bearer error="...", error_description="..."` (RFC 6750 §3). Without an error code
    /// (no token was sent) only `Bearer realm="..."` is written, as §3.1 asks.
    Bearer {
        /// The protection space.
        realm: Arc<str>,
        /// `invalid_token` or `None` when no token was presented.
        error: Option<&'static str>,
        /// Human-readable reason; fixed texts, never token contents.
        description: &'static str,
    },
    /// `ApiKey header="..."`: not a registered scheme, but it tells a client where the key
    /// goes.
    ApiKey {
        /// Where the key is read from, e.g. `header="X-Api-Key"` or `query="api_key"`.
        location: Arc<str>,
    },
}

impl Challenge {
    /// Appends the `WWW-Authenticate` field line, if any.
    pub fn write_field(&self, out: &mut Vec<u8>) {
        let start = |out: &mut Vec<u8>| out.extend_from_slice(b"WWW-Authenticate: ");
        match self {
            Challenge::None => return,
            Challenge::Basic { realm } => {
                start(out);
                out.extend_from_slice(b"Basic realm=\"");
                out.extend_from_slice(realm.as_bytes());
                out.extend_from_slice(b"\", charset=\"UTF-8\"");
            }
            Challenge::Bearer {
                realm,
                error,
                description,
            } => {
                start(out);
                out.extend_from_slice(b"Bearer realm=\"");
                out.extend_from_slice(realm.as_bytes());
                out.push(b'"');
                if let Some(error) = error {
                    out.extend_from_slice(b", error=\"");
                    out.extend_from_slice(error.as_bytes());
                    out.extend_from_slice(b"\", error_description=\"");
                    out.extend_from_slice(description.as_bytes());
                    out.push(b'"');
                }
            }
            Challenge::ApiKey { location } => {
                start(out);
                out.extend_from_slice(b"ApiKey ");
                out.extend_from_slice(location.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}
