//! The caps on open tunnels of one worker: `server.limits.max_tunnels_per_worker` over all
//! routes and a route's `max_tunnels`. A handshake takes a [`Slot`] before it is forwarded
//! (503 when none is free); the slot is given back when the tunnel closes or the upstream
//! answered without switching.
//!
//! Per worker (`Rc`, `Cell`, `RefCell`): counted twice per tunnel, never per request of a
//! route without `upgrade`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ahash::AHashMap;

/// Open tunnels of one worker, in all and by route.
#[derive(Debug, Default)]
pub struct TunnelSlots {
    open: Cell<usize>,
    by_route: RefCell<AHashMap<Box<str>, usize>>,
}

/// One tunnel's place under the caps; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    slots: Rc<TunnelSlots>,
    route: Box<str>,
}

impl TunnelSlots {
    /// A place for a tunnel of `route`, unless the worker holds `worker_cap` tunnels or the
    /// route `route_cap` already.
    pub fn reserve(
        self: &Rc<Self>,
        route: &str,
        worker_cap: Option<usize>,
        route_cap: Option<usize>,
    ) -> Option<Slot> {
        if worker_cap.is_some_and(|cap| self.open.get() >= cap) {
            return None;
        }
        let mut by_route = self.by_route.borrow_mut();
        let count = match by_route.get_mut(route) {
            Some(count) => count,
            None => by_route.entry(Box::from(route)).or_default(),
        };
        if route_cap.is_some_and(|cap| *count >= cap) {
            return None;
        }
        *count += 1;
        self.open.set(self.open.get() + 1);
        Some(Slot {
            slots: Rc::clone(self),
            route: Box::from(route),
        })
    }

    /// Tunnels open (or handshakes in flight) on this worker.
    pub fn open(&self) -> usize {
        self.open.get()
    }
}

impl Slot {
    /// The route the tunnel belongs to.
    pub fn route(&self) -> &str {
        &self.route
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.open.set(self.slots.open.get().saturating_sub(1));
        if let Some(count) = self.slots.by_route.borrow_mut().get_mut(&*self.route) {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_worker_and_per_route_and_slots_come_back() {
        let slots = Rc::new(TunnelSlots::default());
        let a = slots.reserve("chat", Some(3), Some(2)).expect("free");
        let b = slots.reserve("chat", Some(3), Some(2)).expect("free");
        assert!(
            slots.reserve("chat", Some(3), Some(2)).is_none(),
            "route cap"
        );
        let c = slots.reserve("feed", Some(3), None).expect("free");
        assert!(slots.reserve("feed", Some(3), None).is_none(), "worker cap");
        assert_eq!(slots.open(), 3);
        drop((a, c));
        assert_eq!(slots.open(), 1);
        assert!(slots.reserve("chat", Some(3), Some(2)).is_some());
        drop(b);
        assert_eq!(slots.open(), 0);
    }
}
