#!/usr/bin/env bash
# Instruction-count guard of the request path (docs/performance.md, "Instruction-count guard").
#
# Builds benches/instructions.rs (release profile), runs it under valgrind's callgrind pinned
# to one CPU, counting only inside `ClientConn::serve_one` (one request, head to record, with
# everything it calls), and prints instructions per request for each case: the median of
# --runs runs and their spread. Compares the medians with benches/instructions.baseline and
# exits 1 when a case grew by more than the tolerance.
#
# Usage: benches/instructions.sh [--runs N] [--requests N] [--warmup N] [--tolerance PCT]
#                                [--cpu N] [--update] [--keep DIR] [CASE ...]
#   --runs N         valgrind runs; each case's median is compared (default 3)
#   --requests N     measured requests per case and run (default 2000)
#   --warmup N       requests before the measured ones (default 200)
#   --tolerance PCT  growth over the baseline that fails the guard (default 2)
#   --cpu N          the CPU valgrind is pinned to (default 0)
#   --update         write the medians to the baseline file instead of comparing
#   --keep DIR       keep callgrind's output files in DIR (for callgrind_annotate)
#   CASE             plain, policies, cache_hit (default: all)
# Exit status: 0 within tolerance (or updated), 1 a case regressed, 2 usage or run error.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASELINE="$ROOT/benches/instructions.baseline"
# The per-request function: its inclusive cost is what is counted.
TOGGLE='ringgate::proxy::connection::ClientConn::serve_one::*'

runs=3
requests=2000
warmup=200
tolerance=2
cpu=0
update=0
keep=""
cases=()

die() {
    echo "instructions.sh: $*" >&2
    exit 2
}

usage() {
    sed -n '/^# Usage:/,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --runs | --requests | --warmup | --cpu)
            if [ $# -lt 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then die "$1 needs a whole number"; fi
            declare "${1#--}=$2"
            shift 2
            ;;
        --tolerance)
            if [ $# -lt 2 ] || ! [[ "$2" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
                die "--tolerance needs a percentage"
            fi
            tolerance=$2
            shift 2
            ;;
        --update)
            update=1
            shift
            ;;
        --keep)
            [ $# -ge 2 ] || die "--keep needs a directory"
            keep=$2
            shift 2
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*) die "unknown option $1 (see --help)" ;;
        *)
            cases+=("$1")
            shift
            ;;
    esac
