//! The file's shape: serde structs that mirror the TOML exactly and nothing more.
//!
//! Every struct denies unknown fields: a key that parses and does nothing is a defect, so a
//! key the runtime does not implement yet (`[admin]`, `health`, `retry`, ...) is refused with
//! its line. Values that `compile` validates are wrapped in `Spanned` so its problems can name
//! the line too. Defaults are applied in `compile`, not here, so this file stays the shape.
//! The runtime never sees these types.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::Deserialize as DeriveDeserialize;
use toml::Spanned;

use super::units::{DurationValue, SizeValue};

/// The whole file.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`; absent means every default.
    pub server: Option<RawServer>,
    /// `[[upstreams]]`.
    #[serde(default)]
    pub upstreams: Vec<RawUpstream>,
    /// `[[routes]]`.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// `[admin]`; absent means no admin listener.
    pub admin: Option<RawAdmin>,
    /// `[metrics]`.
    pub metrics: Option<RawMetrics>,
    /// `[access_log]`; absent means no access log.
    pub access_log: Option<RawAccessLog>,
    /// `[policies.NAME]` tables, in file order.
    pub policies: Option<Ordered<RawPolicy>>,
    /// `[[consumers]]`.
    #[serde(default)]
    pub consumers: Vec<RawConsumer>,
    /// `[redis]`, for cluster-scoped rate limits.
    pub redis: Option<RawRedis>,
    /// `[composites.NAME]` tables, in file order.
    pub composites: Option<Ordered<super::file_compose::RawComposite>>,
    /// `[caches.NAME]` tables, in file order.
    pub caches: Option<Ordered<RawCache>>,
}

/// One `[caches.NAME]` table: one LRU per worker with these limits.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Memory budget per worker (heads, bodies and index).
    pub max_bytes: Option<Spanned<SizeValue>>,
    /// Largest response stored; larger ones stream through uncached.
    pub max_object_bytes: Option<Spanned<SizeValue>>,
    /// `{ query, headers, cookies }`: what besides method, host and path is in the key.
    pub key: Option<Spanned<RawCacheKey>>,
    /// Freshness of storable responses that state none.
    pub default_ttl: Option<Spanned<DurationValue>>,
    /// The upstream's field of space-separated purge tags.
    pub tag_header: Option<Spanned<String>>,
    /// Longest wait for another request's miss of the same key.
    pub coalesce_wait: Option<Spanned<DurationValue>>,
}

/// `key = { query = "all" | "none" | [names], headers = [...], cookies = [...] }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheKey {
    /// `"all"`, `"none"`, or the parameter names that are part of the key.
    pub query: Option<Spanned<RawQueryKey>>,
    /// Request header fields in the key.
    pub headers: Option<Vec<Spanned<String>>>,
    /// Cookies in the key.
    pub cookies: Option<Vec<Spanned<String>>>,
}

/// `query = "all" | "none" | ["page", "sort"]`.
#[derive(Debug, Clone, DeriveDeserialize)]
#[serde(untagged)]
pub enum RawQueryKey {
    /// `"all"` or `"none"`.
    Word(String),
    /// Parameter names.
    Names(Vec<String>),
}

/// One `[[consumers]]` entry.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    /// Unique name.
    pub name: Spanned<String>,
    /// Groups for authorization.
    pub groups: Option<Vec<Spanned<String>>>,
    /// API keys: `sha256:<hex>` digests (or plain keys).
    pub api_keys: Option<Vec<Spanned<String>>>,
    /// argon2 or bcrypt hash of the HTTP Basic password.
    pub password_hash: Option<Spanned<String>>,
}

/// A string or an array of strings (`audience = "a"` or `audience = ["a", "b"]`).
#[derive(Debug, Clone, DeriveDeserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `[redis]`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `url = "redis://127.0.0.1:6379"`.
    pub url: Spanned<String>,
}

