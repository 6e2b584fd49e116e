//! One client connection: read a request head, route it, answer it, and go on to the next
//! request while the connection is kept alive. Requests on a connection are served one at a
//! time, so pipelined requests get their responses in order.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;

use super::body::MinRate;
use super::context::WorkerContext;
use super::error::ProxyError;
use super::exchange::{Exchange, LogFields, Open};
use super::request_body::{Buffered, RequestBody};
use super::request_id;
use super::secure::TlsInfo;
use super::stages::ResponseStages;
use super::trace::{self, TraceContext};
use crate::config::{ErrorFormat, ListenKey, Route, RouteAction, Snapshot};
use crate::http::ip_text::IpText;
use crate::http::{parse_request, underscore, HeadLimits, HeaderSpan, RequestHead};
use crate::io_buf::ReadBuf;
use crate::policy::api_key::remove_query_param;
use crate::policy::{Checked, Denial, Identity, PathParams, RequestView};
use crate::router::normalize::{normalize_path, split_target};
use crate::router::{strip_prefix, MatchRequest, Params};
use crate::server::fairness::Budget;
use crate::tls::ClientStream;

/// Initial input buffer of a client connection; it grows for large heads and bodies.
pub(super) const CLIENT_BUF: usize = 4 * 1024;
/// Initial capacities of the other per-connection buffers.
pub(super) const OUT_BUF: usize = 1024;
const HEADERS: usize = 32;
const PATH: usize = 128;
const HOST: usize = 64;
const REQUEST_ID: usize = 32;
const RESPONSE_HEADERS: usize = 256;
/// Largest body a `validate` policy reads whole to check it.
pub(super) const VALIDATED_BODY_MAX: u64 = 1024 * 1024;
/// Largest input buffer while relaying a request body.
pub(super) const BODY_BUF: usize = 64 * 1024;

/// What happens to the connection after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection.
    Close,
    /// No request arrived within the idle grace: park the connection without its buffers.
    Idle,
    /// The upstream switched protocols: the connection becomes a tunnel (`proxy::upgrade`).
    Upgraded,
}

/// Serves one client connection accepted on `listener` until it closes; on a TLS listener
/// the handshake comes first. The connection must have been admitted
/// (`WorkerContext::admission`); its admission is released when it closes.
pub async fn serve_connection(
    ctx: Rc<WorkerContext>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: ListenKey,
) {
    let open = Open::new(&ctx, peer);
    let _ = stream.set_nodelay(true);
    let conn = if listener.tls {
        // The handshake's and HTTP/2's futures are boxed: laid out inline they would make
        // every connection's task, plain ones included, as large as the largest of them.
        let Some((stream, tls)) =
            Box::pin(super::secure::accept(&ctx, stream, peer, listener.addr)).await
        else {
            return;
        };
        match stream {
            ClientStream::Tls(session) if session.session().alpn_protocol() == Some(b"h2") => {
                let tls = Some(Box::new(tls));
                return Box::pin(super::h2::serve_tls(ctx, session, peer, tls, open)).await;
            }
            stream => ClientConn::new(stream, peer, 0, Some(Box::new(tls))),
        }
    } else {
        let mut conn = ClientConn::new(ClientStream::Plain(stream), peer, 0, None);
        if ctx.snapshot().server.h2c {
            match conn.sniff_h2c(&ctx).await {
                Sniffed::Http1 => {}
                Sniffed::Closed => return,
                Sniffed::H2c => {
                    let ClientConn { stream, input, .. } = conn;
                    if let ClientStream::Plain(tcp) = stream {
                        Box::pin(super::h2::serve_h2c(ctx, tcp, input.data(), peer, open)).await;
                    }
                    return;
                }
            }
        }
        conn
    };
    serve(ctx, conn, open).await;
}

/// What the first bytes of a connection on an h2c listener are.
enum Sniffed {
    /// An HTTP/1.x request (its bytes stay in the input buffer).
    Http1,
    /// The HTTP/2 connection preface.
    H2c,
    /// Closed, or nothing within `head_read`.
    Closed,
}

