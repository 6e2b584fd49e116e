//! The traffic-management keys of an `[[upstreams]]` entry: `balance`/`hash_key`, `health`,
//! `passive`, `retry`, `breaker` and `resolve_every`. Defaults are the constants below (and
//! docs/configuration.md).

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Spanned;

use super::Ctx;
use crate::config::file::{
    RawBreaker, RawHealth, RawPassive, RawRetry, RawStatusRange, RawUpstream,
};
use crate::config::{
    Balance, BreakerPolicy, HashKey, HealthCheck, PassivePolicy, RetryPolicy, StatusRange,
};

/// Balancing algorithms the runtime implements.
pub const BALANCE_ALGORITHMS: &[&str] = &[
    "round_robin",
    "weighted",
    "least_conn",
    "p2c_ewma",
    "consistent_hash",
];

/// `health` defaults.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// `health.timeout` default.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
const HEALTH_RUN_RANGE: RangeInclusive<i64> = 1..=100;
/// `passive` defaults.
pub const DEFAULT_PASSIVE_FAILURES: i64 = 5;
/// `passive.base_ejection` default.
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(5);
/// `passive.max_ejection` default.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(60);
/// `passive.max_ejected_percent` default.
pub const DEFAULT_MAX_EJECTED_PERCENT: i64 = 50;
/// `retry.attempts` default when a `retry` table is present.
pub const DEFAULT_ATTEMPTS: i64 = 2;
/// `breaker` defaults.
pub const DEFAULT_ERROR_RATIO: f64 = 0.5;
/// `breaker.min_requests` default.
pub const DEFAULT_MIN_REQUESTS: i64 = 20;
/// `breaker.window` and `breaker.open_for` default.
pub const DEFAULT_BREAKER_WINDOW: Duration = Duration::from_secs(10);
/// `breaker.half_open_probes` default.
pub const DEFAULT_HALF_OPEN_PROBES: i64 = 1;
/// Shortest `resolve_every`.
pub const MIN_RESOLVE_EVERY: Duration = Duration::from_millis(100);

/// `balance` and `hash_key`.
pub(super) fn balance(cx: &mut Ctx<'_>, key: &str, up: &RawUpstream) -> Balance {
    let name = up
        .balance
        .as_ref()
        .map_or("round_robin", |b| b.get_ref().as_str());
    let hash_key = up.hash_key.as_ref();
    let balance = match name {
        "round_robin" => Balance::RoundRobin,
        "weighted" => Balance::Weighted,
        "least_conn" => Balance::LeastConn,
        "p2c_ewma" => Balance::P2cEwma,
        "consistent_hash" => match hash_key {
            Some(k) => Balance::ConsistentHash(parse_hash_key(cx, key, k).unwrap_or(HashKey::Ip)),
            None => {
                let message =
                    "consistent_hash needs `hash_key` (\"ip\", \"path\", \"header:NAME\" or \"cookie:NAME\")";
                let span = up.balance.as_ref().map(Spanned::span);
                cx.problem(format!("{key}.hash_key"), span, message.into());
                Balance::RoundRobin
            }
        },
        other => {
            let message = format!(
                "unsupported balance `{other}`, expected one of: {}",
                BALANCE_ALGORITHMS.join(", ")
            );
            let span = up.balance.as_ref().map(Spanned::span);
            cx.problem(format!("{key}.balance"), span, message);
            Balance::RoundRobin
        }
    };
    if let (Some(k), false) = (hash_key, name == "consistent_hash") {
        let message = "only used with balance = \"consistent_hash\"".to_string();
        cx.problem(format!("{key}.hash_key"), Some(k.span()), message);
    }
    balance
}

