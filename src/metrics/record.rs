//! What the proxy reports: one finished request, error causes, status classes.
//!
//! Plain data, no allocation: built on the stack per request on the worker's hot path.

use std::time::Duration;

/// One finished request, as the proxy reports it to [`WorkerMetrics::record_request`].
///
/// [`WorkerMetrics::record_request`]: super::WorkerMetrics::record_request
#[derive(Clone, Copy, Debug)]
pub struct RequestRecord<'a> {
    /// Route name from the config (stable across reloads); `""` when no route matched.
    pub route: &'a str,
    /// Upstream group name, for proxied requests.
    pub upstream: Option<&'a str>,
    /// Status sent to the client.
    pub status: u16,
    /// Whole request, head read to last byte written.
    pub duration: Duration,
    /// Upstream exchange (connect/send to last byte), for proxied requests.
    pub upstream_duration: Option<Duration>,
    /// Bytes read from the client (head and body).
    pub bytes_in: u64,
    /// Bytes written to the client (head and body).
    pub bytes_out: u64,
    /// The client protocol that carried the request (`protocol` label of the route).
    pub protocol: super::Protocol,
    /// What the route's cache did, on routes with a cache.
    pub cache: Option<CacheResult>,
}

/// What a route's cache did for a request; one counter each in
/// `ringgate_route_cache_requests_total{route,result}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheResult {
    /// Answered fresh from the cache.
    Hit,
    /// Answered stale (max-stale, stale-while-revalidate, stale-if-error).
    Stale,
    /// Revalidated upstream (304) and answered from the cache.
    Revalidated,
    /// Went upstream.
    Miss,
    /// Not looked up (unsafe method, `Range`, `Upgrade`).
    Bypass,
}

impl CacheResult {
    /// Every result, in counter order.
    pub const ALL: [CacheResult; 5] = [
        CacheResult::Hit,
        CacheResult::Stale,
        CacheResult::Revalidated,
        CacheResult::Miss,
        CacheResult::Bypass,
    ];

    /// Index into per-result counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The `result` label value.
    pub const fn label(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Stale => "stale",
            CacheResult::Revalidated => "revalidated",
            CacheResult::Miss => "miss",
            CacheResult::Bypass => "bypass",
        }
    }
}

/// What became of a request a route's `mirror` sampled; one counter each in
/// `ringgate_mirror_requests_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MirrorOutcome {
    /// A copy went to the shadow group.
    Mirrored,
    /// Over the route's `max_in_flight` on this worker: not copied.
    Dropped,
    /// The request's body was not in hand whole (large or chunked): not copied.
    Skipped,
    /// The shadow answered; its response was read and discarded.
    Completed,
    /// The shadow exchange failed (connect, write, timeout, bad response).
    Failed,
}

impl MirrorOutcome {
    /// Every outcome, in counter order.
    pub const ALL: [MirrorOutcome; 5] = [
        MirrorOutcome::Mirrored,
        MirrorOutcome::Dropped,
        MirrorOutcome::Skipped,
        MirrorOutcome::Completed,
        MirrorOutcome::Failed,
    ];

    /// Index into per-outcome counter arrays (position in [`MirrorOutcome::ALL`]).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The `outcome` label value.
    pub const fn label(self) -> &'static str {
        match self {
            MirrorOutcome::Mirrored => "mirrored",
            MirrorOutcome::Dropped => "dropped",
            MirrorOutcome::Skipped => "skipped",
            MirrorOutcome::Completed => "completed",
            MirrorOutcome::Failed => "failed",
        }
    }
}

/// Why a request or connection failed; one counter each in `ringgate_errors_total{cause}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCause {
    /// The client sent a malformed or refused request.
    BadRequest,
    /// The client was too slow (head or body timeout).
    ClientTimeout,
    /// The client closed the connection mid-request.
    ClientGone,
    /// No route matched.
    NoRoute,
    /// Connecting to the upstream failed.
    UpstreamConnect,
    /// The upstream was too slow.
    UpstreamTimeout,
    /// The upstream sent an invalid response.
    UpstreamProtocol,
    /// The upstream closed the connection mid-response.
    UpstreamClosed,
}

impl ErrorCause {
    /// Every cause, in counter order.
    pub const ALL: [ErrorCause; 8] = [
        ErrorCause::BadRequest,
        ErrorCause::ClientTimeout,
        ErrorCause::ClientGone,
        ErrorCause::NoRoute,
        ErrorCause::UpstreamConnect,
        ErrorCause::UpstreamTimeout,
        ErrorCause::UpstreamProtocol,
        ErrorCause::UpstreamClosed,
    ];

    /// Index into per-cause counter arrays (position in [`ErrorCause::ALL`]).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The `cause` label value.
    pub const fn label(self) -> &'static str {
        match self {
            ErrorCause::BadRequest => "bad_request",
            ErrorCause::ClientTimeout => "client_timeout",
            ErrorCause::ClientGone => "client_gone",
            ErrorCause::NoRoute => "no_route",
            ErrorCause::UpstreamConnect => "upstream_connect",
            ErrorCause::UpstreamTimeout => "upstream_timeout",
            ErrorCause::UpstreamProtocol => "upstream_protocol",
            ErrorCause::UpstreamClosed => "upstream_closed",
        }
    }
}

