//! Content codings (gzip, br, zstd) over well-kept crates: streaming encoders a worker reuses
//! between responses, and bounded decoding of request bodies.
//!
//! - gzip: `flate2` with the zlib-rs backend; one `Compress` per worker and level, `reset`
//!   between responses (no allocation after the first).
//! - zstd: the `zstd` crate's raw streaming encoder; one compression context per worker and
//!   level, re-initialised between responses. Levels stop at 19, whose window (8 MiB, log 23)
//!   is the largest RFC 9659 allows for HTTP; decoding refuses larger windows.
//! - br: the `brotli` crate's writer, which has no reset: one encoder per response, window
//!   1 MiB (lgwin 20; small windows make rust-brotli many times slower at q ≥ 5).
//!
//! Encoders compress each input piece without flushing: output comes out in deflate blocks
//! or zstd/brotli blocks as the codec decides, which keeps the ratio of a one-shot
//! compression. The price is latency for a slowly streamed body: the client sees compressed
//! bytes once a block is complete (see docs/shaping.md, Compression).

use std::cell::RefCell;
use std::io::{self, Read, Write};

use crate::policy::compress::Coding;

/// The spare room the encoders make in an output buffer before each codec call.
const OUT_STEP: usize = 16 * 1024;
/// Encoders a worker keeps for reuse. An encoder is held for a whole response (across the
/// relay's reads and writes), so a worker compressing many responses at once needs as many:
/// with 8 kept, 64 concurrent gzip responses made and freed a ~0.3 MB gzip state per
/// response, and the page faults tripled the kernel time per request (loadtest s15,
/// 100 → 20 µs with 128). At most 128 × ~0.3 MB stays allocated per worker, and only after
/// that many responses were compressed at once.
const KEPT_ENCODERS: usize = 128;
/// brotli's window: 2^20 bytes.
const BROTLI_LGWIN: u32 = 20;
/// The largest zstd window log RFC 9659 allows (8 MiB).
pub const ZSTD_MAX_WINDOW_LOG: u32 = 23;

/// A streaming encoder for one response at a time.
pub struct Encoder {
    level: u32,
    kind: Kind,
}

enum Kind {
    Gzip(flate2::Compress),
    Zstd(zstd::stream::raw::Encoder<'static>),
    Br(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("coding", &self.coding())
            .field("level", &self.level)
            .finish()
    }
}

impl Encoder {
    /// A fresh encoder for `coding` at `level` (within the coding's range).
    pub fn new(coding: Coding, level: u32) -> io::Result<Encoder> {
        let kind = match coding {
            Coding::Gzip => Kind::Gzip(flate2::Compress::new_gzip(
                flate2::Compression::new(level),
                15,
            )),
            Coding::Zstd => {
                let level = i32::try_from(level).map_err(io::Error::other)?;
                Kind::Zstd(zstd::stream::raw::Encoder::new(level)?)
            }
            Coding::Br => Kind::Br(Some(brotli_writer(level))),
        };
        Ok(Encoder { level, kind })
    }

    /// The coding this encoder produces.
    pub fn coding(&self) -> Coding {
        match self.kind {
            Kind::Gzip(_) => Coding::Gzip,
            Kind::Zstd(_) => Coding::Zstd,
            Kind::Br(_) => Coding::Br,
        }
    }

    /// Compresses `input`, appending whatever output is ready to `out`.
    pub fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.kind {
            Kind::Gzip(c) => deflate(c, input, out, flate2::FlushCompress::None),
            Kind::Zstd(e) => zstd_run(e, input, out),
            Kind::Br(w) => {
                let w = w.get_or_insert_with(|| brotli_writer(self.level));
                w.write_all(input)?;
                out.append(w.get_mut());
                Ok(())
            }
        }
    }

    /// Ends the stream: appends the rest of the output (trailer included) to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.kind {
            Kind::Gzip(c) => deflate(c, &[], out, flate2::FlushCompress::Finish),
            Kind::Zstd(e) => zstd_finish(e, out),
            Kind::Br(w) => {
                let w = w.take().unwrap_or_else(|| brotli_writer(self.level));
                out.extend_from_slice(&w.into_inner());
                Ok(())
            }
        }
    }

    /// Makes the encoder ready for the next response (keeps its allocations where the
    /// crate allows).
    pub fn reset(&mut self) -> io::Result<()> {
        use zstd::stream::raw::Operation as _;
        match &mut self.kind {
            Kind::Gzip(c) => c.reset(),
            Kind::Zstd(e) => e.reinit()?,
            Kind::Br(w) => *w = None,
        }
        Ok(())
    }

    /// Compresses `input` whole into `out` (resetting first): the one-shot form.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.reset()?;
        self.data(input, out)?;
        self.finish(out)
    }
}

