//! `[server]`: listeners, workers, driver, limits and client-side timeouts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::Ctx;
use crate::config::file::{RawDriver, RawServer, RawUnderscores, RawWorkers};
use crate::config::{DriverChoice, Limits, ServerSettings, ServerTimeouts, WorkerCount};
use crate::http::UnderscorePolicy;

/// `server.listen` when absent.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Most workers `server.workers` may ask for.
pub const MAX_WORKERS: i64 = 1024;
/// Most threads `server.password_verifiers` may ask for.
pub const MAX_PASSWORD_VERIFIERS: i64 = 1024;
/// `server.password_queue` when absent, and its largest value.
pub const DEFAULT_PASSWORD_QUEUE: i64 = 64;
const MAX_PASSWORD_QUEUE: i64 = 1 << 16;
/// `server.uring_entries` when absent, and its bounds (monoio's smallest ring and the kernel's largest).
pub const DEFAULT_URING_ENTRIES: i64 = 4096;
const MIN_URING_ENTRIES: i64 = 256;
const MAX_URING_ENTRIES: i64 = 32768;
/// `server.graceful_shutdown` when absent.
pub const DEFAULT_GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(10);
/// `server.limits.max_head_bytes` when absent, and its bounds.
pub const DEFAULT_MAX_HEAD_BYTES: u64 = 16 * 1024;
const HEAD_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=1024 * 1024;
/// `server.limits.max_headers` when absent.
pub const DEFAULT_MAX_HEADERS: i64 = 100;
/// `server.limits.max_uri_bytes` when absent (capped at `max_head_bytes`).
pub const DEFAULT_MAX_URI_BYTES: u64 = 8192;
/// `server.limits.max_body_bytes` when absent.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Largest value of `server.limits.max_connections_per_*`.
pub const MAX_CONNECTION_CAP: i64 = 1 << 24;
/// `server.timeouts.*` when absent.
pub const DEFAULT_HEAD_READ: Duration = Duration::from_secs(10);
/// See [`DEFAULT_HEAD_READ`].
pub const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// See [`DEFAULT_HEAD_READ`].
pub const DEFAULT_BODY_IDLE: Duration = Duration::from_secs(30);
/// See [`DEFAULT_HEAD_READ`]: five minutes, long enough for applications that ping every
/// minute or so, short enough that dead peers do not pile up.
pub const DEFAULT_TUNNEL_IDLE: Duration = Duration::from_secs(300);

/// Compiles `[server]` (an absent table arrives as all-`None`).
pub(super) fn compile(cx: &mut Ctx<'_>, raw: RawServer) -> ServerSettings {
    let listen = listen(cx, &raw);
    let tls = super::tls::listeners(cx, &raw.tls, &listen);
    ServerSettings {
        identity_headers: super::tls::identity_headers(&tls),
        tls,
        listen,
        workers: workers(cx, &raw),
        pin_workers: raw.pin_workers.unwrap_or(true),
        password_verifiers: raw.password_verifiers.as_ref().map(|_| {
            count(cx.int(
                "server.password_verifiers",
                &raw.password_verifiers,
                1..=MAX_PASSWORD_VERIFIERS,
                1,
            ))
        }),
        password_queue: count(cx.int(
            "server.password_queue",
            &raw.password_queue,
            1..=MAX_PASSWORD_QUEUE,
            DEFAULT_PASSWORD_QUEUE,
        )),
        driver: match raw.driver.unwrap_or(RawDriver::Auto) {
            RawDriver::Auto => DriverChoice::Auto,
            RawDriver::IoUring => DriverChoice::IoUring,
            RawDriver::Legacy => DriverChoice::Legacy,
        },
        uring_entries: uring_entries(cx, &raw),
        uring_defer_taskrun: raw.uring_defer_taskrun.unwrap_or(false),
        graceful_shutdown: raw
            .graceful_shutdown
            .map_or(DEFAULT_GRACEFUL_SHUTDOWN, |d| d.0),
        limits: limits(cx, &raw),
        timeouts: timeouts(cx, &raw),
        trusted_proxies: super::nets(cx, "server.trusted_proxies", raw.trusted_proxies.as_deref()),
        underscores_in_headers: match raw.underscores_in_headers {
            None | Some(RawUnderscores::Drop) => UnderscorePolicy::Drop,
            Some(RawUnderscores::Pass) => UnderscorePolicy::Pass,
            Some(RawUnderscores::Refuse) => UnderscorePolicy::Refuse,
        },
        errors: super::errors::format(cx, "server.errors", raw.errors.as_ref()).unwrap_or_default(),
        h2c: raw.h2c.as_ref().is_some_and(|b| *b.get_ref()),
        http2: super::http2::server(cx, raw.http2.as_ref()),
    }
}

