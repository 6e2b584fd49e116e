//! Buffered reading over monoio's owned-buffer I/O.
//!
//! A [`ReadBuf`] is one connection's input buffer: bytes read but not yet consumed sit in
//! `buf[pos..]`. Reads append into the spare capacity (no copy, no allocation once the buffer
//! has grown to its working size); consumed bytes are reclaimed by resetting to the start when
//! everything was consumed, or by compacting when room runs out.
//!
//! Ownership: monoio takes the `Vec` for the duration of each read or write and returns it
//! with the result. If such a future is dropped (a timeout), the buffer stays with the driver
//! until the kernel is done with it and this `ReadBuf` is left empty; callers close the
//! connection after any timeout, so the loss is never observed.

use std::io;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

/// Below this much free space, a read first makes room.
const MIN_READ: usize = 2048;

/// A connection's input buffer.
#[derive(Debug)]
pub struct ReadBuf {
    buf: Vec<u8>,
    pos: usize,
}

impl ReadBuf {
    /// An empty buffer with `capacity` bytes reserved.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
            pos: 0,
        }
    }

    /// Bytes read and not yet consumed.
    pub fn data(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Bytes read and not yet consumed, mutable (used to lower-case a host in place).
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.pos..).unwrap_or_default()
    }

    /// Number of unconsumed bytes.
    pub fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every read byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Current capacity.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Marks `n` bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Appends what `write` writes into the buffer's own vector (no staging copy); returns
    /// what `write` returns.
    pub fn append_with<R>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        self.compact();
        write(&mut self.buf)
    }

    /// Grows the buffer so that it can hold `capacity` bytes, for relaying a large body with
    /// few reads and writes.
    pub fn grow_to(&mut self, capacity: usize) {
        if self.buf.capacity() < capacity {
            self.compact();
            self.buf.reserve_exact(capacity - self.buf.len());
        }
    }

    /// Returns the buffer to `capacity` if a large body made it grow.
    pub fn shrink_to(&mut self, capacity: usize) {
        if self.buf.capacity() > capacity && self.len() <= capacity {
            self.compact();
            self.buf.shrink_to(capacity);
        }
    }

    /// Reads once from `stream`, growing the buffer up to `max_capacity` if it is full.
    /// Returns the number of bytes read; 0 means end of stream, or that the buffer is full
    /// at `max_capacity` (check [`ReadBuf::len`] against the limit before calling).
    pub async fn fill<S: AsyncReadRent>(
        &mut self,
        stream: &mut S,
        max_capacity: usize,
    ) -> io::Result<usize> {
        self.make_room(max_capacity);
        let (mut buf, pos) = self.lend();
        let (len, capacity) = (buf.len(), buf.capacity());
        if len == capacity {
            self.restore(buf, pos);
            return Ok(0);
        }
        let (result, slice) = stream.read(buf.slice_mut(len..capacity)).await;
        buf = slice.into_inner();
        self.restore(buf, pos);
        result
    }

    /// Appends as much of `bytes` as fits, growing the buffer up to `max_capacity` if it is
    /// full (as [`ReadBuf::fill`] does); returns how many bytes were taken. For sources
    /// that hand out slices (a TLS session's plaintext) rather than reading into a buffer.
    pub fn append(&mut self, bytes: &[u8], max_capacity: usize) -> usize {
        self.make_room(max_capacity);
        let room = self.buf.capacity() - self.buf.len();
        let n = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..n]);
        n
    }

    /// Writes the first `n` unconsumed bytes to `sink` and consumes them.
    pub async fn write_to<W: AsyncWriteRent>(&mut self, sink: &mut W, n: usize) -> io::Result<()> {
        let n = n.min(self.len());
        let (buf, pos) = self.lend();
        let (result, slice) = sink.write_all(buf.slice(pos..pos + n)).await;
        self.restore(slice.into_inner(), pos);
        result?;
        self.consume(n);
        Ok(())
    }

    /// Appends bytes that did not come from a read (an HTTP/2 stream's request head).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Hands the buffer to an I/O operation. Until [`ReadBuf::restore`], this `ReadBuf` is
    /// empty and consistent, so dropping the operation (a timeout) leaves a valid empty buffer.
    fn lend(&mut self) -> (Vec<u8>, usize) {
        (std::mem::take(&mut self.buf), std::mem::take(&mut self.pos))
    }

    fn restore(&mut self, buf: Vec<u8>, pos: usize) {
        self.buf = buf;
        self.pos = pos.min(self.buf.len());
    }

    fn make_room(&mut self, max_capacity: usize) {
        if self.buf.capacity() - self.buf.len() >= MIN_READ {
            return;
        }
        if self.pos > 0 {
            self.compact();
        }
        let spare = self.buf.capacity() - self.buf.len();
        if spare < MIN_READ && self.buf.capacity() < max_capacity {
            let target = (self.buf.capacity() * 2).clamp(MIN_READ * 2, max_capacity);
            self.buf.reserve_exact(target - self.buf.len());
        }
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(self.buf.len() - self.pos);
            self.pos = 0;
        }
    }
}

