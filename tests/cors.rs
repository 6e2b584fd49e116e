//! `kind = "cors"` through the running gateway, under both drivers: one test per rule of
//! the behaviour the gateway follows (the Fetch standard's CORS protocol, see
//! `docs/shaping.md`), a browser's preflight-then-request sequence checked byte for byte,
//! the gateway's own error answers on a CORS route, and HTTP/2 clients.
mod common;

use std::sync::Arc;

use common::client::{Raw, RawResponse};
use common::gateway::{Gateway, GatewayConfig};
use common::h2 as h2c;
use common::upstream::{Behavior, Handled, Recorded, Upstream};

const APP: &str = "https://app.example.com";

/// A backend answering 200 `ok` with `headers` to every request.
fn backend(name: &str, headers: &'static [(&'static str, &'static str)]) -> Upstream {
    let f = move |_: &Recorded| Handled::Respond {
        delay: std::time::Duration::ZERO,
        status: 200,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: b"ok".to_vec(),
    };
    Upstream::start(name, Behavior::Handler(Arc::new(f)))
}

/// Route `api` (every path) to `up` behind `policies`, with the `[policies.*]` `tables`.
fn gateway(driver: &str, up: &Upstream, policies: &str, tables: &str) -> Gateway {
    GatewayConfig::new(driver)
        .upstream("api", &[up.addr()])
        .routes(&format!(
            "[[routes]]\nname = \"api\"\nmatch = {{ path_prefix = \"/\" }}\nupstream = \"api\"\n\
             policies = {policies}\n"
        ))
        .tables(tables)
        .start()
}

/// A `cors` policy named `web` with `keys`.
fn cors(keys: &str) -> String {
    format!("[policies.web]\nkind = \"cors\"\n{keys}\n")
}

/// The usual policy: one exact origin, a wildcard, a regex; credentials.
fn usual() -> String {
    cors(
        "origins = [\"https://app.example.com\", \"https://*.example.org\"]\n\
         origin_regexes = ['https://pr-[0-9]+\\.preview\\.example\\.net']\n\
         methods = [\"GET\", \"PUT\", \"DELETE\"]\n\
         headers = [\"content-type\", \"authorization\", \"x-trace\"]\n\
         expose_headers = [\"X-Request-Id\", \"RateLimit\"]\n\
         credentials = true",
    )
}

/// Sends `method path` with `fields` (each ending in CRLF) on a fresh connection.
fn request(gw: &Gateway, method: &str, fields: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "{method} /items HTTP/1.1\r\nHost: api.test\r\n{fields}Connection: close\r\n\r\n"
    ));
    raw.read_response_to(method)
}

/// A browser's preflight fields for `origin`, `method` and the lower-case header list.
fn preflight_fields(origin: &str, method: &str, headers: &str) -> String {
    let mut f = format!("Origin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n");
    if !headers.is_empty() {
        f.push_str(&format!("Access-Control-Request-Headers: {headers}\r\n"));
    }
    f
}

fn origin(o: &str) -> String {
    format!("Origin: {o}\r\n")
}

/// Every field whose name starts with `Access-Control-`.
fn cors_fields(r: &RawResponse) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-"))
        .cloned()
        .collect()
}

/// Whether the request origin is granted (echoed back).
fn granted(gw: &Gateway, o: &str) -> bool {
    let r = request(gw, "GET", &origin(o));
    assert_eq!(r.status, 200);
    match r.header("access-control-allow-origin") {
        Some(echo) => {
            assert_eq!(echo, o);
            true
        }
        None => false,
    }
}

