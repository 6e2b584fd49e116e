//! Why an exchange failed, which side caused it, and the one table mapping that to the
//! client's answer.

use std::io;
use std::time::Duration;

use crate::http::{reason_phrase, HttpError};
use crate::metrics::ErrorCause;

/// A failed exchange.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request is malformed or over a limit.
    #[error("bad request: {0}")]
    BadRequest(#[from] HttpError),
    /// The request's target cannot be routed or normalized.
    #[error("invalid request target")]
    BadTarget,
    /// The client stopped sending in the middle of a request.
    #[error("client timed out")]
    ClientTimeout,
    /// The client's connection failed or closed; no answer can be sent.
    #[error("client connection lost: {0}")]
    ClientGone(io::Error),
    /// The request body exceeds `max_body_bytes`.
    #[error("request body too large")]
    BodyTooLarge,
    /// A composite that forwards the client's body got a chunked one.
    #[error("length required")]
    LengthRequired,
    /// No route matches.
    #[error("no route")]
    NoRoute,
    /// The upstream group has no target.
    #[error("no upstream target")]
    NoTarget,
    /// Every target of the group is unhealthy or ejected; worth trying again after this.
    #[error("no healthy upstream target")]
    NoHealthyTarget(Duration),
    /// No target could take the request once it was read (health changed meanwhile).
    #[error("no upstream target available")]
    Unavailable(Duration),
    /// The group's circuit breaker is open; it probes again after this.
    #[error("circuit breaker open")]
    BreakerOpen(Duration),
    /// The connection to the upstream could not be opened.
    #[error("upstream connect failed: {0}")]
    Connect(io::Error),
    /// The connection to the upstream was not established in time.
    #[error("upstream connect timed out")]
    ConnectTimeout,
    /// The upstream did not answer (or stalled) within its timeout.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The upstream closed or reset the connection before a complete response.
    #[error("upstream closed the connection")]
    UpstreamClosed,
    /// The upstream's response is not valid HTTP/1.1.
    #[error("invalid upstream response: {0}")]
    UpstreamProtocol(HttpError),
    /// The upstream switched protocols, which the gateway does not proxy.
    #[error("upstream sent 101 Switching Protocols")]
    UnexpectedUpgrade,
    /// Writing to or reading from the upstream failed.
    #[error("upstream i/o error: {0}")]
    UpstreamIo(io::Error),
    /// A WebSocket opening handshake is malformed (400) or of another version (426).
    #[error("bad WebSocket handshake: {0}")]
    BadHandshake(crate::http::upgrade::HandshakeFault),
    /// The worker or the route holds as many tunnels as its cap allows.
    #[error("tunnel cap reached")]
    TunnelsFull,
}

impl ProxyError {
    /// The status and short body the client gets; `None` when no answer can be sent.
    /// Bodies name the cause class, never internals.
    pub fn response(&self) -> Option<(u16, &'static str)> {
        Some(match self {
            ProxyError::BadRequest(e) => (e.status(), reason_phrase(e.status())),
            ProxyError::BadTarget => (400, "bad request: invalid request target"),
            ProxyError::ClientTimeout => (408, "request timeout"),
            ProxyError::ClientGone(_) => return None,
            ProxyError::BodyTooLarge => (413, "request body too large"),
            ProxyError::LengthRequired => {
                (411, "length required: send the body with Content-Length")
            }
            ProxyError::NoRoute => (404, "no route matches this request"),
            ProxyError::NoTarget => (503, "no upstream target available"),
            ProxyError::NoHealthyTarget(_) => {
                (503, "service unavailable: no healthy upstream target")
            }
            ProxyError::BreakerOpen(_) => (503, "service unavailable: circuit breaker open"),
            ProxyError::Unavailable(_) => (503, "service unavailable: no healthy upstream target"),
            ProxyError::Connect(_) => (502, "bad gateway: upstream connect failed"),
            ProxyError::ConnectTimeout => (504, "gateway timeout: upstream connect timed out"),
            ProxyError::UpstreamTimeout => {
                (504, "gateway timeout: upstream did not respond in time")
            }
            ProxyError::UpstreamClosed => (502, "bad gateway: upstream closed the connection"),
            ProxyError::UpstreamProtocol(_) => (502, "bad gateway: invalid upstream response"),
            ProxyError::UnexpectedUpgrade => (502, "bad gateway: invalid upstream response"),
            ProxyError::UpstreamIo(_) => (502, "bad gateway: upstream connection error"),
            ProxyError::BadHandshake(fault) if fault.status() == 426 => {
                (426, "upgrade required: Sec-WebSocket-Version 13")
            }
            ProxyError::BadHandshake(_) => (400, "bad request: invalid WebSocket handshake"),
            ProxyError::TunnelsFull => (503, "service unavailable: too many open tunnels"),
        })
    }

