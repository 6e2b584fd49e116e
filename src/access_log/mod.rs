//! The access log: one line per finished request, JSON or combined, to stdout or a file.
//!
//! Workers never write. Each formats its lines into a worker-local batch ([`Sink`]) and,
//! when the batch passes [`BATCH_BYTES`] or on the periodic flush, hands the whole buffer to
//! the writer thread over a bounded channel with `try_send`. A full channel (a slow disk)
//! drops the batch and counts its lines; traffic never waits for the log. The writer sends
//! emptied buffers back so that, once warm, formatting a line allocates nothing.
//!
//! The writer owns the output; [`Writer::reopen`] (SIGUSR1) reopens the file at its path,
//! for logrotate.

pub mod format;

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{select, Receiver, Sender, TrySendError};

pub use format::{Entry, Format};

/// A batch is handed to the writer once it holds this many bytes.
pub const BATCH_BYTES: usize = 32 * 1024;
/// How often workers hand over a partial batch.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// Batches queued for the writer, per worker, before new ones are dropped.
const BACKLOG_PER_WORKER: usize = 8;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The process's standard output.
    Stdout,
    /// A file, opened for appending (created if missing).
    File(PathBuf),
}

/// `[access_log]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    /// Line layout.
    pub format: Format,
    /// Output.
    pub path: Destination,
}

/// A full buffer of lines on its way to the writer.
#[derive(Debug)]
struct Batch {
    data: Vec<u8>,
}

/// The writer thread and the channels to it.
#[derive(Debug)]
pub struct Writer {
    settings: AccessLogSettings,
    batches: Option<Sender<Batch>>,
    spares: Receiver<Vec<u8>>,
    reopen: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Opens the output and starts the writer thread for `workers` workers.
    pub fn start(settings: &AccessLogSettings, workers: usize) -> io::Result<Writer> {
        let output = Output::open(&settings.path)?;
        let capacity = workers.max(1) * BACKLOG_PER_WORKER;
        let (batches, batch_rx) = crossbeam_channel::bounded(capacity);
        let (spare_tx, spares) = crossbeam_channel::bounded(capacity + workers.max(1));
        let (reopen, reopen_rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("ringgate-accesslog".into())
            .spawn(move || write_loop(output, batch_rx, spare_tx, reopen_rx))?;
        Ok(Writer {
            settings: settings.clone(),
            batches: Some(batches),
            spares,
            reopen,
            thread: Some(thread),
        })
    }

    /// A worker's end of the log.
    pub fn sink(&self, worker: usize) -> Option<Sink> {
        let batches = self.batches.clone()?;
        Some(Sink {
            format: self.settings.format,
            worker,
            batch: RefCell::new(Vec::with_capacity(BATCH_BYTES * 2)),
            lines: Cell::new(0),
            dropped: Cell::new(0),
            reported: Cell::new(0),
            batches,
            spares: self.spares.clone(),
        })
    }

    /// Asks the writer to reopen the file at its path (after logrotate moved it).
    pub fn reopen(&self) {
        let _ = self.reopen.send(());
    }

    /// Waits until every batch already handed over is written; call once the workers
    /// (and with them every [`Sink`]) are gone.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The output the writer owns.
enum Output {
    Stdout(io::Stdout),
    File(File, PathBuf),
}

impl Output {
    fn open(destination: &Destination) -> io::Result<Output> {
        Ok(match destination {
            Destination::Stdout => Output::Stdout(io::stdout()),
            Destination::File(path) => Output::File(open_append(path)?, path.clone()),
        })
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(out) => {
                let mut out = out.lock();
                out.write_all(data)?;
                out.flush()
            }
            Output::File(file, _) => file.write_all(data),
        }
    }

    fn reopen(&mut self) {
        if let Output::File(file, path) = self {
            match open_append(path) {
                Ok(new) => {
                    *file = new;
                    log::info!("access log reopened: {}", path.display());
                }
                Err(e) => log::error!(
                    "access log: cannot reopen {}: {e}; still writing to the old file",
                    path.display()
                ),
            }
        }
    }
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Writer thread body: writes batches until every worker's sender is gone.
fn write_loop(
    mut output: Output,
    batches: Receiver<Batch>,
    spares: Sender<Vec<u8>>,
    reopen: Receiver<()>,
) {
    let mut failures: u64 = 0;
    let mut reopen = reopen;
    loop {
        select! {
            recv(batches) -> batch => match batch {
                Ok(Batch { mut data }) => {
                    if let Err(e) = output.write_all(&data) {
                        failures += 1;
                        if failures.is_power_of_two() {
                            log::error!("access log: write failed ({failures} so far): {e}");
                        }
                    }
                    data.clear();
                    let _ = spares.try_send(data);
                }
                Err(_) => return,
            },
            recv(reopen) -> msg => match msg {
                Ok(()) => output.reopen(),
                Err(_) => reopen = crossbeam_channel::never(),
            },
        }
    }
}

/// A worker's access log: formats lines into a local batch and hands full batches to the
/// writer without ever waiting for it.
#[derive(Debug)]
pub struct Sink {
    format: Format,
    worker: usize,
    batch: RefCell<Vec<u8>>,
    /// Lines in the current batch.
    lines: Cell<u64>,
    /// Lines dropped because the writer was behind.
    dropped: Cell<u64>,
    /// `dropped` as last reported in the log.
    reported: Cell<u64>,
    batches: Sender<Batch>,
    spares: Receiver<Vec<u8>>,
}

impl Sink {
    /// The worker index lines are tagged with.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Appends one line; hands the batch over once it is full.
    pub fn log(&self, entry: &Entry<'_>) {
        let full = {
            let mut batch = self.batch.borrow_mut();
            format::write_line(&mut batch, self.format, entry);
            self.lines.set(self.lines.get() + 1);
            batch.len() >= BATCH_BYTES
        };
        if full {
            self.flush();
        }
    }

    /// Hands the current batch (if any) to the writer; a full channel drops it and counts
    /// its lines.
    pub fn flush(&self) {
        let lines = self.lines.replace(0);
        if lines == 0 {
            return;
        }
        let spare = self
            .spares
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_BYTES * 2));
        let data = std::mem::replace(&mut *self.batch.borrow_mut(), spare);
        match self.batches.try_send(Batch { data }) {
            Ok(()) => {}
            Err(TrySendError::Full(Batch { mut data }))
            | Err(TrySendError::Disconnected(Batch { mut data })) => {
                self.dropped.set(self.dropped.get() + lines);
                // Keep the buffer: swap it back in, emptied.
                data.clear();
                *self.batch.borrow_mut() = data;
            }
        }
    }

