//! Accumulators for the fields that decide message framing and connection reuse:
//! `Content-Length`, `Transfer-Encoding` and `Connection`.
//!
//! Requests and responses share these; each parser turns their verdicts into its own errors,
//! so the decision per message lives in one function there (`request_framing`,
//! `response_framing`).

use super::headers::list_elements;

/// Why `Content-Length` fields were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentLengthFault {
    /// Not plain decimal digits, empty, or overflowing u64.
    Malformed,
    /// Two fields with different values.
    Conflicting,
}

/// Every `Content-Length` field of a message, folded into one value.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ContentLength {
    value: Option<u64>,
}

impl ContentLength {
    /// Adds one field value. Comma lists are refused outright, even `5, 5`: simplest and safe.
    pub(crate) fn add(&mut self, value: &[u8]) -> Result<(), ContentLengthFault> {
        let n = parse_decimal(value).ok_or(ContentLengthFault::Malformed)?;
        match self.value {
            Some(prev) if prev != n => Err(ContentLengthFault::Conflicting),
            _ => {
                self.value = Some(n);
                Ok(())
            }
        }
    }

    /// The length, if any field was present.
    pub(crate) fn value(&self) -> Option<u64> {
        self.value
    }
}

/// Parses 1 or more ASCII digits into a u64, refusing signs, spaces and overflow.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// What the `Transfer-Encoding` list amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransferVerdict {
    /// No `Transfer-Encoding` field.
    Absent,
    /// Exactly `chunked`.
    Chunked,
    /// Other codings, then a final `chunked` (e.g. `gzip, chunked`).
    CodingsThenChunked,
    /// Empty, final coding not `chunked`, or `chunked` applied twice: length unknowable.
    Invalid,
}

/// Every `Transfer-Encoding` field of a message, combined as one list.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TransferCodings {
    fields: u32,
    codings: u32,
    chunked: u32,
    last_is_chunked: bool,
}

impl TransferCodings {
    /// Adds one field value (several fields form one list, RFC 9110 §5.3).
    pub(crate) fn add(&mut self, value: &[u8]) {
        self.fields += 1;
        for coding in list_elements(value) {
            let is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            self.codings = self.codings.saturating_add(1);
            self.chunked = self.chunked.saturating_add(u32::from(is_chunked));
            self.last_is_chunked = is_chunked;
        }
    }

    /// Whether any field was present (even an empty one).
    pub(crate) fn present(&self) -> bool {
        self.fields > 0
    }

    /// The verdict over the whole list.
    pub(crate) fn verdict(&self) -> TransferVerdict {
        match (
            self.present(),
            self.last_is_chunked,
            self.chunked,
            self.codings,
        ) {
            (false, ..) => TransferVerdict::Absent,
            (true, true, 1, 1) => TransferVerdict::Chunked,
            (true, true, 1, _) => TransferVerdict::CodingsThenChunked,
            _ => TransferVerdict::Invalid,
        }
    }
}

/// The `Connection` options that matter for reuse.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ConnectionOptions {
    close: bool,
    keep_alive: bool,
}

impl ConnectionOptions {
    /// Adds one `Connection` field value (a comma list of case-insensitive tokens).
    pub(crate) fn add(&mut self, value: &[u8]) {
        for token in list_elements(value) {
            self.close |= token.eq_ignore_ascii_case(b"close");
            self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }

    /// Whether the connection persists: HTTP/1.1 unless `close`, HTTP/1.0 only with
    /// `keep-alive` (and `close` always wins).
    pub(crate) fn persistent(&self, http11: bool) -> bool {
        !self.close && (http11 || self.keep_alive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(values: &[&[u8]]) -> TransferVerdict {
        let mut te = TransferCodings::default();
        values.iter().for_each(|v| te.add(v));
        te.verdict()
    }

    #[test]
    fn content_length_accepts_identical_repeats() {
        let mut cl = ContentLength::default();
        assert_eq!(cl.add(b"12"), Ok(()));
        assert_eq!(cl.add(b"012"), Ok(()));
        assert_eq!(cl.value(), Some(12));
    }

    #[test]
    fn content_length_rejects_signs_spaces_lists_and_overflow() {
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"1 2",
            b"1,1",
            b"0x10",
            b"18446744073709551616",
        ] {
            assert_eq!(
                ContentLength::default().add(bad),
                Err(ContentLengthFault::Malformed)
            );
        }
        assert!(ContentLength::default()
            .add(b"18446744073709551615")
            .is_ok());
    }

    #[test]
    fn transfer_codings_combine_fields_into_one_list() {
        assert_eq!(verdict(&[b"chunked"]), TransferVerdict::Chunked);
        assert_eq!(verdict(&[b" ChUnKeD "]), TransferVerdict::Chunked);
        assert_eq!(
            verdict(&[b"gzip", b"chunked"]),
            TransferVerdict::CodingsThenChunked
        );
        assert_eq!(
            verdict(&[b"gzip, chunked"]),
            TransferVerdict::CodingsThenChunked
        );
        assert_eq!(verdict(&[b"chunked", b"gzip"]), TransferVerdict::Invalid);
        assert_eq!(verdict(&[b"chunked, chunked"]), TransferVerdict::Invalid);
        assert_eq!(verdict(&[b""]), TransferVerdict::Invalid);
        assert_eq!(verdict(&[b"chunked;a=b"]), TransferVerdict::Invalid);
        assert_eq!(verdict(&[]), TransferVerdict::Absent);
    }

    #[test]
    fn connection_close_wins_over_keep_alive() {
        let mut c = ConnectionOptions::default();
        c.add(b"Keep-Alive, CLOSE");
        assert!(!c.persistent(true));
        let mut c = ConnectionOptions::default();
        c.add(b"keep-alive");
        assert!(c.persistent(false));
        assert!(!ConnectionOptions::default().persistent(false));
        assert!(ConnectionOptions::default().persistent(true));
    }
}