fn parse_hash_key(cx: &mut Ctx<'_>, key: &str, raw: &Spanned<String>) -> Option<HashKey> {
    let text = raw.get_ref();
    let parsed = match text.split_once(':') {
        None if text == "ip" => Some(HashKey::Ip),
        None if text == "path" => Some(HashKey::Path),
        Some(("header", name)) if is_token(name) => Some(HashKey::Header(name.to_string())),
        Some(("cookie", name)) if is_token(name) => Some(HashKey::Cookie(name.to_string())),
        _ => None,
    };
    if parsed.is_none() {
        let message = format!(
            "invalid hash_key `{text}`: expected \"ip\", \"path\", \"header:NAME\" or \"cookie:NAME\""
        );
        cx.problem(format!("{key}.hash_key"), Some(raw.span()), message);
    }
    parsed
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `health = { ... }`.
pub(super) fn health(cx: &mut Ctx<'_>, key: &str, raw: &Spanned<RawHealth>) -> HealthCheck {
    let key = format!("{key}.health");
    let h = raw.get_ref();
    let path = h.path.get_ref();
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        let message = format!("invalid path `{path}`: expected e.g. \"/healthz\"");
        cx.problem(format!("{key}.path"), Some(h.path.span()), message);
    }
    let expected_status = match &h.expected_status {
        None => StatusRange {
            low: 200,
            high: 299,
        },
        Some(s) => status_range(cx, &format!("{key}.expected_status"), s),
    };
    HealthCheck {
        path: path.clone(),
        expected_status,
        interval: cx.timeout(
            &format!("{key}.interval"),
            &h.interval,
            DEFAULT_HEALTH_INTERVAL,
        ),
        timeout: cx.timeout(
            &format!("{key}.timeout"),
            &h.timeout,
            DEFAULT_HEALTH_TIMEOUT,
        ),
        unhealthy_after: count(
            cx,
            &format!("{key}.unhealthy_after"),
            &h.unhealthy_after,
            HEALTH_RUN_RANGE,
            3,
        ),
        healthy_after: count(
            cx,
            &format!("{key}.healthy_after"),
            &h.healthy_after,
            HEALTH_RUN_RANGE,
            2,
        ),
    }
}

fn status_range(cx: &mut Ctx<'_>, key: &str, raw: &Spanned<RawStatusRange>) -> StatusRange {
    let parsed = match raw.get_ref() {
        RawStatusRange::One(n) => u16::try_from(*n).ok().map(|s| (s, s)),
        RawStatusRange::Range(text) => match text.split_once('-') {
            Some((a, b)) => a.trim().parse().ok().zip(b.trim().parse().ok()),
            None => text.trim().parse().ok().map(|s| (s, s)),
        },
    };
    match parsed {
        Some((low, high)) if (100..=599).contains(&low) && (low..=599).contains(&high) => {
            StatusRange { low, high }
        }
        _ => {
            let message =
                "expected a status (200) or an inclusive range (\"200-399\") within 100-599";
            cx.problem(key, Some(raw.span()), message.into());
            StatusRange {
                low: 200,
                high: 299,
            }
        }
    }
}

/// `passive = { ... }`.
pub(super) fn passive(cx: &mut Ctx<'_>, key: &str, raw: &Spanned<RawPassive>) -> PassivePolicy {
    let key = format!("{key}.passive");
    let p = raw.get_ref();
    let base = cx.timeout(
        &format!("{key}.base_ejection"),
        &p.base_ejection,
        DEFAULT_BASE_EJECTION,
    );
    let max = cx.timeout(
        &format!("{key}.max_ejection"),
        &p.max_ejection,
        DEFAULT_MAX_EJECTION.max(base),
    );
    if max < base {
        let span = p.max_ejection.as_ref().map(Spanned::span);
        cx.problem(
            format!("{key}.max_ejection"),
            span,
            "must not be less than base_ejection".into(),
        );
    }
    PassivePolicy {
        consecutive_failures: count(
            cx,
            &format!("{key}.consecutive_failures"),
            &p.consecutive_failures,
            1..=1000,
            DEFAULT_PASSIVE_FAILURES,
        ),
        base_ejection: base,
        max_ejection: max.max(base),
        max_ejected_percent: count(
            cx,
            &format!("{key}.max_ejected_percent"),
            &p.max_ejected_percent,
            0..=100,
            DEFAULT_MAX_EJECTED_PERCENT,
        ),
    }
}

