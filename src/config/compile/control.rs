//! `[admin]`, `[metrics]` and `[access_log]`: the control side's listener, the metrics merge
//! cadence and the access log's output.

use std::net::SocketAddr;
use std::time::Duration;

use super::Ctx;
use crate::access_log::{AccessLogSettings, Destination, Format};
use crate::config::file::{RawAccessLog, RawAdmin, RawMetrics};
use crate::config::{AdminSettings, MetricsSettings};

/// `admin.listen` when `[admin]` is present without it.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// `metrics.merge_interval` when absent, and its bounds.
pub const DEFAULT_MERGE_INTERVAL: Duration = Duration::from_secs(1);
const MERGE_INTERVAL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(60);

/// Compiles `[admin]`. A non-loopback admin address needs a token: the admin API can reload
/// the configuration and must never be open to the network by accident.
pub(super) fn admin(cx: &mut Ctx<'_>, raw: RawAdmin) -> AdminSettings {
    let default: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9901));
    let listen = match &raw.listen {
        None => default,
        Some(text) => match text.get_ref().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                let message = format!(
                    "invalid address `{}`: expected ip:port, e.g. \"{DEFAULT_ADMIN_LISTEN}\"",
                    text.get_ref()
                );
                cx.problem("admin.listen", Some(text.span()), message);
                default
            }
        },
    };
    let token = raw.token.as_ref().and_then(|token| {
        if token.get_ref().is_empty() {
            cx.problem(
                "admin.token",
                Some(token.span()),
                "must not be empty".into(),
            );
            return None;
        }
        Some(token.get_ref().clone())
    });
    if token.is_none() && !listen.ip().is_loopback() {
        let span = raw.listen.as_ref().map(|l| l.span());
        let message = format!(
            "`{listen}` is not a loopback address: set admin.token, or listen on 127.0.0.1"
        );
        cx.problem("admin.listen", span, message);
    }
    AdminSettings { listen, token }
}

/// Compiles `[metrics]`.
pub(super) fn metrics(cx: &mut Ctx<'_>, raw: RawMetrics) -> MetricsSettings {
    let merge_interval = match &raw.merge_interval {
        None => DEFAULT_MERGE_INTERVAL,
        Some(value) if MERGE_INTERVAL_RANGE.contains(&value.get_ref().0) => value.get_ref().0,
        Some(value) => {
            let message = "out of range: expected 100ms to 60s".to_string();
            cx.problem("metrics.merge_interval", Some(value.span()), message);
            DEFAULT_MERGE_INTERVAL
        }
    };
    MetricsSettings { merge_interval }
}

/// Compiles `[access_log]`: `format` defaults to `"json"`, `path` to `"stdout"`.
pub(super) fn access_log(cx: &mut Ctx<'_>, raw: RawAccessLog) -> AccessLogSettings {
    let format = match &raw.format {
        None => Format::Json,
        Some(text) => match text.get_ref().as_str() {
            "json" => Format::Json,
            "combined" => Format::Combined,
            other => {
                let message =
                    format!("unknown format `{other}`: expected \"json\" or \"combined\"");
                cx.problem("access_log.format", Some(text.span()), message);
                Format::Json
            }
        },
    };
    let path = match &raw.path {
        None => Destination::Stdout,
        Some(text) if text.get_ref() == "stdout" => Destination::Stdout,
        Some(text) if text.get_ref().is_empty() => {
            let message = "must not be empty: \"stdout\" or a file path".to_string();
            cx.problem("access_log.path", Some(text.span()), message);
            Destination::Stdout
        }
        Some(text) => Destination::File(text.get_ref().into()),
    };
    AccessLogSettings { format, path }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;
    use std::time::Duration;

    #[test]
    fn admin_is_off_unless_configured() {
        let snapshot = load_str("", "t").expect("empty config");
        assert!(snapshot.admin.is_none());
        assert_eq!(snapshot.metrics.merge_interval, Duration::from_secs(1));
    }

    #[test]
    fn admin_defaults_to_loopback() {
        let snapshot = load_str("[admin]\n", "t").expect("config");
        let admin = snapshot.admin.expect("admin");
        assert_eq!(admin.listen.to_string(), "127.0.0.1:9901");
        assert!(admin.token.is_none());
    }

    #[test]
    fn non_loopback_admin_needs_a_token() {
        let err = load_str("[admin]\nlisten = \"0.0.0.0:9901\"\n", "t").expect_err("refused");
        assert_eq!(err.problems[0].key, "admin.listen");
        assert_eq!(err.problems[0].line, Some(2));
        let ok = load_str(
            "[admin]\nlisten = \"0.0.0.0:9901\"\ntoken = \"s3cret\"\n",
            "t",
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn empty_token_is_refused() {
        let err = load_str("[admin]\ntoken = \"\"\n", "t").expect_err("refused");
        assert_eq!(err.problems[0].key, "admin.token");
    }

    #[test]
    fn access_log_is_off_unless_configured() {
        use crate::access_log::{Destination, Format};
        assert!(load_str("", "t").expect("empty").access_log.is_none());
        let log = load_str("[access_log]\n", "t").expect("ok").access_log;
        let log = log.expect("access log");
        assert_eq!(log.format, Format::Json);
        assert_eq!(log.path, Destination::Stdout);
        let log = load_str(
            "[access_log]\nformat = \"combined\"\npath = \"/var/log/rg.log\"\n",
            "t",
        )
        .expect("ok")
        .access_log
        .expect("access log");
        assert_eq!(log.format, Format::Combined);
        assert_eq!(log.path, Destination::File("/var/log/rg.log".into()));
        let err = load_str("[access_log]\nformat = \"xml\"\n", "t").expect_err("refused");
        assert_eq!(err.problems[0].key, "access_log.format");
        assert_eq!(err.problems[0].line, Some(2));
        let err = load_str("[access_log]\nbuffer = 1\n", "t").expect_err("refused");
        assert!(!err.problems.is_empty());
    }

    #[test]
    fn merge_interval_is_bounded() {
        let err = load_str("[metrics]\nmerge_interval = \"10ms\"\n", "t").expect_err("refused");
        assert_eq!(err.problems[0].key, "metrics.merge_interval");
        let ok = load_str("[metrics]\nmerge_interval = \"250ms\"\n", "t").expect("ok");
        assert_eq!(ok.metrics.merge_interval, Duration::from_millis(250));
    }
}
