//! `[policies.NAME]` tables and the `policies = [...]` list of each route.
//!
//! Each table names its `kind`; the kind's own module compiles the keys it knows and every
//! other key set on the table is a problem with its line (a key that parses and does nothing
//! is a defect). Routes refer to policies by name; the referenced policies compile into a
//! [`Chain`] in the fixed phase order documented in `crate::policy`.
//!
//! Adding a kind: a module here with `KEYS` and `compile`, one arm in [`compile_one`].

mod api_key;
mod authz;
mod basic;
mod compress;
mod cors;
mod introspect;
mod ip_filter;
mod jwt;
mod rate_limit;
mod transform;
mod validate;

pub(super) use rate_limit::redis;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use toml::Spanned;

use super::matcher::is_token;
use super::{check_name, Ctx};
use crate::config::file::{Ordered, RawPolicy, RawUpstream};
use crate::policy::jwt::KeyStore;
use crate::policy::{Chain, Consumers, Forwarding, Stage};
use crate::rate_limit::RateLimitPolicy;

/// The kinds this build knows, for the error message.
const KINDS: &[&str] = &[
    "cors",
    "compress",
    "ip_filter",
    "api_key",
    "basic",
    "jwt",
    "introspect",
    "authz",
    "rate_limit",
    "validate",
    "transform",
];
/// `consumer_header` when absent.
pub const DEFAULT_CONSUMER_HEADER: &str = "X-Consumer";
/// `realm` when absent.
pub const DEFAULT_REALM: &str = "ringgate";

/// What a kind's `compile` works with.
pub(super) struct KindCx<'c, 't, 'r> {
    cx: &'c mut Ctx<'t>,
    /// `policies.NAME`.
    key: &'r str,
    name: &'r str,
    raw: &'r RawPolicy,
    consumers: &'r Arc<Consumers>,
    /// The configured upstream groups (an `introspect` policy names one).
    upstreams: &'r [RawUpstream],
}

impl KindCx<'_, '_, '_> {
    /// A problem at `policies.NAME.{sub}`.
    fn problem(&mut self, sub: &str, span: Range<usize>, message: String) {
        self.cx
            .problem(format!("{}.{sub}", self.key), Some(span), message);
    }

    /// A problem with the table as a whole, at its `kind` line.
    fn problem_at_kind(&mut self, message: String) {
        self.cx
            .problem(self.key.to_string(), Some(self.raw.kind.span()), message);
    }
}

/// A header name from key `sub`, or a problem.
fn header_name(k: &mut KindCx<'_, '_, '_>, sub: &str, value: &Spanned<String>) -> Option<String> {
    if is_token(value.get_ref()) {
        return Some(value.get_ref().clone());
    }
    let message = format!("invalid header name `{}`", value.get_ref());
    k.problem(sub, value.span(), message);
    None
}

/// `consumer_header`, defaulting to `X-Consumer`.
fn consumer_forwarding(k: &mut KindCx<'_, '_, '_>) -> Forwarding {
    let consumer_header = match &k.raw.consumer_header {
        None => Some(DEFAULT_CONSUMER_HEADER.to_string()),
        Some(h) => header_name(k, "consumer_header", h),
    };
    Forwarding { consumer_header }
}

/// `hide_credentials`, defaulting to false (the credential goes upstream with the request).
fn hide_credentials(k: &KindCx<'_, '_, '_>) -> bool {
    k.raw
        .hide_credentials
        .as_ref()
        .is_some_and(|v| *v.get_ref())
}

/// `realm`, defaulting to `ringgate`; quotes and control characters are refused.
fn realm(k: &mut KindCx<'_, '_, '_>) -> Arc<str> {
    let Some(realm) = &k.raw.realm else {
        return DEFAULT_REALM.into();
    };
    let text = realm.get_ref();
    if text
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        return text.as_str().into();
    }
    let message = "printable ASCII without `\"` or `\\` is required".to_string();
    k.problem("realm", realm.span(), message);
    DEFAULT_REALM.into()
}

/// The compiled policies by name, for routes to refer to.
#[derive(Debug, Default)]
pub(super) struct PolicyTable {
    by_name: HashMap<String, Option<Stage>>,
    /// Rate-limit policies by slot (`RateLimitPolicy::slot`).
    rate_limits: Vec<Arc<RateLimitPolicy>>,
    /// The key stores of `jwt` policies with a `jwks_url`.
    jwks_stores: Vec<Arc<KeyStore>>,
}