/// `[access_log]`.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    /// `format`: `"json"` or `"combined"`.
    pub format: Option<Spanned<String>>,
    /// `path`: `"stdout"` or a file path.
    pub path: Option<Spanned<String>>,
}

/// `[admin]`.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `listen`: one socket address.
    pub listen: Option<Spanned<String>>,
    /// `token`: bearer token required on every admin request.
    pub token: Option<Spanned<String>>,
}

/// `[metrics]`.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `merge_interval`: how often workers hand their figures to the control side.
    pub merge_interval: Option<Spanned<DurationValue>>,
}

/// `[server]`.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Socket addresses; the span covers the whole array.
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
    /// `"auto"` or a count.
    pub workers: Option<Spanned<RawWorkers>>,
    /// Pin worker `i` to the `i`-th allowed core.
    pub pin_workers: Option<bool>,
    /// Password verifier threads (default: one per worker).
    pub password_verifiers: Option<Spanned<i64>>,
    /// Password verifications waiting for a verifier at most.
    pub password_queue: Option<Spanned<i64>>,
    /// Driver selection.
    pub driver: Option<RawDriver>,
    /// io_uring submission queue size per worker.
    pub uring_entries: Option<Spanned<i64>>,
    /// io_uring completion work deferred to the worker's waits (`IORING_SETUP_DEFER_TASKRUN`).
    pub uring_defer_taskrun: Option<bool>,
    /// Drain time after a shutdown signal.
    pub graceful_shutdown: Option<DurationValue>,
    /// `[server.limits]`.
    pub limits: Option<RawLimits>,
    /// `[server.timeouts]`.
    pub timeouts: Option<RawServerTimeouts>,
    /// Proxies whose `X-Forwarded-For` is believed (CIDR ranges or addresses).
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// Request header names with `_`.
    pub underscores_in_headers: Option<RawUnderscores>,
    /// `[[server.tls]]`: TLS listeners.
    #[serde(default)]
    pub tls: Vec<RawTlsListener>,
    /// `errors = "text" | "problem"`: the body format of the gateway's own 4xx/5xx answers.
    pub errors: Option<Spanned<String>>,
    /// HTTP/2 with prior knowledge (h2c) on the plain listeners.
    pub h2c: Option<Spanned<bool>>,
    /// `[server.http2]`: settings of HTTP/2 client connections.
    pub http2: Option<RawHttp2>,
}

/// `[server.http2]`.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp2 {
    /// Streams a client may have open at once.
    pub max_concurrent_streams: Option<Spanned<i64>>,
    /// Receive window per stream.
    pub initial_stream_window: Option<Spanned<SizeValue>>,
    /// Receive window of the connection.
    pub initial_connection_window: Option<Spanned<SizeValue>>,
    /// Largest frame payload accepted.
    pub max_frame_size: Option<Spanned<SizeValue>>,
    /// Largest decoded header block.
    pub max_header_list_size: Option<Spanned<SizeValue>>,
    /// HPACK dynamic table size.
    pub header_table_size: Option<Spanned<SizeValue>>,
    /// Stream resets per second before the connection is closed.
    pub max_resets_per_second: Option<Spanned<i64>>,
    /// Bytes queued per stream beyond the client's window.
    pub max_send_buffer: Option<Spanned<SizeValue>>,
}

/// `http2 = { ... }` of an h2/h2c upstream group.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamHttp2 {
    /// Multiplexed connections per target per worker.
    pub max_connections_per_target: Option<Spanned<i64>>,
    /// Streams per connection.
    pub max_streams_per_connection: Option<Spanned<i64>>,
    /// PING interval.
    pub ping_interval: Option<Spanned<DurationValue>>,
    /// PING answer deadline.
    pub ping_timeout: Option<Spanned<DurationValue>>,
    /// Receive window per stream.
    pub initial_stream_window: Option<Spanned<SizeValue>>,
    /// Receive window of the connection.
    pub initial_connection_window: Option<Spanned<SizeValue>>,
}

