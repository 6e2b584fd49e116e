//! Round robin over a group's targets, one cursor per group per worker.
//!
//! Workers start at different offsets (their index) so that N workers do not hit the same
//! target in lockstep.

use std::cell::RefCell;

use crate::config::{Target, UpstreamId};

/// Per-worker round-robin cursors, indexed by upstream group.
#[derive(Debug)]
pub struct RoundRobin {
    offset: usize,
    cursors: RefCell<Vec<usize>>,
}

impl RoundRobin {
    /// Cursors for worker `worker`.
    pub fn new(worker: usize) -> Self {
        Self {
            offset: worker,
            cursors: RefCell::new(Vec::new()),
        }
    }

    /// The next target of `group`, or `None` if it has none.
    pub fn pick<'t>(&self, group: UpstreamId, targets: &'t [Target]) -> Option<&'t Target> {
        if targets.is_empty() {
            return None;
        }
        let mut cursors = self.cursors.borrow_mut();
        if cursors.len() <= group.0 {
            cursors.resize(group.0 + 1, self.offset);
        }
        let cursor = &mut cursors[group.0];
        let target = &targets[*cursor % targets.len()];
        *cursor = cursor.wrapping_add(1);
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(n: u16) -> Vec<Target> {
        (0..n)
            .map(|i| Target {
                addr: ([127, 0, 0, 1], 9000 + i).into(),
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn cycles_through_every_target_evenly() {
        let rr = RoundRobin::new(0);
        let t = targets(3);
        let mut counts = [0; 3];
        for _ in 0..300 {
            let picked = rr.pick(UpstreamId(0), &t).expect("target");
            counts[(picked.addr.port() - 9000) as usize] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn workers_start_at_different_offsets() {
        let t = targets(4);
        let first: Vec<u16> = (0..4)
            .map(|w| {
                RoundRobin::new(w)
                    .pick(UpstreamId(0), &t)
                    .expect("target")
                    .addr
                    .port()
            })
            .collect();
        assert_eq!(first, vec![9000, 9001, 9002, 9003]);
    }

    #[test]
    fn empty_group_has_no_target() {
        assert!(RoundRobin::new(0).pick(UpstreamId(0), &[]).is_none());
    }
}
