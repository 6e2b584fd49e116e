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
        use crate::http::problem::cause;
        match self {
            ProxyError::BadRequest(e) => match e.status() {
                413 => cause::BODY_TOO_LARGE,
                414 => cause::URI_TOO_LONG,
                417 => cause::EXPECTATION_FAILED,
                431 => cause::HEADERS_TOO_LARGE,
                501 => cause::NOT_IMPLEMENTED,
                505 => cause::VERSION_NOT_SUPPORTED,
                _ => cause::MALFORMED_REQUEST,
            },
            ProxyError::BadTarget => cause::INVALID_TARGET,
            ProxyError::ClientTimeout => cause::REQUEST_TIMEOUT,
            ProxyError::ClientGone(_) => cause::CLIENT_GONE,
            ProxyError::BodyTooLarge => cause::BODY_TOO_LARGE,
            ProxyError::LengthRequired => cause::LENGTH_REQUIRED,
            ProxyError::NoRoute => cause::NO_ROUTE,
            ProxyError::NoTarget => cause::NO_UPSTREAM_TARGET,
            ProxyError::NoHealthyTarget(_) | ProxyError::Unavailable(_) => {
                cause::NO_HEALTHY_UPSTREAM
            }
            ProxyError::BreakerOpen(_) => cause::CIRCUIT_OPEN,
            ProxyError::Connect(_) => cause::UPSTREAM_CONNECT_FAILED,
            ProxyError::ConnectTimeout => cause::UPSTREAM_CONNECT_TIMEOUT,
            ProxyError::UpstreamTimeout => cause::UPSTREAM_TIMEOUT,
            ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_) => cause::UPSTREAM_CLOSED,
            ProxyError::UpstreamProtocol(_) | ProxyError::UnexpectedUpgrade => {
                cause::UPSTREAM_INVALID_RESPONSE
            }
            ProxyError::BadHandshake(_) => cause::BAD_HANDSHAKE,
            ProxyError::TunnelsFull => cause::TOO_MANY_TUNNELS,
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

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use super::ProxyError;
    use crate::http::problem::CAUSES;
    use crate::http::upgrade::HandshakeFault;
    use crate::http::HttpError;

    fn io_error() -> io::Error {
        io::Error::from(io::ErrorKind::ConnectionReset)
    }

    /// Each failure's problem `type` name, written out: a rename breaks this test.
    #[test]
    fn each_failure_has_its_pinned_problem_type() {
        let second = Duration::from_secs(1);
        let table = [
            (
                ProxyError::BadRequest(HttpError::MalformedHead),
                "malformed-request",
            ),
            (
                ProxyError::BadRequest(HttpError::PayloadTooLarge),
                "body-too-large",
            ),
            (
                ProxyError::BadRequest(HttpError::UriTooLong),
                "uri-too-long",
            ),
            (
                ProxyError::BadRequest(HttpError::ExpectationFailed),
                "expectation-failed",
            ),
            (
                ProxyError::BadRequest(HttpError::TooManyHeaders),
                "headers-too-large",
            ),
            (
                ProxyError::BadRequest(HttpError::HeadTooLarge),
                "headers-too-large",
            ),
            (
                ProxyError::BadRequest(HttpError::UnsupportedTransferCoding),
                "not-implemented",
            ),
            (
                ProxyError::BadRequest(HttpError::VersionNotSupported),
                "version-not-supported",
            ),
            (ProxyError::BadTarget, "invalid-target"),
            (ProxyError::ClientTimeout, "request-timeout"),
            (ProxyError::ClientGone(io_error()), "client-gone"),
            (ProxyError::BodyTooLarge, "body-too-large"),
            (ProxyError::LengthRequired, "length-required"),
            (ProxyError::NoRoute, "no-route"),
            (ProxyError::NoTarget, "no-upstream-target"),
            (ProxyError::NoHealthyTarget(second), "no-healthy-upstream"),
            (ProxyError::Unavailable(second), "no-healthy-upstream"),
            (ProxyError::BreakerOpen(second), "circuit-open"),
            (ProxyError::Connect(io_error()), "upstream-connect-failed"),
            (ProxyError::ConnectTimeout, "upstream-connect-timeout"),
            (ProxyError::UpstreamTimeout, "upstream-timeout"),
            (ProxyError::UpstreamClosed, "upstream-closed"),
            (ProxyError::UpstreamIo(io_error()), "upstream-closed"),
            (
                ProxyError::UpstreamProtocol(HttpError::MalformedHead),
                "upstream-invalid-response",
            ),
            (ProxyError::UnexpectedUpgrade, "upstream-invalid-response"),
            (
                ProxyError::BadHandshake(HandshakeFault::BadKey),
                "bad-handshake",
            ),
            (
                ProxyError::BadHandshake(HandshakeFault::UnsupportedVersion),
                "bad-handshake",
            ),
            (ProxyError::TunnelsFull, "too-many-tunnels"),
        ];
        for (error, cause) in &table {
            assert_eq!(error.problem_cause(), *cause, "{error:?}");
            assert!(CAUSES.contains(cause), "{cause} is not in problem::CAUSES");
        }
        // Exhaustive: a new variant does not compile until it is listed here, as a reminder
        // to give it a row (and a cause) above.
        for (error, _) in &table {
            match error {
                ProxyError::BadRequest(_)
                | ProxyError::BadTarget
                | ProxyError::ClientTimeout
                | ProxyError::ClientGone(_)
                | ProxyError::BodyTooLarge
                | ProxyError::LengthRequired
                | ProxyError::NoRoute
                | ProxyError::NoTarget
                | ProxyError::NoHealthyTarget(_)
                | ProxyError::Unavailable(_)
                | ProxyError::BreakerOpen(_)
                | ProxyError::Connect(_)
                | ProxyError::ConnectTimeout
                | ProxyError::UpstreamTimeout
                | ProxyError::UpstreamClosed
                | ProxyError::UpstreamIo(_)
                | ProxyError::UpstreamProtocol(_)
                | ProxyError::UnexpectedUpgrade
                | ProxyError::BadHandshake(_)
                | ProxyError::TunnelsFull => {}
            }
        }
    }
}
