//! Request-target splitting and path normalization (the rule is documented in
//! docs/configuration.md, "Path normalization").

/// A request-target split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Authority of an absolute-form target (`http://host:port/path`).
    pub authority: Option<&'a [u8]>,
    /// The path as sent (starts with `/`).
    pub path: &'a [u8],
    /// The query without `?`, if any.
    pub query: Option<&'a [u8]>,
}

/// Why a path is refused (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Placeholder until the router lands.
    #[error("invalid request target")]
    Invalid,
}

/// Splits an origin-form or absolute-form request-target.
pub fn split_target(_target: &[u8]) -> Result<Target<'_>, PathError> {
    todo!("router helper")
}

/// Writes the normalized form of `path` into `out` (cleared first).
pub fn normalize_path(_path: &[u8], _out: &mut String) -> Result<(), PathError> {
    todo!("router helper")
}
