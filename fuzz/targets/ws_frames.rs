//! The WebSocket frame scanner of tunnels (`tunnel::frames`): no panic; however the bytes
//! are split into reads, the scanner forwards the same bytes and stops at the same frame with
//! the same close code as when it sees them at once; what it holds back is never more than
//! an incomplete header (13 bytes); its decisions match a direct reading of RFC 6455 §5.2,
//! §5.4 and §5.5 written here; a server stream is never refused; and the close frames the
//! gateway writes are single, whole, valid frames.

use ringgate::tunnel::frames::{write_close, CloseCode, FrameScanner, Sender};

/// The longest frame header: 2 bytes, a 64-bit length, a masking key.
const MAX_HEADER: usize = 14;

pub fn run(data: &[u8]) {
    // Byte 0: the sender and the read size; bytes 1-2: the message limit; then the stream.
    let Some((&[mode, hi, lo], stream)) = data.split_first_chunk::<3>() else {
        return;
    };
    let sender = if mode & 1 == 0 {
        Sender::Server
    } else {
        Sender::Client {
            max_message_bytes: u64::from(u16::from_be_bytes([hi, lo])),
        }
    };
    let read = usize::from(mode >> 1) + 1;
    let whole = scan(sender, stream, stream.len());
    assert_eq!(
        whole,
        model(sender, stream),
        "scanner and RFC 6455 model differ"
    );
    assert_eq!(
        scan(sender, stream, read),
        whole,
        "split into {read}-byte reads"
    );
    if sender == Sender::Server {
        assert!(whole.code.is_none(), "a server stream was refused");
    }
    if whole.code.is_none() && whole.at_boundary {
        assert!(stream.len() - whole.forwarded < MAX_HEADER);
    }
    close_frames_are_valid();
}

/// What a scanner did with a whole stream.
#[derive(Debug, PartialEq, Eq)]
struct Scan {
    /// Bytes forwarded (before the refused frame, when one was).
    forwarded: usize,
    /// The close code of the refused frame.
    code: Option<CloseCode>,
    /// Whether the forwarded bytes end on a frame boundary.
    at_boundary: bool,
}

/// Feeds `stream` to a scanner `read` bytes at a time, as the relay does: each call sees
/// what the last one held back followed by the new bytes.
fn scan(sender: Sender, stream: &[u8], read: usize) -> Scan {
    let mut scanner = FrameScanner::new(sender);
    let mut forwarded = 0;
    let mut received = 0;
    loop {
        received = (received + read).min(stream.len());
        let pending = &stream[forwarded..received];
        match scanner.forwardable(pending) {
            Ok(n) => {
                assert!(n <= pending.len());
                forwarded += n;
                if received - forwarded >= MAX_HEADER {
                    panic!("{} bytes held back", received - forwarded);
                }
            }
            Err(v) => {
                assert!(v.forwardable <= pending.len());
                return Scan {
                    forwarded: forwarded + v.forwardable,
                    code: Some(v.code),
                    at_boundary: true,
                };
            }
        }
        if received == stream.len() {
            return Scan {
                forwarded,
                code: None,
                at_boundary: scanner.at_boundary(),
            };
        }
    }
}

/// RFC 6455 read directly: frames one after another; client frames masked, with a length
/// whose top bit is clear, a known opcode, control frames final and at most 125 bytes,
/// continuations only inside a message and a new message only outside one; a client
/// message's payload over all its frames at most the limit.
fn model(sender: Sender, stream: &[u8]) -> Scan {
    let mut pos = 0;
    let mut in_message = false;
    let mut message = 0u64;
    loop {
        let Some(frame) = Frame::at(&stream[pos..]) else {
            return Scan {
                forwarded: pos,
                code: None,
                at_boundary: true,
            };
        };
        if let Sender::Client { max_message_bytes } = sender {
            let control = (8..=10).contains(&frame.opcode);
            let protocol_error = !frame.masked
                || frame.payload >= 1 << 63
                || !matches!(frame.opcode, 0..=2 | 8..=10)
                || (control && (frame.payload > 125 || !frame.fin))
                || (frame.opcode == 0 && !in_message)
                || (matches!(frame.opcode, 1 | 2) && in_message);
            if protocol_error {
                return refused(pos, CloseCode::ProtocolError);
            }
            if !control {
                message = if frame.opcode == 0 { message } else { 0 };
                message = message.saturating_add(frame.payload);
                if message > max_message_bytes {
                    return refused(pos, CloseCode::MessageTooBig);
                }
            }
        }
        if frame.opcode < 8 {
            in_message = !frame.fin;
        }
        pos += frame.header;
        let rest = (stream.len() - pos) as u64;
        if frame.payload > rest {
            return Scan {
                forwarded: stream.len(),
                code: None,
                at_boundary: false,
            };
        }
        pos += frame.payload as usize;
    }
}

fn refused(forwarded: usize, code: CloseCode) -> Scan {
    Scan {
        forwarded,
        code: Some(code),
        at_boundary: true,
    }
}

/// A frame header read byte by byte (RFC 6455 §5.2).
struct Frame {
    fin: bool,
    opcode: u8,
    masked: bool,
    payload: u64,
    header: usize,
}

impl Frame {
    fn at(bytes: &[u8]) -> Option<Frame> {
        let (b0, b1) = (*bytes.first()?, *bytes.get(1)?);
        let extended = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let masked = b1 & 0x80 != 0;
        let header = 2 + extended + if masked { 4 } else { 0 };
        if bytes.len() < header {
            return None;
        }
        let payload = match extended {
            0 => u64::from(b1 & 0x7F),
            _ => bytes[2..2 + extended]
                .iter()
                .fold(0u64, |n, b| (n << 8) | u64::from(*b)),
        };
        Some(Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0F,
            masked,
            payload,
            header,
        })
    }
}

/// The gateway's own close frames: one whole frame each, masked towards a server (a client
/// scanner accepts it), unmasked towards a client.
fn close_frames_are_valid() {
    for code in [CloseCode::ProtocolError, CloseCode::MessageTooBig] {
        let mut masked = Vec::new();
        write_close(&mut masked, code, Some([9, 8, 7, 6]));
        let client = Sender::Client {
            max_message_bytes: 0,
        };
        assert_eq!(
            scan(client, &masked, masked.len()),
            Scan {
                forwarded: masked.len(),
                code: None,
                at_boundary: true
            }
        );
        let mut plain = Vec::new();
        write_close(&mut plain, code, None);
        let frame = Frame::at(&plain).expect("a whole close frame");
        assert!(frame.fin && frame.opcode == 8 && !frame.masked);
        assert_eq!(frame.header + frame.payload as usize, plain.len());
        assert_eq!(plain[2..4], (code as u16).to_be_bytes());
    }
}
