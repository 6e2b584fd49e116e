//! The `compress` step of a request on a route with a `compress` policy (see
//! `crate::policy::compress` for the rules and `crate::coding` for the codecs). It runs after
//! the route's other policies passed:
//!
//! ```text
//! request:  Content-Encoding gzip|br|zstd and decompress_requests? ─▶ body read whole
//!           (route body limit: 413) ─▶ decoded (max_decompressed_bytes: 413; malformed:
//!           400; another coding: 415 with Accept-Encoding) ─▶ forwarded with an exact
//!           Content-Length and no Content-Encoding
//!           not HEAD, no Range ─▶ coding negotiated from Accept-Encoding, response stages on
//! response: compressible (status, type, size, no Content-Encoding / Content-Range /
//!           no-transform)? ─▶ Vary: Accept-Encoding merged; with a coding: Content-Encoding
//!           set, Content-Length and Accept-Ranges dropped, a strong ETag made weak, the body
//!           streamed through a worker's reused encoder (`stages::relay_rewritten`): chunked
//!           to HTTP/1.1 (and HTTP/2) clients, close-delimited to HTTP/1.0 ones, with a
//!           Content-Length when the whole output fit in one buffer before the head went out
//! ```
//!
//! A route without the policy never gets here and pays nothing.

use std::sync::Arc;

use super::body::{BodyEnd, RelayError};
use super::connection::{find_header, ClientConn, Next, BODY_BUF};
use super::context::WorkerContext;
use super::error::ProxyError;
use super::request_body::Buffered;
use super::stages::{relay_rewritten, Reframe, Rewrite, RewriteError, RewriteOptions, Unobserved};
use super::transform::{BodyPlan, Then, TransformBody};
use crate::coding::{decode, DecodeError, Encoder};
use crate::config::{Route, RouteAction, Snapshot, Upstream};
use crate::http::writer::{write_downstream_response, DownstreamInfo};
use crate::http::{
    HeadEdits, HeaderSpan, Method, RequestHead, ResponseFraming, ResponseHead, Version,
};
use crate::policy::compress::{lists_token, Coding, Compress, ResponseFacts};
use crate::policy::{Challenge, Denial};
use crate::upstream::UpstreamConn;

/// The `Accept-Encoding` field of a 415 answer: what request bodies may be coded with.
const ACCEPTED_CODINGS: &[u8] = b"Accept-Encoding: gzip, br, zstd\r\n";

/// A request's `compress` policy and the coding its `Accept-Encoding` chose (none: the
/// response is not compressed, but still says it varies with `Accept-Encoding`).
#[derive(Debug, Clone)]
pub(super) struct Negotiated {
    policy: Arc<Compress>,
    coding: Option<Coding>,
}

impl Negotiated {
    /// Decides whether the upstream's response (head `response`, fields `headers` spanning
    /// `buf`) is compressed; when it could be, records the head edits (`Vary`, and with a
    /// coding `Content-Encoding`, no `Content-Length`/`Accept-Ranges`, a weak `ETag`) and
    /// returns the coding.
    pub(super) fn plan(
        &self,
        buf: &[u8],
        headers: &[HeaderSpan],
        response: &ResponseHead,
        edits: &mut HeadEdits,
        transformed: bool,
    ) -> Option<Coding> {
        let named = |name: &'static str| {
            headers
                .iter()
                .filter(move |h| h.name.of(buf).eq_ignore_ascii_case(name.as_bytes()))
                .map(move |h| h.value.of(buf))
        };
        // A body the transform rewrites has no known length and no coding any more (the
        // transform decodes it), and its validators are gone.
        let facts = ResponseFacts {
            status: response.status,
            length: match response.framing {
                ResponseFraming::Length(n) if !transformed => Some(n),
                _ => None,
            },
            has_body: !matches!(
                response.framing,
                ResponseFraming::None | ResponseFraming::Length(0)
            ),
            content_type: named("content-type").next(),
            encoded: !transformed && named("content-encoding").next().is_some(),
            content_range: named("content-range").next().is_some(),
            no_transform: lists_token(named("cache-control"), b"no-transform"),
        };
        if self.policy.refusal(&facts).is_some() {
            return None;
        }
        edits.merge_vary(b"Accept-Encoding");
        let coding = self.coding?;
        edits.remove(b"content-length");
        edits.remove(b"accept-ranges");
        edits.add(b"Content-Encoding", coding.token().as_bytes());
        if let Some(etag) = named("etag").next().filter(|_| !transformed) {
            edits.remove(b"etag");
            if etag.starts_with(b"W/") {
                edits.add(b"ETag", etag);
            } else if etag.starts_with(b"\"") {
                let mut weak = [0u8; 256];
                if let Some(slot) = weak.get_mut(..etag.len() + 2) {
                    slot[..2].copy_from_slice(b"W/");
                    slot[2..].copy_from_slice(etag);
                    edits.add(b"ETag", slot);
                }
            }
        }
        Some(coding)
    }
}

