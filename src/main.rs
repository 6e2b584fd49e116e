//! The `ringgate` command line: parse flags, load the config, run until a signal.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use ringgate::admin::AdminServer;
use ringgate::config::{self, WorkerCount};
use ringgate::server::control::{ControlEvent, Controller};
use ringgate::server::signals::{ControlSignals, Request};
use ringgate::server::{watch, Server};

/// The allocator: jemalloc. Its size-class slabs keep the small, long-lived allocations of
/// idle connections apart from the request buffers freed around them, so freed pages are
/// whole and can go back to the system (docs/performance.md, "Idle memory: a 320-byte
/// parked connection, jemalloc, pooled buffers given back").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, which it reads from this symbol when it initializes (before `main`).
/// A background thread returns freed pages within about a second (`dirty_decay_ms`), so no
/// worker stalls on it; `muzzy_decay_ms:0` skips the lazy `MADV_FREE` stage, whose pages
/// stay resident until the system is short of memory; `tcache_max:4096` keeps blocks above
/// 4 KiB (request tasks, buffers: allocated per connection, never per request) out of the
/// per-thread caches, which an idle worker never empties. The `_RJEM_MALLOC_CONF`
/// environment variable overrides them. A NUL-terminated string, as jemalloc's `const char *`
/// expects.
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_OPTIONS: &[u8; 76] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_max:4096\0";

/// A thread-per-core HTTP API gateway on io_uring.
#[derive(Debug, Parser)]
#[command(
    name = "ringgate",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RINGGATE_COMMIT"), ")"),
    about
)]
struct Cli {
    /// Configuration file.
    #[arg(short, long, default_value = "config/ringgate.toml")]
    config: PathBuf,
    /// Validate the configuration, print every problem, and exit (0 if valid).
    #[arg(long)]
    check: bool,
    /// Print the configuration's routes as an OpenAPI 3.1 document (JSON) and exit.
    #[arg(long)]
    openapi: bool,
    /// Reload automatically when the configuration file changes (checked every second).
    #[arg(long)]
    watch_config: bool,
    /// Number of workers, overriding `server.workers`.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let origin = cli.config.display().to_string();
    let loaded = std::fs::read_to_string(&cli.config)
        .map_err(|e| format!("{origin}: cannot read: {e}"))
        .and_then(|text| {
            config::load_str(&text, &origin)
                .map(|snapshot| (text, snapshot))
                .map_err(|e| e.to_string())
        });
    let (text, mut snapshot) = match loaded {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::from(2);
        }
    };
    if cli.openapi {
        print!("{}", ringgate::openapi::export::document_text(&snapshot));
        return ExitCode::SUCCESS;
    }
    if cli.check {
        println!(
            "{origin}: configuration ok ({} routes, {} upstreams)",
            snapshot.router.len(),
            snapshot.upstreams.len()
        );
        return ExitCode::SUCCESS;
    }
    let workers = cli.workers.map(usize::from);
    if let Some(workers) = workers {
        snapshot.server.workers = WorkerCount::Fixed(workers);
    }
    match run(snapshot, text, &cli, workers) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    snapshot: config::Snapshot,
    text: String,
    cli: &Cli,
    workers: Option<usize>,
) -> anyhow::Result<()> {
    let mut signals = ControlSignals::install().context("installing signal handlers")?;
    let admin = snapshot.admin.clone();
    let server = Server::start(Arc::new(snapshot)).context("starting the server")?;
    for addr in server.local_addrs() {
        log::info!("listening on {addr}");
    }
    let (events, inbox) = crossbeam_channel::unbounded();
    if cli.watch_config {
        watch::spawn(cli.config.clone(), text.clone(), events.clone())
            .context("starting the config watch")?;
    }
    let controller = Controller::new(server, cli.config.clone(), text, workers);
    if let Some(admin) = admin {
        let api = AdminServer::start(&admin, events.clone(), controller.readiness())
            .context("starting the admin listener")?;
        log::info!("admin API listening on {}", api.local_addr());
    }
    std::thread::Builder::new()
        .name("ringgate-signals".into())
        .spawn(move || loop {
            let event = match signals.wait() {
                Request::Reload => ControlEvent::Reload(None),
                Request::ReopenLogs => ControlEvent::ReopenLogs,
                Request::Shutdown(signal) => ControlEvent::Shutdown(signal),
            };
            if events.send(event).is_err() {
                return;
            }
        })
        .context("starting the signal thread")?;
    controller.run(inbox).context("shutting down")?;
    log::info!("stopped");
    Ok(())
}
