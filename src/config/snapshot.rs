//! The runtime's view of the configuration: compiled, validated and immutable.
//!
//! Workers read a [`Snapshot`] through `ArcSwap`; nothing in here is ever mutated after
//! compilation. The raw file shape lives in `config::file` and never reaches the runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::access_log::{AccessLogSettings, Destination as AccessLogDestination};
use crate::policy::jwt::KeyStore;
use crate::policy::Chain;
use crate::rate_limit::RateLimitPolicy;
use crate::router::{Rewrite, Router};
pub use crate::tls::{TlsListener, UpstreamTls};
pub use crate::traffic::{DefaultGroup, GroupChoice, MirrorSettings};
pub use crate::tunnel::{TunnelLimits, UpgradeRules};
pub use crate::upstream::{
    Balance, BreakerPolicy, Discovery, HashKey, HealthCheck, LiveTargets, PassivePolicy,
    RetryPolicy, StatusRange, TargetSpec,
};

/// The compiled configuration a worker serves requests with.
#[derive(Debug)]
pub struct Snapshot {
    /// Process-wide settings: listeners, workers, limits, timeouts.
    pub server: ServerSettings,
    /// The compiled route matcher; its payload is the route's action.
    pub router: Router<Route>,
    /// Upstream groups, indexed by [`UpstreamId`].
    pub upstreams: Vec<Upstream>,
    /// The admin listener, if `[admin]` is configured.
    pub admin: Option<AdminSettings>,
    /// Metrics settings.
    pub metrics: MetricsSettings,
    /// The access log, if `[access_log]` is configured.
    pub access_log: Option<AccessLogSettings>,
    /// Every rate-limit policy, indexed by the slot routes refer to them by.
    pub rate_limits: Vec<Arc<RateLimitPolicy>>,
    /// `[redis]`, for cluster-scoped rate limits.
    pub redis: Option<RedisSettings>,
    /// The key stores of `jwt` policies with a `jwks_url`; their fetchers start when a server
    /// publishes the snapshot ([`Snapshot::start_background`]).
    pub jwks_stores: Vec<Arc<KeyStore>>,
    /// `[caches.NAME]`, indexed by [`crate::cache::CacheId`]; each worker keeps its own
    /// entries for each.
    pub caches: Vec<Arc<crate::cache::CacheSettings>>,
}

/// `[redis]`: the store cluster-scoped rate limits share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host:port[/db]`.
    pub url: String,
}

/// `[admin]`: the control API's own listener (never the public one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Address of the admin listener.
    pub listen: SocketAddr,
    /// Bearer token every admin request must carry, if set.
    pub token: Option<String>,
}

/// `[metrics]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    /// How often workers hand their interval's figures to the control side.
    pub merge_interval: Duration,
}

impl Snapshot {
    /// The upstream group a route refers to.
    pub fn upstream(&self, id: UpstreamId) -> &Upstream {
        &self.upstreams[id.0]
    }

    /// Starts the background work this snapshot needs once it serves (JWKS URL fetchers);
    /// the server calls it when it publishes the snapshot, so compiling one (`--check`, a
    /// refused reload) starts nothing. Calling it again does nothing.
    pub fn start_background(&self) {
        for store in &self.jwks_stores {
            store.start_refresher();
        }
    }
}

/// How many worker threads to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerCount {
    /// One worker per core the process may run on.
    Auto,
    /// Exactly this many workers (at least one).
    Fixed(usize),
}

/// Which monoio driver a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring where it can be set up, else epoll.
    Auto,
    /// io_uring only; start-up fails where it is unavailable.
    IoUring,
    /// The epoll (legacy) driver.
    Legacy,
}

