//! The `transform` step of a request on a route with a `transform` policy (see
//! `crate::policy::transform` for the operations). It runs after `compress`:
//!
//! ```text
//! request:  header operations ─▶ edits of the upstream head (no body buffered)
//!           query operations  ─▶ the upstream path's query rewritten
//!           response templates rendered now (the request's fields are gone by the response)
//!           JSON operations (a JSON body with one): body read whole up to max_body_bytes
//!           (larger: on_oversize, pass streams it unchanged, refuse is 413; not JSON or
//!           still coded: on_non_json, pass or 415) ─▶ transformed (malformed: on_malformed,
//!           pass or 400 problem) ─▶ forwarded with its exact Content-Length
//! response: header operations ─▶ the stages' head edits (no body buffered)
//!           JSON operations on a JSON body: Content-Length/ETag/Accept-Ranges dropped, a
//!           gzip/br/zstd body decoded (Content-Encoding dropped), read up to
//!           max_body_bytes, transformed, then compressed if the route compresses
//!           (`stages::relay_rewritten`: Content-Length when it fits one buffer, else chunked);
//!           what cannot be transformed passes unchanged or is answered 502, as configured
//! ```
//!
//! A route without the policy never gets here and pays nothing.

use std::sync::Arc;

use super::connection::{find_header, ClientConn, Next};
use super::context::WorkerContext;
use super::error::ProxyError;
use super::request_body::Buffered;
use super::stages::{Rewrite, RewriteError};
use crate::coding::Decoder;
use crate::config::{Route, RouteAction, Snapshot};
use crate::http::{
    BodyFraming, HeadEdits, HeaderSpan, HttpError, RequestHead, ResponseFault, ResponseFraming,
    ResponseHead,
};
use crate::policy::compress::Coding;
use crate::policy::transform::{
    is_json, reuse_fields, same_header, Field, FieldOps, OnBody, QueryScratch, Rendered, Transform,
    Vars,
};
use crate::policy::{Challenge, Denial, PathParams};

/// The request side's upstream head edits, owned by the connection.
#[derive(Debug, Default)]
pub(super) struct RequestEdits {
    /// The transform's edits of the upstream head.
    pub(super) edits: HeadEdits,
    /// The transform's and the cache's edits together, when both edit the head.
    merged: HeadEdits,
    /// The buffers the request's header and query operations work in (boxed: only a
    /// connection that meets a transform route pays for them, once).
    scratch: Option<Box<RequestScratch>>,
}

/// Buffers of the request side's operations, reused from request to request.
#[derive(Debug, Default)]
struct RequestScratch {
    /// The rendered templates of the current list of operations.
    values: Rendered,
    /// An empty field list whose allocation each edit reuses.
    fields: Vec<Field<'static>>,
    /// The query operations' buffers.
    query: QueryScratch,
}

impl RequestEdits {
    /// Forgets the previous request's edits (keeps the buffers).
    pub(super) fn clear(&mut self) {
        if !self.edits.is_empty() {
            self.edits.clear();
        }
    }

    /// The edits of the upstream head: the transform's, the cache's (`cache`), or both.
    pub(super) fn with<'a>(&'a mut self, cache: &'a HeadEdits) -> Option<&'a HeadEdits> {
        match (self.edits.is_empty(), cache.is_empty()) {
            (true, true) => None,
            (false, true) => Some(&self.edits),
            (true, false) => Some(cache),
            (false, false) => {
                self.merged.clear();
                for edits in [&self.edits, cache] {
                    self.merged.extend_from(edits);
                }
                Some(&self.merged)
            }
        }
    }
}

/// A response transform prepared while the request was in hand. The connection keeps it
/// (and its buffers) from request to request; `policy` says whether the current request has
/// one.
#[derive(Debug, Default)]
pub(super) struct Prepared {
    policy: Option<Arc<Transform>>,
    /// The response header operations' rendered templates.
    header_values: Rendered,
    /// The response JSON `set` values.
    json_values: Vec<Option<String>>,
    /// The request was HEAD (the response has no body to transform).
    head_request: bool,
    /// An empty field list whose allocation each edit reuses.
    fields: Vec<Field<'static>>,
}

/// What the response's body goes through.
pub(super) struct BodyPlan {
    policy: Arc<Transform>,
    json_values: Vec<Option<String>>,
    /// The upstream's coding, undone before the JSON is read.
    coding: Option<Coding>,
}

