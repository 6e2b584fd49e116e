//! Route matching through the running gateway: hosts, paths, methods, headers, specificity,
//! declaration order, prefix stripping, rewrites, 404, and path normalization.
mod common;

use common::client::{self, Raw};
use common::gateway::{Gateway, GatewayConfig};
use common::upstream::{Echoed, Upstream};

/// A route that answers 200 with its own name as the body.
fn named(name: &str, matcher: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\nmatch = {matcher}\nrespond = {{ status = 200, body = \"{name}\" }}\n"
    )
}

/// Which route answered `method target` with this Host (raw socket: the target goes out
/// exactly as written). Returns (status, body).
fn ask(gw: &Gateway, method: &str, target: &str, host: &str, extra: &str) -> (u16, String) {
    let mut raw = Raw::connect(gw.addr());
    raw.send(format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    ));
    let r = raw.read_response_to(method);
    (r.status, r.text())
}

fn route_of(gw: &Gateway, target: &str, host: &str) -> String {
    let (status, body) = ask(gw, "GET", target, host, "");
    assert_eq!(
        status, 200,
        "GET {target} (Host {host}) answered {status}: {body}"
    );
    body
}

driver_tests! {
    fn host_exact_beats_wildcard_beats_any(driver: &str) {
        let gw = GatewayConfig::new(driver)
            .routes(&named("any", r#"{ path_prefix = "/" }"#))
            .routes(&named("wild", r#"{ host = "*.example.com", path_prefix = "/" }"#))
            .routes(&named("exact", r#"{ host = "api.example.com", path_prefix = "/" }"#))
            .start();
        assert_eq!(route_of(&gw, "/", "api.example.com"), "exact");
        assert_eq!(route_of(&gw, "/", "API.Example.COM"), "exact", "host match is case-insensitive");
        assert_eq!(route_of(&gw, "/", "api.example.com:8080"), "exact", "port is ignored");
        assert_eq!(route_of(&gw, "/", "www.example.com"), "wild");
        assert_eq!(route_of(&gw, "/", "example.com"), "any", "*.example.com needs a label before the suffix");
        assert_eq!(route_of(&gw, "/", "other.org"), "any");
        assert_eq!(route_of(&gw, "/", "evilexample.com"), "any");
    }

    fn unmatched_host_without_fallback_is_404(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(r#"
                [[routes]]
                name = "api"
                match = { host = "api.example.com", path_prefix = "/" }
                upstream = "echo"
            "#)
            .start();
        let (status, _) = ask(&gw, "GET", "/", "other.example.com", "");
        assert_eq!(status, 404);
        assert_eq!(ask(&gw, "GET", "/", "api.example.com", "").0, 200);
        assert_eq!(up.requests(), 1);
    }

    fn exact_prefix_and_template_paths(driver: &str) {
        let gw = GatewayConfig::new(driver)
            .routes(&named("root", r#"{ path_prefix = "/" }"#))
            .routes(&named("users-prefix", r#"{ path_prefix = "/users" }"#))
            .routes(&named("users-exact", r#"{ path_exact = "/users" }"#))
            .routes(&named("user-posts", r#"{ path = "/users/{id}/posts" }"#))
            .routes(&named("files", r#"{ path = "/files/{id}/*" }"#))
            .start();
        assert_eq!(route_of(&gw, "/users", "a"), "users-exact");
        assert_eq!(route_of(&gw, "/users/", "a"), "users-prefix");
        assert_eq!(route_of(&gw, "/users/list", "a"), "users-prefix");
        assert_eq!(route_of(&gw, "/users/42/posts", "a"), "user-posts");
        assert_eq!(route_of(&gw, "/users/42/posts?page=2", "a"), "user-posts", "query is not part of the path");
        assert_eq!(route_of(&gw, "/users/42/posts/7", "a"), "users-prefix", "template without * ends there");
        assert_eq!(route_of(&gw, "/usersx", "a"), "root", "prefixes are segment-aware");
        assert_eq!(route_of(&gw, "/files/9/a/b.txt", "a"), "files");
        assert_eq!(route_of(&gw, "/other", "a"), "root");
    }

    fn methods_condition(driver: &str) {
        let gw = GatewayConfig::new(driver)
            .routes(&named("any-method", r#"{ path_prefix = "/m" }"#))
            .routes(&named("reads", r#"{ path_prefix = "/m", methods = ["GET", "HEAD"] }"#))
            .routes(&named("only-delete", r#"{ path_prefix = "/d", methods = ["DELETE"] }"#))
            .start();
        assert_eq!(ask(&gw, "GET", "/m", "a", "").1, "reads");
        assert_eq!(ask(&gw, "POST", "/m", "a", "Content-Length: 0\r\n").1, "any-method");
        assert_eq!(ask(&gw, "HEAD", "/m", "a", "").0, 200);
        assert_eq!(ask(&gw, "DELETE", "/d", "a", "").1, "only-delete");
        let (status, _) = ask(&gw, "GET", "/d", "a", "");
        assert!(status == 404 || status == 405, "method mismatch answered {status}");
    }

    fn headers_condition(driver: &str) {
        let gw = GatewayConfig::new(driver)
            .routes(&named("v1", r#"{ path_prefix = "/api" }"#))
            .routes(&named("v2", r#"{ path_prefix = "/api", headers = { "x-version" = "2" } }"#))
            .start();
        assert_eq!(ask(&gw, "GET", "/api/x", "a", "X-Version: 2\r\n").1, "v2");
        assert_eq!(ask(&gw, "GET", "/api/x", "a", "x-version: 2\r\n").1, "v2", "header names are case-insensitive");
        assert_eq!(ask(&gw, "GET", "/api/x", "a", "X-Version: 3\r\n").1, "v1");
        assert_eq!(ask(&gw, "GET", "/api/x", "a", "").1, "v1");
    }

    fn most_specific_wins_regardless_of_order(driver: &str) {
        let gw = GatewayConfig::new(driver)
            .routes(&named("short", r#"{ path_prefix = "/a" }"#))
            .routes(&named("long", r#"{ path_prefix = "/a/b" }"#))
            .routes(&named("longest-exact", r#"{ path_exact = "/a/b/c" }"#))
            .start();
        assert_eq!(route_of(&gw, "/a/x", "h"), "short");
        assert_eq!(route_of(&gw, "/a/b/x", "h"), "long");
        assert_eq!(route_of(&gw, "/a/b/c", "h"), "longest-exact");
        assert_eq!(route_of(&gw, "/a/b/c/d", "h"), "long");
    }

    fn ties_go_to_the_first_declared(driver: &str) {
        let gw = GatewayConfig::new(driver)
            .routes(&named("first", r#"{ path_prefix = "/t" }"#))
            .routes(&named("second", r#"{ path_prefix = "/t" }"#))
            .start();
        for _ in 0..3 {
            assert_eq!(route_of(&gw, "/t/x", "h"), "first");
        }
    }

    fn no_matching_route_is_404(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(r#"
                [[routes]]
                name = "api"
                match = { path_prefix = "/api" }
                upstream = "echo"
            "#)
            .start();
        let r = client::get(&gw.url("/nothing/here"));
        assert_eq!(r.status, 404);
        assert_eq!(up.requests(), 0);
    }

    fn strip_prefix_is_applied(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(r#"
                [[routes]]
                name = "api"
                match = { path_prefix = "/api" }
                upstream = "echo"
                strip_prefix = "/api"
            "#)
            .start();
        let target = |path: &str| Echoed::parse(&client::get(&gw.url(path)).text()).target;
        assert_eq!(target("/api/users?x=1"), "/users?x=1");
        assert_eq!(target("/api/users/7"), "/users/7");
        assert_eq!(target("/api"), "/");
        assert_eq!(target("/api/"), "/");
    }

    fn template_rewrite_is_applied(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(r#"
                [[routes]]
                name = "user"
                match = { path = "/users/{id}/profile" }
                upstream = "echo"
                rewrite = "/internal/{id}"

                [[routes]]
                name = "files"
                match = { path = "/files/{id}/*" }
                upstream = "echo"
                rewrite = "/blob/{id}/{*}"
            "#)
            .start();
        let target = |path: &str| Echoed::parse(&client::get(&gw.url(path)).text()).target;
        assert_eq!(target("/users/42/profile"), "/internal/42");
        assert_eq!(target("/users/42/profile?full=1"), "/internal/42?full=1");
        assert_eq!(target("/files/9/a/b.txt"), "/blob/9/a/b.txt");
    }

    fn combined_host_path_method_header_route(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(r#"
                [[routes]]
                name = "api"
                match = { host = "api.example.com", path_prefix = "/api", methods = ["GET"], headers = { "x-version" = "2" } }
                upstream = "echo"
                strip_prefix = "/api"
                host_rewrite = "backend.internal"
            "#)
            .routes(&named("fallback", r#"{ path_prefix = "/" }"#))
            .start();
        let r = client::call(
            client::agent()
                .get(&gw.url("/api/v/1"))
                .set("Host", "api.example.com")
                .set("X-Version", "2"),
        );
        let e = Echoed::parse(&r.text());
        assert_eq!(e.target, "/v/1");
        assert_eq!(e.header("host"), Some("backend.internal"));
        assert_eq!(ask(&gw, "GET", "/api/v/1", "api.example.com", "").1, "fallback");
        assert_eq!(ask(&gw, "GET", "/api/v/1", "www.example.com", "X-Version: 2\r\n").1, "fallback");
        assert_eq!(ask(&gw, "DELETE", "/api/v/1", "api.example.com", "X-Version: 2\r\n").1, "fallback");
        assert_eq!(up.requests(), 1);
    }

    fn normalization_cannot_reach_a_route_the_normalized_path_would_not(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .routes(&named("admin", r#"{ path_prefix = "/admin" }"#))
            .routes(r#"
                [[routes]]
                name = "public"
                match = { path_prefix = "/public" }
                upstream = "echo"
            "#)
            .routes(&named("a-b", r#"{ path_exact = "/a/b" }"#))
            .start();
        // Dot segments resolve before matching: these are /public, not /admin.
        for target in ["/admin/../public", "/admin/%2e%2e/public", "/admin/%2E%2E/public/x"] {
            let r = ask(&gw, "GET", target, "h", "");
            assert_eq!(r.0, 200, "{target}");
            let e = Echoed::parse(&r.1);
            assert!(e.target.starts_with("/public"), "{target} forwarded as {}", e.target);
        }
        // And these are /admin, never the public route (nor its upstream).
        let before = up.requests();
        for target in ["/public/../admin", "/public/%2e%2e/admin", "/public/.%2e/admin", "/%2e%2e/admin", "/../admin", "/public/./../admin"] {
            let (status, body) = ask(&gw, "GET", target, "h", "");
            assert_eq!((status, body.as_str()), (200, "admin"), "{target}");
        }
        assert_eq!(up.requests(), before, "a path that normalizes to /admin reached the public upstream");
        assert_eq!(route_of(&gw, "//a//b", "h"), "a-b");
        assert_eq!(route_of(&gw, "/a/./b", "h"), "a-b");
    }

    fn forwarded_path_is_the_normalized_one(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let (status, body) = ask(&gw, "GET", "/x//y/./z/../w?q=a/../b", "h", "");
        assert_eq!(status, 200);
        assert_eq!(Echoed::parse(&body).target, "/x/y/w?q=a/../b", "upstream must see the path that was matched");
    }

    fn percent_encoded_nul_is_400(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .start();
        let (status, _) = ask(&gw, "GET", "/a%00b", "h", "");
        assert_eq!(status, 400);
        assert_eq!(up.requests(), 0);
    }
}
