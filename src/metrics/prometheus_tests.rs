//! Tests of the Prometheus text: parseable lines, one HELP/TYPE per family, cumulative
//! buckets, escaping. Kept apart from `prometheus.rs` for length; it is that module's `tests`.

use super::super::{RequestRecord, WorkerInfo, WorkerMetrics};
use super::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

fn rendered() -> String {
    let m = WorkerMetrics::new(0);
    for (i, micros) in [100u64, 700, 3_000, 40_000, 900_000, 30_000_000]
        .iter()
        .enumerate()
    {
        m.record_request(&RequestRecord {
            route: if i % 2 == 0 {
                "api"
            } else {
                "we\"ird\\ro\nute"
            },
            upstream: Some("backend"),
            status: 200 + (i as u16 % 4) * 100,
            duration: Duration::from_micros(*micros),
            upstream_duration: Some(Duration::from_micros(micros / 2)),
            bytes_in: 10,
            bytes_out: 20,
            protocol: crate::metrics::Protocol::Http1,
            cache: None,
        });
    }
    m.connection_opened();
    m.error(ErrorCause::ClientGone);
    m.tls_handshake(TlsVersion::Tls13, true);
    m.tls_failure(TlsSide::Upstream, TlsFailure::BadCertificate);
    let mut agg = Aggregator::new();
    agg.merge(m.take_delta());
    agg.render(&process_info())
}

fn process_info() -> ProcessInfo {
    ProcessInfo {
        workers: vec![
            WorkerInfo {
                id: 0,
                driver: "io_uring".into(),
            },
            WorkerInfo {
                id: 1,
                driver: "legacy".into(),
            },
        ],
        reloads: 3,
        failed_reloads: 1,
        config_generation: 4,
        start_time_unix: 1_700_000_000,
        cache_redis: None,
        target_health: Vec::new(),
        redis: None,
    }
}

type Labels = Vec<(String, String)>;

/// A sample line: name, labels (unescaped), value.
fn parse_sample(line: &str) -> (String, Labels, f64) {
    let (head, value) = line.rsplit_once(' ').expect("value");
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
    };
    let Some((name, rest)) = head.split_once('{') else {
        assert!(
            head.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line:?}"
        );
        return (head.to_owned(), Vec::new(), value);
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "{line:?}");
        let mut v = String::new();
        loop {
            match chars.next().expect("unterminated label value") {
                '\\' => match chars.next() {
                    Some('\\') => v.push('\\'),
                    Some('"') => v.push('"'),
                    Some('n') => v.push('\n'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                '"' => break,
                '\n' => panic!("raw newline in {line:?}"),
                c => v.push(c),
            }
        }
        labels.push((key, v));
        match chars.next() {
            Some(',') => continue,
            Some('}') => break,
            other => panic!("unexpected {other:?} in {line:?}"),
        }
    }
    assert_eq!(chars.next(), None, "{line:?}");
    (name.to_owned(), labels, value)
}

#[test]
fn every_line_is_a_comment_or_a_parseable_sample() {
    for line in rendered().lines() {
        if line.starts_with('#') {
            let mut parts = line.splitn(4, ' ');
            assert_eq!(parts.next(), Some("#"));
            assert!(matches!(parts.next(), Some("HELP" | "TYPE")), "{line:?}");
            continue;
        }
        let (name, _, _) = parse_sample(line);
        assert!(name.starts_with("ringgate_"), "{line:?}");
    }
}

#[test]
fn help_and_type_appear_once_per_family_before_its_samples() {
    let text = rendered();
    let mut helps = HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name");
            assert!(helps.insert(name.to_owned()), "HELP twice for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("type");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name}"
            );
        } else {
            let (name, _, _) = parse_sample(line);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(&name);
            assert!(types.contains_key(family), "sample before TYPE: {name}");
            assert!(helps.contains(family), "sample before HELP: {name}");
        }
    }
    for family in [
        "ringgate_requests_total",
        "ringgate_request_duration_seconds",
        "ringgate_request_duration_quantile_seconds",
        "ringgate_upstream_duration_seconds",
        "ringgate_upstream_duration_quantile_seconds",
        "ringgate_upstream_requests_total",
        "ringgate_bytes_received_total",
        "ringgate_bytes_sent_total",
        "ringgate_connections_open",
        "ringgate_pool_hits_total",
        "ringgate_pool_misses_total",
        "ringgate_errors_total",
        "ringgate_mirror_requests_total",
        "ringgate_worker_info",
        "ringgate_config_reloads_total",
        "ringgate_config_reload_failures_total",
        "ringgate_config_generation",
        "ringgate_process_start_time_seconds",
    ] {
        assert!(types.contains_key(family), "missing {family}");
    }
}

