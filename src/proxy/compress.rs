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

use super::body::BodyEnd;
use super::connection::{find_header, ClientConn, Next, BODY_BUF};
use super::context::WorkerContext;
use super::error::ProxyError;
use super::request_body::Buffered;
use super::stages::{BodyObserver, Exchange, Rewrite, RewriteError, Unobserved};
use super::transform::{BodyPlan, Then, TransformBody};
use crate::coding::{decode, DecodeError, Encoder};
use crate::config::{Route, RouteAction, Snapshot, Upstream};
use crate::http::{HeadEdits, HeaderSpan, Method, RequestHead, ResponseFraming, ResponseHead};
use crate::policy::compress::{lists_token, Coding, Compress, ResponseFacts};
use crate::policy::{Challenge, Denial};
use crate::upstream::UpstreamConn;

/// Bodies of a known length up to this are compressed in one call (see
/// [`ClientConn::compress_whole`]); longer ones stream through the encoder.
const ONE_SHOT_MAX: u64 = BODY_BUF as u64;

/// The `Accept-Encoding` field of a 415 answer: what request bodies may be coded with.
const ACCEPTED_CODINGS: &[u8] = b"Accept-Encoding: gzip, br, zstd\r\n";

/// A request's `compress` policy and the coding its `Accept-Encoding` chose (none: the
/// response is not compressed, but still says it varies with `Accept-Encoding`).
#[derive(Debug, Clone)]
pub(super) struct Negotiated {
    policy: Arc<Compress>,
    coding: Option<Coding>,
}

/// What the `compress` policy does to one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// Nothing: no policy, or a response it never compresses.
    Untouched,
    /// A compressible response sent as it is (the request accepts no coding the policy
    /// offers); it says it varies with `Accept-Encoding`.
    Identity,
    /// Compressed with this coding.
    Encode(Coding),
}

impl Plan {
    /// The coding the body is compressed with.
    pub(super) fn coding(self) -> Option<Coding> {
        match self {
            Plan::Encode(coding) => Some(coding),
            _ => None,
        }
    }

    /// Whether the compressor made the response vary with `Accept-Encoding`.
    pub(super) fn varies(self) -> bool {
        self != Plan::Untouched
    }
}

/// The token a cache keys a variant by: the coding, or `identity`.
pub(super) fn coding_key(coding: Option<Coding>) -> &'static [u8] {
    coding.map_or(b"identity", |c| c.token().as_bytes())
}

impl Negotiated {
    /// Decides whether the upstream's response (head `response`, fields `headers` spanning
    /// `buf`) is compressed; when it could be, records the head edits (`Vary`, and with a
    /// coding `Content-Encoding`, no `Content-Length`/`Accept-Ranges`, a weak `ETag`).
    pub(super) fn plan(
        &self,
        buf: &[u8],
        headers: &[HeaderSpan],
        response: &ResponseHead,
        edits: &mut HeadEdits,
        transformed: bool,
    ) -> Plan {
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
            return Plan::Untouched;
        }
        edits.merge_vary(b"Accept-Encoding");
        let Some(coding) = self.coding else {
            return Plan::Identity;
        };
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
        Plan::Encode(coding)
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
    /// The coding is also the request's key among a cache's compressed variants (a HEAD is
    /// answered from the variant its GET would get).
    fn negotiate_coding(&mut self, policy: &Arc<Compress>, head: &RequestHead) {
        let data = self.input.data();
        let headers = &self.headers;
        let accept = headers
            .iter()
            .filter(|h| h.name.of(data).eq_ignore_ascii_case(b"accept-encoding"))
            .map(|h| h.value.of(data));
        let coding = policy.negotiate(accept);
        self.cache.coding = Some(coding_key(coding));
        if head.method_kind == Method::Head || find_header(data, &self.headers, "range").is_some() {
            return;
        }
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

    /// Writes the response compressed with `coding`: the head with the stages' `edits` and
    /// no framing field, then the body through the worker's encoder (see the module docs).
    /// `observer` (the cache's store, or none) sees the compressed bytes.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn relay_compressed<O: BodyObserver>(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        conn: UpstreamConn,
        upstream: &Upstream,
        head: &RequestHead,
        response: ResponseHead,
        edits: &HeadEdits,
        coding: Coding,
        observer: &mut O,
    ) -> Result<Next, ProxyError> {
        let level = self
            .stages
            .compress
            .as_ref()
            .map_or(coding.default_level(), |n| n.policy.level(coding));
        let exchange = Exchange {
            conn,
            upstream,
            response,
        };
        if let ResponseFraming::Length(n) = response.framing {
            if n <= ONE_SHOT_MAX {
                let encoding = (coding, level);
                return self
                    .compress_whole(ctx, snapshot, exchange, head, edits, encoding, observer)
                    .await;
            }
        }
        let encoder = ctx
            .encoders()
            .take(coding, level)
            .map_err(|e| ProxyError::UpstreamIo(std::io::Error::other(e)))?;
        let mut stage = Compressing(encoder);
        let result = self
            .relay_rewriting(
                ctx, snapshot, exchange, head, edits, &mut stage, false, observer,
            )
            .await;
        ctx.encoders().give(stage.0);
        result
    }

