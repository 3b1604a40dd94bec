#!/usr/bin/env bash
# Several servers, one user base (SPEC §9, docs/cluster.md): a throwaway
# PostgreSQL and three p2p-server instances on it, on 127.0.0.1 only, in a
# fresh temporary directory. alice, bob and carol each log in through a
# different instance; each sees all three in `list`; a broadcast sent
# through one instance reaches the users on the other two; then the
# instance holding alice is killed with SIGKILL and her daemon carries on
# through the next server of its list by itself, without a password.
#
# Needs PostgreSQL's server programs (Debian: apt-get install postgresql).
# Usage: scripts/demo-cluster.sh   (KEEP_DEMO_DIR=1 keeps the temp dir and logs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

START_DEADLINE=30
FAILOVER_DEADLINE=30
POLL=0.1

step() { printf '\n== %s\n' "$*"; }

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z $PG_BIN ]] && command -v initdb >/dev/null; then
    PG_BIN=$(dirname "$(command -v initdb)")
fi
[[ -x ${PG_BIN:-}/initdb ]] || {
    echo "demo-cluster: PostgreSQL's initdb and pg_ctl are needed (Debian: apt-get install postgresql)" >&2
    exit 1
}

echo "== building (cargo build --workspace)"
cargo build --workspace --quiet
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac

# Short path: Unix socket paths are limited to 108 bytes.
DEMO=$(mktemp -d /tmp/p2pclu.XXXXXX)
chmod 755 "$DEMO"
SERVER_PID=""
CONNECT_PID=""
declare -A DAEMON_PID=()
declare -A INSTANCE_PID=()
declare -A PORT=()

WORK=$DEMO LABEL=demo-cluster KEEP=${KEEP_DEMO_DIR:-}
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# PostgreSQL refuses to run as root: as root, run it as `postgres` (or
# `nobody`).
PG_USER=""
if ((EUID == 0)); then
    PG_USER=$(id -u postgres >/dev/null 2>&1 && echo postgres || echo nobody)
fi
pg() { # PROGRAM ARGS...: a PostgreSQL program as the database's owner
    if [[ -n $PG_USER ]]; then
        setpriv --reuid="$PG_USER" --regid="$(id -g "$PG_USER")" --clear-groups "$PG_BIN/$1" "${@:2}"
    else
        "$PG_BIN/$1" "${@:2}"
    fi
}

finish() {
    local rc=$? name
    for name in "${!INSTANCE_PID[@]}"; do stop "${INSTANCE_PID[$name]}"; done
    for name in "${!DAEMON_PID[@]}"; do stop "${DAEMON_PID[$name]}"; done
    DAEMON_PID=()
    [[ -f $DEMO/pg/data/postmaster.pid ]] && pg pg_ctl -D "$DEMO/pg/data" -m immediate stop >/dev/null 2>&1 || true
    exit "$rc"
}
# lib.sh's cleanup (logs, temp dir) runs after ours.
trap 'finish; cleanup' EXIT

declare -A PASSWORD=([alice]="alice-demo-pw" [bob]="bob-demo-pw" [carol]="carol-demo-pw")

# ---------------------------------------------------------------- database
step "a throwaway PostgreSQL in $DEMO/pg (initdb, pg_ctl; 127.0.0.1 only)"
mkdir -p "$DEMO/pg"
PG_PASSWORD=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$PG_PASSWORD" >"$DEMO/pg/pwfile"
[[ -n $PG_USER ]] && chown -R "$PG_USER" "$DEMO/pg"
pg initdb -D "$DEMO/pg/data" -U p2p --pwfile "$DEMO/pg/pwfile" --auth-host=scram-sha-256 \
    --auth-local=trust -E UTF8 >"$DEMO/pg/initdb.log"
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pg pg_ctl -D "$DEMO/pg/data" -l "$DEMO/pg/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$DEMO/pg" start >/dev/null
URL="postgres://p2p:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres"
echo "PostgreSQL on 127.0.0.1:$PG_PORT"

# p2p-server against the shared database (the URL is in the environment of
# this script only; a real install puts it in a 0600 config file).
server() { "$BIN/p2p-server" --data-dir "$DEMO/admin" --database "$URL" "$@"; }

step "operator: p2p-server user add alice / bob / carol --database postgres://p2p:***@127.0.0.1:$PG_PORT/postgres"
for name in alice bob carol; do
    printf '%s\n' "${PASSWORD[$name]}" | server user add "$name" --password-stdin
done
server user list