/// `[server]`: listeners, workers and the limits every connection is held to.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Addresses to listen on; each worker binds its own `SO_REUSEPORT` socket per address.
    pub listen: Vec<SocketAddr>,
    /// `[[server.tls]]`: listeners that terminate TLS (bound like `listen`).
    pub tls: Vec<TlsListener>,
    /// Request fields only the gateway writes (the client certificate subject fields of
    /// every TLS listener, and the default name): copies sent by clients are dropped.
    pub identity_headers: Vec<Box<str>>,
    /// Worker thread count.
    pub workers: WorkerCount,
    /// Pin worker `i` to the `i`-th allowed core.
    pub pin_workers: bool,
    /// Password verifier threads (`basic` policies); `None`: one per worker.
    pub password_verifiers: Option<usize>,
    /// Password verifications waiting for a verifier at most; more are answered 503.
    pub password_queue: usize,
    /// Driver selection.
    pub driver: DriverChoice,
    /// io_uring submission queue size per worker: queued operations go to the kernel when
    /// the worker has nothing left to run or when this many are queued.
    pub uring_entries: u32,
    /// Run io_uring completion work only when the worker waits (`IORING_SETUP_DEFER_TASKRUN`),
    /// instead of at every entry into the kernel. Off by default: from Linux 6.13 a wait runs
    /// at most 20 deferred items, so under saturation the connections whose data arrived
    /// while the worker was busy wait several rounds.
    pub uring_defer_taskrun: bool,
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    pub graceful_shutdown: Duration,
    /// Size limits on requests.
    pub limits: Limits,
    /// Client-side timeouts.
    pub timeouts: ServerTimeouts,
    /// Proxies whose `X-Forwarded-For` is believed when they are the TCP peer.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// What happens to request header fields whose name contains `_`.
    pub underscores_in_headers: crate::http::UnderscorePolicy,
    /// `errors`: the body format of the gateway's own 4xx/5xx answers (routes may override).
    pub errors: ErrorFormat,
    /// HTTP/2 with prior knowledge (h2c) on the plain listeners.
    pub h2c: bool,
    /// `[server.http2]`: what HTTP/2 client connections are held to.
    pub http2: crate::http2::Http2Settings,
}

/// How the gateway writes the bodies of the 4xx/5xx answers it makes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorFormat {
    /// A short `text/plain` line (default).
    #[default]
    Text,
    /// RFC 9457 `application/problem+json`, with a stable `type` per cause.
    Problem,
}

impl ServerSettings {
    /// Every listener: `listen` (plain HTTP), then the TLS listeners.
    pub fn listeners(&self) -> Vec<ListenKey> {
        let plain = self
            .listen
            .iter()
            .map(|&addr| ListenKey { addr, tls: false });
        let tls = self.tls.iter().map(|t| ListenKey {
            addr: t.listen,
            tls: true,
        });
        plain.chain(tls).collect()
    }

    /// The TLS listener configured at `addr`, if that address is one.
    pub fn tls_listener(&self, addr: SocketAddr) -> Option<&TlsListener> {
        self.tls.iter().find(|t| t.listen == addr)
    }
}

/// A listener as configured: its address (port 0 not yet resolved) and whether it
/// terminates TLS. Unique within a snapshot; a reload keeps the listeners whose key stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenKey {
    /// The configured address.
    pub addr: SocketAddr,
    /// Whether it is a `[[server.tls]]` listener.
    pub tls: bool,
}

/// `[server.limits]`: sizes a request may not exceed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line plus headers, in bytes (431 beyond).
    pub max_head_bytes: usize,
    /// Number of header fields (431 beyond).
    pub max_headers: usize,
    /// Request-target length in bytes (414 beyond).
    pub max_uri_bytes: usize,
    /// Request body size in bytes (413 beyond); a route may set its own.
    pub max_body_bytes: u64,
    /// Slowest average rate, in bytes per second, a request body may arrive at (408 below).
    pub min_body_rate: Option<u64>,
    /// Open client connections one worker serves; more are closed at once.
    pub max_connections_per_worker: Option<usize>,
    /// Open client connections from one address on one worker; more are closed at once.
    pub max_connections_per_ip: Option<usize>,
    /// Open tunnels (upgraded connections) one worker carries; more handshakes are
    /// answered 503.
    pub max_tunnels_per_worker: Option<usize>,
}

/// `[server.timeouts]`: how long a client may keep the gateway waiting.
#[derive(Debug, Clone, Copy)]
pub struct ServerTimeouts {
    /// Time to receive a whole request head once its first byte arrived (slowloris guard).
    pub head_read: Duration,
    /// Time an idle keep-alive connection is kept open waiting for its next request.
    pub keepalive_idle: Duration,
    /// Longest pause between two reads of a request body.
    pub body_idle: Duration,
    /// Longest time a tunnel may carry no byte either way, unless its route sets its own.
    pub tunnel_idle: Duration,
    /// Longest life of a tunnel, unless its route sets its own (`None`: no limit).
    pub tunnel_max: Option<Duration>,
}

/// A compiled route: what to do with a request that matched it.
#[derive(Debug)]
pub struct Route {
    /// The route's configured name (for logs and errors).
    pub name: String,
    /// The policies the request passes before the action, in phase order.
    pub policies: Chain,
    /// Proxy to an upstream, or answer directly.
    pub action: RouteAction,
    /// This route's request body limit, if it overrides `server.limits.max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// `redirect_https`: requests that arrive over plain HTTP are answered with a 308 to
    /// `https://` on this port (443 is left out of the URL).
    pub redirect_https: Option<u16>,
    /// `errors`: this route's format for gateway answers, if it overrides the server's.
    pub errors: Option<ErrorFormat>,
    /// The match conditions as configured (the OpenAPI export describes them).
    pub matcher: crate::router::RouteMatcher,
}

