//! One coarse clock for the idle deadlines of every parked connection of a worker.
//!
//! A monoio timer (`Sleep`) is 640 bytes, cache-padded to a 128-byte alignment: held in each
//! parked connection it was half of that connection's memory. Instead, a parked connection
//! registers its deadline here (a slab entry of a few dozen bytes), and one ticker task, which
//! runs only while deadlines are registered, marks the entries past due every [`TICK`] and
//! wakes them. A deadline is therefore met up to one tick late, never early.
//!
//! Worker-local: `Rc`, `Cell` and `RefCell`, no locks.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::server::Drain;

/// How often due deadlines are found (the most a deadline is met late).
pub(super) const TICK: Duration = Duration::from_millis(100);

/// A worker's registered idle deadlines.
#[derive(Debug)]
pub struct IdleClock {
    /// The worker's drain: when it starts, every wait ends (see [`IdleClock::ensure_ticking`]).
    drain: Rc<Drain>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
    waiting: Cell<usize>,
    ticking: Cell<bool>,
}

#[derive(Debug)]
enum Slot {
    Free,
    Waiting {
        deadline: Instant,
        waker: Option<Waker>,
    },
    Due,
}

impl IdleClock {
    /// A clock with nothing registered, for the worker whose drain is `drain`.
    pub(super) fn new(drain: Rc<Drain>) -> Rc<Self> {
        Rc::new(Self {
            drain,
            slots: RefCell::default(),
            free: RefCell::default(),
            waiting: Cell::new(0),
            ticking: Cell::new(false),
        })
    }

    /// A future that resolves once a tick finds `deadline` past (see [`IdleClock::expire`]).
    /// The deadline is registered at once; the future holds only its slot's index.
    pub(super) fn until(self: &Rc<Self>, deadline: Instant) -> IdleDeadline {
        IdleDeadline {
            clock: Rc::clone(self),
            slot: self.register(deadline),
        }
    }

    /// Starts the ticker task unless it runs; it stops by itself once nothing waits.
    ///
    /// The ticker also ends every wait as soon as the worker drains, so that a parked
    /// connection needs no drain registration of its own: one waiter per worker instead of
    /// one per idle connection. (Waits registered after that are ended at the next tick;
    /// callers do not park once draining.)
    pub(super) fn ensure_ticking(self: &Rc<Self>) {
        if self.ticking.replace(true) {
            return;
        }
        let clock = Rc::clone(self);
        monoio::spawn(async move {
            loop {
                let draining = clock.drain.is_draining()
                    || monoio::select! {
                        _ = monoio::time::sleep(TICK) => false,
                        _ = clock.drain.started() => true,
                    };
                if draining {
                    clock.expire_all();
                    monoio::time::sleep(TICK).await;
                } else {
                    clock.expire(Instant::now());
                }
                if clock.waiting() == 0 {
                    clock.ticking.set(false);
                    return;
                }
            }
        });
    }

    /// Marks every registered deadline due, however far, and wakes its waiter (the worker
    /// drains: idle connections close at once).
    pub(super) fn expire_all(&self) {
        self.expire_where(|_| true);
    }

    /// Marks every deadline at or before `now` due and wakes its waiter.
    pub(super) fn expire(&self, now: Instant) {
        self.expire_where(|deadline| deadline <= now);
    }

    fn expire_where(&self, due: impl Fn(Instant) -> bool) {
        let mut woken = Vec::new();
        {
            let mut slots = self.slots.borrow_mut();
            for slot in slots.iter_mut() {
                if matches!(slot, Slot::Waiting { deadline, .. } if due(*deadline)) {
                    if let Slot::Waiting { waker, .. } = std::mem::replace(slot, Slot::Due) {
                        woken.extend(waker);
                    }
                }
            }
        }
        // Woken outside the borrow: a waker may run code that registers again.
        for waker in woken {
            waker.wake();
        }
    }

    /// Deadlines registered and not yet dropped.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.get()
    }

    fn register(&self, deadline: Instant) -> usize {
        let entry = Slot::Waiting {
            deadline,
            waker: None,
        };
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i] = entry;
                i
            }
            None => {
                slots.push(entry);
                slots.len() - 1
            }
        };
        self.waiting.set(self.waiting.get() + 1);
        index
    }

    /// Whether slot `i` is due; if not, `waker` is woken when it is.
    fn poll_slot(&self, i: usize, waker: &Waker) -> bool {
        match self.slots.borrow_mut().get_mut(i) {
            Some(Slot::Waiting { waker: w, .. }) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *w = Some(waker.clone());
                }
                false
            }
            // Due (a slot is freed only by its own deadline's drop).
            _ => true,
        }
    }

    fn release(&self, i: usize) {
        if let Some(entry) = self.slots.borrow_mut().get_mut(i) {
            *entry = Slot::Free;
        }
        self.free.borrow_mut().push(i);
        self.waiting.set(self.waiting.get().saturating_sub(1));
    }
}

/// Resolves once the [`IdleClock`]'s ticker finds its deadline past; small (no timer of its
/// own), so a parked connection can hold it.
#[derive(Debug)]
pub(super) struct IdleDeadline {
    clock: Rc<IdleClock>,
    slot: usize,
}

impl Future for IdleDeadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.poll_slot(self.slot, cx.waker()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for IdleDeadline {
    fn drop(&mut self) {
        self.clock.release(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(deadline: &mut IdleDeadline, waker: &Waker) -> Poll<()> {
        Pin::new(deadline).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_deadline_resolves_only_after_a_tick_past_it_and_wakes_once() {
        let clock = IdleClock::new(Drain::new());
        let t0 = Instant::now();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut d = clock.until(t0 + Duration::from_secs(10));
        assert_eq!(poll(&mut d, &waker), Poll::Pending);
        assert_eq!(clock.waiting(), 1);
        clock.expire(t0 + Duration::from_secs(9));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        assert_eq!(poll(&mut d, &waker), Poll::Pending);
        clock.expire(t0 + Duration::from_secs(10));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        clock.expire(t0 + Duration::from_secs(11));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut d, &waker), Poll::Ready(()));
        drop(d);
        assert_eq!(clock.waiting(), 0);
    }

    #[test]
    fn expire_all_ends_every_wait_however_far() {
        let clock = IdleClock::new(Drain::new());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let far = Instant::now() + Duration::from_secs(3600);
        let mut waits = [clock.until(far), clock.until(far)];
        for wait in &mut waits {
            assert_eq!(poll(wait, &waker), Poll::Pending);
        }
        clock.expire_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        for wait in &mut waits {
            assert_eq!(poll(wait, &waker), Poll::Ready(()));
        }
    }

    #[test]
    fn dropped_deadlines_free_their_slots_for_reuse() {
        let clock = IdleClock::new(Drain::new());
        let t0 = Instant::now();
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut early = clock.until(t0 + Duration::from_secs(1));
        let mut late = clock.until(t0 + Duration::from_secs(5));
        assert_eq!(poll(&mut early, &waker), Poll::Pending);
        assert_eq!(poll(&mut late, &waker), Poll::Pending);
        drop(early);
        assert_eq!(clock.waiting(), 1);
        let mut again = clock.until(t0 + Duration::from_secs(2));
        assert_eq!(poll(&mut again, &waker), Poll::Pending);
        assert_eq!(clock.slots.borrow().len(), 2, "the freed slot is reused");
        clock.expire(t0 + Duration::from_secs(3));
        assert_eq!(poll(&mut again, &waker), Poll::Ready(()));
        assert_eq!(poll(&mut late, &waker), Poll::Pending);
    }
}
