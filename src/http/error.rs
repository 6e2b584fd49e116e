//! Codec errors and the one table that maps them to status codes.

/// A reason to refuse a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Placeholder until the codec lands.
    #[error("bad request")]
    BadRequest,
}

impl HttpError {
    /// The status code a client gets for this error.
    pub fn status(&self) -> u16 {
        400
    }
}

/// The standard reason phrase for a status code.
pub fn reason_phrase(_status: u16) -> &'static str {
    "Unknown"
}