/// One `[[server.tls]]` entry: a listener that terminates TLS.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsListener {
    /// Socket address.
    pub listen: Spanned<String>,
    /// Certificates with their keys; the span covers the whole array.
    pub certificates: Spanned<Vec<RawCertificate>>,
    /// `"1.2"` or `"1.3"`.
    pub min_version: Option<Spanned<String>>,
    /// Cipher suite names, in preference order.
    pub cipher_suites: Option<Vec<Spanned<String>>>,
    /// ALPN protocol names offered.
    pub alpn: Option<Vec<Spanned<String>>>,
    /// Client certificate verification.
    pub client_auth: Option<RawClientAuth>,
    /// `Strict-Transport-Security` value added to every response.
    pub hsts: Option<Spanned<String>>,
}

/// `{ cert = "...", key = "...", server_names = [...] }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// PEM file with the certificate chain, leaf first.
    pub cert: Spanned<String>,
    /// PEM file with the private key.
    pub key: Spanned<String>,
    /// SNI names this certificate is chosen for.
    pub server_names: Option<Vec<Spanned<String>>>,
    /// Whether this certificate answers handshakes whose name matches no other.
    pub default: Option<Spanned<bool>>,
}

/// `client_auth = { ... }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    /// `"optional"` or `"required"`.
    pub mode: Spanned<String>,
    /// PEM bundle of the CAs client certificates must chain to.
    pub ca: Spanned<String>,
    /// Header that carries the verified subject upstream.
    pub subject_header: Option<Spanned<String>>,
}

/// `tls = { ... }` of an upstream group.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// Whether connections to the targets use TLS.
    pub enabled: Option<bool>,
    /// Server name sent in SNI and verified.
    pub sni: Option<Spanned<String>>,
    /// PEM bundle of trusted CAs; absent means the system roots.
    pub ca: Option<Spanned<String>>,
    /// PEM client certificate chain presented to the upstream.
    pub client_cert: Option<Spanned<String>>,
    /// PEM key of `client_cert`.
    pub client_key: Option<Spanned<String>>,
    /// Whether the upstream's certificate is verified.
    pub verify: Option<Spanned<bool>>,
}

/// `workers = "auto"` or `workers = 4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawWorkers {
    /// `"auto"`.
    Auto,
    /// A count, range-checked in `compile`.
    Count(i64),
}

/// `underscores_in_headers = "drop" | "pass" | "refuse"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DeriveDeserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawUnderscores {
    /// Ignore such fields.
    Drop,
    /// Keep them.
    Pass,
    /// Answer 400.
    Refuse,
}

/// `driver = "auto" | "io_uring" | "legacy"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DeriveDeserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawDriver {
    /// io_uring where available, else epoll.
    Auto,
    /// io_uring only.
    IoUring,
    /// epoll.
    Legacy,
}

/// `[server.limits]`.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Request line plus headers.
    pub max_head_bytes: Option<Spanned<SizeValue>>,
    /// Header field count.
    pub max_headers: Option<Spanned<i64>>,
    /// Request-target length.
    pub max_uri_bytes: Option<Spanned<SizeValue>>,
    /// Request body size.
    pub max_body_bytes: Option<Spanned<SizeValue>>,
    /// Slowest average rate a request body may arrive at, e.g. `"1KiB/s"`.
    pub min_body_rate: Option<Spanned<String>>,
    /// Open client connections per worker.
    pub max_connections_per_worker: Option<Spanned<i64>>,
    /// Open client connections per client address, per worker.
    pub max_connections_per_ip: Option<Spanned<i64>>,
    /// Open tunnels (upgraded connections) per worker.
    pub max_tunnels_per_worker: Option<Spanned<i64>>,
}

/// `[server.timeouts]`.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTimeouts {
    /// Whole-head read time.
    pub head_read: Option<Spanned<DurationValue>>,
    /// Idle keep-alive time.
    pub keepalive_idle: Option<Spanned<DurationValue>>,
    /// Pause allowed between body reads.
    pub body_idle: Option<Spanned<DurationValue>>,
    /// Longest time a tunnel may carry no byte either way (routes may override).
    pub tunnel_idle: Option<Spanned<DurationValue>>,
    /// Longest life of a tunnel (routes may override).
    pub tunnel_max: Option<Spanned<DurationValue>>,
}

