#!/usr/bin/env bash
# loadtest/compare.sh — ringgate vs Nginx and HAProxy, same machine, same cores, same backend,
# same load.
#
# One command from a fresh clone:   loadtest/compare.sh
# Smoke run (about a minute):       loadtest/compare.sh --quick
#
# What it does, in order:
#   1. installs what is missing (nginx, haproxy, wrk: apt; oha: cargo install; matplotlib:
#      pip or apt),
#   2. builds ringgate with `cargo build --release`,
#   3. starts, under a private temp dir, one backend nginx (`return 200` and static files) and
#      the three contenders: nginx and HAProxy as tuned reverse proxies, and ringgate, all
#      pinned with taskset to the same contender core(s), all forwarding to that backend,
#   4. runs each scenario against nginx, HAProxy and then ringgate, back to back, with the
#      same load, recording throughput, latency percentiles, CPU (user and kernel time from
#      /proc) and RSS,
#   5. writes loadtest/results/YYYY-MM-DD-<host>.md (+ .png plot, + .json raw numbers),
#   6. stops everything it started (also on Ctrl-C or failure) and removes the temp dir.
#
# Run `loadtest/compare.sh --help` for the options; loadtest/README.md explains the method.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
LIB="$HERE/lib"
ORIG_CMD="loadtest/compare.sh${*:+ $*}"

# ------------------------------------------------------------------------------ options

WORKERS=1            # contender workers (= contender cores)
DURATION=15          # seconds measured per scenario and contender
WARMUP=2             # seconds of the same load, discarded, before each measurement
IDLE_CONNS=10000     # idle keep-alive connections for the RSS scenario
CONNS=64             # connections for the closed-loop scenarios
WS_CONNS=64          # WebSocket connections in s13 (one client thread each)
H2_CLIENTS=16        # s16/s17: h2load connections (HTTP/2 over TLS) ...
H2_STREAMS=32        # ... and concurrent streams on each (-m): 512 requests in flight
PROBE_RATE=250       # s2/s12: requests/s of the kernel-timed latency probe (lib/probe.py)
QUICK=0
BUFFERING=on         # nginx proxy_buffering
STANDIN=0            # 1: ringgate's slot holds a second nginx proxy (validates the harness)
RINGGATE_BIN=""      # use this binary instead of building
WSBENCH=""           # s13's WebSocket load tool; built from loadtest/wsbench.rs unless given
GRPCECHO=""          # s17's gRPC echo backend; built from loadtest/grpcecho.rs unless given
INSTALL=1
OUT_DIR="$HERE/results"
KEEP=0
SCENARIOS="all"

usage() {
    cat <<EOF
usage: loadtest/compare.sh [options]

  --workers N         contender workers/cores (default 1; needs N < number of cores)
  --duration S        measured seconds per scenario and contender (default $DURATION)
  --warmup S          warm-up seconds before each measurement (default $WARMUP)
  --quick             smoke run: 2 s per measurement, 1 s warm-up, 2000 idle connections
  --connections N     connections for the closed-loop scenarios (default $CONNS)
  --idle-conns N      idle keep-alive connections for the RSS scenario (default $IDLE_CONNS)
  --h2-clients N      HTTP/2 connections in s16/s17 (h2load -c, default $H2_CLIENTS)
  --h2-streams N      concurrent streams per HTTP/2 connection (h2load -m, default $H2_STREAMS)
  --scenarios LIST    comma-separated subset of s1..s17 (default all)
  --nginx-buffering on|off   nginx proxy_buffering (default on, nginx's default)
  --ringgate-bin PATH use this ringgate binary, skip 'cargo build --release'
  --wsbench-bin PATH  use this build of loadtest/wsbench.rs (s13) instead of building it
  --grpcecho-bin PATH use this build of loadtest/grpcecho.rs (s17) instead of building it
  --standin           run a second nginx proxy in ringgate's slot (harness self-test: its
                      ratios to nginx should be 1.00x; HAProxy still runs as usual)
  --no-install        do not install missing tools, fail instead
  --out DIR           results directory (default loadtest/results)
  --keep              keep the temp dir (configs, logs, raw tool output)
  -h, --help          this text

Contenders, each measured in turn in every scenario on the same core(s): nginx (proxy.conf.tmpl),
haproxy (haproxy/proxy.cfg.tmpl, nbthread = --workers, http-reuse always), ringgate.

Scenarios: s1 small GET keep-alive (closed loop, wrk)   s2 same at 50% of the lowest max (open
loop, oha, latency-corrected)   s3 16 KiB   s4 1 MiB   s5 4 KiB POST   s6 new connection per
request   s7 1,000 keep-alive connections   s8 RSS with idle keep-alive connections (plain,
then TLS)
s9 HTTPS small GET keep-alive   s10 HTTPS new connection (full handshake) per request
(HTTPS: same self-signed ECDSA P-256 certificate, made with openssl at run time, TLS 1.3 with
TLS_AES_128_GCM_SHA256 only, on every contender)   s11 composite: ringgate answers GET /compose
with 3 concurrent calls (2 KiB JSON each) merged into one, nginx and HAProxy with 1 proxied call,
and a 4th contender, nginx-ssi (a second nginx), with the same 3 calls as SSI subrequests
(closed loop)   s12 the same at 50% of the lowest s11 maximum (open loop, oha); ringgate is
restarted before it and its admin API's /metrics gives the slowest required call's p99, which
the goal compares with the client's p99   s13 WebSocket
echo: 32-byte messages over $WS_CONNS connections through each contender's tunnel
(loadtest/wsbench.rs)   s14 cache hits: GET /cacheable (max-age=600) from ringgate's cache,
Nginx's proxy_cache (tmpfs) and HAProxy's cache (RAM)   s15 gzip of a 16 KiB JSON answer on
every request (ringgate and Nginx: level 6; HAProxy: its build's compressor, libslz on Debian)
s16 HTTP/2 over TLS (ALPN h2, the s9 certificate and suite): 13-byte GET /small with h2load,
$H2_CLIENTS connections x $H2_STREAMS concurrent streams, closed loop, each contender forwarding
over HTTP/1.1 to the same backend; p99 from h2load's per-request log   s17 gRPC unary: h2load
POSTs one fixed 71-byte gRPC message (content-type application/grpc, te: trailers) on the same
HTTP/2 listeners, same shape as s16, to an h2c echo backend (loadtest/grpcecho.rs): Nginx
grpc_pass, HAProxy server proto h2, ringgate a protocol = "h2c" group; the sanity checks verify
grpc-status 0 and the echoed message with curl (h2load counts HTTP statuses only)
EOF
}

while (($#)); do
    case "$1" in
        --workers) WORKERS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --connections) CONNS=$2; shift 2 ;;
        --idle-conns) IDLE_CONNS=$2; shift 2 ;;
        --h2-clients) H2_CLIENTS=$2; shift 2 ;;
        --h2-streams) H2_STREAMS=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --nginx-buffering) BUFFERING=$2; shift 2 ;;
        --ringgate-bin) RINGGATE_BIN=$2; shift 2 ;;
        --wsbench-bin) WSBENCH=$2; shift 2 ;;
        --grpcecho-bin) GRPCECHO=$2; shift 2 ;;
        --standin) STANDIN=1; shift ;;
        --no-install) INSTALL=0; shift ;;
        --out) OUT_DIR=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

