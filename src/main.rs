//! The `ringgate` command line: parse flags, load the config, run until a signal.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use ringgate::config::{self, WorkerCount};
use ringgate::server::{signals, Server};

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
    match run(snapshot) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(snapshot: config::Snapshot) -> anyhow::Result<()> {
    let server = Server::start(Arc::new(snapshot)).context("starting the server")?;
    for addr in server.local_addrs() {
        log::info!("listening on {addr}");
    }
    let signal = signals::wait_for_shutdown().context("installing signal handlers")?;
    log::info!("{signal} received: shutting down gracefully");
    server.shutdown().context("shutting down")?;
    log::info!("stopped");
    Ok(())
}
