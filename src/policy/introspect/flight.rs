//! Single flight: concurrent lookups of one token on one worker wait for one call.
//!
//! The first request that misses the cache leads: it makes the call and publishes the
//! outcome to every request that arrived meanwhile. If the leader's task is dropped before
//! the call finished (its client went away), the flight is abandoned and a waiter takes the
//! lead, so no request waits for a call nobody makes. Worker-local: `Rc`, `Cell`, `RefCell`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// One call in progress and the requests waiting for its outcome.
#[derive(Debug)]
pub struct Flight<T> {
    outcome: RefCell<Option<T>>,
    /// Set once: completed (`outcome` holds the value) or abandoned (it stays `None`).
    settled: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl<T: Clone> Flight<T> {
    /// A flight nobody has completed yet.
    pub fn new() -> Rc<Self> {
        Rc::new(Flight {
            outcome: RefCell::new(None),
            settled: Cell::new(false),
            waiters: RefCell::new(Vec::new()),
        })
    }

    /// Publishes `outcome` to every waiter.
    pub fn complete(&self, outcome: T) {
        *self.outcome.borrow_mut() = Some(outcome);
        self.settle();
    }

    /// Whether it completed or was abandoned.
    pub fn is_settled(&self) -> bool {
        self.settled.get()
    }

    /// Gives up: the waiters wake with `None` and look again.
    pub fn abandon(&self) {
        self.settle();
    }

    fn settle(&self) {
        self.settled.set(true);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Waits until the flight settles: its outcome, or `None` when it was abandoned.
    pub fn wait(self: &Rc<Self>) -> Wait<T> {
        Wait {
            flight: Rc::clone(self),
        }
    }
}

/// The future of [`Flight::wait`].
#[derive(Debug)]
pub struct Wait<T> {
    flight: Rc<Flight<T>>,
}

impl<T: Clone> Future for Wait<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let flight = &self.flight;
        if flight.settled.get() {
            return Poll::Ready(flight.outcome.borrow().clone());
        }
        let mut waiters = flight.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        let waker = Waker::noop();
        f.poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn waiters_get_the_outcome_or_none_when_abandoned() {
        let flight = Flight::<u32>::new();
        let mut a = std::pin::pin!(flight.wait());
        assert!(poll_once(a.as_mut()).is_pending());
        flight.complete(7);
        assert_eq!(poll_once(a.as_mut()), Poll::Ready(Some(7)));
        let other = Flight::<u32>::new();
        let mut b = std::pin::pin!(other.wait());
        assert!(poll_once(b.as_mut()).is_pending());
        other.abandon();
        assert_eq!(poll_once(b.as_mut()), Poll::Ready(None));
    }
}
