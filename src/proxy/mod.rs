//! The request pipeline of a worker, top to bottom:
//!
//! ```text
//! accept (admission: connection caps) ─▶ [TLS, ALPN h2 | h2c preface ─▶ one task per stream] ─▶ read head (codec, limits, head_read timeout) ─▶ request id ─▶ trace context
//!        ─▶ normalize target ─▶ route match ─▶ HTTPS redirect
//!        ─▶ CORS (`cors`): preflights answered here (204/403), cross-origin WebSocket
//!           handshakes refused (403), the CORS response fields set for every later answer
//!        ─▶ the route's other policies (`crate::policy`: ip_filter ─▶ authentication
//!           ─▶ authorization ─▶ validate ─▶ rate_limit): 401/403/429 answered here
//!        ─▶ compress (`compress`): a coded request body decoded (413/415/400 answered here),
//!           the response's coding negotiated from Accept-Encoding
//!        ─▶ transform (`transform`): request headers and query edited, a JSON body read
//!           and reshaped (413/415/400 answered here), the response's transform prepared
//!        ─▶ respond route: answer from the snapshot
//!        ─▶ compose route: read body if a call sends it ─▶ calls (graph order, each through
//!                         `call`) ─▶ assemble (`crate::compose`) ─▶ one write, known length
//!        ─▶ proxy route:  [cache lookup (`cached`): hit ─▶ answer from the entry, done;
//!                          stale ─▶ conditional fields; miss ─▶ lead or wait for the key's flight]
//!                         ─▶ choose group (versions, split) ─▶ upstream head (─▶ mirror copy)
//!                         ─▶ pooled or fresh connection ─▶ send head (+ body)
//!                         ─▶ response head ─▶ [cache: 304 refreshes the entry, 5xx may give way
//!                            to stale-if-error] ─▶ response stages (see `stages`: transform ─▶
//!                            compress ─▶ cache store) ─▶ client head ─▶ stream body ─▶ pool check-in
//!                            ─▶ [cache: publish the entry if the body completed]
//!                         (upgrade routes: handshake checked ─▶ tunnel slot ─▶ … ─▶ 101 relayed
//!                          ─▶ record ─▶ tunnel task copies both ways: see `upgrade`)
//!        ─▶ record (metrics, access log)
//!        ─▶ next request on the connection (keep-alive, pipelining), park when idle, or close
//! ```
//!
//! Each step lives in one file:
//! - `admission`: the caps on open connections per worker and per client address;
//! - `connection`: the client side and the request loop (read head, route);
//! - `cors`: the CORS step (a route's `cors` policy) before the other policies;
//! - `compress`: the compression step (a route's `compress` policy) after them: request
//!   bodies decoded, responses compressed through the rewriting relay of `stages`;
//! - `transform`: the transform step (a route's `transform` policy) after `compress`:
//!   request headers, query and JSON body edited; the response's headers and JSON body
//!   through the stages' head edits and rewriting relay;
//! - `answer`: the gateway's own answers (`respond` routes, errors, lingering close);
//! - `forward`: the upstream exchange, with `body` streaming bodies through bounded buffers,
//!   and `duplex` relaying an h2 client's body to an h2 upstream while the response streams;
//! - `stages`: the response stages' head edits, body observer and rewriting relay;
//! - `cached`: the cache stage: lookup, hits written like `respond` answers, revalidation,
//!   coalescing, the store observer (rules and LRU in `crate::cache`);
//! - `request_body`: reading a request body whole (bounded) for the stages that need it;
//! - `traffic`: choosing the route's upstream group (versions, split) and mirroring.
//! - `exchange`: what the exchange did, recorded into metrics and the access log;
//! - `idle`: connections parked without buffers between requests, with `idle_clock`, one
//!   coarse timer for all their deadlines;
//! - `timer`: the worker's timer for request timeouts (a few words per timeout, one monoio
//!   sleep per worker) in place of monoio's `Timeout`;
//! - `error`: every failure mapped to the client's answer in one table;
//! - `request_id` and `trace`: request ids and W3C trace context;
//! - `secure`: the TLS handshake, client identity, HSTS and redirects to HTTPS;
//! - `compose`: a composite route's calls (through `call`) and its assembled answer;
//! - `grpc_web`: gRPC-Web requests translated to gRPC for an h2/h2c group, their responses
//!   back through the rewriting relay of `stages`;
//! - `h2`: HTTP/2 client connections (ALPN `h2`, h2c prior knowledge): each stream is a
//!   `ClientConn` serving one request through the same steps.
//! - `upgrade`: HTTP/1.1 Upgrade (WebSocket): the handshake through the pipeline, the 101,
//!   and the tunnel that follows (`crate::tunnel`) in a task of its own.
//! - `call`: requests the gateway sends on its own behalf (composition calls, introspection,
//!   cache refreshes), through the same attempt loop (`attempt`) as proxied requests.
//!
//! No locks and no shared writes: everything here runs inside one worker.

pub mod admission;
mod answer;
mod attempt;
mod body;
mod cached;
pub mod call;
mod call_cache;
mod compose;
mod compress;
mod connection;
mod context;
mod cors;
mod duplex;
mod error;
mod exchange;
mod forward;
mod grpc_web;
mod h2;
mod idle;
mod idle_clock;
mod introspection;
mod request_body;
mod request_id;
mod secure;
mod stages;
mod timer;
mod trace;
mod traffic;
mod transform;
mod upgrade;

pub use connection::serve_connection;
pub use context::WorkerContext;
pub use error::ProxyError;
pub use request_id::RequestIds;
pub use trace::{TraceContext, TraceIds};
