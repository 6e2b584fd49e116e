#!/usr/bin/env bash
# scripts/setup.sh — install what building, testing and load-testing ringgate needs on a fresh
# Debian or Ubuntu machine. Rust (rustup, cargo) is assumed to be installed already.
#
#   scripts/setup.sh            build + test prerequisites, and the load-test tools
#   scripts/setup.sh --no-load  build + test prerequisites only
#
# Safe to run again: it installs only what is missing.

set -euo pipefail

LOAD=1
case "${1:-}" in
    --no-load) LOAD=0 ;;
    "") ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
esac

log() { printf '[setup] %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
    if ((EUID == 0)); then "$@"
    elif have sudo; then sudo "$@"
    else echo "need root (or sudo) to run: $*" >&2; exit 1
    fi
}

have cargo || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }

# Build and test: a C toolchain for crates with build scripts, pkg-config, git; curl is used
# by the integration tests' helpers and the load test's sanity checks; python3 by the load test
# and, with openapi-spec-validator (from PyPI, below), by the OpenAPI export test; the cluster
# rate-limit tests run a real redis-server. The same as .ci/run installs.
PKGS=()
have cc || PKGS+=(build-essential)
have pkg-config || PKGS+=(pkg-config)
have git || PKGS+=(git)
have curl || PKGS+=(curl)
have python3 || PKGS+=(python3)
have redis-server || PKGS+=(redis-server)
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null \
    && ! python3 -m pip --version >/dev/null 2>&1; then
    PKGS+=(python3-pip)
fi
if ((LOAD)); then
    have nginx || [[ -x /usr/sbin/nginx ]] || PKGS+=(nginx)
    have wrk || PKGS+=(wrk)
    have taskset || PKGS+=(util-linux)
    have shellcheck || PKGS+=(shellcheck)
    # The instruction-count guard (benches/instructions.sh) runs the gateway under callgrind.
    have valgrind || PKGS+=(valgrind)
fi

if ((${#PKGS[@]})); then
    have apt-get || { echo "no apt-get: install by hand: ${PKGS[*]}" >&2; exit 1; }
    log "apt-get install ${PKGS[*]}"
    # Keep Debian from starting a system nginx on port 80 while it installs (only when no
    # policy-rc.d exists already; removed again afterwards).
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${PKGS[@]}"
    if ((made_policy)); then as_root rm -f /usr/sbin/policy-rc.d; fi
fi

if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
    log "installing openapi-spec-validator (the OpenAPI export test)"
    python3 -m pip install --quiet openapi-spec-validator \
        || python3 -m pip install --quiet --break-system-packages openapi-spec-validator
fi

if ((LOAD)); then
    if ! have oha && [[ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/oha" ]]; then
        log "cargo install oha --locked"
        cargo install oha --locked
    fi
    if ! python3 -c 'import matplotlib' 2>/dev/null; then
        log "installing matplotlib (latency plots)"
        python3 -m pip install --quiet matplotlib 2>/dev/null \
            || { have apt-get && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-matplotlib; } \
            || log "warning: could not install matplotlib; load-test results will have no plot"
    fi
fi

log "done"
