//! Worker-local graceful drain: a flag every connection can wait on, and a count of open
//! connections the worker waits to reach zero.
//!
//! Single-threaded by design (`Rc`, `Cell`): it lives inside one worker and is never shared
//! across cores. Registering a waiter costs a slab insert, no allocation once warm.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Drain state of one worker.
#[derive(Debug, Default)]
pub struct Drain {
    draining: Cell<bool>,
    open_connections: Cell<usize>,
    waiters: RefCell<Vec<Option<Waker>>>,
    free_slots: RefCell<Vec<usize>>,
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

    /// Resolves once draining has started.
    pub fn started(self: &Rc<Self>) -> DrainStarted {
        DrainStarted {
            drain: Rc::clone(self),
            slot: None,
        }
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn track_connection(self: &Rc<Self>) -> ConnectionGuard {
        self.open_connections.set(self.open_connections.get() + 1);
        ConnectionGuard {
            drain: Rc::clone(self),
        }
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.open_connections.get()
    }

    /// Resolves once draining started and no connection is open.
    pub async fn idle(self: &Rc<Self>) {
        loop {
            if self.draining.get() && self.open_connections.get() == 0 {
                return;
            }
            ConnectionClosed {
                drain: Rc::clone(self),
                seen: self.open_connections.get(),
                slot: None,
            }
            .await;
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
        match *slot {
            Some(i) => waiters[i] = Some(waker.clone()),
            None => {
                let i = match self.free_slots.borrow_mut().pop() {
                    Some(i) => {
                        waiters[i] = Some(waker.clone());
                        i
                    }
                    None => {
                        waiters.push(Some(waker.clone()));
                        waiters.len() - 1
                    }
                };
                *slot = Some(i);
            }
        }
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

/// Future returned by [`Drain::started`].
#[derive(Debug)]
pub struct DrainStarted {
    drain: Rc<Drain>,
    slot: Option<usize>,
}

impl Future for DrainStarted {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.drain.draining.get() {
            return Poll::Ready(());
        }
        this.drain.register(&mut this.slot, cx.waker());
        Poll::Pending
    }
}

impl Drop for DrainStarted {
    fn drop(&mut self) {
        self.drain.unregister(self.slot.take());
    }
}

/// Resolves when the open-connection count changes from `seen` or draining starts.
struct ConnectionClosed {
    drain: Rc<Drain>,
    seen: usize,
    slot: Option<usize>,
}

impl Future for ConnectionClosed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.drain.open_connections.get() != this.seen || this.drain.draining.get() {
            return Poll::Ready(());
        }
        this.drain.register(&mut this.slot, cx.waker());
        Poll::Pending
    }
}

impl Drop for ConnectionClosed {
    fn drop(&mut self) {
        self.drain.unregister(self.slot.take());
    }
}

/// Keeps a connection counted as open; dropping it wakes the drain waiter.
#[derive(Debug)]
pub struct ConnectionGuard {
    drain: Rc<Drain>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let open = self.drain.open_connections.get().saturating_sub(1);
        self.drain.open_connections.set(open);
        if self.drain.draining.get() {
            self.drain.wake_all();
        }
    }
}
