//! Chunked transfer-coding: a validating decoder that reports where the message ends.

use super::HttpError;

/// What one call to [`ChunkedDecoder::advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedProgress {
    /// Bytes of the input that belong to this body (framing included).
    pub consumed: usize,
    /// Whether the last chunk and the trailer section have been read.
    pub done: bool,
}

/// Validating chunked decoder.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Payload bytes decoded so far.
    pub fn payload_bytes(&self) -> u64 {
        0
    }

    /// Consumes framing and data from `input`, calling `on_data` with the range of each
    /// payload piece inside `input`. Stops at the end of the body.
    pub fn advance(
        &mut self,
        _input: &[u8],
        _on_data: &mut dyn FnMut(std::ops::Range<usize>),
    ) -> Result<ChunkedProgress, HttpError> {
        todo!("http helper")
    }
}