fn brotli_writer(level: u32) -> Box<brotli::CompressorWriter<Vec<u8>>> {
    Box::new(brotli::CompressorWriter::new(
        Vec::new(),
        4096,
        level,
        BROTLI_LGWIN,
    ))
}

/// Makes at least [`OUT_STEP`] bytes of spare room in `out`.
fn make_room(out: &mut Vec<u8>) {
    if out.capacity() - out.len() < OUT_STEP {
        out.reserve(OUT_STEP);
    }
}

fn deflate(
    c: &mut flate2::Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    flush: flate2::FlushCompress,
) -> io::Result<()> {
    loop {
        make_room(out);
        let before = c.total_in();
        let status = c
            .compress_vec(input, out, flush)
            .map_err(io::Error::other)?;
        let used = usize::try_from(c.total_in() - before).map_err(io::Error::other)?;
        input = input.get(used..).unwrap_or_default();
        let done = match flush {
            flate2::FlushCompress::Finish => status == flate2::Status::StreamEnd,
            _ => input.is_empty(),
        };
        if done {
            return Ok(());
        }
    }
}

fn zstd_run(
    e: &mut zstd::stream::raw::Encoder<'static>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    use zstd::stream::raw::{InBuffer, Operation as _, OutBuffer};
    let mut src = InBuffer::around(input);
    while src.pos() < input.len() {
        make_room(out);
        let mut dst: &mut Vec<u8> = out;
        let pos = dst.len();
        let mut buf = OutBuffer::around_pos(&mut dst, pos);
        e.run(&mut src, &mut buf)?;
    }
    Ok(())
}

fn zstd_finish(e: &mut zstd::stream::raw::Encoder<'static>, out: &mut Vec<u8>) -> io::Result<()> {
    use zstd::stream::raw::{Operation as _, OutBuffer};
    loop {
        make_room(out);
        let mut dst: &mut Vec<u8> = out;
        let pos = dst.len();
        let mut buf = OutBuffer::around_pos(&mut dst, pos);
        if e.finish(&mut buf, true)? == 0 {
            return Ok(());
        }
    }
}

/// A worker's encoders kept for reuse. Only its worker touches it; an encoder is taken out
/// for the length of a response (across awaits) and given back after, so no borrow is held.
#[derive(Debug, Default)]
pub struct EncoderPool {
    free: RefCell<Vec<Encoder>>,
}

impl EncoderPool {
    /// An encoder for `coding` at `level`: a kept one if there is one, else a new one.
    pub fn take(&self, coding: Coding, level: u32) -> io::Result<Encoder> {
        let kept = {
            let mut free = self.free.borrow_mut();
            free.iter()
                .position(|e| e.coding() == coding && e.level == level)
                .map(|i| free.swap_remove(i))
        };
        match kept {
            Some(e) => Ok(e),
            None => Encoder::new(coding, level),
        }
    }

    /// Gives an encoder back for the next response (reset; dropped if the pool is full or
    /// the reset failed).
    pub fn give(&self, mut encoder: Encoder) {
        if encoder.reset().is_err() {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < KEPT_ENCODERS {
            free.push(encoder);
        }
    }
}

/// A streaming decoder: coded pieces in, decoded bytes out (a response transform decodes a
/// compressed upstream body this way before reading it as JSON). zstd windows are held to
/// RFC 9659's 8 MiB.
pub struct Decoder(Decoding);

enum Decoding {
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
    Br(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

impl Decoder {
    /// A decoder for `coding`.
    pub fn new(coding: Coding) -> io::Result<Decoder> {
        Ok(Decoder(match coding {
            Coding::Gzip => {
                Decoding::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Vec::new())))
            }
            Coding::Br => Decoding::Br(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096))),
            Coding::Zstd => {
                let mut raw = zstd::stream::raw::Decoder::new()?;
                raw.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(
                    ZSTD_MAX_WINDOW_LOG,
                ))?;
                Decoding::Zstd(zstd::stream::write::Decoder::with_decoder(Vec::new(), raw))
            }
        }))
    }

    /// Decodes the next coded piece, appending what it decodes to to `out`.
    pub fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.0 {
            Decoding::Gzip(d) => d.write_all(input)?,
            Decoding::Br(d) => d.write_all(input)?,
            Decoding::Zstd(d) => d.write_all(input)?,
        }
        self.drain(out);
        Ok(())
    }

    /// The coded body ended: appends the rest to `out`; a truncated body is an error.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.0 {
            Decoding::Gzip(d) => d.try_finish()?,
            Decoding::Br(d) => d.close()?,
            Decoding::Zstd(d) => d.flush()?,
        }
        self.drain(out);
        Ok(())
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        let decoded = match &mut self.0 {
            Decoding::Gzip(d) => d.get_mut(),
            Decoding::Br(d) => d.get_mut(),
            Decoding::Zstd(d) => d.get_mut(),
        };
        out.append(decoded);
    }
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The decoded body passes the cap.
    #[error("decoded body larger than {0} bytes")]
    TooLarge(u64),
    /// The body is not valid in its coding.
    #[error("malformed {coding} body: {source}")]
    Malformed {
        /// The coding.
        coding: &'static str,
        /// What the decoder said.
        source: io::Error,
    },
}