/// Serves requests on `conn` until it closes, or parks it when it goes idle (see
/// `proxy::idle`): this task, with its buffers, lives only while requests keep coming.
// Not an `async fn` on purpose: its arguments would be moved into locals of the future and
// held twice (`ClientConn` alone is 1.6 KB); an `async` block uses its captures in place.
#[allow(clippy::manual_async_fn)]
pub(super) fn serve(
    ctx: Rc<WorkerContext>,
    mut conn: ClientConn,
    open: Open,
) -> impl Future<Output = ()> {
    async move {
        // Past the grace period the connection is dropped wherever it is; dropping the
        // future closes its client and upstream sockets. The futures are built inside
        // `select!` (a future bound to a local and then moved into the macro is laid out
        // twice in this task).
        let next = monoio::select! {
            _ = ctx.drain().aborted() => Next::Close,
            next = async {
                // Pipelined requests answered without waiting (legacy driver) must not keep
                // the worker to this connection.
                let mut budget = Budget::new();
                loop {
                    match budget.run(pin!(conn.serve_one(&ctx))).await {
                        Next::KeepAlive => {}
                        next => return next,
                    }
                }
            } => next,
        };
        match next {
            Next::Idle => {
                let ClientConn {
                    stream,
                    served,
                    tls,
                    ..
                } = conn;
                monoio::spawn(super::idle::park(stream, served, tls, open));
            }
            Next::Upgraded => {
                let ClientConn {
                    stream,
                    input,
                    upgrading,
                    ..
                } = conn;
                super::upgrade::spawn_tunnel(ctx, stream, input, upgrading, open);
            }
            _ if conn.linger => conn.linger_close().await,
            _ => {}
        }
    }
}

/// A client connection and the buffers it reuses for every request.
pub(super) struct ClientConn {
    pub(super) stream: ClientStream,
    pub(super) peer: SocketAddr,
    /// The peer's IP as text, for `X-Forwarded-For` (formatted once, not per request).
    pub(super) peer_ip: IpText,
    /// The TLS session's facts, on a TLS listener (boxed: plain connections, and parked
    /// ones, carry one pointer).
    pub(super) tls: Option<Box<TlsInfo>>,
    pub(super) input: ReadBuf,
    pub(super) out: Vec<u8>,
    pub(super) scratch: Vec<u8>,
    pub(super) headers: Vec<HeaderSpan>,
    /// Normalized request path (what routes match).
    pub(super) path: String,
    /// Lower-case host without port (what routes match).
    pub(super) host: String,
    /// Path and query sent upstream.
    pub(super) upstream_path: String,
    pub(super) request_id: Vec<u8>,
    pub(super) request_id_from_client: bool,
    /// Whether the client's `tracestate` goes upstream with its continued trace.
    pub(super) forward_tracestate: bool,
    pub(super) params: Params,
    /// Bytes of the current response were written: an error can no longer be answered.
    pub(super) response_started: bool,
    served: u64,
    /// The connection closes after an error answer while the client may still be sending.
    pub(super) linger: bool,
    /// The current exchange, for the metrics.
    pub(super) exchange: Exchange,
    /// The request's fields for the access log (filled only when one is configured).
    pub(super) log_fields: LogFields,
    /// The limits the current request's body is held to (set once its route is known).
    pub(super) body_rules: BodyRules,
    /// Header lines the gateway adds to the current response (each ending in CRLF), e.g.
    /// rate-limit fields; cleared for every request.
    pub(super) response_headers: Vec<u8>,
    /// What the route's policies established (client address, consumer, forwarded claims).
    pub(super) identity: Identity,
    /// The body format of the gateway's own answers to the current request: the server's
    /// `errors`, or its route's once it is known.
    pub(super) errors: ErrorFormat,
    /// The request arrived on an HTTP/2 stream (`proxy::h2`); the connection serves only it.
    pub(super) http2: bool,
    /// The client takes trailers (HTTP/2, or `TE: trailers`); set for h2 upstream groups.
    pub(super) takes_trailers: bool,
    /// The request is gRPC (an HTTP/2 stream with `content-type: application/grpc*`): the
    /// gateway's own errors are answered with `grpc-status`.
    pub(super) grpc: bool,
    /// The response stages of the current request (see `proxy::stages`).
    pub(super) stages: ResponseStages,
    /// The current request's body, when a stage read it whole (`request_body.rs`).
    pub(super) body: RequestBody,
    /// A composite route's failed calls, comma-separated, for the access log.
    pub(super) failed_calls: Vec<u8>,
    /// The current request's accepted offer to switch protocols (`proxy::upgrade`).
    pub(super) upgrading: Option<Box<super::upgrade::Upgrading>>,
    /// The current request's part in its route's cache (`proxy::cached`).
    pub(super) cache: super::cached::CacheRequest,
    /// The current exchange's full-duplex request body relay (`proxy::duplex`), if any.
    pub(super) duplex: Option<std::rc::Rc<super::duplex::Duplex>>,
    /// The current request is gRPC-Web to an h2/h2c group (`proxy::grpc_web`).
    pub(super) grpc_web: Option<super::grpc_web::GrpcWeb>,
    /// The upstream head edits of the route's `transform` policy (`proxy::transform`).
    pub(super) transform: super::transform::RequestEdits,
}