/// One `[[upstreams]]` entry.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Unique name routes refer to.
    pub name: Spanned<String>,
    /// Balancing algorithm name.
    pub balance: Option<Spanned<String>>,
    /// Backends; at least one is required (checked in `compile`, so the problem is collected).
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    /// Keep-alive pool settings.
    pub pool: Option<RawPool>,
    /// Upstream-side timeouts.
    pub timeouts: Option<RawUpstreamTimeouts>,
    /// `hash_key` of a consistent-hash group.
    pub hash_key: Option<Spanned<String>>,
    /// `health = { ... }`: active checks.
    pub health: Option<Spanned<RawHealth>>,
    /// `passive = { ... }`: outlier ejection.
    pub passive: Option<Spanned<RawPassive>>,
    /// `retry = { ... }`.
    pub retry: Option<Spanned<RawRetry>>,
    /// `breaker = { ... }`.
    pub breaker: Option<Spanned<RawBreaker>>,
    /// `resolve_every`: DNS re-resolution interval.
    pub resolve_every: Option<Spanned<DurationValue>>,
    /// TLS to the targets.
    pub tls: Option<Spanned<RawUpstreamTls>>,
    /// `"http1"`, `"h2"` (TLS, ALPN) or `"h2c"`.
    pub protocol: Option<Spanned<String>>,
    /// Multiplexed connections of an h2/h2c group.
    pub http2: Option<Spanned<RawUpstreamHttp2>>,
}

/// `health = { ... }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// Path probed with GET.
    pub path: Spanned<String>,
    /// `200` or `"200-399"`.
    pub expected_status: Option<Spanned<RawStatusRange>>,
    /// Time between probes.
    pub interval: Option<Spanned<DurationValue>>,
    /// Probe timeout.
    pub timeout: Option<Spanned<DurationValue>>,
    /// Failures in a row that mark a target unhealthy.
    pub unhealthy_after: Option<Spanned<i64>>,
    /// Successes in a row that mark it healthy again.
    pub healthy_after: Option<Spanned<i64>>,
}

/// `expected_status = 200` or `"200-399"`.
#[derive(Debug, Clone, DeriveDeserialize)]
#[serde(untagged)]
pub enum RawStatusRange {
    /// One status.
    One(i64),
    /// `"LOW-HIGH"` (or one status as text).
    Range(String),
}

/// `passive = { ... }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPassive {
    /// Failures in a row that eject a target.
    pub consecutive_failures: Option<Spanned<i64>>,
    /// First ejection time.
    pub base_ejection: Option<Spanned<DurationValue>>,
    /// Longest ejection time.
    pub max_ejection: Option<Spanned<DurationValue>>,
    /// Largest ejected share of the group, in percent.
    pub max_ejected_percent: Option<Spanned<i64>>,
}

/// `retry = { ... }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts, the first included.
    pub attempts: Option<Spanned<i64>>,
    /// Failure classes and statuses retried.
    pub on: Option<Vec<Spanned<String>>>,
    /// First backoff.
    pub backoff: Option<Spanned<DurationValue>>,
    /// Largest backoff.
    pub max_backoff: Option<Spanned<DurationValue>>,
    /// Retry budget, percent of requests.
    pub budget_percent: Option<Spanned<i64>>,
    /// The budget's window.
    pub budget_window: Option<Spanned<DurationValue>>,
    /// Retries per second always allowed.
    pub min_retries_per_sec: Option<Spanned<i64>>,
}