/// `retry = { ... }`.
pub(super) fn retry(cx: &mut Ctx<'_>, key: &str, raw: &Spanned<RawRetry>) -> RetryPolicy {
    let key = format!("{key}.retry");
    let r = raw.get_ref();
    let defaults = RetryPolicy::default();
    let mut policy = RetryPolicy {
        attempts: count(
            cx,
            &format!("{key}.attempts"),
            &r.attempts,
            1..=10,
            DEFAULT_ATTEMPTS,
        ),
        backoff: cx.timeout(&format!("{key}.backoff"), &r.backoff, defaults.backoff),
        max_backoff: cx.timeout(
            &format!("{key}.max_backoff"),
            &r.max_backoff,
            defaults.max_backoff,
        ),
        budget_percent: count(
            cx,
            &format!("{key}.budget_percent"),
            &r.budget_percent,
            0..=100,
            i64::from(defaults.budget_percent),
        ),
        budget_window: cx.timeout(
            &format!("{key}.budget_window"),
            &r.budget_window,
            defaults.budget_window,
        ),
        min_retries_per_sec: count(
            cx,
            &format!("{key}.min_retries_per_sec"),
            &r.min_retries_per_sec,
            0..=100_000,
            i64::from(defaults.min_retries_per_sec),
        ),
        ..defaults
    };
    if policy.max_backoff < policy.backoff {
        let span = r.max_backoff.as_ref().map(Spanned::span);
        cx.problem(
            format!("{key}.max_backoff"),
            span,
            "must not be less than backoff".into(),
        );
    }
    match &r.on {
        None => policy.on_connect_error = true,
        Some(on) => {
            for (i, item) in on.iter().enumerate() {
                retry_on(cx, &format!("{key}.on[{i}]"), item, &mut policy);
            }
        }
    }
    policy
}

fn retry_on(cx: &mut Ctx<'_>, key: &str, item: &Spanned<String>, policy: &mut RetryPolicy) {
    match item.get_ref().as_str() {
        "connect_error" => policy.on_connect_error = true,
        "timeout" => policy.on_timeout = true,
        "reset" => policy.on_reset = true,
        other => match other.parse::<u16>() {
            Ok(status) if other.len() == 3 && (400..=599).contains(&status) => {
                if !policy.on_status.contains(&status) {
                    policy.on_status.push(status);
                }
            }
            _ => {
                let message = format!(
                    "unknown retry condition `{other}`: expected \"connect_error\", \"timeout\", \"reset\" or a status 400-599"
                );
                cx.problem(key, Some(item.span()), message);
            }
        },
    }
}

/// `breaker = { ... }`.
pub(super) fn breaker(cx: &mut Ctx<'_>, key: &str, raw: &Spanned<RawBreaker>) -> BreakerPolicy {
    let key = format!("{key}.breaker");
    let b = raw.get_ref();
    let error_ratio = match &b.error_ratio {
        None => DEFAULT_ERROR_RATIO,
        Some(r) if *r.get_ref() > 0.0 && *r.get_ref() <= 1.0 => *r.get_ref(),
        Some(r) => {
            let message = format!(
                "{} is out of range: expected more than 0 and at most 1",
                r.get_ref()
            );
            cx.problem(format!("{key}.error_ratio"), Some(r.span()), message);
            DEFAULT_ERROR_RATIO
        }
    };
    BreakerPolicy {
        error_ratio,
        min_requests: count(
            cx,
            &format!("{key}.min_requests"),
            &b.min_requests,
            1..=1_000_000,
            DEFAULT_MIN_REQUESTS,
        ),
        window: cx.timeout(&format!("{key}.window"), &b.window, DEFAULT_BREAKER_WINDOW),
        open_for: cx.timeout(
            &format!("{key}.open_for"),
            &b.open_for,
            DEFAULT_BREAKER_WINDOW,
        ),
        half_open_probes: count(
            cx,
            &format!("{key}.half_open_probes"),
            &b.half_open_probes,
            1..=100,
            DEFAULT_HALF_OPEN_PROBES,
        ),
    }
}

/// `resolve_every`.
pub(super) fn resolve_every(cx: &mut Ctx<'_>, key: &str, up: &RawUpstream) -> Option<Duration> {
    let raw = up.resolve_every.as_ref()?;
    let every = raw.get_ref().0;
    if every < MIN_RESOLVE_EVERY {
        let message = format!("must be at least {}ms", MIN_RESOLVE_EVERY.as_millis());
        cx.problem(format!("{key}.resolve_every"), Some(raw.span()), message);
        return None;
    }
    Some(every)
}

