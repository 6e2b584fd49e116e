//! A composite route's answer (`compose = "NAME"`), on the worker that owns the connection:
//! read the client's body if a call sends it, run the composite (`crate::compose`) with this
//! worker's `proxy::call` for every call, and write the assembled answer once, head and body
//! together, with its exact `Content-Length`.
//!
//! Each call carries the identity and forwarding fields of a proxied request (`X-Forwarded-*`,
//! `Via`, `X-Request-Id`, the route policies' consumer and claim fields), the client headers
//! its `forward_headers` list names, and a `traceparent` with a span id of its own: each call
//! is a child span of the request's span. A GET call naming a cache (`cache = "NAME"`) is
//! answered from it while an entry is fresh (`proxy::call_cache`).

use std::time::Instant;

use bytes::Bytes;

use super::cached::unix_now;
use super::call::{call, Call, CallError};
use super::call_cache::CallKey;
use super::connection::{find_header, ClientConn, Next};
use super::context::WorkerContext;
use super::error::ProxyError;
use super::request_body::Buffered;
use crate::compose::answer::{
    cache_control, failure_status, missing_value, problem_body, MISSING_FIELD,
};
use crate::compose::assemble::assemble;
use crate::compose::plan::GATEWAY_FIELDS;
use crate::compose::run::{run, Caller, Inputs, Outcome, Reason, Reply, Request, Slot};
use crate::compose::Composite;
use crate::config::{ComposeAction, Snapshot};
use crate::http::writer::write_generated_head;
use crate::http::{HeaderSpan, Method, RequestHead};
use crate::io_buf::write_all_reuse;
use crate::json::{encoded_len, write};
use crate::policy::Chain;
use crate::router::normalize::split_target;

/// An answer this large is not kept in the connection's output buffer afterwards.
const KEEP_OUT: usize = 64 * 1024;

