#!/usr/bin/env bash
# The whole thing: one rendezvous server and three users (alice, bob and,
# for the broadcast, carol), each with their own p2pd, on 127.0.0.1 only,
# in a fresh temporary directory. Shows login, presence (list), status, a refused wrong
# password, alice inviting bob and bob accepting, messages both ways over
# the direct encrypted session, the inbox, the session carrying messages
# while the server is down, both daemons coming back by themselves after the
# server restarts, `send USER -` in a pipeline, contacts and their safety
# numbers (the same on both sides), a message queued in alice's outbox while
# bob's daemon is stopped and delivered once when the session between the
# contacts comes back by itself (`outbox`, `history`), and a broadcast: alice
# broadcasts, bob (online) has it at once, and carol, whose daemon is
# started only after it was sent, gets it when she logs in.
#
# Usage: scripts/demo.sh        (KEEP_DEMO_DIR=1 keeps the temp dir and logs)
# The binaries come from ${CARGO_TARGET_DIR:-target}/debug, built first.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# Readiness deadlines, in seconds. Polling with short sleeps is fine here:
# this is a demo script, not a test.
START_DEADLINE=20
RECONNECT_DEADLINE=30
# `connect` waits for bob's answer (p2pd gives up when the invitation
# expires: 5 minutes by default).
CONNECT_DEADLINE=310
POLL=0.1

step() { printf '\n== %s\n' "$*"; }

echo "== building (cargo build --workspace)"
cargo build --workspace --quiet
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac

# Short path: Unix socket paths are limited to 108 bytes.
DEMO=$(mktemp -d /tmp/p2pdemo.XXXXXX)
SERVER_PID=""
CONNECT_PID=""
declare -A DAEMON_PID=()

WORK=$DEMO LABEL=demo KEEP=${KEEP_DEMO_DIR:-}
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

declare -A PASSWORD=([alice]="alice-demo-pw" [bob]="bob-demo-pw" [carol]="carol-demo-pw")

# p2p-server with the demo's data dir.
server() { "$BIN/p2p-server" --data-dir "$DEMO/server" "$@"; }

# show_inbox NAME TEXT WHAT: prints NAME's `p2pctl inbox` and fails unless
# it holds TEXT.
show_inbox() {
    local out
    out=$(ctl "$1" inbox)
    printf '%s\n' "$out"
    grep -qF -- "$2" <<<"$out" || die "$1's inbox lacks $3"
}

login() {
    local name=$1
    printf '%s\n' "${PASSWORD[$name]}" |
        ctl "$name" login --server "127.0.0.1:$PORT" --user "$name" --password-stdin --fingerprint "$FINGERPRINT"
}

# Readiness checks. Output is captured first (no `| grep -q`), so a failed
# p2pctl is never mistaken for an answer.
state_is() { # NAME STATE
    local out
    out=$(ctl "$1" --json status) || return 1
    grep -q "\"state\":\"$2\"" <<<"$out"
}
lists() { # NAME USER: USER is in NAME's `p2pctl list`
    local out
    out=$(ctl "$1" list) || return 1
    grep -q "^$2 " <<<"$out"
}
not_lists() { # NAME USER: `p2pctl list` works and USER is not in it
    local out
    out=$(ctl "$1" list) || return 1
    ! grep -q "^$2 " <<<"$out"
}
has_session() { # NAME USER: NAME has a session with USER
    local out
    out=$(ctl "$1" --json sessions) || return 1
    grep -q "\"peer\":\"$2\"" <<<"$out"
}
no_session() { # NAME USER: `p2pctl sessions` works and has none with USER
    local out
    out=$(ctl "$1" --json sessions) || return 1
    ! grep -q "\"peer\":\"$2\"" <<<"$out"
}
has_unread() { # NAME: NAME's daemon holds at least one unread inbox entry.
    # `status` counts them without marking anything read (`inbox` would).
    local out
    out=$(ctl "$1" --json status) || return 1
    grep -q '"unread":[1-9]' <<<"$out"
}

# ---------------------------------------------------------------- operator
step "operator: p2p-server user add alice / bob (password on stdin)"
for name in alice bob; do
    printf '%s\n' "${PASSWORD[$name]}" | server user add "$name" --password-stdin
done
server user list

step "operator: p2p-server --listen 127.0.0.1:0 (self-signed TLS certificate made on first start)"
start_server 127.0.0.1:0
cat "$DEMO/server.out"

step "operator: p2p-server fingerprint (what users pass to --fingerprint)"
FINGERPRINT=$(server fingerprint)
echo "$FINGERPRINT"

# ---------------------------------------------------------------- users
step "users: start p2pd for alice and bob (--peer-listen 127.0.0.1:0)"
start_daemon alice
echo "alice's p2pd is up (socket $DEMO/alice/run/p2p/p2pd.sock)"
start_daemon bob
echo "bob's p2pd is up (socket $DEMO/bob/run/p2p/p2pd.sock)"

