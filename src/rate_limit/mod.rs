//! Rate limiting: GCRA per key in per-worker tables, shares of instance- and cluster-wide
//! rates computed off the hot path.
//!
//! - `gcra`: the algorithm, pure arithmetic on injected time;
//! - `table`: one worker's bounded key table (no allocation after construction);
//! - `shares`: splitting a rate among workers (or instances) by demand.

pub mod gcra;
pub mod shares;
pub mod table;

pub use gcra::{Decision, Gcra};
pub use table::KeyTable;