impl ClientConn {
    /// Answers a request on a composite route.
    pub(super) async fn compose(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        action: &ComposeAction,
        policies: &Chain,
        head: &RequestHead,
    ) -> Result<Next, ProxyError> {
        let plan = &*action.composite;
        let client_body = if plan.client_body {
            self.client_body(snapshot, head).await?
        } else {
            Bytes::new()
        };
        let started = Instant::now();
        let base = self.call_fields(snapshot, head, policies);
        let outcome = {
            let data = self.input.data();
            let headers = &self.headers;
            let lookup = |name: &str| find_header(data, headers, name);
            let path = self.path.as_str();
            let inputs = Inputs {
                params: action
                    .params
                    .iter()
                    .map(|&i| self.params.get(i, path).unwrap_or_default())
                    .collect(),
                query: split_target(head.target.of(data))
                    .ok()
                    .and_then(|t| t.query)
                    .and_then(|q| std::str::from_utf8(q).ok()),
                header: &lookup,
                consumer: self.identity.consumer_name(),
                body: client_body,
            };
            let caller = GatewayCaller {
                ctx,
                snapshot,
                base: &base,
                data,
                headers,
                trace: self.exchange.trace,
                forward_tracestate: self.forward_tracestate,
                policy_strip: policies.stripped_headers(),
                hidden: policies
                    .hidden_credential(&self.identity)
                    .and_then(|c| c.header),
                policy_fields: self.identity.upstream_fields(),
            };
            run(plan, &inputs, &caller, started).await
        };
        self.exchange.upstream = Some(started.elapsed());
        let body_consumed = self.consume_request(head);
        let keep_alive = head.keep_alive && body_consumed && !ctx.drain().is_draining();
        let status = self.write_composite(snapshot, plan, &outcome, head, keep_alive, ctx);
        // The latency the backends set (every required call answered), and below, once the
        // answer is written, what the gateway added to it.
        let slowest = slowest_required(plan, &outcome);
        if let Some(slowest) = slowest {
            ctx.metrics()
                .record_composite_slowest_call(&plan.name, slowest);
        }
        self.exchange.status = status;
        self.response_started = true;
        self.exchange.bytes_out += self.out.len() as u64;
        let written = write_all_reuse(&mut self.stream, &mut self.out).await;
        if self.out.capacity() > KEEP_OUT {
            self.out = Vec::with_capacity(super::connection::OUT_BUF);
        }
        written.map_err(ProxyError::ClientGone)?;
        if let Some(slowest) = slowest {
            let added = self.exchange.started.elapsed().saturating_sub(slowest);
            ctx.metrics().record_composite_overhead(&plan.name, added);
        }
        Ok(if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    /// Writes the whole answer into `out`; records the composite's metrics and the failed
    /// calls for the access log. Returns the status.
    fn write_composite(
        &mut self,
        snapshot: &Snapshot,
        plan: &Composite,
        outcome: &Outcome,
        head: &RequestHead,
        keep_alive: bool,
        ctx: &WorkerContext,
    ) -> u16 {
        self.out.clear();
        let head_only = head.method_kind == Method::Head;
        let took = self.exchange.upstream;
        let failure = match outcome.failed_required {
            Some(failed) => Err(failed),
            None => assemble(plan, outcome).map_err(|f| (f.call, f.reason)),
        };
        let (status, collisions, missing) = match failure {
            Err((call, reason)) => {
                let body = problem_body(plan, call, reason);
                let status = failure_status(reason);
                self.write_head(
                    snapshot,
                    status,
                    b"application/problem+json",
                    None,
                    body.len(),
                    head,
                    keep_alive,
                );
                if !head_only {
                    self.out.extend_from_slice(&body);
                }
                (status, 0, Vec::new())
            }
            Ok(assembled) => {
                let missing = missing_value(plan, &assembled);
                let incomplete = !assembled.missing.is_empty();
                let cache = cache_control(outcome, incomplete);
                let len = encoded_len(&assembled.root);
                let mut fields: [(&[u8], &[u8]); 2] = [(b"", b""); 2];
                let mut n = 0;
                if let Some(cache) = &cache {
                    fields[n] = (b"Cache-Control", cache.as_bytes());
                    n += 1;
                }
                if incomplete {
                    fields[n] = (MISSING_FIELD, missing.as_bytes());
                    n += 1;
                }
                self.write_head_fields(
                    snapshot,
                    200,
                    b"application/json",
                    &fields[..n],
                    len,
                    head,
                    keep_alive,
                );
                if !head_only {
                    self.out.reserve(len);
                    write(&assembled.root, &mut self.out);
                }
                (200, assembled.collisions, assembled.missing)
            }
        };
        self.record_calls(ctx, plan, outcome, status, took, collisions, &missing);
        status
    }

    /// Writes a generated head with a content type (and no other fields but cache control).
    #[allow(clippy::too_many_arguments)]
    fn write_head(
        &mut self,
        snapshot: &Snapshot,
        status: u16,
        content_type: &[u8],
        cache: Option<&[u8]>,
        len: usize,
        head: &RequestHead,
        keep_alive: bool,
    ) {
        let cache = cache.unwrap_or(b"no-store");
        let fields: [(&[u8], &[u8]); 1] = [(b"Cache-Control", cache)];
        self.write_head_fields(
            snapshot,
            status,
            content_type,
            &fields,
            len,
            head,
            keep_alive,
        );
    }

    /// Writes a generated head: the content type, then `fields` (at most two).
    #[allow(clippy::too_many_arguments)]
    fn write_head_fields(
        &mut self,
        snapshot: &Snapshot,
        status: u16,
        content_type: &[u8],
        fields: &[(&[u8], &[u8])],
        len: usize,
        head: &RequestHead,
        keep_alive: bool,
    ) {
        // Content type first, then at most two fields (cache control, missing calls): on
        // the stack, not a vector per answer.
        let mut all: [(&[u8], &[u8]); 3] =
            [(b"Content-Type", content_type), (b"", b""), (b"", b"")];
        let n = 1 + fields.len().min(2);
        all[1..n].copy_from_slice(&fields[..n - 1]);
        write_generated_head(
            &mut self.out,
            status,
            &all[..n],
            len as u64,
            head.version,
            keep_alive,
            &self.request_id,
            &self.response_headers,
        );
        if self.tls.is_some() {
            self.finish_secure_head(snapshot, 0);
        }
    }

    /// Metrics per composite and per call; the failed calls' names for the access log.
    #[allow(clippy::too_many_arguments)]
    fn record_calls(
        &mut self,
        ctx: &WorkerContext,
        plan: &Composite,
        outcome: &Outcome,
        status: u16,
        took: Option<std::time::Duration>,
        collisions: u32,
        missing: &[(usize, Reason)],
    ) {
        let metrics = ctx.metrics();
        let label = match (status, missing.is_empty()) {
            (200, true) => "complete",
            (200, false) => "partial",
            _ => "failed",
        };
        metrics.record_composite(&plan.name, None, label, took, collisions);
        self.failed_calls.clear();
        for (i, call) in plan.calls.iter().enumerate() {
            let reason = match &outcome.slots[i] {
                Slot::Failed(reason) => Some(*reason),
                Slot::Done(_) => missing.iter().find(|(m, _)| *m == i).map(|(_, r)| *r),
                Slot::Waiting | Slot::Running => None,
            };
            // A required call failed first: calls in flight were dropped (`cancelled`, with
            // their time until then), calls waiting for inputs were never sent (`not_sent`).
            let outcome_label = match (reason, &outcome.slots[i]) {
                (Some(reason), _) => reason.label(),
                (None, Slot::Done(_)) => "ok",
                (None, Slot::Running) => "cancelled",
                (None, _) => "not_sent",
            };
            metrics.record_composite(
                &plan.name,
                Some(&call.name),
                outcome_label,
                outcome.elapsed[i],
                0,
            );
            if reason.is_some() {
                if !self.failed_calls.is_empty() {
                    self.failed_calls.push(b',');
                }
                self.failed_calls.extend_from_slice(call.name.as_bytes());
            }
        }
    }

    /// The fields every call of this request carries: forwarding, request id, identity.
    fn call_fields(&self, snapshot: &Snapshot, head: &RequestHead, _policies: &Chain) -> Vec<u8> {
        let data = self.input.data();
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"X-Forwarded-For: ");
        let mut first = true;
        for h in self
            .headers
            .iter()
            .filter(|h| h.name.of(data).eq_ignore_ascii_case(b"x-forwarded-for"))
        {
            if !first {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(h.value.of(data));
            first = false;
        }
        if !first {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(self.peer_ip.as_bytes());
        out.extend_from_slice(b"\r\nX-Forwarded-Proto: ");
        out.extend_from_slice(self.proto().as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(host) = head.host {
            out.extend_from_slice(b"X-Forwarded-Host: ");
            out.extend_from_slice(host.of(data));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Via: 1.1 ringgate\r\n");
        if !self.request_id.is_empty() {
            out.extend_from_slice(b"X-Request-Id: ");
            out.extend_from_slice(&self.request_id);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(tls) = &self.tls {
            let subject = tls
                .listener(snapshot)
                .and_then(|l| l.client_subject_header.as_deref())
                .zip(tls.client_subject.as_deref());
            if let Some((name, subject)) = subject {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(subject.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    /// The client's body for `body = "client"` calls: read whole (either framing) by the
    /// request-body mechanism, within the route's limit.
    async fn client_body(
        &mut self,
        snapshot: &Snapshot,
        head: &RequestHead,
    ) -> Result<Bytes, ProxyError> {
        let limit = self.body_rules.max_bytes;
        match self.buffer_request_body(snapshot, head, limit).await? {
            Buffered::Whole => {
                self.exchange.bytes_in += self.body.raw_len() as u64;
                Ok(Bytes::copy_from_slice(self.body.bytes()))
            }
            Buffered::TooLarge => Err(ProxyError::BodyTooLarge),
        }
    }
}

/// `proxy::call` as the composite executor's [`Caller`], with this request's fields.
struct GatewayCaller<'a> {
    ctx: &'a WorkerContext,
    snapshot: &'a Snapshot,
    /// Fields every call carries (see [`ClientConn::call_fields`]).
    base: &'a [u8],
    /// The client's head, for forwarded headers.
    data: &'a [u8],
    headers: &'a [HeaderSpan],
    trace: Option<super::trace::TraceContext>,
    forward_tracestate: bool,
    policy_strip: &'a [Box<str>],
    hidden: Option<&'a str>,
    policy_fields: &'a [u8],
}

impl GatewayCaller<'_> {
    /// Every field of one call: the base, the identity fields, its forwarded client headers,
    /// its own `traceparent` (a child span of the request's), and the body's type.
    fn fields(&self, request: &Request<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.base.len() + self.policy_fields.len() + 160);
        out.extend_from_slice(self.base);
        out.extend_from_slice(self.policy_fields);
        for h in self.headers {
            let name = h.name.of(self.data);
            let listed = request
                .call
                .forward_headers
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f.as_bytes()));
            let owned = GATEWAY_FIELDS
                .iter()
                .any(|g| name.eq_ignore_ascii_case(g.as_bytes()))
                || self
                    .policy_strip
                    .iter()
                    .any(|s| name.eq_ignore_ascii_case(s.as_bytes()))
                || self
                    .hidden
                    .is_some_and(|c| name.eq_ignore_ascii_case(c.as_bytes()));
            if listed && !owned {
                out.extend_from_slice(name);
                out.extend_from_slice(b": ");
                out.extend_from_slice(h.value.of(self.data));
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Some(trace) = &self.trace {
            let (span, _) = self.ctx.trace_ids().next();
            let mut parent = trace.traceparent();
            parent[36..52].copy_from_slice(&span);
            out.extend_from_slice(b"traceparent: ");
            out.extend_from_slice(&parent);
            out.extend_from_slice(b"\r\n");
            if self.forward_tracestate {
                let states: Vec<&[u8]> = self
                    .headers
                    .iter()
                    .filter(|h| h.name.of(self.data).eq_ignore_ascii_case(b"tracestate"))
                    .map(|h| h.value.of(self.data))
                    .filter(|v| !v.is_empty())
                    .collect();
                if !states.is_empty() {
                    out.extend_from_slice(b"tracestate: ");
                    out.extend_from_slice(&states.join(&b", "[..]));
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        if !request.body.is_empty() {
            let content_type: &[u8] = match &request.call.body {
                crate::compose::plan::CallBody::Client => {
                    find_header(self.data, self.headers, "content-type")
                        .unwrap_or(b"application/octet-stream")
                }
                _ => b"application/json",
            };
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(content_type);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Accept: application/json\r\n");
        out
    }
}

impl Caller for GatewayCaller<'_> {
    async fn call(&self, request: Request<'_>) -> Result<Reply, Reason> {
        let fields = self.fields(&request);
        let cached = match request.call.cache {
            Some(id) if request.method == "GET" => {
                let host = &self.snapshot.upstream(request.group).name;
                CallKey::new(self.ctx, self.snapshot, id, host, request.target, &fields)
            }
            _ => None,
        };
        if let Some(key) = &cached {
            if let Some(reply) = key.lookup(self.ctx, self.snapshot, &fields) {
                return Ok(reply);
            }
        }
        let request_time = unix_now();
        let outgoing = Call {
            group: request.group,
            method: request.method,
            path_and_query: request.target,
            host: None,
            headers: &fields,
            body: request.body,
            idempotent: request.idempotent,
            deadline: Some(request.deadline),
            max_body: request.max_body,
            hedge_after: request.hedge_after,
            hash: None,
        };
        let answered = call(self.ctx, self.snapshot, &outgoing).await;
        if let (Some(key), Ok(response)) = (&cached, &answered) {
            key.store(self.ctx, self.snapshot, &fields, response, request_time);
        }
        match answered {
            Ok(response) => Ok(Reply {
                status: response.status,
                cache_control: response
                    .header("cache-control")
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(Box::from),
                body: response.body,
            }),
            Err(e) => Err(match e {
                CallError::Unavailable(_) => Reason::Unavailable,
                CallError::Connect => Reason::Connect,
                CallError::Timeout => Reason::Timeout,
                CallError::Upstream => Reason::Upstream,
                CallError::TooLarge => Reason::TooLarge,
            }),
        }
    }
}

/// The duration of the slowest required call, when every required call answered.
fn slowest_required(plan: &Composite, outcome: &Outcome) -> Option<std::time::Duration> {
    let mut slowest = std::time::Duration::ZERO;
    for (i, call) in plan.calls.iter().enumerate() {
        if !call.required {
            continue;
        }
        match (&outcome.slots[i], outcome.elapsed[i]) {
            (Slot::Done(_), Some(took)) => slowest = slowest.max(took),
            _ => return None,
        }
    }
    Some(slowest)
}
