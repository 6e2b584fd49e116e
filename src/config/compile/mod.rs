//! Validation and compilation: raw file structs in, the runtime's [`Snapshot`] out.
//!
//! Every check records its problem and carries on with a default, so one run reports every
//! problem in the file, each with its key path and line. A snapshot is built only when
//! there were none. Defaults live here (and in docs/configuration.md), not in `file`.

mod caches;
mod composites;
mod consumers;
mod control;
mod errors;
mod http2;
mod matcher;
mod policies;
mod route_traffic;
mod routes;
mod server;
mod tls;
mod traffic;
mod upgrade;
mod upstreams;

use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::file::RawConfig;
use super::units::{DurationValue, SizeValue};
use super::{line_at, Problem, Snapshot};

/// Checks and compiles `raw`, which was read from `text` (for line numbers); relative file
/// paths in it (certificates, keys) are taken from `base`, the config file's directory.
pub fn compile(raw: RawConfig, text: &str, base: &Path) -> Result<Snapshot, Vec<Problem>> {
    let mut cx = Ctx::new(text);
    cx.base = base.to_path_buf();
    let server = server::compile(&mut cx, raw.server.unwrap_or_default());
    let upstreams = upstreams::compile(&mut cx, &raw.upstreams);
    let redis = raw.redis.as_ref().and_then(|r| policies::redis(&mut cx, r));
    let consumers = Arc::new(consumers::compile(&mut cx, &raw.consumers));
    let policies = policies::compile(
        &mut cx,
        raw.policies.as_ref(),
        &consumers,
        raw.redis.is_some(),
        &raw.upstreams,
    );
    let caches = caches::compile(&mut cx, raw.caches.as_ref());
    let composites = composites::compile(&mut cx, raw.composites.as_ref(), &raw.upstreams, &caches);
    let tables = routes::Tables {
        policies: &policies,
        composites: &composites,
        caches: &caches,
    };
    let router = routes::compile(&mut cx, &raw.routes, &raw.upstreams, &tables);
    let admin = raw.admin.map(|admin| control::admin(&mut cx, admin));
    let metrics = control::metrics(&mut cx, raw.metrics.unwrap_or_default());
    let access_log = raw.access_log.map(|raw| control::access_log(&mut cx, raw));
    match router {
        Some(router) if cx.problems.is_empty() => Ok(Snapshot {
            server,
            router,
            upstreams,
            admin,
            metrics,
            access_log,
            rate_limits: policies.rate_limits(),
            jwks_stores: policies.jwks_stores(),
            redis,
            caches: caches.settings(),
        }),
        _ => Err(cx.problems),
    }
}

/// The problems found so far and the text they point into.
pub(super) struct Ctx<'t> {
    text: &'t str,
    problems: Vec<Problem>,
    /// Directory relative file paths are resolved against.
    base: PathBuf,
}

impl<'t> Ctx<'t> {
    fn new(text: &'t str) -> Self {
        Ctx {
            text,
            problems: Vec::new(),
            base: PathBuf::new(),
        }
    }

    /// `path` as configured, resolved against the config file's directory if relative.
    fn path(&self, path: &str) -> PathBuf {
        self.base.join(path)
    }

    /// The 1-based line a span starts on.
    fn line(&self, span: Range<usize>) -> usize {
        line_at(self.text, span.start)
    }

    /// Records a problem at `key`, on the line of `span` where known.
    fn problem(&mut self, key: impl Into<String>, span: Option<Range<usize>>, message: String) {
        let line = span.map(|s| self.line(s));
        self.problems.push(Problem {
            key: key.into(),
            line,
            message,
        });
    }

    /// An optional integer in `range`, else `default` (a value out of range is a problem).
    fn int(
        &mut self,
        key: &str,
        value: &Option<Spanned<i64>>,
        range: RangeInclusive<i64>,
        default: i64,
    ) -> i64 {
        let Some(value) = value else { return default };
        let n = *value.get_ref();
        if range.contains(&n) {
            return n;
        }
        let message = format!(
            "{n} is out of range: expected {} to {}",
            range.start(),
            range.end()
        );
        self.problem(key, Some(value.span()), message);
        default
    }

