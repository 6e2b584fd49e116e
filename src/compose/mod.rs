//! Composite routes: one client request, a graph of backend calls made by the gateway, one
//! merged JSON answer (aggregation and Backend-for-Frontend endpoints).
//!
//! ```text
//! load:    [composites.NAME] ─▶ plan (calls, templates, shapes) ─▶ graph (edges from
//!          references, cycle check) ─▶ Arc<Composite> in the snapshot
//! request: the route's policies (once) ─▶ run: every call whose inputs exist starts at once,
//!          on this worker, through `proxy::call` (pools, balancer, health, retries, breaker)
//!          ─▶ assemble: parts in config order (raw splice, or shaped) ─▶ answer: 200 JSON with
//!          a known Content-Length, or 502/504 problem+json naming the failed required call
//! ```
//!
//! - `plan`: the compiled composite (built by `config::compile::composites`);
//! - `template`: path and body templates with `{placeholders}`;
//! - `graph`: topological order and cycle detection;
//! - `run`: the executor, on the worker that owns the client connection;
//! - `assemble`: the output document, deterministic whatever order parts arrive in;
//! - `answer`: status rules, `Composite-Missing`, `Cache-Control`, RFC 9457 problems;
//! - `cache_control`: the most restrictive `Cache-Control` of the parts.
//!
//! Nothing here is on the plain proxy path: a route without `compose` never reaches it.
//! No locks: a composition lives inside one request task.

pub mod answer;
pub mod assemble;
pub mod cache_control;
pub mod graph;
pub mod plan;
pub mod run;
pub mod template;

pub use plan::Composite;
