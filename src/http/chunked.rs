//! Chunked transfer-coding: a validating decoder that reports where the message ends.
//!
//! Lifecycle (RFC 9112 §7.1), one state per position in the grammar:
//!
//! ```text
//! SizeStart -> Size -> [Extension] -> SizeLf -> Data -> DataCr -> DataLf -> SizeStart ...
//!                                          \-- size 0 --> TrailerLineStart
//! TrailerLineStart -> TrailerName -> TrailerValue -> TrailerLf -> TrailerLineStart ...
//! TrailerLineStart -> EndLf -> Done
//! ```
//!
//! The decoder never buffers: it works on whatever slice it is given, byte by byte for framing
//! and in one piece for data, so a body may arrive in any split. It never allocates.

use super::error::ChunkedFault;
use super::headers::{is_field_value_byte, is_token_byte};
use super::HttpError;

/// Most hex digits in a chunk size: 16 digits fill a u64, so more could only overflow.
const MAX_SIZE_DIGITS: u8 = 16;
/// Bound on the chunk extensions of one size line.
pub const MAX_EXTENSION_BYTES: usize = 4 * 1024;
/// Bound on the whole trailer section.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// What one call to [`ChunkedDecoder::advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedProgress {
    /// Bytes of the input that belong to this body (framing included).
    pub consumed: usize,
    /// Whether the last chunk and the trailer section have been read.
    pub done: bool,
}

/// Where in the chunked grammar the decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Expecting the first hex digit of a chunk size.
    #[default]
    SizeStart,
    /// Inside the chunk size: more digits, `;` or CR.
    Size,
    /// Inside chunk extensions, until CR.
    Extension,
    /// CR of the size line seen, expecting LF.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Chunk data over, expecting CR.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerLineStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// CR of a trailer line seen, expecting LF.
    TrailerLf,
    /// CR of the final empty line seen, expecting LF.
    EndLf,
    /// The body is complete.
    Done,
}

