//! Process signals for the binary: SIGTERM and SIGINT ask for a graceful shutdown, SIGHUP
//! for a configuration reload, SIGUSR1 for reopening the access log (logrotate).
//!
//! Handlers are installed before the server starts, so a signal sent as soon as the
//! gateway reports that it listens is never lost to the default action.

use std::io;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

/// What a signal asks the process to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop gracefully; carries the signal's name.
    Shutdown(&'static str),
    /// Re-read the configuration file.
    Reload,
    /// Reopen the access log file at its path.
    ReopenLogs,
}

/// Installed handlers for SIGTERM, SIGINT, SIGHUP and SIGUSR1.
pub struct ControlSignals {
    signals: Signals,
}

impl ControlSignals {
    /// Installs the handlers.
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            signals: Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?,
        })
    }

    /// Blocks until one of the signals arrives.
    pub fn wait(&mut self) -> Request {
        loop {
            for signal in self.signals.wait() {
                match signal {
                    SIGTERM => return Request::Shutdown("SIGTERM"),
                    SIGINT => return Request::Shutdown("SIGINT"),
                    SIGHUP => return Request::Reload,
                    SIGUSR1 => return Request::ReopenLogs,
                    _ => {}
                }
            }
        }
    }
}