impl Prepared {
    /// Prepares `policy`'s response side for the request `vars` describes.
    fn prepare(&mut self, policy: &Arc<Transform>, vars: &Vars<'_>, head_request: bool) {
        self.header_values.render(vars, &policy.response.headers);
        self.json_values = policy.response.json.render(vars);
        self.head_request = head_request;
        self.policy = Some(Arc::clone(policy));
    }

    /// Forgets the current request's transform (keeps the buffers).
    pub(super) fn release(&mut self) {
        self.policy = None;
        self.header_values.clear();
        self.json_values.clear();
    }

    /// Applies the header operations to the upstream's response (head `response`, fields
    /// `headers` spanning `buf`) as head `edits`, and decides whether the body is
    /// transformed. `Ok(None)` also when the current request has no transform. `Err`: a
    /// body the policy refuses (answered 502).
    pub(super) fn plan(
        &mut self,
        buf: &[u8],
        headers: &[HeaderSpan],
        response: &ResponseHead,
        edits: &mut HeadEdits,
    ) -> Result<Option<BodyPlan>, ProxyError> {
        let Some(policy) = &self.policy else {
            return Ok(None);
        };
        let ops = &policy.response;
        if !ops.headers.is_empty() {
            let values = &self.header_values;
            edit_fields(&ops.headers, values, buf, headers, edits, &mut self.fields);
        }
        let bodiless = self.head_request
            || matches!(
                response.framing,
                ResponseFraming::None | ResponseFraming::Length(0)
            )
            || matches!(response.status, 100..=199 | 204 | 304);
        if ops.json.is_empty() || bodiless {
            return Ok(None);
        }
        let rules = policy.body;
        let named = |name: &'static str| {
            headers
                .iter()
                .filter(move |h| h.name.of(buf).eq_ignore_ascii_case(name.as_bytes()))
                .map(move |h| crate::http::headers::trim_ows(h.value.of(buf)))
        };
        let json = named("content-type").next().is_some_and(is_json);
        let mut codings =
            named("content-encoding").filter(|c| !c.eq_ignore_ascii_case(b"identity"));
        let coding = match (codings.next(), codings.next()) {
            (None, _) => Ok(None),
            (Some(c), None) => Coding::from_token(c).map(Some).ok_or(()),
            (Some(_), Some(_)) => Err(()),
        };
        let coding = match (json, coding) {
            (true, Ok(coding)) => coding,
            _ => return refused_or_passed(rules.on_non_json),
        };
        if let (ResponseFraming::Length(n), None) = (response.framing, coding) {
            if n > rules.max_bytes {
                return refused_or_passed(rules.on_oversize);
            }
        }
        for field in [&b"content-length"[..], b"etag", b"accept-ranges"] {
            edits.remove(field);
        }
        if coding.is_some() {
            edits.remove(b"content-encoding");
        }
        Ok(Some(BodyPlan {
            policy: Arc::clone(policy),
            json_values: self.json_values.clone(),
            coding,
        }))
    }
}

/// `Ok(None)` (the body passes unchanged) or the 502 of a refused response body.
fn refused_or_passed(on: OnBody) -> Result<Option<BodyPlan>, ProxyError> {
    match on {
        OnBody::Pass => Ok(None),
        OnBody::Refuse => Err(refused_response()),
    }
}

fn refused_response() -> ProxyError {
    ProxyError::UpstreamProtocol(HttpError::InvalidResponse(ResponseFault::Malformed))
}

/// Runs header operations `ops` (rendered `values`) on the fields of `headers` (spans into
/// `buf`) they touch, as head edits: each touched name removed, the result added. `spare`
/// lends its allocation to the field list.
fn edit_fields(
    ops: &FieldOps,
    values: &Rendered,
    buf: &[u8],
    headers: &[HeaderSpan],
    edits: &mut HeadEdits,
    spare: &mut Vec<Field<'static>>,
) {
    let touches = |name: &[u8]| ops.touched().any(|t| same_header(t.as_bytes(), name));
    let mut fields = reuse_fields(std::mem::take(spare));
    fields.extend(
        headers
            .iter()
            .filter(|h| touches(h.name.of(buf)))
            .map(|h| (h.name.of(buf), h.value.of(buf))),
    );
    ops.apply(&mut fields, values, same_header);
    for name in ops.touched() {
        edits.remove(name.as_bytes());
    }
    for (name, value) in &fields {
        edits.add(name, value);
    }
    *spare = reuse_fields(fields);
}

