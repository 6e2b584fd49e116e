//! `[policies.NAME]` tables and the `policies = [...]` list of each route.
//!
//! Each table names its `kind`; the kind's own module compiles the keys it knows and every
//! other key set on the table is a problem with its line (a key that parses and does nothing
//! is a defect). Routes refer to policies by name; the referenced policies compile into a
//! [`Chain`] in the fixed phase order documented in `crate::policy`.
//!
//! Adding a kind: a module here with `KEYS` and `compile`, one arm in [`compile_one`].

mod ip_filter;
mod rate_limit;

pub(super) use rate_limit::redis;

use std::collections::HashMap;
use std::sync::Arc;

use toml::Spanned;

use super::{check_name, Ctx};
use crate::config::file::{Ordered, RawPolicy};
use crate::policy::{Chain, Stage};
use crate::rate_limit::RateLimitPolicy;

/// The kinds this build knows, for the error message.
const KINDS: &[&str] = &["ip_filter", "rate_limit"];

/// The compiled policies by name, for routes to refer to.
#[derive(Debug, Default)]
pub(super) struct PolicyTable {
    by_name: HashMap<String, Option<Stage>>,
    /// Rate-limit policies by slot (`RateLimitPolicy::slot`).
    rate_limits: Vec<Arc<RateLimitPolicy>>,
}

/// Compiles every `[policies.NAME]` table. A policy with problems stays in the table as
/// `None`, so that routes referring to it do not report it a second time as unknown.
/// `redis` says whether `[redis]` is configured (cluster-scoped rate limits need it).
pub(super) fn compile(
    cx: &mut Ctx<'_>,
    raw: Option<&Ordered<RawPolicy>>,
    redis: bool,
) -> PolicyTable {
    let mut table = PolicyTable::default();
    for (name, policy) in raw.iter().flat_map(|o| &o.0) {
        let key = format!("policies.{}", name.get_ref());
        if let Err(message) = check_name(name.get_ref()) {
            cx.problem(key.clone(), Some(name.span()), message);
        }
        let slot = table.rate_limits.len();
        let stage = compile_one(cx, &key, name.get_ref(), policy.get_ref(), redis, slot);
        if let Some(Stage::RateLimit(p)) = &stage {
            table.rate_limits.push(Arc::clone(p));
        }
        table.by_name.insert(name.get_ref().clone(), stage);
    }
    table
}

/// Compiles one policy table by its kind; a rate limit takes rate-limit slot `slot`.
fn compile_one(
    cx: &mut Ctx<'_>,
    key: &str,
    name: &str,
    raw: &RawPolicy,
    redis: bool,
    slot: usize,
) -> Option<Stage> {
    let kind = raw.kind.get_ref().as_str();
    let known: &[&str] = match kind {
        "ip_filter" => ip_filter::KEYS,
        "rate_limit" => rate_limit::KEYS,
        other => {
            let message = format!("unknown policy kind `{other}`; known: {}", KINDS.join(", "));
            cx.problem(format!("{key}.kind"), Some(raw.kind.span()), message);
            return None;
        }
    };
    let before = cx.problems.len();
    for (k, span) in raw.present_keys() {
        if !known.contains(&k) {
            let message = format!(
                "`{k}` is not a key of kind `{kind}`; its keys: {}",
                known.join(", ")
            );
            cx.problem(format!("{key}.{k}"), Some(span), message);
        }
    }
    let stage = match kind {
        "ip_filter" => ip_filter::compile(cx, key, name, raw).map(Stage::IpFilter),
        "rate_limit" => rate_limit::compile(cx, key, name, raw, redis, slot).map(Stage::RateLimit),
        _ => None,
    };
    stage.filter(|_| cx.problems.len() == before)
}

impl PolicyTable {
    /// The rate-limit policies, by slot, for the snapshot.
    pub(super) fn rate_limits(&self) -> Vec<Arc<RateLimitPolicy>> {
        self.rate_limits.clone()
    }

    /// The chain of a route's `policies` list (`key` is its key path); unknown and repeated
    /// names are problems.
    pub(super) fn chain(
        &self,
        cx: &mut Ctx<'_>,
        key: &str,
        list: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Chain {
        let mut stages = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for (i, name) in list.iter().flat_map(|l| l.get_ref()).enumerate() {
            let wanted = name.get_ref().as_str();
            let entry_key = format!("{key}[{i}]");
            if seen.contains(&wanted) {
                let message = format!("policy `{wanted}` is listed twice");
                cx.problem(entry_key, Some(name.span()), message);
                continue;
            }
            seen.push(wanted);
            match self.by_name.get(wanted) {
                Some(Some(stage)) => stages.push(stage.clone()),
                // Its own problems were reported where it is defined.
                Some(None) => {}
                None => {
                    let message = self.unknown(wanted);
                    cx.problem(entry_key, Some(name.span()), message);
                }
            }
        }
        Chain::new(stages)
    }

    fn unknown(&self, wanted: &str) -> String {
        if self.by_name.is_empty() {
            return format!("unknown policy `{wanted}`: no [policies.NAME] tables are defined");
        }
        let mut defined: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        defined.sort_unstable();
        format!("unknown policy `{wanted}`; defined: {}", defined.join(", "))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use crate::config::compile::{check_without_router, keys_and_lines};

    const ROUTE: &str = "[[upstreams]]\nname = \"u\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n";

    /// `(key, line)` of each problem of `ROUTE` + `text`; lines count from `text`'s first.
    pub(crate) fn problems(text: &str) -> Vec<(String, Option<usize>)> {
        let offset = ROUTE.lines().count();
        keys_and_lines(&check_without_router(&format!("{ROUTE}{text}")))
            .into_iter()
            .map(|(k, l)| (k, l.map(|l| l - offset)))
            .collect()
    }

    fn one(key: &str, line: usize) -> Vec<(String, Option<usize>)> {
        vec![(key.to_string(), Some(line))]
    }

    #[test]
    fn rejects_an_unknown_kind_naming_the_known_ones() {
        let text = "[policies.p]\nkind = \"teleport\"\n";
        assert_eq!(problems(text), one("policies.p.kind", 2));
    }

    #[test]
    fn rejects_unknown_and_repeated_policy_names_on_routes() {
        let text = "[policies.office]\nkind = \"ip_filter\"\nallow = [\"10.0.0.0/8\"]\n\
                    [[routes]]\nname = \"r\"\nupstream = \"u\"\n\
                    policies = [\"office\", \"nope\", \"office\"]\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].policies[1]".to_string(), Some(7)),
                ("routes[0].policies[2]".to_string(), Some(7)),
            ]
        );
    }

    #[test]
    fn a_broken_policy_is_reported_once_not_again_on_its_routes() {
        let text = "[policies.office]\nkind = \"ip_filter\"\nallow = [\"nonsense\"]\n\
                    [[routes]]\nname = \"r\"\nupstream = \"u\"\npolicies = [\"office\"]\n";
        assert_eq!(problems(text), one("policies.office.allow[0]", 3));
    }
}
