//! The `ringgate` command line: parse flags, load the config, run until a signal.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use ringgate::config::{self, WorkerCount};
use ringgate::server::signals::{ControlSignals, Request};
use ringgate::server::{RunningServer, Server};

/// A thread-per-core HTTP API gateway on io_uring.
#[derive(Debug, Parser)]
#[command(name = "ringgate", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(short, long, default_value = "config/ringgate.toml")]
    config: PathBuf,
    /// Validate the configuration, print every problem, and exit (0 if valid).
    #[arg(long)]
    check: bool,
    /// Number of workers, overriding `server.workers`.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let mut snapshot = match config::load_file(&cli.config) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!(
            "{}: configuration ok ({} routes, {} upstreams)",
            cli.config.display(),
            snapshot.router.len(),
            snapshot.upstreams.len()
        );
        return ExitCode::SUCCESS;
    }
    if let Some(workers) = cli.workers {
        snapshot.server.workers = WorkerCount::Fixed(usize::from(workers));
    }
    match run(snapshot, &cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(snapshot: config::Snapshot, cli: &Cli) -> anyhow::Result<()> {
    let mut signals = ControlSignals::install().context("installing signal handlers")?;
    let server = Server::start(Arc::new(snapshot)).context("starting the server")?;
    for addr in server.local_addrs() {
        log::info!("listening on {addr}");
    }
    loop {
        match signals.wait() {
            Request::Reload => reload(&server, cli),
            Request::Shutdown(signal) => {
                log::info!("{signal} received: shutting down gracefully");
                break;
            }
        }
    }
    server.shutdown().context("shutting down")?;
    log::info!("stopped");
    Ok(())
}

/// Re-reads the config file and swaps the new snapshot in. An invalid file is refused as a
/// whole: the running configuration stays in force and every problem is logged.
fn reload(server: &RunningServer, cli: &Cli) {
    let mut snapshot = match config::load_file(&cli.config) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            log::error!("reload refused, the running configuration stays in force:\n{e}");
            return;
        }
    };
    let running = server.snapshot();
    // Listeners and workers are set up once; a reload cannot move them.
    let fixed = &running.server;
    if snapshot.server.listen != fixed.listen
        || cli.workers.is_none() && snapshot.server.workers != fixed.workers
        || snapshot.server.driver != fixed.driver
        || snapshot.server.pin_workers != fixed.pin_workers
    {
        log::warn!(
            "server.listen, server.workers, server.driver and server.pin_workers take effect \
             on restart; the rest of the new configuration is applied"
        );
    }
    snapshot.server.listen.clone_from(&fixed.listen);
    snapshot.server.workers = fixed.workers;
    snapshot.server.driver = fixed.driver;
    snapshot.server.pin_workers = fixed.pin_workers;
    let (routes, upstreams) = (snapshot.router.len(), snapshot.upstreams.len());
    server.store(Arc::new(snapshot));
    log::info!("configuration reloaded ({routes} routes, {upstreams} upstreams)");
}