done
[ "$runs" -ge 1 ] || die "--runs must be at least 1"
if [ "$update" = 1 ] && [ ${#cases[@]} -gt 0 ]; then
    die "--update writes every case's count: name no CASE"
fi
[ "$requests" -ge 1 ] || die "--requests must be at least 1"
command -v valgrind >/dev/null || die "valgrind is not installed (Debian: apt-get install valgrind)"
command -v taskset >/dev/null || die "taskset is not installed (Debian: util-linux)"

echo "== building benches/instructions.rs (release profile)"
bin=$(cd "$ROOT" && cargo bench --bench instructions --no-run 2>&1 | tee /dev/stderr |
    sed -n 's/^ *Executable .*(\(.*\))$/\1/p' | tail -n 1)
[ -n "$bin" ] || die "cargo did not name the bench executable"
case "$bin" in /*) ;; *) bin="$ROOT/$bin" ;; esac

if [ -n "$keep" ]; then
    mkdir -p "$keep"
    out=$(cd "$keep" && pwd)
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi

# One line per case and run: CASE INSTRUCTIONS_PER_REQUEST.
results="$out/results"
: >"$results"
for run in $(seq 1 "$runs"); do
    dir="$out/run$run"
    mkdir -p "$dir"
    echo "== run $run of $runs (callgrind on CPU $cpu, $requests requests per case)"
    if ! taskset -c "$cpu" valgrind --tool=callgrind --collect-atstart=no \
        --toggle-collect="$TOGGLE" --callgrind-out-file="$dir/callgrind.out.%p" \
        "$bin" --requests "$requests" --warmup "$warmup" ${cases[@]+"${cases[@]}"} \
        >"$dir/log" 2>&1; then
        cat "$dir/log" >&2
        die "the bench failed under valgrind (log above)"
    fi
    # A dump per case, named by the bench: `instructions:CASE:REQUESTS`. Its `totals:` line
    # is the cost since the bench zeroed the counters (`summary:` would include the warm-up).
    for file in "$dir"/callgrind.out.*.*; do
        awk '/^desc: Trigger: Client Request: instructions:/ {
                 split($NF, part, ":"); name = part[2]; n = part[3]
             }
             /^totals:/ { total = $2 }
             END {
                 if (name != "" && n > 0) printf "%s %d\n", name, (total + n / 2) / n
             }' "$file" >>"$results"
    done
done
[ -s "$results" ] || die "no counts were dumped (is the bench built with its callgrind requests?)"
if awk '$2 == 0 { bad = 1 } END { exit !bad }' "$results"; then
    die "a case counted nothing: is $TOGGLE still a function of its own (renamed or inlined)?"
fi

# Per case, in the bench's order: median, min, max over the runs.
summary="$out/summary"
: >"$summary"
awk '!seen[$1]++ { print $1 }' "$results" | while read -r name; do
    awk -v c="$name" '$1 == c { print $2 }' "$results" | sort -n | awk -v c="$name" '
        { v[++n] = $1 }
        END {
            mid = (n % 2) ? v[(n + 1) / 2] : int((v[n / 2] + v[n / 2 + 1]) / 2)
            print c, mid, v[1], v[n]
        }' >>"$summary"
done

echo
echo "instructions per request inside ClientConn::serve_one ($runs run(s) of $requests requests)"
printf '%-10s %8s %17s %7s %9s %8s\n' case median "min - max" spread baseline change
status=0
missing=0
while read -r name median min max; do
    base=$(awk -v c="$name" '$1 == c { print $2 }' "$BASELINE" 2>/dev/null || true)
    spread=$(awk -v a="$min" -v b="$max" -v m="$median" 'BEGIN { printf "%.2f%%", (b - a) * 100 / m }')
    if [ -z "$base" ]; then
        printf '%-10s %8d %8d - %-6d %7s %9s %8s\n' "$name" "$median" "$min" "$max" "$spread" - -
        missing=1
        continue
    fi
    change=$(awk -v m="$median" -v b="$base" 'BEGIN { printf "%+.2f", (m - b) * 100 / b }')
    verdict=$(awk -v c="$change" -v t="$tolerance" 'BEGIN {
        if (c > t) print "REGRESSED"; else if (c < -t) print "faster"; else print "ok" }')
    printf '%-10s %8d %8d - %-6d %7s %9d %7s%% %s\n' \
        "$name" "$median" "$min" "$max" "$spread" "$base" "$change" "$verdict"
    [ "$verdict" != REGRESSED ] || status=1
done <"$summary"
echo

if [ "$update" = 1 ]; then
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        commit="$commit+changes"
    fi
    {
        echo "# Instructions per request inside ClientConn::serve_one (inclusive), the median of"
        echo "# $runs callgrind runs of $requests requests after $warmup warm-up ones; written by"
        echo "# benches/instructions.sh --update. Compare only counts from the same toolchain."
        echo "# date: $(date -u +%Y-%m-%d)"
        echo "# commit: $commit"
        echo "# rustc: $(rustc --version)"
        echo "# valgrind: $(valgrind --version)"
        awk '{ print $1, $2 }' "$summary"
    } >"$BASELINE"
    echo "baseline written: $BASELINE"
    exit 0
fi

if [ -f "$BASELINE" ]; then
    recorded=$(sed -n 's/^# rustc: //p' "$BASELINE")
    if [ -n "$recorded" ] && [ "$recorded" != "$(rustc --version)" ]; then
        echo "note: the baseline was counted with $recorded, this run with $(rustc --version);"
        echo "      a compiler change moves the counts by itself (re-count the baseline first)"
    fi
fi
if [ "$status" = 1 ]; then
    echo "FAIL: a case grew by more than $tolerance% over benches/instructions.baseline"
    echo "      (callgrind_annotate on the files of --keep DIR shows where; if the growth is"
    echo "      intended, say so in the commit and run with --update)"
elif [ "$missing" = 1 ]; then
    echo "no baseline for a case above: nothing to compare it with (--update writes one)"
else
    echo "ok: every case within $tolerance% of benches/instructions.baseline"
fi
exit "$status"
