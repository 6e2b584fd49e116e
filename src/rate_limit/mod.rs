//! Rate limiting: GCRA per key in per-worker tables; shares of instance- and cluster-wide
//! rates computed off the hot path.
//!
//! - `gcra`: the algorithm, pure arithmetic on injected time;
//! - `table`: one worker's bounded key table (no allocation after construction);
//! - `policy`: a compiled `kind = "rate_limit"` policy and its response fields;
//! - `worker`: one worker's tables, the hot-path check, reports and share updates;
//! - `shares`: splitting a rate among workers (or instances) by demand;
//! - `coordinator`: the thread that turns demand reports into shares;
//! - `cluster`: the coordinator's Redis exchange for `scope = "cluster"`.

pub mod cluster;
pub mod coordinator;
pub mod gcra;
pub mod policy;
pub mod shares;
pub mod table;
pub mod worker;

pub use cluster::ClusterStatus;
pub use coordinator::{Coordinator, WorkerLink, REBALANCE_INTERVAL};
pub use gcra::{Decision, Gcra};
pub use policy::{KeySource, Rate, RateLimitPolicy, Scope};
pub use table::KeyTable;
pub use worker::{DemandReport, ShareUpdate, WorkerLimits};
