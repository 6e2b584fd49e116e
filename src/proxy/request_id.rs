//! Request ids: reuse a well-formed client `X-Request-Id`, otherwise generate one.
//!
//! Generated ids are 32 hex digits: a random per-process, per-worker prefix and a per-worker
//! counter. Unique without coordination between cores and without allocation.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Longest client-supplied id that is passed through.
pub const MAX_CLIENT_ID: usize = 128;

/// Per-worker id generator.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    counter: Cell<u64>,
}

impl RequestIds {
    /// A generator for worker `worker`, seeded randomly per process.
    pub fn new(worker: usize) -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(worker);
        Self {
            prefix: hasher.finish(),
            counter: Cell::new(0),
        }
    }

    /// Writes a fresh id into `out` (cleared first).
    pub fn generate(&self, out: &mut Vec<u8>) {
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        out.clear();
        push_hex(out, self.prefix);
        push_hex(out, n);
    }
}

/// Whether a client-supplied id may be passed through: 1 to [`MAX_CLIENT_ID`] visible ASCII
/// characters.
pub fn is_acceptable(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_CLIENT_ID && id.iter().all(|b| b.is_ascii_graphic())
}

fn push_hex(out: &mut Vec<u8>, value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(DIGITS[((value >> (shift * 4)) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_hex() {
        let ids = RequestIds::new(0);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        ids.generate(&mut a);
        ids.generate(&mut b);
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn client_ids_must_be_visible_ascii() {
        assert!(is_acceptable(b"abc-123"));
        assert!(!is_acceptable(b""));
        assert!(!is_acceptable(b"has space"));
        assert!(!is_acceptable(&[b'a'; MAX_CLIENT_ID + 1]));
    }
}