/// The response body stage: decodes, holds the body up to the limit, transforms it.
pub(super) struct TransformBody {
    plan: BodyPlan,
    decoder: Option<Decoder>,
    /// The body so far (decoded).
    held: Vec<u8>,
    /// Decoded output of the current piece.
    scratch: Vec<u8>,
    /// The body outgrew the limit and passes unchanged.
    passing: bool,
}

impl TransformBody {
    /// The stage for `plan`.
    pub(super) fn new(plan: BodyPlan) -> Result<Self, ProxyError> {
        let decoder = match plan.coding {
            Some(coding) => Some(Decoder::new(coding).map_err(ProxyError::UpstreamIo)?),
            None => None,
        };
        Ok(TransformBody {
            plan,
            decoder,
            held: Vec::new(),
            scratch: Vec::new(),
            passing: false,
        })
    }

    /// Takes decoded bytes in `self.scratch`.
    fn take(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let rules = self.plan.policy.body;
        if !self.passing && (self.held.len() + self.scratch.len()) as u64 > rules.max_bytes {
            if rules.on_oversize == OnBody::Refuse {
                return Err(RewriteError(format!(
                    "response body over the transform's {} bytes",
                    rules.max_bytes
                )));
            }
            self.passing = true;
            out.append(&mut self.held);
        }
        if self.passing {
            out.append(&mut self.scratch);
        } else {
            self.held.append(&mut self.scratch);
        }
        Ok(())
    }
}

impl Rewrite for TransformBody {
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        match &mut self.decoder {
            Some(d) => d
                .data(input, &mut self.scratch)
                .map_err(|e| RewriteError(format!("decoding the upstream body: {e}")))?,
            None => self.scratch.extend_from_slice(input),
        }
        self.take(out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if let Some(d) = &mut self.decoder {
            d.finish(&mut self.scratch)
                .map_err(|e| RewriteError(format!("decoding the upstream body: {e}")))?;
            self.take(out)?;
        }
        if self.passing {
            return Ok(());
        }
        let json = &self.plan.policy.response.json;
        let start = out.len();
        match json.apply(&self.held, &self.plan.json_values, out) {
            Ok(()) => Ok(()),
            Err(_) if self.plan.policy.body.on_malformed == OnBody::Pass => {
                out.truncate(start);
                out.append(&mut self.held);
                Ok(())
            }
            Err(e) => Err(RewriteError(format!("upstream JSON body: {e}"))),
        }
    }
}

/// Two rewriting stages in a row: `A`'s output is `B`'s input (transform, then compress).
pub(super) struct Then<'s, A, B> {
    /// The first stage.
    pub(super) first: &'s mut A,
    /// The second stage.
    pub(super) second: &'s mut B,
    /// `first`'s output of the current piece.
    pub(super) between: Vec<u8>,
}

impl<A: Rewrite, B: Rewrite> Rewrite for Then<'_, A, B> {
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        self.between.clear();
        self.first.data(input, &mut self.between)?;
        if self.between.is_empty() {
            return Ok(());
        }
        self.second.data(&self.between, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        self.between.clear();
        self.first.finish(&mut self.between)?;
        if !self.between.is_empty() {
            self.second.data(&self.between, out)?;
        }
        self.second.finish(out)
    }
}

/// The 415 of a body a JSON transform cannot read.
fn not_json() -> Denial {
    Denial {
        status: 415,
        cause: crate::http::problem::cause::UNSUPPORTED_MEDIA_TYPE,
        message: "unsupported media type: this route transforms JSON bodies \
                  (Content-Type application/json or +json, no Content-Encoding)",
        challenge: Challenge::None,
        violations: Vec::new(),
    }
}

/// The 400 of a malformed JSON body.
fn malformed() -> Denial {
    Denial {
        status: 400,
        cause: "malformed-json",
        message: "bad request: the body is not well-formed JSON",
        challenge: Challenge::None,
        violations: Vec::new(),
    }
}