/// The limits a request body is held to: its route's size cap and the server's minimum rate.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyRules {
    /// Largest body, in bytes (413 beyond).
    pub(super) max_bytes: u64,
    /// The slowest the body may arrive (408 below).
    pub(super) min_rate: Option<MinRate>,
}

impl BodyRules {
    /// The rules for a request on `route` whose head arrived at `started`.
    fn for_route(snapshot: &Snapshot, route: &Route, started: Instant) -> Self {
        let limits = snapshot.server.limits;
        BodyRules {
            max_bytes: route.max_body_bytes.unwrap_or(limits.max_body_bytes),
            min_rate: limits.min_body_rate.map(|bytes_per_sec| MinRate {
                bytes_per_sec,
                started,
            }),
        }
    }
}

/// The buffers a [`ClientConn`] reuses for every request. A worker keeps those of finished
/// HTTP/2 streams for the next ones (`WorkerContext::stream_buffers`): a stream serves one
/// request, and allocating them per stream was a good part of its cost.
#[derive(Debug)]
pub(super) struct ConnBuffers {
    input: ReadBuf,
    out: Vec<u8>,
    headers: Vec<HeaderSpan>,
    path: String,
    host: String,
    upstream_path: String,
    request_id: Vec<u8>,
    response_headers: Vec<u8>,
}

impl crate::spares::Spare for ConnBuffers {
    fn fresh() -> Self {
        Self {
            input: ReadBuf::with_capacity(CLIENT_BUF),
            out: Vec::with_capacity(OUT_BUF),
            headers: Vec::with_capacity(HEADERS),
            path: String::with_capacity(PATH),
            host: String::with_capacity(HOST),
            upstream_path: String::with_capacity(PATH),
            request_id: Vec::with_capacity(REQUEST_ID),
            response_headers: Vec::with_capacity(RESPONSE_HEADERS),
        }
    }

    /// The buffers emptied for the next stream; `None` when the input buffer is not at its
    /// working size (a large body grew it, or a timed-out read left it with the driver), so
    /// a spare never holds more than a fresh one.
    fn reusable(mut self) -> Option<Self> {
        self.input.consume(self.input.len());
        if self.input.capacity() != CLIENT_BUF || self.out.capacity() > OUT_BUF * 4 {
            return None;
        }
        self.out.clear();
        self.headers.clear();
        self.path.clear();
        self.host.clear();
        self.upstream_path.clear();
        self.request_id.clear();
        self.response_headers.clear();
        Some(self)
    }
}

