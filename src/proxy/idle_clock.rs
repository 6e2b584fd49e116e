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

/// How often due deadlines are found (the most a deadline is met late).
pub(super) const TICK: Duration = Duration::from_millis(100);

/// A worker's registered idle deadlines.
#[derive(Debug, Default)]
pub struct IdleClock {
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
    /// A future that resolves once a tick finds `deadline` past (see [`IdleClock::expire`]).
    pub(super) fn until(self: &Rc<Self>, deadline: Instant) -> IdleDeadline {
        IdleDeadline {
            clock: Rc::clone(self),
            deadline,
            slot: None,
        }
    }

    /// Starts the ticker task unless it runs; it stops by itself once nothing waits.
    pub(super) fn ensure_ticking(self: &Rc<Self>) {
        if self.ticking.replace(true) {
            return;
        }
        let clock = Rc::clone(self);
        monoio::spawn(async move {
            loop {
                monoio::time::sleep(TICK).await;
                clock.expire(Instant::now());
                if clock.waiting() == 0 {
                    clock.ticking.set(false);
                    return;
                }
            }
        });
    }

    /// Marks every deadline at or before `now` due and wakes its waiter.
    pub(super) fn expire(&self, now: Instant) {
        let mut woken = Vec::new();
        {
            let mut slots = self.slots.borrow_mut();
            for slot in slots.iter_mut() {
                if matches!(slot, Slot::Waiting { deadline, .. } if *deadline <= now) {
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

    fn poll_slot(&self, slot: &mut Option<usize>, deadline: Instant, waker: &Waker) -> bool {
        let mut slots = self.slots.borrow_mut();
        if let Some(i) = *slot {
            return match &mut slots[i] {
                Slot::Due => true,
                Slot::Waiting { waker: w, .. } => {
                    if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                        *w = Some(waker.clone());
                    }
                    false
                }
                Slot::Free => false,
            };
        }
        let entry = Slot::Waiting {
            deadline,
            waker: Some(waker.clone()),
        };
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
        *slot = Some(index);
        self.waiting.set(self.waiting.get() + 1);
        false
    }

    fn release(&self, slot: Option<usize>) {
        let Some(i) = slot else { return };
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
    deadline: Instant,
    slot: Option<usize>,
}

impl Future for IdleDeadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this
            .clock
            .poll_slot(&mut this.slot, this.deadline, cx.waker())
        {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for IdleDeadline {
    fn drop(&mut self) {
        self.clock.release(self.slot.take());
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
        let clock = Rc::new(IdleClock::default());
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
    fn dropped_deadlines_free_their_slots_for_reuse() {
        let clock = Rc::new(IdleClock::default());
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
