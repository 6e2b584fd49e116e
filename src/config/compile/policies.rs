//! `[policies.NAME]` tables and the routes' `policies` lists.
//!
//! Each table has a `kind`; today the kind is `rate_limit` (see `rate_limits`). A route's
//! list is resolved to the policies' slots in the snapshot.

use std::collections::HashMap;

use toml::Spanned;

use super::rate_limits::{self, RawRateLimit};
use super::{check_name, Ctx};
use crate::config::file::{Ordered, RawPolicy};
use crate::rate_limit::RateLimitPolicy;

/// The compiled policies and where to find them by name.
#[derive(Default)]
pub(super) struct Policies {
    /// Rate-limit policies in slot order.
    pub rate_limits: Vec<RateLimitPolicy>,
    /// Slot of each rate-limit policy by name.
    pub slots: HashMap<String, usize>,
}

/// Compiles every `[policies.NAME]` table.
pub(super) fn compile(cx: &mut Ctx<'_>, raw: Option<&Ordered<RawPolicy>>, redis: bool) -> Policies {
    let mut out = Policies::default();
    for (name, table) in raw.iter().flat_map(|o| &o.0) {
        let prefix = format!("policies.{}", name.get_ref());
        if let Err(message) = check_name(name.get_ref()) {
            cx.problem(prefix.clone(), Some(name.span()), message);
            continue;
        }
        let raw = table.get_ref();
        match raw.kind.get_ref().as_str() {
            "rate_limit" => {
                let keys = RawRateLimit {
                    key: raw.key.as_ref(),
                    rate: raw.rate.as_ref(),
                    burst: raw.burst.as_ref(),
                    scope: raw.scope.as_ref(),
                    max_keys: raw.max_keys.as_ref(),
                };
                let span = table.span();
                let compiled =
                    rate_limits::rate_limit(cx, &prefix, name.get_ref(), span, &keys, redis, false);
                if let Some(policy) = compiled {
                    out.slots
                        .insert(name.get_ref().clone(), out.rate_limits.len());
                    out.rate_limits.push(policy);
                }
            }
            other => {
                let message = format!("unknown policy kind `{other}`: expected \"rate_limit\"");
                cx.problem(format!("{prefix}.kind"), Some(raw.kind.span()), message);
            }
        }
    }
    out
}

/// Resolves a route's `policies` list (at `key`) to rate-limit slots.
pub(super) fn route_slots(
    cx: &mut Ctx<'_>,
    key: &str,
    list: Option<&Spanned<Vec<Spanned<String>>>>,
    known: &HashMap<String, usize>,
) -> Box<[usize]> {
    let mut slots = Vec::new();
    for (i, name) in list.iter().flat_map(|l| l.get_ref().iter()).enumerate() {
        match known.get(name.get_ref()) {
            Some(&slot) if !slots.contains(&slot) => slots.push(slot),
            Some(_) => {
                let message = format!("policy `{}` is listed twice", name.get_ref());
                cx.problem(format!("{key}.policies[{i}]"), Some(name.span()), message);
            }
            None => {
                let message = format!("no policy named `{}`", name.get_ref());
                cx.problem(format!("{key}.policies[{i}]"), Some(name.span()), message);
            }
        }
    }
    slots.into_boxed_slice()
}
