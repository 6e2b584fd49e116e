//! The well-formedness checks compared for the splice fast path (docs/composition.md,
//! "Performance"): each says whether a backend body is exactly one JSON value in UTF-8, with
//! nothing but JSON white space around it. Shared by `benches/compose.rs` (cost) and
//! `tests/json_check_candidates.rs` (same verdict as today's check on malformed input).

use serde::de::IgnoredAny;

/// JSON's white space, as `ringgate::json::check` trims it.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// `body` without leading and trailing JSON white space.
fn trim(body: &[u8]) -> &[u8] {
    let start = body.iter().position(|&b| !is_ws(b)).unwrap_or(body.len());
    let end = body
        .iter()
        .rposition(|&b| !is_ws(b))
        .map_or(start, |i| i + 1);
    &body[start..end]
}

/// One candidate: its name in the bench and the check.
pub type Candidate = (&'static str, fn(&[u8]) -> bool);

/// Every candidate, today's check first.
pub const CANDIDATES: &[Candidate] = &[
    ("serde_json_ignored_any", serde_json_ignored_any),
    ("sonic_rs_from_slice", sonic_rs_from_slice),
    ("std_utf8_sonic_rs_from_str", std_utf8_sonic_rs_from_str),
    ("simd_json_copy_tape", simd_json_copy_tape),
];

/// Today's check (`ringgate::json::check`): `std::str::from_utf8`, trim, serde_json
/// `IgnoredAny`.
pub fn serde_json_ignored_any(body: &[u8]) -> bool {
    ringgate::json::check(body).is_ok()
}

/// sonic-rs `from_slice::<IgnoredAny>`: its own UTF-8 validation, its own skip of one
/// value with full validation, its own trailing check.
pub fn sonic_rs_from_slice(body: &[u8]) -> bool {
    let text = trim(body);
    !text.is_empty() && sonic_rs::from_slice::<IgnoredAny>(text).is_ok()
}

/// `std::str::from_utf8` of the whole body, then sonic-rs `from_str::<IgnoredAny>` (which
/// skips its own UTF-8 validation for a `&str`).
pub fn std_utf8_sonic_rs_from_str(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let text = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    !text.is_empty() && sonic_rs::from_str::<IgnoredAny>(text).is_ok()
}

/// simd-json: it parses in place, so the body is copied into a fresh buffer first (counted);
/// the tape it builds is the validation.
pub fn simd_json_copy_tape(body: &[u8]) -> bool {
    let text = trim(body);
    if text.is_empty() {
        return false;
    }
    let mut copy = text.to_vec();
    simd_json::to_tape(&mut copy).is_ok()
}
