//! TLS end to end: handshakes through a real rustls client (and curl / openssl where
//! installed), SNI, client certificates, expired and untrusted certificates, TLS upstreams,
//! certificate reload under an open connection, and redirects to HTTPS.
mod common;

use std::process::Command;

use common::gateway::GatewayConfig;
use common::tls::{self, get, toml_path, Issued, Kind, Pki, TlsUpstream};
use common::upstream::{Echoed, Upstream};

/// A certificate entry for `certificates = [...]`.
fn cert_entry(issued: &Issued, names: &[&str], default: bool) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!(
        "{{ cert = {}, key = {}, server_names = [{}], default = {default} }}",
        toml_path(&issued.cert),
        toml_path(&issued.key),
        names.join(", ")
    )
}

fn one_cert(issued: &Issued) -> String {
    format!("certificates = [ {} ]", cert_entry(issued, &[], true))
}

driver_tests! {
    fn https_request_is_proxied_with_forwarded_proto_and_hsts(driver: &str) {
        let pki = Pki::new("basic");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let upstream = Upstream::echo("u");
        let gw = GatewayConfig::new(driver)
            .tls_listener(&format!("{}\nhsts = \"max-age=600\"", one_cert(&server)))
            .upstream("u", &[upstream.addr()])
            .route_all_to("u")
            .start();
        let config = tls::client_config(&[pki.ca_der()], None);
        let mut conn = tls::connect(gw.tls_addr(), "gateway.test", &config).expect("handshake");
        assert_eq!(conn.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        for path in ["/one", "/two"] {
            let response = get(&mut conn, path, "X-Forwarded-Proto: gopher\r\n").expect("response");
            assert_eq!(response.status(), 200, "{response:?}");
            assert_eq!(response.header("strict-transport-security"), Some("max-age=600"));
            let echoed = Echoed::parse(&response.body);
            assert_eq!(echoed.header_all("x-forwarded-proto"), vec!["https"]);
            assert_eq!(echoed.target, path);
        }
        // The client resumes its session (ticket) on the next connection.
        drop(conn);
        let mut again = tls::connect(gw.tls_addr(), "gateway.test", &config).expect("resume");
        assert_eq!(again.conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
        assert_eq!(get(&mut again, "/three", "").expect("response").status(), 200);
        // The plain listener says http and sends no HSTS.
        let plain = ureq::get(&gw.url("/plain")).call().expect("plain");
        assert!(plain.header("strict-transport-security").is_none());
        let echoed = Echoed::parse(&plain.into_string().expect("body"));
        assert_eq!(echoed.header_all("x-forwarded-proto"), vec!["http"]);
    }

    /// Idling on purpose: the quiet period past the 100 ms grace is what is under test.
    fn an_idle_tls_connection_is_parked_and_resumes(driver: &str) {
        let pki = Pki::new("idle");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let upstream = Upstream::echo("u");
        let gw = GatewayConfig::new(driver)
            .tls_listener(&one_cert(&server))
            .upstream("u", &[upstream.addr()])
            .route_all_to("u")
            .start();
        let config = tls::client_config(&[pki.ca_der()], None);
        let mut conn = tls::connect(gw.tls_addr(), "gateway.test", &config).expect("handshake");
        for round in 0..3 {
            let path = format!("/round/{round}");
            let response = get(&mut conn, &path, "").expect("response");
            assert_eq!(Echoed::parse(&response.body).target, path);
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        // Two pipelined requests in one TLS write to a parked connection.
        let pipelined = "GET /p/1 HTTP/1.1\r\nHost: g\r\n\r\nGET /p/2 HTTP/1.1\r\nHost: g\r\n\r\n";
        std::io::Write::write_all(&mut conn, pipelined.as_bytes()).expect("send");
        for path in ["/p/1", "/p/2"] {
            let response = tls::read_response(&mut conn).expect("response");
            assert_eq!(Echoed::parse(&response.body).target, path);
        }
    }

    fn a_large_body_streams_both_ways_over_tls(driver: &str) {
        let pki = Pki::new("body");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let upstream = Upstream::echo("u");
        let gw = GatewayConfig::new(driver)
            .tls_listener(&one_cert(&server))
            .upstream("u", &[upstream.addr()])
            .route_all_to("u")
            .start();
        let config = tls::client_config(&[pki.ca_der()], None);
        let mut conn = tls::connect(gw.tls_addr(), "gateway.test", &config).expect("handshake");
        let len = 3 * 1024 * 1024 + 7;
        let body = common::body::pattern(len);
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: g\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        std::io::Write::write_all(&mut conn, head.as_bytes()).expect("head");
        std::io::Write::write_all(&mut conn, &body).expect("body");
        let response = tls::read_response(&mut conn).expect("response");
        assert_eq!(response.status(), 200);
        let echoed = Echoed::parse(&response.body);
        assert_eq!(echoed.body_len, body.len() as u64);
        assert_eq!(echoed.body_sum, common::body::pattern_sum(len as u64).hex());
        // The connection stays usable.
        assert_eq!(get(&mut conn, "/after", "").expect("after").status(), 200);
    }

    fn sni_selects_the_certificate(driver: &str) {
        let pki = Pki::new("sni");
        let a = pki.issue("a", Kind::Server(&["a.test"]));
        let b = pki.issue_with("b", Kind::Server(&["b.test"]), &rcgen::PKCS_ED25519);
        let gw = GatewayConfig::new(driver)
            .tls_listener(&format!(
                "certificates = [ {}, {} ]",
                cert_entry(&a, &["a.test"], true),
                cert_entry(&b, &["b.test"], false)
            ))
            .routes("[[routes]]\nname = \"r\"\nrespond = { status = 200, body = \"ok\" }")
            .start();
        let config = tls::client_config(&[pki.ca_der()], None);
        for (name, expected) in [("a.test", &a), ("b.test", &b), ("B.Test", &b)] {
            let mut conn = tls::connect(gw.tls_addr(), name, &config).expect("handshake");
            assert_eq!(tls::presented(&conn), expected.der, "certificate for {name}");
            assert_eq!(get(&mut conn, "/", "").expect("response").status(), 200);
        }
    }

    fn required_client_certificate_is_enforced_and_its_subject_forwarded(driver: &str) {
        let pki = Pki::new("mtls");
        let other = Pki::new("mtls-other");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let client = pki.issue("client", Kind::Client("client-one"));
        let stranger = other.issue("stranger", Kind::Client("stranger"));
        let upstream = Upstream::echo("u");
        let gw = GatewayConfig::new(driver)
            .tls_listener(&format!(
                "{}\nclient_auth = {{ mode = \"required\", ca = {} }}",
                one_cert(&server),
                toml_path(&pki.ca_path())
            ))
            .upstream("u", &[upstream.addr()])
            .route_all_to("u")
            .start();
        let roots = [pki.ca_der()];
        let forged = "X-Client-Cert-Subject: CN=admin\r\n";
        for (who, identity) in [("no certificate", None), ("wrong CA", Some(&stranger))] {
            let config = tls::client_config(&roots, identity);
            // TLS 1.3 clients learn of the refusal at their first read.
            let refused = tls::connect(gw.tls_addr(), "gateway.test", &config)
                .and_then(|mut conn| get(&mut conn, "/", forged));
            assert!(refused.is_err(), "{who}: {refused:?}");
        }
        assert_eq!(upstream.requests(), 0);
        let config = tls::client_config(&roots, Some(&client));
        let mut conn = tls::connect(gw.tls_addr(), "gateway.test", &config).expect("handshake");
        let response = get(&mut conn, "/", forged).expect("response");
        assert_eq!(response.status(), 200);
        let echoed = Echoed::parse(&response.body);
        let subjects = echoed.header_all("x-client-cert-subject");
        assert_eq!(subjects.len(), 1, "{subjects:?}");
        assert!(subjects[0].contains("CN=client-one"), "{subjects:?}");
    }

    fn optional_client_certificate_passes_a_subject_only_when_verified(driver: &str) {
        let pki = Pki::new("optional");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let client = pki.issue("client", Kind::Client("client-two"));
        let upstream = Upstream::echo("u");
        let gw = GatewayConfig::new(driver)
            .tls_listener(&format!(
                "{}\nclient_auth = {{ mode = \"optional\", ca = {}, subject_header = \"X-Peer\" }}",
                one_cert(&server),
                toml_path(&pki.ca_path())
            ))
            .upstream("u", &[upstream.addr()])
            .route_all_to("u")
            .start();
        let forged = "X-Peer: CN=admin\r\nX-Client-Cert-Subject: CN=admin\r\n";
        let anonymous = tls::client_config(&[pki.ca_der()], None);
        let mut conn = tls::connect(gw.tls_addr(), "gateway.test", &anonymous).expect("handshake");
        let response = get(&mut conn, "/", forged).expect("response");
        let echoed = Echoed::parse(&response.body);
        assert!(echoed.header_all("x-peer").is_empty(), "{:?}", echoed.headers);
        assert!(echoed.header_all("x-client-cert-subject").is_empty());
        let verified = tls::client_config(&[pki.ca_der()], Some(&client));
        let mut conn = tls::connect(gw.tls_addr(), "gateway.test", &verified).expect("handshake");
        let response = get(&mut conn, "/", forged).expect("response");
        let echoed = Echoed::parse(&response.body);
        let subjects = echoed.header_all("x-peer");
        assert_eq!(subjects.len(), 1, "{subjects:?}");
        assert!(subjects[0].contains("CN=client-two"), "{subjects:?}");
        // A plain-HTTP client cannot forge the identity either.
        let plain = ureq::get(&gw.url("/")).set("X-Peer", "CN=admin").call().expect("plain");
        let echoed = Echoed::parse(&plain.into_string().expect("body"));
        assert!(echoed.header_all("x-peer").is_empty());
    }

    fn an_expired_gateway_certificate_is_refused_by_the_client(driver: &str) {
        let pki = Pki::new("expired");
        let expired = pki.issue("expired", Kind::ExpiredServer(&["gateway.test"]));
        let gw = GatewayConfig::new(driver)
            .tls_listener(&one_cert(&expired))
            .routes("[[routes]]\nname = \"r\"\nrespond = { status = 200, body = \"ok\" }")
            .start();
        let config = tls::client_config(&[pki.ca_der()], None);
        let error = tls::connect(gw.tls_addr(), "gateway.test", &config).expect_err("expired");
        assert!(error.to_string().to_lowercase().contains("expired"), "{error}");
    }

    fn upstream_tls_verifies_the_upstream_and_pools_its_connections(driver: &str) {
        let pki = Pki::new("upstream");
        let rogue = Pki::new("rogue");
        let trusted = TlsUpstream::start(&pki.issue("up", Kind::Server(&["upstream.test"])));
        let untrusted = TlsUpstream::start(&rogue.issue("up", Kind::Server(&["upstream.test"])));
        let group = |name: &str, addr| {
            format!(
                "[[upstreams]]\nname = \"{name}\"\ntargets = [ {{ addr = \"{addr}\" }} ]\n\
                 tls = {{ sni = \"upstream.test\", ca = {} }}",
                toml_path(&pki.ca_path())
            )
        };
        let gw = GatewayConfig::new(driver)
            .upstream_raw(&group("good", trusted.addr()))
            .upstream_raw(&group("bad", untrusted.addr()))
            .routes(
                "[[routes]]\nname = \"good\"\nmatch = { path_prefix = \"/good\" }\nupstream = \"good\"\n\n\
                 [[routes]]\nname = \"bad\"\nmatch = { path_prefix = \"/bad\" }\nupstream = \"bad\"",
            )
            .start();
        for _ in 0..3 {
            let response = ureq::get(&gw.url("/good/x")).call().expect("good");
            assert_eq!(response.into_string().expect("body"), "tls upstream /good/x");
        }
        assert_eq!(trusted.connections(), 1, "the TLS connection is pooled and reused");
        let refused = ureq::get(&gw.url("/bad/x")).call();
        match refused {
            Err(ureq::Error::Status(502, _)) => {}
            other => panic!("expected 502, got {other:?}"),
        }
    }

    fn active_health_checks_speak_tls_to_tls_upstreams(driver: &str) {
        let pki = Pki::new("upstream-health");
        let up = TlsUpstream::start(&pki.issue("up", Kind::Server(&["upstream.test"])));
        let gw = GatewayConfig::new(driver)
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"g\"\ntargets = [ {{ addr = \"{}\" }} ]\n\
                 tls = {{ sni = \"upstream.test\", ca = {} }}\n\
                 health = {{ path = \"/healthz\", interval = \"20ms\", unhealthy_after = 1, healthy_after = 1 }}",
                up.addr(),
                toml_path(&pki.ca_path())
            ))
            .route_all_to("g")
            .start();
        // The TLS upstream answers every path with 200: probes over TLS keep it healthy and
        // open connections of their own (a plain-text probe would fail its handshake).
        let probed = up.connections();
        common::wait_until("two TLS probes", std::time::Duration::from_secs(10), || {
            up.connections() >= probed + 2
        });
        assert_eq!(gw.target_healthy("g", up.addr()), Some(true));
        let response = ureq::get(&gw.url("/x")).call().expect("proxied over TLS");
        assert_eq!(response.into_string().expect("body"), "tls upstream /x");
    }

    fn upstream_tls_presents_a_client_certificate_and_can_skip_verification(driver: &str) {
        let pki = Pki::new("upstream-mtls");
        let rogue = Pki::new("upstream-rogue");
        let gateway_id = pki.issue("gateway", Kind::Client("gateway"));
        let strict = TlsUpstream::start_requiring(
            &pki.issue("up", Kind::Server(&["upstream.test"])),
            Some(pki.ca_der()),
        );
        let unverified = TlsUpstream::start(&rogue.issue("up", Kind::Server(&["elsewhere.test"])));
        let ca = toml_path(&pki.ca_path());
        let group = |name: &str, addr, tls: String| {
            format!("[[upstreams]]\nname = \"{name}\"\ntargets = [ {{ addr = \"{addr}\" }} ]\ntls = {{ {tls} }}")
        };
        let route = |name: &str| {
            format!("[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"/{name}\" }}\nupstream = \"{name}\"\n")
        };
        let gw = GatewayConfig::new(driver)
            .upstream_raw(&group(
                "mtls",
                strict.addr(),
                format!(
                    "sni = \"upstream.test\", ca = {ca}, client_cert = {}, client_key = {}",
                    toml_path(&gateway_id.cert),
                    toml_path(&gateway_id.key)
                ),
            ))
            .upstream_raw(&group("anonymous", strict.addr(), format!("sni = \"upstream.test\", ca = {ca}")))
            .upstream_raw(&group("unverified", unverified.addr(), "verify = false".into()))
            .routes(&[route("mtls"), route("anonymous"), route("unverified")].join("\n"))
            .start();
        let body = ureq::get(&gw.url("/mtls/a")).call().expect("mtls").into_string();
        assert_eq!(body.expect("body"), "tls upstream /mtls/a");
        match ureq::get(&gw.url("/anonymous/a")).call() {
            Err(ureq::Error::Status(502, _)) => {}
            other => panic!("expected 502 without a client certificate, got {other:?}"),
        }
        let body = ureq::get(&gw.url("/unverified/a")).call().expect("unverified").into_string();
        assert_eq!(body.expect("body"), "tls upstream /unverified/a");
    }

    fn reloaded_certificates_serve_new_handshakes_while_open_connections_go_on(driver: &str) {
        let pki = Pki::new("reload");
        let old = pki.issue("old", Kind::Server(&["gateway.test"]));
        let new = pki.issue("new", Kind::Server(&["gateway.test"]));
        let route = "[[routes]]\nname = \"r\"\nrespond = { status = 200, body = \"ok\" }";
        let before = GatewayConfig::new(driver).tls_listener(&one_cert(&old)).routes(route);
        let gw = before.start();
        let config = tls::client_config(&[pki.ca_der()], None);
        let mut open = tls::connect(gw.tls_addr(), "gateway.test", &config).expect("handshake");
        assert_eq!(get(&mut open, "/", "").expect("first").status(), 200);
        assert_eq!(tls::presented(&open), old.der);
        // Same listener (127.0.0.1:0, TLS), new certificate.
        let after = GatewayConfig::new(driver).tls_listener(&one_cert(&new)).routes(route);
        gw.store(&after);
        // A new client: the first one would resume its session and see no certificate.
        let config = tls::client_config(&[pki.ca_der()], None);
        let fresh = tls::connect(gw.tls_addr(), "gateway.test", &config).expect("handshake");
        assert_eq!(tls::presented(&fresh), new.der);
        assert_eq!(get(&mut open, "/", "").expect("after reload").status(), 200);
    }

    fn plain_http_is_redirected_to_https_where_the_route_says_so(driver: &str) {
        let pki = Pki::new("redirect");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let gw = GatewayConfig::new(driver)
            .tls_listener(&one_cert(&server))
            .routes(
                "[[routes]]\nname = \"r\"\nrespond = { status = 200, body = \"ok\" }\nredirect_https = 8443",
            )
            .start();
        let mut plain = std::net::TcpStream::connect(gw.addr()).expect("connect");
        plain.set_read_timeout(Some(common::IO_TIMEOUT)).expect("timeout");
        let response = get(&mut plain, "/a/b?c=d", "").expect("response");
        assert_eq!(response.status(), 308);
        assert_eq!(
            response.header("location"),
            Some("https://gateway.test:8443/a/b?c=d")
        );
        let config = tls::client_config(&[pki.ca_der()], None);
        let mut secure = tls::connect(gw.tls_addr(), "gateway.test", &config).expect("handshake");
        let response = get(&mut secure, "/a/b?c=d", "").expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.body, "ok");
    }

    fn an_absolute_form_target_is_redirected_with_its_path_and_query(driver: &str) {
        let pki = Pki::new("redirect-absolute");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let gw = GatewayConfig::new(driver)
            .tls_listener(&one_cert(&server))
            .routes(
                "[[routes]]\nname = \"r\"\nrespond = { status = 200, body = \"ok\" }\nredirect_https = 443",
            )
            .start();
        let mut raw = common::client::Raw::connect(gw.addr());
        for (target, location) in [
            ("http://gateway.test/a/b?c=d&e", "https://gateway.test/a/b?c=d&e"),
            ("http://gateway.test:8080/x/y", "https://gateway.test/x/y"),
            ("http://gateway.test?q=1", "https://gateway.test/?q=1"),
        ] {
            raw.send(format!("GET {target} HTTP/1.1\r\nHost: gateway.test\r\n\r\n"));
            let response = raw.read_response();
            assert_eq!(response.status, 308, "{target}");
            assert_eq!(response.header("location"), Some(location), "{target}");
        }
    }

    fn curl_and_openssl_complete_a_handshake(driver: &str) {
        let pki = Pki::new("cli");
        let server = pki.issue("server", Kind::Server(&["gateway.test"]));
        let gw = GatewayConfig::new(driver)
            .tls_listener(&format!(
                "{}\nmin_version = \"1.2\"\ncipher_suites = [\"TLS13_AES_128_GCM_SHA256\", \
                 \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]",
                one_cert(&server)
            ))
            .routes("[[routes]]\nname = \"r\"\nrespond = { status = 200, body = \"hello\" }")
            .start();
        let port = gw.tls_addr().port();
        let curl = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(pki.ca_path())
            .args(["--resolve", &format!("gateway.test:{port}:127.0.0.1")])
            .arg(format!("https://gateway.test:{port}/"))
            .output();
        match curl {
            Ok(out) => {
                assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
                assert_eq!(String::from_utf8_lossy(&out.stdout), "hello");
            }
            Err(e) => eprintln!("curl not run ({e}); skipped"),
        }
        for version in ["-tls1_2", "-tls1_3"] {
            let openssl = Command::new("openssl")
                .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), version])
                .args(["-servername", "gateway.test", "-alpn", "http/1.1", "-CAfile"])
                .arg(pki.ca_path())
                .stdin(std::process::Stdio::null())
                .output();
            match openssl {
                Ok(out) => {
                    let text = String::from_utf8_lossy(&out.stdout);
                    assert!(text.contains("Verify return code: 0 (ok)"), "{version}: {text}");
                    assert!(text.contains("ALPN protocol: http/1.1"), "{version}: {text}");
                }
                Err(e) => eprintln!("openssl not run ({e}); skipped"),
            }
        }
    }
}
