//! The upstream side of a worker: keep-alive pools and target selection.
//!
//! Everything here is per worker (`RefCell`, `Cell`): no locks, no shared atomics. State is
//! keyed by stable identities (the target's socket address), so it survives a snapshot swap
//! wherever the target does.

mod connection;
mod liveness;
mod pool;
mod round_robin;

pub use connection::{connect, ConnectError, UpstreamConn, UPSTREAM_BUF};
pub use pool::{Pool, SWEEP_INTERVAL};
pub use round_robin::RoundRobin;
