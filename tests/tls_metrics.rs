//! TLS handshake metrics: completed handshakes by version and resumption, failures by cause
//! with clients (including the handshake timeout) and with upstream targets, as the
//! aggregated metrics and their Prometheus text (what `/metrics` serves) show them.
mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::client::Raw;
use common::gateway::{Gateway, GatewayConfig};
use common::tls::{self, get, toml_path, Kind, Pki, TlsUpstream};
use ringgate::metrics::{Aggregator, ProcessInfo, TlsFailure, TlsSide, TlsVersion};

fn one_cert(issued: &tls::Issued) -> String {
    format!(
        "certificates = [ {{ cert = {}, key = {}, default = true }} ]",
        toml_path(&issued.cert),
        toml_path(&issued.key)
    )
}

const RESPOND: &str = "[[routes]]\nname = \"r\"\nrespond = { status = 200, body = \"ok\" }";

/// Every failure counter of `side`, by cause.
fn failures(agg: &Aggregator, side: TlsSide) -> Vec<(TlsFailure, u64)> {
    TlsFailure::ALL
        .iter()
        .map(|&cause| (cause, agg.tls_failures(side, cause)))
        .collect()
}

/// Waits until the failures of `side` are exactly `want` (others zero).
fn failures_become(gw: &Gateway, side: TlsSide, want: &[(TlsFailure, u64)]) -> Aggregator {
    let expected: Vec<(TlsFailure, u64)> = TlsFailure::ALL
        .iter()
        .map(|&cause| {
            let n = want
                .iter()
                .find(|(c, _)| *c == cause)
                .map_or(0, |(_, n)| *n);
            (cause, n)
        })
        .collect();
    gw.metrics_until(|agg| failures(agg, side) == expected)
}

fn assert_lines(agg: &Aggregator, lines: &[&str]) {
    let text = agg.render(&ProcessInfo::default());
    for line in lines {
        assert!(
            text.lines().any(|l| l == *line),
            "missing {line:?} in\n{text}"
        );
    }
}

