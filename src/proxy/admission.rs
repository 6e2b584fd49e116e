//! Connection admission: the caps on open client connections per worker and per client
//! address, checked when a connection is accepted, before anything is read from it.
//!
//! Counts are per worker (each worker admits what it accepted; with `SO_REUSEPORT` one
//! address's connections spread over the workers, so the instance-wide ceiling for one
//! address is `workers × max_connections_per_ip`). No locks: one worker owns its counts.
//! An address's entry is removed when its last connection closes, so the map holds only
//! addresses with open connections.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;

use ahash::AHashMap;

use crate::config::Limits;
pub use crate::metrics::Refusal;

/// One worker's open-connection counts.
#[derive(Debug, Default)]
pub struct Admission {
    open: Cell<usize>,
    by_address: RefCell<AHashMap<IpAddr, usize>>,
}

impl Admission {
    /// Counts a new connection from `ip` in, or says why it must be refused (then nothing
    /// is counted). Every admitted connection must be [`released`](Self::release) once.
    pub fn admit(&self, ip: IpAddr, limits: &Limits) -> Result<(), Refusal> {
        if limits
            .max_connections_per_worker
            .is_some_and(|cap| self.open.get() >= cap)
        {
            return Err(Refusal::WorkerFull);
        }
        let mut by_address = self.by_address.borrow_mut();
        let count = by_address.entry(ip).or_insert(0);
        if limits
            .max_connections_per_ip
            .is_some_and(|cap| *count >= cap)
        {
            if *count == 0 {
                by_address.remove(&ip);
            }
            return Err(Refusal::AddressFull);
        }
        *count += 1;
        self.open.set(self.open.get() + 1);
        Ok(())
    }

    /// A connection admitted from `ip` closed.
    pub fn release(&self, ip: IpAddr) {
        self.open.set(self.open.get().saturating_sub(1));
        let mut by_address = self.by_address.borrow_mut();
        if let Some(count) = by_address.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                by_address.remove(&ip);
            }
        }
    }

    /// Admitted connections still open.
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Addresses with at least one open connection.
    pub fn addresses(&self) -> usize {
        self.by_address.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_worker: Option<usize>, per_ip: Option<usize>) -> Limits {
        Limits {
            max_head_bytes: 16384,
            max_headers: 100,
            max_uri_bytes: 8192,
            max_body_bytes: 1024,
            min_body_rate: None,
            max_connections_per_worker: per_worker,
            max_connections_per_ip: per_ip,
            max_tunnels_per_worker: None,
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn refuses_beyond_the_worker_cap_and_admits_again_after_a_close() {
        let admission = Admission::default();
        let l = limits(Some(2), None);
        assert_eq!(admission.admit(A, &l), Ok(()));
        assert_eq!(admission.admit(B, &l), Ok(()));
        assert_eq!(admission.admit(B, &l), Err(Refusal::WorkerFull));
        admission.release(A);
        assert_eq!(admission.admit(B, &l), Ok(()));
        assert_eq!(admission.open(), 2);
    }

    #[test]
    fn refuses_beyond_the_address_cap_without_touching_other_addresses() {
        let admission = Admission::default();
        let l = limits(None, Some(1));
        assert_eq!(admission.admit(A, &l), Ok(()));
        assert_eq!(admission.admit(A, &l), Err(Refusal::AddressFull));
        assert_eq!(admission.admit(B, &l), Ok(()));
        assert_eq!(admission.open(), 2);
    }

    #[test]
    fn forgets_an_address_when_its_last_connection_closes() {
        let admission = Admission::default();
        let l = limits(None, None);
        admission.admit(A, &l).expect("no caps");
        admission.admit(A, &l).expect("no caps");
        admission.release(A);
        assert_eq!(admission.addresses(), 1);
        admission.release(A);
        assert_eq!(admission.addresses(), 0);
        assert_eq!(admission.open(), 0);
    }

    #[test]
    fn a_refused_first_connection_leaves_no_entry() {
        let admission = Admission::default();
        let l = limits(Some(usize::MAX), Some(1));
        admission.admit(A, &l).expect("under the cap");
        assert_eq!(admission.admit(A, &l), Err(Refusal::AddressFull));
        admission.release(A);
        assert_eq!(admission.addresses(), 0);
    }
}
