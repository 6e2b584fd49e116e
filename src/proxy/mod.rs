//! The request pipeline of a worker, top to bottom:
//!
//! ```text
//! accept ─▶ read head (codec, limits, head_read timeout) ─▶ request id ─▶ trace context
//!        ─▶ normalize target ─▶ route match
//!        ─▶ respond route: answer from the snapshot
//!        ─▶ proxy route:  upstream head ─▶ pooled or fresh connection ─▶ send head (+ body)
//!                         ─▶ response head ─▶ client head ─▶ stream body ─▶ pool check-in
//!        ─▶ next request on the connection (keep-alive, pipelining) or close
//! ```
//!
//! `connection` owns the client side and the loop; `forward` is the upstream exchange; `body`
//! streams bodies with bounded buffers; `error` maps every failure to the client's answer in
//! one table. No locks and no shared writes: everything here runs inside one worker.

mod body;
mod connection;
mod context;
mod error;
mod forward;
mod idle;
mod request_id;
mod trace;

pub use connection::serve_connection;
pub use context::WorkerContext;
pub use error::ProxyError;
pub use request_id::RequestIds;
pub use trace::{TraceContext, TraceIds};