impl ClientConn {
    /// Applies the route's `transform` policy to the request (proxy routes): header and
    /// query operations, and the response side prepared. Returns the rendered values of
    /// the request's JSON operations when its body is to be transformed too
    /// ([`ClientConn::transform_request_json`]). Allocates nothing on a warm connection
    /// unless the policy has JSON operations.
    pub(super) fn apply_transform(
        &mut self,
        snapshot: &Snapshot,
        route: &Route,
        policy: &Arc<Transform>,
        head: &RequestHead,
    ) -> Option<Vec<Option<String>>> {
        let RouteAction::Proxy(_) = &route.action else {
            return None;
        };
        let vars = Vars {
            data: self.input.data(),
            headers: &self.headers,
            consumer: self.identity.consumer_name(),
            request_id: &self.request_id,
            client_ip: self.identity.client_ip,
            route: &route.name,
            params: Some(PathParams {
                names: snapshot.router.param_names(&self.params),
                params: &self.params,
                path: &self.path,
            }),
        };
        let request = &policy.request;
        if !request.headers.is_empty() || !request.query.is_empty() {
            let RequestEdits { edits, scratch, .. } = &mut self.transform;
            let scratch = scratch.get_or_insert_with(Box::default);
            let RequestScratch {
                values,
                fields,
                query,
            } = &mut **scratch;
            if !request.headers.is_empty() {
                values.render(&vars, &request.headers);
                edit_fields(
                    &request.headers,
                    values,
                    vars.data,
                    vars.headers,
                    edits,
                    fields,
                );
            }
            if !request.query.is_empty() {
                values.render(&vars, &request.query);
                let target = &mut self.upstream_path;
                crate::policy::transform::apply_query(&request.query, values, target, query);
            }
        }
        if !policy.response.is_empty() {
            self.stages.activate();
            let head_request = head.method_kind == crate::http::Method::Head;
            let prepared = self.stages.transform.get_or_insert_with(Box::default);
            prepared.prepare(policy, &vars, head_request);
        }
        (!request.json.is_empty()).then(|| request.json.render(&vars))
    }

    /// The request side's JSON operations (rendered `values`) on the request's body; returns
    /// how the connection goes on when the request was answered here (415, 400).
    pub(super) async fn transform_request_json(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        policy: &Transform,
        head: &RequestHead,
        values: &[Option<String>],
    ) -> Result<Option<Next>, ProxyError> {
        match self
            .transform_request_body(snapshot, policy, head, values)
            .await?
        {
            Ok(()) => Ok(None),
            Err(denial) => {
                ctx.metrics()
                    .policy_decision(&policy.name, denial.outcome());
                Ok(Some(self.reply_denied(ctx, &denial, head).await))
            }
        }
    }

    /// Reads a JSON request body whole and transforms it (see the module docs).
    async fn transform_request_body(
        &mut self,
        snapshot: &Snapshot,
        policy: &Transform,
        head: &RequestHead,
        values: &[Option<String>],
    ) -> Result<Result<(), Denial>, ProxyError> {
        if matches!(head.framing, BodyFraming::None | BodyFraming::Length(0)) {
            return Ok(Ok(()));
        }
        let rules = policy.body;
        let data = self.input.data();
        let json = find_header(data, &self.headers, "content-type").is_some_and(is_json);
        let coded = find_header(data, &self.headers, "content-encoding")
            .is_some_and(|c| !crate::http::headers::trim_ows(c).eq_ignore_ascii_case(b"identity"))
            && !self.body.decoded();
        if !json || coded {
            return Ok(match rules.on_non_json {
                OnBody::Pass => Ok(()),
                OnBody::Refuse => Err(not_json()),
            });
        }
        let limit = rules.max_bytes.min(self.body_rules.max_bytes);
        if self.buffer_request_body(snapshot, head, limit).await? == Buffered::TooLarge {
            return match rules.on_oversize {
                OnBody::Pass => Ok(Ok(())),
                OnBody::Refuse => Err(ProxyError::BodyTooLarge),
            };
        }
        let mut out = Vec::new();
        match policy
            .request
            .json
            .apply(self.body.bytes(), values, &mut out)
        {
            Ok(()) => {
                self.body.replace(&mut out, false);
                Ok(Ok(()))
            }
            Err(e) => {
                log::debug!("request body: {e}");
                Ok(match rules.on_malformed {
                    OnBody::Pass => Ok(()),
                    OnBody::Refuse => Err(malformed()),
                })
            }
        }
    }
}