#[test]
fn buckets_are_cumulative_and_inf_equals_count() {
    let text = rendered();
    for (family, series_count) in [
        ("ringgate_request_duration_seconds", 2),
        ("ringgate_upstream_duration_seconds", 1),
    ] {
        let mut buckets: HashMap<Labels, Vec<(String, f64)>> = HashMap::new();
        let mut counts = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, mut labels, value) = parse_sample(line);
            if name == format!("{family}_bucket") {
                let (k, le) = labels.pop().expect("le");
                assert_eq!(k, "le");
                buckets.entry(labels).or_default().push((le, value));
            } else if name == format!("{family}_count") {
                counts.insert(labels, value);
            }
        }
        assert_eq!(
            buckets.len(),
            series_count,
            "{family}: one series per label set"
        );
        for (labels, series) in &buckets {
            let values: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
            assert!(
                values.windows(2).all(|w| w[0] <= w[1]),
                "{family} {labels:?}"
            );
            let (last_le, last) = series.last().expect("buckets");
            assert_eq!(last_le, "+Inf");
            assert_eq!(Some(last), counts.get(labels));
            assert_eq!(series.len(), BUCKETS.len() + 1);
        }
    }
    // 100 µs, 3 ms and 900 ms on "api": le=0.0005 holds 1, le=0.005 holds 2, le=1 holds 3.
    assert!(
        text.contains("ringgate_request_duration_seconds_bucket{route=\"api\",le=\"0.0005\"} 1\n")
    );
    assert!(
        text.contains("ringgate_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 2\n")
    );
    assert!(text.contains("ringgate_request_duration_seconds_bucket{route=\"api\",le=\"1\"} 3\n"));
}

#[test]
fn label_values_are_escaped() {
    let text = rendered();
    assert!(text.contains("route=\"we\\\"ird\\\\ro\\nute\""), "{text}");
    let mut out = String::new();
    escape_label_value(&mut out, "a\\b\"c\nd");
    assert_eq!(out, "a\\\\b\\\"c\\nd");
}

#[test]
fn process_and_worker_figures_are_rendered() {
    let text = rendered();
    for line in [
        "ringgate_worker_info{worker=\"0\",driver=\"io_uring\"} 1",
        "ringgate_worker_info{worker=\"1\",driver=\"legacy\"} 1",
        "ringgate_connections_open{worker=\"0\"} 1",
        "ringgate_connections_open{worker=\"1\"} 0",
        "ringgate_errors_total{cause=\"client_gone\"} 1",
        "ringgate_errors_total{cause=\"upstream_connect\"} 0",
        "ringgate_config_reloads_total 3",
        "ringgate_config_reload_failures_total 1",
        "ringgate_config_generation 4",
        "ringgate_process_start_time_seconds 1700000000",
        "ringgate_requests_total{route=\"api\",status_class=\"2xx\",protocol=\"http1\"} 2",
        "ringgate_requests_total{route=\"api\",status_class=\"2xx\",protocol=\"h2\"} 0",
        "ringgate_upstream_requests_total{upstream=\"backend\",status_class=\"5xx\"} 1",
        "ringgate_bytes_received_total{route=\"api\"} 30",
        "ringgate_tls_handshakes_total{version=\"1.3\",resumed=\"true\"} 1",
        "ringgate_tls_handshakes_total{version=\"1.2\",resumed=\"false\"} 0",
        "ringgate_tls_handshake_failures_total{side=\"upstream\",cause=\"bad_certificate\"} 1",
        "ringgate_tls_handshake_failures_total{side=\"client\",cause=\"timeout\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn quantile_gauges_come_from_the_hdr_data() {
    let text = rendered();
    let q: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("ringgate_request_duration_quantile_seconds{route=\"api\""))
        .collect();
    assert_eq!(q.len(), 4);
    assert!(q[0].contains("quantile=\"0.5\""));
    // Samples on "api": 100 µs, 3 ms, 900 ms; the median is 3 ms within HDR's 1 %.
    let (_, _, median) = parse_sample(q[0]);
    assert!((median - 0.003).abs() < 0.003 * 0.01, "{median}");
}