/// A worker encoder as a rewriting response stage.
struct Compressing(Encoder);

impl Rewrite for Compressing {
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        self.0
            .data(input, out)
            .map_err(|e| RewriteError(e.to_string()))
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        self.0.finish(out).map_err(|e| RewriteError(e.to_string()))
    }
}

impl ClientConn {
    /// Applies the route's `compress` policy to the request: decodes a compressed body when
    /// enabled and negotiates the response's coding. Returns how the connection goes on when
    /// the request was answered here (415, 400).
    pub(super) async fn apply_compress(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        route: &Route,
        policy: &Arc<Compress>,
        head: &RequestHead,
    ) -> Result<Option<Next>, ProxyError> {
        let RouteAction::Proxy(_) = &route.action else {
            return Ok(None);
        };
        if policy.decompress_requests {
            if let Err(denial) = self.decompress_request(snapshot, policy, head).await? {
                ctx.metrics()
                    .policy_decision(&policy.name, denial.outcome());
                if denial.status == 415 {
                    self.response_headers.extend_from_slice(ACCEPTED_CODINGS);
                }
                return Ok(Some(self.reply_denied(ctx, &denial, head).await));
            }
        }
        self.negotiate_coding(policy, head);
        Ok(None)
    }

    /// Turns the response stages on with the coding the request's `Accept-Encoding` chose;
    /// not for HEAD (no body) or `Range` requests (ranges of the identity representation).
    fn negotiate_coding(&mut self, policy: &Arc<Compress>, head: &RequestHead) {
        let data = self.input.data();
        if head.method_kind == Method::Head || find_header(data, &self.headers, "range").is_some() {
            return;
        }
        let headers = &self.headers;
        let accept = headers
            .iter()
            .filter(|h| h.name.of(data).eq_ignore_ascii_case(b"accept-encoding"))
            .map(|h| h.value.of(data));
        let coding = policy.negotiate(accept);
        self.stages.activate();
        self.stages.compress = Some(Negotiated {
            policy: Arc::clone(policy),
            coding,
        });
    }

    /// Decodes a request body sent with `Content-Encoding: gzip|br|zstd`; the forwarded
    /// request then carries the decoded body. `Err(denial)`: 415 for another coding, 400 for
    /// a body that does not decode; a body over the limits is a 413 (`BodyTooLarge`).
    async fn decompress_request(
        &mut self,
        snapshot: &Snapshot,
        policy: &Compress,
        head: &RequestHead,
    ) -> Result<Result<(), Denial>, ProxyError> {
        let data = self.input.data();
        let mut codings = self
            .headers
            .iter()
            .filter(|h| h.name.of(data).eq_ignore_ascii_case(b"content-encoding"))
            .map(|h| crate::http::headers::trim_ows(h.value.of(data)));
        let (Some(value), None) = (codings.next(), codings.next()) else {
            // No coding, or several fields (a stack of codings): the latter is refused below.
            return Ok(
                if find_header(data, &self.headers, "content-encoding").is_some() {
                    Err(unsupported())
                } else {
                    Ok(())
                },
            );
        };
        if value.eq_ignore_ascii_case(b"identity") {
            return Ok(Ok(()));
        }
        let Some(coding) = Coding::from_token(value) else {
            return Ok(Err(unsupported()));
        };
        let limit = self.body_rules.max_bytes;
        if self.buffer_request_body(snapshot, head, limit).await? == Buffered::TooLarge {
            return Err(ProxyError::BodyTooLarge);
        }
        let mut decoded = Vec::new();
        match decode(
            coding,
            self.body.bytes(),
            policy.max_decompressed_bytes,
            &mut decoded,
        ) {
            Ok(()) => {
                self.body.replace(&mut decoded, true);
                Ok(Ok(()))
            }
            Err(DecodeError::TooLarge(_)) => Err(ProxyError::BodyTooLarge),
            Err(e @ DecodeError::Malformed { .. }) => {
                log::debug!("request body: {e}");
                Ok(Err(Denial {
                    status: 400,
                    cause: "malformed-body",
                    message: "bad request: the body does not decode in its Content-Encoding",
                    challenge: Challenge::None,
                    violations: Vec::new(),
                }))
            }
        }
    }

