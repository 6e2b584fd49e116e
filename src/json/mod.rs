//! JSON documents as a gateway touches them: checked, looked into and reshaped without being
//! rebuilt.
//!
//! A backend's body is checked once for well-formedness ([`check`]) and then read lazily: a
//! [`Node`] starts as the raw text of a value and is expanded one level at a time, only where
//! an operation needs to look inside. Everything never looked into is written back as the
//! exact bytes that arrived, so untouched values cost a copy, not a parse and a serialization.
//! (`benches/compose.rs` measured this against building a `serde_json::Value` tree: see
//! docs/composition.md, "Performance".)
//!
//! - `path`: field paths (`address.city`, `items[*].id`), the language every option speaks;
//! - `node`: the lazy tree, lookups and in-place edits;
//! - `shape`: the per-document operations (`target`, `allow`, `deny`, `rename`, `collection`)
//!   compiled once from configuration, and what they let exist (for load-time checks);
//! - `write`: serialization with the exact length known before the first byte.
//!
//! This module knows nothing about HTTP or composition: response shaping and contract export
//! can use it as it is. It never panics on input.

mod node;
mod path;
mod shape;
mod write;

pub use node::{check, Key, Kind, Node};
pub use path::{FieldPath, Segment};
pub use shape::{Reach, Shape, ShapeError, ShapeSpec};
pub use write::{encoded_len, write, write_str};

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The bytes are not UTF-8.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// The text is not one JSON value.
    #[error("not JSON: {0}")]
    Syntax(String),
    /// Nothing but white space.
    #[error("empty document")]
    Empty,
}
