//! End-to-end tests of `load_str` and `load_file`: text in, `Snapshot` or every problem out.
//!
//! Tests that compile routes go through `Router::build`; the rule-by-rule tests sit beside
//! each rule in `compile/`.

use std::path::Path;

use super::*;

fn load(text: &str) -> Result<Snapshot, ConfigError> {
    load_str(text, "test.toml")
}

fn bundled(relative: &str) -> Snapshot {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    match load_file(&path) {
        Ok(snapshot) => snapshot,
        Err(err) => panic!("{relative} does not load:\n{err}"),
    }
}

#[test]
fn loads_the_bundled_config() {
    let s = bundled("config/ringgate.toml");
    assert_eq!(
        s.server.listen,
        vec!["127.0.0.1:8080".parse().expect("literal")]
    );
    assert_eq!(s.server.workers, WorkerCount::Auto);
    assert!(
        s.upstreams.is_empty(),
        "the bundled config must run with no backend"
    );
    assert!(!s.router.is_empty());
}

#[test]
fn loads_the_proxy_example() {
    let s = bundled("config/examples/proxy.toml");
    assert_eq!(s.upstreams.len(), 2);
    assert!(s.router.len() >= 4);
}

#[test]
fn loads_the_access_control_example() {
    let s = bundled("config/examples/auth.toml");
    assert_eq!(s.server.trusted_proxies.len(), 1);
    assert!(s.router.len() >= 2);
}

#[test]
fn loads_the_bff_example() {
    let s = bundled("config/examples/bff.toml");
    assert_eq!(s.upstreams.len(), 4);
    assert_eq!(s.router.len(), 2);
}

#[test]
fn loads_an_empty_file_with_defaults() {
    let s = load("").expect("an empty file is valid");
    assert_eq!(
        s.server.listen,
        vec!["127.0.0.1:8080".parse().expect("literal")]
    );
    assert!(s.router.is_empty() && s.upstreams.is_empty());
}

#[test]
fn resolves_a_route_to_its_upstream_index() {
    let s = load(
        "[[upstreams]]\nname = \"a\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n\
         [[upstreams]]\nname = \"b\"\ntargets = [{ addr = \"127.0.0.1:2\" }]\n\
         [[routes]]\nname = \"r\"\nupstream = \"b\"\n",
    )
    .expect("valid");
    assert_eq!(s.upstream(UpstreamId(1)).name, "b");
}

#[test]
fn compiles_a_template_rewrite() {
    load(
        "[[upstreams]]\nname = \"a\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n\
         [[routes]]\nname = \"r\"\nmatch = { path = \"/users/{id}\" }\nupstream = \"a\"\n\
         rewrite = \"/internal/{id}\"\n",
    )
    .expect("valid");
}

#[test]
fn reports_a_rewrite_naming_an_unknown_parameter_with_its_line() {
    let err = load(
        "[[upstreams]]\nname = \"a\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n\
         [[routes]]\nname = \"r\"\nmatch = { path = \"/users/{id}\" }\nupstream = \"a\"\n\
         rewrite = \"/internal/{nope}\"\n",
    )
    .expect_err("unknown parameter");
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].key, "routes[0].rewrite");
    assert_eq!(err.problems[0].line, Some(8));
}

#[test]
fn reports_router_errors_at_their_route() {
    // A path must start with `/`: the router's rule, reported at the route's line.
    let err = load(
        "[[routes]]\nname = \"ok\"\nrespond = { status = 200 }\n\
         [[routes]]\nname = \"bad\"\nmatch = { path_prefix = \"nope\" }\nrespond = { status = 200 }\n",
    )
    .expect_err("relative path");
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].key, "routes[1].match.path_prefix", "{err}");
    assert_eq!(err.problems[0].line, Some(6));
}

#[test]
fn reports_router_errors_on_a_good_route_after_a_bad_one_at_its_own_index() {
    // Route 0 fails the file rules and is left out of the router build; the router's error
    // on the next route must still name routes[1].
    let err = load(
        "[[routes]]\nname = \"a\"\n\n[[routes]]\nname = \"b\"\n\
         match = { host = \"a:80\" }\nrespond = { status = 200 }\n",
    )
    .expect_err("two problems");
    let keys: Vec<_> = err
        .problems
        .iter()
        .map(|p| (p.key.as_str(), p.line))
        .collect();
    assert_eq!(
        keys,
        [("routes[0]", Some(2)), ("routes[1].match.host", Some(6))]
    );
}

#[test]
fn rejects_an_unknown_top_level_table_with_its_line() {
    let err = load("[server]\nworkers = 2\n\n[tls]\ncert = \"x.pem\"\n")
        .expect_err("[tls] is not implemented");
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.problems[0].key, "tls");
    assert_eq!(err.problems[0].line, Some(4));
}

#[test]
fn rejects_an_unknown_key_with_its_path_and_line() {
    let err = load("[server]\nworkers = 2\nthreads = 4\n").expect_err("unknown key");
    assert_eq!(err.problems[0].key, "server.threads");
    assert_eq!(err.problems[0].line, Some(3));
}

#[test]
fn reports_a_bad_duration_with_its_key_and_line() {
    let err = load("[server.timeouts]\nhead_read = \"10 seconds\"\n").expect_err("bad duration");
    assert_eq!(err.problems[0].key, "server.timeouts.head_read");
    assert_eq!(err.problems[0].line, Some(2));
    assert!(err.problems[0].message.contains("10 seconds"), "{err}");
}

#[test]
fn collects_every_problem_and_prints_one_per_line() {
    let err = load(
        "[server]\nworkers = 0\n\n[[routes]]\nname = \"r\"\nupstream = \"ghost\"\n\
         [[routes]]\nname = \"r\"\nrespond = { status = 700 }\n",
    )
    .expect_err("several problems");
    let printed = err.to_string();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 4, "{printed}");
    assert!(
        lines[0].starts_with("test.toml:2: server.workers: "),
        "{printed}"
    );
    assert!(lines[1].starts_with("test.toml:6: routes[0].upstream: unknown upstream `ghost`"));
    assert!(lines[2].starts_with("test.toml:8: routes[1].name: duplicate route name"));
    assert!(
        lines[3].starts_with("test.toml:9: routes[1].respond.status: "),
        "{printed}"
    );
}

#[test]
fn reports_an_unreadable_file_without_a_line() {
    let err = load_file(Path::new("/nonexistent/ringgate.toml")).expect_err("missing file");
    assert_eq!(err.problems[0].line, None);
    assert!(err
        .to_string()
        .starts_with("/nonexistent/ringgate.toml: cannot read the file"));
}
