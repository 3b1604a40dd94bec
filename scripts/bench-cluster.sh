#!/usr/bin/env bash
# Several p2p-server instances on one PostgreSQL (issue 13, SPEC §9): the
# figures of docs/BENCHMARKS.md, "Several instances on PostgreSQL". A
# benchmark: it reports figures, asserts nothing.
#
# It starts a throwaway PostgreSQL (initdb + pg_ctl in a temp dir, as the
# `postgres` user when run as root, 127.0.0.1 only, pg_stat_statements
# preloaded, fsync and synchronous_commit at their defaults: on) and, for
# each N, runs alternately (E A B E A B ...), each on a fresh database:
#   E = one p2p-server on its embedded store (state.db), 3N sessions: the reference
#   A = one instance on PostgreSQL, 3N sessions
#   B = INSTANCES instances on the same PostgreSQL, 3N sessions spread round-robin
# `p2p-load fanout` for all three, `p2p-load catchup` for A and B. The
# servers and PostgreSQL are pinned to CPU 0, the load tool to CPU 1.
#
# Usage: scripts/bench-cluster.sh [N ...]      (default: 1000 3000; 3N sessions)
#
# Environment:
#   ROUNDS=R      measured fan-out rounds per run, after 1 warm-up (default 5)
#   PAIRS=P       E A B rounds per N (default 2)
#   INSTANCES=K   instances of B (default 3)
#   QUIET_MAX=S   longest wait for a quiet machine before each run (default 30)
#   BIN=DIR       p2p-load and p2p-server from DIR (skips the release build)
#   LOGS=DIR      where the JSON of each run goes (default target/bench-cluster/<time>)
#
# Needs PostgreSQL (/usr/lib/postgresql/*/bin; apt-get install postgresql),
# taskset, setpriv (as root), python3, and CPUs 0 and 1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SIZES=("$@")
if ((${#SIZES[@]} == 0)); then SIZES=(1000 3000); fi
ROUNDS=${ROUNDS:-5}
PAIRS=${PAIRS:-2}
INSTANCES=${INSTANCES:-3}
QUIET_MAX=${QUIET_MAX:-30}
LOGS=${LOGS:-$ROOT/target/bench-cluster/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$LOGS"

die() { echo "bench-cluster: $*" >&2; exit 1; }

command -v taskset >/dev/null || die "taskset is missing (util-linux)"
command -v python3 >/dev/null || die "python3 is missing"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x $PGBIN/initdb ]] || die "PostgreSQL is missing: apt-get install postgresql"

if [[ -z ${BIN:-} ]]; then
    echo "building p2p-load and p2p-server (release)..." >&2
    cargo build --release --quiet -p p2p-loadgen --bin p2p-load -p p2p-server --bin p2p-server
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
P2P_LOAD=$BIN/p2p-load
[[ -x $P2P_LOAD && -x $BIN/p2p-server ]] || die "no p2p-load and p2p-server in $BIN"

# Each side needs one fd per session.
ulimit -n "$(ulimit -Hn)"

# --- the throwaway PostgreSQL ---------------------------------------------
PGWORK=$(mktemp -d /tmp/bench-pg.XXXXXX)
AS_PG=()
if [[ $(id -u) == 0 ]]; then
    # initdb refuses root: run PostgreSQL as its own system user.
    id postgres >/dev/null 2>&1 || die "running as root and there is no user postgres"
    chown postgres: "$PGWORK"
    AS_PG=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
fi
PGPASS=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
stop_pg() {
    "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGWORK/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf -- "$PGWORK"
}
trap stop_pg EXIT
(umask 077; echo "$PGPASS" >"$PGWORK/pwfile")
[[ ${#AS_PG[@]} == 0 ]] || chown postgres: "$PGWORK/pwfile"
"${AS_PG[@]}" "$PGBIN/initdb" -D "$PGWORK/data" -U p2p --pwfile "$PGWORK/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >"$LOGS/initdb.log" 2>&1 \
    || die "initdb failed: $(tail -5 "$LOGS/initdb.log")"
# Pinned with the servers: the database is part of the cluster's side.
taskset -c 0 "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGWORK/data" -l "$PGWORK/postgres.log" -w \
    -o "-k $PGWORK -h 127.0.0.1 -p $PGPORT -c shared_preload_libraries=pg_stat_statements -c max_connections=200" \
    start >/dev/null || die "PostgreSQL did not start: $(tail -5 "$PGWORK/postgres.log")"
sql() { "$PGBIN/psql" -X -q -A -t -h "$PGWORK" -p "$PGPORT" -U p2p -d postgres -v ON_ERROR_STOP=1 -c "$1"; }
fresh_db() { # prints the URL of a new empty database (runs in a subshell: no counter)
    local name
    name=bench_$(date +%s%N)
    sql "CREATE DATABASE $name" >/dev/null
    echo "postgres://p2p:$PGPASS@127.0.0.1:$PGPORT/$name"
}

# Other jobs distort the figures: wait (up to QUIET_MAX s) until the machine
# is at most 5 % busy over 2 s, then measure anyway.
wait_quiet() {
    local end=$((SECONDS + QUIET_MAX)) u n s idle iow irq sirq b1 t1 b2 t2 pct
    while :; do
        read -r _ u n s idle iow irq sirq _ </proc/stat; b1=$((u + n + s + irq + sirq)); t1=$((b1 + idle + iow))
        sleep 2
        read -r _ u n s idle iow irq sirq _ </proc/stat; b2=$((u + n + s + irq + sirq)); t2=$((b2 + idle + iow))
        pct=$((100 * (b2 - b1) / (t2 - t1 > 0 ? t2 - t1 : 1)))
        if ((pct <= 5)); then return 0; fi
        if ((SECONDS >= end)); then return 0; fi
        sleep 3
    done
}

run() { # SCENARIO LABEL N PAIR [p2p-load flags...]
    local scenario=$1 label=$2 n=$3 pair=$4 out
    shift 4
    out="$LOGS/$scenario-$label-$n-$pair"
    wait_quiet
    cut -d' ' -f1 /proc/loadavg >"$out.load"
    local size=(--online $((3 * n)) --rounds "$ROUNDS")
    [[ $scenario == catchup ]] && size=(--sessions $((3 * n)))
    "$P2P_LOAD" "$scenario" "${size[@]}" --server-cpus 0 --client-cpus 1 --json "$@" \
        >"$out.json" 2>"$out.err" \
        || die "$scenario $label N=$n failed: $(tail -5 "$out.err")"
    cut -d' ' -f1 /proc/loadavg >>"$out.load"
}

echo "machine: nproc=$(nproc) kernel=$(uname -r) $("$PGBIN/postgres" --version) fd_limit=$(ulimit -n)"
echo "uptime before: $(uptime)"
echo "command: scripts/bench-cluster.sh ${SIZES[*]} (ROUNDS=$ROUNDS PAIRS=$PAIRS INSTANCES=$INSTANCES); logs in $LOGS"
for n in "${SIZES[@]}"; do
    for ((pair = 1; pair <= PAIRS; pair++)); do
        echo "N=$n round $pair/$PAIRS" >&2
        run fanout E "$n" "$pair"
        run fanout A "$n" "$pair" --database "$(fresh_db)" --instances 1
        run fanout B "$n" "$pair" --database "$(fresh_db)" --instances "$INSTANCES"
        run catchup A "$n" "$pair" --database "$(fresh_db)" --instances 1
        run catchup B "$n" "$pair" --database "$(fresh_db)" --instances "$INSTANCES"
    done
done
echo "uptime after: $(uptime)"

python3 - "$LOGS" "$INSTANCES" "${SIZES[@]}" <<'PY'
import glob, json, os, sys

logs, k, sizes = sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3:]]
fmt = lambda x, d=1: "—" if x is None else f"{x:,.{d}f}"

def runs(scenario, label, n):
    for path in sorted(glob.glob(f"{logs}/{scenario}-{label}-{n}-*.json")):
        load = open(path[:-5] + ".load").read().split()
        yield json.load(open(path)), " → ".join(load)

name = {"E": "1 server, embedded", "A": "1 instance, PostgreSQL", "B": f"{k} instances, PostgreSQL"}
print()
print("| fan-out, 3N online | run | all have it (ms, median) | sender's answer (ms) | logins/s | server CPU µs/delivery | DB CPU µs/delivery | DB statements per broadcast | per login | idle/s | load 1-min before → after |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for n in sizes:
    for label in "EAB":
        for i, (r, load) in enumerate(runs("fanout", label, n), 1):
            db = r.get("db") or {}
            print(f"| {3*n:,}: {name[label]} | {i} | {fmt(r['fanout_all_ms_median'])} | {fmt(r['store_ms_median'])} "
                  f"| {fmt(r['logins_per_s'], 0)} | {fmt(r['server_cpu_us_per_delivery'])} | {fmt(db.get('cpu_us_per_delivery'))} "
                  f"| {fmt(db.get('statements_per_broadcast'))} | {fmt(db.get('statements_per_login'))} "
                  f"| {fmt(db.get('idle_statements_per_s'))} | {load} |")
print()
print("| catch-up, 3N resume | run | all have it (ms) | resumes + catch-ups/s | TLS resumed | server CPU (ms) | DB CPU (ms) | DB statements per session | load before → after |")
print("|---|---|---|---|---|---|---|---|---|")
for n in sizes:
    for label in "AB":
        for i, (r, load) in enumerate(runs("catchup", label, n), 1):
            print(f"| {3*n:,}: {name[label]} | {i} | {fmt(r['catchup_all_ms'], 0)} | {fmt(r['catchups_per_s'], 0)} "
                  f"| {r['tls_resumed']:,} | {fmt(r['server_cpu_ms'], 0)} | {fmt(r.get('db_cpu_ms'), 0)} "
                  f"| {fmt(r.get('db_statements_per_session'))} | {load} |")
print()
# The statements of one cluster run, to read the per-broadcast figure by.
last = sorted(glob.glob(f"{logs}/fanout-B-{sizes[-1]}-*.json"))
if last:
    r = json.load(open(last[-1]))
    print(f"Statements during the measured rounds of {os.path.basename(last[-1])} "
          f"({r['rounds']} broadcasts to {r['online']:,}):")
    for q, calls in (r.get("db") or {}).get("top", []):
        print(f"  {calls:>7}  {q[:110]}")
PY