step "bob: p2pctl login with a wrong password (must be refused)"
set +e
printf 'not-my-password\n' |
    ctl bob login --server "127.0.0.1:$PORT" --user bob --password-stdin --fingerprint "$FINGERPRINT" 2>&1
rc=$?
set -e
echo "exit code: $rc"
((rc != 0)) || die "a wrong password was accepted"

for name in alice bob; do
    step "$name: p2pctl login --server 127.0.0.1:$PORT --user $name --password-stdin --fingerprint $FINGERPRINT"
    login "$name"
done

for name in alice bob; do
    step "$name: p2pctl list"
    ctl "$name" list
    step "$name: p2pctl status"
    ctl "$name" status
    step "$name: p2pctl --json status"
    ctl "$name" --json status
done

# ---------------------------------------------------------------- sessions
step "alice: p2pctl connect bob   (in the background: it waits for bob's answer)"
# A plain command, not a function, so that $! is p2pctl itself.
env HOME="$DEMO/alice" \
    XDG_RUNTIME_DIR="$DEMO/alice/run" \
    XDG_STATE_HOME="$DEMO/alice/state" \
    XDG_CONFIG_HOME="$DEMO/alice/config" \
    "$BIN/p2pctl" connect bob >"$DEMO/connect.out" 2>&1 &
CONNECT_PID=$!
wait_for "$START_DEADLINE" "alice's invitation in bob's requests" has_request bob alice

step "bob: p2pctl requests"
ctl bob requests

step "bob: p2pctl accept alice   (alice's daemon dials bob's; Noise XX, keys checked)"
ctl bob accept alice

step "alice: her p2pctl connect bob returns"
exited() { ! kill -0 "$1" 2>/dev/null; }
wait_for "$CONNECT_DEADLINE" "alice's p2pctl connect to return" exited "$CONNECT_PID"
set +e
wait "$CONNECT_PID"
rc=$?
set -e
CONNECT_PID=""
cat "$DEMO/connect.out"
echo "exit code: $rc"
((rc == 0)) || die "p2pctl connect bob failed"

for name in alice bob; do
    step "$name: p2pctl sessions"
    ctl "$name" sessions
done

step "alice: p2pctl send bob \"hello bob\"   (returns once bob's p2pd stored it)"
ctl alice send bob "hello bob"
step "bob: p2pctl send alice \"hi alice\""
ctl bob send alice "hi alice"

step "bob: p2pctl inbox"
show_inbox bob "alice: hello bob" "alice's message"
step "alice: p2pctl inbox"
show_inbox alice "bob: hi alice" "bob's message"

# ---------------------------------------------------------------- restart
step "operator: stop p2p-server (SIGTERM)"
stop "$SERVER_PID"
SERVER_PID=""
echo "p2p-server stopped"
wait_for "$START_DEADLINE" "alice to notice the server is gone" state_is alice connecting

step "alice: p2pctl status (server down: p2pd retries with backoff)"
ctl alice status

step "alice: p2pctl list (server down)"
set +e
ctl alice list 2>&1
rc=$?
set -e
echo "exit code: $rc"
((rc == 4)) || die "expected exit code 4 while the server is down"

step "alice: p2pctl send bob \"sent while the server is down\"   (direct link: no server needed)"
ctl alice send bob "sent while the server is down"
step "bob: p2pctl inbox"
show_inbox bob "sent while the server is down" "the message sent while the server was down"

step "operator: start p2p-server again on 127.0.0.1:$PORT"
start_server "127.0.0.1:$PORT"
cat "$DEMO/server.out"

step "waiting for both daemons to reconnect by themselves (resume token, no password)"
for name in alice bob; do
    wait_for "$RECONNECT_DEADLINE" "$name to be online again" state_is "$name" online
    echo "$name is back online"
done
wait_for "$START_DEADLINE" "bob in alice's list" lists alice bob
echo "both came back by themselves"

step "alice: p2pctl list"
ctl alice list
step "bob: p2pctl --json status"
ctl bob --json status
step "alice: p2pctl sessions   (the session outlived the server restart)"
ctl alice sessions
has_session alice bob || die "alice's session with bob did not survive the server restart"

# ---------------------------------------------------------------- pipeline
step "alice: printf 'line 1\\nline 2\\nline 3\\n' | p2pctl send bob -   (one message per line)"
printf 'line 1\nline 2\nline 3\n' | ctl alice send bob -

# `send` returned, so bob's p2pd has stored all three: no waiting needed.
step "bob: p2pctl --json inbox"
out=$(ctl bob --json inbox)
printf '%s\n' "$out"
for n in 1 2 3; do
    grep -qF "\"text\":\"line $n\"" <<<"$out" || die "line $n is not in bob's inbox"
done

