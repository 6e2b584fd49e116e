//! Test bodies: a deterministic byte pattern to stream, and a checksum that both sides of a
//! transfer compute chunk by chunk, so a large body is checked without ever being held whole.

use std::io::{self, Read, Write};
use std::sync::OnceLock;

/// The pattern repeats with a prime period so a dropped, duplicated or reordered buffer of any
/// power-of-two size changes the checksum.
const PERIOD: usize = 65_521;

fn block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    })
}

/// Writes `len` bytes of the pattern to `out`, in buffers of at most 64 KiB.
pub fn write_pattern(out: &mut impl Write, len: u64) -> io::Result<()> {
    let block = block();
    let mut pos: u64 = 0;
    while pos < len {
        let start = (pos % PERIOD as u64) as usize;
        let n = (block.len() - start).min((len - pos) as usize);
        out.write_all(&block[start..start + n])?;
        pos += n as u64;
    }
    Ok(())
}

/// Calls `f` with successive buffers holding the first `len` bytes of the pattern.
pub fn for_each_pattern_chunk(
    len: u64,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let block = block();
    let mut pos: u64 = 0;
    while pos < len {
        let start = (pos % PERIOD as u64) as usize;
        let n = (block.len() - start).min((len - pos) as usize);
        f(&block[start..start + n])?;
        pos += n as u64;
    }
    Ok(())
}

/// The first `len` bytes of the pattern, for small bodies.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    write_pattern(&mut v, len as u64).expect("writing to a Vec");
    v
}

/// The checksum of the first `len` bytes of the pattern.
pub fn pattern_sum(len: u64) -> Checksum {
    let mut sum = Checksum::new();
    write_pattern(&mut sum, len).expect("checksum never fails");
    sum
}

/// An order-sensitive 64-bit checksum whose value does not depend on how the bytes were split
/// into buffers. Works on 8-byte words so that it stays fast in debug builds.
#[derive(Clone, Copy)]
pub struct Checksum {
    state: u64,
    len: u64,
    pending: [u8; 8],
    pending_len: usize,
}

impl PartialEq for Checksum {
    fn eq(&self, other: &Self) -> bool {
        self.hex() == other.hex()
    }
}

impl Eq for Checksum {}

impl std::fmt::Debug for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checksum({} bytes, {})", self.len, self.hex())
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

impl Checksum {
    pub fn new() -> Self {
        Checksum {
            state: 0xcbf2_9ce4_8422_2325,
            len: 0,
            pending: [0; 8],
            pending_len: 0,
        }
    }

    fn mix(&mut self, word: u64) {
        self.state = (self.state ^ word)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.pending_len > 0 {
            let take = (8 - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < 8 {
                return;
            }
            let word = u64::from_le_bytes(self.pending);
            self.mix(word);
            self.pending_len = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let word = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            self.mix(word);
        }
        let rest = words.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The checksum as 16 hex digits.
    pub fn hex(&self) -> String {
        let mut copy = *self;
        let mut last = [0u8; 8];
        last[..copy.pending_len].copy_from_slice(&copy.pending[..copy.pending_len]);
        copy.mix(u64::from_le_bytes(last));
        copy.mix(copy.len);
        format!("{:016x}", copy.state)
    }
}

impl Write for Checksum {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads `reader` to its end into a checksum, in 64 KiB buffers.
pub fn sum_reader(reader: &mut impl Read) -> io::Result<Checksum> {
    let mut sum = Checksum::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(sum),
            Ok(n) => sum.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The checksum of a byte slice.
pub fn sum_of(data: &[u8]) -> Checksum {
    let mut sum = Checksum::new();
    sum.update(data);
    sum
}