    /// Writes a response whose body the route's `transform` rewrites (`plan`), then
    /// compressed with `coding` when the request negotiated one: the stages in their fixed
    /// order. Not stored by the cache (see docs/caching.md).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn relay_transformed(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        exchange: Exchange<'_>,
        head: &RequestHead,
        edits: &HeadEdits,
        plan: BodyPlan,
        coding: Option<Coding>,
    ) -> Result<Next, ProxyError> {
        let mut transform = TransformBody::new(plan)?;
        let mut compressing = match coding {
            Some(coding) => {
                let level = self
                    .stages
                    .compress
                    .as_ref()
                    .map_or(coding.default_level(), |n| n.policy.level(coding));
                let encoder = ctx
                    .encoders()
                    .take(coding, level)
                    .map_err(|e| ProxyError::UpstreamIo(std::io::Error::other(e)))?;
                Some(Compressing(encoder))
            }
            None => None,
        };
        let result = match &mut compressing {
            Some(second) => {
                let mut both = Then {
                    first: &mut transform,
                    second,
                    between: Vec::new(),
                };
                self.relay_rewriting(
                    ctx,
                    snapshot,
                    exchange,
                    head,
                    edits,
                    &mut both,
                    false,
                    &mut Unobserved,
                )
                .await
            }
            None => {
                self.relay_rewriting(
                    ctx,
                    snapshot,
                    exchange,
                    head,
                    edits,
                    &mut transform,
                    false,
                    &mut Unobserved,
                )
                .await
            }
        };
        if let Some(compressing) = compressing {
            ctx.encoders().give(compressing.0);
        }
        result
    }

    /// The one-shot form of [`ClientConn::relay_compressed`] for a body of known length up to
    /// [`ONE_SHOT_MAX`]: reads it whole, compresses it in one call, and writes head
    /// (`Content-Length` framing) and body in one write. The encoder is taken and given back
    /// with no await between, so a worker keeps one warm encoder however many responses it
    /// compresses at once (with the streaming form, each response in flight holds its own).
    /// `observer` (the cache's store, or none) sees the compressed body.
    #[allow(clippy::too_many_arguments)]
    async fn compress_whole<O: BodyObserver>(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        exchange: Exchange<'_>,
        head: &RequestHead,
        edits: &HeadEdits,
        (coding, level): (Coding, u32),
        observer: &mut O,
    ) -> Result<Next, ProxyError> {
        let Exchange {
            mut conn,
            upstream,
            response,
        } = exchange;
        let start = self.start_rewritten(ctx, snapshot, &mut conn, &response, head, edits);
        // At most ONE_SHOT_MAX (the caller checked), so it fits a usize.
        let length = match start.end {
            BodyEnd::Length(n) => n as usize,
            _ => 0,
        };
        while conn.buf.len() < length {
            let read = conn.buf.fill(&mut conn.stream, BODY_BUF.max(length));
            match monoio::time::timeout(upstream.timeouts.idle, read).await {
                Err(_) => return Err(ProxyError::UpstreamTimeout),
                Ok(Err(e)) => return Err(ProxyError::UpstreamIo(e)),
                Ok(Ok(0)) => return Err(ProxyError::UpstreamClosed),
                Ok(Ok(_)) => {}
            }
        }
        let body = conn.buf.data().get(..length).unwrap_or_default();
        let compressed = &mut self.stages.compressed;
        compressed.clear();
        let mut encoder = ctx
            .encoders()
            .take(coding, level)
            .map_err(|e| ProxyError::UpstreamIo(std::io::Error::other(e)))?;
        // A kept encoder comes reset.
        let result = encoder
            .data(body, compressed)
            .and_then(|()| encoder.finish(compressed));
        ctx.encoders().give(encoder);
        if let Err(e) = result {
            log::debug!("compressing a response body: {e}");
            return Err(ProxyError::UpstreamProtocol(
                crate::http::HttpError::InvalidResponse(crate::http::ResponseFault::Malformed),
            ));
        }
        conn.buf.consume(length);
        observer.payload(compressed);
        self.out.extend_from_slice(b"Content-Length: ");
        crate::http::writer::push_decimal(&mut self.out, compressed.len() as u64);
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(compressed);
        self.exchange.bytes_out += self.out.len() as u64;
        let write = crate::io_buf::write_all_reuse(&mut self.stream, &mut self.out);
        self.response_started = true;
        match monoio::time::timeout(snapshot.server.timeouts.body_idle, write).await {
            Err(_) => {
                return Err(ProxyError::ClientGone(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "write timed out",
                )))
            }
            Ok(result) => result.map_err(ProxyError::ClientGone)?,
        }
        self.check_in_after_relay(ctx, conn, upstream, &response);
        Ok(start.next())
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