    /// Lines dropped so far because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Logs a warning if lines were dropped since the last report.
    pub fn report_drops(&self) {
        let dropped = self.dropped.get();
        let new = dropped - self.reported.replace(dropped);
        if new > 0 {
            log::warn!(
                "worker {}: access log writer is behind; dropped {new} line(s) ({dropped} in all)",
                self.worker
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::{Duration, SystemTime};

    fn entry() -> Entry<'static> {
        Entry {
            time: SystemTime::now(),
            request_id: b"r",
            client: SocketAddr::from(([127, 0, 0, 1], 1)),
            method: b"GET",
            path: b"/",
            protocol: b"HTTP/1.1",
            status: 200,
            bytes_in: 1,
            bytes_out: 2,
            duration: Duration::from_micros(5),
            upstream_duration: None,
            route: "r",
            upstream_addr: None,
            upstream: "",
            worker: 0,
            trace_id: None,
            referer: b"",
            user_agent: b"",
            consumer: b"",
            failed_calls: b"",
            cache: b"",
        }
    }

    #[test]
    fn full_channel_drops_and_counts() {
        let (batches, rx) = crossbeam_channel::bounded(1);
        let (_spare_tx, spares) = crossbeam_channel::bounded(1);
        let sink = Sink {
            format: Format::Json,
            worker: 0,
            batch: RefCell::new(Vec::new()),
            lines: Cell::new(0),
            dropped: Cell::new(0),
            reported: Cell::new(0),
            batches,
            spares,
        };
        sink.log(&entry());
        sink.log(&entry());
        sink.flush();
        sink.log(&entry());
        sink.flush();
        assert_eq!(sink.dropped(), 1);
        let Batch { data } = rx.try_recv().expect("first batch");
        assert_eq!(data.iter().filter(|&&b| b == b'\n').count(), 2);
        sink.flush();
        assert_eq!(sink.dropped(), 1, "an empty batch is not sent");
    }

    #[test]
    fn writer_writes_and_reopens() {
        let dir = std::env::temp_dir().join(format!("ringgate-al-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("access.log");
        let _ = std::fs::remove_file(&path);
        let settings = AccessLogSettings {
            format: Format::Combined,
            path: Destination::File(path.clone()),
        };
        let writer = Writer::start(&settings, 1).expect("start");
        let sink = writer.sink(0).expect("sink");
        sink.log(&entry());
        sink.flush();
        drop(sink);
        writer.finish();
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1);
        assert!(text.starts_with("127.0.0.1 - - ["), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
