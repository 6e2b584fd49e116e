//! Why an exchange failed, which side caused it, and the one table mapping that to the
//! client's answer.

use std::io;

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
    /// No route matches.
    #[error("no route")]
    NoRoute,
    /// The upstream group has no target.
    #[error("no upstream target")]
    NoTarget,
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
            ProxyError::NoRoute => (404, "no route matches this request"),
            ProxyError::NoTarget => (503, "no upstream target available"),
            ProxyError::Connect(_) => (502, "bad gateway: upstream connect failed"),
            ProxyError::ConnectTimeout => (504, "gateway timeout: upstream connect timed out"),
            ProxyError::UpstreamTimeout => {
                (504, "gateway timeout: upstream did not respond in time")
            }
            ProxyError::UpstreamClosed => (502, "bad gateway: upstream closed the connection"),
            ProxyError::UpstreamProtocol(_) => (502, "bad gateway: invalid upstream response"),
            ProxyError::UnexpectedUpgrade => (502, "bad gateway: invalid upstream response"),
            ProxyError::UpstreamIo(_) => (502, "bad gateway: upstream connection error"),
        })
    }

    /// The cause class counted in the metrics.
    pub fn cause(&self) -> ErrorCause {
        match self {
            ProxyError::BadRequest(_) | ProxyError::BadTarget | ProxyError::BodyTooLarge => {
                ErrorCause::BadRequest
            }
            ProxyError::ClientTimeout => ErrorCause::ClientTimeout,
            ProxyError::ClientGone(_) => ErrorCause::ClientGone,
            ProxyError::NoRoute => ErrorCause::NoRoute,
            ProxyError::NoTarget | ProxyError::Connect(_) => ErrorCause::UpstreamConnect,
            ProxyError::ConnectTimeout | ProxyError::UpstreamTimeout => ErrorCause::UpstreamTimeout,
            ProxyError::UpstreamProtocol(_) | ProxyError::UnexpectedUpgrade => {
                ErrorCause::UpstreamProtocol
            }
            ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_) => ErrorCause::UpstreamClosed,
        }
    }

    /// Whether the client's connection may stay open after the error response.
    pub fn keeps_connection(&self) -> bool {
        matches!(self, ProxyError::NoRoute | ProxyError::NoTarget)
    }
}
