//! The timer against both monoio drivers: never early, late within its bound, no slot leaked.

use super::*;
use std::future::{pending, ready};
use std::time::Duration;

/// How late a deadline may fire in these tests: monoio's 1 ms granularity plus scheduling
/// on a shared, loaded test machine.
const LATE: Duration = Duration::from_millis(15);

fn legacy() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("legacy runtime")
}

/// Runs `test` on the legacy driver, and on io_uring where the kernel allows it.
fn on_both_drivers<T, F>(test: T)
where
    T: Fn() -> F,
    F: Future<Output = ()>,
{
    legacy().block_on(test());
    match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut uring) => uring.block_on(test()),
        Err(e) => eprintln!("io_uring unavailable ({e}): tested on the legacy driver only"),
    }
}

fn assert_fired_in_bound(deadline: Instant, fired: Instant) {
    assert!(fired >= deadline, "fired {:?} early", deadline - fired);
    assert!(
        fired - deadline <= LATE,
        "fired {:?} late",
        fired - deadline
    );
}

#[test]
fn deadlines_fire_in_order_never_early_and_within_the_bound() {
    on_both_drivers(|| async {
        let timer = Timer::new();
        let t0 = Instant::now();
        // Registered latest first, so each registration moves the earliest deadline earlier.
        let deadlines = [60, 40, 20].map(|ms| t0 + Duration::from_millis(ms));
        let tasks = deadlines.map(|at| {
            let timer = Rc::clone(&timer);
            monoio::spawn(async move {
                timer.sleep_until(at).await;
                Instant::now()
            })
        });
        for (task, at) in tasks.into_iter().zip(deadlines) {
            assert_fired_in_bound(at, task.await);
        }
        assert_eq!(timer.waiting(), 0);
    });
}

#[test]
fn a_timeout_elapses_at_its_deadline_with_elapsed() {
    on_both_drivers(|| async {
        let timer = Timer::new();
        let at = Instant::now() + Duration::from_millis(20);
        let result = timer.timeout_at(at, pending::<()>()).await;
        assert_fired_in_bound(at, Instant::now());
        assert_eq!(result, Err(Elapsed));
        assert_eq!(timer.waiting(), 0);
    });
}

#[test]
fn a_ready_future_wins_even_past_its_deadline_and_registers_nothing() {
    on_both_drivers(|| async {
        let timer = Timer::new();
        let past = Instant::now() - Duration::from_millis(5);
        assert_eq!(timer.timeout_at(past, ready(7)).await, Ok(7));
        assert!(timer.state.borrow().slots.is_empty());
        assert!(!timer.driving.get(), "no driver for nothing registered");
    });
}

#[test]
fn a_deadline_already_past_when_registered_fires_at_once() {
    on_both_drivers(|| async {
        let timer = Timer::new();
        let past = Instant::now() - Duration::from_millis(5);
        assert_eq!(timer.timeout_at(past, pending::<()>()).await, Err(Elapsed));
    });
}

#[test]
fn dropped_timeouts_free_their_slots_and_the_heap_stays_bounded() {
    on_both_drivers(|| async {
        let timer = Timer::new();
        let far = Instant::now() + Duration::from_secs(60);
        for round in 0..50 {
            // Ten requests in flight, each polled once (registered) and then finished.
            let mut waits: Vec<_> = (0..10)
                .map(|_| Box::pin(timer.timeout_at(far, pending::<()>())))
                .collect();
            for w in &mut waits {
                let waker = std::task::Waker::noop();
                assert!(w
                    .as_mut()
                    .poll(&mut Context::from_waker(waker))
                    .is_pending());
            }
            assert_eq!(timer.waiting(), 10, "round {round}");
            drop(waits);
            assert_eq!(timer.waiting(), 0, "round {round}");
        }
        let state = timer.state.borrow();
        assert_eq!(state.slots.len(), 10, "freed slots are reused");
        assert!(
            state.heap.len() <= 2 * 10 + STALE_SLACK,
            "{}",
            state.heap.len()
        );
    });
}

#[test]
fn a_dropped_deadline_does_not_delay_a_later_one() {
    on_both_drivers(|| async {
        let timer = Timer::new();
        let t0 = Instant::now();
        {
            // Registered, arming the driver for it, then dropped.
            let mut early = Box::pin(timer.sleep_until(t0 + Duration::from_millis(10)));
            let waker = std::task::Waker::noop();
            assert!(early
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending());
        }
        let at = t0 + Duration::from_millis(30);
        timer.sleep_until(at).await;
        assert_fired_in_bound(at, Instant::now());
    });
}

/// The point of the timer: a timeout adds a few words to the future it wraps, where
/// monoio's `Timeout` adds a cache-padded timer entry (512 bytes, 128-byte aligned) that
/// every enclosing future then lays out and copies.
#[test]
fn a_timeout_adds_a_few_words_to_its_future() {
    let ours = std::mem::size_of::<Timeout<'static, std::future::Ready<()>>>();
    let monoio = std::mem::size_of::<monoio::time::Timeout<std::future::Ready<()>>>();
    eprintln!("timeout around a 1-byte future: ours {ours} bytes, monoio's {monoio} bytes");
    assert!(ours <= 64, "a timeout grew to {ours} bytes");
    assert!(std::mem::align_of::<Timeout<'static, std::future::Ready<()>>>() <= 8);
}
