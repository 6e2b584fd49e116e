//! Fairness between the tasks of one worker when I/O never has to wait.
//!
//! Under the legacy (epoll) driver an operation on a socket that is ready completes inside
//! the poll that starts it: a client that keeps a socket full (a frame flood, endless
//! pipelining, a tunnel at line rate) lets its connection's task loop without ever returning
//! `Pending`, or return it only after waking itself. monoio re-queues a task that woke itself
//! at the *front* of the run queue, and its starvation guard only polls the driver, which
//! queues the other tasks behind it: the worker serves nobody else until the flood stops.
//! (io_uring operations always complete through the ring, so this never triggers there.)
//!
//! [`Budget::run`] counts operations that completed without waiting; after
//! [`OPS_WITHOUT_WAITING`] in a row it parks the task until a helper task, spawned at the back
//! of the run queue, wakes it: the task is woken from outside its own poll, so monoio queues
//! it behind everything that was ready before. The fast path (an operation that waited, or a
//! budget not yet spent) allocates nothing.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Operations in a row that may complete without waiting before the task yields.
pub const OPS_WITHOUT_WAITING: u32 = 16;

/// Counts I/O that completed without waiting, per connection (or per copy direction).
#[derive(Debug)]
pub struct Budget {
    left: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new()
    }
}

impl Budget {
    /// A full budget.
    pub const fn new() -> Budget {
        Budget {
            left: OPS_WITHOUT_WAITING,
        }
    }

    /// Runs `op` (pinned by the caller, so a large future is not moved into this one); if
    /// it and the operations before it completed without waiting [`OPS_WITHOUT_WAITING`]
    /// times in a row, yields to the back of the run queue before returning its output.
    pub async fn run<F: Future>(&mut self, mut op: Pin<&mut F>) -> F::Output {
        let mut waited = false;
        let output = poll_fn(|cx| {
            let poll = op.as_mut().poll(cx);
            waited |= poll.is_pending();
            poll
        })
        .await;
        self.spent(waited).await;
        output
    }

    /// Accounts one operation; yields when the budget is spent.
    pub async fn spent(&mut self, waited: bool) {
        if waited {
            self.left = OPS_WITHOUT_WAITING;
            return;
        }
        self.left = self.left.saturating_sub(1);
        if self.left == 0 {
            self.left = OPS_WITHOUT_WAITING;
            yield_to_back().await;
        }
    }
}

/// The worker's yield helper (see [`run_helper`]): the tasks it must wake, how often it ran.
struct Helper {
    /// The helper task, once it runs on this thread.
    waker: RefCell<Option<Waker>>,
    /// Tasks parked by [`yield_to_back`] until the helper's next run.
    parked: RefCell<Vec<Waker>>,
    /// The helper's runs so far.
    rounds: Cell<u64>,
}

thread_local! {
    static HELPER: Helper = const {
        Helper {
            waker: RefCell::new(None),
            parked: RefCell::new(Vec::new()),
            rounds: Cell::new(0),
        }
    };
}

/// The worker's yield helper: a task that, each time a yielding task wakes it (from that
/// task's poll, so it is queued at the back), wakes the parked tasks from its own poll, which
/// queues them at the back too. Spawned once per worker, it makes a yield allocation-free;
/// without it, [`yield_to_back`] spawns a one-shot helper per yield.
pub async fn run_helper() {
    poll_fn(|cx| {
        HELPER.with(|h| {
            h.rounds.set(h.rounds.get() + 1);
            for waker in h.parked.borrow_mut().drain(..) {
                waker.wake();
            }
            let mut own = h.waker.borrow_mut();
            if !own.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *own = Some(cx.waker().clone());
            }
        });
        Poll::<()>::Pending
    })
    .await
}

/// Parks the current task until a helper task queued behind every task ready now has run and
/// woken it. Other wakes of the task in the meantime (it may wake itself in the same poll)
/// do not end the wait: only the helper does.
pub async fn yield_to_back() {
    let mut until_round = None;
    let mut one_shot: Option<Rc<Cell<bool>>> = None;
    poll_fn(|cx| {
        if let Some(done) = &one_shot {
            return if done.get() {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        HELPER.with(|h| {
            if let Some(round) = until_round {
                return if h.rounds.get() >= round {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            }
            match &*h.waker.borrow() {
                Some(helper) => {
                    until_round = Some(h.rounds.get() + 1);
                    h.parked.borrow_mut().push(cx.waker().clone());
                    helper.wake_by_ref();
                }
                None => one_shot = Some(spawn_one_shot(cx.waker().clone())),
            }
            Poll::Pending
        })
    })
    .await;
}

/// A task queued at the back that wakes `waker` (from outside its poll) and sets the flag.
fn spawn_one_shot(waker: Waker) -> Rc<Cell<bool>> {
    let done = Rc::new(Cell::new(false));
    let flag = Rc::clone(&done);
    drop(monoio::spawn(async move {
        flag.set(true);
        waker.wake();
    }));
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("legacy runtime")
    }

    /// A task that never waits still lets another task run once its budget is spent.
    #[test]
    fn a_task_that_never_waits_lets_others_run() {
        legacy().block_on(async {
            others_run_while_a_task_never_waits().await;
        });
    }

    /// The same through the worker's helper task (no allocation per yield).
    #[test]
    fn the_helper_task_lets_others_run() {
        legacy().block_on(async {
            drop(monoio::spawn(run_helper()));
            // Let the helper register itself.
            yield_to_back().await;
            others_run_while_a_task_never_waits().await;
        });
    }

    async fn others_run_while_a_task_never_waits() {
        {
            let other_ran = Rc::new(Cell::new(false));
            let flag = Rc::clone(&other_ran);
            let other = monoio::spawn(async move { flag.set(true) });
            let mut budget = Budget::new();
            let mut ops = 0;
            while !other_ran.get() {
                budget.run(std::pin::pin!(std::future::ready(()))).await;
                ops += 1;
                assert!(ops <= OPS_WITHOUT_WAITING * 2, "the other task never ran");
            }
            other.await;
        }
    }
}
