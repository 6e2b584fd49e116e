//! The byte counts of a worker's open tunnels, so that the metrics see a long-lived tunnel's
//! bytes while it is open rather than only when it closes.
//!
//! A tunnel registers its [`Traffic`] when it opens; at each metrics flush of the worker
//! ([`LiveTunnels::report`]) every open tunnel's bytes since the last flush are handed over,
//! and tunnels that closed meanwhile are forgotten (a closing tunnel hands over its own
//! remainder). Per worker (`Rc`, `RefCell`): one push per tunnel, one pass per flush, nothing
//! per byte.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use super::relay::Traffic;

/// The open tunnels of one worker.
#[derive(Debug, Default)]
pub struct LiveTunnels {
    open: RefCell<Vec<Weak<Traffic>>>,
}

impl LiveTunnels {
    /// Follows a tunnel's bytes until it is dropped.
    pub fn track(&self, traffic: &Rc<Traffic>) {
        self.open.borrow_mut().push(Rc::downgrade(traffic));
    }

    /// Hands `bytes(route, up, down)` what each open tunnel carried since the last report.
    pub fn report(&self, mut bytes: impl FnMut(&str, u64, u64)) {
        self.open.borrow_mut().retain(|weak| {
            let Some(traffic) = weak.upgrade() else {
                return false;
            };
            let (up, down) = traffic.unreported();
            if up > 0 || down > 0 {
                bytes(traffic.route(), up, down);
            }
            true
        });
    }

    /// Tunnels followed now.
    pub fn len(&self) -> usize {
        self.open.borrow().len()
    }

    /// Whether no tunnel is followed.
    pub fn is_empty(&self) -> bool {
        self.open.borrow().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_tunnels_report_their_new_bytes_once_and_closed_ones_are_forgotten() {
        let live = LiveTunnels::default();
        let (a, b) = (Rc::new(Traffic::new("chat")), Rc::new(Traffic::new("feed")));
        live.track(&a);
        live.track(&b);
        a.up.set(10);
        a.down.set(7);
        let mut seen = Vec::new();
        live.report(|route, up, down| seen.push((route.to_string(), up, down)));
        assert_eq!(
            seen,
            [("chat".to_string(), 10, 7)],
            "nothing from a quiet tunnel"
        );
        a.up.set(15);
        b.down.set(3);
        seen.clear();
        live.report(|route, up, down| seen.push((route.to_string(), up, down)));
        assert_eq!(
            seen,
            [("chat".to_string(), 5, 0), ("feed".to_string(), 0, 3)]
        );
        // A closing tunnel takes its own remainder; then it is dropped and forgotten.
        a.up.set(20);
        assert_eq!(a.unreported(), (5, 0));
        drop(a);
        live.report(|_, _, _| panic!("nothing new"));
        assert_eq!(live.len(), 1);
    }
}
