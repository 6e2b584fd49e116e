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

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

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

/// Parks the current task until a helper task queued behind every task ready now has run and
/// woken it. Other wakes of the task in the meantime (it may wake itself in the same poll)
/// do not end the wait: only the helper does.
pub async fn yield_to_back() {
    let done = Rc::new(Cell::new(false));
    let mut spawned = false;
    poll_fn(|cx| {
        if done.get() {
            return Poll::Ready(());
        }
        if !spawned {
            spawned = true;
            let waker = cx.waker().clone();
            let done = Rc::clone(&done);
            // Spawned tasks go to the back of the queue; its wake comes from outside our poll.
            drop(monoio::spawn(async move {
                done.set(true);
                waker.wake();
            }));
        }
        Poll::Pending
    })
    .await;
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
        });
    }
}