# ---------------------------------------------------------------- contacts
step "alice: p2pctl contacts   (the accepted invitation made alice and bob contacts)"
ctl alice contacts
safety() { # NAME PEER: the safety number NAME's daemon shows for PEER
    local out
    out=$(ctl "$1" --json verify "$2") || return 1
    sed -n 's/.*"safety_number":"\([0-9 ]*\)".*/\1/p' <<<"$out"
}
step "alice: p2pctl verify bob; bob: p2pctl verify alice   (the same 60 digits on both sides)"
ctl alice verify bob
ctl bob verify alice
[[ -n $(safety alice bob) && $(safety alice bob) == "$(safety bob alice)" ]] ||
    die "the safety numbers differ"
step "alice: p2pctl verify bob --confirm   (they compared the numbers on a call)"
ctl alice verify bob --confirm

# ---------------------------------------------------------------- outbox
step "bob: stop p2pd (SIGTERM)   (bob goes away; he is alice's contact now)"
stop "${DAEMON_PID[bob]}"
wait_for "$START_DEADLINE" "alice to see the session end" no_session alice bob

step "alice: p2pctl send bob \"see you tomorrow\"   (no session: queued in alice's outbox, exit 0)"
out=$(ctl alice send bob "see you tomorrow")
printf '%s\n' "$out"
grep -q '^queued for bob' <<<"$out" || die "the message was not queued"
step "alice: p2pctl outbox"
ctl alice outbox

step "bob: start p2pd again   (it logs in by itself)"
start_daemon bob
wait_for "$RECONNECT_DEADLINE" "bob to be online again" state_is bob online
# Between contacts the session comes back by itself: no invitation to answer.
wait_for "$RECONNECT_DEADLINE" "the session between the contacts to come back" has_session alice bob
step "alice: p2pctl sessions   (back by itself after bob's restart, no prompt)"
ctl alice sessions
wait_for "$START_DEADLINE" "the queued message at bob" has_unread bob
step "bob: p2pctl inbox   (the queued message, delivered once when the session opened)"
show_inbox bob "alice: see you tomorrow" "the queued message"
step "alice: p2pctl history bob --limit 3   (both directions, sent ones with their status)"
ctl alice history bob --limit 3
out=$(ctl alice --json outbox)
[[ $out == '{"outbox":[]}' ]] || die "alice's outbox is not empty: $out"

# ---------------------------------------------------------------- broadcast
BROADCAST="server maintenance at 18:00"

step "operator: p2p-server user add carol --password-stdin   (no daemon for her yet)"
printf '%s\n' "${PASSWORD[carol]}" | server user add carol --password-stdin
server user list

step "alice: p2pctl broadcast \"$BROADCAST\"   (returns once the server has it on disk)"
out=$(ctl alice broadcast "$BROADCAST")
printf '%s\n' "$out"
grep -q '^broadcast [0-9]* stored' <<<"$out" || die "the broadcast was not stored"

# bob is online: the server pushed it to his daemon, which stored it.
wait_for "$START_DEADLINE" "the broadcast in bob's inbox" has_unread bob
step "bob: p2pctl inbox   (bob is online: delivered at once)"
show_inbox bob "[broadcast] alice: $BROADCAST" "the broadcast"

step "alice: p2pctl status   (the sender gets no copy: unread 0)"
out=$(ctl alice status)
printf '%s\n' "$out"
has_unread alice && die "alice got a copy of her own broadcast"

step "carol: start p2pd now, after the broadcast was sent"
start_daemon carol
echo "carol's p2pd is up (socket $DEMO/carol/run/p2p/p2pd.sock)"

step "carol: p2pctl login --server 127.0.0.1:$PORT --user carol --password-stdin --fingerprint $FINGERPRINT"
login carol

# At login the server sends carol every unexpired broadcast she has not
# acknowledged; her daemon stores it, then acknowledges.
wait_for "$START_DEADLINE" "the broadcast in carol's inbox" has_unread carol
step "carol: p2pctl inbox   (she logged in after it was sent, inside its 30 minutes)"
show_inbox carol "[broadcast] alice: $BROADCAST" "the broadcast"

step "carol: p2pctl --json inbox --all   (--all: the line above marked it read)"
out=$(ctl carol --json inbox --all)
printf '%s\n' "$out"
grep -qF '"kind":"broadcast"' <<<"$out" || die "carol's JSON inbox lacks the broadcast"
grep -qF "\"text\":\"$BROADCAST\"" <<<"$out" || die "carol's JSON inbox has the wrong text"

# ---------------------------------------------------------------- logout
step "bob: p2pctl logout"
ctl bob logout
step "bob: p2pctl status"
ctl bob status
wait_for "$START_DEADLINE" "bob to leave alice's list" not_lists alice bob
step "alice: p2pctl list"
ctl alice list

echo
echo "demo passed"
