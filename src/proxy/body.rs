//! Streams a message body from one connection to another with a bounded buffer.
//!
//! The source's unconsumed bytes are written straight from its input buffer (no copy); the
//! buffer never grows beyond `max_buffer`, so a body of any size passes in constant memory.
//! Chunked bodies are validated by the codec's decoder and passed through as they arrived,
//! or de-chunked for clients that cannot read chunked coding (HTTP/1.0).

use std::io;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::http::{ChunkedDecoder, HttpError};
use crate::io_buf::{write_all_reuse, ReadBuf};

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
/// the bytes written. `scratch` is a reusable buffer for de-chunked output.
pub async fn relay<S, D>(
    source: &mut S,
    buf: &mut ReadBuf,
    sink: &mut D,
    end: BodyEnd,
    opts: RelayOptions,
    scratch: &mut Vec<u8>,
) -> Result<u64, RelayError>
where
    S: AsyncReadRent,
    D: AsyncWriteRent,
{
    let mut written = 0u64;
    let mut remaining = match end {
        BodyEnd::Length(n) => n,
        _ => u64::MAX,
    };
    let mut decoder = ChunkedDecoder::new();
    // A body larger than the buffer moves in max_buffer pieces: few reads, few writes.
    if remaining > buf.capacity() as u64 {
        buf.grow_to(opts.max_buffer);
    }
    loop {
        if !buf.is_empty() {
            let done = match end {
                BodyEnd::Length(_) => {
                    let n = remaining.min(buf.len() as u64) as usize;
                    write_timed(buf, sink, n, opts.write_timeout).await?;
                    remaining -= n as u64;
                    written += n as u64;
                    remaining == 0
                }
                BodyEnd::Close => {
                    let n = buf.len();
                    write_timed(buf, sink, n, opts.write_timeout).await?;
                    written += n as u64;
                    false
                }
                BodyEnd::Chunked => {
                    let (n, done) = relay_chunked(buf, sink, &mut decoder, &opts, scratch).await?;
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
        match monoio::time::timeout(opts.read_idle, buf.fill(source, opts.max_buffer)).await {
            Err(_) => return Err(RelayError::SourceTimeout),
            Ok(Err(e)) => return Err(RelayError::SourceIo(e)),
            Ok(Ok(0)) if end == BodyEnd::Close => return Ok(written),
            Ok(Ok(0)) => return Err(RelayError::SourceClosed),
            Ok(Ok(_)) => {}
        }
    }
}

/// Feeds the buffered bytes to the decoder and forwards what belongs to the body.
/// Returns the bytes written and whether the body is complete.
async fn relay_chunked<D: AsyncWriteRent>(
    buf: &mut ReadBuf,
    sink: &mut D,
    decoder: &mut ChunkedDecoder,
    opts: &RelayOptions,
    scratch: &mut Vec<u8>,
) -> Result<(u64, bool), RelayError> {
    scratch.clear();
    let data = buf.data();
    let progress = if opts.dechunk {
        decoder.advance(data, &mut |range| {
            if let Some(piece) = data.get(range) {
                scratch.extend_from_slice(piece);
            }
        })
    } else {
        decoder.advance(data, &mut |_| {})
    }
    .map_err(RelayError::SourceFraming)?;
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
