//! Configuration: the file's shape (serde), validation, and compilation into a [`Snapshot`].
//!
//! Three visible steps: `file` mirrors the TOML, `compile` validates it (collecting every
//! problem with its key path and line) and builds the runtime's immutable [`Snapshot`].
//!
//! CONTRACT: `load_file(path)`, `load_str(text, origin)`, `ConfigError`, `Problem`,
//! and the types in `snapshot`.

mod snapshot;

pub use snapshot::*;

use std::path::Path;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `routes[2].upstream`.
    pub key: String,
    /// 1-based line in the file, where known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// A config that cannot be loaded: every problem found, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: invalid configuration")]
pub struct ConfigError {
    /// The file path (or a label for in-memory text).
    pub origin: String,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

/// Reads, validates and compiles the config file at `path`.
pub fn load_file(_path: &Path) -> Result<Snapshot, ConfigError> {
    todo!("config helper")
}

/// Validates and compiles config text; `origin` names it in errors.
pub fn load_str(_text: &str, _origin: &str) -> Result<Snapshot, ConfigError> {
    todo!("config helper")
}