SETTLE=1             # seconds of quiet between two measurements
if ((QUICK)); then
    DURATION=2
    WARMUP=1
    IDLE_CONNS=2000
    SETTLE=0.2
fi

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for v in WORKERS DURATION WARMUP IDLE_CONNS CONNS H2_CLIENTS H2_STREAMS; do
    is_uint "${!v}" || die "--${v,,} must be a whole number (got '${!v}')"
done
((WORKERS >= 1)) || die "--workers must be at least 1"
((DURATION >= 1)) || die "--duration must be at least 1"
[[ $BUFFERING == on || $BUFFERING == off ]] || die "--nginx-buffering is on or off"

# Scenario selection; s2's rate comes from s1 (s12's from s11), so s2 pulls s1 in (s12 s11).
ALL_SCENARIOS=(s1 s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 s12 s13 s14 s15 s16 s17)
if [[ $SCENARIOS == all ]]; then
    SELECTED=("${ALL_SCENARIOS[@]}")
else
    IFS=, read -r -a SELECTED <<<"$SCENARIOS"
    for s in "${SELECTED[@]}"; do
        [[ " ${ALL_SCENARIOS[*]} " == *" $s "* ]] || die "unknown scenario '$s'"
    done
    if [[ " ${SELECTED[*]} " == *" s2 "* && " ${SELECTED[*]} " != *" s1 "* ]]; then
        SELECTED=(s1 "${SELECTED[@]}")
    fi
    if [[ " ${SELECTED[*]} " == *" s12 "* && " ${SELECTED[*]} " != *" s11 "* ]]; then
        SELECTED=(s11 "${SELECTED[@]}")
    fi
fi
selected() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }

# ------------------------------------------------------------------------------ installing

have() { command -v "$1" >/dev/null 2>&1; }