driver_tests! {
    fn completed_handshakes_are_counted_by_version_and_resumption(driver: &str) {
        let pki = Pki::new("metrics-versions");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let gw = GatewayConfig::new(driver)
            .tls_listener(&one_cert(&server))
            .routes(RESPOND)
            .merge_interval("100ms")
            .start();
        let tls12 = tls::client_config_for(&[pki.ca_der()], None, &[&rustls::version::TLS12]);
        let tls13 = tls::client_config_for(&[pki.ca_der()], None, &[&rustls::version::TLS13]);
        for (config, version) in [(&tls12, rustls::ProtocolVersion::TLSv1_2), (&tls13, rustls::ProtocolVersion::TLSv1_3)] {
            for kind in [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed] {
                let mut conn = tls::connect(gw.tls_addr(), "gateway.test", config).expect("handshake");
                assert_eq!(conn.conn.protocol_version(), Some(version));
                // The request also reads the TLS 1.3 tickets that make the next one resume.
                assert_eq!(get(&mut conn, "/", "").expect("response").status(), 200);
                assert_eq!(conn.conn.handshake_kind(), Some(kind), "{version:?}");
            }
        }
        let agg = gw.metrics_until(|agg| {
            TlsVersion::ALL.iter().all(|&v| {
                agg.tls_handshakes(v, false) == 1 && agg.tls_handshakes(v, true) == 1
            })
        });
        assert!(failures(&agg, TlsSide::Client).iter().all(|(_, n)| *n == 0));
        assert_lines(&agg, &[
            r#"ringgate_tls_handshakes_total{version="1.2",resumed="false"} 1"#,
            r#"ringgate_tls_handshakes_total{version="1.2",resumed="true"} 1"#,
            r#"ringgate_tls_handshakes_total{version="1.3",resumed="false"} 1"#,
            r#"ringgate_tls_handshakes_total{version="1.3",resumed="true"} 1"#,
        ]);
    }

    fn a_silent_client_is_cut_off_at_the_handshake_timeout(driver: &str) {
        let pki = Pki::new("metrics-timeout");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let gw = GatewayConfig::new(driver)
            .tls_listener(&one_cert(&server))
            .timeout("head_read", "300ms")
            .routes(RESPOND)
            .merge_interval("100ms")
            .start();
        let mut silent = Raw::connect(gw.tls_addr());
        let waited = silent.time_until_closed();
        assert!(waited >= Duration::from_millis(250), "closed after {waited:?}");
        assert!(waited < Duration::from_secs(8), "closed after {waited:?}");
        let agg = failures_become(&gw, TlsSide::Client, &[(TlsFailure::Timeout, 1)]);
        assert_lines(&agg, &[
            r#"ringgate_tls_handshake_failures_total{side="client",cause="timeout"} 1"#,
        ]);
        // The listener still serves.
        let config = tls::client_config(&[pki.ca_der()], None);
        let mut conn = tls::connect(gw.tls_addr(), "gateway.test", &config).expect("handshake");
        assert_eq!(get(&mut conn, "/", "").expect("response").status(), 200);
    }

    fn failed_client_handshakes_are_counted_by_cause(driver: &str) {
        let pki = Pki::new("metrics-failures");
        let other = Pki::new("metrics-failures-other");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let stranger = other.issue("stranger", Kind::Client("stranger"));
        let gw = GatewayConfig::new(driver)
            .tls_listener(&format!(
                "{}\nclient_auth = {{ mode = \"required\", ca = {} }}",
                one_cert(&server),
                toml_path(&pki.ca_path())
            ))
            .routes(RESPOND)
            .merge_interval("100ms")
            .start();
        // Closed before a byte was sent.
        drop(std::net::TcpStream::connect(gw.tls_addr()).expect("connect"));
        failures_become(&gw, TlsSide::Client, &[(TlsFailure::Eof, 1)]);
        // Plain HTTP on the TLS port.
        let mut plain = Raw::connect(gw.tls_addr());
        plain.send("GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
        plain.read_until_closed();
        failures_become(&gw, TlsSide::Client, &[(TlsFailure::Eof, 1), (TlsFailure::Protocol, 1)]);
        // No client certificate, then one from an unknown CA; TLS 1.3 clients learn of the
        // refusal at their first read.
        for identity in [None, Some(&stranger)] {
            let config = tls::client_config(&[pki.ca_der()], identity);
            let refused = tls::connect(gw.tls_addr(), "gateway.test", &config)
                .and_then(|mut conn| get(&mut conn, "/", ""));
            assert!(refused.is_err(), "{refused:?}");
        }
        let agg = failures_become(&gw, TlsSide::Client, &[
            (TlsFailure::Eof, 1),
            (TlsFailure::Protocol, 1),
            (TlsFailure::NoCertificate, 1),
            (TlsFailure::BadCertificate, 1),
        ]);
        assert_eq!(agg.tls_handshakes(TlsVersion::Tls13, false), 0);
        assert_lines(&agg, &[
            r#"ringgate_tls_handshake_failures_total{side="client",cause="no_certificate"} 1"#,
            r#"ringgate_tls_handshake_failures_total{side="client",cause="bad_certificate"} 1"#,
            r#"ringgate_tls_handshake_failures_total{side="client",cause="protocol"} 1"#,
            r#"ringgate_tls_handshake_failures_total{side="client",cause="eof"} 1"#,
            r#"ringgate_tls_handshake_failures_total{side="upstream",cause="bad_certificate"} 0"#,
        ]);
    }

    fn failed_upstream_handshakes_are_counted_by_cause(driver: &str) {
        let rogue = Pki::new("metrics-rogue");
        let pki = Pki::new("metrics-upstream");
        let untrusted = TlsUpstream::start(&rogue.issue("up", Kind::Server(&["upstream.test"])));
        // Accepts connections (the kernel does) but never reads: the handshake stalls.
        let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
        let group = |name: &str, addr| {
            format!(
                "[[upstreams]]\nname = \"{name}\"\ntargets = [ {{ addr = \"{addr}\" }} ]\n\
                 tls = {{ sni = \"upstream.test\", ca = {} }}\ntimeouts = {{ connect = \"300ms\" }}",
                toml_path(&pki.ca_path())
            )
        };
        let gw = GatewayConfig::new(driver)
            .upstream_raw(&group("bad", untrusted.addr()))
            .upstream_raw(&group("silent", silent.local_addr().expect("addr")))
            .routes(
                "[[routes]]\nname = \"bad\"\nmatch = { path_prefix = \"/bad\" }\nupstream = \"bad\"\n\n\
                 [[routes]]\nname = \"silent\"\nmatch = { path_prefix = \"/silent\" }\nupstream = \"silent\"",
            )
            .merge_interval("100ms")
            .start();
        for (path, status) in [("/bad", 502), ("/silent", 504)] {
            let mut raw = Raw::connect(gw.addr());
            raw.send(format!("GET {path} HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"));
            assert_eq!(raw.read_response().status, status, "{path}");
        }
        let agg = failures_become(&gw, TlsSide::Upstream, &[
            (TlsFailure::BadCertificate, 1),
            (TlsFailure::Timeout, 1),
        ]);
        assert!(failures(&agg, TlsSide::Client).iter().all(|(_, n)| *n == 0));
        assert_lines(&agg, &[
            r#"ringgate_tls_handshake_failures_total{side="upstream",cause="bad_certificate"} 1"#,
            r#"ringgate_tls_handshake_failures_total{side="upstream",cause="timeout"} 1"#,
        ]);
        drop(silent);
    }
}
