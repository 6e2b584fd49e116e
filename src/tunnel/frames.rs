//! WebSocket frame headers (RFC 6455 §5.2) as a tunnel meets them: enough to find frame
//! boundaries, hold client messages to `max_message_bytes` and enforce the masking rules,
//! without ever reading, unmasking or copying a payload.
//!
//! A [`FrameScanner`] walks the bytes of one direction as they pass. It tells how many of
//! the bytes in hand may be forwarded now: payload bytes always, a frame header only once it
//! is complete (a header split across reads is held back, at most 14 bytes), so what went
//! on is always whole headers plus payload, and a close frame of the gateway's own can be put
//! in at a boundary. Nothing here allocates or does I/O.

/// Close codes the gateway sends (RFC 6455 §7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1001: the gateway is shutting down (its grace period ended with the tunnel open).
    GoingAway = 1001,
    /// 1002: the peer broke the protocol (an unmasked client frame, a bad opcode).
    ProtocolError = 1002,
    /// 1009: a message exceeded `max_message_bytes`.
    MessageTooBig = 1009,
}

/// Whose frames a scanner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Client to server: frames must be masked; messages are held to the limit.
    Client {
        /// Largest message, payload bytes over all its frames.
        max_message_bytes: u64,
    },
    /// Server to client: only boundaries are tracked (servers must not mask, but a server
    /// that does is the application's business, not a threat to the gateway).
    Server,
}

/// Why a client frame stops the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// Bytes before the offending frame's header: they may still go on.
    pub forwardable: usize,
    /// The close code the client gets.
    pub code: CloseCode,
}

/// The frame state of one direction.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    sender: Sender,
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
    /// A data message has begun and not yet ended (its final frame not seen).
    in_message: bool,
    /// Payload bytes of the current message so far.
    message_bytes: u64,
}

impl FrameScanner {
    /// A scanner at the start of a stream (a frame header comes first).
    pub fn new(sender: Sender) -> Self {
        Self {
            sender,
            payload_left: 0,
            in_message: false,
            message_bytes: 0,
        }
    }

    /// Whether everything passed so far ends on a frame boundary.
    pub fn at_boundary(&self) -> bool {
        self.payload_left == 0
    }

    /// Walks `data` (the bytes in hand, starting where the last call's forwardable prefix
    /// ended) and returns how many may be forwarded: the rest is an incomplete header.
    pub fn forwardable(&mut self, data: &[u8]) -> Result<usize, Violation> {
        let mut pos = 0;
        loop {
            if self.payload_left > 0 {
                let rest = (data.len() - pos) as u64;
                let take = self.payload_left.min(rest);
                pos += take as usize;
                self.payload_left -= take;
                if self.payload_left > 0 {
                    return Ok(pos);
                }
            }
            let Some(header) = parse_header(&data[pos..]) else {
                return Ok(pos);
            };
            if let Err(code) = self.check(&header) {
                return Err(Violation {
                    forwardable: pos,
                    code,
                });
            }
            pos += header.len;
            self.payload_left = header.payload;
        }
    }

    /// Applies RFC 6455's frame rules (§5.2, §5.4, §5.5) and the message limit to a header.
    fn check(&mut self, header: &Header) -> Result<(), CloseCode> {
        let Sender::Client { max_message_bytes } = self.sender else {
            self.track_message(header);
            return Ok(());
        };
        if !header.masked || header.payload >> 63 != 0 {
            return Err(CloseCode::ProtocolError);
        }
        match header.opcode {
            // Control frames: close, ping, pong; short and never fragmented.
            0x8..=0xA if header.payload > 125 || !header.fin => Err(CloseCode::ProtocolError),
            0x8..=0xA => Ok(()),
            // A continuation needs a message to continue; text and binary start one.
            0x0 if !self.in_message => Err(CloseCode::ProtocolError),
            0x1 | 0x2 if self.in_message => Err(CloseCode::ProtocolError),
            0x0..=0x2 => {
                if header.opcode != 0 {
                    self.message_bytes = 0;
                }
                self.message_bytes = self.message_bytes.saturating_add(header.payload);
                if self.message_bytes > max_message_bytes {
                    return Err(CloseCode::MessageTooBig);
                }
                self.in_message = !header.fin;
                Ok(())
            }
            _ => Err(CloseCode::ProtocolError),
        }
    }

