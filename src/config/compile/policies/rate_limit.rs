//! `kind = "rate_limit"`: `key`, `rate`, `burst`, `scope`, `max_keys`; and `[redis]`, which
//! `scope = "cluster"` needs.

use std::sync::Arc;

use toml::Spanned;

use super::super::matcher::is_token;
use super::super::Ctx;
use crate::config::file::{RawPolicy, RawRedis};
use crate::config::RedisSettings;
use crate::rate_limit::{KeySource, Rate, RateLimitPolicy, Scope};

/// `max_keys` when absent: 2.7 MiB of table per policy per worker (see `KeyTable::new`).
pub const DEFAULT_MAX_KEYS: i64 = 16_384;
const MAX_KEYS_RANGE: std::ops::RangeInclusive<i64> = 1..=16_777_216;
/// Largest `burst`.
const MAX_BURST: i64 = 1_000_000_000;

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &["key", "rate", "burst", "scope", "max_keys"];

/// Compiles a `rate_limit` table at `key` (e.g. `policies.per-client`) into the policy at
/// `slot` of the snapshot's rate limits; `redis` says whether `[redis]` is configured.
pub(super) fn compile(
    cx: &mut Ctx<'_>,
    key: &str,
    name: &str,
    raw: &RawPolicy,
    redis: bool,
    slot: usize,
) -> Option<Arc<RateLimitPolicy>> {
    let source = key_source(cx, key, raw.key.as_ref());
    let rate = match &raw.rate {
        Some(text) => match Rate::parse(text.get_ref()) {
            Ok(rate) => Some(rate),
            Err(message) => {
                cx.problem(format!("{key}.rate"), Some(text.span()), message);
                None
            }
        },
        None => {
            let message = "a rate_limit policy needs `rate`, e.g. rate = \"100/s\"".to_string();
            cx.problem(format!("{key}.rate"), Some(raw.kind.span()), message);
            None
        }
    };
    let burst_default = rate.map_or(1, |r| i64::try_from(r.count).unwrap_or(MAX_BURST));
    let burst = cx.int(
        &format!("{key}.burst"),
        &raw.burst,
        1..=MAX_BURST,
        burst_default.min(MAX_BURST),
    );
    let scope = scope(cx, key, raw.scope.as_ref(), redis);
    let max_keys = cx.int(
        &format!("{key}.max_keys"),
        &raw.max_keys,
        MAX_KEYS_RANGE,
        DEFAULT_MAX_KEYS,
    );
    let mut policy = RateLimitPolicy::new(
        name,
        source?,
        rate?,
        burst.unsigned_abs(),
        scope?,
        usize::try_from(max_keys).unwrap_or(usize::MAX),
    );
    policy.slot = slot;
    Some(Arc::new(policy))
}

fn key_source(
    cx: &mut Ctx<'_>,
    prefix: &str,
    value: Option<&Spanned<String>>,
) -> Option<KeySource> {
    let Some(value) = value else {
        return Some(KeySource::Ip);
    };
    let text = value.get_ref().trim();
    let parsed = match text {
        "ip" => Ok(KeySource::Ip),
        "route" => Ok(KeySource::Route),
        "consumer" => Ok(KeySource::Consumer),
        _ => match text.strip_prefix("header:") {
            Some(header) if is_token(header) => Ok(KeySource::Header(header.to_ascii_lowercase())),
            _ => Err(format!(
                "invalid key `{text}`: expected \"ip\", \"header:NAME\", \"consumer\" or \"route\""
            )),
        },
    };
    match parsed {
        Ok(key) => Some(key),
        Err(message) => {
            cx.problem(format!("{prefix}.key"), Some(value.span()), message);
            None
        }
    }
}

fn scope(
    cx: &mut Ctx<'_>,
    prefix: &str,
    value: Option<&Spanned<String>>,
    redis: bool,
) -> Option<Scope> {
    let Some(value) = value else {
        return Some(Scope::Instance);
    };
    let problem = match value.get_ref().as_str() {
        "worker" => return Some(Scope::Worker),
        "instance" => return Some(Scope::Instance),
        "cluster" if redis => return Some(Scope::Cluster),
        "cluster" => "scope = \"cluster\" needs a [redis] table with its url".to_string(),
        other => {
            format!("invalid scope `{other}`: expected \"worker\", \"instance\" or \"cluster\"")
        }
    };
    cx.problem(format!("{prefix}.scope"), Some(value.span()), problem);
    None
}

