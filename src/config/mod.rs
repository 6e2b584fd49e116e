//! Configuration: the file's shape (serde), validation, and compilation into a [`Snapshot`].
//!
//! Three visible steps: `file` mirrors the TOML (with `units` for durations and sizes),
//! `compile` validates it (collecting every problem with its key path and line) and builds
//! the runtime's immutable [`Snapshot`]. The runtime never sees the raw structs.
//!
//! CONTRACT: `load_file(path)`, `load_str(text, origin)`, `ConfigError`, `Problem`,
//! and the types in `snapshot`.

mod compile;
mod file;
mod file_compose;
mod locate;
mod snapshot;
mod units;

pub use snapshot::*;

use std::fmt;
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
///
/// `Display` prints one problem per line as `{origin}:{line}: {key}: {message}`, which is
/// what `ringgate --check` shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file path (or a label for in-memory text).
    pub origin: String,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.is_empty() {
            return write!(f, "{}: invalid configuration", self.origin);
        }
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            // `origin:line: ...` like a compiler, so editors can jump to the line.
            let sep = if problem.line.is_some() { ":" } else { ": " };
            write!(f, "{}{sep}{problem}", self.origin)?;
        }
        Ok(())
    }
}

/// Reads, validates and compiles the config file at `path`.
pub fn load_file(path: &Path) -> Result<Snapshot, ConfigError> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, &origin),
        Err(err) => Err(ConfigError {
            origin,
            problems: vec![Problem {
                key: String::new(),
                line: None,
                message: format!("cannot read the file: {err}"),
            }],
        }),
    }
}

/// Validates and compiles config text; `origin` names it in errors.
pub fn load_str(text: &str, origin: &str) -> Result<Snapshot, ConfigError> {
    let fail = |problems| ConfigError {
        origin: origin.to_string(),
        problems,
    };
    // The deserializer stops at its first error (syntax, type, unknown key); validation
    // below then collects every remaining problem at once.
    let raw: file::RawConfig =
        toml::from_str(text).map_err(|err| fail(vec![locate::toml_problem(text, &err)]))?;
    let base = Path::new(origin).parent().unwrap_or(Path::new(""));
    compile::compile(raw, text, base).map_err(fail)
}

/// The 1-based line that byte `offset` of `text` is on.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