    /// The stable name of this failure in a problem+json `type` (see `http::problem`).
    pub fn problem_cause(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(e) => match e.status() {
                413 => "body-too-large",
                414 => "uri-too-long",
                417 => "expectation-failed",
                431 => "headers-too-large",
                501 => "not-implemented",
                505 => "version-not-supported",
                _ => "malformed-request",
            },
            ProxyError::BadTarget => "invalid-target",
            ProxyError::ClientTimeout => "request-timeout",
            ProxyError::ClientGone(_) => "client-gone",
            ProxyError::BodyTooLarge => "body-too-large",
            ProxyError::LengthRequired => "length-required",
            ProxyError::NoRoute => "no-route",
            ProxyError::NoTarget => "no-upstream-target",
            ProxyError::NoHealthyTarget(_) | ProxyError::Unavailable(_) => "no-healthy-upstream",
            ProxyError::BreakerOpen(_) => "circuit-open",
            ProxyError::Connect(_) => "upstream-connect-failed",
            ProxyError::ConnectTimeout => "upstream-connect-timeout",
            ProxyError::UpstreamTimeout => "upstream-timeout",
            ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_) => "upstream-closed",
            ProxyError::UpstreamProtocol(_) | ProxyError::UnexpectedUpgrade => {
                "upstream-invalid-response"
            }
            ProxyError::BadHandshake(_) => "bad-handshake",
            ProxyError::TunnelsFull => "too-many-tunnels",
        }
    }

    /// The cause class counted in the metrics.
    pub fn cause(&self) -> ErrorCause {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::BadTarget
            | ProxyError::BodyTooLarge
            | ProxyError::LengthRequired
            | ProxyError::BadHandshake(_) => ErrorCause::BadRequest,
            ProxyError::ClientTimeout => ErrorCause::ClientTimeout,
            ProxyError::ClientGone(_) => ErrorCause::ClientGone,
            ProxyError::NoRoute => ErrorCause::NoRoute,
            ProxyError::NoTarget
            | ProxyError::NoHealthyTarget(_)
            | ProxyError::BreakerOpen(_)
            | ProxyError::Unavailable(_)
            | ProxyError::Connect(_)
            | ProxyError::TunnelsFull => ErrorCause::UpstreamConnect,
            ProxyError::ConnectTimeout | ProxyError::UpstreamTimeout => ErrorCause::UpstreamTimeout,
            ProxyError::UpstreamProtocol(_) | ProxyError::UnexpectedUpgrade => {
                ErrorCause::UpstreamProtocol
            }
            ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_) => ErrorCause::UpstreamClosed,
        }
    }

    /// Whether the client's connection may stay open after the error response.
    pub fn keeps_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::NoRoute
                | ProxyError::NoTarget
                | ProxyError::NoHealthyTarget(_)
                | ProxyError::BreakerOpen(_)
                | ProxyError::TunnelsFull
        )
    }

    /// Seconds for a `Retry-After` field (at least 1), for refusals that will pass.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::NoHealthyTarget(d)
            | ProxyError::BreakerOpen(d)
            | ProxyError::Unavailable(d) => {
                Some(d.as_secs() + u64::from(d.subsec_nanos() > 0)).map(|s| s.max(1))
            }
            _ => None,
        }
    }

    /// The failure class a retry policy names, for errors that happened before any response
    /// head was read (`None`: not an upstream failure, or not one a retry can help).
    pub fn retry_failure(&self) -> Option<crate::upstream::Failure> {
        use crate::upstream::Failure;
        match self {
            ProxyError::Connect(_) | ProxyError::ConnectTimeout => Some(Failure::ConnectError),
            ProxyError::UpstreamTimeout => Some(Failure::Timeout),
            ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_) => Some(Failure::Reset),
            _ => None,
        }
    }

    /// Whether the upstream is to blame (counts against its passive health and breaker);
    /// `None` when the error says nothing about the upstream (client side, refusals).
    pub fn upstream_failed(&self) -> Option<bool> {
        match self {
            ProxyError::Connect(_)
            | ProxyError::ConnectTimeout
            | ProxyError::UpstreamTimeout
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamProtocol(_)
            | ProxyError::UnexpectedUpgrade
            | ProxyError::UpstreamIo(_) => Some(true),
            _ => None,
        }
    }
}