/// `server.uring_entries`: a power of two the kernel accepts for a submission queue.
fn uring_entries(cx: &mut Ctx<'_>, raw: &RawServer) -> u32 {
    let key = "server.uring_entries";
    let n = cx.int(
        key,
        &raw.uring_entries,
        MIN_URING_ENTRIES..=MAX_URING_ENTRIES,
        DEFAULT_URING_ENTRIES,
    );
    match &raw.uring_entries {
        // In range (else `int` said so and gave the default) but not a size the kernel keeps.
        Some(value) if *value.get_ref() == n && n.count_ones() != 1 => {
            let message = format!("{n} is not a power of two (e.g. 256, 1024, 4096)");
            cx.problem(key, Some(value.span()), message);
        }
        _ => {}
    }
    u32::try_from(n).unwrap_or(4096)
}

fn listen(cx: &mut Ctx<'_>, raw: &RawServer) -> Vec<SocketAddr> {
    let Some(list) = &raw.listen else {
        return vec![SocketAddr::from(([127, 0, 0, 1], 8080))];
    };
    // An HTTPS-only gateway lists its listeners in [[server.tls]] and none here.
    if list.get_ref().is_empty() && raw.tls.is_empty() {
        let message = format!(
            "at least one address is required, e.g. [\"{DEFAULT_LISTEN}\"] (or a [[server.tls]] listener)"
        );
        cx.problem("server.listen", Some(list.span()), message);
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, entry) in list.get_ref().iter().enumerate() {
        let key = format!("server.listen[{i}]");
        let text = entry.get_ref();
        let Ok(addr) = text.parse::<SocketAddr>() else {
            let message = format!(
                "invalid address `{text}`: expected ip:port, e.g. \"0.0.0.0:8080\" or \"[::]:8080\""
            );
            cx.problem(key, Some(entry.span()), message);
            continue;
        };
        if let Some(first) = seen.insert(addr, i) {
            let message = format!("duplicate address `{addr}` (also server.listen[{first}])");
            cx.problem(key, Some(entry.span()), message);
            continue;
        }
        out.push(addr);
    }
    out
}

/// A count already checked to be positive (1 if not).
fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(1)
}

fn workers(cx: &mut Ctx<'_>, raw: &RawServer) -> WorkerCount {
    let Some(value) = &raw.workers else {
        return WorkerCount::Auto;
    };
    match *value.get_ref() {
        RawWorkers::Auto => WorkerCount::Auto,
        RawWorkers::Count(n) => match usize::try_from(n) {
            Ok(count) if (1..=MAX_WORKERS).contains(&n) => WorkerCount::Fixed(count),
            _ => {
                let message =
                    format!("{n} is out of range: expected \"auto\" or 1 to {MAX_WORKERS}");
                cx.problem("server.workers", Some(value.span()), message);
                WorkerCount::Auto
            }
        },
    }
}

