//! W3C Trace Context (level 1): `traceparent` and `tracestate`.
//!
//! The gateway is one hop of the trace. A valid client `traceparent` keeps its trace id and
//! flags; anything else (absent, malformed, several fields) starts a new trace. Either way the
//! upstream gets `traceparent: 00-{trace-id}-{our span id}-{flags}`, with a fresh span id as
//! the parent id, and never the client's field as is.
//!
//! Choices made here (documented in docs/operations.md, "Tracing"):
//! - A trace the gateway starts is marked sampled (`01`). ringgate does not sample itself, so
//!   it leaves the decision to record to the services behind it rather than silently turning
//!   tracing off for every request that arrives without a context.
//! - Version `00` flags are passed on unchanged. A future version is read as version `00`
//!   (its first four fields) and only its sampled bit is kept, as the specification asks.
//! - `tracestate` is forwarded (all its fields joined, in order) only with a valid client
//!   `traceparent`, and only if it looks valid: at most [`MAX_TRACESTATE`] bytes of printable
//!   ASCII. It describes the client's trace, so it is dropped when a new trace starts.
//!
//! Ids come from a per-worker generator (like request ids): random per-process seeds and a
//! counter, mixed through a cheap hash. Everything is fixed-size arrays: nothing allocates.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use crate::http::headers::trim_ows;
use crate::http::HeaderSpan;

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;
/// Longest `tracestate` (all fields joined) that is passed through.
pub const MAX_TRACESTATE: usize = 512;
/// The sampled bit of the trace flags.
const SAMPLED: u8 = 0x01;
/// Flags of a trace the gateway starts: sampled.
const NEW_TRACE_FLAGS: u8 = SAMPLED;

/// A client `traceparent` that parsed, as lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The version byte (`00` today; anything but `ff`).
    pub version: u8,
    /// 32 hex digits, not all zero.
    pub trace_id: [u8; 32],
    /// 16 hex digits, not all zero: the client's span.
    pub parent_id: [u8; 16],
    /// The trace flags.
    pub flags: u8,
}

/// Parses a `traceparent` value: `{version}-{trace-id}-{parent-id}-{flags}` in lower-case hex.
///
/// Refused: upper-case hex, wrong field lengths, all-zero ids, version `ff`, and a version-00
/// value with anything after the flags. A higher version may carry more fields after a `-`:
/// its first four fields are read.
pub fn parse_traceparent(value: &[u8]) -> Option<TraceParent> {
    let value = trim_ows(value);
    let head = value.get(..TRACEPARENT_LEN)?;
    let version = hex_byte(head.get(0..2)?)?;
    if version == 0xff {
        return None;
    }
    match value.get(TRACEPARENT_LEN) {
        None => {}
        Some(b'-') if version != 0 => {}
        Some(_) => return None,
    }
    if head[2] != b'-' || head[35] != b'-' || head[52] != b'-' {
        return None;
    }
    let trace_id: [u8; 32] = head.get(3..35)?.try_into().ok()?;
    let parent_id: [u8; 16] = head.get(36..52)?.try_into().ok()?;
    let flags = hex_byte(head.get(53..55)?)?;
    if !is_id(&trace_id) || !is_id(&parent_id) {
        return None;
    }
    Some(TraceParent {
        version,
        trace_id,
        parent_id,
        flags,
    })
}

/// Whether the `tracestate` fields in `headers` may be passed through: at least one non-empty
/// value, and together (joined with `, `) at most [`MAX_TRACESTATE`] bytes of printable ASCII.
pub fn tracestate_acceptable(buf: &[u8], headers: &[HeaderSpan]) -> bool {
    let mut total = 0usize;
    for h in headers
        .iter()
        .filter(|h| h.name.of(buf).eq_ignore_ascii_case(b"tracestate"))
    {
        let value = trim_ows(h.value.of(buf));
        if value.is_empty() {
            continue;
        }
        if !value.iter().all(|&b| (b' '..=b'~').contains(&b)) {
            return false;
        }
        total += if total == 0 { 0 } else { 2 } + value.len();
        if total > MAX_TRACESTATE {
            return false;
        }
    }
    total > 0
}