    fn track_message(&mut self, header: &Header) {
        if header.opcode < 0x8 {
            self.in_message = !header.fin;
        }
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: u8,
    masked: bool,
    payload: u64,
    /// Header bytes, masking key included.
    len: usize,
}

/// The frame header at the start of `data`, or `None` if it is not all there yet.
fn parse_header(data: &[u8]) -> Option<Header> {
    let (&b0, &b1) = (data.first()?, data.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (payload, mut len) = match b1 & 0x7F {
        126 => (
            u64::from(u16::from_be_bytes([*data.get(2)?, *data.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = data.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 10)
        }
        n => (u64::from(n), 2),
    };
    if masked {
        len += 4;
    }
    if data.len() < len {
        return None;
    }
    Some(Header {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        masked,
        payload,
        len,
    })
}

/// Appends a close frame with `code` (and its name as the reason); `mask` is the masking
/// key for a frame to a server, `None` for a frame to a client (RFC 6455 §5.3).
pub fn write_close(out: &mut Vec<u8>, code: CloseCode, mask: Option<[u8; 4]>) {
    let reason: &[u8] = match code {
        CloseCode::GoingAway => b"going away",
        CloseCode::ProtocolError => b"protocol error",
        CloseCode::MessageTooBig => b"message too big",
    };
    let mut payload = [0u8; 2 + 15];
    payload[..2].copy_from_slice(&(code as u16).to_be_bytes());
    payload[2..2 + reason.len()].copy_from_slice(reason);
    let payload = &mut payload[..2 + reason.len()];
    out.push(0x88);
    match mask {
        None => out.push(payload.len() as u8),
        Some(key) => {
            out.push(0x80 | payload.len() as u8);
            out.extend_from_slice(&key);
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [1, 2, 3, 4];

    /// A client frame header (masked) for `opcode` with `len` payload bytes.
    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&KEY);
        out.extend(std::iter::repeat_n(0xAA, len));
        out
    }

    fn client(max: u64) -> FrameScanner {
        FrameScanner::new(Sender::Client {
            max_message_bytes: max,
        })
    }

    #[test]
    fn whole_frames_pass_and_a_split_header_is_held_back() {
        let mut s = client(1 << 20);
        let mut bytes = frame(true, 1, 5);
        bytes.extend(frame(true, 2, 300));
        assert_eq!(s.forwardable(&bytes), Ok(bytes.len()));
        assert!(s.at_boundary());
        let next = frame(true, 2, 70000);
        // Two bytes say a 64-bit length follows: not yet a whole header.
        assert_eq!(s.forwardable(&next[..5]), Ok(0));
        assert_eq!(s.forwardable(&next[..20]), Ok(20));
        assert!(!s.at_boundary());
        assert_eq!(s.forwardable(&next[20..]), Ok(next.len() - 20));
        assert!(s.at_boundary());
    }

    #[test]
    fn a_message_over_the_limit_is_refused_at_its_frame() {
        let mut s = client(100);
        let mut bytes = frame(true, 1, 100);
        let at = bytes.len();
        bytes.extend(frame(true, 1, 101));
        assert_eq!(
            s.forwardable(&bytes),
            Err(Violation {
                forwardable: at,
                code: CloseCode::MessageTooBig
            })
        );
    }

    #[test]
    fn fragments_count_towards_one_message_and_control_frames_do_not() {
        let mut s = client(100);
        let mut bytes = frame(false, 1, 60);
        bytes.extend(frame(true, 9, 125));
        let at = bytes.len();
        bytes.extend(frame(true, 0, 41));
        let err = s.forwardable(&bytes).unwrap_err();
        assert_eq!((err.forwardable, err.code), (at, CloseCode::MessageTooBig));
        let mut s = client(100);
        let mut ok = frame(false, 2, 60);
        ok.extend(frame(true, 0, 40));
        ok.extend(frame(true, 2, 100));
        assert_eq!(s.forwardable(&ok), Ok(ok.len()));
    }

    #[test]
    fn unmasked_client_frames_are_a_protocol_error() {
        let mut s = client(100);
        let bytes = [0x81, 0x02, b'h', b'i'];
        assert_eq!(
            s.forwardable(&bytes).map_err(|v| v.code),
            Err(CloseCode::ProtocolError)
        );
    }

    #[test]
    fn bad_opcodes_fragmented_or_long_control_frames_and_stray_continuations_are_refused() {
        for bytes in [
            frame(true, 3, 1),
            frame(false, 9, 1),
            frame(true, 10, 126),
            frame(true, 0, 1),
            [frame(false, 1, 1), frame(true, 2, 1)].concat(),
        ] {
            let err = client(1 << 20).forwardable(&bytes).unwrap_err();
            assert_eq!(err.code, CloseCode::ProtocolError, "{bytes:?}");
        }
    }

    #[test]
    fn server_frames_are_only_tracked() {
        let mut s = FrameScanner::new(Sender::Server);
        let bytes = [0x81, 0x02, b'h', b'i', 0x82, 0x7E, 0x01];
        assert_eq!(s.forwardable(&bytes), Ok(4));
        assert!(s.at_boundary());
    }

    #[test]
    fn close_frames_are_masked_only_towards_servers() {
        let mut out = Vec::new();
        write_close(&mut out, CloseCode::MessageTooBig, None);
        assert_eq!(&out[..4], &[0x88, 17, 0x03, 0xF1]);
        assert_eq!(&out[4..], b"message too big");
        let mut masked = Vec::new();
        write_close(&mut masked, CloseCode::ProtocolError, Some(KEY));
        assert_eq!(masked[1], 0x80 | 16);
        assert_eq!(&masked[2..6], &KEY);
        let unmasked: Vec<u8> = masked[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ KEY[i % 4])
            .collect();
        assert_eq!(&unmasked[..2], &1002u16.to_be_bytes());
        assert_eq!(&unmasked[2..], b"protocol error");
        let mut going = Vec::new();
        write_close(&mut going, CloseCode::GoingAway, None);
        assert_eq!(&going[..4], &[0x88, 12, 0x03, 0xE9]);
        assert_eq!(&going[4..], b"going away");
    }
}
