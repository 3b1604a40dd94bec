# Shared by demo.sh and bench-send.sh: process clean-up, per-user p2pctl,
# deadline-bounded waits. Source it after setting:
#   WORK   the run's temporary directory (short: Unix sockets are limited to 108 bytes)
#   BIN    where the binaries are
#   LABEL  "demo" or "bench", for messages
#   KEEP   1 to keep WORK after the run
#   POLL   seconds between polls
# and `declare -A DAEMON_PID=()`, SERVER_PID, CONNECT_PID.
# shellcheck shell=bash

die() { echo "$LABEL: $*" >&2; exit 1; }

stop() { # PID: SIGTERM, up to 5 s to exit, then SIGKILL.
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? name
    trap - EXIT INT TERM
    if [[ -n $CONNECT_PID ]]; then stop "$CONNECT_PID"; fi
    for name in "${!DAEMON_PID[@]}"; do stop "${DAEMON_PID[$name]}"; done
    if [[ -n $SERVER_PID ]]; then stop "$SERVER_PID"; fi
    if ((rc != 0)); then
        echo
        echo "$LABEL FAILED (exit $rc); last log lines:" >&2
        for f in "$WORK"/server.log "$WORK"/*/p2pd.log; do
            [[ -f $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
        done
    fi
    if [[ ${KEEP:-} == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf -- "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Everything below must find this run's daemons, not the caller's.
unset P2PD_SOCKET

as_user() { # NAME COMMAND...: runs COMMAND with NAME's HOME and XDG dirs
    local name=$1
    shift
    env HOME="$WORK/$name" \
        XDG_RUNTIME_DIR="$WORK/$name/run" \
        XDG_STATE_HOME="$WORK/$name/state" \
        XDG_CONFIG_HOME="$WORK/$name/config" \
        "$@"
}

ctl() { # NAME ARGS...: p2pctl as NAME (default socket, state and config paths)
    local name=$1
    shift
    as_user "$name" "$BIN/p2pctl" "$@"
}

wait_for() { # SECONDS WHAT COMMAND...: polls COMMAND until it succeeds
    local secs=$1 what=$2
    shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || die "timed out after ${secs}s waiting for $what"
        sleep "$POLL"
    done
}

has_request() { # NAME USER: USER's invitation waits in NAME's `p2pctl requests`
    local out
    out=$(ctl "$1" --json requests) || return 1
    grep -q "\"from\":\"$2\"" <<<"$out"
}

# start_server ADDR: starts p2p-server on WORK/server in the background and
# sets PORT from its "p2p-server listening on ADDR" line (WORK/server.out).
start_server() {
    : >"$WORK/server.out"
    # A plain command, not a function, so that $! is p2p-server itself.
    # Metrics on an ephemeral port: a running server (or another demo) may
    # hold the default 9464.
    "$BIN/p2p-server" --data-dir "$WORK/server" --listen "$1" --metrics-listen 127.0.0.1:0 \
        >"$WORK/server.out" 2>>"$WORK/server.log" &
    SERVER_PID=$!
    local end=$((SECONDS + START_DEADLINE)) line=""
    while :; do
        line=$(grep -m1 '^p2p-server listening on ' "$WORK/server.out" || true)
        [[ -n $line ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "p2p-server exited during start-up"
        ((SECONDS < end)) || die "p2p-server did not report 'listening on' within ${START_DEADLINE}s"
        sleep "$POLL"
    done
    PORT=${line##*:}
}

# start_daemon NAME: starts NAME's p2pd (own HOME and XDG dirs under WORK)
# and waits until its control socket answers.
start_daemon() {
    local name=$1
    mkdir -p "$WORK/$name"/{run,state,config}
    chmod 700 "$WORK/$name" "$WORK/$name/run"
    # as_user is a function, but env execs p2pd, so $! is the daemon itself.
    env HOME="$WORK/$name" \
        XDG_RUNTIME_DIR="$WORK/$name/run" \
        XDG_STATE_HOME="$WORK/$name/state" \
        XDG_CONFIG_HOME="$WORK/$name/config" \
        "$BIN/p2pd" --peer-listen 127.0.0.1:0 2>"$WORK/$name/p2pd.log" &
    DAEMON_PID[$name]=$!
    wait_for "$START_DEADLINE" "$name's p2pd control socket" ctl "$name" status
}
