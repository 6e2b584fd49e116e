//! The composite's answer: status rules, the fields that describe it, and RFC 9457 problem
//! details for a failed composition.
//!
//! - Every required call fine: `200`, `application/json`, the assembled document; optional
//!   calls that failed are left out and named (config order) in `Composite-Missing`, which
//!   makes the answer incomplete: `Cache-Control: no-store`.
//! - A required call failed: `504` if it timed out, else `502`, as
//!   `application/problem+json` naming the call and a fixed reason (never what the backend
//!   said), with `Cache-Control: no-store`.

use super::assemble::Assembled;
use super::cache_control::Combined;
use super::plan::Composite;
use super::run::{Outcome, Reason, Slot};

/// The field naming the optional calls an answer is missing.
pub const MISSING_FIELD: &[u8] = b"Composite-Missing";

/// A failed composition's status: 504 when the required call timed out, else 502.
pub fn failure_status(reason: Reason) -> u16 {
    match reason {
        Reason::Timeout => 504,
        _ => 502,
    }
}

/// The RFC 9457 body for a failed required call.
pub fn problem_body(plan: &Composite, call: usize, reason: Reason) -> Vec<u8> {
    let status = failure_status(reason);
    let name = plan.calls.get(call).map_or("", |c| &*c.name);
    let title = crate::http::reason_phrase(status);
    let detail = match reason {
        Reason::Timeout => format!("required call `{name}` did not answer in time"),
        Reason::MissingInput => {
            format!("required call `{name}` could not be made: an input it needs is missing")
        }
        _ => format!("required call `{name}` failed"),
    };
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"{\"type\":\"about:blank\",\"title\":");
    crate::json::write_str(title, &mut out);
    out.extend_from_slice(format!(",\"status\":{status},\"detail\":").as_bytes());
    crate::json::write_str(&detail, &mut out);
    out.extend_from_slice(b",\"composite\":");
    crate::json::write_str(&plan.name, &mut out);
    out.extend_from_slice(b",\"call\":");
    crate::json::write_str(name, &mut out);
    out.extend_from_slice(b",\"reason\":");
    crate::json::write_str(reason.label(), &mut out);
    out.push(b'}');
    out
}

/// `Composite-Missing`'s value: the missing calls' names, comma-separated, config order.
pub fn missing_value(plan: &Composite, assembled: &Assembled<'_>) -> String {
    let names: Vec<&str> = assembled
        .missing
        .iter()
        .filter_map(|(i, _)| plan.calls.get(*i).map(|c| &*c.name))
        .collect();
    names.join(", ")
}

/// The composite's `Cache-Control` from the parts that answered.
pub fn cache_control(outcome: &Outcome, incomplete: bool) -> Option<String> {
    let mut combined = Combined::default();
    for slot in &outcome.slots {
        let Slot::Done(part) = slot else { continue };
        if let Some(v) = &part.cache_control {
            combined.add(v);
        }
        for answer in part.fan.iter().flat_map(|f| &f.replies).flatten() {
            if let Some(v) = &answer.cache_control {
                combined.add(v);
            }
        }
    }
    combined.value(incomplete)
}