impl ConnBuffers {
    /// The input buffer (a stream's request head is written into it).
    pub(super) fn input(&mut self) -> &mut ReadBuf {
        &mut self.input
    }
}

impl ClientConn {
    /// A connection with fresh buffers; `served` counts the requests it already served
    /// (0 for a new connection, more for one resumed from the idle park).
    pub(super) fn new(
        stream: ClientStream,
        peer: SocketAddr,
        served: u64,
        tls: Option<Box<TlsInfo>>,
    ) -> Self {
        Self::with_buffers(
            stream,
            peer,
            IpText::new(peer.ip()),
            served,
            tls,
            <ConnBuffers as crate::spares::Spare>::fresh(),
        )
    }

    /// A connection on `buffers` (an HTTP/2 stream's, reused from an earlier stream);
    /// `peer_ip` is `peer`'s IP as text.
    pub(super) fn with_buffers(
        stream: ClientStream,
        peer: SocketAddr,
        peer_ip: IpText,
        served: u64,
        tls: Option<Box<TlsInfo>>,
        buffers: ConnBuffers,
    ) -> Self {
        let ConnBuffers {
            input,
            out,
            headers,
            path,
            host,
            upstream_path,
            request_id,
            response_headers,
        } = buffers;
        Self {
            stream,
            peer,
            peer_ip,
            tls,
            input,
            out,
            scratch: Vec::new(),
            headers,
            path,
            host,
            upstream_path,
            request_id,
            request_id_from_client: false,
            forward_tracestate: false,
            params: Params::default(),
            response_started: false,
            served,
            linger: false,
            exchange: Exchange::start(0),
            log_fields: LogFields::default(),
            body_rules: BodyRules {
                max_bytes: 0,
                min_rate: None,
            },
            response_headers,
            identity: Identity::default(),
            errors: ErrorFormat::Text,
            http2: false,
            takes_trailers: false,
            grpc: false,
            stages: ResponseStages::default(),
            body: RequestBody::default(),
            failed_calls: Vec::new(),
            upgrading: None,
            cache: super::cached::CacheRequest::default(),
            duplex: None,
            grpc_web: None,
            transform: super::transform::RequestEdits::default(),
        }
    }

    /// The connection's buffers, for another HTTP/2 stream (see [`ConnBuffers::reusable`]).
    pub(super) fn into_buffers(self) -> ConnBuffers {
        ConnBuffers {
            input: self.input,
            out: self.out,
            headers: self.headers,
            path: self.path,
            host: self.host,
            upstream_path: self.upstream_path,
            request_id: self.request_id,
            response_headers: self.response_headers,
        }
    }