# Put cargo-installed tools on PATH even in a shell that did not source ~/.cargo/env.
if [[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

as_root() {
    if ((EUID == 0)); then "$@"
    elif have sudo; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

apt_install() {
    have apt-get || die "missing $*, and no apt-get to install it with"
    log "installing with apt-get: $*"
    # Debian starts a freshly installed nginx as a system service on port 80; a temporary
    # policy-rc.d keeps the package from starting anything (only if none exists already).
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        made_policy=1
    fi
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
    if ((made_policy)); then as_root rm -f "$policy"; fi
}

install_deps() {
    local pkgs=()
    have nginx || [[ -x /usr/sbin/nginx ]] || pkgs+=(nginx)
    have haproxy || [[ -x /usr/sbin/haproxy ]] || pkgs+=(haproxy)
    have wrk || pkgs+=(wrk)
    have h2load || pkgs+=(nghttp2-client)   # s16: HTTP/2 load
    have taskset || pkgs+=(util-linux)
    have python3 || pkgs+=(python3)
    have curl || pkgs+=(curl)
    have openssl || pkgs+=(openssl)
    if ((${#pkgs[@]})); then
        ((INSTALL)) || die "missing: ${pkgs[*]} (and --no-install was given)"
        apt_install "${pkgs[@]}"
    fi
    if ! have oha; then
        ((INSTALL)) || die "missing: oha (and --no-install was given)"
        have cargo || die "oha is missing and cargo is not installed"
        log "installing oha with cargo (a few minutes, once)"
        cargo install oha --locked
    fi
    if ! python3 -c 'import matplotlib' 2>/dev/null; then
        if ((INSTALL)); then
            log "installing matplotlib for the latency plot"
            python3 -m pip install --quiet matplotlib 2>/dev/null \
                || apt_install python3-matplotlib \
                || log "warning: no matplotlib; the results will have no PNG plot"
        else
            log "warning: no matplotlib; the results will have no PNG plot"
        fi
    fi
}

install_deps
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
# s15: the Debian build compresses with libslz (stateless deflate, one level), not zlib.
HAPROXY_FEATURES=$("$HAPROXY" -vv 2>/dev/null | grep -m1 '^Feature list' || true)
if [[ $HAPROXY_FEATURES == *+SLZ* ]]; then
    HAPROXY_COMPRESSOR=libslz
elif [[ $HAPROXY_FEATURES == *+ZLIB* ]]; then
    HAPROXY_COMPRESSOR=zlib
else
    HAPROXY_COMPRESSOR=none
fi

# ------------------------------------------------------------------------------ building

if ((STANDIN)); then
    B_NAME="ringgate-standin"
elif [[ -n $RINGGATE_BIN ]]; then
    B_NAME="ringgate"
    [[ -x $RINGGATE_BIN ]] || die "--ringgate-bin $RINGGATE_BIN is not an executable"
else
    B_NAME="ringgate"
    have cargo || die "cargo is needed to build ringgate (see scripts/setup.sh)"
    log "building ringgate: cargo build --release"
    (cd "$ROOT" && cargo build --release)
    RINGGATE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/ringgate"
    [[ -x $RINGGATE_BIN ]] || die "cargo build did not produce $RINGGATE_BIN"
fi
# s13's WebSocket echo server and client (not a contender: the same for both).
if [[ -n $WSBENCH ]]; then
    [[ -x $WSBENCH ]] || die "--wsbench-bin $WSBENCH is not an executable"
elif [[ " ${SELECTED[*]} " == *" s13 "* ]]; then
    have cargo || die "cargo is needed to build the WebSocket load tool (loadtest/wsbench.rs)"
    log "building the WebSocket load tool: cargo build --release --example wsbench"
    (cd "$ROOT" && cargo build --release --example wsbench)
    WSBENCH="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/wsbench"
    [[ -x $WSBENCH ]] || die "cargo build did not produce $WSBENCH"
fi
# s17's gRPC echo backend (not a contender: every contender forwards to it).
if [[ -n $GRPCECHO ]]; then
    [[ -x $GRPCECHO ]] || die "--grpcecho-bin $GRPCECHO is not an executable"
elif [[ " ${SELECTED[*]} " == *" s17 "* ]]; then
    have cargo || die "cargo is needed to build the gRPC echo backend (loadtest/grpcecho.rs)"
    log "building the gRPC echo backend: cargo build --release --example grpcecho"
    (cd "$ROOT" && cargo build --release --example grpcecho)
    GRPCECHO="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/grpcecho"
    [[ -x $GRPCECHO ]] || die "cargo build did not produce $GRPCECHO"
fi

# ------------------------------------------------------------------------------ core layout

# Cores this process may use (honours an outer taskset/cgroup), in ascending order.
read -r -a CPUS <<<"$(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))')"
NCPU=${#CPUS[@]}
if ((NCPU < 2)); then
    die "need at least 2 cores (contender on one, load generator + backend on the other)"
fi
((WORKERS < NCPU)) || die "--workers $WORKERS leaves no core for the load generator and backend ($NCPU cores)"

# Contender: cores 1..N. Load side: core 0 plus whatever is above N. With one load-side core
# the backend and the load generator share it; with more, the backend gets the first half.
CONTENDER_CPUS=("${CPUS[@]:1:WORKERS}")
OTHER_CPUS=("${CPUS[0]}" "${CPUS[@]:WORKERS+1}")
if ((${#OTHER_CPUS[@]} >= 2)); then
    nb=$((${#OTHER_CPUS[@]} / 2))
    BACKEND_CPUS=("${OTHER_CPUS[@]:0:nb}")
    LOADGEN_CPUS=("${OTHER_CPUS[@]:nb}")
else
    BACKEND_CPUS=("${OTHER_CPUS[@]}")
    LOADGEN_CPUS=("${OTHER_CPUS[@]}")
fi
join() { local IFS=,; echo "$*"; }
C_SET=$(join "${CONTENDER_CPUS[@]}")
B_SET=$(join "${BACKEND_CPUS[@]}")
L_SET=$(join "${LOADGEN_CPUS[@]}")
BACKEND_WORKERS=${#BACKEND_CPUS[@]}
LOAD_THREADS=${#LOADGEN_CPUS[@]}
log "layout: contenders on cpu $C_SET ($WORKERS worker(s)), backend on cpu $B_SET ($BACKEND_WORKERS worker(s)), load generator on cpu $L_SET ($LOAD_THREADS thread(s))"

# Enough descriptors for 10,000 idle connections on each side, inherited by every child.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
if ((NOFILE < IDLE_CONNS + 1000)); then
    log "warning: open-file limit is $NOFILE; lowering idle connections to $((NOFILE - 1000))"
    IDLE_CONNS=$((NOFILE - 1000))
fi

# ------------------------------------------------------------------------------ processes

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringgate-loadtest.XXXXXX")
mkdir -p "$WORK"/{tmp,data,raw,logs}
# s14: Nginx's cache directory on tmpfs (/dev/shm where there is one), as operators run it.
if [[ -d /dev/shm && -w /dev/shm ]]; then
    CACHE_DIR=$(mktemp -d /dev/shm/ringgate-loadtest-cache.XXXXXX)
else
    CACHE_DIR="$WORK/cache"
    mkdir -p "$CACHE_DIR"
fi
PIDS=()             # every long-running process this script started
CURRENT=""          # the load generator running now, if any

# Every child runs in its own session (setsid), so a Ctrl-C in the terminal reaches only this
# script, whose trap then stops everything in order. (Without it, nginx would take the SIGINT
# as "fast shutdown" and wrk would print a partial result and exit 0 as if nothing happened.)
# A background process of a non-interactive shell is not a process-group leader, so setsid
# execs in place and $! is the real process.

# run_load CMD...: run a load generator and wait for it. `wait` returns as soon as a trapped
# signal arrives, so Ctrl-C does not have to wait for the end of a 15 s measurement.
run_load() {
    setsid "$@" &
    CURRENT=$!
    local rc=0
    wait "$CURRENT" || rc=$?
    CURRENT=""
    return "$rc"
}

# Stop one process we started: SIGTERM, up to 5 s grace, then SIGKILL for it and for any
# descendant (nginx workers) that outlived it. Descendants are listed before the signal and
# only killed if they still run the same program.
stop_pid() {
    local pid=$1 i kids
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kids=$(python3 "$LIB/lt.py" descendants "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local kid comm
    while read -r kid comm; do
        [[ -n $kid ]] || continue
        if [[ -r /proc/$kid/comm && $(</proc/"$kid"/comm) == "$comm" ]]; then
            kill -KILL "$kid" 2>/dev/null || true
        fi
    done <<<"$kids"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    if [[ -n $CURRENT ]]; then
        kill -TERM "$CURRENT" 2>/dev/null || true
        wait "$CURRENT" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if ((KEEP)); then
        log "kept the temp dir: $WORK"
    else
        rm -rf "$WORK"
    fi
    [[ -z ${CACHE_DIR:-} ]] || rm -rf "$CACHE_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'exit 143' TERM

LT() { python3 "$LIB/lt.py" "$@"; }

# Ports: free loopback ports picked by the kernel (plain and HTTPS for each contender).
# B_ADMIN_PORT: ringgate's admin listener (s12 scrapes /metrics); S_*: nginx-ssi (s11/s12);
# *_H2_PORT: HTTP/2 over TLS (s16, s17); GRPC_PORT: the gRPC echo backend (s17).
read -r BACKEND_PORT A_PORT B_PORT A_TLS_PORT B_TLS_PORT WS_PORT H_PORT H_TLS_PORT B_ADMIN_PORT \
    S_PORT S_TLS_PORT A_H2_PORT B_H2_PORT H_H2_PORT S_H2_PORT GRPC_PORT _ <<<"$(LT freeport 17)"

# HTTPS scenarios: one self-signed ECDSA P-256 certificate for every contender, made now.
CERT="$WORK/tls.pem"
KEY="$WORK/tls.key"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$KEY" -out "$CERT" 2>/dev/null || die "openssl could not make the test certificate"
PEM="$WORK/tls-bundle.pem"   # HAProxy reads certificate and key from one file
cat "$CERT" "$KEY" >"$PEM"

USER_LINE=""
if ((EUID == 0)); then USER_LINE="user root;"; fi  # workers must read/write the temp dir

# Backend data: fixed bodies, generated once.
head -c 16384 /dev/urandom >"$WORK/data/16k"
head -c 1048576 /dev/urandom >"$WORK/data/1m"
mkdir -p "$WORK/data/json"
for part in a b c; do LT json-part "$part" 2048 >"$WORK/data/json/$part"; done
LT json-part big 16384 >"$WORK/data/json/big"   # s15
GRPC_MSG="$WORK/data/grpc.msg"                    # s17: one unary request message ...
GRPC_PATH=/loadtest.Echo/Unary                    # ... to this method (any path echoes)
LT grpc-message 64 >"$GRPC_MSG"

LT render "$HERE/nginx/backend.conf.tmpl" "$WORK/backend.conf" \
    "USER_LINE=$USER_LINE" "WORKERS=$BACKEND_WORKERS" "PREFIX=$WORK" \
    "ADDR=127.0.0.1:$BACKEND_PORT" "DATA=$WORK/data"

render_nginx_proxy() {  # name port tls_port h2_port
    LT render "$HERE/nginx/proxy.conf.tmpl" "$WORK/$1.conf" \
        "USER_LINE=$USER_LINE" "WORKERS=$WORKERS" "PREFIX=$WORK" "NAME=$1" \
        "ADDR=127.0.0.1:$2" "UPSTREAM=127.0.0.1:$BACKEND_PORT" "BUFFERING=$BUFFERING" \
        "TLS_ADDR=127.0.0.1:$3" "H2_ADDR=127.0.0.1:$4" "CERT=$CERT" "KEY=$KEY" "WS_UPSTREAM=127.0.0.1:$WS_PORT" \
        "GRPC_UPSTREAM=127.0.0.1:$GRPC_PORT" \
        "CACHE_DIR=$CACHE_DIR"
}
render_nginx_proxy nginx "$A_PORT" "$A_TLS_PORT" "$A_H2_PORT"
# s11/s12's second Nginx baseline: the same template in a process of its own, measured on
# /compose-ssi (3 parallel SSI subrequests, the composite's 3 backend calls).
EXTRA=()
if selected s11 || selected s12; then
    EXTRA=(nginx-ssi)
    render_nginx_proxy nginx-ssi "$S_PORT" "$S_TLS_PORT" "$S_H2_PORT"
fi
# HAProxy: maxconn 16384 like nginx's worker_connections, or more if s8 opens more idle
# connections. It must stay well above s7's 1,000 connections: HAProxy stops keeping idle
# server connections once a quarter of its descriptor budget (2 x maxconn) is in use
# (tune.pool-high-fd-ratio 25), and then opens a new backend connection per request; with
# maxconn 4,000 s7 crossed that line. HAProxy asks for two descriptors per connection; where
# the hard limit is lower it says so in its log ([ALERT] FD limit too low) and runs anyway
# (`no strict-limits`): the scenarios need far fewer descriptors than that budget.
HAPROXY_MAXCONN=$((IDLE_CONNS + 2000 > 16384 ? IDLE_CONNS + 2000 : 16384))
LT render "$HERE/haproxy/proxy.cfg.tmpl" "$WORK/haproxy.cfg" \
    "WORKERS=$WORKERS" "IDLE_CONNS=$IDLE_CONNS" "MAXCONN=$HAPROXY_MAXCONN" "NOFILE=$NOFILE" \
    "ADDR=127.0.0.1:$H_PORT" "TLS_ADDR=127.0.0.1:$H_TLS_PORT" "H2_ADDR=127.0.0.1:$H_H2_PORT" "PEM=$PEM" \
    "UPSTREAM=127.0.0.1:$BACKEND_PORT" "WS_UPSTREAM=127.0.0.1:$WS_PORT" \
    "GRPC_UPSTREAM=127.0.0.1:$GRPC_PORT" "COMPRESSOR=$HAPROXY_COMPRESSOR"
"$HAPROXY" -c -q -f "$WORK/haproxy.cfg" >"$WORK/logs/haproxy-check.txt" 2>&1 \
    || { cat "$WORK/logs/haproxy-check.txt" >&2; die "HAProxy refused $WORK/haproxy.cfg"; }
if ((STANDIN)); then
    render_nginx_proxy "$B_NAME" "$B_PORT" "$B_TLS_PORT" "$B_H2_PORT"
else
    LT render "$HERE/ringgate.toml.tmpl" "$WORK/ringgate.toml" \
        "ADDR=127.0.0.1:$B_PORT" "WORKERS=$WORKERS" "UPSTREAM=127.0.0.1:$BACKEND_PORT" \
        "TLS_ADDR=127.0.0.1:$B_TLS_PORT" "H2_ADDR=127.0.0.1:$B_H2_PORT" "CERT=$CERT" "KEY=$KEY" \
        "WS_UPSTREAM=127.0.0.1:$WS_PORT" "ADMIN_ADDR=127.0.0.1:$B_ADMIN_PORT" \
        "GRPC_UPSTREAM=127.0.0.1:$GRPC_PORT"
fi

# start NAME CPUSET CMD...: start in the background, pinned, and wait until it accepts on
# PORT_OF[NAME]. Returns non-zero (after showing its log) if it does not come up.
declare -A PID_OF PORT_OF TLS_PORT_OF H2_PORT_OF
PORT_OF[backend]=$BACKEND_PORT
PORT_OF[nginx]=$A_PORT
PORT_OF[haproxy]=$H_PORT
PORT_OF[$B_NAME]=$B_PORT
PORT_OF[nginx-ssi]=$S_PORT
TLS_PORT_OF[nginx]=$A_TLS_PORT
TLS_PORT_OF[haproxy]=$H_TLS_PORT
TLS_PORT_OF[$B_NAME]=$B_TLS_PORT
H2_PORT_OF[nginx]=$A_H2_PORT
H2_PORT_OF[haproxy]=$H_H2_PORT
H2_PORT_OF[$B_NAME]=$B_H2_PORT
start() {
    local name=$1 cpus=$2
    shift 2
    taskset -c "$cpus" setsid "$@" >>"$WORK/logs/$name.out" 2>>"$WORK/logs/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    PID_OF[$name]=$pid
    if ! LT wait-port "${PORT_OF[$name]}" 20 "$pid"; then
        tail -n 20 "$WORK/logs/$name.err" "$WORK/logs/$name-error.log" "$WORK/$name-error.log" >&2 2>/dev/null || true
        return 1
    fi
    log "$name is up (pid $pid, 127.0.0.1:${PORT_OF[$name]})"
}

start_contender() {  # NAME
    case "$1" in
        ringgate)
            start ringgate "$C_SET" "$RINGGATE_BIN" --config "$WORK/ringgate.toml" --workers "$WORKERS" ;;
        haproxy)  # -db: foreground, one process (its threads are its workers); SIGTERM stops it
            start haproxy "$C_SET" "$HAPROXY" -db -f "$WORK/haproxy.cfg" ;;
        *)
            start "$1" "$C_SET" "$NGINX" -p "$WORK" -c "$WORK/$1.conf" -e "$WORK/logs/$1-error.log" ;;
    esac
}

alive() { kill -0 "${PID_OF[$1]}" 2>/dev/null; }

# Stop a contender and start it again (a fresh process: s8 measures per-connection memory
# from a clean baseline, not from heap pages the load scenarios already touched).
restart_contender() {  # NAME
    local old=${PID_OF[$1]} keep=() p
    stop_pid "$old"
    for p in "${PIDS[@]}"; do [[ $p == "$old" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    start_contender "$1"
}

NOTES="$WORK/raw/notes.txt"
: >"$NOTES"
note() { log "note: $*"; printf '%s\n' "$*" >>"$NOTES"; }

start backend "$B_SET" "$NGINX" -p "$WORK" -c "$WORK/backend.conf" -e "$WORK/logs/backend-error.log" \
    || die "the backend did not start"
if [[ -n $WSBENCH ]]; then
    PORT_OF[wsbackend]=$WS_PORT
    start wsbackend "$B_SET" "$WSBENCH" server "127.0.0.1:$WS_PORT" || die "the WebSocket backend did not start"
fi
if [[ -n $GRPCECHO ]]; then
    PORT_OF[grpcbackend]=$GRPC_PORT
    start grpcbackend "$B_SET" "$GRPCECHO" server "127.0.0.1:$GRPC_PORT" || die "the gRPC backend did not start"
fi
# The last contender is the subject (ringgate, or its stand-in); the report gives its ratio to
# each of the others.
CONTENDERS=(nginx haproxy "$B_NAME")
for c in "${CONTENDERS[@]}" "${EXTRA[@]}"; do start_contender "$c" || die "$c did not start"; done

# Who is measured in scenario S, in order: the three contenders, and in s11/s12 nginx-ssi
# after nginx. The subject (ringgate) stays last.
contenders_of() {  # S
    case "$1" in
        s11|s12) ((${#EXTRA[@]})) && { echo nginx "${EXTRA[@]}" haproxy "$B_NAME"; return; } ;;
    esac
    echo "${CONTENDERS[@]}"
}

# ------------------------------------------------------------------------------ sanity checks

# Each contender must return the backend's exact bodies and consume POST bodies; a failure is
# recorded in the results (it is a finding) rather than ending the run.
sanity() {  # name
    local port=${PORT_OF[$1]} path size want
    for path in /small:13 /16k:16384 /1m:1048576; do
        want=${path#*:}
        size=$(curl -s -o /dev/null -w '%{http_code}:%{size_download}' --max-time 5 \
            "http://127.0.0.1:$port${path%:*}" || echo "curl-failed")
        [[ $size == "200:$want" ]] || note "$1: GET ${path%:*} answered '$size', expected 200:$want"
    done
    LT check-post "$port" 2>>"$NOTES" || note "$1: 4 KiB POST + GET pipelined on one connection failed"
    [[ -n ${TLS_PORT_OF[$1]:-} ]] || return 0
    size=$(curl -s -o /dev/null -w '%{http_code}:%{size_download}' --max-time 5 --cacert "$CERT" \
        "https://localhost:${TLS_PORT_OF[$1]}/small" || echo "curl-failed")
    [[ $size == "200:13" ]] || note "$1: HTTPS GET /small answered '$size', expected 200:13"
    [[ -n ${H2_PORT_OF[$1]:-} ]] || return 0
    size=$(curl -s -o /dev/null -w '%{http_version}:%{http_code}:%{size_download}' --max-time 5 \
        --http2 --cacert "$CERT" "https://localhost:${H2_PORT_OF[$1]}/small" || echo "curl-failed")
    [[ $size == "2:200:13" ]] \
        || note "$1: GET /small over HTTP/2 (ALPN h2) answered '$size', expected 2:200:13"
}

# The feature scenarios, per contender: s14's second GET /cacheable must be a hit (nginx and
# HAProxy: X-Cache-Status: HIT; ringgate: Cache-Status: ringgate; hit), and s15's answer must
# be gzip that inflates to the backend's exact JSON. The compressed size goes into the
# results (HAProxy's libslz does not compress like zlib level 6).
sanity_features() {  # name
    local port=${PORT_OF[$1]} head="$WORK/raw/sanity.$1.headers" gz="$WORK/raw/sanity.$1.gz"
    if selected s14; then
        curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/cacheable" || true
        curl -s -o /dev/null -D "$head" --max-time 5 "http://127.0.0.1:$port/cacheable" || true
        grep -qiE '^(x-)?cache-status:.*hit' "$head" 2>/dev/null \
            || note "$1: the second GET /cacheable was not a cache hit (no HIT status header)"
    fi
    if selected s15; then
        curl -s -o "$gz" -D "$head" --max-time 5 -H 'Accept-Encoding: gzip' \
            "http://127.0.0.1:$port/gz" || true
        if ! grep -qi '^content-encoding: *gzip' "$head" 2>/dev/null; then
            note "$1: GET /gz with Accept-Encoding: gzip was not compressed"
        elif ! gzip -dc <"$gz" | cmp -s - "$WORK/data/json/big"; then
            note "$1: GET /gz did not inflate to the backend's exact JSON"
        fi
        printf '{"compressed_bytes": %d, "identity_bytes": %d}\n' "$(stat -c %s "$gz" 2>/dev/null || echo 0)" \
            "$(stat -c %s "$WORK/data/json/big")" >"$WORK/raw/gzsize.$1.json"
    fi
}
# s11/s12: /compose must answer 200 with a JSON object: ringgate and nginx-ssi the three
# parts under "a", "b", "c" (ringgate's "c" shaped: "name" renamed "title"), nginx and HAProxy
# the one part /json/a.
sanity_compose() {  # name
    local path=/compose keys
    case "$1" in
        nginx-ssi) path=/compose-ssi; keys="a b c a.id c.name" ;;
        "$B_NAME") keys="a b c a.id c.title"; ((STANDIN)) && keys="id name items" ;;
        *) keys="id name items" ;;
    esac
    # shellcheck disable=SC2086  # keys is a word list
    LT check-json "http://127.0.0.1:${PORT_OF[$1]}$path" $keys 2>>"$NOTES" \
        || note "$1: GET $path did not answer 200 with the expected JSON (keys: $keys)"
}
for c in backend "${CONTENDERS[@]}"; do sanity "$c"; done
for c in "${CONTENDERS[@]}"; do sanity_features "$c"; done
if selected s11 || selected s12; then
    for c in "${CONTENDERS[@]}" "${EXTRA[@]}"; do sanity_compose "$c"; done
fi

# s17: a gRPC unary call must come back 200 with the message echoed and `grpc-status: 0` in
# the trailers (h2load only counts HTTP statuses). curl prints the trailers after the head.
sanity_grpc() {  # name URL CURL-ARGS...
    local name=$1 url=$2 hdr="$WORK/raw/sanity.$1.grpc.headers" body="$WORK/raw/sanity.$1.grpc.out"
    shift 2
    curl -s --max-time 5 "$@" -H 'content-type: application/grpc' -H 'te: trailers' \
        --data-binary @"$GRPC_MSG" -D "$hdr" -o "$body" "$url" || true
    if ! grep -q '^HTTP/2 200' "$hdr" 2>/dev/null; then
        note "$name: gRPC unary call answered '$(head -n1 "$hdr" 2>/dev/null | tr -d '\r')', expected HTTP/2 200"
    elif ! grep -qi '^grpc-status: *0' "$hdr"; then
        note "$name: gRPC unary call: no grpc-status 0 ($(grep -i '^grpc-' "$hdr" | tr -d '\r' | tr '\n' ' '))"
    elif ! cmp -s "$GRPC_MSG" "$body"; then
        note "$name: gRPC unary call: the answer is not the echoed message"
    fi
}
if selected s17; then
    sanity_grpc grpcbackend "http://127.0.0.1:$GRPC_PORT$GRPC_PATH" --http2-prior-knowledge
    for c in "${CONTENDERS[@]}"; do
        sanity_grpc "$c" "https://localhost:${H2_PORT_OF[$c]}$GRPC_PATH" --http2 --cacert "$CERT"
    done
fi

# ------------------------------------------------------------------------------ metadata

# How busy was the machine before we put load on it? Other work on these cores is noise in
# every number below; the results file says how much there was.
idle_before=$(LT snap "$$")
sleep 1
BUSY_BEFORE=$(python3 - "$idle_before" "$(LT snap "$$")" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1])["cpus"], json.loads(sys.argv[2])["cpus"]
busy = sum(b[c][0] - a[c][0] for c in b)
total = sum(b[c][1] - a[c][1] for c in b)
print(round(100.0 * busy / total) if total else 0)
PY
)
((BUSY_BEFORE < 10)) || log "warning: the machine was ${BUSY_BEFORE}% busy before the run; expect noise"

versions() {
    # (wrk --version exits 1 after printing its usage; only the first line matters)
    { "$NGINX" -v 2>&1 || true; } | head -n1
    { "$HAPROXY" -v 2>&1 || true; } | head -n1 | cut -d' ' -f1-3
    { wrk --version 2>&1 || true; } | head -n1 | cut -d' ' -f1-2
    { oha --version 2>&1 || true; } | head -n1
    { h2load --version 2>&1 || true; } | head -n1
    if ((STANDIN)); then
        echo "ringgate: not run (--standin: a second nginx proxy in its slot)"
    else
        echo "ringgate: $("$RINGGATE_BIN" --version 2>/dev/null || echo unknown) ($RINGGATE_BIN)"
    fi
}
{
    echo "date=$(date -u +'%Y-%m-%d %H:%M:%S UTC')"
    echo "host=$(hostname -s)"
    echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cores=$NCPU"
    echo "kernel=$(uname -r)"
    echo "command=$ORIG_CMD"
    echo "workers=$WORKERS"
    echo "duration=$DURATION"
    echo "warmup=$WARMUP"
    echo "connections=$CONNS"
    echo "idle_conns=$IDLE_CONNS"
    echo "h2_clients=$H2_CLIENTS"
    echo "h2_streams=$H2_STREAMS"
    echo "quick=$QUICK"
    echo "standin=$STANDIN"
    echo "buffering=$BUFFERING"
    echo "haproxy_compressor=$HAPROXY_COMPRESSOR"
    echo "haproxy_maxconn=$HAPROXY_MAXCONN"
    echo "contender_cpus=$C_SET"
    echo "backend_cpus=$B_SET"
    echo "loadgen_cpus=$L_SET"
    echo "backend_workers=$BACKEND_WORKERS"
    echo "load_threads=$LOAD_THREADS"
    echo "contenders=$(join "${CONTENDERS[@]}")"
    echo "extra_contenders=$(join "${EXTRA[@]}")"
    echo "scenarios=$(join "${SELECTED[@]}")"
    echo "nofile=$NOFILE"
    echo "busy_before=$BUSY_BEFORE"
    echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
    versions | sed 's/^/version=/'
} >"$WORK/raw/meta.env"

# ------------------------------------------------------------------------------ load

# wrk_run CONTENDER SECONDS CONNS PATH OUTFILE [ENV=VALUE...]
wrk_run() {
    local c=$1 secs=$2 conns=$3 path=$4 out=$5
    shift 5
    local threads=$LOAD_THREADS
    ((threads <= conns)) || threads=$conns
    local base=${WRK_BASE:-http://127.0.0.1:${PORT_OF[$c]}}
    run_load env "$@" taskset -c "$L_SET" wrk -t "$threads" -c "$conns" -d "${secs}s" --timeout 10s \
        -s "$LIB/wrk.lua" "$base$path" >"$out" 2>&1
}

# ws_run CONTENDER SECONDS CONNS PATH OUTFILE: WebSocket echo round trips (wsbench client).
ws_run() {
    local c=$1 secs=$2 conns=$3 path=$4 out=$5
    run_load taskset -c "$L_SET" "$WSBENCH" client "ws://127.0.0.1:${PORT_OF[$c]}$path" \
        "$conns" "$secs" 32 >"$out" 2>&1
}

# oha_run CONTENDER SECONDS CONNS PATH RATE OUTFILE
oha_run() {
    local c=$1 secs=$2 conns=$3 path=$4 rate=$5 out=$6
    run_load taskset -c "$L_SET" oha --no-tui --output-format json -z "${secs}s" -c "$conns" \
        -q "$rate" --latency-correction "http://127.0.0.1:${PORT_OF[$c]}$path" >"$out" 2>"$out.err"
}

# probe_start SCENARIO CONTENDER PATH OUTFILE: in the open-loop scenarios (s2, s12), a
# kernel-timed latency probe (lib/probe.py, PROBE_RATE requests/s on one connection) runs
# beside oha for the measured window, on the load-side core; probe_wait waits for it.
PROBE_PID=""
probe_start() {
    local s=$1 c=$2 path=$3 out=$4
    PROBE_PID=""
    [[ $s == s2 || $s == s12 ]] || return 0
    taskset -c "$L_SET" python3 "$LIB/probe.py" "http://127.0.0.1:${PORT_OF[$c]}$path" \
        "$PROBE_RATE" "$DURATION" "$out" 2>"$out.err" &
    PROBE_PID=$!
}
probe_wait() {
    [[ -n $PROBE_PID ]] || return 0
    wait "$PROBE_PID" || note "$1/$2: the latency probe failed (see $(basename "$WORK")/raw)"
    PROBE_PID=""
}

# h2load_run CONTENDER SECONDS CLIENTS STREAMS PATH OUTFILE [H2LOAD-ARGS...]: HTTP/2 over TLS
# (ALPN h2) to the contender's h2 listener, closed loop. h2load prints no percentiles; its
# per-request log (--log-file) gives them: OUTFILE gets one LTJSON line in lib/wrk.lua's shape.
h2load_run() {
    local c=$1 secs=$2 clients=$3 streams=$4 path=$5 out=$6
    shift 6
    local threads=$LOAD_THREADS rc=0
    ((threads <= clients)) || threads=$clients
    run_load taskset -c "$L_SET" h2load -t "$threads" -c "$clients" -m "$streams" -D "$secs" \
        --log-file="$out.log" "$@" "https://127.0.0.1:${H2_PORT_OF[$c]}$path" >"$out.h2load" 2>&1 \
        || rc=$?
    LT h2load-summary "$out.h2load" "$out.log" >"$out" 2>>"$out.h2load" || { ((rc)) || rc=1; }
    rm -f "$out.log"   # one line per request: tens of MB
    return "$rc"
}

snap() { LT snap "${PID_OF[$1]}"; }

# measure SCENARIO CONTENDER KIND ARGS...: warm up, snapshot, run, snapshot.
measure() {
    local s=$1 c=$2 kind=$3
    shift 3
    local base="$WORK/raw/$s.$c"
    # s12: the gateway's own quantiles are exact since start, so ringgate starts afresh
    # right before s12's warm-up (not s11's saturation in them), and warms up on
    # /compose-warmup, a twin composite with the same calls: composite "three" then counts the
    # measured window only. Its figures are read from the admin API after the window.
    local scrape=0 warm_path=$2
    if [[ $s == s12 && $c == ringgate ]] && ((!STANDIN)); then
        scrape=1
        warm_path=/compose-warmup
        restart_contender "$c" || note "ringgate could not be restarted before s12"
    fi
    if ! alive "$c"; then
        note "$c was not running before $s; restarting it"
        start_contender "$c" || { note "$c could not be restarted; $s/$c skipped"; return 0; }
    fi
    if ((WARMUP > 0)); then
        case "$kind" in
            wrk) wrk_run "$c" "$WARMUP" "$1" "$2" "$base.warmup" "${@:3}" || true ;;
            wrk-tls) WRK_BASE="https://127.0.0.1:${TLS_PORT_OF[$c]}" \
                wrk_run "$c" "$WARMUP" "$1" "$2" "$base.warmup" "${@:3}" || true ;;
            oha) oha_run "$c" "$WARMUP" "$1" "$warm_path" "$3" "$base.warmup" || true ;;
            ws) ws_run "$c" "$WARMUP" "$1" "$2" "$base.warmup" || true ;;
            h2) h2load_run "$c" "$WARMUP" "$1" "$2" "$3" "$base.warmup" "${@:4}" || true ;;
        esac
    fi
    local others=() o
    for o in "${CONTENDERS[@]}" "${EXTRA[@]}"; do [[ $o == "$c" ]] || others+=("${PID_OF[$o]}"); done
    snap "$c" >"$base.before.json"
    LT snap "${others[@]}" >"$base.others.before.json"
    local rc=0
    case "$kind" in
        wrk) wrk_run "$c" "$DURATION" "$1" "$2" "$base.out" "${@:3}" || rc=$? ;;
        wrk-tls) WRK_BASE="https://127.0.0.1:${TLS_PORT_OF[$c]}" \
            wrk_run "$c" "$DURATION" "$1" "$2" "$base.out" "${@:3}" || rc=$? ;;
        oha) probe_start "$s" "$c" "$2" "$base.probe"
            oha_run "$c" "$DURATION" "$1" "$2" "$3" "$base.out" || rc=$?
            probe_wait "$s" "$c" ;;
        ws) ws_run "$c" "$DURATION" "$1" "$2" "$base.out" || rc=$? ;;
        h2) h2load_run "$c" "$DURATION" "$1" "$2" "$3" "$base.out" "${@:4}" || rc=$? ;;
    esac
    snap "$c" >"$base.after.json"
    LT snap "${others[@]}" >"$base.others.after.json"
    echo "$rc" >"$base.rc"
    ((rc == 0)) || note "$s/$c: the load generator exited with status $rc"
    if ((scrape)); then
        # Workers hand their figures to the control thread every metrics.merge_interval (1 s).
        sleep 1.5
        curl -s --max-time 5 -o "$base.metrics" "http://127.0.0.1:$B_ADMIN_PORT/metrics" \
            || note "$s/$c: GET /metrics on the admin listener failed"
    fi
    if ! alive "$c"; then
        note "$c DIED during $s (see its log excerpt in the results)"
    fi
    sleep "$SETTLE"  # let closed sockets and pools settle before the next run
}

scenario() {  # ID KIND ARGS... (runs every contender, back to back)
    local s=$1
    shift
    selected "$s" || return 0
    local c
    for c in $(contenders_of "$s"); do
        log "$s: $c"
        if [[ $c == nginx-ssi ]]; then  # the same scenario on its own path (ARGS: CONNS PATH ...)
            measure "$s" "$c" "$1" "$2" "${3}-ssi" "${@:4}"
        else
            measure "$s" "$c" "$@"
        fi
    done
}

scenario s1 wrk "$CONNS" /small
if selected s2; then
    RATE=$(python3 "$HERE/report.py" rate "$WORK/raw" s1 0.5 "${CONTENDERS[@]}")
    echo "rate=$RATE" >>"$WORK/raw/meta.env"
    log "s2: fixed rate $RATE req/s (50% of the lowest s1 maximum)"
    scenario s2 oha "$CONNS" /small "$RATE"
fi
scenario s3 wrk "$CONNS" /16k
scenario s4 wrk "$CONNS" /1m
scenario s5 wrk "$CONNS" /post LT_METHOD=POST LT_BODY_BYTES=4096
scenario s6 wrk "$CONNS" /small LT_CLOSE=1
scenario s7 wrk 1000 /small
scenario s11 wrk "$CONNS" /compose
if selected s12; then
    # shellcheck disable=SC2046  # contenders_of prints a word list
    COMPOSE_RATE=$(python3 "$HERE/report.py" rate "$WORK/raw" s11 0.5 $(contenders_of s11))
    echo "compose_rate=$COMPOSE_RATE" >>"$WORK/raw/meta.env"
    log "s12: fixed rate $COMPOSE_RATE req/s (50% of the lowest s11 maximum)"
    scenario s12 oha "$CONNS" /compose "$COMPOSE_RATE"
fi
scenario s13 ws "$WS_CONNS" /ws
scenario s14 wrk "$CONNS" /cacheable
scenario s15 wrk "$CONNS" /gz LT_GZIP=1
scenario s9 wrk-tls "$CONNS" /small
scenario s10 wrk-tls "$CONNS" /small LT_CLOSE=1
scenario s16 h2 "$H2_CLIENTS" "$H2_STREAMS" /small
scenario s17 h2 "$H2_CLIENTS" "$H2_STREAMS" "$GRPC_PATH" -d "$GRPC_MSG" \
    -H "content-type: application/grpc" -H "te: trailers"

if selected s8; then
    for c in "${CONTENDERS[@]}"; do
        log "s8: $c, $IDLE_CONNS idle keep-alive connections"
        alive "$c" || note "$c was not running before s8"
        restart_contender "$c" || { note "$c could not be restarted; s8/$c skipped"; continue; }
        run_load taskset -c "$L_SET" python3 "$LIB/lt.py" idle "${PORT_OF[$c]}" "$IDLE_CONNS" /small \
            "${PID_OF[$c]}" >"$WORK/raw/s8.$c.out" 2>"$WORK/raw/s8.$c.err" \
            || note "s8/$c: the idle-connection client failed: $(tail -n1 "$WORK/raw/s8.$c.err")"
        alive "$c" || note "$c DIED during s8"
        sleep 1
        # The same over TLS: idle TLS keep-alive connections, from a fresh process again.
        [[ -n ${TLS_PORT_OF[$c]:-} ]] || continue
        log "s8: $c, $IDLE_CONNS idle TLS keep-alive connections"
        restart_contender "$c" || { note "$c could not be restarted; s8 TLS/$c skipped"; continue; }
        run_load taskset -c "$L_SET" python3 "$LIB/lt.py" idle-tls "${TLS_PORT_OF[$c]}" "$IDLE_CONNS" \
            /small "${PID_OF[$c]}" >"$WORK/raw/s8tls.$c.out" 2>"$WORK/raw/s8tls.$c.err" \
            || note "s8 TLS/$c: the idle-connection client failed: $(tail -n1 "$WORK/raw/s8tls.$c.err")"
        alive "$c" || note "$c DIED during s8 (TLS)"
        sleep 1
    done
fi

# ------------------------------------------------------------------------------ report

# Error lines from the contenders' and backends' logs go into the report (nginx writes its
# run-time errors to PREFIX/NAME-error.log, the error_log of its config).
for c in backend wsbackend grpcbackend "${CONTENDERS[@]}" "${EXTRA[@]}"; do
    [[ -n ${PID_OF[$c]:-} ]] || continue   # wsbackend / grpcbackend run only for s13 / s17
    cat "$WORK/logs/$c.err" "$WORK/logs/$c-error.log" "$WORK/$c-error.log" 2>/dev/null \
        | grep -Eiv '^\s*$' | head -n 400 >"$WORK/raw/log.$c.txt" || true
done

mkdir -p "$OUT_DIR"
stem="$(date +%F)-$(hostname -s)"
((STANDIN)) && stem+="-standin"
((QUICK)) && stem+="-quick"
out="$OUT_DIR/$stem"
n=2
while [[ -e $out.md ]]; do out="$OUT_DIR/$stem-$n"; n=$((n + 1)); done
python3 "$HERE/report.py" write "$WORK/raw" "$out"
log "results: ${out#"$ROOT"/}.md"
