//! Worker-local graceful drain.
//!
//! Two flags every connection can wait on: *draining* (finish the current response, then
//! close; idle connections close at once) and *aborted* (the grace period is over: drop the
//! connection wherever it is). Plus a count of open connections, which the worker waits to
//! reach zero.
//!
//! Single-threaded by design (`Rc`, `Cell`): it lives inside one worker and is never shared
//! across cores. Registering a waiter reuses a free slot, so no allocation once warm.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Drain state of one worker.
#[derive(Debug, Default)]
pub struct Drain {
    draining: Cell<bool>,
    aborted: Cell<bool>,
    open_connections: Cell<usize>,
    waiters: RefCell<Vec<Option<Waker>>>,
    free_slots: RefCell<Vec<usize>>,
}

/// What a [`DrainWait`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    Draining,
    Aborted,
    CountChangedFrom(usize),
}

impl Drain {
    /// A worker's drain state, not draining.
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Whether the worker is draining: finish the current response, then close.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts draining and wakes every waiter.
    pub fn start(&self) {
        self.draining.set(true);
        self.wake_all();
    }

    /// Ends the grace period: every connection still open is dropped.
    pub fn abort(&self) {
        self.draining.set(true);
        self.aborted.set(true);
        self.wake_all();
    }

    /// Resolves once draining has started.
    pub fn started(self: &Rc<Self>) -> DrainWait {
        self.wait(Until::Draining)
    }

    /// Resolves once the grace period is over.
    pub fn aborted(self: &Rc<Self>) -> DrainWait {
        self.wait(Until::Aborted)
    }

    /// Counts a connection as open until [`Drain::connection_closed`] (the owner of the
    /// connection calls both: the proxy's per-connection handle, as it is made and dropped).
    pub fn connection_opened(&self) {
        self.open_connections.set(self.open_connections.get() + 1);
    }

    /// Counts an open connection as closed, and wakes whoever waits on the count.
    pub fn connection_closed(&self) {
        let open = self.open_connections.get().saturating_sub(1);
        self.open_connections.set(open);
        if self.draining.get() {
            self.wake_all();
        }
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.open_connections.get()
    }

    /// Resolves once no connection is open.
    pub async fn idle(self: &Rc<Self>) {
        loop {
            let open = self.open_connections.get();
            if open == 0 {
                return;
            }
            self.wait(Until::CountChangedFrom(open)).await;
        }
    }

    fn wait(self: &Rc<Self>, until: Until) -> DrainWait {
        DrainWait {
            drain: Rc::clone(self),
            until,
            slot: None,
        }
    }

    fn holds(&self, until: Until) -> bool {
        match until {
            Until::Draining => self.draining.get(),
            Until::Aborted => self.aborted.get(),
            Until::CountChangedFrom(seen) => self.open_connections.get() != seen,
        }
    }

    fn wake_all(&self) {
        for waker in self.waiters.borrow_mut().iter_mut() {
            if let Some(waker) = waker.take() {
                waker.wake();
            }
        }
    }

    fn register(&self, slot: &mut Option<usize>, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        if let Some(entry) = slot.and_then(|i| waiters.get_mut(i)) {
            *entry = Some(waker.clone());
            return;
        }
        let index = match self.free_slots.borrow_mut().pop() {
            Some(i) => i,
            None => {
                waiters.push(None);
                waiters.len() - 1
            }
        };
        waiters[index] = Some(waker.clone());
        *slot = Some(index);
    }

    fn unregister(&self, slot: Option<usize>) {
        if let Some(i) = slot {
            if let Some(entry) = self.waiters.borrow_mut().get_mut(i) {
                *entry = None;
            }
            self.free_slots.borrow_mut().push(i);
        }
    }
}

/// Future that resolves when a drain condition holds.
#[derive(Debug)]
pub struct DrainWait {
    drain: Rc<Drain>,
    until: Until,
    slot: Option<usize>,
}

impl Future for DrainWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.drain.holds(this.until) {
            return Poll::Ready(());
        }
        this.drain.register(&mut this.slot, cx.waker());
        Poll::Pending
    }
}

impl Drop for DrainWait {
    fn drop(&mut self) {
        self.drain.unregister(self.slot.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll_once(fut: &mut DrainWait) -> Poll<()> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(fut).poll(&mut cx)
    }

    #[test]
    fn started_resolves_only_after_start() {
        let drain = Drain::new();
        let mut wait = drain.started();
        assert_eq!(poll_once(&mut wait), Poll::Pending);
        drain.start();
        assert_eq!(poll_once(&mut wait), Poll::Ready(()));
    }

    #[test]
    fn count_wait_is_pending_while_draining_with_connections_open() {
        let drain = Drain::new();
        drain.connection_opened();
        drain.start();
        let mut wait = drain.wait(Until::CountChangedFrom(1));
        assert_eq!(poll_once(&mut wait), Poll::Pending);
        drain.connection_closed();
        assert_eq!(poll_once(&mut wait), Poll::Ready(()));
    }

    #[test]
    fn abort_implies_draining() {
        let drain = Drain::new();
        drain.abort();
        assert!(drain.is_draining());
        assert_eq!(poll_once(&mut drain.aborted()), Poll::Ready(()));
    }

    #[test]
    fn slots_are_reused() {
        let drain = Drain::new();
        for _ in 0..10 {
            let mut wait = drain.started();
            assert_eq!(poll_once(&mut wait), Poll::Pending);
        }
        assert_eq!(drain.waiters.borrow().len(), 1);
    }
}