    /// Reads the first bytes of a connection on a listener with `server.h2c` until they
    /// either are the HTTP/2 preface or cannot be (an HTTP/1.x request, left buffered).
    async fn sniff_h2c(&mut self, ctx: &WorkerContext) -> Sniffed {
        let snapshot = ctx.snapshot();
        let timeout = snapshot.server.timeouts.head_read;
        let max = snapshot.server.limits.max_head_bytes;
        let deadline = Instant::now() + timeout;
        loop {
            let data = self.input.data();
            let n = data.len().min(crate::http2::PREFACE.len());
            if data[..n] != crate::http2::PREFACE[..n] {
                return Sniffed::Http1;
            }
            if n == crate::http2::PREFACE.len() {
                return Sniffed::H2c;
            }
            let read = self.input.fill(&mut self.stream, max);
            match ctx.timer().timeout_at(deadline, read).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Sniffed::Closed,
            }
        }
    }

    /// Serves one request: the next on an HTTP/1.1 connection, or an HTTP/2 stream's only
    /// one (its head already in `input`).
    pub(super) async fn serve_one(&mut self, ctx: &WorkerContext) -> Next {
        let snapshot = ctx.snapshot();
        self.response_started = false;
        self.params.clear();
        self.response_headers.clear();
        self.errors = snapshot.server.errors;
        self.stages.clear();
        self.cache.clear();
        self.transform.clear();
        self.body.reset();
        self.failed_calls.clear();
        self.upgrading = None;
        self.grpc_web = None;
        let head = match self.read_head(ctx, &snapshot).await {
            Ok(Arrival::Head(head)) => head,
            Ok(Arrival::Closed) => return Next::Close,
            Ok(Arrival::Idle) => return Next::Idle,
            Err(e) => {
                self.request_id.clear();
                self.log_fields.clear();
                self.identity.clear();
                self.exchange = Exchange::start(self.input.len());
                self.reply_error(ctx, &e, None).await;
                self.record(ctx, &snapshot);
                return Next::Close;
            }
        };
        // The request is served by the configuration in force when its head arrived, not the
        // one in force when the connection started waiting for it (a reload may lie between).
        let snapshot = ctx.snapshot();
        self.errors = snapshot.server.errors;
        self.served += 1;
        self.exchange = Exchange::start(head.head_len);
        self.assign_request_id(ctx, &head);
        self.assign_trace(ctx);
        if ctx.access_log().is_some() {
            self.log_fields
                .capture(self.input.data(), &head, &self.headers);
            if self.http2 {
                self.log_fields.set_protocol(b"HTTP/2.0");
            }
        }
        let next = match self.handle(ctx, &snapshot, &head).await {
            Ok(next) => next,
            Err(e) => self.reply_error(ctx, &e, Some(&head)).await,
        };
        self.record(ctx, &snapshot);
        self.input
            .shrink_to(CLIENT_BUF.max(snapshot.server.limits.max_head_bytes));
        if ctx.drain().is_draining() && next != Next::Upgraded {
            return Next::Close;
        }
        next
    }

    /// Reads one request head.
    async fn read_head(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
    ) -> Result<Arrival, ProxyError> {
        let limits = head_limits(snapshot);
        let timeouts = snapshot.server.timeouts;
        if self.input.is_empty() {
            match self.wait_for_request(ctx, snapshot).await? {
                Wait::Data => {}
                Wait::Closed => return Ok(Arrival::Closed),
                Wait::Idle => return Ok(Arrival::Idle),
            }
        }
        // Read from the clock only when the first bytes are not the whole head (the usual
        // case is one read): head_read from then, a parse's time after the bytes came.
        let mut deadline = None;
        loop {
            if let Some(head) = parse_request(self.input.data(), &limits, &mut self.headers)? {
                let underscores = snapshot.server.underscores_in_headers;
                underscore::apply(underscores, self.input.data(), &mut self.headers)?;
                return Ok(Arrival::Head(head));
            }
            let at = *deadline.get_or_insert_with(|| Instant::now() + timeouts.head_read);
            let read = self.input.fill(&mut self.stream, limits.max_head_bytes);
            match ctx.timer().timeout_at(at, read).await {
                Err(_) => return Err(ProxyError::ClientTimeout),
                Ok(Err(e)) => return Err(ProxyError::ClientGone(e)),
                // The client closed mid-head: nobody is left to answer.
                Ok(Ok(0)) => return Ok(Arrival::Closed),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Waits for the first bytes of the next request.
    async fn wait_for_request(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
    ) -> Result<Wait, ProxyError> {
        let timeouts = snapshot.server.timeouts;
        let max = snapshot.server.limits.max_head_bytes;
        let drain = Rc::clone(ctx.drain());
        if drain.is_draining() {
            return Ok(Wait::Closed);
        }
        // A fresh connection owes us a request head within head_read (slowloris guard). A
        // kept-alive one waits here, buffers ready, for the idle grace; then it is parked.
        let (wait, on_timeout) = if self.served == 0 {
            (timeouts.head_read, Wait::Closed)
        } else if timeouts.keepalive_idle > super::idle::GRACE {
            (super::idle::GRACE, Wait::Idle)
        } else {
            (timeouts.keepalive_idle, Wait::Closed)
        };
        monoio::select! {
            _ = drain.started() => Ok(Wait::Closed),
            result = ctx.timer().timeout(wait, self.input.fill(&mut self.stream, max)) => match result {
                Err(_) => Ok(on_timeout),
                Ok(Err(e)) => Err(ProxyError::ClientGone(e)),
                Ok(Ok(0)) => Ok(Wait::Closed),
                Ok(Ok(_)) => Ok(Wait::Data),
            }
        }
    }

    fn assign_request_id(&mut self, ctx: &WorkerContext, head: &RequestHead) {
        let data = self.input.data();
        let client_id = find_header(data, &self.headers, "x-request-id")
            .filter(|id| request_id::is_acceptable(id));
        match client_id {
            Some(id) => {
                self.request_id.clear();
                self.request_id.extend_from_slice(id);
                self.request_id_from_client = true;
            }
            None => {
                ctx.request_ids().generate(&mut self.request_id);
                self.request_id_from_client = false;
            }
        }
        let _ = head;
    }

    /// Continues the client's W3C trace or starts one (see `proxy::trace`), and decides
    /// whether its `tracestate` is passed on.
    fn assign_trace(&mut self, ctx: &WorkerContext) {
        let data = self.input.data();
        let mut fields = 0;
        let mut first = None;
        for h in &self.headers {
            if h.name.of(data).eq_ignore_ascii_case(b"traceparent") {
                fields += 1;
                first = first.or(Some(h.value.of(data)));
            }
        }
        let context = TraceContext::for_request(first, fields, ctx.trace_ids());
        self.forward_tracestate =
            context.from_client() && trace::tracestate_acceptable(data, &self.headers);
        self.exchange.trace = Some(context);
    }

    async fn handle(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        head: &RequestHead,
    ) -> Result<Next, ProxyError> {
        // Nothing a previous request on this connection established may carry over.
        self.identity.clear();
        let route = self.route(snapshot, head)?;
        self.cache.route_cached =
            matches!(&route.action, RouteAction::Proxy(a) if a.cache.is_some());
        self.errors = route.errors.unwrap_or(snapshot.server.errors);
        self.body_rules = BodyRules::for_route(snapshot, route, self.exchange.started);
        // A route served over HTTPS only redirects plain requests before checking anything:
        // credentials are not examined on a connection the route does not accept.
        if let (Some(port), None) = (route.redirect_https, &self.tls) {
            return self.redirect_https(ctx, port, head).await;
        }
        if let Some(cors) = route.policies.cors() {
            if let Some(next) = self.apply_cors(ctx, snapshot, route, cors, head).await {
                return Ok(next);
            }
        }
        if !route.policies.is_empty() {
            if let Err(denial) = self.check_policies(ctx, snapshot, route, head).await {
                return Ok(self.reply_denied(ctx, &denial, head).await);
            }
            if let Some(compress) = route.policies.compress() {
                let applied = self.apply_compress(ctx, snapshot, route, compress, head);
                if let Some(next) = applied.await? {
                    return Ok(next);
                }
            }
            if let Some(transform) = route.policies.transform() {
                if let Some(values) = self.apply_transform(snapshot, route, transform, head) {
                    // Boxed: only a route transforming request bodies pays for this step's
                    // future (inline, it adds ~4.5 KB to `handle`'s poll frame in debug
                    // builds). Not a stack fix: a proxied request's deepest worker stack is
                    // ~0.6 MiB in debug builds either way (2 MiB threads), and an overflow
                    // aborts the process, it does not hang.
                    let applied = Box::pin(
                        self.transform_request_json(ctx, snapshot, transform, head, &values),
                    );
                    if let Some(next) = applied.await? {
                        return Ok(next);
                    }
                }
            }
            if route.policies.checks_body() {
                if let Err(denial) = self.check_body(ctx, snapshot, route, head).await? {
                    return Ok(self.reply_denied(ctx, &denial, head).await);
                }
            }
            self.hide_query_credential(route);
        }
        match &route.action {
            RouteAction::Respond(response) => self.respond(ctx, response, head).await,
            RouteAction::Proxy(action) => {
                self.forward(ctx, snapshot, action, &route.policies, head)
                    .await
            }
            RouteAction::Compose(action) => {
                self.compose(ctx, snapshot, action, &route.policies, head)
                    .await
            }
        }
    }

    /// Runs the route's policy chain on the parsed head, in place (see `crate::policy`). A
    /// password verification suspends it: this task awaits the verifier pool's answer while
    /// the worker serves its other connections.
    async fn check_policies(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        route: &Route,
        head: &RequestHead,
    ) -> Result<(), Denial> {
        let data = self.input.data();
        let query = split_target(head.target.of(data))
            .ok()
            .and_then(|t| t.query);
        let view = RequestView {
            data,
            headers: &self.headers,
            query,
            peer: self.peer.ip(),
            trusted_proxies: &snapshot.server.trusted_proxies,
            route: &route.name,
            path_params: Some(PathParams {
                names: snapshot.router.param_names(&self.params),
                params: &self.params,
                path: &self.path,
            }),
        };
        let chain = &route.policies;
        let (state, metrics) = (ctx.policies(), ctx.metrics());
        let fields = &mut self.response_headers;
        let mut checked = chain.check(&view, &mut self.identity, state, metrics, fields)?;
        let calls = super::introspection::WorkerCalls { ctx, snapshot };
        while let Checked::Verifying(suspended) = checked {
            let answered = suspended.answer(state, &calls).await;
            checked = chain.resume(answered, &view, &mut self.identity, state, metrics, fields)?;
        }
        Ok(())
    }

    /// Reads the request body whole through `request_body` (the one buffering mechanism;
    /// `Content-Length` or chunked, bounded by the route's body limit and
    /// [`VALIDATED_BODY_MAX`]: 413 beyond) and runs the route's body rules on it (`validate`).
    /// A body that passes is then forwarded from there, with its exact `Content-Length`.
    async fn check_body(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        route: &Route,
        head: &RequestHead,
    ) -> Result<Result<(), Denial>, ProxyError> {
        // A body the `compress` step decoded is checked as decoded.
        let coding = find_header(self.input.data(), &self.headers, "content-encoding")
            .filter(|_| !self.body.decoded());
        if let Err(denial) = route.policies.check_body_coding(coding, ctx.metrics()) {
            return Ok(Err(denial));
        }
        let limit = self.body_rules.max_bytes.min(VALIDATED_BODY_MAX);
        if self.buffer_request_body(snapshot, head, limit).await? == Buffered::TooLarge {
            return Err(ProxyError::BodyTooLarge);
        }
        let content_type = find_header(self.input.data(), &self.headers, "content-type");
        Ok(route
            .policies
            .check_body(content_type, self.body.bytes(), ctx.metrics()))
    }

    /// Drops the query parameter that carried the accepted API key from the upstream path,
    /// when its policy hides credentials (in place, no allocation).
    fn hide_query_credential(&mut self, route: &Route) {
        let hidden = route.policies.hidden_credential(&self.identity);
        if let (Some(name), RouteAction::Proxy(_)) = (hidden.and_then(|c| c.query), &route.action) {
            remove_query_param(&mut self.upstream_path, name);
        }
    }

    /// Normalizes the target, matches a route, and prepares the upstream path.
    fn route<'s>(
        &mut self,
        snapshot: &'s Snapshot,
        head: &RequestHead,
    ) -> Result<&'s Route, ProxyError> {
        let data = self.input.data();
        let target = split_target(head.target.of(data)).map_err(|_| ProxyError::BadTarget)?;
        normalize_path(target.path, &mut self.path).map_err(|_| ProxyError::BadTarget)?;
        let authority = target.authority.or_else(|| head.host.map(|h| h.of(data)));
        set_match_host(&mut self.host, authority);
        let method =
            std::str::from_utf8(head.method.of(data)).map_err(|_| ProxyError::BadTarget)?;
        let request = MatchRequest {
            host: (!self.host.is_empty()).then_some(self.host.as_str()),
            path: &self.path,
            method,
        };
        let headers = &self.headers;
        let lookup = |name: &str| find_header(data, headers, name);
        let route = snapshot
            .router
            .find(&request, &lookup, &mut self.params)
            .ok_or(ProxyError::NoRoute)?;
        if let RouteAction::Proxy(action) = &route.action {
            self.upstream_path.clear();
            match (&action.rewrite, &action.strip_prefix) {
                (Some(rewrite), _) => {
                    rewrite.apply(&self.path, &self.params, &mut self.upstream_path)
                }
                (None, Some(prefix)) => {
                    let stripped = strip_prefix(&self.path, prefix).unwrap_or(&self.path);
                    self.upstream_path.push_str(stripped);
                }
                (None, None) => self.upstream_path.push_str(&self.path),
            }
            if let Some(query) = target.query {
                let query = std::str::from_utf8(query).map_err(|_| ProxyError::BadTarget)?;
                self.upstream_path.push('?');
                self.upstream_path.push_str(query);
            }
        }
        Ok(route)
    }
}