/// Decodes `input` (coded as `coding`) into `out`, holding at most `cap` decoded bytes: a
/// body that decodes to more is refused as soon as it passes the cap (a zip bomb costs at
/// most `cap` bytes of memory and the CPU to produce them).
pub fn decode(
    coding: Coding,
    input: &[u8],
    cap: u64,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let malformed = |source| DecodeError::Malformed {
        coding: coding.token(),
        source,
    };
    let limit = cap.saturating_add(1);
    let read = match coding {
        Coding::Gzip => flate2::read::MultiGzDecoder::new(input)
            .take(limit)
            .read_to_end(out),
        Coding::Br => brotli::Decompressor::new(input, 4096)
            .take(limit)
            .read_to_end(out),
        Coding::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input).map_err(malformed)?;
            d.window_log_max(ZSTD_MAX_WINDOW_LOG).map_err(malformed)?;
            d.take(limit).read_to_end(out)
        }
    };
    read.map_err(malformed)?;
    if out.len() as u64 > cap {
        out.clear();
        return Err(DecodeError::TooLarge(cap));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..20_000)
            .flat_map(|i| format!("{{\"id\":{i},\"name\":\"user {i}\"}},").into_bytes())
            .collect()
    }

    #[test]
    fn the_streaming_decoder_decodes_every_coding_in_pieces() {
        let body = sample();
        let pool = EncoderPool::default();
        for coding in Coding::ALL {
            let mut encoder = pool.take(coding, 3).expect("encoder");
            let mut coded = Vec::new();
            encoder.data(&body, &mut coded).expect("data");
            encoder.finish(&mut coded).expect("finish");
            let mut decoder = Decoder::new(coding).expect("decoder");
            let mut out = Vec::new();
            for piece in coded.chunks(777) {
                decoder.data(piece, &mut out).expect("piece");
            }
            decoder.finish(&mut out).expect("finish");
            assert_eq!(out, body, "{coding:?}");
            let mut truncated = Decoder::new(coding).expect("decoder");
            let mut out = Vec::new();
            let cut = truncated
                .data(&coded[..coded.len() / 2], &mut out)
                .and_then(|()| truncated.finish(&mut out));
            if coding != Coding::Zstd {
                assert!(cut.is_err(), "{coding:?}: a truncated body is an error");
            }
        }
    }

    #[test]
    fn every_coding_round_trips_in_pieces_and_after_reuse() {
        let body = sample();
        let pool = EncoderPool::default();
        for coding in Coding::ALL {
            for _ in 0..2 {
                let mut e = pool.take(coding, coding.default_level()).expect("encoder");
                let mut out = Vec::new();
                for piece in body.chunks(7000) {
                    e.data(piece, &mut out).expect("data");
                }
                e.finish(&mut out).expect("finish");
                pool.give(e);
                assert!(out.len() < body.len() / 4, "{coding:?}: {}", out.len());
                let mut back = Vec::new();
                decode(coding, &out, 1 << 30, &mut back).expect("decode");
                assert!(back == body, "{coding:?}");
            }
        }
        assert_eq!(pool.free.borrow().len(), 3);
    }

    #[test]
    fn decoding_stops_at_the_cap_and_refuses_garbage() {
        let zeros = vec![0u8; 10 << 20];
        for coding in Coding::ALL {
            let mut packed = Vec::new();
            Encoder::new(coding, coding.default_level())
                .expect("encoder")
                .compress(&zeros, &mut packed)
                .expect("compress");
            assert!(packed.len() < 64 * 1024, "{coding:?}: {}", packed.len());
            let mut out = Vec::new();
            let err = decode(coding, &packed, 1 << 20, &mut out).expect_err("over the cap");
            assert!(matches!(err, DecodeError::TooLarge(_)), "{coding:?}");
            assert!(out.capacity() <= 4 << 20, "{coding:?}: {}", out.capacity());
            let mut out = Vec::new();
            let err = decode(coding, b"not compressed at all", 1 << 20, &mut out);
            assert!(
                matches!(err, Err(DecodeError::Malformed { .. })),
                "{coding:?}"
            );
        }
    }

    #[test]
    fn zstd_frames_declare_windows_within_8_mib() {
        let body = sample();
        let mut packed = Vec::new();
        Encoder::new(Coding::Zstd, 19)
            .expect("encoder")
            .compress(&body, &mut packed)
            .expect("compress");
        let mut back = Vec::new();
        decode(Coding::Zstd, &packed, 1 << 30, &mut back).expect("decodes with window log 23");
        assert!(back == body);
    }
}
