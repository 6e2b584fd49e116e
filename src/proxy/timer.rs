//! A worker's request deadlines: one timer for every timeout of every request of a worker.
//!
//! A monoio `Timeout` carries its own timer entry: about 512 bytes, cache-padded to a 128-byte
//! alignment (useless on one thread). A plain proxied request builds four or five of them,
//! each laid out in, and copied with, the futures around it. Here a timeout is a few words
//! (the timer, the deadline, a slot index), and the timer keeps every registered deadline in
//! a slab of slots plus a min-heap, with one monoio `Sleep` (in one driver task per worker)
//! armed for the earliest.
//!
//! - Registration is lazy: a [`Timeout`] whose future is ready on its first poll registers
//!   nothing and reads no clock. A timeout given as a duration ([`Timer::timeout`]) reads
//!   the clock once, when it registers (its first poll, as monoio's reads it when built).
//! - Dropping an unfired timeout is O(1): its slot is freed and its heap entry goes stale
//!   (a generation number tells); stale entries leave the heap when they reach its top, or
//!   all at once when they outnumber the live ones (so the heap stays within twice the live
//!   deadlines plus a constant).
//! - The driver's `Sleep` is re-armed only when the earliest deadline moves (earlier by a
//!   registration, later once due deadlines have fired), never per request on its own.
//! - A deadline fires when the driver, woken by monoio's timer, reads the clock at or past
//!   it: never early; late by monoio's timer granularity (1 ms) plus the time the worker
//!   takes to get to the driver's task.
//!
//! Worker-local: `Rc`, `Cell` and `RefCell`, no locks; slots and heap are reused, so no
//! allocation per request once they have grown to the worker's concurrency. A timer serves
//! one runtime (its driver task is spawned on the first); the worker's context, which owns
//! it, is built inside the worker's runtime.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Stale heap entries tolerated beyond the live ones before the heap is compacted.
const STALE_SLACK: usize = 64;

/// A worker's registered deadlines (see the module documentation).
#[derive(Debug)]
pub struct Timer {
    state: RefCell<State>,
    /// The deadline the driver's sleep is armed for, if any.
    armed: Cell<Option<Instant>>,
    /// The driver task's waker while it waits.
    driver: RefCell<Option<Waker>>,
    /// Whether the driver task exists (it is spawned by the first registration).
    driving: Cell<bool>,
    me: Weak<Timer>,
}

#[derive(Debug, Default)]
struct State {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// (deadline, slot, generation): the earliest on top.
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    live: usize,
}

#[derive(Debug, Default)]
struct Slot {
    /// Bumped each time the slot is freed, so that older heap entries for it are stale.
    generation: u32,
    phase: Phase,
}

#[derive(Debug, Default)]
enum Phase {
    #[default]
    Free,
    Waiting(Waker),
    Fired,
}

/// A registered deadline: which slot, and which use of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    slot: u32,
    generation: u32,
}

/// The error of a [`Timeout`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl Timer {
    /// A timer with no deadlines; its driver task starts with the first registration.
    pub fn new() -> Rc<Self> {
        Rc::new_cyclic(|me| Self {
            state: RefCell::default(),
            armed: Cell::new(None),
            driver: RefCell::new(None),
            driving: Cell::new(false),
            me: me.clone(),
        })
    }

    /// Runs `future` until `deadline`: `Err(Elapsed)` if the deadline passes first.
    pub fn timeout_at<F: Future>(&self, deadline: Instant, future: F) -> Timeout<'_, F> {
        Timeout {
            future,
            deadline: self.sleep_until(deadline),
        }
    }

    /// Runs `future` for at most `limit` from its first poll: `Err(Elapsed)` if that passes
    /// first. The clock is read only if the future is not ready at once.
    pub fn timeout<F: Future>(&self, limit: Duration, future: F) -> Timeout<'_, F> {
        Timeout {
            future,
            deadline: Deadline {
                timer: self,
                at: When::After(limit),
                key: None,
            },
        }
    }

    /// A future that resolves at `deadline` (not before; see the module documentation).
    pub fn sleep_until(&self, deadline: Instant) -> Deadline<'_> {
        Deadline {
            timer: self,
            at: When::At(deadline),
            key: None,
        }
    }

    /// Deadlines registered and neither fired nor dropped.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.state.borrow().live
    }

    fn register(&self, at: Instant, waker: &Waker) -> Key {
        let key = self.state.borrow_mut().insert(at, waker.clone());
        if self.armed.get().is_none_or(|armed| at < armed) {
            self.wake_driver();
        }
        key
    }

    /// True once `key`'s deadline has fired; otherwise keeps `waker` to wake then.
    fn poll_key(&self, key: Key, waker: &Waker) -> bool {
        let mut state = self.state.borrow_mut();
        let Some(slot) = state.slots.get_mut(key.slot as usize) else {
            return true;
        };
        if slot.generation != key.generation {
            return true;
        }
        match &mut slot.phase {
            Phase::Waiting(w) => {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                false
            }
            Phase::Fired | Phase::Free => true,
        }
    }

    fn release(&self, key: Key) {
        self.state.borrow_mut().release(key);
    }

    fn wake_driver(&self) {
        if !self.driving.replace(true) {
            self.spawn_driver();
            return;
        }
        // Taken out of the cell before waking: waking a task of a runtime that ended drops
        // it, and the driver's drop borrows the cell.
        let driver = self.driver.borrow_mut().take();
        if let Some(driver) = driver {
            driver.wake();
        }
    }

    fn spawn_driver(&self) {
        monoio::spawn(Driver {
            timer: self.me.clone(),
            sleep: Box::pin(monoio::time::sleep_until(Instant::now().into())),
        });
    }

    /// Fires every deadline at or before `now`; returns the earliest one left.
    fn fire_due(&self, now: Instant) -> Option<Instant> {
        let mut woken = Vec::new();
        let next = self.state.borrow_mut().fire_due(now, &mut woken);
        // Woken outside the borrow: a waker may run code that registers again.
        for waker in woken {
            waker.wake();
        }
        next
    }
}