impl ClientConn {
    /// The request's host as routes match it: lower case, without the port.
    pub(super) fn match_host(&self) -> &str {
        &self.host
    }
}

/// What waiting for a request head produced.
enum Arrival {
    Head(RequestHead),
    Closed,
    Idle,
}

/// What waiting for the first bytes of a request produced.
enum Wait {
    Data,
    Closed,
    Idle,
}

fn head_limits(snapshot: &Snapshot) -> HeadLimits {
    let limits = snapshot.server.limits;
    HeadLimits {
        max_head_bytes: limits.max_head_bytes,
        max_headers: limits.max_headers,
        max_uri_bytes: limits.max_uri_bytes,
    }
}

/// The value of the first header named `name` (ASCII case-insensitive).
pub(super) fn find_header<'a>(
    data: &'a [u8],
    headers: &[HeaderSpan],
    name: &str,
) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.of(data).eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.of(data))
}

/// Writes the lower-case host without its port into `out` (empty if none or not UTF-8).
fn set_match_host(out: &mut String, authority: Option<&[u8]>) {
    out.clear();
    let Some(authority) = authority else { return };
    let host = strip_port(authority);
    if let Ok(host) = std::str::from_utf8(host) {
        out.push_str(host);
        out.make_ascii_lowercase();
    }
}