/// What a stage decided, as counted in `ringgate_policy_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyOutcome {
    /// The stage let the request through.
    Allowed,
    /// 401: no or bad credentials.
    Unauthenticated,
    /// 403: identified (or not) but not allowed.
    Forbidden,
    /// 429: over a limit.
    Limited,
    /// Any other refusal.
    Refused,
    /// 503: the password verifier pool's queue was full.
    Busy,
}

impl PolicyOutcome {
    /// Every outcome, in label order.
    pub const ALL: [PolicyOutcome; 6] = [
        PolicyOutcome::Allowed,
        PolicyOutcome::Unauthenticated,
        PolicyOutcome::Forbidden,
        PolicyOutcome::Limited,
        PolicyOutcome::Refused,
        PolicyOutcome::Busy,
    ];

    /// Position in [`PolicyOutcome::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            PolicyOutcome::Allowed => "allowed",
            PolicyOutcome::Unauthenticated => "unauthenticated",
            PolicyOutcome::Forbidden => "forbidden",
            PolicyOutcome::Limited => "limited",
            PolicyOutcome::Refused => "refused",
            PolicyOutcome::Busy => "busy",
        }
    }
}

/// Status class of a response: `1xx` to `5xx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// 100–199 (and anything below, which a valid response never has).
    Informational,
    /// 200–299.
    Success,
    /// 300–399.
    Redirection,
    /// 400–499.
    ClientError,
    /// 500–599 (and anything above: an upstream's nonstandard status is its failure).
    ServerError,
}

impl StatusClass {
    /// Every class, in counter order.
    pub const ALL: [StatusClass; 5] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
    ];

    /// The class of `status`; out-of-range values go to the nearest class.
    pub const fn of(status: u16) -> Self {
        match status {
            0..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }

    /// Index into per-class counter arrays (position in [`StatusClass::ALL`]).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The `status_class` label value.
    pub const fn label(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_class_by_hundreds_with_out_of_range_clamped() {
        assert_eq!(StatusClass::of(101).label(), "1xx");
        assert_eq!(StatusClass::of(200).label(), "2xx");
        assert_eq!(StatusClass::of(399).label(), "3xx");
        assert_eq!(StatusClass::of(404).label(), "4xx");
        assert_eq!(StatusClass::of(503).label(), "5xx");
        assert_eq!(StatusClass::of(0).label(), "1xx");
        assert_eq!(StatusClass::of(999).label(), "5xx");
    }

    #[test]
    fn error_cause_index_matches_all_order() {
        for (i, c) in ErrorCause::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        for (i, c) in StatusClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `server.limits.max_connections_per_worker` reached.
    WorkerFull,
    /// `server.limits.max_connections_per_ip` reached for the client's address.
    AddressFull,
}

impl Refusal {
    /// Every refusal, in metrics order.
    pub const ALL: [Refusal; 2] = [Refusal::WorkerFull, Refusal::AddressFull];

    /// Position in [`Refusal::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::WorkerFull => "worker_limit",
            Refusal::AddressFull => "ip_limit",
        }
    }
}

/// A negotiated TLS protocol version, as counted in `ringgate_tls_handshakes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    /// Every version, in metrics order.
    pub const ALL: [TlsVersion; 2] = [TlsVersion::Tls12, TlsVersion::Tls13];

    /// Position in [`TlsVersion::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The `version` label value.
    pub const fn label(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

/// Which end of the gateway a TLS handshake was with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSide {
    /// A client on a `[[server.tls]]` listener (the gateway is the TLS server).
    Client,
    /// An upstream target with `tls` (the gateway is the TLS client).
    Upstream,
}

impl TlsSide {
    /// Every side, in metrics order.
    pub const ALL: [TlsSide; 2] = [TlsSide::Client, TlsSide::Upstream];

    /// Position in [`TlsSide::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The `side` label value.
    pub const fn label(self) -> &'static str {
        match self {
            TlsSide::Client => "client",
            TlsSide::Upstream => "upstream",
        }
    }
}

/// Why a TLS handshake failed; one counter each (per side) in
/// `ringgate_tls_handshake_failures_total{side,cause}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// A required certificate was not sent (the client's on a `required` listener, or the
    /// gateway's when an upstream asked for one it does not have).
    NoCertificate,
    /// A certificate did not verify: the peer's (untrusted, expired, wrong name), or the
    /// gateway's as the peer's alert says.
    BadCertificate,
    /// Any other TLS failure: no common version or suite, malformed records, bytes that are
    /// not TLS (plain HTTP on a TLS port), other alerts.
    Protocol,
    /// The handshake did not complete in time (`server.timeouts.head_read` on listeners,
    /// the upstream's `connect` timeout towards targets).
    Timeout,
    /// The peer closed or reset the connection before the handshake completed.
    Eof,
}

impl TlsFailure {
    /// Every cause, in metrics order.
    pub const ALL: [TlsFailure; 5] = [
        TlsFailure::NoCertificate,
        TlsFailure::BadCertificate,
        TlsFailure::Protocol,
        TlsFailure::Timeout,
        TlsFailure::Eof,
    ];

    /// Position in [`TlsFailure::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The `cause` label value.
    pub const fn label(self) -> &'static str {
        match self {
            TlsFailure::NoCertificate => "no_certificate",
            TlsFailure::BadCertificate => "bad_certificate",
            TlsFailure::Protocol => "protocol",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Eof => "eof",
        }
    }
}
