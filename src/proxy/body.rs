//! Streams a message body from one connection to another with a bounded buffer.
//!
//! The source's unconsumed bytes are written straight from its input buffer (no copy); the
//! buffer never grows beyond `max_buffer`, so a body of any size passes in constant memory.
//! Chunked bodies are validated by the codec's decoder and passed through as they arrived,
//! or de-chunked for clients that cannot read chunked coding (HTTP/1.0).

use std::io;
use std::pin::pin;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::stages::BodyObserver;
use crate::http::{ChunkedDecoder, HttpError};
use crate::io_buf::{write_all_reuse, ReadBuf};
use crate::server::fairness::Budget;

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// After exactly this many bytes.
    Length(u64),
    /// After the last chunk and trailers.
    Chunked,
    /// When the source closes.
    Close,
}

/// How a relay behaves.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// Longest wait for the source to send more.
    pub read_idle: Duration,
    /// Longest wait for the sink to accept a write.
    pub write_timeout: Duration,
    /// Largest payload accepted (chunked bodies; lengths are checked before relaying).
    pub limit: Option<u64>,
    /// Largest input buffer.
    pub max_buffer: usize,
    /// Write only the chunk payloads, without chunked framing.
    pub dechunk: bool,
    /// The slowest the source may send, on average (client bodies; `None` for upstreams).
    pub min_rate: Option<MinRate>,
}

/// A floor under the average rate a body arrives at: a client that trickles its body (a
/// slow-body attack holds a connection and an upstream exchange for as long as it likes
/// while staying under any idle timeout) is cut off once it falls behind.
///
/// The body owes `bytes_per_sec` for every second past [`MIN_RATE_GRACE`] since it started;
/// bytes sent early count toward later seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes per second, at least 1.
    pub bytes_per_sec: u64,
    /// When the body started (its head was read).
    pub started: Instant,
}

/// Time a body may take before the minimum rate applies (connection ramp-up, a client
/// preparing its upload).
pub const MIN_RATE_GRACE: Duration = Duration::from_secs(2);

impl MinRate {
    /// The instant at which `received` bytes stop being enough.
    pub fn deadline(&self, received: u64) -> Instant {
        let nanos = u128::from(received) * 1_000_000_000 / u128::from(self.bytes_per_sec.max(1));
        let owed = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.started + MIN_RATE_GRACE + owed
    }

    /// The deadline of the next read: `idle` from now, or sooner where the rate would fail.
    pub fn read_deadline(rate: Option<&Self>, received: u64, idle: Duration) -> Instant {
        let idle_deadline = Instant::now() + idle;
        match rate {
            Some(rate) => idle_deadline.min(rate.deadline(received)),
            None => idle_deadline,
        }
    }
}

/// Why a relay stopped early, and on which side.
#[derive(Debug)]
pub enum RelayError {
    /// Reading the source failed.
    SourceIo(io::Error),
    /// The source closed before the body ended.
    SourceClosed,
    /// The source stalled beyond `read_idle`.
    SourceTimeout,
    /// The source sent invalid chunked framing.
    SourceFraming(HttpError),
    /// The body exceeds the limit.
    TooLarge,
    /// Writing to the sink failed or stalled.
    Sink(io::Error),
}

