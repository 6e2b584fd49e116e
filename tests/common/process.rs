//! The `ringgate` binary as a child process: a config written to a temp file, readiness by
//! reading its log for `listening on`, signals, bounded waits, and /proc readings.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::IO_TIMEOUT;

/// Writes `text` to a fresh file in the temp dir and returns its path.
pub fn temp_config(text: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("ringgate-test-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write temp config");
    path
}

/// A running `ringgate --config FILE` process. Dropping it kills it.
pub struct Ringgate {
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    config: PathBuf,
    /// Log lines not yet consumed by [`Ringgate::wait_for_line`].
    lines: mpsc::Receiver<String>,
}

impl Ringgate {
    /// Starts the binary on `config_text` (plus `extra_args`) and waits until it logged
    /// `listening on 127.0.0.1:PORT`; panics with its log if it exits or stays silent.
    pub fn spawn(config_text: &str, extra_args: &[&str]) -> Ringgate {
        Self::spawn_with_env(config_text, extra_args, &[])
    }

    /// Like [`Ringgate::spawn`], with these environment variables: `(name, Some(value))` sets
    /// one, `(name, None)` removes it.
    pub fn spawn_with_env(
        config_text: &str,
        extra_args: &[&str],
        env: &[(&str, Option<&str>)],
    ) -> Ringgate {
        let config = temp_config(config_text);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringgate"));
        command
            .arg("--config")
            .arg(&config)
            .args(extra_args)
            .env_remove("RUST_LOG");
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringgate");
        let pid = child.id();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        for pipe in [
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().expect("stdout")),
        ] {
            let tx = tx.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let deadline = Instant::now() + IO_TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        break addr;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    panic!("ringgate never logged `listening on` (exit: {status:?}); log:\n{log}\n--- config ---\n{config_text}");
                }
            }
        };
        Ringgate {
            child: Some(child),
            pid,
            addr,
            log,
            config,
            lines: rx,
        }
    }

    /// The config file the process was started with.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// Sends `signal` (a `kill -s` name such as `HUP`) without waiting for anything.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -s {signal} failed");
    }

    /// Waits (bounded by [`IO_TIMEOUT`]) for the next log line containing `pattern`, reading
    /// the process's output as it comes; returns that line.
    pub fn wait_for_line(&self, pattern: &str) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(pattern) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no log line with `{pattern}` within {IO_TIMEOUT:?}; log:\n{}",
                    self.log()
                ),
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A numeric field of /proc/PID/status (e.g. `VmHWM` in KiB, `Threads`).
    pub fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid))
    }

    /// Sends `signal` (a `kill -s` name: `TERM`, `INT`) and waits for the exit.
    pub fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -s {signal} {} failed", self.pid);
        let mut child = self.child.take().expect("running");
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            (child, status)
        });
        if rx.recv_timeout(limit).is_err() {
            let _ = Command::new("kill")
                .arg("-s")
                .arg("KILL")
                .arg(self.pid.to_string())
                .status();
            let _ = waiter.join();
            panic!(
                "ringgate did not exit within {limit:?} after SIG{signal}; log:\n{}",
                self.log()
            );
        }
        let (_child, status) = waiter.join().expect("waiter thread");
        status.expect("wait for ringgate")
    }
}

impl Drop for Ringgate {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Parses `listening on 127.0.0.1:PORT` anywhere in a log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}
