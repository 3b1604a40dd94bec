#!/usr/bin/env bash
# Measures peer-session sends with real processes on 127.0.0.1 (a benchmark,
# not a test: it reports figures and asserts nothing about them).
#
# Starts one p2p-server and two daemons (alice, bob) in a temporary
# directory, as scripts/demo.sh does, connects alice to bob, and measures:
#
#   (0) `p2pctl status` as a baseline: process start and one control-socket
#       round trip, with no peer and no disk involved;
#   (a) round trip of `p2pctl send bob "x"`: each call returns only after
#       bob's p2pd committed the message to its inbox (SQLite, WAL,
#       synchronous=FULL) and acknowledged it; includes p2pctl's process
#       start and the control-socket round trip;
#   (b) throughput of `seq 1 N | sed 's/^/line /' | p2pctl send bob -`;
#   (c) round trip of one 60 KiB (61 440-byte) message; with its envelope it
#       still fits in one Noise transport message (at most 65 519 bytes).
#
# Usage: scripts/bench-send.sh [RUNS] [LINES]     (defaults: 200, 100000)
#
# Environment:
#   BIN=DIR             use the binaries in DIR instead of building
#   CARGO_TARGET_DIR    where to build (default: target); release profile
#   NO_HYPERFINE=1      time (0), (a) and (c) with the bash loop even if
#                       hyperfine is installed
#   KEEP_BENCH_DIR=1    keep the temp dir and logs
#   TMPDIR=DIR          where the temp dir (and so both inboxes) goes
#   REPEATS=N           how many times to run (b) (default 3)
#
# hyperfine is used when installed. When it is missing and this runs as
# root with apt-get, it is installed; otherwise a bash loop timed with
# bash's $EPOCHREALTIME (or `date +%s%N`) is used. (b) is always timed
# that way: one run is long enough.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUNS=${1:-200}
LINES=${2:-100000}
START_DEADLINE=20
POLL=0.1


if [[ -z ${BIN:-} ]]; then
    echo "== building release binaries (cargo build --workspace --release)" >&2
    cargo build --workspace --release --quiet
    BIN="${CARGO_TARGET_DIR:-target}/release"
fi
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
for b in p2p-server p2pd p2pctl; do
    [[ -x $BIN/$b ]] || { echo "bench: $BIN/$b not found (build first, or set BIN=DIR)" >&2; exit 1; }
done

if [[ ${NO_HYPERFINE:-} != 1 ]] && ! command -v hyperfine >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing hyperfine (apt-get install -y hyperfine)" >&2
        apt-get install -y -qq hyperfine >/dev/null 2>&1 ||
            echo "   could not install hyperfine; using the bash loop" >&2
    fi
fi
HYPERFINE=""
if [[ ${NO_HYPERFINE:-} != 1 ]] && command -v hyperfine >/dev/null 2>&1; then
    HYPERFINE=$(command -v hyperfine)
fi

# Short path: Unix socket paths are limited to 108 bytes. The inbox lives
# here too, so the file system under $TMPDIR is the one whose fsync counts.
BENCH=$(mktemp -d "${TMPDIR:-/tmp}/p2pbench.XXXXXX")
SERVER_PID=""
CONNECT_PID=""
declare -A DAEMON_PID=()

WORK=$BENCH LABEL=bench KEEP=${KEEP_BENCH_DIR:-}
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

declare -A PASSWORD=([alice]="alice-bench-pw" [bob]="bob-bench-pw")

# ---------------------------------------------------------------- set-up
for name in alice bob; do
    printf '%s\n' "${PASSWORD[$name]}" |
        "$BIN/p2p-server" --data-dir "$BENCH/server" user add "$name" --password-stdin >/dev/null
done
start_server 127.0.0.1:0

for name in alice bob; do
    start_daemon "$name"
    printf '%s\n' "${PASSWORD[$name]}" |
        ctl "$name" login --server "127.0.0.1:$PORT" --user "$name" --password-stdin --trust-on-first-use >/dev/null
done

# A plain command, not a function, so that $! is p2pctl itself.
env HOME="$BENCH/alice" \
    XDG_RUNTIME_DIR="$BENCH/alice/run" \
    XDG_STATE_HOME="$BENCH/alice/state" \
    XDG_CONFIG_HOME="$BENCH/alice/config" \
    "$BIN/p2pctl" connect bob >"$BENCH/connect.out" 2>&1 &
CONNECT_PID=$!
wait_for "$START_DEADLINE" "alice's invitation" has_request bob alice
ctl bob accept alice >/dev/null
wait "$CONNECT_PID" || die "p2pctl connect bob failed: $(cat "$BENCH/connect.out")"
CONNECT_PID=""
ctl alice send bob "warm-up" >/dev/null

# The command line hyperfine (or the loop) runs: p2pctl with alice's socket.
SOCK="$BENCH/alice/run/p2p/p2pd.sock"
SEND=("$BIN/p2pctl" --socket "$SOCK" send bob)

# ---------------------------------------------------------------- measure
# stats FILE: mean, median, p99, min, max of the numbers (ms) in FILE.
stats() {
    sort -n "$1" | awk '{ v[NR] = $1; s += $1 }
        END {
            p99 = int(NR * 0.99 + 0.999); if (p99 > NR) p99 = NR; if (p99 < 1) p99 = 1
            med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "mean %.2f ms, median %.2f ms, p99 %.2f ms, min %.2f ms, max %.2f ms (n=%d)\n",
                s / NR, med, v[p99], v[1], v[NR], NR
        }'
}

# now_ns VAR: sets VAR to the wall clock in ns, from bash's $EPOCHREALTIME
# (no fork) when it has one, else from `date +%s%N`.
now_ns() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then
        local t=${EPOCHREALTIME/[.,]/}
        printf -v "$1" '%s000' "$t"
    else
        printf -v "$1" '%s' "$(date +%s%N)"
    fi
}