fn strip_port(authority: &[u8]) -> &[u8] {
    if authority.first() == Some(&b'[') {
        // IPv6 literal: keep through the closing bracket.
        return match authority.iter().position(|&b| b == b']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(colon) => &authority[..colon],
        None => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_stripped_and_lower_cased() {
        let mut out = String::new();
        set_match_host(&mut out, Some(b"API.Example.com:8080"));
        assert_eq!(out, "api.example.com");
        set_match_host(&mut out, Some(b"[::1]:8080"));
        assert_eq!(out, "[::1]");
        set_match_host(&mut out, None);
        assert_eq!(out, "");
    }

    /// Every connection's task holds one of these futures while it is served, and it is
    /// copied when the task is spawned. They were 10,112 bytes (`serve`: `ClientConn`, 1.6 KB,
    /// held twice by an `async fn`) and 12,160 (`serve_connection`: the TLS handshake's and
    /// HTTP/2's futures inline); 8,448 and 10,496 since (debug build).
    #[test]
    fn request_task_futures_stay_bounded() {
        fn size3<A, B, C, F: Future>(_: fn(A, B, C) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        fn size4<A, B, C, D, F: Future>(_: fn(A, B, C, D) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let (serve, connection) = (size3(serve), size4(serve_connection));
        eprintln!("serve: {serve} bytes, serve_connection: {connection} bytes");
        assert!(serve <= 8_704, "serve's future grew to {serve} bytes");
        assert!(
            connection <= 10_752,
            "serve_connection's future grew to {connection} bytes"
        );
    }
}
