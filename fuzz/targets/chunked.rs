//! `ChunkedDecoder`: no panic; data ranges lie inside the input; feeding the input in one
//! piece and in two pieces gives the same payload, end and verdict.

use ringgate::http::ChunkedDecoder;

/// Decodes `pieces` in order; returns (payload, consumed, done) or None on error.
fn decode(pieces: &[&[u8]]) -> Option<(Vec<u8>, usize, bool)> {
    let mut dec = ChunkedDecoder::new();
    let (mut payload, mut consumed, mut done) = (Vec::new(), 0, false);
    for piece in pieces {
        if done {
            break;
        }
        let progress = dec
            .advance(piece, &mut |r| {
                assert!(r.end <= piece.len());
                payload.extend_from_slice(&piece[r]);
            })
            .ok()?;
        assert!(progress.consumed <= piece.len());
        consumed += progress.consumed;
        done = progress.done;
    }
    assert_eq!(dec.payload_bytes(), payload.len() as u64);
    Some((payload, consumed, done))
}

pub fn run(data: &[u8]) {
    let whole = decode(&[data]);
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let (a, b) = data.split_at(cut);
    let split = decode(&[a, b]);
    match (whole, split) {
        (Some(w), Some(s)) => assert_eq!(w, s),
        (None, None) => {}
        // The split run may stop before the bytes that make the whole run fail.
        (None, Some((_, _, done))) => assert!(!done),
        (Some(_), None) => panic!("split input rejected where whole input was accepted"),
    }
}
