//! The one pipeline holds for HTTP/2 clients: policies (API keys, rate limits), request
//! bodies read whole (validation), retries and failover, and route metrics by protocol,
//! each through an h2c client (the h2 crate) against the same config an HTTP/1.1 client
//! gets, under both drivers.
mod common;

use common::client::{get_req, Raw};
use common::gateway::{Gateway, GatewayConfig};
use common::h2 as h2c;
use common::upstream::{refused_addr, Behavior, Echoed, Upstream};
use ringgate::metrics::{Protocol, StatusClass};

const KEY: &str = "alice-key-0123456789";

/// One h2 request on a fresh connection: `method path` with `headers` and `body` (sent as
/// one DATA frame, without `content-length` unless `headers` has one).
fn h2_call(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> h2c::Exchange {
    let authority = gw.addr().to_string();
    h2c::runtime().block_on(async {
        let client = h2c::connect(gw.addr()).await;
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{authority}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(()).expect("request");
        h2c::exchange(&client, request, body.map(<[u8]>::to_vec))
            .await
            .expect("h2 exchange")
    })
}

fn policies_gateway(driver: &str, up: &Upstream) -> Gateway {
    GatewayConfig::new(driver)
        .server("h2c", "true")
        .upstream("echo", &[up.addr()])
        .routes(
            "[[routes]]\nname = \"keys\"\nmatch = { path_prefix = \"/keys\" }\nupstream = \"echo\"\npolicies = [\"key\"]\n\n\
             [[routes]]\nname = \"limited\"\nmatch = { path_prefix = \"/limited\" }\nupstream = \"echo\"\npolicies = [\"limit\"]\n",
        )
        .tables(&format!(
            "[policies.key]\nkind = \"api_key\"\n\n\
             [policies.limit]\nkind = \"rate_limit\"\nrate = \"2/h\"\nscope = \"worker\"\n\n\
             [[consumers]]\nname = \"alice\"\napi_keys = [\"{KEY}\"]\n"
        ))
        .start()
}

driver_tests! {
    fn api_keys_are_checked_for_h2_clients_as_for_http1(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = policies_gateway(driver, &up);
        let refused = h2_call(&gw, "GET", "/keys/a", &[], None);
        assert_eq!(refused.status, 401, "{}", refused.text());
        assert_eq!(up.requests(), 0, "a refused request never goes upstream");
        let wrong = h2_call(&gw, "GET", "/keys/a", &[("x-api-key", "not-a-key-at-all")], None);
        assert_eq!(wrong.status, 401);
        let ok = h2_call(&gw, "GET", "/keys/a", &[("x-api-key", KEY), ("x-consumer", "root")], None);
        assert_eq!(ok.status, 200, "{}", ok.text());
        let seen = up.last_request().expect("forwarded");
        assert_eq!(seen.header_all("x-consumer"), vec!["alice"], "the forged header is replaced");
        // The same answers over HTTP/1.1, from the same route.
        let mut raw = Raw::connect(gw.addr());
        raw.send(get_req("/keys/a"));
        assert_eq!(raw.read_response().status, 401);
    }

    fn rate_limits_count_h2_and_http1_requests_in_one_bucket(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = policies_gateway(driver, &up);
        let first = h2_call(&gw, "GET", "/limited", &[], None);
        assert_eq!(first.status, 200);
        assert_eq!(first.header("ratelimit-policy"), Some("\"limit\";q=2;w=3600"));
        let field = first.header("ratelimit").unwrap_or_default().to_string();
        assert!(field.starts_with("\"limit\";r=1;t="), "{field}");
        let mut raw = Raw::connect(gw.addr());
        raw.send(get_req("/limited"));
        assert_eq!(raw.read_response().status, 200, "HTTP/1.1 takes the second");
        let refused = h2_call(&gw, "GET", "/limited", &[], None);
        assert_eq!(refused.status, 429, "{}", refused.text());
        let retry: u64 = refused
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!((1..=3600).contains(&retry), "{retry}");
        assert_eq!(up.requests(), 2);
    }

    fn validated_bodies_from_h2_clients_need_no_content_length(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .server("errors", "\"problem\"")
            .upstream("echo", &[up.addr()])
            .routes("[[routes]]\nname = \"users\"\nmatch = { path_prefix = \"/users\" }\nupstream = \"echo\"\npolicies = [\"contract\"]\n")
            .tables(
                "[policies.contract]\nkind = \"validate\"\n\
                 body_schema = '{\"type\": \"object\", \"required\": [\"name\"], \"properties\": {\"name\": {\"type\": \"string\", \"minLength\": 2}}}'\n",
            )
            .start();
        let json = [("content-type", "application/json")];
        // h2 clients need not send content-length: the body is read whole all the same.
        let body = br#"{"name": "alice"}"#;
        let ok = h2_call(&gw, "POST", "/users", &json, Some(body));
        assert_eq!(ok.status, 200, "{}", ok.text());
        let echoed = Echoed::parse(&ok.text());
        assert_eq!(echoed.body_len, body.len() as u64);
        assert_eq!(echoed.header("content-length"), Some(body.len().to_string().as_str()));
        assert!(echoed.header("transfer-encoding").is_none());
        let bad = h2_call(&gw, "POST", "/users", &json, Some(br#"{"name": "a"}"#));
        assert_eq!(bad.status, 400, "{}", bad.text());
        assert_eq!(bad.header("content-type"), Some("application/problem+json"));
        assert!(bad.text().contains("/name"), "{}", bad.text());
        assert_eq!(up.requests(), 1, "the invalid body never went upstream");
        // An HTTP/1.1 chunked body is read whole the same way.
        let mut raw = Raw::connect(gw.addr());
        raw.send(
            "POST /users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n9\r\n{\"name\": \r\n8\r\n\"alice\"}\r\n0\r\n\r\n",
        );
        let r = raw.read_response();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(Echoed::parse(&r.text()).body_len, 17);
    }

    fn failed_attempts_are_retried_on_another_target_for_h2_clients(driver: &str) {
        let unavailable = Upstream::start("bad", Behavior::Status(503));
        let good = Upstream::echo("good");
        let targets = [refused_addr(), unavailable.addr(), good.addr()];
        let targets: Vec<String> = targets.iter().map(|a| format!("{{ addr = \"{a}\" }}")).collect();
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"g\"\ntargets = [ {} ]\n\
                 retry = {{ attempts = 3, on = [\"connect_error\", \"503\"], backoff = \"1ms\", max_backoff = \"2ms\", min_retries_per_sec = 1000 }}\n",
                targets.join(", ")
            ))
            .routes("[[routes]]\nname = \"all\"\nmatch = { path_prefix = \"/\" }\nupstream = \"g\"\nretry_non_idempotent = true\n")
            .start();
        // Every request reaches the good target, whichever target it tried first; a POST body
        // sent without content-length is in hand, so it is sent again whole.
        for i in 0..6 {
            let body = format!("attempt body {i}");
            let answer = h2_call(&gw, "POST", &format!("/r/{i}"), &[], Some(body.as_bytes()));
            assert_eq!(answer.status, 200, "request {i}: {}", answer.text());
            let echoed = Echoed::parse(&answer.text());
            assert_eq!(echoed.upstream, "good");
            assert_eq!(echoed.body_len, body.len() as u64);
        }
        assert_eq!(good.requests(), 6);
        assert!(unavailable.requests() >= 1, "the 503 target was tried");
    }

    fn route_metrics_carry_the_client_protocol(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .merge_interval("100ms")
            .upstream("echo", &[up.addr()])
            .routes("[[routes]]\nname = \"api\"\nmatch = { path_prefix = \"/\" }\nupstream = \"echo\"\n")
            .start();
        for _ in 0..3 {
            assert_eq!(h2_call(&gw, "GET", "/x", &[], None).status, 200);
        }
        let mut raw = Raw::connect(gw.addr());
        raw.send(get_req("/y"));
        assert_eq!(raw.read_response().status, 200);
        let ok = StatusClass::Success.index();
        let agg = gw.metrics_until(|m| {
            m.route("api").is_some_and(|r| {
                r.requests[Protocol::H2.index()][ok] == 3 && r.requests[Protocol::Http1.index()][ok] == 1
            })
        });
        assert_eq!(agg.requests_by_protocol(Protocol::H2), 3);
        assert_eq!(agg.requests_by_protocol(Protocol::Http1), 1);
        let text = agg.render(&Default::default());
        assert!(
            text.contains("ringgate_requests_total{route=\"api\",status_class=\"2xx\",protocol=\"h2\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("ringgate_requests_total{route=\"api\",status_class=\"2xx\",protocol=\"http1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("ringgate_requests_by_protocol_total{protocol=\"h2\"} 3\n"), "{text}");
    }
}