# times_ms FILE: the per-run times of a hyperfine JSON export, in ms.
times_ms() {
    if command -v jq >/dev/null 2>&1; then
        jq -r '.results[0].times[] * 1000' "$1"
    else
        python3 -c 'import json,sys; [print(t*1000) for t in json.load(open(sys.argv[1]))["results"][0]["times"]]' "$1"
    fi
}

# timed NAME COMMAND...: times RUNS runs of COMMAND (none of its words may
# contain a space: hyperfine gets it as one string) and prints statistics.
timed() {
    local name=$1 out="$BENCH/$1.ms" i t0 t1
    shift
    if [[ -n $HYPERFINE ]]; then
        # Its advice about outliers goes to stderr; kept only on failure.
        "$HYPERFINE" -N --style none --warmup 5 --runs "$RUNS" \
            --export-json "$BENCH/$name.json" "$*" \
            >/dev/null 2>"$BENCH/$name.hyperfine.err" ||
            die "hyperfine failed: $(cat "$BENCH/$name.hyperfine.err")"
        times_ms "$BENCH/$name.json" >"$out"
    else
        : >"$out"
        for ((i = 0; i < RUNS + 5; i++)); do # the first 5 are warm-up
            now_ns t0
            "$@" >/dev/null
            now_ns t1
            ((i < 5)) || awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f\n", ns / 1e6 }' >>"$out"
        done
    fi
    stats "$out"
}

# cpu_ticks PID: user + system CPU of PID so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# p2pctl's own CPU time, with GNU time when there is one.
CPU_TIME=()
echo "? ?" >"$BENCH/p2pctl.cpu"
[[ -x /usr/bin/time ]] && CPU_TIME=(/usr/bin/time -f '%U %S' -o "$BENCH/p2pctl.cpu")

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "load before: $(uptime | sed 's/.*load average: //')"
if [[ -n $HYPERFINE ]]; then
    echo "timer: $("$HYPERFINE" --version)"
elif [[ -n ${EPOCHREALTIME:-} ]]; then
    echo "timer: bash loop with \$EPOCHREALTIME"
else
    echo "timer: bash loop with date +%s%N"
fi
echo "daemons: alice pid ${DAEMON_PID[alice]}, bob pid ${DAEMON_PID[bob]} (for perf record -p)"
echo "state dirs on: $(df -T "$BENCH" | awk 'NR == 2 { print $2 " (" $1 ")" }')"

echo
echo "(0) baseline: p2pctl status   x $RUNS   (process start + control socket; no peer, no disk)"
timed status "$BIN/p2pctl" --socket "$SOCK" status

echo
echo "(a) p2pctl send bob \"x\"   x $RUNS"
timed small "${SEND[@]}" x

echo
echo "(b) seq 1 $LINES | sed 's/^/line /' | p2pctl send bob -   x ${REPEATS:-3}"
seq 1 "$LINES" | sed 's/^/line /' >"$BENCH/lines.txt"
bytes=$(wc -c <"$BENCH/lines.txt")
# Time for the `seq | sed` part alone, to show it is not the bottleneck.
now_ns t0
seq 1 "$LINES" | sed 's/^/line /' >/dev/null
now_ns t1
awk -v ns=$((t1 - t0)) 'BEGIN { printf "seq | sed alone: %.3f s\n", ns / 1e9 }'
: >"$BENCH/rates"
for ((r = 1; r <= ${REPEATS:-3}; r++)); do
    # The full pipeline, as a user would type it.
    a0=$(cpu_ticks "${DAEMON_PID[alice]}") b0=$(cpu_ticks "${DAEMON_PID[bob]}")
    now_ns t0
    seq 1 "$LINES" | sed 's/^/line /' |
        "${CPU_TIME[@]}" "${SEND[@]}" - >"$BENCH/stream.out"
    now_ns t1
    a1=$(cpu_ticks "${DAEMON_PID[alice]}") b1=$(cpu_ticks "${DAEMON_PID[bob]}")
    awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v hz="$HZ" '{
        printf "  CPU: alice p2pd %.2f s, bob p2pd %.2f s, p2pctl %s s\n", a / hz, b / hz,
            ($1 == "?") ? "?" : sprintf("%.2f", $1 + $2)
    }' "$BENCH/p2pctl.cpu"
    grep -q "^delivered $LINES messages" "$BENCH/stream.out" ||
        die "send - did not deliver $LINES messages: $(cat "$BENCH/stream.out")"
    awk -v ns=$((t1 - t0)) -v n="$LINES" -v b="$bytes" -v r="$r" 'BEGIN {
        s = ns / 1e9
        printf "run %d: %d messages (%d bytes with newlines) in %.2f s: %.0f messages/s, %.2f MB/s\n",
            r, n, b, s, n / s, b / s / 1e6
        printf "%.0f %.3f\n", n / s, b / s / 1e6 >> "'"$BENCH/rates"'"
    }'
done
sort -n "$BENCH/rates" | awk '{ m[NR] = $1; mb[NR] = $2 }
    END { i = int((NR + 1) / 2); printf "median: %.0f messages/s, %.2f MB/s\n", m[i], mb[i] }'

echo
big=$(head -c 61440 /dev/zero | tr '\0' 'a')
echo "(c) p2pctl send bob <60 KiB text>   x $RUNS"
timed big "${SEND[@]}" "$big"

echo
echo "load after: $(uptime | sed 's/.*load average: //')"
unread=$(ctl bob --json status | sed 's/.*"unread":\([0-9]*\).*/\1/')
echo "bob's unread inbox entries: $unread"