    /// An optional size in `range` bytes, else `default`.
    fn size(
        &mut self,
        key: &str,
        value: &Option<Spanned<SizeValue>>,
        range: RangeInclusive<u64>,
        default: u64,
    ) -> u64 {
        let Some(value) = value else { return default };
        let n = value.get_ref().0;
        if range.contains(&n) {
            return n;
        }
        let message = format!(
            "{n} bytes is out of range: expected {} to {} bytes",
            range.start(),
            range.end()
        );
        self.problem(key, Some(value.span()), message);
        default
    }

    /// An optional timeout, else `default`; zero is refused (it would fail every request).
    fn timeout(
        &mut self,
        key: &str,
        value: &Option<Spanned<DurationValue>>,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        let d = value.get_ref().0;
        if d.is_zero() {
            self.problem(key, Some(value.span()), "must be greater than zero".into());
            return default;
        }
        d
    }
}

/// A list of CIDR ranges (a bare address is its own /32 or /128); bad entries are problems.
fn nets(cx: &mut Ctx<'_>, key: &str, list: Option<&[Spanned<String>]>) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for (i, entry) in list.unwrap_or_default().iter().enumerate() {
        let text = entry.get_ref().trim();
        let net = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match net {
            Ok(net) => out.push(net.trunc()),
            Err(_) => {
                let message = format!(
                    "invalid address range `{text}`: expected e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or \"192.0.2.7\""
                );
                cx.problem(format!("{key}[{i}]"), Some(entry.span()), message);
            }
        }
    }
    out
}

/// Whether `name` is a usable upstream or route name: non-empty, `[A-Za-z0-9_.-]`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name `{name}`: use only letters, digits, `_`, `.` and `-`"
        ))
    }
}

/// Runs every check except the router build (which belongs to the router's own tests), so
/// the file rules can be tested on their own.
#[cfg(test)]
pub(super) fn check_without_router(text: &str) -> Vec<Problem> {
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(err) => return vec![super::locate::toml_problem(text, &err)],
    };
    let mut cx = Ctx::new(text);
    server::compile(&mut cx, raw.server.unwrap_or_default());
    upstreams::compile(&mut cx, &raw.upstreams);
    if let Some(redis) = &raw.redis {
        policies::redis(&mut cx, redis);
    }
    let consumers = Arc::new(consumers::compile(&mut cx, &raw.consumers));
    let policies = policies::compile(
        &mut cx,
        raw.policies.as_ref(),
        &consumers,
        raw.redis.is_some(),
        &raw.upstreams,
    );
    let caches = caches::compile(&mut cx, raw.caches.as_ref());
    let composites = composites::compile(&mut cx, raw.composites.as_ref(), &raw.upstreams, &caches);
    let tables = routes::Tables {
        policies: &policies,
        composites: &composites,
        caches: &caches,
    };
    routes::check(&mut cx, &raw.routes, &raw.upstreams, &tables);
    cx.problems
}

/// `(key, line)` of every problem, for compact assertions.
#[cfg(test)]
pub(super) fn keys_and_lines(problems: &[Problem]) -> Vec<(String, Option<usize>)> {
    problems.iter().map(|p| (p.key.clone(), p.line)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_of_letters_digits_and_punctuation() {
        assert!(check_name("users-v1.2_a").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("has space").is_err());
        assert!(check_name("slash/y").is_err());
    }

    #[test]
    fn bundled_files_pass_the_file_rules() {
        for file in [
            "config/ringgate.toml",
            "config/examples/proxy.toml",
            "config/examples/auth.toml",
            "config/examples/bff.toml",
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let text = std::fs::read_to_string(path).expect("bundled file");
            assert_eq!(check_without_router(&text), vec![], "{file}");
        }
    }

    #[test]
    fn collects_several_problems_at_once() {
        let text = r#"
[server]
workers = 0

[server.limits]
max_headers = 1000

[[upstreams]]
name = "a"
targets = []

[[routes]]
name = "r"
upstream = "missing"
"#;
        let problems = check_without_router(text);
        assert_eq!(
            keys_and_lines(&problems),
            vec![
                ("server.workers".to_string(), Some(3)),
                ("server.limits.max_headers".to_string(), Some(6)),
                ("upstreams[0].targets".to_string(), Some(9)),
                ("routes[0].upstream".to_string(), Some(14)),
            ]
        );
    }
}