    /// Writes the response through its rewriting stages (`stages`: a body transform, the
    /// coding to compress with, or both, in that order): the head with the stages' `edits` and
    /// no framing field, then the body through them (see the module docs).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn relay_compressed(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        mut conn: UpstreamConn,
        upstream: &Upstream,
        head: &RequestHead,
        response: ResponseHead,
        edits: &HeadEdits,
        (transform, coding): (Option<BodyPlan>, Option<Coding>),
    ) -> Result<Next, ProxyError> {
        let mut transform = match transform {
            Some(plan) => Some(TransformBody::new(plan)?),
            None => None,
        };
        let end = match response.framing {
            ResponseFraming::Length(n) => BodyEnd::Length(n),
            ResponseFraming::Chunked => BodyEnd::Chunked,
            ResponseFraming::UntilClose => BodyEnd::Close,
            // `plan` compresses only responses with a body.
            ResponseFraming::None => BodyEnd::Length(0),
        };
        let reframe = if head.version == Version::Http10 {
            Reframe::Close
        } else {
            Reframe::Chunked
        };
        let keep_alive = head.keep_alive
            && !self.linger
            && reframe == Reframe::Chunked
            && !ctx.drain().is_draining();
        let client = (head.version, keep_alive);
        self.write_compressed_head(snapshot, conn.buf.data(), &response, edits, client);
        conn.buf.consume(response.head_len);
        self.exchange.status = response.status;
        let mut compressing = match coding {
            Some(coding) => {
                let policy = self.stages.compress.as_ref().map(|n| Arc::clone(&n.policy));
                let level = policy.map_or(coding.default_level(), |p| p.level(coding));
                let encoder = ctx
                    .encoders()
                    .take(coding, level)
                    .map_err(|e| ProxyError::UpstreamIo(std::io::Error::other(e)))?;
                Some(Compressing(encoder))
            }
            None => None,
        };
        let mut both;
        let stage: &mut dyn Rewrite = match (&mut transform, &mut compressing) {
            (Some(first), Some(second)) => {
                both = Then {
                    first,
                    second,
                    between: Vec::new(),
                };
                &mut both
            }
            (Some(t), None) => t,
            (None, Some(c)) => c,
            (None, None) => &mut Unchanged,
        };
        let opts = RewriteOptions {
            read_idle: upstream.timeouts.idle,
            write_timeout: snapshot.server.timeouts.body_idle,
            max_buffer: BODY_BUF,
            reframe,
        };
        let relayed = relay_rewritten(
            &mut conn.stream,
            &mut conn.buf,
            &mut self.stream,
            end,
            opts,
            stage,
            &mut Unobserved,
            &mut self.out,
        )
        .await;
        if let Some(compressing) = compressing {
            ctx.encoders().give(compressing.0);
        }
        // The head is held back until output is ready: a failure before it went out (an
        // upstream that stalls or closes early) leaves it in `out`, and the client gets the
        // error answer (502/504) instead of a closed connection.
        self.response_started = self.out.is_empty();
        self.exchange.bytes_out += relayed.map_err(relay_error)?;
        self.check_in_after_relay(ctx, conn, upstream, &response);
        Ok(if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    /// The client's head of a compressed response in `out`, without its framing field and
    /// final empty line (`relay_rewritten` adds them once it knows the framing).
    fn write_compressed_head(
        &mut self,
        snapshot: &Snapshot,
        buf: &[u8],
        response: &ResponseHead,
        edits: &HeadEdits,
        (client_version, keep_alive): (Version, bool),
    ) {
        let unframed = ResponseHead {
            framing: ResponseFraming::None,
            ..*response
        };
        let info = DownstreamInfo {
            client_version,
            keep_alive,
            request_id: &self.request_id,
            extra_headers: self
                .response_headers
                .get(self.stages.vary_line..)
                .unwrap_or_default(),
            edits: Some(edits),
            upgrade: None,
        };
        self.out.clear();
        write_downstream_response(&mut self.out, buf, &unframed, &self.headers, &info);
        if self.tls.is_some() {
            self.finish_secure_head(snapshot, 0);
        }
        if self.out.ends_with(b"\r\n\r\n") {
            self.out.truncate(self.out.len() - 2);
        }
    }
}

/// No rewriting (never chosen: a rewritten response has a transform or a coding).
struct Unchanged;

impl Rewrite for Unchanged {
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        out.extend_from_slice(input);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<(), RewriteError> {
        Ok(())
    }
}

/// The 415 of a request body in a coding the gateway does not decode.
fn unsupported() -> Denial {
    Denial {
        status: 415,
        cause: "unsupported-encoding",
        message: "unsupported media type: request bodies may be coded gzip, br or zstd",
        challenge: Challenge::None,
        violations: Vec::new(),
    }
}

fn relay_error(e: RelayError) -> ProxyError {
    match e {
        RelayError::SourceIo(e) => ProxyError::UpstreamIo(e),
        RelayError::SourceClosed => ProxyError::UpstreamClosed,
        RelayError::SourceTimeout => ProxyError::UpstreamTimeout,
        RelayError::SourceFraming(e) => ProxyError::UpstreamProtocol(e),
        RelayError::TooLarge => ProxyError::UpstreamClosed,
        RelayError::Sink(e) => ProxyError::ClientGone(e),
    }
}
