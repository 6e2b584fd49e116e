//! `[[upstreams]]`: names, targets (resolved now), pool and timeouts; the traffic-management
//! keys (balancing, health, retries, breaker, discovery) are read in `traffic`.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use std::sync::Arc;

use super::{check_name, traffic, Ctx};
use crate::config::file::{RawTarget, RawUpstream};
use crate::config::{Balance, PoolSettings, Target, Upstream, UpstreamTimeouts};
use crate::upstream::{Discovery, LiveTargets, TargetSet, TargetSpec};
/// `weight` bounds and default.
const WEIGHT_RANGE: std::ops::RangeInclusive<i64> = 1..=1000;
/// `pool.max_idle_per_target` when absent, and its bounds (0 turns pooling off).
pub const DEFAULT_MAX_IDLE_PER_TARGET: i64 = 64;
const MAX_IDLE_RANGE: std::ops::RangeInclusive<i64> = 0..=4096;
/// `pool.idle_timeout` when absent.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// `timeouts.connect` when absent.
pub const DEFAULT_CONNECT: Duration = Duration::from_secs(1);
/// `timeouts.first_byte` when absent.
pub const DEFAULT_FIRST_BYTE: Duration = Duration::from_secs(30);
/// `timeouts.idle` when absent.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// Compiles every upstream group, in order: index `i` is `UpstreamId(i)`.
pub(super) fn compile(cx: &mut Ctx<'_>, raw: &[RawUpstream]) -> Vec<Upstream> {
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, up) in raw.iter().enumerate() {
        let name = up.name.get_ref();
        let key = format!("upstreams[{i}]");
        if let Err(message) = check_name(name) {
            cx.problem(format!("{key}.name"), Some(up.name.span()), message);
        } else if let Some(line) = first_line.get(name.as_str()) {
            let message =
                format!("duplicate upstream name `{name}` (first defined on line {line})");
            cx.problem(format!("{key}.name"), Some(up.name.span()), message);
        } else {
            first_line.insert(name, cx.line(up.name.span()));
        }
        out.push(upstream(cx, &key, up));
    }
    out
}

