#!/usr/bin/env bash
# Soak: ringgate under mixed traffic (keep-alive and new connections, 13 B and 1 MiB bodies,
# TLS, a policy route, a rate-limited route) for 30 minutes by default, with a reload every
# 10 s, one of three backends restarted every minute and Redis restarted once. Passes with 0
# errors on idempotent requests, RSS flat within 5% after warm-up, fds back to idle.
#
#   loadtest/soak.sh [--duration SECONDS] [--warmup S] [--reload-every S] [--restart-every S]
#                    [--sample S] [--ringgate-bin PATH] [--keep]
#
# Needs nginx, redis-server, openssl (Debian packages) and a release build. All traffic on
# 127.0.0.1; everything started is stopped when it ends. Prints a JSON report.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ulimit -n 65536 2>/dev/null || true
exec python3 "$here/lib/soak.py" "$@"