/// Every sample of `family` (histogram series included) as labels → value.
fn samples(text: &str, name: &str) -> HashMap<Labels, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(parse_sample)
        .filter(|(n, _, _)| n == name)
        .map(|(_, labels, value)| (labels, value))
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn tunnel_families_have_their_types_labels_and_cumulative_buckets() {
    let m = WorkerMetrics::new(0);
    for _ in 0..3 {
        m.tunnel_opened("chat");
    }
    m.tunnel_opened("fe\"ed");
    m.tunnel_closed("chat", "idle", Duration::from_secs(30), 100, 200);
    m.tunnel_closed("chat", "client_closed", Duration::from_millis(50), 1, 2);
    // The open ones report their bytes at a flush, before they close.
    m.tunnel_bytes("chat", 1000, 10);
    m.tunnel_bytes("fe\"ed", 7, 0);
    let mut agg = Aggregator::new();
    agg.merge(m.take_delta());
    // A second worker's delta adds up.
    let other = WorkerMetrics::new(1);
    other.tunnel_opened("chat");
    other.tunnel_closed("chat", "shutdown", Duration::from_secs(5 * 3600), 0, 0);
    agg.merge(other.take_delta());
    let text = agg.render(&process_info());
    for (family, kind) in [
        ("ringgate_tunnels_open", "gauge"),
        ("ringgate_tunnels_opened_total", "counter"),
        ("ringgate_tunnels_closed_total", "counter"),
        ("ringgate_tunnel_bytes_total", "counter"),
        ("ringgate_tunnel_duration_seconds", "histogram"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family}"
        );
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
    }
    let (chat, feed) = (labels(&[("route", "chat")]), labels(&[("route", "fe\"ed")]));
    let open = samples(&text, "ringgate_tunnels_open");
    assert_eq!(
        (open[&chat], open[&feed]),
        (1.0, 1.0),
        "4 opened, 3 closed; 1 open"
    );
    let opened = samples(&text, "ringgate_tunnels_opened_total");
    assert_eq!((opened[&chat], opened[&feed]), (4.0, 1.0));
    let closed = samples(&text, "ringgate_tunnels_closed_total");
    assert_eq!(closed.len(), 3, "{closed:?}");
    for reason in ["idle", "client_closed", "shutdown"] {
        assert_eq!(
            closed[&labels(&[("route", "chat"), ("reason", reason)])],
            1.0
        );
    }
    let bytes = samples(&text, "ringgate_tunnel_bytes_total");
    let way = |route: &str, direction: &str| {
        bytes[&labels(&[("route", route), ("direction", direction)])]
    };
    assert_eq!((way("chat", "up"), way("chat", "down")), (1101.0, 212.0));
    assert_eq!((way("fe\"ed", "up"), way("fe\"ed", "down")), (7.0, 0.0));
    // Buckets per route, cumulative, one per bound plus +Inf; 50 ms, 30 s and 5 h on "chat".
    let buckets = samples(&text, "ringgate_tunnel_duration_seconds_bucket");
    let le = |route: &str, le: &str| buckets[&labels(&[("route", route), ("le", le)])];
    let expected = [
        ("0.1", 1.0),
        ("1", 1.0),
        ("10", 1.0),
        ("60", 2.0),
        ("300", 2.0),
        ("900", 2.0),
        ("3600", 2.0),
        ("14400", 2.0),
        ("43200", 3.0),
        ("86400", 3.0),
        ("+Inf", 3.0),
    ];
    assert_eq!(
        buckets.len(),
        2 * expected.len(),
        "both routes, every bound"
    );
    for (bound, count) in expected {
        assert_eq!(le("chat", bound), count, "le={bound}");
        assert_eq!(
            le("fe\"ed", bound),
            0.0,
            "le={bound}: no closed tunnel on feed"
        );
    }
    let sum = samples(&text, "ringgate_tunnel_duration_seconds_sum");
    assert!(
        (sum[&chat] - (0.05 + 30.0 + 18000.0)).abs() < 1e-6,
        "{sum:?}"
    );
    let count = samples(&text, "ringgate_tunnel_duration_seconds_count");
    assert_eq!((count[&chat], count[&feed]), (3.0, 0.0));
    assert!(
        text.contains("ringgate_tunnels_open{route=\"fe\\\"ed\"} 1\n"),
        "escaped route"
    );
}

