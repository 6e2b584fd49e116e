#!/usr/bin/env bash
# Coverage-guided fuzzing on the stable toolchain: libFuzzer (the libfuzzer-sys crate builds
# it) with LLVM's SanitizerCoverage instrumentation turned on through stable rustc flags
# (-C passes=sancov-module and -C llvm-args), no nightly and no cargo-fuzz needed.
#
#   fuzz/run.sh list                  the targets
#   fuzz/run.sh build                 build the fuzzer (release, with debug assertions and
#                                     overflow checks)
#   fuzz/run.sh run TARGET [ARGS...]  fuzz TARGET; ARGS go to libFuzzer, e.g. -runs=10000000
#                                     or -max_total_time=3600 (default: 60 seconds)
#   fuzz/run.sh merge TARGET          minimize the work corpus into fuzz/corpus/TARGET
#                                     (the committed corpus that `cargo test` replays)
#
# Runs at `nice -n 19`. The work corpus (seeded from fuzz/corpus/TARGET) and crash
# artifacts go under $FUZZ_WORK (default fuzz/work); build output under $FUZZ_TARGET_DIR
# (default fuzz/target). A crash input belongs in fuzz/regressions/TARGET/ with its fix.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target_dir="${FUZZ_TARGET_DIR:-$here/target}"
work="${FUZZ_WORK:-$here/work}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin="$target_dir/$triple/release/ringgate-fuzz"

build() {
    # --target keeps the instrumentation off build scripts and proc macros.
    RUSTFLAGS="-C passes=sancov-module \
        -C llvm-args=-sanitizer-coverage-level=4 \
        -C llvm-args=-sanitizer-coverage-inline-8bit-counters \
        -C llvm-args=-sanitizer-coverage-pc-table \
        -C llvm-args=-sanitizer-coverage-trace-compares \
        --cfg fuzzing" \
        CARGO_TARGET_DIR="$target_dir" \
        nice -n 19 cargo build --manifest-path "$here/Cargo.toml" --release --target "$triple" \
        --bin ringgate-fuzz
}

targets() {
    sed -n '/^pub const TARGETS/,/^];/s/.*name: "\([a-z0-9_]*\)".*/\1/p' "$here/targets/mod.rs"
}

known() {
    targets | grep -qx "$1" || { echo "unknown target $1; one of: $(targets | tr '\n' ' ')" >&2; exit 2; }
}

dict_args() {
    if [[ -f "$here/dict/$1.dict" ]]; then echo "-dict=$here/dict/$1.dict"; fi
}

cmd="${1:-}"
case "$cmd" in
list) targets ;;
build) build ;;
run)
    name="${2:?usage: fuzz/run.sh run TARGET [libFuzzer args]}"
    known "$name"
    shift 2
    [[ $# -gt 0 ]] || set -- -max_total_time=60
    build
    mkdir -p "$work/corpus/$name" "$work/artifacts/$name" "$here/corpus/$name"
    # shellcheck disable=SC2046
    RINGGATE_FUZZ_TARGET="$name" nice -n 19 "$bin" \
        -artifact_prefix="$work/artifacts/$name/" -timeout=60 -rss_limit_mb=2048 \
        -max_len=16384 -print_final_stats=1 $(dict_args "$name") "$@" \
        "$work/corpus/$name" "$here/corpus/$name"
    ;;
merge)
    name="${2:?usage: fuzz/run.sh merge TARGET}"
    known "$name"
    build
    fresh="$work/merged/$name"
    rm -rf "$fresh"
    mkdir -p "$fresh" "$work/corpus/$name"
    RINGGATE_FUZZ_TARGET="$name" nice -n 19 "$bin" -merge=1 -max_len=16384 \
        $(dict_args "$name") "$fresh" "$here/corpus/$name" "$work/corpus/$name"
    rm -rf "${here:?}/corpus/$name"
    mv "$fresh" "$here/corpus/$name"
    echo "fuzz/corpus/$name: $(find "$here/corpus/$name" -type f | wc -l) inputs"
    ;;
*)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
