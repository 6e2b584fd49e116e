//! Target health: active checks (one prober per target on the health thread, results in a
//! table of atomics the workers only read) and passive checks (per worker: consecutive
//! failures eject a target for a growing time).

pub mod active;
pub mod passive;
pub mod probe;

pub use active::{HealthCheck, StatusRange, TargetHealth};
pub use passive::{PassivePolicy, PassiveState};
