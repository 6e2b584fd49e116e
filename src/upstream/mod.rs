//! The upstream side: keep-alive pools, target selection, health, breakers, retries and
//! discovery.
//!
//! Worker-side state (`pool`, `group`) is per worker (`RefCell`, `Cell`): no locks, no shared
//! atomics written per request. State is keyed by stable identities (group name, target
//! address), so it survives a snapshot swap wherever the target does. Control-side work
//! (active probes, DNS) runs on the health thread (`checker`) and reaches the workers only
//! through read-only atomics and `ArcSwap`ed target sets (`targets`).

pub mod balance;
pub mod breaker;
mod checker;
mod connection;
pub mod discovery;
pub mod group;
pub mod health;
mod liveness;
mod pool;
pub mod retry;
pub mod targets;
mod window;

pub use balance::{Balance, Balancer, HashKey};
pub use breaker::{Breaker, BreakerPolicy, BreakerState, Ticket};
pub use checker::HealthThread;
pub use connection::{connect, ConnectError, UpstreamConn, UPSTREAM_BUF};
pub use discovery::{Discovery, TargetSpec};
pub use group::{Admitted, GroupCounters, GroupReport, Groups, Picked, Refusal, Tried};
pub use health::{HealthCheck, PassivePolicy, StatusRange, TargetHealth};
pub use pool::{Pool, SWEEP_INTERVAL};
pub use retry::{Failure, RetryPolicy};
pub use targets::{LiveTargets, TargetSet};
