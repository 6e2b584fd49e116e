//! The fuzz targets: one function per parser, each taking arbitrary bytes and asserting the
//! parser's invariants (no panic, and the properties documented on each target).
//!
//! Shared by the libFuzzer binary (`fuzz/src/main.rs`, run by `fuzz/run.sh`) and by the
//! corpus replay in `tests/fuzz_corpus.rs`, which runs every committed corpus input and every
//! regression input through the same functions on each `cargo test`.
//!
//! Adding a target: write `fn NAME(data: &[u8])` in a module here, add one line to
//! [`TARGETS`], seed `fuzz/corpus/NAME/` with a few inputs, and run `fuzz/run.sh NAME`.

// Each user of this module (the fuzz binary, the replay test) calls every target through
// `TARGETS` only.
#![allow(dead_code)]

mod cache_control;
mod chunked;
mod config;
mod cookie;
mod h2;
mod head;
mod json;
mod jwt;
mod openapi;
mod path;
mod template;
mod validate;
mod ws_frames;
mod ws_handshake;

/// A named fuzz target.
pub struct Target {
    /// The name used by `fuzz/run.sh`, and the folder of its corpus.
    pub name: &'static str,
    /// Runs one input; panics when an invariant breaks.
    pub run: fn(&[u8]),
}

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "head",
        run: head::run,
    },
    Target {
        name: "chunked",
        run: chunked::run,
    },
    Target {
        name: "path",
        run: path::run,
    },
    Target {
        name: "cookie",
        run: cookie::run,
    },
    Target {
        name: "config",
        run: config::run,
    },
    Target {
        name: "jwt",
        run: jwt::run,
    },
    Target {
        name: "json",
        run: json::run,
    },
    Target {
        name: "template",
        run: template::run,
    },
    Target {
        name: "validate",
        run: validate::run,
    },
    Target {
        name: "openapi",
        run: openapi::run,
    },
    Target {
        name: "cache_control",
        run: cache_control::run,
    },
    Target {
        name: "h2",
        run: h2::run,
    },
    Target {
        name: "ws_frames",
        run: ws_frames::run,
    },
    Target {
        name: "ws_handshake",
        run: ws_handshake::run,
    },
];

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
