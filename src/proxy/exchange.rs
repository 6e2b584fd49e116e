//! What one exchange did, and where it is recorded: the open-connection count (drain and
//! metrics), the per-request record, the request fields the access log needs, and the
//! recording itself into the worker's metrics and access log. No locks, no allocation once
//! warm: everything here is per worker and reused.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use super::connection::{find_header, ClientConn};
use super::context::WorkerContext;
use super::trace::TraceContext;
use crate::access_log::Entry;
use crate::config::{Snapshot, UpstreamId};
use crate::http::{HeaderSpan, RequestHead, Version};
use crate::metrics::RequestRecord;

/// Counts a client connection as open (for the drain and the metrics) from accept to close,
/// across request tasks and the idle park.
/// It also gives the connection's admission (see `proxy::admission`) back when it closes.
///
/// It carries the worker context and the client's address for the idle park, so a parked
/// connection holds each once (see `proxy::idle`).
pub(super) struct Open {
    ctx: Rc<WorkerContext>,
    peer: SocketAddr,
}

impl Open {
    /// Counts a connection from `peer` that [`Admission::admit`](super::admission::Admission::admit)
    /// let in.
    pub(super) fn new(ctx: &Rc<WorkerContext>, peer: SocketAddr) -> Self {
        ctx.metrics().connection_opened();
        ctx.drain().connection_opened();
        Self {
            ctx: Rc::clone(ctx),
            peer,
        }
    }

    /// The worker the connection belongs to.
    pub(super) fn ctx(&self) -> &Rc<WorkerContext> {
        &self.ctx
    }

    /// The client's address.
    pub(super) fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.ctx.metrics().connection_closed();
        self.ctx.admission().release(self.peer.ip());
        self.ctx.drain().connection_closed();
    }
}

/// What one exchange did, for the metrics and the access log.
#[derive(Debug, Clone, Copy)]
pub(super) struct Exchange {
    pub(super) started: Instant,
    pub(super) status: u16,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) upstream: Option<Duration>,
    /// The request's W3C trace context; `None` until a request head was parsed.
    pub(super) trace: Option<TraceContext>,
    /// The upstream target the request went to, if any.
    pub(super) target: Option<SocketAddr>,
    /// The upstream group the route chose for the request, if it was proxied.
    pub(super) group: Option<UpstreamId>,
}

impl Exchange {
    pub(super) fn start(head_len: usize) -> Self {
        Self {
            started: Instant::now(),
            status: 0,
            bytes_in: head_len as u64,
            bytes_out: 0,
            upstream: None,
            trace: None,
            target: None,
            group: None,
        }
    }
}

/// A copy of the request fields the access log needs, taken while the head is still in the
/// input buffer. Reused across requests: it allocates only while it grows.
#[derive(Debug, Default)]
pub(super) struct LogFields {
    /// Method, target, referer and user agent, back to back.
    bytes: Vec<u8>,
    /// End offsets of the four fields in `bytes`.
    ends: [usize; 4],
    protocol: &'static [u8],
}

impl LogFields {
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.ends = [0; 4];
        self.protocol = b"";
    }

    pub(super) fn capture(&mut self, data: &[u8], head: &RequestHead, headers: &[HeaderSpan]) {
        self.clear();
        let fields = [
            head.method.of(data),
            head.target.of(data),
            find_header(data, headers, "referer").unwrap_or_default(),
            find_header(data, headers, "user-agent").unwrap_or_default(),
        ];
        for (i, field) in fields.iter().enumerate() {
            self.bytes.extend_from_slice(field);
            self.ends[i] = self.bytes.len();
        }
        self.protocol = match head.version {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        };
    }

    /// Overrides the protocol the head's version gave (an HTTP/2 stream's head is given to
    /// the codec as HTTP/1.1).
    pub(super) fn set_protocol(&mut self, protocol: &'static [u8]) {
        self.protocol = protocol;
    }

    /// Field `i` (0 method, 1 target, 2 referer, 3 user agent).
    pub(super) fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.bytes.get(start..self.ends[i]).unwrap_or_default()
    }
}

impl ClientConn {
    /// Records the finished exchange in the worker's metrics and access log (nothing when no
    /// answer went out).
    pub(super) fn record(&self, ctx: &WorkerContext, snapshot: &Snapshot) {
        if self.exchange.status == 0 {
            return;
        }
        let route = self
            .params
            .route_index()
            .and_then(|i| snapshot.router.get(i));
        let upstream = self
            .exchange
            .group
            .map(|id| snapshot.upstream(id).name.as_str());
        let route_name = route.map_or("", |r| r.name.as_str());
        let duration = self.exchange.started.elapsed();
        let protocol = if self.http2 {
            crate::metrics::Protocol::H2
        } else {
            crate::metrics::Protocol::Http1
        };
        ctx.metrics().record_request(&RequestRecord {
            route: route_name,
            upstream,
            status: self.exchange.status,
            duration,
            upstream_duration: self.exchange.upstream,
            bytes_in: self.exchange.bytes_in,
            bytes_out: self.exchange.bytes_out,
            protocol,
            cache: self.cache.outcome.result(),
        });
        if let Some(log) = ctx.access_log() {
            let fields = &self.log_fields;
            log.log(&Entry {
                time: SystemTime::now(),
                request_id: &self.request_id,
                client: self.peer,
                method: fields.field(0),
                path: fields.field(1),
                protocol: fields.protocol,
                status: self.exchange.status,
                bytes_in: self.exchange.bytes_in,
                bytes_out: self.exchange.bytes_out,
                duration,
                upstream_duration: self.exchange.upstream,
                route: route_name,
                upstream_addr: self.exchange.target,
                upstream: upstream.unwrap_or_default(),
                worker: log.worker(),
                trace_id: self.exchange.trace.as_ref().map(TraceContext::trace_id),
                referer: fields.field(2),
                user_agent: fields.field(3),
                consumer: self.identity.consumer_name().unwrap_or_default().as_bytes(),
                failed_calls: &self.failed_calls,
                cache: self.cache.outcome.log_word(),
            });
        }
    }
}