/// Validating chunked decoder.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being read, then the data bytes left in the chunk.
    size: u64,
    digits: u8,
    extension_bytes: usize,
    trailer_bytes: usize,
    payload_bytes: u64,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes framing and data from `input`, calling `on_data` with the range of each
    /// payload piece inside `input`. Stops at the end of the body.
    ///
    /// Errors are [`HttpError::InvalidChunked`] (400); a caller reading an upstream body maps
    /// them to 502 itself. After `done`, further calls consume nothing.
    pub fn advance(
        &mut self,
        input: &[u8],
        on_data: &mut dyn FnMut(std::ops::Range<usize>),
    ) -> Result<ChunkedProgress, HttpError> {
        self.advance_inner(input, on_data, None)
    }

    /// [`ChunkedDecoder::advance`] that also hands every byte of the trailer section to
    /// `on_trailer` (the fields, each line with its CRLF, not the final empty line), for a
    /// caller that passes trailers on in another form (HTTP/2).
    pub fn advance_with_trailers(
        &mut self,
        input: &[u8],
        on_data: &mut dyn FnMut(std::ops::Range<usize>),
        on_trailer: &mut dyn FnMut(u8),
    ) -> Result<ChunkedProgress, HttpError> {
        self.advance_inner(input, on_data, Some(on_trailer))
    }

    fn advance_inner(
        &mut self,
        input: &[u8],
        on_data: &mut dyn FnMut(std::ops::Range<usize>),
        mut on_trailer: Option<&mut dyn FnMut(u8)>,
    ) -> Result<ChunkedProgress, HttpError> {
        let mut pos = 0;
        while pos < input.len() && self.state != State::Done {
            if self.state == State::Data {
                let available = (input.len() - pos) as u64;
                // Fits in usize: it is at most `available`, which came from a usize.
                let take = self.size.min(available) as usize;
                on_data(pos..pos + take);
                pos += take;
                self.size -= take as u64;
                self.payload_bytes = self.payload_bytes.saturating_add(take as u64);
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let Some(&byte) = input.get(pos) else { break };
            let before = self.state;
            self.state = self.step(byte).map_err(HttpError::InvalidChunked)?;
            if let Some(on_trailer) = on_trailer.as_mut() {
                let in_field = matches!(
                    before,
                    State::TrailerName | State::TrailerValue | State::TrailerLf
                ) || (before == State::TrailerLineStart
                    && self.state == State::TrailerName);
                if in_field {
                    on_trailer(byte);
                }
            }
            pos += 1;
        }
        Ok(ChunkedProgress {
            consumed: pos,
            done: self.state == State::Done,
        })
    }

    /// Payload bytes reported so far (framing excluded), for the caller's body limit.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Size of the chunk being read (or being declared) that has not been delivered yet: lets
    /// a caller refuse a body as soon as a declared chunk would pass its limit.
    pub fn pending_chunk_bytes(&self) -> u64 {
        match self.state {
            State::Size | State::Extension | State::SizeLf | State::Data => self.size,
            _ => 0,
        }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// One framing byte: the transition table of the grammar.
    fn step(&mut self, b: u8) -> Result<State, ChunkedFault> {
        use State::*;
        Ok(match (self.state, b) {
            (SizeStart, _) => {
                self.size = u64::from(hex_value(b).ok_or(ChunkedFault::InvalidSize)?);
                self.digits = 1;
                Size
            }
            (Size, b';') => {
                self.extension_bytes = 0;
                Extension
            }
            (Size | Extension, b'\r') => SizeLf,
            (Size | Extension | TrailerLineStart | TrailerValue, b'\n') => {
                return Err(ChunkedFault::InvalidLineEnding)
            }
            (Size, _) => self.add_digit(b)?,
            (Extension, _) => self.extension_byte(b)?,
            (SizeLf, b'\n') if self.size == 0 => TrailerLineStart,
            (SizeLf, b'\n') => Data,
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => SizeStart,
            (DataCr | DataLf, _) => return Err(ChunkedFault::MissingDataCrlf),
            (TrailerLineStart, b'\r') => EndLf,
            (TrailerLineStart | TrailerName, _) if is_token_byte(b) => {
                self.trailer_byte(TrailerName)?
            }
            (TrailerName, b':') => self.trailer_byte(TrailerValue)?,
            (TrailerValue, b'\r') => self.trailer_byte(TrailerLf)?,
            (TrailerValue, _) if is_field_value_byte(b) => self.trailer_byte(TrailerValue)?,
            (TrailerLineStart | TrailerName | TrailerValue, _) => {
                return Err(ChunkedFault::InvalidTrailer)
            }
            (TrailerLf, b'\n') => self.trailer_byte(TrailerLineStart)?,
            (EndLf, b'\n') => Done,
            (SizeLf | TrailerLf | EndLf, _) => return Err(ChunkedFault::InvalidLineEnding),
            // `advance` handles data in bulk and stops at `Done`.
            (Data | Done, _) => self.state,
        })
    }

    /// Another hex digit of the chunk size.
    fn add_digit(&mut self, b: u8) -> Result<State, ChunkedFault> {
        let digit = hex_value(b).ok_or(ChunkedFault::InvalidSize)?;
        self.digits += 1;
        if self.digits > MAX_SIZE_DIGITS {
            return Err(ChunkedFault::SizeOverflow);
        }
        self.size = self
            .size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(digit)))
            .ok_or(ChunkedFault::SizeOverflow)?;
        Ok(State::Size)
    }

    /// One byte of chunk extensions: anything but CTLs (HTAB allowed), bounded per line.
    fn extension_byte(&mut self, b: u8) -> Result<State, ChunkedFault> {
        if !is_field_value_byte(b) {
            return Err(ChunkedFault::InvalidExtension);
        }
        self.extension_bytes += 1;
        if self.extension_bytes > MAX_EXTENSION_BYTES {
            return Err(ChunkedFault::ExtensionTooLong);
        }
        Ok(State::Extension)
    }

    /// Counts one trailer byte against the bound, then moves to `next`.
    fn trailer_byte(&mut self, next: State) -> Result<State, ChunkedFault> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ChunkedFault::TrailerTooLarge);
        }
        Ok(next)
    }
}

/// The value of an ASCII hex digit.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;