/// `breaker = { ... }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Error share that opens the breaker.
    pub error_ratio: Option<Spanned<f64>>,
    /// Fewest outcomes in the window before it may open.
    pub min_requests: Option<Spanned<i64>>,
    /// Rolling window.
    pub window: Option<Spanned<DurationValue>>,
    /// Time open before probing.
    pub open_for: Option<Spanned<DurationValue>>,
    /// Probes while half-open.
    pub half_open_probes: Option<Spanned<i64>>,
}

/// `{ addr = "...", weight = 1 }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// `ip:port` or `name:port`.
    pub addr: Spanned<String>,
    /// Relative weight.
    pub weight: Option<Spanned<i64>>,
}

/// `pool = { ... }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Idle connections kept per target per worker.
    pub max_idle_per_target: Option<Spanned<i64>>,
    /// Age after which an idle connection is closed.
    pub idle_timeout: Option<Spanned<DurationValue>>,
}

/// `timeouts = { ... }` of an upstream.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTimeouts {
    /// TCP connect.
    pub connect: Option<Spanned<DurationValue>>,
    /// Until the first response byte.
    pub first_byte: Option<Spanned<DurationValue>>,
    /// Pause allowed between response reads.
    pub idle: Option<Spanned<DurationValue>>,
    /// Overall limit across attempts, until the response head.
    pub total: Option<Spanned<DurationValue>>,
}

/// One `[[routes]]` entry.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique name.
    pub name: Spanned<String>,
    /// Match conditions; absent matches every request.
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    /// Upstream name (proxy route).
    pub upstream: Option<Spanned<String>>,
    /// Weighted split across upstream groups (proxy route, instead of `upstream`).
    pub split: Option<Spanned<Vec<RawSplitEntry>>>,
    /// What keeps a client on one side of `split`: `cookie:NAME`, `header:NAME` or `ip`.
    pub sticky: Option<Spanned<String>>,
    /// Header and cookie rules that pick a group before `split`/`upstream`.
    pub versions: Option<Vec<RawVersion>>,
    /// A share of requests copied to a shadow group.
    pub mirror: Option<RawMirror>,
    /// Prefix removed before forwarding.
    pub strip_prefix: Option<Spanned<String>>,
    /// Path template the forwarded path is rewritten to.
    pub rewrite: Option<Spanned<String>>,
    /// Fixed `Host` sent upstream.
    pub host_rewrite: Option<Spanned<String>>,
    /// A response served by the gateway (static route).
    pub respond: Option<RawRespond>,
    /// A composite that answers (composite route).
    pub compose: Option<Spanned<String>>,
    /// Request body size on this route, overriding `server.limits.max_body_bytes`.
    pub max_body_bytes: Option<Spanned<SizeValue>>,
    /// Names of `[policies.NAME]` tables this route runs.
    pub policies: Option<Spanned<Vec<Spanned<String>>>>,
    /// Whether non-idempotent requests may be retried.
    pub retry_non_idempotent: Option<Spanned<bool>>,
    /// Answer plain-HTTP requests with a redirect to HTTPS: `true` or a port.
    pub redirect_https: Option<Spanned<RawRedirect>>,
    /// Protocols a request may upgrade to (`["websocket"]`): tunnelled after the 101.
    pub upgrade: Option<Spanned<Vec<Spanned<String>>>>,
    /// This route's tunnels: longest time with no byte either way.
    pub tunnel_idle: Option<Spanned<DurationValue>>,
    /// This route's tunnels: longest life.
    pub tunnel_max: Option<Spanned<DurationValue>>,
    /// Largest WebSocket message from a client (turns on client frame checks).
    pub max_message_bytes: Option<Spanned<SizeValue>>,
    /// Open tunnels of this route per worker.
    pub max_tunnels: Option<Spanned<i64>>,
    /// `errors = "text" | "problem"` for this route's gateway answers (default: the server's).
    pub errors: Option<Spanned<String>>,
    /// The `[caches.NAME]` this proxy route's responses are stored in.
    pub cache: Option<Spanned<String>>,
}

