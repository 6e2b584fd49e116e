#!/usr/bin/env bash
# Slowloris and slow-read: 10,000 slow connections (head trickle, body trickle, clients that
# never read) against ringgate on 2 workers while wrk measures normal clients; RSS and file
# descriptors before, at peak and after. Bounded: --duration seconds of attack (30 by
# default) plus about a minute of setup and settling. All traffic on 127.0.0.1.
#
#   loadtest/slow.sh [--conns 10000] [--duration 30] [--trickle 1] [--normal 8]
#                    [--workers 2] [--rounds 1] [--settle 2] [--ringgate-bin PATH] [--keep]
#
# --rounds N attacks N times in a row against the same gateway (RSS after each round: a
# leak grows from round to round, retained memory does not); --settle is the wait, once
# the slow connections are closed, before RSS is read.
#
# Needs nginx and wrk (Debian packages) and a release build (cargo build --release).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 "$here/lib/slow.py" "$@"