fn limits(cx: &mut Ctx<'_>, raw: &RawServer) -> Limits {
    let none = Default::default();
    let raw = raw.limits.as_ref().unwrap_or(&none);
    let head = cx.size(
        "server.limits.max_head_bytes",
        &raw.max_head_bytes,
        HEAD_BYTES_RANGE,
        DEFAULT_MAX_HEAD_BYTES,
    );
    let headers = cx.int(
        "server.limits.max_headers",
        &raw.max_headers,
        1..=256,
        DEFAULT_MAX_HEADERS,
    );
    // The request-target is part of the head, so it can never be longer than the head.
    let uri = cx.size(
        "server.limits.max_uri_bytes",
        &raw.max_uri_bytes,
        16..=head,
        DEFAULT_MAX_URI_BYTES.min(head),
    );
    let body = raw
        .max_body_bytes
        .as_ref()
        .map_or(DEFAULT_MAX_BODY_BYTES, |b| b.get_ref().0);
    Limits {
        max_head_bytes: to_usize(head),
        max_headers: to_usize(headers.unsigned_abs()),
        max_uri_bytes: to_usize(uri),
        max_body_bytes: body,
        min_body_rate: min_body_rate(cx, &raw.min_body_rate),
        max_connections_per_worker: connection_cap(
            cx,
            "server.limits.max_connections_per_worker",
            &raw.max_connections_per_worker,
        ),
        max_connections_per_ip: connection_cap(
            cx,
            "server.limits.max_connections_per_ip",
            &raw.max_connections_per_ip,
        ),
        max_tunnels_per_worker: connection_cap(
            cx,
            "server.limits.max_tunnels_per_worker",
            &raw.max_tunnels_per_worker,
        ),
    }
}

/// `min_body_rate = "1KiB/s"`: a size per second, at least one byte.
fn min_body_rate(cx: &mut Ctx<'_>, value: &Option<Spanned<String>>) -> Option<u64> {
    let value = value.as_ref()?;
    let text = value.get_ref();
    let parsed = text
        .trim()
        .strip_suffix("/s")
        .ok_or_else(|| {
            format!("invalid rate `{text}`: expected a size per second, e.g. \"1KiB/s\"")
        })
        .and_then(crate::config::units::parse_size);
    match parsed {
        Ok(0) => {
            let message = "must be greater than zero (leave it out for no minimum)".to_string();
            cx.problem("server.limits.min_body_rate", Some(value.span()), message);
            None
        }
        Ok(rate) => Some(rate),
        Err(message) => {
            cx.problem("server.limits.min_body_rate", Some(value.span()), message);
            None
        }
    }
}

/// A connection cap: 1 to [`MAX_CONNECTION_CAP`]; absent means no cap.
fn connection_cap(cx: &mut Ctx<'_>, key: &str, value: &Option<Spanned<i64>>) -> Option<usize> {
    value.as_ref()?;
    let n = cx.int(key, value, 1..=MAX_CONNECTION_CAP, 0);
    (n > 0).then(|| to_usize(n.unsigned_abs()))
}