/// The trace context of one request: what the gateway sends upstream and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 32],
    span_id: [u8; 16],
    flags: u8,
    from_client: bool,
}

impl TraceContext {
    /// The context for a request whose `traceparent` (the first of the fields, if any) is
    /// `client` and that appears `fields` times: continues a valid, single client trace, else
    /// starts a new one. Either way the span id is new.
    pub fn for_request(client: Option<&[u8]>, fields: usize, ids: &TraceIds) -> Self {
        let (span_id, fresh) = ids.next();
        match client.filter(|_| fields == 1).and_then(parse_traceparent) {
            Some(parent) => Self {
                trace_id: parent.trace_id,
                span_id,
                flags: if parent.version == 0 {
                    parent.flags
                } else {
                    parent.flags & SAMPLED
                },
                from_client: true,
            },
            None => Self {
                trace_id: fresh,
                span_id,
                flags: NEW_TRACE_FLAGS,
                from_client: false,
            },
        }
    }

    /// The trace id, 32 lower-case hex digits (for the access log).
    pub fn trace_id(&self) -> &[u8; 32] {
        &self.trace_id
    }

    /// The gateway's span id, 16 lower-case hex digits (the parent id sent upstream).
    pub fn span_id(&self) -> &[u8; 16] {
        &self.span_id
    }

    /// The trace flags sent upstream.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the trace continues the client's (else the gateway started it).
    pub fn from_client(&self) -> bool {
        self.from_client
    }

    /// The `traceparent` value for the upstream request.
    pub fn traceparent(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[0..2].copy_from_slice(b"00");
        out[3..35].copy_from_slice(&self.trace_id);
        out[36..52].copy_from_slice(&self.span_id);
        out[53] = HEX[usize::from(self.flags >> 4)];
        out[54] = HEX[usize::from(self.flags & 0xf)];
        out
    }
}

/// Per-worker generator of trace and span ids.
#[derive(Debug)]
pub struct TraceIds {
    seeds: [u64; 3],
    counter: Cell<u64>,
}

impl TraceIds {
    /// A generator for worker `worker`, seeded randomly per process.
    pub fn new(worker: usize) -> Self {
        let state = RandomState::new();
        let seed = |tag: u8| {
            let mut hasher = state.build_hasher();
            hasher.write_usize(worker);
            hasher.write_u8(tag);
            hasher.finish()
        };
        Self {
            seeds: [seed(0), seed(1), seed(2)],
            counter: Cell::new(0),
        }
    }

    /// A new span id and a new trace id, as lower-case hex; neither is ever all zeros.
    pub fn next(&self) -> ([u8; 16], [u8; 32]) {
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        let [a, b, c] = self.seeds.map(|seed| mix(seed ^ n));
        let mut span = [0; 16];
        hex_u64(&mut span, if a == 0 { 1 } else { a });
        let mut trace = [0; 32];
        hex_u64(&mut trace[..16], b);
        hex_u64(&mut trace[16..], if b == 0 && c == 0 { 1 } else { c });
        (span, trace)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// splitmix64's finalizer: a cheap bijective mix of a 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes `value` as 16 lower-case hex digits into `out` (which is 16 bytes long).
fn hex_u64(out: &mut [u8], value: u64) {
    for (i, digit) in out.iter_mut().enumerate() {
        let shift = 60 - 4 * i as u32;
        *digit = HEX[((value >> shift) & 0xf) as usize];
    }
}

/// The value of one lower-case hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// The byte that two lower-case hex digits spell.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    match digits {
        [hi, lo] => Some(hex_digit(*hi)? << 4 | hex_digit(*lo)?),
        _ => None,
    }
}

/// Whether `id` is lower-case hex and not all zeros.
fn is_id(id: &[u8]) -> bool {
    id.iter().all(|&b| hex_digit(b).is_some()) && id.iter().any(|&b| b != b'0')
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
