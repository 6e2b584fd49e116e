//! Gives freed heap memory back to the system once a crowd of request tasks has gone.
//!
//! glibc's allocator returns freed memory to the kernel only from the top of a heap. When
//! thousands of request tasks end while smaller allocations stay live between them (parked
//! connections, slab entries), or when a slowloris crowd closes, the freed pages stay mapped
//! and counted in RSS. `malloc_trim(0)` walks every arena and releases each free page
//! wherever it lies; it costs a walk of the arenas, so it runs off the request path, from the
//! worker's one-second sweep, and only when the most request tasks live at once during the last
//! sweep interval has fallen well below their peak since the last return
//! ([`HeapReturn::due`]), at most once per [`MIN_GAP`] per worker. Judging by the interval's
//! high-water mark, not by the live count at the sweep, keeps a busy worker whose count
//! merely dips at that instant from paying for a walk it gains nothing from.
//!
//! One call walks every worker's arena, so when the workers see the same crowd leave, the
//! first to decide returns memory for all, and the others skip theirs ([`claim`]: one atomic
//! timestamp for the process).
//!
//! Worker-local otherwise: `Cell`s, no locks. Counting a request task is two `Cell` updates.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Request tasks that must have ended since the peak before memory is returned (each held
/// a request future and its buffers, some 10–20 KB).
const MIN_DROP: usize = 64;
/// The least time between two returns by one worker.
pub(super) const MIN_GAP: Duration = Duration::from_secs(10);

/// A worker's live request tasks, the most live at once in the current sweep interval and
/// since memory was last returned, and when that was.
#[derive(Debug, Default)]
pub struct HeapReturn {
    live: Cell<usize>,
    interval_peak: Cell<usize>,
    peak: Cell<usize>,
    last: Cell<Option<Instant>>,
}

/// Counts one request task as live until dropped.
#[derive(Debug)]
pub(super) struct Busy<'a> {
    heap: &'a HeapReturn,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.heap.live.set(self.heap.live.get().saturating_sub(1));
    }
}

impl HeapReturn {
    /// Counts a request task (an HTTP/1.1 connection being served, or an HTTP/2 connection)
    /// as live while the guard lives.
    pub(super) fn busy(&self) -> Busy<'_> {
        let live = self.live.get() + 1;
        self.live.set(live);
        if live > self.interval_peak.get() {
            self.interval_peak.set(live);
        }
        Busy { heap: self }
    }

    /// Called once per sweep interval: whether to return memory now. Yes when the most
    /// request tasks live at once during the interval that ends now is half their peak or
    /// less, by at least [`MIN_DROP`], and the last return was [`MIN_GAP`] ago or more. A
    /// `true` answer starts a new peak from that interval's and restarts the gap.
    pub(super) fn due(&self, now: Instant) -> bool {
        let recent = self.interval_peak.replace(self.live.get());
        let peak = self.peak.get().max(recent);
        self.peak.set(peak);
        let fell = peak - recent >= MIN_DROP && recent <= peak / 2;
        let rested = self
            .last
            .get()
            .is_none_or(|last| now.saturating_duration_since(last) >= MIN_GAP);
        if !(fell && rested) {
            return false;
        }
        self.peak.set(recent);
        self.last.set(Some(now));
        true
    }

    /// Returns memory if [`HeapReturn::due`]; logs (debug) what it found and what it cost.
    pub(super) fn check(&self, worker: usize, now: Instant) {
        let peak = self.peak.get().max(self.interval_peak.get());
        if !self.due(now) {
            return;
        }
        if !claim(&LAST_RETURN, process_millis(now)) {
            log::debug!("worker {worker}: heap memory was returned by another worker just now");
            return;
        }
        let started = Instant::now();
        let released = release_free_memory();
        log::debug!(
            "worker {worker}: request tasks {} (peak {peak}); returned free heap memory \
             (released: {released}) in {:?}",
            self.live.get(),
            started.elapsed()
        );
    }
}

/// When a worker of this process last returned memory: milliseconds since [`EPOCH`], plus
/// one (0: never).
static LAST_RETURN: AtomicU64 = AtomicU64::new(0);
/// The origin of [`LAST_RETURN`]'s clock: the first check of any worker.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// `now` on [`LAST_RETURN`]'s clock.
fn process_millis(now: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(|| now);
    let millis = now.saturating_duration_since(epoch).as_millis();
    u64::try_from(millis).unwrap_or(u64::MAX - 1) + 1
}