/// Range-checked values fit in `usize` on every supported (64-bit) target; saturate anyway.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn timeouts(cx: &mut Ctx<'_>, raw: &RawServer) -> ServerTimeouts {
    let none = Default::default();
    let raw = raw.timeouts.as_ref().unwrap_or(&none);
    ServerTimeouts {
        head_read: cx.timeout(
            "server.timeouts.head_read",
            &raw.head_read,
            DEFAULT_HEAD_READ,
        ),
        keepalive_idle: cx.timeout(
            "server.timeouts.keepalive_idle",
            &raw.keepalive_idle,
            DEFAULT_KEEPALIVE_IDLE,
        ),
        body_idle: cx.timeout(
            "server.timeouts.body_idle",
            &raw.body_idle,
            DEFAULT_BODY_IDLE,
        ),
        tunnel_idle: cx.timeout(
            "server.timeouts.tunnel_idle",
            &raw.tunnel_idle,
            DEFAULT_TUNNEL_IDLE,
        ),
        tunnel_max: raw
            .tunnel_max
            .as_ref()
            .map(|_| cx.timeout("server.timeouts.tunnel_max", &raw.tunnel_max, Duration::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile::{check_without_router, keys_and_lines};
    use crate::config::file::RawConfig;

    fn settings(text: &str) -> ServerSettings {
        let raw: RawConfig = toml::from_str(text).expect("valid toml");
        let mut cx = Ctx::new(text);
        let settings = compile(&mut cx, raw.server.unwrap_or_default());
        assert!(cx.problems.is_empty(), "{:?}", cx.problems);
        settings
    }

    fn problem_keys(text: &str) -> Vec<(String, Option<usize>)> {
        keys_and_lines(&check_without_router(text))
    }

    #[test]
    fn uses_every_default_when_server_is_absent() {
        let s = settings("");
        assert_eq!(s.listen, vec![DEFAULT_LISTEN.parse().expect("literal")]);
        assert_eq!(s.workers, WorkerCount::Auto);
        assert!(s.pin_workers);
        assert_eq!(s.password_verifiers, None);
        assert_eq!(s.password_queue, 64);
        assert_eq!(s.driver, DriverChoice::Auto);
        assert_eq!(i64::from(s.uring_entries), DEFAULT_URING_ENTRIES);
        assert!(!s.uring_defer_taskrun);
        assert_eq!(s.graceful_shutdown, Duration::from_secs(10));
        assert_eq!(s.limits.max_head_bytes, 16384);
        assert_eq!(s.limits.max_headers, 100);
        assert_eq!(s.limits.max_uri_bytes, 8192);
        assert_eq!(s.limits.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(s.timeouts.head_read, Duration::from_secs(10));
        assert_eq!(s.timeouts.keepalive_idle, Duration::from_secs(60));
        assert_eq!(s.timeouts.body_idle, Duration::from_secs(30));
    }

    #[test]
    fn reads_every_key() {
        let s = settings(
            r#"
[server]
listen = ["0.0.0.0:80", "[::1]:8080"]
workers = 4
pin_workers = false
password_verifiers = 2
password_queue = 8
driver = "io_uring"
uring_entries = 256
uring_defer_taskrun = true
graceful_shutdown = "1m30s"
[server.limits]
max_head_bytes = "32KiB"
max_headers = 50
max_uri_bytes = "4KiB"
max_body_bytes = "1MB"
[server.timeouts]
head_read = "5s"
keepalive_idle = "2m"
body_idle = "250ms"
"#,
        );
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.workers, WorkerCount::Fixed(4));
        assert!(!s.pin_workers);
        assert_eq!(s.password_verifiers, Some(2));
        assert_eq!(s.password_queue, 8);
        assert_eq!(s.driver, DriverChoice::IoUring);
        assert_eq!(s.uring_entries, 256);
        assert!(s.uring_defer_taskrun);
        assert_eq!(s.graceful_shutdown, Duration::from_secs(90));
        assert_eq!(s.limits.max_head_bytes, 32 * 1024);
        assert_eq!(s.limits.max_headers, 50);
        assert_eq!(s.limits.max_uri_bytes, 4096);
        assert_eq!(s.limits.max_body_bytes, 1_000_000);
        assert_eq!(s.timeouts.keepalive_idle, Duration::from_secs(120));
        assert_eq!(s.timeouts.body_idle, Duration::from_millis(250));
        assert_eq!(
            settings("server.driver = \"legacy\"").driver,
            DriverChoice::Legacy
        );
        assert_eq!(
            settings("server.workers = \"auto\"").workers,
            WorkerCount::Auto
        );
    }

    #[test]
    fn rejects_zero_password_verifiers_and_queue() {
        assert_eq!(
            problem_keys("[server]\npassword_verifiers = 0\npassword_queue = 0\n"),
            vec![
                ("server.password_verifiers".to_string(), Some(2)),
                ("server.password_queue".to_string(), Some(3)),
            ]
        );
        assert!(problem_keys("[server]\npassword_verifiers = 1025\n").len() == 1);
    }

    #[test]
    fn rejects_zero_and_too_many_workers() {
        assert_eq!(
            problem_keys("[server]\nworkers = 0\n"),
            vec![("server.workers".to_string(), Some(2))]
        );
        assert_eq!(problem_keys("[server]\nworkers = 1025\n").len(), 1);
        assert!(problem_keys("[server]\nworkers = 1024\n").is_empty());
    }

    #[test]
    fn rejects_a_workers_word_other_than_auto() {
        let problems = check_without_router("[server]\nworkers = \"many\"\n");
        assert_eq!(
            keys_and_lines(&problems),
            vec![("server.workers".to_string(), Some(2))]
        );
        assert!(
            problems[0].message.contains("auto"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn rejects_limits_out_of_range() {
        let text = "[server.limits]\nmax_head_bytes = 512\nmax_headers = 0\n\
                    max_uri_bytes = 8\n";
        let keys: Vec<String> = problem_keys(text).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "server.limits.max_head_bytes",
                "server.limits.max_headers",
                "server.limits.max_uri_bytes"
            ]
        );
        assert_eq!(
            problem_keys("server.limits.max_head_bytes = \"2MiB\"").len(),
            1
        );
        assert_eq!(problem_keys("server.limits.max_headers = 257").len(), 1);
    }

    #[test]
    fn rejects_a_uri_limit_above_the_head_limit() {
        let text = "[server.limits]\nmax_head_bytes = \"4KiB\"\nmax_uri_bytes = \"8KiB\"\n";
        assert_eq!(
            problem_keys(text),
            vec![("server.limits.max_uri_bytes".to_string(), Some(3))]
        );
    }

    #[test]
    fn caps_the_default_uri_limit_at_a_small_head_limit() {
        let s = settings("server.limits.max_head_bytes = \"4KiB\"");
        assert_eq!(s.limits.max_uri_bytes, 4096);
    }

    #[test]
    fn rejects_bad_empty_and_duplicate_listen_addresses() {
        let text = "[server]\nlisten = [\n  \"127.0.0.1:80\",\n  \"localhost:80\",\n  \
                    \"127.0.0.1:80\",\n]\n";
        assert_eq!(
            problem_keys(text),
            vec![
                ("server.listen[1]".to_string(), Some(4)),
                ("server.listen[2]".to_string(), Some(5)),
            ]
        );
        assert_eq!(
            problem_keys("[server]\nlisten = []\n"),
            vec![("server.listen".to_string(), Some(2))]
        );
    }

    #[test]
    fn reads_the_abuse_limits() {
        let s = settings(
            "[server.limits]\nmin_body_rate = \"1KiB/s\"\nmax_connections_per_worker = 5000\n\
             max_connections_per_ip = 64\n",
        );
        assert_eq!(s.limits.min_body_rate, Some(1024));
        assert_eq!(s.limits.max_connections_per_worker, Some(5000));
        assert_eq!(s.limits.max_connections_per_ip, Some(64));
        let s = settings("");
        assert_eq!(s.limits.min_body_rate, None);
        assert_eq!(s.limits.max_connections_per_worker, None);
        assert_eq!(s.limits.max_connections_per_ip, None);
    }

    #[test]
    fn rejects_bad_abuse_limits_with_their_lines() {
        let text = "[server.limits]\nmin_body_rate = \"1KiB\"\nmax_connections_per_worker = 0\n\
                    max_connections_per_ip = -1\n";
        assert_eq!(
            problem_keys(text),
            vec![
                ("server.limits.min_body_rate".to_string(), Some(2)),
                (
                    "server.limits.max_connections_per_worker".to_string(),
                    Some(3)
                ),
                ("server.limits.max_connections_per_ip".to_string(), Some(4)),
            ]
        );
        assert_eq!(
            problem_keys("server.limits.min_body_rate = \"0/s\"").len(),
            1
        );
    }

    #[test]
    fn rejects_a_zero_timeout() {
        assert_eq!(
            problem_keys("[server.timeouts]\nhead_read = \"0s\"\n"),
            vec![("server.timeouts.head_read".to_string(), Some(2))]
        );
    }

    #[test]
    fn underscores_in_headers_are_dropped_unless_configured() {
        assert_eq!(settings("").underscores_in_headers, UnderscorePolicy::Drop);
        for (value, policy) in [
            ("drop", UnderscorePolicy::Drop),
            ("pass", UnderscorePolicy::Pass),
            ("refuse", UnderscorePolicy::Refuse),
        ] {
            let text = format!("server.underscores_in_headers = \"{value}\"");
            assert_eq!(settings(&text).underscores_in_headers, policy);
        }
        assert_eq!(
            problem_keys("[server]\nunderscores_in_headers = \"allow\"\n"),
            vec![("server.underscores_in_headers".to_string(), Some(2))]
        );
    }

    #[test]
    fn rejects_an_unknown_driver_with_its_line() {
        assert_eq!(
            problem_keys("[server]\n\ndriver = \"epoll\"\n"),
            vec![("server.driver".to_string(), Some(3))]
        );
    }

    #[test]
    fn rejects_a_submission_queue_size_the_kernel_would_not_keep() {
        for (value, line) in [("128", 3), ("65536", 3), ("1000", 3)] {
            assert_eq!(
                problem_keys(&format!("[server]\n\nuring_entries = {value}\n")),
                vec![("server.uring_entries".to_string(), Some(line))],
                "{value}"
            );
        }
    }
}
