//! Process signals for the binary: SIGTERM and SIGINT ask for a graceful shutdown.
//!
//! Handlers are installed before the server starts, so a signal sent as soon as the
//! gateway reports that it listens is never lost to the default action.

use std::io;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Installed shutdown signal handlers.
pub struct ShutdownSignals {
    signals: Signals,
}

impl ShutdownSignals {
    /// Installs handlers for SIGTERM and SIGINT.
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            signals: Signals::new([SIGTERM, SIGINT])?,
        })
    }

    /// Blocks until SIGTERM or SIGINT arrives; returns the signal's name.
    pub fn wait(&mut self) -> &'static str {
        loop {
            for signal in self.signals.wait() {
                match signal {
                    SIGTERM => return "SIGTERM",
                    SIGINT => return "SIGINT",
                    _ => {}
                }
            }
        }
    }
}