fn count(
    cx: &mut Ctx<'_>,
    key: &str,
    value: &Option<Spanned<i64>>,
    range: RangeInclusive<i64>,
    default: i64,
) -> u32 {
    u32::try_from(cx.int(key, value, range, default)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use crate::config::compile::{check_without_router, keys_and_lines};
    use crate::config::{Balance, HashKey, StatusRange};
    use std::time::Duration;

    fn group(keys: &str) -> crate::config::Upstream {
        let text = format!(
            "[[upstreams]]\nname = \"a\"\ntargets = [{{ addr = \"127.0.0.1:1\" }}]\n{keys}\n"
        );
        let snapshot = crate::config::load_str(&text, "t").expect("valid config");
        snapshot.upstreams.into_iter().next().expect("one group")
    }

    fn problems(keys: &str) -> Vec<(String, Option<usize>)> {
        let text = format!(
            "[[upstreams]]\nname = \"a\"\ntargets = [{{ addr = \"127.0.0.1:1\" }}]\n{keys}\n"
        );
        keys_and_lines(&check_without_router(&text))
    }

    fn at4(key: &str) -> Vec<(String, Option<usize>)> {
        vec![(format!("upstreams[0].{key}"), Some(4))]
    }

    #[test]
    fn defaults_are_round_robin_without_policies() {
        let up = group("");
        assert_eq!(up.balance, Balance::RoundRobin);
        assert!(up.health.is_none() && up.passive.is_none() && up.breaker.is_none());
        assert!(up.discovery.is_none());
        assert_eq!(up.retry.attempts, 1);
        assert_eq!(up.timeouts.total, None);
    }

    #[test]
    fn reads_every_balancer_and_hash_key() {
        for (name, want) in [
            ("weighted", Balance::Weighted),
            ("least_conn", Balance::LeastConn),
            ("p2c_ewma", Balance::P2cEwma),
        ] {
            assert_eq!(group(&format!("balance = \"{name}\"")).balance, want);
        }
        for (key, want) in [
            ("ip", HashKey::Ip),
            ("path", HashKey::Path),
            ("header:X-User", HashKey::Header("X-User".into())),
            ("cookie:session", HashKey::Cookie("session".into())),
        ] {
            let up = group(&format!(
                "balance = \"consistent_hash\"\nhash_key = \"{key}\""
            ));
            assert_eq!(up.balance, Balance::ConsistentHash(want));
            assert!(up.live.current().ring.is_some());
        }
    }

    #[test]
    fn rejects_bad_hash_keys() {
        assert_eq!(problems("balance = \"consistent_hash\""), at4("hash_key"));
        assert_eq!(
            problems("balance = \"consistent_hash\"\nhash_key = \"header:\""),
            vec![("upstreams[0].hash_key".to_string(), Some(5))]
        );
        assert_eq!(problems("hash_key = \"ip\""), at4("hash_key"));
    }

    #[test]
    fn reads_health_with_defaults_and_ranges() {
        let up = group("health = { path = \"/healthz\" }");
        let h = up.health.expect("health");
        assert_eq!(
            h.expected_status,
            StatusRange {
                low: 200,
                high: 299
            }
        );
        assert_eq!(h.interval, Duration::from_secs(5));
        assert_eq!(h.timeout, Duration::from_secs(1));
        assert_eq!((h.unhealthy_after, h.healthy_after), (3, 2));
        let up = group(
            "health = { path = \"/h\", expected_status = \"200-399\", interval = \"2s\", \
             timeout = \"500ms\", unhealthy_after = 1, healthy_after = 4 }",
        );
        let h = up.health.expect("health");
        assert_eq!(
            h.expected_status,
            StatusRange {
                low: 200,
                high: 399
            }
        );
        assert_eq!(h.interval, Duration::from_secs(2));
        assert_eq!((h.unhealthy_after, h.healthy_after), (1, 4));
        let single = group("health = { path = \"/h\", expected_status = 204 }");
        assert_eq!(
            single.health.expect("health").expected_status,
            StatusRange {
                low: 204,
                high: 204
            }
        );
    }

    #[test]
    fn rejects_bad_health_values() {
        assert_eq!(
            problems("health = { path = \"healthz\" }"),
            at4("health.path")
        );
        assert_eq!(
            problems("health = { path = \"/h\", expected_status = \"300-200\" }"),
            at4("health.expected_status")
        );
        assert_eq!(
            problems("health = { path = \"/h\", unhealthy_after = 0 }"),
            at4("health.unhealthy_after")
        );
        assert_eq!(
            problems("health = { path = \"/h\", interval = \"0s\" }"),
            at4("health.interval")
        );
    }

    #[test]
    fn reads_passive_retry_and_breaker() {
        let up = group(
            "passive = { consecutive_failures = 2, base_ejection = \"1s\", max_ejection = \"8s\", max_ejected_percent = 34 }\n\
             retry = { attempts = 3, on = [\"connect_error\", \"timeout\", \"reset\", \"503\"], backoff = \"10ms\", max_backoff = \"40ms\", budget_percent = 10, budget_window = \"5s\", min_retries_per_sec = 0 }\n\
             breaker = { error_ratio = 0.25, min_requests = 5, window = \"3s\", open_for = \"2s\", half_open_probes = 3 }\n\
             timeouts = { total = \"3s\" }",
        );
        let p = up.passive.expect("passive");
        assert_eq!(p.consecutive_failures, 2);
        assert_eq!(p.max_ejection, Duration::from_secs(8));
        assert_eq!(p.max_ejected_percent, 34);
        let r = &up.retry;
        assert_eq!(r.attempts, 3);
        assert!(r.on_connect_error && r.on_timeout && r.on_reset);
        assert_eq!(r.on_status, vec![503]);
        assert_eq!(r.backoff, Duration::from_millis(10));
        assert_eq!((r.budget_percent, r.min_retries_per_sec), (10, 0));
        let b = up.breaker.expect("breaker");
        assert_eq!(b.error_ratio, 0.25);
        assert_eq!((b.min_requests, b.half_open_probes), (5, 3));
        assert_eq!(b.open_for, Duration::from_secs(2));
        assert_eq!(up.timeouts.total, Some(Duration::from_secs(3)));
    }

    #[test]
    fn retry_defaults_to_two_attempts_on_connect_errors() {
        let r = group("retry = {}").retry;
        assert_eq!(r.attempts, 2);
        assert!(r.on_connect_error && !r.on_timeout && r.on_status.is_empty());
        assert_eq!(r.budget_percent, 20);
        assert_eq!(r.min_retries_per_sec, 10);
    }

    #[test]
    fn rejects_bad_policy_values() {
        assert_eq!(
            problems("retry = { on = [\"connect_error\", \"599x\"] }"),
            at4("retry.on[1]")
        );
        assert_eq!(problems("retry = { attempts = 0 }"), at4("retry.attempts"));
        assert_eq!(
            problems("retry = { backoff = \"1s\", max_backoff = \"10ms\" }"),
            at4("retry.max_backoff")
        );
        assert_eq!(
            problems("breaker = { error_ratio = 1.5 }"),
            at4("breaker.error_ratio")
        );
        assert_eq!(
            problems("passive = { max_ejected_percent = 101 }"),
            at4("passive.max_ejected_percent")
        );
        assert_eq!(
            problems("passive = { base_ejection = \"10s\", max_ejection = \"1s\" }"),
            at4("passive.max_ejection")
        );
        assert_eq!(problems("resolve_every = \"10ms\""), at4("resolve_every"));
    }

    #[test]
    fn resolve_every_keeps_every_address_of_a_name() {
        let text = "[[upstreams]]\nname = \"a\"\nresolve_every = \"1s\"\n\
                    targets = [{ addr = \"localhost:9001\", weight = 2 }]\n";
        let snapshot = crate::config::load_str(text, "t").expect("config");
        let up = &snapshot.upstreams[0];
        let d = up.discovery.as_ref().expect("discovery");
        assert_eq!(d.every, Duration::from_secs(1));
        assert_eq!(d.specs[0].addr, "localhost:9001");
        assert_eq!(d.specs[0].weight, 2);
        let live = up.live.current();
        assert!(!live.targets.is_empty());
        assert!(live
            .targets
            .iter()
            .all(|t| t.addr.ip().is_loopback() && t.weight == 2));
    }

    #[test]
    fn retry_non_idempotent_is_a_proxy_route_key() {
        let text = "[[upstreams]]\nname = \"a\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n\
                    [[routes]]\nname = \"r\"\nupstream = \"a\"\nretry_non_idempotent = true\n\
                    [[routes]]\nname = \"s\"\nrespond = { status = 200 }\nretry_non_idempotent = true\n";
        assert_eq!(
            keys_and_lines(&check_without_router(text)),
            vec![("routes[1].retry_non_idempotent".to_string(), Some(11))]
        );
    }
}
