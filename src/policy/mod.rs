//! Request policies: the checks a route runs between routing and forwarding.
//!
//! A route lists named policies (`policies = ["jwt-users", "office-only"]`); compilation turns
//! the list into a [`Chain`]: a boxed slice of [`Stage`]s, one enum variant per policy kind,
//! sorted into the fixed [`Phase`] order below whatever order the route listed them in.
//!
//! ```text
//! ip_filter ─▶ authentication (api_key | basic | jwt) ─▶ authorization (authz) ─▶ rate_limit
//! ```
//!
//! Why a fixed order and not the listing order: each phase needs what the one before it
//! established, and the cheap, unauthenticated checks must run before the expensive ones.
//! - `ip_filter` first: it needs only the peer address, costs a few comparisons, and an
//!   address that is refused must not get to exercise password hashing or JWT verification.
//! - authentication next: it establishes the consumer that authorization and a
//!   `key = "consumer"` rate limit need.
//! - authorization after authentication, for the same reason.
//! - rate limits last, so that they count the requests of identified consumers and so that
//!   refused requests (401/403) do not consume a consumer's allowance.
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
//! Adding a kind: one module here with its compiled policy type and `check`, one variant in
//! [`Stage`] with its [`Phase`], one arm in `config/compile/policies.rs`.
//!
//! No locks here and, for a passing request on a warm connection, no allocation: headers are
//! read in place from the parsed head, per-worker caches live in [`PolicyState`].

pub mod client_addr;
pub mod ip_filter;
pub mod rate_limit;

use std::net::IpAddr;
use std::sync::Arc;

use crate::http::HeaderSpan;
pub use crate::metrics::PolicyOutcome as Outcome;
use crate::metrics::WorkerMetrics;

pub use ip_filter::IpFilter;

use crate::rate_limit::{RateLimitPolicy, WorkerLimits};

/// The phases a chain runs in, in this order. See the module docs for why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Client address allow/deny lists.
    IpFilter,
    /// Who the client is: API key, HTTP Basic, JWT.
    Authentication,
    /// What the identified client may do: groups, scopes, claims.
    Authorization,
    /// How often it may do it.
    RateLimit,
}

/// One compiled policy in a route's chain. Static dispatch: every kind is a variant.
#[derive(Debug, Clone)]
pub enum Stage {
    /// `kind = "ip_filter"`.
    IpFilter(Arc<IpFilter>),
    /// `kind = "rate_limit"`.
    RateLimit(Arc<RateLimitPolicy>),
}

impl Stage {
    /// The phase this stage runs in.
    pub fn phase(&self) -> Phase {
        match self {
            Stage::IpFilter(_) => Phase::IpFilter,
            Stage::RateLimit(_) => Phase::RateLimit,
        }
    }

    /// The policy's configured name (for metrics and logs).
    pub fn name(&self) -> &str {
        match self {
            Stage::IpFilter(p) => &p.name,
            Stage::RateLimit(p) => &p.name,
        }
    }
}

/// A route's compiled policy chain, in [`Phase`] order.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    stages: Box<[Stage]>,
}

impl Chain {
    /// Sorts `stages` into phase order, keeping the listing order within a phase (which is
    /// the order alternatives are tried in).
    pub fn new(mut stages: Vec<Stage>) -> Self {
        stages.sort_by_key(Stage::phase);
        Chain {
            stages: stages.into_boxed_slice(),
        }
    }

    /// Whether the route has no policies (then nothing runs).
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The stages, in the order they run.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Runs every stage against `req`. On success `identity` holds what authentication
    /// established; on refusal the [`Denial`] says how to answer. Outcomes are counted in
    /// `metrics`; `state` holds the worker's caches and rate-limit tables. Stages append
    /// the header lines the response must carry (rate-limit fields) to `fields`.
    pub fn check(
        &self,
        req: &RequestView<'_>,
        identity: &mut Identity,
        state: &PolicyState,
        metrics: &WorkerMetrics,
        fields: &mut Vec<u8>,
    ) -> Result<(), Denial> {
        identity.clear();
        identity.client_ip = client_addr::client_addr(req, req.trusted_proxies);
        for stage in self.stages.iter() {
            let result = match stage {
                Stage::IpFilter(p) => p.check(req, identity),
                Stage::RateLimit(p) => {
                    rate_limit::check(p, req, identity, &state.rate_limits, fields)
                }
            };
            metrics.policy_decision(stage.name(), outcome_of(&result));
            result?;
        }
        Ok(())
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

/// What the chain established about the request; owned by the connection and reused, so
/// that filling it allocates nothing once its buffers have grown.
#[derive(Debug)]
pub struct Identity {
    /// The client's address: the peer, or the address a trusted proxy forwarded for.
    pub client_ip: IpAddr,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            client_ip: IpAddr::from([0, 0, 0, 0]),
        }
    }
}

impl Identity {
    /// Forgets the previous request.
    pub fn clear(&mut self) {
        self.client_ip = IpAddr::from([0, 0, 0, 0]);
    }
}

/// How a refused request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// 401, 403 (or 429 for limits).
    pub status: u16,
    /// Short body text; names the cause class, never a secret.
    pub message: &'static str,
    /// The `WWW-Authenticate` challenge of a 401.
    pub challenge: Challenge,
}

impl Denial {
    /// 403 with `message`.
    pub fn forbidden(message: &'static str) -> Self {
        Denial {
            status: 403,
            message,
            challenge: Challenge::None,
        }
    }

    /// The outcome counted in the metrics.
    pub fn outcome(&self) -> Outcome {
        match self.status {
            401 => Outcome::Unauthenticated,
            403 => Outcome::Forbidden,
            429 => Outcome::Limited,
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

/// A worker's policy state: what policies remember between requests (verification caches).
/// `!Sync`, never locked; one per worker.
#[derive(Debug)]
pub struct PolicyState {
    /// The worker's rate-limit tables.
    pub rate_limits: WorkerLimits,
}

impl PolicyState {
    /// The state of worker `worker` of `workers`.
    pub fn new(worker: usize, workers: usize) -> Self {
        PolicyState {
            rate_limits: WorkerLimits::new(worker, workers),
        }
    }
}
