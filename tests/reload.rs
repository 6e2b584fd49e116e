//! Hot reload through the binary: SIGHUP re-reads the config file and swaps it in while
//! traffic runs. Requests never fail, routes switch over, memory does not grow, and an
//! invalid file is refused as a whole while the running configuration keeps serving.
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use common::client;
use common::process::Ringgate;
use common::upstream::Upstream;

/// A config whose `/version` route answers `version` and whose other paths go upstream.
fn config(driver: &str, upstream: std::net::SocketAddr, version: usize) -> String {
    config_listening(driver, upstream, version, r#""127.0.0.1:0""#)
}

/// [`config`] with `listen` (the inside of the TOML array) given.
fn config_listening(
    driver: &str,
    upstream: std::net::SocketAddr,
    version: usize,
    listen: &str,
) -> String {
    format!(
        r#"
[server]
listen = [{listen}]
workers = 2
pin_workers = false
driver = "{driver}"

[[upstreams]]
name = "echo"
targets = [ {{ addr = "{upstream}" }} ]

[[routes]]
name = "version"
match = {{ path_exact = "/version" }}
respond = {{ status = 200, body = "v{version}" }}

[[routes]]
name = "api"
upstream = "echo"
"#
    )
}

/// Runs keep-alive clients until `stop`, counting requests and failures (anything but 200).
fn traffic(base: String, stop: Arc<AtomicBool>, sent: Arc<AtomicUsize>, failed: Arc<AtomicUsize>) {
    let agent = client::agent();
    while !stop.load(Ordering::Relaxed) {
        for path in ["/version", "/api/thing"] {
            let reply = client::call(agent.get(&format!("{base}{path}")));
            sent.fetch_add(1, Ordering::Relaxed);
            if reply.status != 200 {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

driver_tests! {
    fn hundred_reloads_under_traffic_lose_no_request(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = Ringgate::spawn(&config(driver, up.addr(), 0), &[]);
        let base = format!("http://{}", gw.addr());
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..2)
            .map(|_| {
                let (base, stop, sent, failed) =
                    (base.clone(), stop.clone(), sent.clone(), failed.clone());
                thread::spawn(move || traffic(base, stop, sent, failed))
            })
            .collect();
        // Warm up so the memory baseline includes pools and buffers.
        for version in 1..=5 {
            std::fs::write(gw.config_path(), config(driver, up.addr(), version)).expect("write");
            gw.signal("HUP");
            gw.wait_for_line("configuration reloaded");
        }
        let rss_before = gw.proc_status("VmRSS");
        for version in 6..=105 {
            std::fs::write(gw.config_path(), config(driver, up.addr(), version)).expect("write");
            gw.signal("HUP");
            gw.wait_for_line("configuration reloaded");
        }
        let rss_after = gw.proc_status("VmRSS");
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().expect("client thread");
        }
        assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests during reloads");
        assert!(sent.load(Ordering::Relaxed) > 100, "too little traffic to prove anything");
        assert_eq!(client::get(&format!("{base}/version")).body, b"v105");
        assert!(
            rss_after <= rss_before + 2048,
            "RSS grew from {rss_before} KiB to {rss_after} KiB over 100 reloads"
        );
    }

    fn invalid_reload_keeps_the_running_configuration(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = Ringgate::spawn(&config(driver, up.addr(), 1), &[]);
        let base = format!("http://{}", gw.addr());
        let broken = config(driver, up.addr(), 2).replace("[[routes]]\nname = \"api\"", "[[routes]]\nname = \"api\"\ncolour = \"red\"");
        let line = broken.lines().position(|l| l.starts_with("colour")).expect("broken key") + 1;
        std::fs::write(gw.config_path(), &broken).expect("write");
        gw.signal("HUP");
        gw.wait_for_line("reload refused");
        let problem = gw.wait_for_line("colour");
        assert!(
            problem.contains(&format!(":{line}: routes[1].colour")),
            "problem does not name the key and its line {line}: {problem}"
        );
        assert_eq!(client::get(&format!("{base}/version")).body, b"v1");
        assert_eq!(client::get(&format!("{base}/api/x")).status, 200);
        // A valid file afterwards is taken.
        std::fs::write(gw.config_path(), config(driver, up.addr(), 3)).expect("write");
        gw.signal("HUP");
        gw.wait_for_line("configuration reloaded");
        assert_eq!(client::get(&format!("{base}/version")).body, b"v3");
    }

    fn watched_config_file_reloads_on_change(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = Ringgate::spawn(&config(driver, up.addr(), 1), &["--watch-config"]);
        let base = format!("http://{}", gw.addr());
        assert_eq!(client::get(&format!("{base}/version")).body, b"v1");
        std::fs::write(gw.config_path(), config(driver, up.addr(), 2)).expect("write");
        gw.wait_for_line("configuration reloaded");
        assert_eq!(client::get(&format!("{base}/version")).body, b"v2");
    }

    fn listeners_follow_reloads(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = Ringgate::spawn(&config(driver, up.addr(), 1), &[]);
        let first = gw.addr();
        // A keep-alive connection accepted on the first listener, before any reload.
        let mut kept = common::client::Raw::connect(first);
        kept.send(client::get_req("/version"));
        assert_eq!(kept.read_response().status, 200);

        // Add a listener on another loopback address.
        let both = r#""127.0.0.1:0", "127.0.0.2:0""#;
        std::fs::write(gw.config_path(), config_listening(driver, up.addr(), 2, both)).expect("write");
        gw.signal("HUP");
        let line = gw.wait_for_line("listening on 127.0.0.2:");
        let second: std::net::SocketAddr = line
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in `{line}`"));
        gw.wait_for_line("configuration reloaded");
        assert_eq!(client::get(&format!("http://{second}/version")).body, b"v2");
        assert_eq!(client::get(&format!("http://{first}/version")).body, b"v2");

        // Remove the first listener: new connections are refused, the kept one still serves.
        let only_second = r#""127.0.0.2:0""#;
        std::fs::write(gw.config_path(), config_listening(driver, up.addr(), 3, only_second)).expect("write");
        gw.signal("HUP");
        gw.wait_for_line(&format!("stopped listening on {first}"));
        gw.wait_for_line("configuration reloaded");
        let deadline = std::time::Instant::now() + common::IO_TIMEOUT;
        // Each worker stops its own socket when it reads the command: wait until all did.
        loop {
            match std::net::TcpStream::connect(first) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("connect to the removed listener: {e}"),
                Ok(_) => assert!(std::time::Instant::now() < deadline, "removed listener still accepts"),
            }
        }
        assert_eq!(client::get(&format!("http://{second}/version")).body, b"v3");
        kept.send(client::get_req("/version"));
        let r = kept.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "v3");
    }
}