/// `[redis]`.
pub(in crate::config::compile) fn redis(cx: &mut Ctx<'_>, raw: &RawRedis) -> Option<RedisSettings> {
    let url = raw.url.get_ref();
    let ok = (url.starts_with("redis://") || url.starts_with("rediss://"))
        && redis::parse_redis_url(url).is_some();
    if !ok {
        let message = format!(
            "invalid url `{url}`: expected redis://HOST:PORT, e.g. \"redis://127.0.0.1:6379\""
        );
        cx.problem("redis.url", Some(raw.url.span()), message);
        return None;
    }
    Some(RedisSettings { url: url.clone() })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::problems;
    use crate::config::load_str;
    use crate::policy::Stage;
    use crate::rate_limit::{KeySource, Scope};

    const ROUTE: &str = "[[upstreams]]\nname = \"u\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n\
                         [[routes]]\nname = \"r\"\nupstream = \"u\"\npolicies = [\"limit\"]\n";

    fn one(key: &str, line: usize) -> Vec<(String, Option<usize>)> {
        vec![(key.to_string(), Some(line))]
    }

    #[test]
    fn compiles_every_key_into_the_route_chain_and_the_snapshot() {
        let text = format!(
            "{ROUTE}[redis]\nurl = \"redis://127.0.0.1:6379\"\n[policies.limit]\n\
             kind = \"rate_limit\"\nkey = \"header:X-Api-Key\"\nrate = \"6000/m\"\nburst = 50\n\
             scope = \"cluster\"\nmax_keys = 1000\n"
        );
        let snapshot = load_str(&text, "t.toml").expect("valid");
        assert_eq!(snapshot.rate_limits.len(), 1);
        let p = &snapshot.rate_limits[0];
        assert_eq!(p.key, KeySource::Header("x-api-key".into()));
        assert_eq!(p.rate.count, 6000);
        assert_eq!(p.rate.period, Duration::from_secs(60));
        assert_eq!(p.burst, 50);
        assert_eq!(p.scope, Scope::Cluster);
        assert_eq!(p.max_keys, 1000);
        assert_eq!(p.slot, 0);
        assert_eq!(
            snapshot.redis.as_ref().map(|r| r.url.as_str()),
            Some("redis://127.0.0.1:6379")
        );
    }

    #[test]
    fn defaults_to_the_client_address_an_instance_scope_and_a_burst_of_one_period() {
        let text = format!("{ROUTE}[policies.limit]\nkind = \"rate_limit\"\nrate = \"100/s\"\n");
        let snapshot = load_str(&text, "t.toml").expect("valid");
        let p = &snapshot.rate_limits[0];
        assert_eq!(
            (p.key.clone(), p.scope, p.burst),
            (KeySource::Ip, Scope::Instance, 100)
        );
        assert_eq!(p.max_keys, 16_384);
        let route = snapshot.router.get(0).expect("one route");
        assert!(route
            .policies
            .stages()
            .iter()
            .any(|s| matches!(s, Stage::RateLimit(_))));
    }

    #[test]
    fn rejects_bad_values_with_their_lines() {
        let text = "[policies.limit]\nkind = \"rate_limit\"\nkey = \"cookie:x\"\nrate = \"10/d\"\n\
                    burst = 0\nscope = \"galaxy\"\nmax_keys = 0\n";
        let keys: Vec<(String, Option<usize>)> = problems(text);
        assert_eq!(
            keys,
            vec![
                ("policies.limit.key".to_string(), Some(3)),
                ("policies.limit.rate".to_string(), Some(4)),
                ("policies.limit.burst".to_string(), Some(5)),
                ("policies.limit.scope".to_string(), Some(6)),
                ("policies.limit.max_keys".to_string(), Some(7)),
            ]
        );
    }

    #[test]
    fn requires_a_rate() {
        let text = "[policies.limit]\nkind = \"rate_limit\"\n";
        assert_eq!(problems(text), one("policies.limit.rate", 2));
    }

    #[test]
    fn a_cluster_scope_needs_redis() {
        let text = "[policies.limit]\nkind = \"rate_limit\"\nrate = \"1/s\"\nscope = \"cluster\"\n";
        assert_eq!(problems(text), one("policies.limit.scope", 4));
    }

    #[test]
    fn rejects_keys_of_other_kinds_and_a_bad_redis_url() {
        let text =
            "[policies.limit]\nkind = \"rate_limit\"\nrate = \"1/s\"\nallow = [\"10.0.0.0/8\"]\n";
        assert_eq!(problems(text), one("policies.limit.allow", 4));
        let text = "[redis]\nurl = \"http://x\"\n";
        assert_eq!(problems(text), one("redis.url", 2));
    }
}