impl State {
    fn insert(&mut self, at: Instant, waker: Waker) -> Key {
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let entry = &mut self.slots[slot as usize];
        entry.phase = Phase::Waiting(waker);
        let key = Key {
            slot,
            generation: entry.generation,
        };
        self.live += 1;
        if self.heap.len() > 2 * self.live + STALE_SLACK {
            self.compact();
        }
        self.heap.push(Reverse((at, slot, key.generation)));
        key
    }

    fn release(&mut self, key: Key) {
        let Some(slot) = self.slots.get_mut(key.slot as usize) else {
            return;
        };
        if slot.generation != key.generation {
            return;
        }
        if matches!(slot.phase, Phase::Waiting(_)) {
            self.live -= 1;
        }
        slot.phase = Phase::Free;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.slot);
    }

    fn is_live(&self, slot: u32, generation: u32) -> bool {
        let s = &self.slots[slot as usize];
        s.generation == generation && matches!(s.phase, Phase::Waiting(_))
    }

    /// Drops the heap's stale entries (its allocation is kept).
    fn compact(&mut self) {
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.retain(|Reverse((_, slot, generation))| self.is_live(*slot, *generation));
        self.heap = BinaryHeap::from(entries);
    }

    fn fire_due(&mut self, now: Instant, woken: &mut Vec<Waker>) -> Option<Instant> {
        while let Some(&Reverse((at, slot, generation))) = self.heap.peek() {
            let live = self.is_live(slot, generation);
            if live && at > now {
                return Some(at);
            }
            self.heap.pop();
            if live {
                let phase = std::mem::replace(&mut self.slots[slot as usize].phase, Phase::Fired);
                if let Phase::Waiting(waker) = phase {
                    woken.push(waker);
                }
                self.live -= 1;
            }
        }
        None
    }
}

/// The worker's one task that sleeps until the earliest deadline and fires what is due.
struct Driver {
    timer: Weak<Timer>,
    sleep: Pin<Box<monoio::time::Sleep>>,
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(timer) = self.timer.upgrade() else {
            return Poll::Ready(());
        };
        loop {
            let Some(next) = timer.fire_due(Instant::now()) else {
                timer.armed.set(None);
                *timer.driver.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            };
            if timer.armed.replace(Some(next)) != Some(next) {
                self.sleep.as_mut().reset(next.into());
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                *timer.driver.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
    }
}

/// Resolves at its deadline (see [`Timer::sleep_until`]): the timer, the deadline and a slot
/// index, registered at its first poll, released on drop.
#[derive(Debug)]
pub struct Deadline<'t> {
    timer: &'t Timer,
    at: When,
    key: Option<Key>,
}

/// A deadline, or the time to it from the first poll.
#[derive(Debug, Clone, Copy)]
enum When {
    At(Instant),
    After(Duration),
}

impl When {
    fn instant(self) -> Instant {
        match self {
            When::At(at) => at,
            When::After(limit) => Instant::now() + limit,
        }
    }
}

impl Deadline<'_> {
    fn poll_at(&mut self, waker: &Waker) -> Poll<()> {
        let fired = match self.key {
            Some(key) => self.timer.poll_key(key, waker),
            None => {
                self.key = Some(self.timer.register(self.at.instant(), waker));
                false
            }
        };
        if fired {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Future for Deadline<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_at(cx.waker())
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.timer.release(key);
        }
    }
}

pin_project_lite::pin_project! {
    /// `future` until its deadline (see [`Timer::timeout_at`]); polls the future first, as
    /// monoio's `Timeout` does, so a future ready at its deadline still wins.
    #[derive(Debug)]
    pub struct Timeout<'t, F> {
        #[pin]
        future: F,
        deadline: Deadline<'t>,
    }
}

impl<F: Future> Future for Timeout<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        this.deadline.poll_at(cx.waker()).map(|()| Err(Elapsed))
    }
}

#[cfg(test)]
#[path = "timer_tests.rs"]
mod tests;
