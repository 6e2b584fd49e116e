//! `kind = "rate_limit"` policies and `[redis]`.

use std::ops::Range;
use std::sync::Arc;

use toml::Spanned;

use super::matcher::is_token;
use super::Ctx;
use crate::config::file::RawRedis;
use crate::config::RedisSettings;
use crate::rate_limit::{KeySource, Rate, RateLimitPolicy, Scope};

/// `max_keys` when absent: about 5 MiB of table per policy per worker.
pub const DEFAULT_MAX_KEYS: i64 = 65_536;
const MAX_KEYS_RANGE: std::ops::RangeInclusive<i64> = 1..=16_777_216;
/// Largest `burst`.
const MAX_BURST: i64 = 1_000_000_000;

/// The keys of one rate-limit policy table, as the file gave them.
pub(super) struct RawRateLimit<'a> {
    /// `key`: `ip`, `header:NAME`, `consumer` or `route`.
    pub key: Option<&'a Spanned<String>>,
    /// `rate`: `N/s`, `N/m` or `N/h`.
    pub rate: Option<&'a Spanned<String>>,
    /// `burst`: requests admitted at once.
    pub burst: Option<&'a Spanned<i64>>,
    /// `scope`: `worker`, `instance` or `cluster`.
    pub scope: Option<&'a Spanned<String>>,
    /// `max_keys`: keys tracked per worker.
    pub max_keys: Option<&'a Spanned<i64>>,
}

/// Compiles policy `name` (its table at `prefix`, e.g. `policies.per-client`, spanning
/// `table`); `redis` says whether `[redis]` is configured; `consumers` whether a consumer
/// identity can exist (an authentication policy is available).
pub(super) fn rate_limit(
    cx: &mut Ctx<'_>,
    prefix: &str,
    name: &str,
    table: Range<usize>,
    raw: &RawRateLimit<'_>,
    redis: bool,
    consumers: bool,
) -> Option<RateLimitPolicy> {
    let key = key_source(cx, prefix, raw.key, consumers);
    let rate = match raw.rate {
        Some(text) => match Rate::parse(text.get_ref()) {
            Ok(rate) => Some(rate),
            Err(message) => {
                cx.problem(format!("{prefix}.rate"), Some(text.span()), message);
                None
            }
        },
        None => {
            let message = "a rate_limit policy needs `rate`, e.g. rate = \"100/s\"".to_string();
            cx.problem(format!("{prefix}.rate"), Some(table.clone()), message);
            None
        }
    };
    let burst_default = rate.map_or(1, |r| i64::try_from(r.count).unwrap_or(MAX_BURST));
    let burst = cx.int(
        &format!("{prefix}.burst"),
        &raw.burst.cloned(),
        1..=MAX_BURST,
        burst_default.min(MAX_BURST),
    );
    let scope = scope(cx, prefix, raw.scope, redis, table);
    let max_keys = cx.int(
        &format!("{prefix}.max_keys"),
        &raw.max_keys.cloned(),
        MAX_KEYS_RANGE,
        DEFAULT_MAX_KEYS,
    );
    Some(RateLimitPolicy::new(
        name,
        key?,
        rate?,
        burst.unsigned_abs(),
        scope?,
        usize::try_from(max_keys).unwrap_or(usize::MAX),
    ))
}

fn key_source(
    cx: &mut Ctx<'_>,
    prefix: &str,
    value: Option<&Spanned<String>>,
    consumers: bool,
) -> Option<KeySource> {
    let Some(value) = value else {
        return Some(KeySource::Ip);
    };
    let text = value.get_ref().trim();
    let parsed = match text {
        "ip" => Ok(KeySource::Ip),
        "route" => Ok(KeySource::Route),
        "consumer" if consumers => Ok(KeySource::Consumer),
        "consumer" => Err("`consumer` needs an authentication policy on the route".to_string()),
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
    table: Range<usize>,
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
    let _ = table;
    cx.problem(format!("{prefix}.scope"), Some(value.span()), problem);
    None
}

/// `[redis]`.
pub(super) fn redis(cx: &mut Ctx<'_>, raw: &RawRedis) -> Option<RedisSettings> {
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

/// The policies' shared handles, in slot order.
pub(super) fn into_slots(policies: Vec<RateLimitPolicy>) -> Vec<Arc<RateLimitPolicy>> {
    policies.into_iter().map(Arc::new).collect()
}