/// What a route does with a matched request.
#[derive(Debug)]
pub enum RouteAction {
    /// Forward to an upstream group.
    Proxy(ProxyAction),
    /// Answer from the gateway itself.
    Respond(StaticResponse),
    /// Answer with a composite: several backend calls merged into one JSON document.
    Compose(ComposeAction),
}

/// How a composite route answers (`compose = "NAME"`).
#[derive(Debug)]
pub struct ComposeAction {
    /// The compiled composite (shared by every route that names it).
    pub composite: Arc<crate::compose::Composite>,
    /// For each of the composite's parameter slots, the index of this route's parameter.
    pub params: Vec<usize>,
}

/// Index of an upstream group in [`Snapshot::upstreams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpstreamId(pub usize);

/// How a proxied route forwards its requests.
#[derive(Debug)]
pub struct ProxyAction {
    /// Which upstream group serves a request: version rules, then the split or the one group.
    pub groups: GroupChoice,
    /// A share of requests copied to a shadow group, if configured.
    pub mirror: Option<MirrorSettings>,
    /// A leading path prefix removed before forwarding (segment-aware).
    pub strip_prefix: Option<String>,
    /// A path template the forwarded path is rewritten to (applied after `strip_prefix`).
    pub rewrite: Option<Rewrite>,
    /// The `Host` header sent upstream.
    pub host: HostPolicy,
    /// Whether non-idempotent requests (POST, PATCH) may be retried too.
    pub retry_non_idempotent: bool,
    /// The protocols requests may upgrade to, and their tunnels' limits (`upgrade = [...]`).
    pub upgrade: Option<Box<UpgradeRules>>,
    /// The response cache (`cache = "NAME"`), if the route has one.
    pub cache: Option<crate::cache::CacheId>,
}

/// Which `Host` header goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    /// The client's `Host`, unchanged (default).
    Preserve,
    /// This fixed value.
    Rewrite(String),
}

/// A response the gateway serves itself.
#[derive(Debug, Clone)]
pub struct StaticResponse {
    /// Status code.
    pub status: u16,
    /// Extra headers, written in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: bytes::Bytes,
}

/// An upstream group: targets and how to talk to them.
#[derive(Debug)]
pub struct Upstream {
    /// The group's configured name.
    pub name: String,
    /// Targets as configured (names resolved at compile time), in declared order.
    pub targets: Vec<Target>,
    /// Keep-alive pool settings, per worker and target.
    pub pool: PoolSettings,
    /// Upstream timeouts.
    pub timeouts: UpstreamTimeouts,
    /// The balancing algorithm.
    pub balance: Balance,
    /// Active health checks, if configured.
    pub health: Option<HealthCheck>,
    /// Passive health (outlier ejection), if configured.
    pub passive: Option<PassivePolicy>,
    /// Retry rules (default: none).
    pub retry: RetryPolicy,
    /// Circuit breaker, if configured.
    pub breaker: Option<BreakerPolicy>,
    /// DNS re-resolution, if `resolve_every` is set.
    pub discovery: Option<Discovery>,
    /// The targets in force: health cells, ring; republished by reloads and DNS refreshes.
    pub live: std::sync::Arc<LiveTargets>,
    /// TLS to the targets, if enabled.
    pub tls: Option<UpstreamTls>,
    /// The protocol spoken to the targets.
    pub protocol: crate::http2::UpstreamProtocol,
    /// Multiplexed connections of an h2/h2c group.
    pub http2: crate::http2::UpstreamHttp2,
}

/// One backend address in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Socket address (names are resolved when the config is compiled).
    pub addr: SocketAddr,
    /// Relative weight (used by weighted balancers; round robin ignores it).
    pub weight: u32,
}

/// Per-worker keep-alive pool settings for each target.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Idle connections kept per target per worker.
    pub max_idle_per_target: usize,
    /// An idle connection older than this is closed instead of reused.
    pub idle_timeout: Duration,
}

/// Timeouts on the upstream side of an exchange.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeouts {
    /// TCP connect.
    pub connect: Duration,
    /// From the end of the request to the first byte of the response head.
    pub first_byte: Duration,
    /// Longest pause between two reads of the response (head or body) once it started.
    pub idle: Duration,
    /// Longest time from the first attempt to a response head, across every attempt and
    /// backoff (`None`: no overall limit).
    pub total: Option<Duration>,
}
