//! The access log through the binary: one line per request with the documented fields, in
//! both formats, written to a file; SIGUSR1 reopens the file at its path (logrotate).
//!
//! Lines reach the file in batches (at most every 100 ms), so the tests poll the file until
//! the expected number of lines is there, bounded by a deadline.
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::client;
use common::process::Ringgate;
use common::upstream::Upstream;
use common::IO_TIMEOUT;

fn config(driver: &str, upstream: SocketAddr, format: &str, path: &Path) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
workers = 2
pin_workers = false
driver = "{driver}"

[access_log]
format = "{format}"
path = "{}"

[[upstreams]]
name = "echo"
targets = [ {{ addr = "{upstream}" }} ]

[[routes]]
name = "hello"
match = {{ path_exact = "/hello" }}
respond = {{ status = 200, body = "hi" }}

[[routes]]
name = "api"
upstream = "echo"
"#,
        path.display()
    )
}

/// A fresh, empty directory for one test's log files.
fn temp_dir(name: &str, driver: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringgate-accesslog-{name}-{driver}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Re-reads `path` until it holds at least `n` lines (bounded by `IO_TIMEOUT`); returns them.
fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} of {n} lines after {IO_TIMEOUT:?}:\n{text}",
            path.display(),
            lines.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Sends `n` requests to each of `/hello` and `/api/item?q=1`, each with its own request id.
fn send_requests(gw: &Ringgate, tag: &str, n: usize) {
    let agent = client::agent();
    for i in 0..n {
        for path in ["/hello", "/api/item?q=1"] {
            let url = format!("http://{}{path}", gw.addr());
            let reply = client::call(agent.get(&url).set("x-request-id", &format!("{tag}-{i}")));
            assert_eq!(reply.status, 200);
        }
    }
}

/// The value after `key` up to the next `"` (JSON strings) or `,`/`}` (other values).
fn json_field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len()
        + 3;
    let rest = &line[start..];
    if let Some(string) = rest.strip_prefix('"') {
        &string[..string.find('"').expect("closing quote")]
    } else {
        &rest[..rest.find([',', '}']).expect("value end")]
    }
}

fn is_trace_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

driver_tests! {
    fn json_lines_carry_every_field(driver: &str) {
        let up = Upstream::echo("echo");
        let dir = temp_dir("json", driver);
        let path = dir.join("access.log");
        let gw = Ringgate::spawn(&config(driver, up.addr(), "json", &path), &[]);
        send_requests(&gw, "j", 10);
        let lines = wait_for_lines(&path, 20);
        assert_eq!(lines.len(), 20);
        let upstream = up.addr().to_string();
        for line in &lines {
            assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
            let time = json_field(line, "time");
            assert_eq!(time.len(), 24, "{time}");
            assert!(time.ends_with('Z') && &time[10..11] == "T" && &time[19..20] == ".");
            assert!(json_field(line, "request_id").starts_with("j-"), "{line}");
            assert!(json_field(line, "client").starts_with("127.0.0.1:"), "{line}");
            assert_eq!(json_field(line, "method"), "GET");
            assert_eq!(json_field(line, "status"), "200");
            assert!(json_field(line, "bytes_in").parse::<u64>().expect("bytes_in") > 0);
            assert!(json_field(line, "bytes_out").parse::<u64>().expect("bytes_out") > 0);
            assert!(json_field(line, "duration_ms").parse::<f64>().is_ok(), "{line}");
            assert!(is_trace_id(json_field(line, "trace_id")), "{line}");
            let worker: usize = json_field(line, "worker").parse().expect("worker");
            assert!(worker < 2);
            match json_field(line, "route") {
                "hello" => {
                    assert_eq!(json_field(line, "path"), "/hello");
                    assert_eq!(json_field(line, "upstream_ms"), "null");
                    assert_eq!(json_field(line, "upstream_addr"), "-");
                    assert_eq!(json_field(line, "upstream"), "");
                }
                "api" => {
                    assert_eq!(json_field(line, "path"), "/api/item?q=1");
                    assert!(json_field(line, "upstream_ms").parse::<f64>().is_ok(), "{line}");
                    assert_eq!(json_field(line, "upstream_addr"), upstream);
                    assert_eq!(json_field(line, "upstream"), "echo");
                }
                other => panic!("unexpected route {other}: {line}"),
            }
        }
        let ids: std::collections::HashSet<&str> =
            lines.iter().map(|l| json_field(l, "request_id")).collect();
        assert_eq!(ids.len(), 10, "two lines per request id");
        drop(gw);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn combined_lines_follow_the_layout(driver: &str) {
        let up = Upstream::echo("echo");
        let dir = temp_dir("combined", driver);
        let path = dir.join("access.log");
        let gw = Ringgate::spawn(&config(driver, up.addr(), "combined", &path), &[]);
        send_requests(&gw, "c", 5);
        let lines = wait_for_lines(&path, 10);
        assert_eq!(lines.len(), 10);
        let upstream = format!(" upstream_addr={} ", up.addr());
        for line in &lines {
            assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
            assert!(line.contains(" +0000] \"GET /"), "{line}");
            assert!(line.contains(" HTTP/1.1\" 200 "), "{line}");
            assert!(line.contains(" request_id=\"c-"), "{line}");
            assert!(line.contains(" duration_ms="), "{line}");
            let trace = line.rsplit(" trace_id=").next().expect("trace id");
            assert!(is_trace_id(trace), "{line}");
            if line.contains("\"GET /hello HTTP/1.1\"") {
                assert!(line.contains(" upstream_ms=- route=\"hello\" upstream_addr=- "), "{line}");
            } else {
                assert!(line.contains("\"GET /api/item?q=1 HTTP/1.1\""), "{line}");
                assert!(line.contains(" route=\"api\""), "{line}");
                assert!(line.contains(&upstream), "{line}");
                assert!(line.contains(" upstream=\"echo\" "), "{line}");
            }
        }
        drop(gw);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn sigusr1_reopens_the_file(driver: &str) {
        let up = Upstream::echo("echo");
        let dir = temp_dir("reopen", driver);
        let path = dir.join("access.log");
        let rotated = dir.join("access.log.1");
        let gw = Ringgate::spawn(&config(driver, up.addr(), "json", &path), &[]);
        send_requests(&gw, "before", 3);
        wait_for_lines(&path, 6);
        std::fs::rename(&path, &rotated).expect("rotate");
        gw.signal("USR1");
        gw.wait_for_line("access log reopened");
        send_requests(&gw, "after", 2);
        let fresh = wait_for_lines(&path, 4);
        assert_eq!(fresh.len(), 4);
        assert!(fresh.iter().all(|l| json_field(l, "request_id").starts_with("after-")));
        let old = std::fs::read_to_string(&rotated).expect("rotated file");
        assert_eq!(old.lines().count(), 6);
        assert!(old.lines().all(|l| json_field(l, "request_id").starts_with("before-")));
        drop(gw);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
