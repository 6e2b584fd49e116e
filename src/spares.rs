//! Buffers of finished HTTP/2 streams, kept for the next streams.
//!
//! A stream serves one request, and allocating its buffers afresh (the pipeline's, some
//! 6 KiB in eight blocks; an h2 upstream stream's, four more) was a good part of its cost.
//! A fixed cap on the spares missed most of the time under load: with 512 streams in flight
//! (16 connections × 32), a burst of new streams found 64 spares and allocated the rest. So
//! the spares follow demand instead: as many are kept as streams were open at once during
//! the last sweep interval (never more than [`MAX_SPARES`]), so a steady load finds its
//! buffers in hand, and when the load falls the next sweep frees the spares no longer
//! needed (before `proxy::heap_return` looks, so that the freed blocks go back with the
//! rest).
//!
//! Worker-local: a `RefCell` and two `Cell`s, no locks.

use std::cell::{Cell, RefCell};

/// Spares kept whatever the recent demand (a few streams' worth).
const MIN_SPARES: usize = 64;
/// Most spares kept of one kind (about 6.5 MiB of pipeline buffers per worker).
const MAX_SPARES: usize = 1024;

/// Buffers a stream can hand to the next one.
pub trait Spare: Sized {
    /// Fresh buffers at their working sizes.
    fn fresh() -> Self;
    /// The buffers emptied for the next stream; `None` when they grew past their working
    /// size (a spare never holds more than a fresh one).
    fn reusable(self) -> Option<Self>;
}

/// A worker's spare buffers of one kind, and how many streams were open at once recently.
#[derive(Debug)]
pub struct Spares<T> {
    spares: RefCell<Vec<T>>,
    /// Streams open now.
    open: Cell<usize>,
    /// The most open at once since the last sweep.
    interval_peak: Cell<usize>,
}

impl<T> Default for Spares<T> {
    fn default() -> Self {
        Self {
            spares: RefCell::default(),
            open: Cell::new(0),
            interval_peak: Cell::new(0),
        }
    }
}

impl<T: Spare> Spares<T> {
    /// Counts a stream open (the caller counts it closed with [`Spares::closed`], from a
    /// guard's `Drop`, so that a dropped stream task is counted too).
    pub fn opened(&self) {
        let open = self.open.get() + 1;
        self.open.set(open);
        if open > self.interval_peak.get() {
            self.interval_peak.set(open);
        }
    }

    /// Counts a stream closed.
    pub fn closed(&self) {
        self.open.set(self.open.get().saturating_sub(1));
    }

    /// Buffers for a stream: a finished stream's, or fresh ones.
    pub fn take(&self) -> T {
        self.spares.borrow_mut().pop().unwrap_or_else(T::fresh)
    }

    /// Takes back a finished stream's buffers; kept if they are at their working size and
    /// the spares are under the recent demand.
    pub fn give_back(&self, buffers: T) {
        let mut spares = self.spares.borrow_mut();
        if spares.len() < self.keep() {
            spares.extend(buffers.reusable());
        }
    }

    /// Called once per sweep interval: frees the spares beyond the demand of the interval
    /// that ends now, and starts the next interval's count.
    pub fn sweep(&self) {
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
    pub fn held(&self) -> usize {
        self.spares.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Buf(Vec<u8>);

    impl Spare for Buf {
        fn fresh() -> Self {
            Buf(Vec::with_capacity(8))
        }

        fn reusable(mut self) -> Option<Self> {
            self.0.clear();
            (self.0.capacity() == 8).then_some(self)
        }
    }

    fn burst(spares: &Spares<Buf>, streams: usize) {
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
        let spares = Spares::default();
        burst(&spares, 512);
        assert_eq!(spares.held(), 512);
        spares.sweep();
        burst(&spares, 512);
        assert_eq!(spares.held(), 512);
    }

    #[test]
    fn spares_beyond_the_last_interval_s_demand_are_freed() {
        let spares = Spares::default();
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
    fn never_more_than_the_cap_and_never_grown_buffers() {
        let spares = Spares::default();
        burst(&spares, MAX_SPARES + 100);
        assert_eq!(spares.held(), MAX_SPARES);
        let spares = Spares::default();
        spares.opened();
        let mut grown: Buf = spares.take();
        grown.0.extend_from_slice(&[0; 100]);
        spares.give_back(grown);
        assert_eq!(spares.held(), 0);
    }
}
