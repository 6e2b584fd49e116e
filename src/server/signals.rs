//! Process signals for the binary: SIGTERM and SIGINT ask for a graceful shutdown.

use std::io;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Blocks until SIGTERM or SIGINT arrives; returns the signal's name.
pub fn wait_for_shutdown() -> io::Result<&'static str> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    loop {
        for signal in signals.wait() {
            match signal {
                SIGTERM => return Ok("SIGTERM"),
                SIGINT => return Ok("SIGINT"),
                _ => {}
            }
        }
    }
}
