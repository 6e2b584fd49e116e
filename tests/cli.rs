//! The `ringgate` binary: `--version`, `--check` on valid and invalid files, and a real run
//! on a port-0 config (readiness by reading its log, a request, SIGTERM/SIGINT, exit
//! status 0).
mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::client;
use common::gateway::GatewayConfig;
use common::upstream::{Echoed, Upstream};

use common::process::{temp_config, Ringgate};

fn check(path: &PathBuf) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .arg("--check")
        .arg("--config")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ringgate --check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in config")
        + 1
}

#[test]
fn check_accepts_a_valid_config() {
    let up = Upstream::echo("echo");
    let text = GatewayConfig::new("legacy")
        .upstream("echo", &[up.addr()])
        .route_all_to("echo")
        .render();
    let path = temp_config(&text);
    let (ok, output) = check(&path);
    assert!(
        ok,
        "--check rejected a valid config:\n{output}\n--- config ---\n{text}"
    );
    assert!(
        output.to_ascii_lowercase().contains("ok"),
        "--check should say the config is ok: {output:?}"
    );
}

#[test]
fn check_reports_every_problem_with_file_line_and_key() {
    let up = Upstream::echo("echo");
    let text = GatewayConfig::new("legacy")
        .upstream("echo", &[up.addr()])
        .routes(
            r#"
[[routes]]
name = "first"
match = { path_prefix = "/a" }
upstream = "missing-one"

[[routes]]
name = "second"
match = { path_prefix = "/b" }
upstream = "missing-two"
"#,
        )
        .render();
    let path = temp_config(&text);
    let (ok, output) = check(&path);
    assert!(
        !ok,
        "--check accepted a config with unknown upstreams:\n{output}"
    );
    let origin = path.display().to_string();
    for (index, name) in [(0, "missing-one"), (1, "missing-two")] {
        let expected = format!(
            "{origin}:{}: routes[{index}].upstream: ",
            line_of(&text, name)
        );
        assert!(
            output.contains(&expected),
            "expected {expected:?} in:\n{output}\n--- config ---\n{text}"
        );
    }
}

#[test]
fn check_reports_an_unknown_key_with_its_line() {
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\nworkerz = 2\n";
    let path = temp_config(text);
    let (ok, output) = check(&path);
    assert!(!ok, "--check accepted an unknown key:\n{output}");
    let origin = path.display().to_string();
    assert!(
        output.contains(&format!("{origin}:3: ")),
        "expected the file and line 3 in:\n{output}"
    );
    assert!(
        output.contains("workerz"),
        "expected the unknown key in:\n{output}"
    );
}

/// A JWKS URL is not fetched by `--check`: the issuer here accepts connections but never
/// answers, so a check that fetched would hang for the fetch timeout, and one that started the
/// background fetcher would leave a connection in the issuer's queue.
#[test]
fn check_does_not_fetch_a_jwks_url() {
    let issuer = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut text = GatewayConfig::new("legacy")
        .routes(
            "[[routes]]\nname = \"r\"\npolicies = [\"j\"]\n\
             respond = { status = 200, body = \"ok\" }",
        )
        .render();
    text.push_str(&format!(
        "\n[policies.j]\nkind = \"jwt\"\nalgorithms = [\"RS256\"]\njwks_url = \"http://{}/jwks\"\n",
        issuer.local_addr().expect("addr")
    ));
    let path = temp_config(&text);
    let started = std::time::Instant::now();
    let (ok, output) = check(&path);
    assert!(
        ok,
        "--check rejected the config:\n{output}\n--- config ---\n{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "--check took {:?}",
        started.elapsed()
    );
    issuer.set_nonblocking(true).expect("nonblocking");
    match issuer.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("--check connected to the JWKS URL: {other:?}"),
    }
}

#[test]
fn check_on_a_missing_file_fails() {
    let path = std::env::temp_dir().join("ringgate-test-does-not-exist.toml");
    let (ok, output) = check(&path);
    assert!(!ok, "--check accepted a missing file:\n{output}");
}

