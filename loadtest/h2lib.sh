#!/usr/bin/env bash
# The HTTP/2 libraries on monoio measured against each other (issue 15, point 6): three
# minimal h2c servers built from loadtest/h2lib (the h2 crate through ringgate's adapter,
# the h2 crate through monoio-compat, monoio-http's h2 fork), each on one thread pinned to
# core 1, loaded in turn by h2load on core 0 with the same requests. Reports CPU per request
# (user and kernel, from /proc/PID/stat) and requests/s, per round and as medians.
#
#   loadtest/h2lib.sh [--rounds 3] [--requests 400000] [--clients 16] [--streams 32]
#                     [--bin PATH]
#
# Needs h2load (Debian: nghttp2-client) and curl. Builds the servers unless --bin is given.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
ROUNDS=3
REQUESTS=400000
CLIENTS=16
STREAMS=32
BIN=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --streams) STREAMS="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done
for tool in h2load curl taskset python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
[[ "$(nproc)" -ge 2 ]] || { echo "needs 2 cores (server on core 1, h2load on core 0)" >&2; exit 1; }
if [[ -z "$BIN" ]]; then
    target="${CARGO_TARGET_DIR:-$root/target}"
    CARGO_TARGET_DIR="$target" cargo build --release --manifest-path "$here/h2lib/Cargo.toml" >&2
    BIN="$target/release/ringgate-h2lib"
fi
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT/"
TICK="$(getconf CLK_TCK)"
OUT="$(mktemp -d)"
SERVER=""
trap '[[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null; rm -rf "$OUT"' EXIT

# One measurement: MODE ROUND → a line "mode round requests seconds user_ticks sys_ticks".
measure() {
    local mode="$1" round="$2"
    taskset -c 1 "$BIN" "$mode" "$PORT" >"$OUT/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do
        curl -sf --http2-prior-knowledge -o /dev/null "$URL" && break
        sleep 0.05
    done
    taskset -c 0 h2load -c "$CLIENTS" -m "$STREAMS" -n 20000 "$URL" >/dev/null
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$SERVER/stat")
    taskset -c 0 h2load -c "$CLIENTS" -m "$STREAMS" -n "$REQUESTS" "$URL" >"$OUT/h2load.txt"
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$SERVER/stat")
    kill "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
    local ok secs
    ok="$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$OUT/h2load.txt")"
    secs="$(sed -n 's/^finished in \([0-9.]*\)s.*/\1/p' "$OUT/h2load.txt")"
    echo "$mode $round $ok $secs $((u1 - u0)) $((s1 - s0))" >>"$OUT/runs.txt"
}

for round in $(seq "$ROUNDS"); do
    for mode in wire compat monoio-http; do
        measure "$mode" "$round"
    done
done

python3 - "$OUT/runs.txt" "$TICK" "$CLIENTS" "$STREAMS" "$REQUESTS" <<'PY'
import statistics, sys
path, tick, clients, streams, requests = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
rows = [line.split() for line in open(path)]
print(f"h2load -c {clients} -m {streams} -n {requests} per run; server on core 1, h2load on core 0")
print()
print("| library | round | requests/s | user µs/req | kernel µs/req | total µs/req |")
print("|---|---:|---:|---:|---:|---:|")
per = {}
for mode, rnd, done, secs, u, s in rows:
    done, secs = int(done), float(secs)
    user, kern = int(u) / tick / done * 1e6, int(s) / tick / done * 1e6
    per.setdefault(mode, []).append((done / secs, user, kern))
    print(f"| {mode} | {rnd} | {done / secs:,.0f} | {user:.2f} | {kern:.2f} | {user + kern:.2f} |")
print()
print("| library | median requests/s | median user µs/req | median kernel µs/req | median total µs/req |")
print("|---|---:|---:|---:|---:|")
for mode, runs in per.items():
    med = [statistics.median(r[i] for r in runs) for i in range(3)]
    total = statistics.median(r[1] + r[2] for r in runs)
    print(f"| {mode} | {med[0]:,.0f} | {med[1]:.2f} | {med[2]:.2f} | {total:.2f} |")
PY