/// `redirect_https = true | false | PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawRedirect {
    /// `true` / `false`.
    Enabled(bool),
    /// An HTTPS port, range-checked in `compile`.
    Port(i64),
}

impl<'de> Deserialize<'de> for RawRedirect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RedirectVisitor)
    }
}

struct RedirectVisitor;

impl Visitor<'_> for RedirectVisitor {
    type Value = RawRedirect;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true, false or an HTTPS port number")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(RawRedirect::Enabled(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(RawRedirect::Port(v))
    }
}

/// One `split` entry: `{ upstream = "users-v2", weight = 5 }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplitEntry {
    /// Upstream group name.
    pub upstream: Spanned<String>,
    /// Relative share.
    pub weight: Spanned<i64>,
}

/// One `versions` rule: `{ header = "X-Api-Version", value = "2", upstream = "users-v2" }`
/// or `{ cookie = "canary", value = "1", upstream = "users-v2" }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVersion {
    /// Header name (exactly one of `header` and `cookie`).
    pub header: Option<Spanned<String>>,
    /// Cookie name.
    pub cookie: Option<Spanned<String>>,
    /// Required value; absent means any value.
    pub value: Option<Spanned<String>>,
    /// Upstream group name.
    pub upstream: Spanned<String>,
}

/// `mirror = { upstream = "shadow", percent = 10, max_in_flight = 32 }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMirror {
    /// Shadow upstream group name.
    pub upstream: Spanned<String>,
    /// Share of requests copied, 0 < percent <= 100 (default 100).
    pub percent: Option<Spanned<f64>>,
    /// Mirrors in flight per worker for this route (default 32).
    pub max_in_flight: Option<Spanned<i64>>,
}

