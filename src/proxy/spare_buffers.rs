//! Finished HTTP/2 streams' pipeline buffers, kept for the next streams.
//!
//! A stream serves one request, and allocating its buffers afresh (eight blocks, some 6 KiB)
//! was a good part of its cost. A fixed cap on the spares missed most of the time under load:
//! with 512 streams in flight (16 connections × 32), a burst of new streams found 64 spares
//! and allocated the rest. So the spares follow demand instead: a worker keeps as many as it
//! had streams open at once during the last sweep interval (never more than
//! [`MAX_SPARES`]), so a steady load finds its buffers in hand, and when the load falls the
//! next sweep frees the spares it no longer needs (before `heap_return` looks, so that the
//! freed blocks are given back with the rest).
//!
//! Worker-local: a `RefCell` and two `Cell`s, no locks.

use std::cell::{Cell, RefCell};

use super::connection::ConnBuffers;

/// Spares kept whatever the recent demand (a few streams' worth).
const MIN_SPARES: usize = 64;
/// Most spares kept (about 6.5 MiB of buffers per worker).
const MAX_SPARES: usize = 1024;

/// A worker's spare stream buffers, and how many streams were open at once recently.
#[derive(Debug, Default)]
pub(super) struct SpareBuffers {
    spares: RefCell<Vec<ConnBuffers>>,
    /// Streams open now (counted by `proxy::h2`'s guard, so a dropped stream task counts too).
    open: Cell<usize>,
    /// The most open at once since the last sweep.
    interval_peak: Cell<usize>,
}

impl SpareBuffers {
    /// Counts a stream open.
    pub(super) fn opened(&self) {
        let open = self.open.get() + 1;
        self.open.set(open);
        if open > self.interval_peak.get() {
            self.interval_peak.set(open);
        }
    }

    /// Counts a stream closed.
    pub(super) fn closed(&self) {
        self.open.set(self.open.get().saturating_sub(1));
    }

    /// Buffers for a stream: a finished stream's, or fresh ones.
    pub(super) fn take(&self) -> ConnBuffers {
        self.spares
            .borrow_mut()
            .pop()
            .unwrap_or_else(ConnBuffers::new)
    }

    /// Takes back a finished stream's buffers; kept if they are at their working size and
    /// the spares are under the recent demand.
    pub(super) fn give_back(&self, buffers: ConnBuffers) {
        let mut spares = self.spares.borrow_mut();
        if spares.len() < self.keep() {
            spares.extend(buffers.reusable());
        }
    }

    /// Called once per sweep interval: frees the spares beyond the demand of the interval
    /// that ends now, and starts the next interval's count.
    pub(super) fn sweep(&self) {
        let keep = self.keep();
        self.interval_peak.set(self.open.get());
        let mut spares = self.spares.borrow_mut();
        if spares.len() > keep {
            spares.truncate(keep);
            spares.shrink_to(keep);
        }
    }

    /// How many spares the recent demand justifies.
    fn keep(&self) -> usize {
        self.interval_peak.get().clamp(MIN_SPARES, MAX_SPARES)
    }

    /// Spares held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.spares.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burst(spares: &SpareBuffers, streams: usize) {
        let taken: Vec<_> = (0..streams)
            .map(|_| {
                spares.opened();
                spares.take()
            })
            .collect();
        for buffers in taken {
            spares.give_back(buffers);
            spares.closed();
        }
    }

    #[test]
    fn a_steady_load_keeps_what_it_used_at_once() {
        let spares = SpareBuffers::default();
        burst(&spares, 512);
        assert_eq!(spares.held(), 512);
        spares.sweep();
        burst(&spares, 512);
        assert_eq!(spares.held(), 512);
    }

    #[test]
    fn spares_beyond_the_last_interval_s_demand_are_freed() {
        let spares = SpareBuffers::default();
        burst(&spares, 512);
        spares.sweep();
        assert_eq!(
            spares.held(),
            512,
            "the interval that had the burst keeps it"
        );
        burst(&spares, 10);
        spares.sweep();
        assert_eq!(spares.held(), MIN_SPARES);
    }

    #[test]
    fn never_more_than_the_cap() {
        let spares = SpareBuffers::default();
        burst(&spares, MAX_SPARES + 100);
        assert_eq!(spares.held(), MAX_SPARES);
    }
}