#[test]
fn version_names_the_commit_the_binary_was_built_from() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .arg("--version")
        .output()
        .expect("run ringgate --version");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let expected = match Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
    {
        Ok(git) if git.status.success() => String::from_utf8_lossy(&git.stdout).trim().to_owned(),
        _ => "unknown".to_owned(),
    };
    assert_eq!(
        text,
        format!("ringgate {} ({expected})", env!("CARGO_PKG_VERSION"))
    );
}

driver_tests! {
    fn binary_serves_and_exits_0_on_sigterm(driver: &str) {
        let up = Upstream::echo("echo");
        let text = GatewayConfig::new(driver)
            .upstream("echo", &[up.addr()])
            .route_all_to("echo")
            .render();
        let mut gw = Ringgate::spawn(&text, &[]);
        let r = client::get(&format!("http://{}/via/binary", gw.addr()));
        assert_eq!(r.status, 200);
        assert_eq!(Echoed::parse(&r.text()).target, "/via/binary");
        let status = gw.signal_and_wait("TERM", Duration::from_secs(15));
        assert!(status.success(), "exit status after SIGTERM: {status:?}\n{}", gw.log());
    }

    fn binary_exits_0_on_sigint(driver: &str) {
        let text = GatewayConfig::new(driver)
            .routes(r#"
                [[routes]]
                name = "health"
                match = { path_exact = "/health" }
                respond = { status = 200, body = "ok\n" }
            "#)
            .render();
        let mut gw = Ringgate::spawn(&text, &[]);
        assert_eq!(client::get(&format!("http://{}/health", gw.addr())).text(), "ok\n");
        let status = gw.signal_and_wait("INT", Duration::from_secs(15));
        assert!(status.success(), "exit status after SIGINT: {status:?}\n{}", gw.log());
    }

    fn binary_workers_flag_overrides_config(driver: &str) {
        let text = GatewayConfig::new(driver)
            .workers(1)
            .routes(r#"
                [[routes]]
                name = "health"
                match = { path_exact = "/health" }
                respond = { status = 200, body = "ok\n" }
            "#)
            .render();
        let mut gw = Ringgate::spawn(&text, &["--workers", "3"]);
        for _ in 0..3 {
            assert_eq!(client::get(&format!("http://{}/health", gw.addr())).status, 200);
        }
        let threads = gw.proc_status("Threads");
        assert!(threads >= 4, "--workers 3: {threads} threads (main + 3 workers expected)\n{}", gw.log());
        let status = gw.signal_and_wait("TERM", Duration::from_secs(15));
        assert!(status.success(), "{status:?}\n{}", gw.log());
    }
}

/// The binary allocates with jemalloc under the options compiled into it (src/main.rs): its
/// background thread, which returns freed memory, runs, and jemalloc found no option to
/// complain about (it writes `<jemalloc>: ...` to stderr for an invalid one).
#[test]
fn binary_runs_on_jemalloc_with_its_background_thread() {
    let text = GatewayConfig::new("legacy")
        .routes(
            r#"
            [[routes]]
            name = "health"
            match = { path_exact = "/health" }
            respond = { status = 200, body = "ok\n" }
        "#,
        )
        .render();
    let mut gw = Ringgate::spawn(&text, &[]);
    assert_eq!(
        client::get(&format!("http://{}/health", gw.addr())).status,
        200
    );
    let tasks = std::fs::read_dir(format!("/proc/{}/task", gw.pid())).expect("/proc/PID/task");
    let names: Vec<String> = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    assert!(
        names.iter().any(|name| name.starts_with("jemalloc_bg")),
        "no jemalloc background thread among {names:?}"
    );
    let status = gw.signal_and_wait("TERM", Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", gw.log());
    assert!(
        !gw.log().contains("<jemalloc>"),
        "jemalloc complained:\n{}",
        gw.log()
    );
}
