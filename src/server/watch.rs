//! The opt-in watch on the configuration file (`--watch-config`): a thread that re-reads the
//! file every interval and asks the control thread for a reload when its contents change.
//!
//! Contents, not modification times, are compared: editors that replace the file, and writes
//! within one timestamp tick, are both seen. An unreadable file (mid-replace) is skipped
//! until the next tick.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::control::ControlEvent;

/// How often the watched file is re-read.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Starts watching `path`; `current` is the text the running configuration came from.
pub fn spawn(path: PathBuf, current: String, events: Sender<ControlEvent>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("ringgate-watch".into())
        .spawn(move || watch(path, current, events))
        .map(|_| ())
}

fn watch(path: PathBuf, mut last: String, events: Sender<ControlEvent>) {
    loop {
        std::thread::sleep(WATCH_INTERVAL);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if text == last {
            continue;
        }
        last = text;
        log::info!("{} changed: reloading", path.display());
        if events.send(ControlEvent::Reload(None)).is_err() {
            return;
        }
    }
}