driver_tests! {
    // A cached CORS route: a hit carries one `Vary` listing Origin (and the compressor's
    // Accept-Encoding), and the CORS fields of its own request, never the stored request's.
    fn a_cache_hit_on_a_cors_route_has_one_vary_and_its_own_cors_fields(driver: &str) {
        let up = backend("api", &[("cache-control", "max-age=60"), ("content-type", "application/json")]);
        let gw = GatewayConfig::new(driver)
            .workers(1)
            .upstream("api", &[up.addr()])
            .routes("[[routes]]\nname = \"api\"\nmatch = { path_prefix = \"/\" }\nupstream = \"api\"\n\
                     cache = \"c\"\npolicies = [\"web\", \"gz\"]\n")
            .tables(&format!(
                "{}[policies.gz]\nkind = \"compress\"\nmin_bytes = 0\n[caches.c]\nmax_bytes = \"1MiB\"\n",
                usual()
            ))
            .start();
        let other = "https://a.example.org";
        let mut session = common::client::Session::connect(gw.addr(), "api.test");
        for (n, o) in [(1, APP), (2, other)] {
            let r = session.request("GET", "/items", &format!("Origin: {o}\r\n"));
            assert_eq!(r.status, 200);
            let vary = r.header_all("vary");
            assert_eq!(vary.len(), 1, "request {n}: one Vary field: {vary:?}");
            assert!(vary[0].to_ascii_lowercase().contains("origin"), "{vary:?}");
            assert_eq!(r.header("access-control-allow-origin"), Some(o), "request {n}");
            if n == 2 {
                assert_eq!(r.header("cache-status"), Some("ringgate; hit"));
            }
        }
        assert_eq!(up.requests(), 1);
    }

    // Rule 1: a preflight is OPTIONS with Origin and Access-Control-Request-Method; other
    // OPTIONS requests go upstream.
    fn only_options_with_origin_and_request_method_is_a_preflight(driver: &str) {
        let up = Upstream::echo("api");
        let gw = gateway(driver, &up, "[\"web\"]", &usual());
        let r = request(&gw, "OPTIONS", &origin(APP));
        assert_eq!(r.status, 200, "OPTIONS with Origin only is an ordinary request");
        let r = request(&gw, "OPTIONS", "Access-Control-Request-Method: PUT\r\n");
        assert_eq!(r.status, 200, "OPTIONS without Origin is an ordinary request");
        assert_eq!(up.requests(), 2);
        assert!(up.recorded().iter().all(|r| r.method == "OPTIONS"));
        let r = request(&gw, "OPTIONS", &preflight_fields(APP, "PUT", ""));
        assert_eq!(r.status, 204);
        assert_eq!(r.header("access-control-allow-origin"), Some(APP));
        assert_eq!(r.header("content-length"), None, "a 204 has no Content-Length");
        assert!(r.body.is_empty());
        assert_eq!(up.requests(), 2, "the preflight never reaches the upstream");
    }

    // Rule 2: preflights are answered before authentication and rate limits; the gateway's
    // own refusals of actual requests carry the CORS fields so the page can read them.
    fn preflights_pass_authentication_and_limits_and_refusals_carry_cors(driver: &str) {
        let up = Upstream::echo("api");
        let tables = format!(
            "{}[policies.key]\nkind = \"api_key\"\n\
             [policies.limit]\nkind = \"rate_limit\"\nkey = \"ip\"\nrate = \"1/h\"\nscope = \"worker\"\n\
             [[consumers]]\nname = \"alice\"\napi_keys = [\"alice-key-0123456789\"]\n",
            usual()
        );
        let gw = GatewayConfig::new(driver)
            .workers(1)
            .upstream("api", &[up.addr()])
            .routes("[[routes]]\nname = \"api\"\nmatch = { path_prefix = \"/\" }\nupstream = \"api\"\n\
                     policies = [\"limit\", \"key\", \"web\"]\n")
            .tables(&tables)
            .start();
        for _ in 0..3 {
            let r = request(&gw, "OPTIONS", &preflight_fields(APP, "PUT", "authorization"));
            assert_eq!(r.status, 204, "no credentials and no limit for a preflight");
        }
        let r = request(&gw, "GET", &origin(APP));
        assert_eq!(r.status, 401);
        assert_eq!(r.header("access-control-allow-origin"), Some(APP));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(r.header("vary"), Some("Origin"));
        let key = "X-Api-Key: alice-key-0123456789\r\n";
        let r = request(&gw, "GET", &format!("{}{key}", origin(APP)));
        assert_eq!(r.status, 200);
        let r = request(&gw, "GET", &format!("{}{key}", origin(APP)));
        assert_eq!(r.status, 429);
        assert_eq!(r.header("access-control-allow-origin"), Some(APP));
        assert_eq!(r.header("access-control-expose-headers"), Some("x-request-id, ratelimit"));
        assert_eq!(up.requests(), 1);
    }

    // Rule 3: origins compared serialized; wildcards on a label boundary; regexes anchored;
    // `null` only when listed; two Origin fields refused.
    fn origins_match_exactly_on_label_boundaries_and_anchored(driver: &str) {
        let up = Upstream::echo("api");
        let gw = gateway(driver, &up, "[\"web\"]", &usual());
        assert!(granted(&gw, APP));
        assert!(granted(&gw, "HTTPS://App.Example.com:443"), "serialized form compared");
        assert!(!granted(&gw, "http://app.example.com"));
        assert!(!granted(&gw, "https://app.example.com:8443"));
        assert!(!granted(&gw, "https://app.example.com.evil.com"));
        assert!(granted(&gw, "https://api.example.org"));
        assert!(granted(&gw, "https://a.b.example.org"));
        assert!(!granted(&gw, "https://example.org"), "the wildcard needs a label");
        assert!(!granted(&gw, "https://evil-example.org"));
        assert!(!granted(&gw, "https://example.org.evil.com"));
        assert!(granted(&gw, "https://pr-42.preview.example.net"));
        assert!(!granted(&gw, "https://pr-42.preview.example.net.evil.com"), "anchored at the end");
        assert!(!granted(&gw, "https://evil.com/https://pr-42.preview.example.net"), "anchored at the start");
        assert!(!granted(&gw, "null"));
        let r = request(&gw, "GET", &format!("{}{}", origin(APP), origin(APP)));
        assert_eq!(r.header("access-control-allow-origin"), None, "two Origin fields");
        let gw = gateway(driver, &up, "[\"web\"]", &cors("origins = [\"null\"]"));
        assert!(granted(&gw, "null"), "listed literally");
    }

    // Rule 4: the matched origin is echoed (with credentials); `*` only for `*` without
    // credentials.
    fn the_origin_is_echoed_and_star_only_without_credentials(driver: &str) {
        let up = Upstream::echo("api");
        let gw = gateway(driver, &up, "[\"web\"]", &usual());
        let r = request(&gw, "GET", &origin("https://x.example.org"));
        assert_eq!(r.header("access-control-allow-origin"), Some("https://x.example.org"));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        let gw = gateway(driver, &up, "[\"web\"]", &cors("origins = [\"*\"]"));
        let r = request(&gw, "GET", &origin("https://anyone.test"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert_eq!(r.header("access-control-allow-credentials"), None);
        let r = request(&gw, "GET", "");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "the same for every request");
    }

    // Rule 5: Vary: Origin on every response (no Origin, refused origin, granted origin),
    // merged into the upstream's Vary, `Vary: *` left alone, none for `*` without
    // credentials; preflights vary on the request fields too.
    fn vary_origin_is_on_every_response_and_merged(driver: &str) {
        let plain = backend("plain", &[]);
        let gw = gateway(driver, &plain, "[\"web\"]", &usual());
        for fields in [String::new(), origin("https://evil.test"), origin(APP)] {
            let r = request(&gw, "GET", &fields);
            assert_eq!(r.header_all("vary"), vec!["Origin"], "{fields:?}");
        }
        let r = request(&gw, "OPTIONS", &preflight_fields(APP, "PUT", ""));
        assert_eq!(
            r.header_all("vary"),
            vec!["Origin, Access-Control-Request-Method, Access-Control-Request-Headers"]
        );
        let varied = backend("varied", &[("Vary", "Accept-Encoding"), ("vary", "origin, Cookie")]);
        let gw = gateway(driver, &varied, "[\"web\"]", &usual());
        let r = request(&gw, "GET", &origin(APP));
        assert_eq!(r.header_all("vary"), vec!["Accept-Encoding, origin, Cookie"], "one field, no repeat");
        let accept = backend("accept", &[("Vary", "Accept")]);
        let gw = gateway(driver, &accept, "[\"web\"]", &usual());
        assert_eq!(request(&gw, "GET", "").header_all("vary"), vec!["Accept, Origin"]);
        let star = backend("star", &[("Vary", "*")]);
        let gw = gateway(driver, &star, "[\"web\"]", &usual());
        assert_eq!(request(&gw, "GET", &origin(APP)).header_all("vary"), vec!["*"]);
        let gw = gateway(driver, &accept, "[\"web\"]", &cors("origins = [\"*\"]"));
        assert_eq!(request(&gw, "GET", &origin(APP)).header_all("vary"), vec!["Accept"]);
    }

    // Rule 6: `headers = ["*"]` answers `*` (which browsers never apply to Authorization);
    // `mirror_headers` echoes the request's list; a listed policy refuses other headers.
    fn allow_headers_listed_star_or_mirrored(driver: &str) {
        let up = Upstream::echo("api");
        let gw = gateway(driver, &up, "[\"web\"]", &usual());
        let r = request(&gw, "OPTIONS", &preflight_fields(APP, "PUT", "content-type,x-trace"));
        assert_eq!(r.status, 204);
        assert_eq!(r.header("access-control-allow-headers"), Some("content-type, x-trace"));
        let r = request(&gw, "OPTIONS", &preflight_fields(APP, "PUT", "content-type,x-secret"));
        assert_eq!(r.status, 403, "a header not listed");
        assert_eq!(cors_fields(&r), vec![]);
        let gw = gateway(driver, &up, "[\"web\"]", &cors("origins = [\"*\"]\nheaders = [\"*\"]"));
        let r = request(&gw, "OPTIONS", &preflight_fields(APP, "PUT", "authorization,x-any"));
        assert_eq!(r.header("access-control-allow-headers"), Some("*"));
        let mirror = cors("origins = [\"https://app.example.com\"]\nmirror_headers = true\ncredentials = true");
        let gw = gateway(driver, &up, "[\"web\"]", &mirror);
        let r = request(&gw, "OPTIONS", &preflight_fields(APP, "PUT", "authorization,x-any"));
        assert_eq!(r.status, 204);
        assert_eq!(r.header("access-control-allow-headers"), Some("authorization, x-any"));
    }

    // Rule 7: Max-Age only on preflights, 600 s by default, configurable.
    fn max_age_only_on_preflights(driver: &str) {
        let up = Upstream::echo("api");
        let gw = gateway(driver, &up, "[\"web\"]", &usual());
        let r = request(&gw, "OPTIONS", &preflight_fields(APP, "DELETE", ""));
        assert_eq!(r.header("access-control-max-age"), Some("600"));
        let r = request(&gw, "GET", &origin(APP));
        assert_eq!(r.header("access-control-max-age"), None);
        let gw = gateway(driver, &up, "[\"web\"]", &cors("origins = [\"*\"]\nmax_age = \"2h\""));
        let r = request(&gw, "OPTIONS", &preflight_fields(APP, "PUT", ""));
        assert_eq!(r.header("access-control-max-age"), Some("7200"));
    }

    // Rule 8: Expose-Headers on actual responses, Allow-Methods/-Headers on preflights only;
    // Allow-Credentials on both (Fetch checks it on the preflight too).
    fn each_field_goes_on_its_kind_of_response(driver: &str) {
        let up = Upstream::echo("api");
        let gw = gateway(driver, &up, "[\"web\"]", &usual());
        let pre = request(&gw, "OPTIONS", &preflight_fields(APP, "PUT", "x-trace"));
        assert_eq!(pre.header("access-control-allow-methods"), Some("GET, PUT, DELETE"));
        assert_eq!(pre.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(pre.header("access-control-expose-headers"), None);
        let actual = request(&gw, "PUT", &origin(APP));
        assert_eq!(actual.header("access-control-expose-headers"), Some("x-request-id, ratelimit"));
        assert_eq!(actual.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(actual.header("access-control-allow-methods"), None);
        assert_eq!(actual.header("access-control-allow-headers"), None);
        // A method not allowed (and not CORS-safelisted) is refused; safelisted ones pass.
        let r = request(&gw, "OPTIONS", &preflight_fields(APP, "PATCH", ""));
        assert_eq!((r.status, cors_fields(&r)), (403, vec![]));
        let r = request(&gw, "OPTIONS", &preflight_fields(APP, "POST", "content-type"));
        assert_eq!(r.status, 204);
        // A refused origin's preflight: 403 without any CORS field.
        let r = request(&gw, "OPTIONS", &preflight_fields("https://evil.test", "GET", ""));
        assert_eq!((r.status, cors_fields(&r)), (403, vec![]));
        assert_eq!(up.requests(), 1);
    }

    // Rule 9: the upstream's CORS fields are replaced: a browser never sees two, and a refused
    // origin gets none (not even the upstream's).
    fn upstream_cors_fields_are_replaced(driver: &str) {
        let up = backend("api", &[
            ("Access-Control-Allow-Origin", "*"),
            ("access-control-allow-credentials", "true"),
            ("Access-Control-Expose-Headers", "X-Internal"),
            ("Access-Control-Max-Age", "86400"),
            ("X-Kept", "1"),
        ]);
        let gw = gateway(driver, &up, "[\"web\"]", &usual());
        let r = request(&gw, "GET", &origin(APP));
        assert_eq!(
            cors_fields(&r),
            vec![
                ("Access-Control-Allow-Origin".to_string(), APP.to_string()),
                ("Access-Control-Allow-Credentials".to_string(), "true".to_string()),
                ("Access-Control-Expose-Headers".to_string(), "x-request-id, ratelimit".to_string()),
            ]
        );
        assert_eq!(r.header("x-kept"), Some("1"));
        let r = request(&gw, "GET", &origin("https://evil.test"));
        assert_eq!(cors_fields(&r), vec![]);
        assert_eq!(r.text(), "ok", "the request itself is still served");
    }

    // Rule 10: Allow-Private-Network only when requested and enabled.
    fn private_network_only_when_requested_and_enabled(driver: &str) {
        let up = Upstream::echo("api");
        let ask = "Access-Control-Request-Private-Network: true\r\n";
        let on = cors("origins = [\"https://app.example.com\"]\nprivate_network = true");
        let gw = gateway(driver, &up, "[\"web\"]", &on);
        let pre = |gw: &Gateway, extra: &str| {
            request(gw, "OPTIONS", &format!("{}{extra}", preflight_fields(APP, "GET", "")))
        };
        assert_eq!(pre(&gw, ask).header("access-control-allow-private-network"), Some("true"));
        assert_eq!(pre(&gw, "").header("access-control-allow-private-network"), None);
        let gw = gateway(driver, &up, "[\"web\"]", &cors("origins = [\"https://app.example.com\"]"));
        assert_eq!(pre(&gw, ask).header("access-control-allow-private-network"), None);
    }

    // What a browser sends for `fetch(url, {method: "PUT", credentials: "include", headers:
    // {"Content-Type": "application/json", "X-Trace": "1"}})`, byte for byte.
    fn a_browser_preflight_then_the_request(driver: &str) {
        let up = backend("api", &[("Content-Type", "application/json"), ("Vary", "Accept-Encoding")]);
        let gw = gateway(driver, &up, "[\"web\"]", &usual());
        let mut raw = Raw::connect(gw.addr());
        raw.send(
            "OPTIONS /items/7 HTTP/1.1\r\nHost: api.test\r\nAccept: */*\r\n\
             Access-Control-Request-Method: PUT\r\n\
             Access-Control-Request-Headers: content-type,x-trace\r\n\
             Origin: https://app.example.com\r\nSec-Fetch-Mode: cors\r\n\
             Referer: https://app.example.com/\r\nX-Request-Id: pre-1\r\n\r\n",
        );
        let pre = raw.read_response_to("OPTIONS");
        assert_eq!((pre.status, pre.reason.as_str()), (204, "No Content"));
        assert!(pre.body.is_empty());
        let lines: Vec<String> = pre.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        assert_eq!(
            lines,
            vec![
                "X-Request-Id: pre-1",
                "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
                "Access-Control-Allow-Origin: https://app.example.com",
                "Access-Control-Allow-Credentials: true",
                "Access-Control-Allow-Methods: GET, PUT, DELETE",
                "Access-Control-Allow-Headers: content-type, x-trace",
                "Access-Control-Max-Age: 600",
            ]
        );
        raw.send(
            "PUT /items/7 HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n\
             X-Trace: 1\r\nCookie: session=s\r\nOrigin: https://app.example.com\r\n\
             Sec-Fetch-Mode: cors\r\nX-Request-Id: put-1\r\nContent-Length: 2\r\n\r\n{}",
        );
        let put = raw.read_response_to("PUT");
        assert_eq!(put.status, 200);
        let lines: Vec<String> = put.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        assert_eq!(
            lines,
            vec![
                "x-upstream: api",
                "x-upstream-conn: 1",
                "Content-Type: application/json",
                "Vary: Accept-Encoding, Origin",
                "Content-Length: 2",
                "Via: 1.1 ringgate",
                "X-Request-Id: put-1",
                "Access-Control-Allow-Origin: https://app.example.com",
                "Access-Control-Allow-Credentials: true",
                "Access-Control-Expose-Headers: x-request-id, ratelimit",
            ],
            "{lines:#?}"
        );
        let seen = up.recorded();
        assert_eq!(seen.len(), 1, "the upstream never sees the preflight");
        assert_eq!(seen[0].method, "PUT");
        assert_eq!(seen[0].header("origin"), Some(APP), "Origin goes upstream untouched");
    }

    // HTTP/2 clients get the same: the preflight is answered, the actual response carries the
    // CORS fields and one merged Vary.
    fn http2_clients_get_the_same_answers(driver: &str) {
        let up = backend("api", &[("Vary", "Accept-Encoding"), ("Access-Control-Allow-Origin", "*")]);
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .upstream("api", &[up.addr()])
            .routes("[[routes]]\nname = \"api\"\nmatch = { path_prefix = \"/\" }\nupstream = \"api\"\n\
                     policies = [\"web\"]\n")
            .tables(&usual())
            .start();
        let (pre, actual) = h2c::runtime().block_on(async {
            let client = h2c::connect(gw.addr()).await;
            let pre = http::Request::builder()
                .method("OPTIONS")
                .uri(format!("http://{}/items", gw.addr()))
                .header("origin", APP)
                .header("access-control-request-method", "PUT")
                .header("access-control-request-headers", "x-trace")
                .body(())
                .expect("request");
            let pre = h2c::exchange(&client, pre, None).await.expect("preflight");
            let mut get = h2c::get(&gw.addr().to_string(), "/items");
            get.headers_mut().insert("origin", APP.parse().expect("value"));
            let actual = h2c::exchange(&client, get, None).await.expect("get");
            (pre, actual)
        });
        assert_eq!(pre.status, 204);
        assert_eq!(pre.header("access-control-allow-origin"), Some(APP));
        assert_eq!(pre.header("access-control-allow-headers"), Some("x-trace"));
        assert_eq!(actual.status, 200);
        let acao: Vec<_> = actual.headers.get_all("access-control-allow-origin").iter().collect();
        assert_eq!(acao, vec![APP], "one ACAO, the gateway's");
        let vary: Vec<_> = actual.headers.get_all("vary").iter().collect();
        assert_eq!(vary, vec!["Accept-Encoding, Origin"]);
        assert_eq!(up.requests(), 1);
    }
}