fn upstream(cx: &mut Ctx<'_>, key: &str, up: &RawUpstream) -> Upstream {
    let balance = traffic::balance(cx, key, up);
    let resolve_every = traffic::resolve_every(cx, key, up);
    if up.targets.is_empty() {
        let message = "at least one target is required, e.g. [{ addr = \"127.0.0.1:9001\" }]";
        cx.problem(
            format!("{key}.targets"),
            Some(up.name.span()),
            message.into(),
        );
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut specs = Vec::new();
    for (j, raw) in up.targets.iter().enumerate() {
        let found = target(
            cx,
            &format!("{key}.targets[{j}]"),
            raw,
            resolve_every.is_some(),
        );
        if let Some(first) = found.first() {
            specs.push(TargetSpec {
                addr: raw.addr.get_ref().clone(),
                weight: first.weight,
            });
        }
        targets.extend(found);
    }
    let discovery = resolve_every.map(|every| Discovery { every, specs });
    let hashed = matches!(balance, Balance::ConsistentHash(_));
    let live = Arc::new(LiveTargets::new(TargetSet::build(
        dedup(targets.clone()),
        hashed,
        |_| None,
    )));
    let pool = up.pool.as_ref();
    let max_idle = cx.int(
        &format!("{key}.pool.max_idle_per_target"),
        pool.map_or(&None, |p| &p.max_idle_per_target),
        MAX_IDLE_RANGE,
        DEFAULT_MAX_IDLE_PER_TARGET,
    );
    let idle_timeout = cx.timeout(
        &format!("{key}.pool.idle_timeout"),
        pool.map_or(&None, |p| &p.idle_timeout),
        DEFAULT_POOL_IDLE_TIMEOUT,
    );
    let t = up.timeouts.as_ref();
    let tls = up
        .tls
        .as_ref()
        .and_then(|tls| super::tls::upstream_tls(cx, &format!("{key}.tls"), tls));
    let (protocol, tls) = super::http2::protocol(cx, key, up, tls);
    Upstream {
        name: up.name.get_ref().clone(),
        tls,
        protocol,
        http2: super::http2::upstream(cx, key, up),
        targets,
        pool: PoolSettings {
            max_idle_per_target: usize::try_from(max_idle).unwrap_or(0),
            idle_timeout,
        },
        timeouts: UpstreamTimeouts {
            connect: cx.timeout(
                &format!("{key}.timeouts.connect"),
                t.map_or(&None, |t| &t.connect),
                DEFAULT_CONNECT,
            ),
            first_byte: cx.timeout(
                &format!("{key}.timeouts.first_byte"),
                t.map_or(&None, |t| &t.first_byte),
                DEFAULT_FIRST_BYTE,
            ),
            idle: cx.timeout(
                &format!("{key}.timeouts.idle"),
                t.map_or(&None, |t| &t.idle),
                DEFAULT_IDLE,
            ),
            total: t.and_then(|t| t.total.as_ref()).map(|total| {
                cx.timeout(
                    &format!("{key}.timeouts.total"),
                    &Some(total.clone()),
                    DEFAULT_FIRST_BYTE,
                )
            }),
        },
        balance,
        health: up.health.as_ref().map(|h| traffic::health(cx, key, h)),
        passive: up.passive.as_ref().map(|p| traffic::passive(cx, key, p)),
        retry: up
            .retry
            .as_ref()
            .map(|r| traffic::retry(cx, key, r))
            .unwrap_or_default(),
        breaker: up.breaker.as_ref().map(|b| traffic::breaker(cx, key, b)),
        discovery,
        live,
    }
}

/// Targets without repeated addresses (two names may resolve to the same one).
fn dedup(targets: Vec<Target>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::with_capacity(targets.len());
    for t in targets {
        if !out.iter().any(|o| o.addr == t.addr) {
            out.push(t);
        }
    }
    out
}

/// The target(s) of one entry: its first address, or every address when the group
/// re-resolves its names (`resolve_every`).
fn target(cx: &mut Ctx<'_>, key: &str, raw: &RawTarget, all: bool) -> Vec<Target> {
    let weight = cx.int(&format!("{key}.weight"), &raw.weight, WEIGHT_RANGE, 1);
    let weight = u32::try_from(weight).unwrap_or(1);
    match resolve(raw.addr.get_ref()) {
        Ok(addrs) => {
            let take = if all { addrs.len() } else { 1 };
            addrs
                .into_iter()
                .take(take)
                .map(|addr| Target { addr, weight })
                .collect()
        }
        Err(message) => {
            cx.problem(format!("{key}.addr"), Some(raw.addr.span()), message);
            Vec::new()
        }
    }
}

/// `ip:port` as is, or `name:port` resolved now: a name that does not resolve at load time is
/// an error, not a surprise. Groups with `resolve_every` re-resolve later, on the health
/// thread.
fn resolve(addr: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(parsed) = addr.parse::<SocketAddr>() {
        return Ok(vec![parsed]);
    }
    match addr.to_socket_addrs() {
        Ok(found) => {
            let found: Vec<SocketAddr> = found.collect();
            if found.is_empty() {
                Err(format!("`{addr}` resolved to no address"))
            } else {
                Ok(found)
            }
        }
        Err(err) => Err(format!(
            "cannot resolve `{addr}`: {err} (expected \"ip:port\" or \"name:port\")"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile::{check_without_router, keys_and_lines};
    use crate::config::file::RawConfig;

    fn upstreams(text: &str) -> Vec<Upstream> {
        let raw: RawConfig = toml::from_str(text).expect("valid toml");
        let mut cx = Ctx::new(text);
        let out = compile(&mut cx, &raw.upstreams);
        assert!(cx.problems.is_empty(), "{:?}", cx.problems);
        out
    }

    fn problem_keys(text: &str) -> Vec<(String, Option<usize>)> {
        keys_and_lines(&check_without_router(text))
    }

    #[test]
    fn applies_pool_timeout_and_weight_defaults() {
        let ups =
            upstreams("[[upstreams]]\nname = \"a\"\ntargets = [{ addr = \"127.0.0.1:9001\" }]\n");
        let up = &ups[0];
        assert_eq!(up.name, "a");
        assert_eq!(
            up.targets[0].addr,
            "127.0.0.1:9001".parse().expect("literal")
        );
        assert_eq!(up.targets[0].weight, 1);
        assert_eq!(up.pool.max_idle_per_target, 64);
        assert_eq!(up.pool.idle_timeout, Duration::from_secs(30));
        assert_eq!(up.timeouts.connect, Duration::from_secs(1));
        assert_eq!(up.timeouts.first_byte, Duration::from_secs(30));
        assert_eq!(up.timeouts.idle, Duration::from_secs(60));
    }

    #[test]
    fn reads_every_key_and_resolves_names() {
        let ups = upstreams(
            r#"
[[upstreams]]
name = "a"
balance = "round_robin"
targets = [{ addr = "localhost:9001", weight = 5 }, { addr = "[::1]:9002" }]
pool = { max_idle_per_target = 0, idle_timeout = "5s" }
timeouts = { connect = "250ms", first_byte = "2s", idle = "1m" }
"#,
        );
        let up = &ups[0];
        assert_eq!(up.targets[0].addr.port(), 9001);
        assert!(up.targets[0].addr.ip().is_loopback());
        assert_eq!(up.targets[0].weight, 5);
        assert_eq!(up.pool.max_idle_per_target, 0);
        assert_eq!(up.timeouts.connect, Duration::from_millis(250));
        assert_eq!(up.timeouts.idle, Duration::from_secs(60));
    }

    #[test]
    fn rejects_duplicate_and_malformed_names() {
        let text = "[[upstreams]]\nname = \"a\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n\
                    [[upstreams]]\nname = \"a\"\ntargets = [{ addr = \"127.0.0.1:2\" }]\n\
                    [[upstreams]]\nname = \"b c\"\ntargets = [{ addr = \"127.0.0.1:3\" }]\n";
        let problems = check_without_router(text);
        assert_eq!(
            keys_and_lines(&problems),
            vec![
                ("upstreams[1].name".to_string(), Some(5)),
                ("upstreams[2].name".to_string(), Some(8)),
            ]
        );
        assert!(
            problems[0].message.contains("line 2"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn rejects_unsupported_balance_listing_the_supported_ones() {
        let text = "[[upstreams]]\nname = \"a\"\nbalance = \"random\"\n\
                    targets = [{ addr = \"127.0.0.1:1\" }]\n";
        let problems = check_without_router(text);
        assert_eq!(
            keys_and_lines(&problems),
            vec![("upstreams[0].balance".to_string(), Some(3))]
        );
        assert_eq!(
            problems[0].message,
            "unsupported balance `random`, expected one of: round_robin, weighted, least_conn, \
             p2c_ewma, consistent_hash"
        );
    }

    #[test]
    fn requires_at_least_one_target() {
        assert_eq!(
            problem_keys("[[upstreams]]\nname = \"a\"\n"),
            vec![("upstreams[0].targets".to_string(), Some(2))]
        );
    }

    #[test]
    fn rejects_bad_target_addresses_and_weights() {
        let text = "[[upstreams]]\nname = \"a\"\ntargets = [\n  { addr = \"nonsense\" },\n  \
                    { addr = \"host:notaport\" },\n  { addr = \"127.0.0.1:1\", weight = 0 },\n  \
                    { addr = \"127.0.0.1:2\", weight = 1001 },\n]\n";
        assert_eq!(
            problem_keys(text),
            vec![
                ("upstreams[0].targets[0].addr".to_string(), Some(4)),
                ("upstreams[0].targets[1].addr".to_string(), Some(5)),
                ("upstreams[0].targets[2].weight".to_string(), Some(6)),
                ("upstreams[0].targets[3].weight".to_string(), Some(7)),
            ]
        );
    }

    #[test]
    fn rejects_pool_and_timeouts_out_of_range() {
        let text = "[[upstreams]]\nname = \"a\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n\
                    pool = { max_idle_per_target = -1 }\ntimeouts = { connect = \"0ms\" }\n";
        assert_eq!(
            problem_keys(text),
            vec![
                ("upstreams[0].pool.max_idle_per_target".to_string(), Some(4)),
                ("upstreams[0].timeouts.connect".to_string(), Some(5)),
            ]
        );
    }

    #[test]
    fn rejects_unknown_keys_with_their_line() {
        for key in [
            "health = { path = \"/\", every = \"1s\" }",
            "retry = { attempts = 2, when = [] }",
            "breaker = { ratio = 1 }",
            "sticky = true",
        ] {
            let text = format!(
                "[[upstreams]]\nname = \"a\"\ntargets = [{{ addr = \"127.0.0.1:1\" }}]\n{key}\n"
            );
            let problems = check_without_router(&text);
            assert_eq!(problems.len(), 1, "{key}");
            assert_eq!(problems[0].line, Some(4), "{key}");
        }
    }
}
