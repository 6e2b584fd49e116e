//! Composite metrics: per composite and per call, outcome counts and a latency histogram,
//! plus the root-merge key collisions of each composite.
//!
//! Recorded per worker (no locks: `RefCell` in the worker's recorder), handed over in the
//! delta, summed by the aggregator. Keys are `(composite, call)`; the composite's own entry
//! has an empty call name. Names come from the config, so the maps stay small.

use std::collections::BTreeMap;
use std::time::Duration;

use super::histogram::LatencyHistogram;

/// What one composite request or one of its calls did, since the last delta.
#[derive(Debug, Default, Clone)]
pub struct CompositeStats {
    /// Counts by outcome label (`complete`, `partial`, `failed` for a composite; `ok` or a
    /// failure reason for a call).
    pub outcomes: Vec<(&'static str, u64)>,
    /// Latency of those that ran.
    pub latency: LatencyHistogram,
    /// Root-merge key collisions (composite entries only).
    pub collisions: u64,
    /// Per composite request whose required calls all answered, the duration of the slowest
    /// of them (composite entries only): the latency the backends set, against which
    /// `latency` shows what the gateway added.
    pub slowest_call: LatencyHistogram,
    /// Per composite request whose required calls all answered, the time from its head
    /// parsed to its answer written, less the slowest required call (composite entries
    /// only): what the gateway added to what the backends set.
    pub overhead: LatencyHistogram,
}

impl CompositeStats {
    /// Counts one outcome (and its latency, if it ran).
    pub fn record(&mut self, outcome: &'static str, took: Option<Duration>, collisions: u32) {
        match self.outcomes.iter_mut().find(|(o, _)| *o == outcome) {
            Some((_, n)) => *n += 1,
            None => self.outcomes.push((outcome, 1)),
        }
        if let Some(took) = took {
            self.latency.record(took);
        }
        self.collisions += u64::from(collisions);
    }

    /// Whether nothing was recorded.
    pub fn is_idle(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// Adds `other` into this.
    pub fn add(&mut self, other: &CompositeStats) {
        for &(outcome, n) in &other.outcomes {
            match self.outcomes.iter_mut().find(|(o, _)| *o == outcome) {
                Some((_, m)) => *m = m.saturating_add(n),
                None => self.outcomes.push((outcome, n)),
            }
        }
        self.outcomes.sort_by_key(|(o, _)| *o);
        self.latency.add(&other.latency);
        self.slowest_call.add(&other.slowest_call);
        self.overhead.add(&other.overhead);
        self.collisions = self.collisions.saturating_add(other.collisions);
    }

    /// The count of `outcome`.
    pub fn count(&self, outcome: &str) -> u64 {
        self.outcomes
            .iter()
            .find(|(o, _)| *o == outcome)
            .map_or(0, |(_, n)| *n)
    }
}

/// Composite stats by `(composite, call)`, as handed over and as summed.
pub type CompositeTable = BTreeMap<(String, String), CompositeStats>;
