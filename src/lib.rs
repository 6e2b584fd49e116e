//! ringgate: a thread-per-core HTTP/1.1 API gateway on monoio and io_uring.
//!
//! The crate is laid out after the request's way through the process:
//!
//! - [`config`]: the file's shape (serde), validation, and compilation into an immutable
//!   [`config::Snapshot`], the only state the workers share.
//! - [`server`]: worker threads, core pinning, driver choice, listeners, signals, shutdown.
//! - [`http`]: the HTTP/1.1 codec: head parsing with httparse, framing rules that make request
//!   smuggling impossible, chunked bodies, and head writing with proxy semantics.
//! - [`http2`]: HTTP/2 on the h2 crate: the I/O adapter, streams as the pipeline's byte
//!   streams, the h2/h2c upstream pool.
//! - [`router`]: path normalization and the compiled route matcher.
//! - [`proxy`]: the per-connection request pipeline and the upstream exchange.
//! - [`traffic`]: route-level traffic management: version rules, weighted splits, mirroring.
//! - [`tunnel`]: upgraded connections (WebSocket) copied both ways with limits.
//! - [`upstream`]: per-worker keep-alive pools and target selection.
//! - [`metrics`]: per-worker recording, merging on the control thread, Prometheus text.
//! - [`policy`]: the checks a route runs before its action: IP filters, API keys, HTTP
//!   Basic, JWT, authorization; one module per kind, statically dispatched.
//! - [`access_log`]: per-worker batched access-log lines and the writer thread.
//! - [`compose`]: composite routes: one request, a compiled graph of backend calls, one
//!   merged JSON answer.
//! - [`cache`]: the per-worker response cache: RFC 9111 rules, keys, the LRU, coalescing.
//! - [`json`]: lazy JSON documents: checks, field paths, shaping, exact-length writing.
//! - [`spares`]: finished HTTP/2 streams' buffers kept for the next streams, as many as the
//!   recent demand.
//! - [`openapi`]: OpenAPI documents: reading them (`validate` policies) and exporting the
//!   running configuration as one.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod access_log;
pub mod admin;
pub mod cache;
pub mod coding;
pub mod compose;
pub mod config;
pub mod http;
pub mod http2;
pub mod io_buf;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod proxy;
pub mod rate_limit;
pub mod router;
pub mod server;
pub mod spares;
pub mod tls;
pub mod traffic;
pub mod tunnel;
pub mod upstream;
