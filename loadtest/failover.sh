#!/usr/bin/env bash
# Failover under load, as a new user would try it: three nginx targets (`return 200`), ringgate
# with 2 workers, round robin, `retry = { attempts = 2, on = ["connect_error", "502", "503"] }`,
# `wrk -t1 -c32 -d6s`, one target stopped (SIGTERM) 2 s in. Every GET must get a 200: a GET
# whose target dies mid-flight is replayed on another target when nothing of its response
# reached the client. Prints one line per run; exits 1 if any run saw a non-2xx or socket error.
#
#   loadtest/failover.sh [RUNS (default 3)] [DRIVER: auto|io_uring|legacy (default both)]
#
# Needs nginx and wrk (Debian packages) and a release build (target/release/ringgate, or
# RINGGATE_BIN). All traffic on 127.0.0.1 (free ports); everything started is stopped.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${RINGGATE_BIN:-$here/../target/release/ringgate}"
runs="${1:-3}"
drivers="${2:-io_uring legacy}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ringgate-failover.XXXXXX")"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
user_line=""; if ((EUID == 0)); then user_line="user root;"; fi
failed=0

one_run() {  # DRIVER
    local driver=$1 i ports target_pids=() rg killer t2
    read -r -a ports <<<"$(python3 "$here/lib/lt.py" freeport 4)"
    for i in 0 1 2; do
        mkdir -p "$work/t$i"
        cat >"$work/t$i/nginx.conf" <<NG
worker_processes 1; daemon off; pid $work/t$i/nginx.pid; error_log $work/t$i/error.log warn; $user_line
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $work/t$i; proxy_temp_path $work/t$i;
  fastcgi_temp_path $work/t$i; uwsgi_temp_path $work/t$i; scgi_temp_path $work/t$i;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:${ports[$i]}; location / { return 200 "ok $i\n"; } } }
NG
        nginx -p "$work/t$i" -c "$work/t$i/nginx.conf" -e "$work/t$i/error.log" &
        target_pids+=("$!"); pids+=("$!")
    done
    cat >"$work/ringgate.toml" <<RG
[server]
listen = ["127.0.0.1:${ports[3]}"]
workers = 2
driver = "$driver"

[[upstreams]]
name = "g"
targets = [ { addr = "127.0.0.1:${ports[0]}" }, { addr = "127.0.0.1:${ports[1]}" }, { addr = "127.0.0.1:${ports[2]}" } ]
balance = "round_robin"
retry = { attempts = 2, on = ["connect_error", "502", "503"] }

[[routes]]
name = "all"
upstream = "g"
RG
    "$bin" --config "$work/ringgate.toml" >"$work/ringgate.log" 2>&1 &
    rg=$!; pids+=("$rg")
    python3 "$here/lib/lt.py" wait-port "${ports[3]}" 20 "$rg" >/dev/null
    (sleep 2; kill -TERM "${target_pids[2]}") & killer=$!
    wrk -t1 -c32 -d6s "http://127.0.0.1:${ports[3]}/" >"$work/wrk.out" 2>&1
    wait "$killer"
    t2=$(kill -0 "${target_pids[2]}" 2>/dev/null && echo "still running" || echo "stopped")
    kill "$rg" "${target_pids[0]}" "${target_pids[1]}" 2>/dev/null || true
    wait "$rg" "${target_pids[@]}" 2>/dev/null || true
    local bad
    bad=$(grep -E 'Non-2xx|Socket errors' "$work/wrk.out" | tr -s ' ' | tr '\n' ' ' || true)
    echo "driver=$driver target 3 $t2; $(grep -E 'requests in' "$work/wrk.out" | sed 's/^ *//'); ${bad:-0 non-2xx, 0 socket errors}"
    [[ -z $bad ]] || failed=1
}

for ((r = 1; r <= runs; r++)); do
    for d in $drivers; do one_run "$d"; done
done
exit "$failed"