/// Takes the process's turn to return memory at `at` (on [`LAST_RETURN`]'s clock): false
/// when a worker did less than [`MIN_GAP`] ago, or takes it at the same moment.
fn claim(last: &AtomicU64, at: u64) -> bool {
    let before = last.load(Ordering::Relaxed);
    let gap = u64::try_from(MIN_GAP.as_millis()).unwrap_or(u64::MAX);
    if before != 0 && at.saturating_sub(before) < gap {
        return false;
    }
    last.compare_exchange(before, at, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
}

/// Asks the allocator to give every free page back to the system; whether it released any.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointers; it locks each arena while it walks it, so it
    // is safe to call from any thread while others allocate.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators (musl, other systems) have no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy_many(heap: &HeapReturn, n: usize) -> Vec<Busy<'_>> {
        (0..n).map(|_| heap.busy()).collect()
    }

    #[test]
    fn due_once_the_crowd_has_gone_then_not_again_within_the_gap() {
        let heap = HeapReturn::default();
        let t0 = Instant::now();
        let crowd = busy_many(&heap, 1_000);
        assert!(!heap.due(t0), "a full worker has nothing to give back");
        drop(crowd);
        assert!(
            !heap.due(t0),
            "the crowd was live in the interval that ends now"
        );
        assert!(heap.due(t0), "a whole interval with none live");
        assert!(!heap.due(t0 + Duration::from_secs(1)), "the peak restarted");
        let again = busy_many(&heap, 1_000);
        drop(again);
        assert!(!heap.due(t0 + MIN_GAP / 2), "within the gap");
        assert!(
            heap.due(t0 + MIN_GAP),
            "after the gap, the second crowd counts"
        );
    }

    /// A busy worker whose count is low at the instant of the sweep (connections that came
    /// and went within the interval) keeps its memory: the interval's high-water mark counts.
    #[test]
    fn a_dip_at_the_sweep_is_not_a_fall() {
        let heap = HeapReturn::default();
        let t0 = Instant::now();
        for s in 0..100 {
            drop(busy_many(&heap, 256));
            let _few = busy_many(&heap, 20);
            assert!(!heap.due(t0 + MIN_GAP * s), "interval {s}");
        }
    }

    #[test]
    fn a_steady_or_small_load_never_returns_memory() {
        let heap = HeapReturn::default();
        let t0 = Instant::now();
        let steady = busy_many(&heap, 1_000);
        for s in 0..100 {
            let _burst = busy_many(&heap, MIN_DROP / 2);
            assert!(!heap.due(t0 + MIN_GAP * s));
        }
        drop(steady);
        let small = HeapReturn::default();
        drop(busy_many(&small, MIN_DROP - 1));
        assert!(!small.due(t0), "fewer than MIN_DROP tasks ended");
    }

    /// How many whole pages inside the blocks `ranges` (address, length) are resident,
    /// asked of the kernel page by page (`mincore`): unlike the process's RSS, other tests'
    /// allocations running meanwhile do not move it.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    fn resident_pages(ranges: &[(usize, usize)]) -> usize {
        const PAGE: usize = 4096;
        let mut resident = 0;
        let mut flags = Vec::new();
        for &(start, len) in ranges {
            let first = start.div_ceil(PAGE) * PAGE;
            let end = (start + len) / PAGE * PAGE;
            if end <= first {
                continue;
            }
            flags.clear();
            flags.resize((end - first) / PAGE, 0u8);
            // SAFETY: `mincore` reads the page tables of the page-aligned range
            // [first, end) and writes one byte per page into `flags`, which holds exactly
            // that many; it never touches the range's memory (a range no longer mapped is
            // an error, counted as not resident).
            let rc = unsafe {
                libc::mincore(first as *mut libc::c_void, end - first, flags.as_mut_ptr())
            };
            if rc == 0 {
                resident += flags.iter().filter(|f| **f & 1 == 1).count();
            }
        }
        resident
    }

    /// The case `malloc_trim` exists for: freed blocks held between live small ones (as the
    /// request tasks between parked connections) leave the resident set once it runs.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn released_holes_leave_the_resident_set() {
        const BLOCKS: usize = 1_024;
        const BLOCK: usize = 48 * 1024;
        let mut big = Vec::with_capacity(BLOCKS);
        let mut small = Vec::with_capacity(BLOCKS);
        for i in 0..BLOCKS {
            big.push(vec![i as u8 | 1; BLOCK]);
            small.push(vec![i as u8; 32]);
        }
        let ranges: Vec<(usize, usize)> =
            big.iter().map(|b| (b.as_ptr() as usize, b.len())).collect();
        let written = resident_pages(&ranges);
        assert!(
            written >= BLOCKS * 11,
            "written blocks resident: {written} pages"
        );
        drop(big);
        release_free_memory();
        let after = resident_pages(&ranges);
        assert!(
            after <= written / 2,
            "{after} of {written} freed pages still resident after the return"
        );
        assert_eq!(small.len(), BLOCKS);
    }

    #[test]
    fn one_worker_returns_memory_for_the_process_per_gap() {
        let last = AtomicU64::new(0);
        let gap = u64::try_from(MIN_GAP.as_millis()).unwrap_or(u64::MAX);
        assert!(claim(&last, 1), "the first return");
        assert!(!claim(&last, 1), "the other worker, at the same moment");
        assert!(!claim(&last, gap), "within the gap");
        assert!(claim(&last, gap + 1), "after the gap");
        assert!(!claim(&last, gap + 2));
    }

    #[test]
    fn a_fall_to_just_over_half_the_peak_waits() {
        let heap = HeapReturn::default();
        let t0 = Instant::now();
        let mut crowd = busy_many(&heap, 1_000);
        assert!(!heap.due(t0));
        crowd.truncate(501);
        assert!(!heap.due(t0));
        assert!(!heap.due(t0), "501 live for a whole interval");
        crowd.truncate(500);
        assert!(!heap.due(t0));
        assert!(heap.due(t0), "500 live for a whole interval");
        assert_eq!(heap.live.get(), 500);
    }
}