/// The initialized bytes of an owned monoio buffer, for writers that copy them elsewhere
/// (a TLS session, an HTTP/2 frame) instead of handing the buffer to the kernel.
#[allow(unsafe_code)]
pub fn io_buf_bytes<T: IoBuf>(buf: &T) -> &[u8] {
    // SAFETY: `IoBuf` (an unsafe trait) guarantees that `read_ptr` points to `bytes_init`
    // initialized bytes that stay valid while `buf` is alive and unmoved; the returned slice
    // borrows `buf`, so it cannot outlive or move it. monoio offers no safe view of a generic
    // `IoBuf`.
    unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) }
}

/// Writes all of `out` to `sink` and gives the (cleared) buffer back for reuse.
pub async fn write_all_reuse<W: AsyncWriteRent>(sink: &mut W, out: &mut Vec<u8>) -> io::Result<()> {
    let buf = std::mem::take(out);
    let (result, mut buf) = sink.write_all(buf).await;
    buf.clear();
    *out = buf;
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_everything_resets_to_the_start() {
        let mut rb = ReadBuf::with_capacity(16);
        rb.buf.extend_from_slice(b"abcdef");
        rb.consume(2);
        assert_eq!(rb.data(), b"cdef");
        rb.consume(4);
        assert!(rb.is_empty());
        assert_eq!(rb.pos, 0);
        assert!(rb.buf.is_empty());
    }

    #[test]
    fn make_room_compacts_before_growing() {
        let mut rb = ReadBuf::with_capacity(MIN_READ * 2);
        rb.buf.resize(MIN_READ * 2 - 10, b'x');
        rb.consume(MIN_READ * 2 - 20);
        let cap = rb.capacity();
        rb.make_room(cap);
        assert_eq!(rb.len(), 10);
        assert_eq!(rb.capacity(), cap);
    }

    #[test]
    fn a_dropped_read_leaves_a_consistent_empty_buffer() {
        let mut rb = ReadBuf::with_capacity(16);
        rb.buf.extend_from_slice(b"abcdef");
        rb.consume(2);
        let lent = rb.lend();
        drop(lent);
        assert_eq!(rb.len(), 0);
        assert!(rb.data().is_empty());
        rb.consume(10);
        assert!(rb.is_empty());
    }

    #[test]
    fn append_takes_what_fits_and_grows_to_the_maximum() {
        let mut rb = ReadBuf::with_capacity(MIN_READ);
        assert_eq!(rb.append(&[1; MIN_READ], MIN_READ * 2), MIN_READ);
        assert_eq!(rb.append(&[2; MIN_READ * 4], MIN_READ * 2), MIN_READ);
        assert_eq!(rb.len(), MIN_READ * 2);
        assert_eq!(rb.append(&[3; 8], MIN_READ * 2), 0, "full at the maximum");
    }

    #[test]
    fn make_room_grows_up_to_the_maximum() {
        let mut rb = ReadBuf::with_capacity(MIN_READ);
        rb.buf.resize(MIN_READ, b'x');
        rb.make_room(MIN_READ * 8);
        assert!(rb.capacity() >= MIN_READ * 2);
        assert!(rb.capacity() <= MIN_READ * 8);
        assert_eq!(rb.len(), MIN_READ);
    }
}
