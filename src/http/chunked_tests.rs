//! Chunked decoder tests: every message in every split, one test per rejection rule.

use super::*;

/// Decodes `input` fed in the given pieces; returns (payload, consumed, done).
fn decode_pieces(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), HttpError> {
    let mut dec = ChunkedDecoder::new();
    let mut payload = Vec::new();
    let mut consumed = 0;
    let mut done = false;
    for piece in pieces {
        let mut offset = 0;
        while offset < piece.len() && !done {
            let rest = &piece[offset..];
            let progress = dec.advance(rest, &mut |r| payload.extend_from_slice(&rest[r]))?;
            offset += progress.consumed;
            consumed += progress.consumed;
            done = progress.done;
            if progress.consumed == 0 {
                break;
            }
        }
    }
    assert_eq!(dec.payload_bytes(), payload.len() as u64);
    Ok((payload, consumed, done))
}

fn decode(input: &[u8]) -> Result<(Vec<u8>, usize, bool), HttpError> {
    decode_pieces(&[input])
}

fn fault(input: &[u8]) -> ChunkedFault {
    match decode(input) {
        Err(HttpError::InvalidChunked(f)) => f,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

const VALID: &[(&[u8], &[u8])] = &[
    (b"0\r\n\r\n", b""),
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (
        b"a;name=value\r\n0123456789\r\n0;last\r\n\r\n",
        b"0123456789",
    ),
    (b"3;a;b=\"q\"\t\r\nabc\r\n0\r\n\r\n", b"abc"),
    (b"3\r\nabc\r\n0\r\nX-Trailer: yes\r\nY: \r\n\r\n", b"abc"),
    (b"0000000000000003\r\nabc\r\n0\r\n\r\n", b"abc"),
];

#[test]
fn decodes_valid_bodies_in_one_piece() {
    for (input, payload) in VALID {
        let (got, consumed, done) = decode(input).unwrap();
        assert_eq!(&got, payload);
        assert_eq!(consumed, input.len());
        assert!(done);
    }
}

#[test]
fn decodes_valid_bodies_byte_by_byte() {
    for (input, payload) in VALID {
        let pieces: Vec<&[u8]> = input.chunks(1).collect();
        let (got, consumed, done) = decode_pieces(&pieces).unwrap();
        assert_eq!(&got, payload);
        assert_eq!(consumed, input.len());
        assert!(done);
    }
}

#[test]
fn decodes_valid_bodies_in_all_two_way_splits() {
    for (input, payload) in VALID {
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            let (got, consumed, done) = decode_pieces(&[a, b]).unwrap();
            assert_eq!(&got, payload, "cut {cut}");
            assert_eq!(consumed, input.len());
            assert!(done);
        }
    }
}

#[test]
fn stops_at_the_end_of_the_body() {
    let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let mut dec = ChunkedDecoder::new();
    let progress = dec.advance(input, &mut |_| {}).unwrap();
    assert!(progress.done);
    assert_eq!(progress.consumed, 13);
    let again = dec.advance(&input[13..], &mut |_| {}).unwrap();
    assert_eq!(again.consumed, 0);
    assert!(again.done);
}

#[test]
fn reports_incomplete_bodies_as_not_done() {
    let (got, consumed, done) = decode(b"5\r\nhel").unwrap();
    assert_eq!(got, b"hel");
    assert_eq!(consumed, 6);
    assert!(!done);
}

#[test]
fn tracks_pending_chunk_bytes_for_body_limits() {
    let mut dec = ChunkedDecoder::new();
    dec.advance(b"ffff", &mut |_| {}).unwrap();
    assert_eq!(dec.pending_chunk_bytes(), 0xffff);
}

#[test]
fn rejects_empty_chunk_size() {
    assert_eq!(fault(b"\r\nabc\r\n0\r\n\r\n"), ChunkedFault::InvalidSize);
}

#[test]
fn rejects_non_hex_chunk_size() {
    assert_eq!(fault(b"g\r\n"), ChunkedFault::InvalidSize);
    assert_eq!(fault(b"-1\r\n"), ChunkedFault::InvalidSize);
    assert_eq!(fault(b"+1\r\n"), ChunkedFault::InvalidSize);
}

#[test]
fn rejects_0x_prefix() {
    assert_eq!(fault(b"0x5\r\nhello\r\n"), ChunkedFault::InvalidSize);
}

#[test]
fn rejects_spaces_around_chunk_size() {
    assert_eq!(fault(b" 5\r\nhello\r\n"), ChunkedFault::InvalidSize);
    assert_eq!(fault(b"5 \r\nhello\r\n"), ChunkedFault::InvalidSize);
    assert_eq!(fault(b"5 ;a\r\nhello\r\n"), ChunkedFault::InvalidSize);
}

#[test]
fn rejects_chunk_size_overflow() {
    assert_eq!(fault(b"10000000000000000\r\n"), ChunkedFault::SizeOverflow);
    assert_eq!(fault(b"00000000000000001\r\n"), ChunkedFault::SizeOverflow);
    let mut dec = ChunkedDecoder::new();
    dec.advance(b"ffffffffffffffff\r\n", &mut |_| {}).unwrap();
    assert_eq!(dec.pending_chunk_bytes(), u64::MAX);
}

#[test]
fn rejects_bare_lf_line_endings() {
    assert_eq!(fault(b"5\nhello\r\n"), ChunkedFault::InvalidLineEnding);
    assert_eq!(fault(b"5;a\nhello\r\n"), ChunkedFault::InvalidLineEnding);
    assert_eq!(fault(b"0\r\n\n"), ChunkedFault::InvalidLineEnding);
    assert_eq!(fault(b"0\r\nA: b\n\r\n"), ChunkedFault::InvalidLineEnding);
    assert_eq!(fault(b"5\rhello"), ChunkedFault::InvalidLineEnding);
}

#[test]
fn rejects_missing_crlf_after_chunk_data() {
    assert_eq!(
        fault(b"5\r\nhelloX\r\n0\r\n\r\n"),
        ChunkedFault::MissingDataCrlf
    );
    assert_eq!(
        fault(b"5\r\nhello\n0\r\n\r\n"),
        ChunkedFault::MissingDataCrlf
    );
    assert_eq!(fault(b"5\r\nhello\rX"), ChunkedFault::MissingDataCrlf);
}

#[test]
fn rejects_control_characters_in_chunk_extensions() {
    assert_eq!(fault(b"5;a\0b\r\n"), ChunkedFault::InvalidExtension);
    assert_eq!(fault(b"5;a\x7fb\r\n"), ChunkedFault::InvalidExtension);
}

#[test]
fn rejects_chunk_extensions_over_the_bound() {
    let mut input = b"5;".to_vec();
    input.extend(std::iter::repeat_n(b'a', MAX_EXTENSION_BYTES + 1));
    assert_eq!(fault(&input), ChunkedFault::ExtensionTooLong);
    let mut input = b"5;".to_vec();
    input.extend(std::iter::repeat_n(b'a', MAX_EXTENSION_BYTES));
    input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    assert!(decode(&input).unwrap().2);
}

#[test]
fn rejects_invalid_trailer_fields() {
    assert_eq!(
        fault(b"0\r\nBad Name: x\r\n\r\n"),
        ChunkedFault::InvalidTrailer
    );
    assert_eq!(fault(b"0\r\n: x\r\n\r\n"), ChunkedFault::InvalidTrailer);
    assert_eq!(fault(b"0\r\nA: x\0\r\n\r\n"), ChunkedFault::InvalidTrailer);
    assert_eq!(
        fault(b"0\r\nA: x\r\n folded\r\n\r\n"),
        ChunkedFault::InvalidTrailer
    );
    assert_eq!(
        fault(b"0\r\nA: x\ry\r\n\r\n"),
        ChunkedFault::InvalidLineEnding
    );
}

#[test]
fn rejects_trailer_section_over_the_bound() {
    let mut input = b"0\r\n".to_vec();
    for _ in 0..(MAX_TRAILER_BYTES / 16 + 1) {
        input.extend_from_slice(b"X-Pad: aaaaaaa\r\n");
    }
    assert_eq!(fault(&input), ChunkedFault::TrailerTooLarge);
}

#[test]
fn decoder_errors_map_to_400() {
    let e = decode(b"z").unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.is_body_error());
}

#[test]
fn trailer_bytes_are_reported_without_the_final_line() {
    let mut decoder = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut trailers = Vec::new();
    let input = b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx: y\r\n\r\n";
    let progress = decoder
        .advance_with_trailers(
            input,
            &mut |r| data.extend_from_slice(&input[r]),
            &mut |b| trailers.push(b),
        )
        .unwrap();
    assert!(progress.done);
    assert_eq!(data, b"abc");
    assert_eq!(trailers, b"grpc-status: 0\r\nx: y\r\n");
}