#[test]
fn composite_families_have_their_labels_counts_and_histograms() {
    let m = WorkerMetrics::new(0);
    let ms = Duration::from_millis;
    m.record_composite("home", None, "complete", Some(ms(30)), 0);
    m.record_composite("home", None, "partial", Some(ms(300)), 2);
    m.record_composite("home", Some("user"), "ok", Some(ms(3)), 0);
    m.record_composite("home", Some("user"), "ok", Some(ms(4)), 0);
    m.record_composite("home", Some("reco"), "timeout", Some(ms(200)), 0);
    m.record_composite("home", Some("reco"), "cancelled", Some(ms(20)), 0);
    m.record_composite("home", Some("news"), "not_sent", None, 0);
    m.record_composite_slowest_call("home", ms(4));
    m.record_composite_overhead("home", Duration::from_micros(700));
    let mut agg = Aggregator::new();
    agg.merge(m.take_delta());
    let text = agg.render(&ProcessInfo::default());
    for line in [
        "# TYPE ringgate_composite_requests_total counter",
        "ringgate_composite_requests_total{composite=\"home\",outcome=\"complete\"} 1",
        "ringgate_composite_requests_total{composite=\"home\",outcome=\"partial\"} 1",
        "# TYPE ringgate_composite_duration_seconds histogram",
        "ringgate_composite_duration_seconds_bucket{composite=\"home\",le=\"0.025\"} 0",
        "ringgate_composite_duration_seconds_bucket{composite=\"home\",le=\"0.05\"} 1",
        "ringgate_composite_duration_seconds_bucket{composite=\"home\",le=\"0.5\"} 2",
        "ringgate_composite_duration_seconds_bucket{composite=\"home\",le=\"+Inf\"} 2",
        "ringgate_composite_duration_seconds_count{composite=\"home\"} 2",
        "ringgate_composite_duration_quantile_seconds{composite=\"home\",quantile=\"0.5\"} 0.030079",
        "# TYPE ringgate_composite_slowest_call_seconds histogram",
        "ringgate_composite_slowest_call_seconds_bucket{composite=\"home\",le=\"0.005\"} 1",
        "ringgate_composite_slowest_call_seconds_count{composite=\"home\"} 1",
        "ringgate_composite_slowest_call_quantile_seconds{composite=\"home\",quantile=\"0.99\"} 0.004015",
        "# TYPE ringgate_composite_overhead_seconds histogram",
        "ringgate_composite_overhead_seconds_bucket{composite=\"home\",le=\"0.001\"} 1",
        "ringgate_composite_overhead_seconds_count{composite=\"home\"} 1",
        "ringgate_composite_overhead_quantile_seconds{composite=\"home\",quantile=\"0.99\"} 0.000703",
        "# TYPE ringgate_composite_key_collisions_total counter",
        "ringgate_composite_key_collisions_total{composite=\"home\"} 2",
        "# TYPE ringgate_composite_calls_total counter",
        "ringgate_composite_calls_total{composite=\"home\",call=\"user\",outcome=\"ok\"} 2",
        "ringgate_composite_calls_total{composite=\"home\",call=\"reco\",outcome=\"timeout\"} 1",
        "ringgate_composite_calls_total{composite=\"home\",call=\"reco\",outcome=\"cancelled\"} 1",
        "ringgate_composite_calls_total{composite=\"home\",call=\"news\",outcome=\"not_sent\"} 1",
        "# TYPE ringgate_composite_call_duration_seconds histogram",
        "ringgate_composite_call_duration_seconds_bucket{composite=\"home\",call=\"user\",le=\"0.005\"} 2",
        "ringgate_composite_call_duration_seconds_count{composite=\"home\",call=\"user\"} 2",
        // The timed-out and the cancelled call both ran: both timed.
        "ringgate_composite_call_duration_seconds_bucket{composite=\"home\",call=\"reco\",le=\"0.025\"} 1",
        "ringgate_composite_call_duration_seconds_count{composite=\"home\",call=\"reco\"} 2",
        // Never sent: counted, not timed.
        "ringgate_composite_call_duration_seconds_count{composite=\"home\",call=\"news\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // The composite's own entry is not a call, and a call is not a composite.
    assert!(!text.contains("call=\"\""), "{text}");
    assert!(
        !text.lines().any(|l| l
            .starts_with("ringgate_composite_requests_total{composite=\"home\",outcome=\"ok\"")),
        "{text}"
    );
    let sum = text
        .lines()
        .find(|l| {
            l.starts_with(
                "ringgate_composite_call_duration_seconds_sum{composite=\"home\",call=\"user\"}",
            )
        })
        .map(parse_sample)
        .expect("sum");
    assert!((sum.2 - 0.007).abs() < 0.007 * 0.01, "{sum:?}");
}