/// Compiles every `[policies.NAME]` table. A policy with problems stays in the table as
/// `None`, so that routes referring to it do not report it a second time as unknown.
/// `redis` says whether `[redis]` is configured (cluster-scoped rate limits need it).
pub(super) fn compile(
    cx: &mut Ctx<'_>,
    raw: Option<&Ordered<RawPolicy>>,
    consumers: &Arc<Consumers>,
    redis: bool,
    upstreams: &[RawUpstream],
) -> PolicyTable {
    let mut table = PolicyTable::default();
    for (name, policy) in raw.iter().flat_map(|o| &o.0) {
        let key = format!("policies.{}", name.get_ref());
        if let Err(message) = check_name(name.get_ref()) {
            cx.problem(key.clone(), Some(name.span()), message);
        }
        let slot = table.rate_limits.len();
        let stage = compile_one(
            cx,
            &key,
            name.get_ref(),
            policy.get_ref(),
            (consumers, upstreams),
            (redis, slot),
        );
        match &stage {
            Some(Stage::RateLimit(p)) => table.rate_limits.push(Arc::clone(p)),
            Some(Stage::Jwt(p)) if p.keys.is_refreshed() => {
                table.jwks_stores.push(Arc::clone(&p.keys));
            }
            _ => {}
        }
        table.by_name.insert(name.get_ref().clone(), stage);
    }
    table
}

/// Compiles one policy table by its kind; a rate limit needs to know whether `[redis]` is
/// configured and takes rate-limit slot `slot` (`rate_limit`).
fn compile_one(
    cx: &mut Ctx<'_>,
    key: &str,
    name: &str,
    raw: &RawPolicy,
    (consumers, upstreams): (&Arc<Consumers>, &[RawUpstream]),
    rate_limit: (bool, usize),
) -> Option<Stage> {
    let kind = raw.kind.get_ref().as_str();
    let known: &[&str] = match kind {
        "cors" => cors::KEYS,
        "compress" => compress::KEYS,
        "ip_filter" => ip_filter::KEYS,
        "api_key" => api_key::KEYS,
        "basic" => basic::KEYS,
        "jwt" => jwt::KEYS,
        "introspect" => introspect::KEYS,
        "authz" => authz::KEYS,
        "rate_limit" => rate_limit::KEYS,
        "validate" => validate::KEYS,
        "transform" => transform::KEYS,
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
    if cx.problems.len() != before {
        return None;
    }
    let mut k = KindCx {
        cx,
        key,
        name,
        raw,
        consumers,
        upstreams,
    };
    let stage = match kind {
        "cors" => cors::compile(&mut k).map(Stage::Cors),
        "compress" => compress::compile(&mut k).map(Stage::Compress),
        "ip_filter" => ip_filter::compile(k.cx, key, name, raw).map(Stage::IpFilter),
        "api_key" => api_key::compile(&mut k).map(Stage::ApiKey),
        "basic" => basic::compile(&mut k).map(Stage::Basic),
        "jwt" => jwt::compile(&mut k).map(Stage::Jwt),
        "introspect" => introspect::compile(&mut k).map(Stage::Introspect),
        "authz" => authz::compile(&mut k).map(Stage::Authz),
        "validate" => validate::compile(&mut k).map(Stage::Validate),
        "transform" => transform::compile(&mut k).map(Stage::Transform),
        "rate_limit" => {
            let (redis, slot) = rate_limit;
            rate_limit::compile(k.cx, key, name, raw, redis, slot).map(Stage::RateLimit)
        }
        _ => None,
    };
    let cx = k.cx;
    stage.filter(|_| cx.problems.len() == before)
}

impl PolicyTable {
    /// The rate-limit policies, by slot, for the snapshot.
    pub(super) fn rate_limits(&self) -> Vec<Arc<RateLimitPolicy>> {
        self.rate_limits.clone()
    }

    /// The key stores refreshed from a JWKS URL, for the snapshot to start on publication.
    pub(super) fn jwks_stores(&self) -> Vec<Arc<KeyStore>> {
        self.jwks_stores.clone()
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
        let chain = Chain::new(stages);
        let cors = chain
            .stages()
            .iter()
            .filter(|s| matches!(s, Stage::Cors(_)));
        if cors.count() > 1 {
            let message = "a route takes at most one `cors` policy".to_string();
            cx.problem(key.to_string(), list.map(|l| l.span()), message);
        }
        let compress = chain
            .stages()
            .iter()
            .filter(|s| matches!(s, Stage::Compress(_)));
        if compress.count() > 1 {
            let message = "a route takes at most one `compress` policy".to_string();
            cx.problem(key.to_string(), list.map(|l| l.span()), message);
        }
        let transforms = chain
            .stages()
            .iter()
            .filter(|s| matches!(s, Stage::Transform(_)));
        if transforms.count() > 1 {
            let message = "a route takes at most one `transform` policy".to_string();
            cx.problem(key.to_string(), list.map(|l| l.span()), message);
        }
        let authorizes = chain.stages().iter().any(|s| matches!(s, Stage::Authz(_)));
        if authorizes && !chain.authenticates() {
            let message = "an `authz` policy needs an authentication policy (`api_key`, \
                           `basic`, `jwt` or `introspect`) on the same route"
                .to_string();
            cx.problem(key.to_string(), list.map(|l| l.span()), message);
        }
        chain
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
pub(crate) mod tests {
    use crate::config::compile::{check_without_router, keys_and_lines};

    pub(crate) const ROUTE: &str =
        "[[upstreams]]\nname = \"u\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n";

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
