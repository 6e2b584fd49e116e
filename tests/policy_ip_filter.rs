//! `kind = "ip_filter"` through the running gateway: CIDR allow and deny lists, and the
//! client address behind trusted proxies (`X-Forwarded-For`, rightmost untrusted entry).
mod common;

use common::client::Raw;
use common::gateway::{Gateway, GatewayConfig};
use common::upstream::Upstream;

/// `GET /` with extra header lines; returns the status.
fn status(gw: &Gateway, extra: &str) -> u16 {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ));
    raw.read_response().status
}

/// One proxy route behind `[policies.filter]` with the given keys.
fn gateway(driver: &str, up: &Upstream, policy: &str, trusted: Option<&str>) -> Gateway {
    let mut config = GatewayConfig::new(driver).upstream("echo", &[up.addr()]);
    if let Some(trusted) = trusted {
        config = config.server("trusted_proxies", trusted);
    }
    config
        .routes(&format!(
            "[[routes]]\nname = \"r\"\nupstream = \"echo\"\npolicies = [\"filter\"]\n\
             [policies.filter]\nkind = \"ip_filter\"\n{policy}\n"
        ))
        .start()
}

driver_tests! {
    fn allow_list_admits_ranges_and_refuses_the_rest(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up, r#"allow = ["127.0.0.0/8", "::1"]"#, None);
        assert_eq!(status(&gw, ""), 200);
        let gw = gateway(driver, &up, r#"allow = ["10.0.0.0/8", "2001:db8::/32"]"#, None);
        assert_eq!(status(&gw, ""), 403);
        assert_eq!(up.requests(), 1, "a refused request never reaches the upstream");
    }

    fn deny_wins_over_allow(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up, r#"allow = ["127.0.0.0/8"]
deny = ["127.0.0.1/32"]"#, None);
        assert_eq!(status(&gw, ""), 403);
    }

    fn forwarded_for_is_ignored_from_an_untrusted_peer(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up, r#"deny = ["203.0.113.0/24"]"#, None);
        assert_eq!(status(&gw, "X-Forwarded-For: 203.0.113.5\r\n"), 200);
        let gw = gateway(driver, &up, r#"allow = ["203.0.113.0/24"]"#, None);
        assert_eq!(status(&gw, "X-Forwarded-For: 203.0.113.5\r\n"), 403, "a client cannot pick its address");
    }

    fn trusted_proxy_forwards_the_rightmost_untrusted_address(driver: &str) {
        let up = Upstream::echo("echo");
        let trusted = r#"["127.0.0.0/8", "10.0.0.0/8"]"#;
        let gw = gateway(driver, &up, r#"deny = ["203.0.113.0/24"]"#, Some(trusted));
        assert_eq!(status(&gw, "X-Forwarded-For: 203.0.113.5\r\n"), 403);
        assert_eq!(status(&gw, "X-Forwarded-For: 198.51.100.1\r\n"), 200);
        // The leftmost entry was written by the client itself: only the entries our trusted
        // proxies appended count.
        assert_eq!(
            status(&gw, "X-Forwarded-For: 203.0.113.5, 198.51.100.1, 10.0.0.7\r\n"),
            200
        );
        assert_eq!(
            status(&gw, "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 203.0.113.5, 10.0.0.7\r\n"),
            403,
            "several fields read as one list"
        );
    }

    fn policy_trusted_proxies_replace_the_server_list(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(
            driver,
            &up,
            "deny = [\"203.0.113.0/24\"]\ntrusted_proxies = [\"192.0.2.0/24\"]",
            Some(r#"["127.0.0.0/8"]"#),
        );
        assert_eq!(status(&gw, "X-Forwarded-For: 203.0.113.5\r\n"), 200, "the peer is not trusted by this policy");
    }
}