# start_instance NAME: p2p-server NAME on the database, on an ephemeral port.
start_instance() {
    local name=$1 out="$DEMO/$1.out" line=""
    : >"$out"
    "$BIN/p2p-server" --data-dir "$DEMO/$name" --database "$URL" --listen 127.0.0.1:0 \
        --metrics-listen 127.0.0.1:0 >"$out" 2>>"$DEMO/$name.log" &
    INSTANCE_PID[$name]=$!
    local end=$((SECONDS + START_DEADLINE))
    while :; do
        line=$(grep -m1 '^p2p-server listening on ' "$out" || true)
        [[ -n $line ]] && break
        kill -0 "${INSTANCE_PID[$name]}" 2>/dev/null || die "instance $name exited during start-up"
        ((SECONDS < end)) || die "instance $name did not report 'listening on' within ${START_DEADLINE}s"
        sleep "$POLL"
    done
    PORT[$name]=${line##*:}
    grep '^p2p-server fingerprint ' "$out"
}

step "operator: three instances a, b, c on the one database (the first stores the TLS identity; all serve it)"
for name in a b c; do
    start_instance "$name"
    echo "instance $name listening on 127.0.0.1:${PORT[$name]}"
done
FINGERPRINT=$(grep -m1 '^p2p-server fingerprint ' "$DEMO/a.out" | cut -d' ' -f3)
for name in b c; do
    grep -qF "$FINGERPRINT" "$DEMO/$name.out" || die "instance $name serves another certificate"
done
echo "one fingerprint for the cluster: $FINGERPRINT"

addr() { echo "127.0.0.1:${PORT[$1]}"; }

# ---------------------------------------------------------------- users
# Each user's list starts with a different instance.
declare -A SERVERS=(
    [alice]="$(addr a),$(addr b),$(addr c)"
    [bob]="$(addr b),$(addr c),$(addr a)"
    [carol]="$(addr c),$(addr a),$(addr b)"
)
for name in alice bob carol; do
    mkdir -p "$DEMO/$name/config/p2p"
    # Quick reconnects, so the failover below takes a second, not a minute.
    printf 'reconnect_min = "200ms"\nreconnect_max = "2s"\n' >"$DEMO/$name/config/p2p/p2pd.toml"
    start_daemon "$name"
    step "$name: p2pctl login --server ${SERVERS[$name]} --user $name --password-stdin --fingerprint $FINGERPRINT"
    printf '%s\n' "${PASSWORD[$name]}" |
        ctl "$name" login --server "${SERVERS[$name]}" --user "$name" --password-stdin --fingerprint "$FINGERPRINT"
done

lists() { # NAME USER: USER is in NAME's `p2pctl list`
    local out
    out=$(ctl "$1" list) || return 1
    grep -q "^$2 " <<<"$out"
}
for name in alice bob carol; do
    step "$name (on $(ctl "$name" --json status | grep -o '"current":"[^"]*"')): p2pctl list"
    for other in alice bob carol; do
        wait_for "$START_DEADLINE" "$other in $name's list" lists "$name" "$other"
    done
    ctl "$name" list
done

has_broadcast() { # NAME TEXT
    local out
    out=$(ctl "$1" --json inbox --all) || return 1
    grep -qF "$2" <<<"$out"
}
step "alice (instance a): p2pctl broadcast \"lunch at noon\""
ctl alice broadcast "lunch at noon"
for name in bob carol; do
    wait_for "$START_DEADLINE" "the broadcast in $name's inbox" has_broadcast "$name" "lunch at noon"
    step "$name: p2pctl inbox --all"
    ctl "$name" inbox --all
done

# ---------------------------------------------------------------- failover
step "operator: kill -9 instance a, which holds alice's session"
kill -KILL "${INSTANCE_PID[a]}"
wait "${INSTANCE_PID[a]}" 2>/dev/null || true
unset 'INSTANCE_PID[a]'
on_b() {
    local out
    out=$(ctl alice --json status) || return 1
    grep -q '"state":"online"' <<<"$out" && grep -q "\"current\":\"$(addr b)\"" <<<"$out"
}
wait_for "$FAILOVER_DEADLINE" "alice online again through instance b" on_b
step "alice: p2pctl status (back online through b by herself: no password, same pin)"
ctl alice status
step "bob: p2pctl broadcast \"still here\" (alice receives it through b)"
ctl bob broadcast "still here"
wait_for "$START_DEADLINE" "the broadcast in alice's inbox" has_broadcast alice "still here"
step "alice: p2pctl inbox --all"
ctl alice inbox --all

step "done: three instances, one user base; instance a died and nobody had to do anything"
