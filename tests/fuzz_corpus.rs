//! Replays every committed fuzz input through its target (the functions in `fuzz/targets/`,
//! the same ones the fuzzer runs): the minimized corpus in `fuzz/corpus/TARGET/` and the
//! inputs of fixed crashes in `fuzz/regressions/TARGET/`. Fuzzing itself is `fuzz/run.sh`
//! (see docs/security.md, "Fuzzing"); this keeps what it found from coming back.

#[path = "../fuzz/targets/mod.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(kind: &str, require: bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    for target in targets::TARGETS {
        let files = inputs(&root.join(target.name));
        assert!(
            !require || !files.is_empty(),
            "fuzz target {} has no committed corpus in {}",
            target.name,
            root.join(target.name).display()
        );
        for file in files {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = std::panic::catch_unwind(|| (target.run)(&data));
            assert!(
                outcome.is_ok(),
                "fuzz target {} fails on {}",
                target.name,
                file.display()
            );
        }
    }
}

#[test]
fn every_target_passes_its_minimized_corpus() {
    replay("corpus", true);
}

#[test]
fn every_fixed_crash_stays_fixed() {
    replay("regressions", false);
}
