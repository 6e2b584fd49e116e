//! The libFuzzer binary: one executable for every target in `targets/`, the target chosen
//! by `RINGGATE_FUZZ_TARGET` (`fuzz/run.sh` sets it). Built on the stable toolchain with
//! LLVM's SanitizerCoverage pass enabled through `-C passes=sancov-module` (see `run.sh`).
#![no_main]

#[path = "../targets/mod.rs"]
mod targets;

use std::sync::OnceLock;

static TARGET: OnceLock<fn(&[u8])> = OnceLock::new();

fn select() {
    let name = std::env::var("RINGGATE_FUZZ_TARGET").unwrap_or_default();
    match targets::find(&name) {
        Some(target) => {
            let _ = TARGET.set(target.run);
        }
        None => {
            let names: Vec<_> = targets::TARGETS.iter().map(|t| t.name).collect();
            eprintln!(
                "RINGGATE_FUZZ_TARGET={name:?} is not a target; one of: {}",
                names.join(", ")
            );
            std::process::exit(2);
        }
    }
}

libfuzzer_sys::fuzz_target!(init: select(), |data: &[u8]| {
    if let Some(run) = TARGET.get() {
        run(data);
    }
});