/// Declares [`RawPolicy`]: every key any policy kind accepts, each optional, and
/// `RawPolicy::present_keys` listing the keys a table set (so a kind can refuse the keys
/// that are not its own, with their lines). A new kind adds its keys here.
macro_rules! raw_policy {
    ($($(#[$doc:meta])* $key:ident: $ty:ty,)*) => {
        /// One `[policies.NAME]` table: `kind` and the union of every kind's keys.
        #[derive(Debug, DeriveDeserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawPolicy {
            /// Which kind of policy: `ip_filter`, `api_key`, `basic`, `jwt`, `authz`, ...
            pub kind: Spanned<String>,
            $($(#[$doc])* pub $key: Option<Spanned<$ty>>,)*
        }

        impl RawPolicy {
            /// `(key, span)` of every key set besides `kind`, in file order.
            pub fn present_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
                let mut keys = Vec::new();
                $(if let Some(v) = &self.$key {
                    keys.push((stringify!($key), v.span()));
                })*
                keys.sort_by_key(|(_, span)| span.start);
                keys
            }
        }
    };
}

raw_policy! {
    /// ip_filter: ranges let through.
    allow: Vec<Spanned<String>>,
    /// ip_filter: ranges refused.
    deny: Vec<Spanned<String>>,
    /// ip_filter: this policy's own trusted proxies.
    trusted_proxies: Vec<Spanned<String>>,
    /// api_key: the header carrying the key.
    header: String,
    /// api_key: the query parameter carrying the key.
    query: String,
    /// api_key, basic, jwt: the header the consumer's name goes upstream in.
    consumer_header: String,
    /// api_key, basic, jwt: the credential is not forwarded upstream on success.
    hide_credentials: bool,
    /// basic, jwt: the challenge's realm.
    realm: String,
    /// jwt: accepted algorithms; compress: codings in preference order.
    algorithms: Vec<Spanned<String>>,
    /// jwt: HMAC secret.
    secret: String,
    /// jwt: PEM public key file.
    public_key_file: String,
    /// jwt: JWKS file.
    jwks_file: String,
    /// jwt: JWKS URL.
    jwks_url: String,
    /// jwt: time between JWKS fetches.
    jwks_refresh: DurationValue,
    /// jwt: least time between JWKS fetches.
    jwks_cooldown: DurationValue,
    /// jwt: accepted issuers.
    issuer: OneOrMany,
    /// jwt: accepted audiences.
    audience: OneOrMany,
    /// jwt: clock skew allowed.
    leeway: DurationValue,
    /// jwt: claims every token must carry.
    required_claims: Vec<Spanned<String>>,
    /// jwt: the claim naming the consumer.
    consumer_claim: String,
    /// jwt, introspect: claims sent upstream, claim = header.
    forward_claims: Ordered<String>,
    /// jwt, introspect: the claim holding the token's groups for `authz`.
    groups_claim: String,
    /// introspect: the upstream group the authorization server is in.
    upstream: String,
    /// introspect: the introspection endpoint's path.
    path: String,
    /// introspect: the client id (client_secret_basic).
    client_id: String,
    /// introspect: the client secret.
    client_secret: String,
    /// introspect: a file holding the client secret.
    client_secret_file: String,
    /// introspect: the authorization server's token endpoint, for the OpenAPI export.
    token_url: String,
    /// introspect: `token_type_hint` sent with each request.
    token_type_hint: String,
    /// introspect: time limit of one lookup.
    timeout: DurationValue,
    /// introspect: longest reuse of an active result.
    cache_ttl: DurationValue,
    /// introspect: reuse of an inactive result.
    negative_cache_ttl: DurationValue,
    /// introspect: results kept per worker.
    max_cache_entries: i64,
    /// authz: groups allowed.
    allow_groups: Vec<Spanned<String>>,
    /// authz: groups refused.
    deny_groups: Vec<Spanned<String>>,
    /// authz: scopes required.
    require_scopes: Vec<Spanned<String>>,
    /// authz: claim values required, claim = value or [values].
    require_claims: Ordered<OneOrMany>,
    /// rate_limit: what requests are counted by (`ip`, `header:NAME`, `consumer`, `route`).
    key: String,
    /// rate_limit: `N/s`, `N/m` or `N/h`.
    rate: String,
    /// rate_limit: requests admitted at once.
    burst: i64,
    /// rate_limit: `worker`, `instance` or `cluster`.
    scope: String,
    /// rate_limit: keys tracked per worker.
    max_keys: i64,
    /// validate: an OpenAPI 3.x document (JSON or YAML).
    openapi_file: String,
    /// validate: the operation in `openapi_file` (an operationId or `METHOD /path`).
    operation: String,
    /// validate: JSON Schema of the query parameters' object (inline JSON).
    query_schema: String,
    /// validate: file holding the query parameters' JSON Schema (JSON or YAML).
    query_schema_file: String,
    /// validate: JSON Schema of the headers' object (inline JSON).
    header_schema: String,
    /// validate: file holding the headers' JSON Schema.
    header_schema_file: String,
    /// validate: JSON Schema of the JSON body (inline JSON).
    body_schema: String,
    /// validate: file holding the body's JSON Schema.
    body_schema_file: String,
    /// validate: whether a request must carry a body (with a body schema).
    body_required: bool,
    /// validate: the status of a refusal, 400 or 422.
    status: i64,
    /// cors: allowed origins (exact, `scheme://*.suffix`, or `*`).
    origins: Vec<Spanned<String>>,
    /// cors: allowed origins as regexes over the serialized origin (anchored).
    origin_regexes: Vec<Spanned<String>>,
    /// cors: methods a preflight may ask for.
    methods: Vec<Spanned<String>>,
    /// cors: request headers a preflight may ask for.
    headers: Vec<Spanned<String>>,
    /// cors: a preflight's requested headers are echoed, whatever they are.
    mirror_headers: bool,
    /// cors: response headers the page may read.
    expose_headers: Vec<Spanned<String>>,
    /// cors: credentialed requests allowed.
    credentials: bool,
    /// cors: how long a browser may cache a preflight answer.
    max_age: DurationValue,
    /// cors: grant private network access to preflights asking for it.
    private_network: bool,
    /// compress: level per coding, coding = level.
    levels: Ordered<i64>,
    /// compress: smallest known `Content-Length` compressed.
    min_bytes: SizeValue,
    /// compress: compressible content types (`type/subtype`, `type/*`, `type/*+suffix`).
    types: Vec<Spanned<String>>,
    /// compress: decode compressed request bodies before forwarding.
    decompress_requests: bool,
    /// compress: largest decoded request body (413 beyond).
    max_decompressed_bytes: SizeValue,
    /// transform: what changes in requests.
    request: RawTransformSide,
    /// transform: what changes in responses.
    response: RawTransformSide,
    /// transform: largest JSON body transformed.
    max_body_bytes: SizeValue,
    /// transform: a body over `max_body_bytes`: `pass` or `refuse`.
    on_oversize: String,
    /// transform: a body that is not JSON: `pass` or `refuse`.
    on_non_json: String,
    /// transform: a JSON body that does not parse: `pass` or `refuse`.
    on_malformed: String,
}

/// `request = { ... }` and `response = { ... }` of a `transform` policy.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransformSide {
    /// Header fields removed.
    pub remove_headers: Option<Vec<Spanned<String>>>,
    /// Header fields renamed, old = new.
    pub rename_headers: Option<Ordered<String>>,
    /// Header fields set, name = template.
    pub set_headers: Option<Ordered<String>>,
    /// Header fields added when absent.
    pub add_headers: Option<Ordered<String>>,
    /// Header fields appended.
    pub append_headers: Option<Ordered<String>>,
    /// Query parameters removed (request only).
    pub remove_query: Option<Vec<Spanned<String>>>,
    /// Query parameters renamed.
    pub rename_query: Option<Ordered<String>>,
    /// Query parameters set.
    pub set_query: Option<Ordered<String>>,
    /// Query parameters added when absent.
    pub add_query: Option<Ordered<String>>,
    /// Query parameters appended.
    pub append_query: Option<Ordered<String>>,
    /// JSON body fields removed, by path.
    pub remove_json: Option<Vec<Spanned<String>>>,
    /// JSON body fields renamed, path = new name.
    pub rename_json: Option<Ordered<String>>,
    /// JSON body fields set, path = value (a string template, a number or a boolean).
    pub set_json: Option<Ordered<toml::Value>>,
}

/// `match = { ... }`.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Exact or `*.` wildcard host.
    pub host: Option<Spanned<String>>,
    /// Exact path.
    pub path_exact: Option<Spanned<String>>,
    /// Segment-aware prefix.
    pub path_prefix: Option<Spanned<String>>,
    /// Template with `{param}` segments and an optional trailing `*`.
    pub path: Option<Spanned<String>>,
    /// Allowed methods.
    pub methods: Option<Vec<Spanned<String>>>,
    /// Header conditions, in file order.
    pub headers: Option<Ordered<String>>,
}

/// `respond = { ... }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    /// Status code.
    pub status: Spanned<i64>,
    /// Body text.
    pub body: Option<String>,
    /// Extra headers, in file order.
    pub headers: Option<Ordered<String>>,
}

/// A TOML table read as a list of entries in file order, keys and values with their spans.
///
/// Header tables keep their order because responses write headers in the order configured.
#[derive(Debug, Default)]
pub struct Ordered<V>(pub Vec<(Spanned<String>, Spanned<V>)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedVisitor(PhantomData))
    }
}

struct OrderedVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
    type Value = Ordered<V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Ordered(entries))
    }
}

impl<'de> Deserialize<'de> for RawWorkers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WorkersVisitor)
    }
}

struct WorkersVisitor;

impl Visitor<'_> for WorkersVisitor {
    type Value = RawWorkers;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"auto\" or a number of workers")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match v {
            "auto" => Ok(RawWorkers::Auto),
            other => Err(E::custom(format!(
                "invalid workers `{other}`: expected \"auto\" or a number"
            ))),
        }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(RawWorkers::Count(v))
    }
}