/// Relays one body from `source` (whose buffered bytes are in `buf`) to `sink`, returning
/// the bytes written. `scratch` is a reusable buffer for de-chunked output. `observer` sees
/// the payload (de-chunked) just before it is written: a response stage such as the cache
/// store; [`Unobserved`](super::stages::Unobserved) costs nothing.
pub async fn relay<S, D, O>(
    source: &mut S,
    buf: &mut ReadBuf,
    sink: &mut D,
    end: BodyEnd,
    opts: RelayOptions,
    scratch: &mut Vec<u8>,
    observer: &mut O,
) -> Result<u64, RelayError>
where
    S: AsyncReadRent,
    D: AsyncWriteRent,
    O: BodyObserver,
{
    let mut written = 0u64;
    // Bytes taken from the source, for the minimum rate (what was buffered counts too).
    let mut received = buf.len() as u64;
    let mut remaining = match end {
        BodyEnd::Length(n) => n,
        _ => u64::MAX,
    };
    let mut decoder = ChunkedDecoder::new();
    // A source and sink that never make us wait (legacy driver) must not keep the worker.
    let mut budget = Budget::new();
    // A body larger than the buffer moves in max_buffer pieces: few reads, few writes. One
    // of unknown length grows the buffer once a read fills it (a small chunked answer, such
    // as an h2 stream's, keeps its small fresh buffer).
    if matches!(end, BodyEnd::Length(n) if n > buf.capacity() as u64) {
        buf.grow_to(opts.max_buffer);
    }
    loop {
        if !buf.is_empty() {
            let done = match end {
                BodyEnd::Length(_) => {
                    let n = remaining.min(buf.len() as u64) as usize;
                    observer.payload(&buf.data()[..n]);
                    write_timed(buf, sink, n, opts.write_timeout).await?;
                    remaining -= n as u64;
                    written += n as u64;
                    remaining == 0
                }
                BodyEnd::Close => {
                    let n = buf.len();
                    observer.payload(buf.data());
                    write_timed(buf, sink, n, opts.write_timeout).await?;
                    written += n as u64;
                    false
                }
                BodyEnd::Chunked => {
                    let (n, done) =
                        relay_chunked(buf, sink, &mut decoder, &opts, scratch, observer).await?;
                    written += n;
                    done
                }
            };
            if done {
                return Ok(written);
            }
        } else if remaining == 0 {
            return Ok(written);
        }
        let deadline = MinRate::read_deadline(opts.min_rate.as_ref(), received, opts.read_idle);
        let read = {
            let read = pin!(monoio::time::timeout_at(
                deadline.into(),
                buf.fill(source, opts.max_buffer)
            ));
            budget.run(read).await
        };
        match read {
            Err(_) => return Err(RelayError::SourceTimeout),
            Ok(Err(e)) => return Err(RelayError::SourceIo(e)),
            Ok(Ok(0)) if end == BodyEnd::Close => return Ok(written),
            Ok(Ok(0)) => return Err(RelayError::SourceClosed),
            Ok(Ok(n)) => {
                received += n as u64;
                if buf.len() == buf.capacity() {
                    buf.grow_to(opts.max_buffer);
                }
            }
        }
    }
}

/// Feeds the buffered bytes to the decoder and forwards what belongs to the body.
/// Returns the bytes written and whether the body is complete.
async fn relay_chunked<D: AsyncWriteRent, O: BodyObserver>(
    buf: &mut ReadBuf,
    sink: &mut D,
    decoder: &mut ChunkedDecoder,
    opts: &RelayOptions,
    scratch: &mut Vec<u8>,
    observer: &mut O,
) -> Result<(u64, bool), RelayError> {
    scratch.clear();
    let data = buf.data();
    let progress = if opts.dechunk {
        decoder.advance(data, &mut |range| {
            if let Some(piece) = data.get(range) {
                scratch.extend_from_slice(piece);
            }
        })
    } else if O::OBSERVES {
        decoder.advance(data, &mut |range| {
            if let Some(piece) = data.get(range) {
                observer.payload(piece);
            }
        })
    } else {
        decoder.advance(data, &mut |_| {})
    }
    .map_err(RelayError::SourceFraming)?;
    if opts.dechunk {
        observer.payload(scratch);
    }
    if let Some(limit) = opts.limit {
        if decoder.payload_bytes() > limit {
            return Err(RelayError::TooLarge);
        }
    }
    let written = if opts.dechunk {
        scratch.len()
    } else {
        progress.consumed
    } as u64;
    if opts.dechunk {
        buf.consume(progress.consumed);
        if !scratch.is_empty() {
            let write = write_all_reuse(sink, scratch);
            match monoio::time::timeout(opts.write_timeout, write).await {
                Err(_) => return Err(RelayError::Sink(timed_out())),
                Ok(result) => result.map_err(RelayError::Sink)?,
            }
        }
    } else {
        write_timed(buf, sink, progress.consumed, opts.write_timeout).await?;
    }
    Ok((written, progress.done))
}

async fn write_timed<D: AsyncWriteRent>(
    buf: &mut ReadBuf,
    sink: &mut D,
    n: usize,
    timeout: Duration,
) -> Result<(), RelayError> {
    if n == 0 {
        return Ok(());
    }
    match monoio::time::timeout(timeout, buf.write_to(sink, n)).await {
        Err(_) => Err(RelayError::Sink(timed_out())),
        Ok(result) => result.map_err(RelayError::Sink),
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "write timed out")
}
