#!/usr/bin/env bash
# Runs the units in this directory under a real systemd, on a machine where
# systemd is not PID 1 (a container, a CI runner): p2p-server.service with
# its sandbox, then p2pd.socket + p2pd.service, showing socket activation,
# readiness (Type=notify), the STATUS= text and re-activation after a stop.
#
#   packaging/systemd/check-user-units.sh      # builds, then checks
#   P2P_BIN_DIR=target/release packaging/systemd/check-user-units.sh
#
# How: in a private mount namespace (unshare --mount), a tmpfs on /run
# with an empty /run/systemd/system makes `systemd --user`
# believe the machine was booted with systemd (that directory is what
# sd_booted() looks at). The tmpfs also gets the /run/systemd/inaccessible
# nodes that PID 1 would have made: the sandboxing options mount them over
# what they hide (ProtectHome= over /home, ...), and without them a
# sandboxed start fails with 226/NAMESPACE. The manager gets its own
# XDG_RUNTIME_DIR, HOME and XDG dirs under a temp dir, so nothing of the
# real user is touched; the units are the ones in this directory with
# ExecStart pointed at the built binaries.
#
# p2p-server.service is a system unit; it runs here under the same (root)
# user manager, which applies DynamicUser=, StateDirectory= and every
# sandboxing option of the unit as the system manager would. Its drop-in
# only sends stdout to a file (there is no journald).
#
# Needs root (unshare, mount, mknod; a user namespace cannot make the device
# nodes). Exits non-zero on the first check that fails.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
deadline=30 # seconds for anything this script waits for

# p2p-server.service has DynamicUser=, which implies PrivateTmp=: the
# service sees an empty /tmp (and /var/tmp), so binaries there cannot be
# started and the unit exits 203/EXEC without a word of why.
refuse_private_tmp() {
  local real
  real="$(realpath -m "$1")"
  case "$real/" in
    /tmp/* | /var/tmp/*)
      echo "check-user-units.sh: the binaries are in $real, under /tmp or /var/tmp;" \
        "p2p-server.service has DynamicUser= (so PrivateTmp=) and would see an empty" \
        "directory there and exit 203/EXEC. Build or copy them elsewhere" \
        "(e.g. CARGO_TARGET_DIR=/var/cache/p2p-target) and set P2P_BIN_DIR." >&2
      exit 1
      ;;
  esac
}
if [ -n "${P2P_BIN_DIR:-}" ]; then
  refuse_private_tmp "$P2P_BIN_DIR"
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "check-user-units.sh needs root (see the top of the file)" >&2
  exit 1
fi
if [ -z "${P2P_CHECK_IN_NAMESPACE:-}" ]; then
  if [ -z "${P2P_BIN_DIR:-}" ]; then
    P2P_BIN_DIR="${CARGO_TARGET_DIR:-$repo/target}/debug"
    refuse_private_tmp "$P2P_BIN_DIR"
    (cd "$repo" && cargo build --quiet --workspace --bins)
  fi
  P2P_BIN_DIR="$(cd "$P2P_BIN_DIR" && pwd)"
  export P2P_BIN_DIR P2P_CHECK_IN_NAMESPACE=1
  exec unshare --mount --propagation private "$0" "$@"
fi

# Inside the private mount namespace from here on.
for b in p2pd p2pctl p2p-server; do
  [ -x "$P2P_BIN_DIR/$b" ] || { echo "missing $P2P_BIN_DIR/$b" >&2; exit 1; }
done
# All of /run, so that what the manager creates there (/run/credentials,
# /run/mount) disappears with the namespace.
mount -n -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/system
mkdir -m 0755 /run/systemd/inaccessible
mkdir -m 0000 /run/systemd/inaccessible/dir
install -m 0000 /dev/null /run/systemd/inaccessible/reg
mkfifo -m 0000 /run/systemd/inaccessible/fifo
mknod -m 0000 /run/systemd/inaccessible/chr c 0 0
mknod -m 0000 /run/systemd/inaccessible/blk b 0 0

tmp="$(mktemp -d /tmp/p2p-sd.XXXXXX)"
manager=""
cleanup() {
  if [ -n "$manager" ]; then
    systemctl --user stop p2pd.service p2pd.socket p2p-server.service 2>/dev/null || true
    kill "$manager" 2>/dev/null && wait "$manager" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Polls COMMAND until it succeeds or the deadline passes.
wait_until() {
  local what="$1"
  shift
  local end=$((SECONDS + deadline))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then
      echo "timed out after ${deadline}s waiting for $what" >&2
      return 1
    fi
    sleep 0.05
  done
}

# Prints a command, runs it, and prints a blank line.
show() {
  echo "\$ $*"
  "$@"
  echo
}

status_text() { systemctl --user show -P StatusText p2pd.service; }
online() { status_text | grep -q '^online as alice'; }
retrying() { status_text | grep -q 'retrying in'; }

# The runtime dir (and so the manager's NOTIFY_SOCKET) on the private /run,
# neither under /tmp (p2p-server.service has PrivateTmp=yes) nor under
# /run/user (ProtectHome=yes hides it): the service must reach the notify
# socket to say READY=1 (Type=notify). Its dynamic user must be able to
# pass through the directory (0711) to that socket.
run_dir=/run/p2p-check
mkdir -p "$run_dir" "$tmp/home" "$tmp/config/systemd/user" "$tmp/state" "$tmp/config/p2p"
chmod 0711 "$run_dir"
export XDG_RUNTIME_DIR="$run_dir" HOME="$tmp/home"
export XDG_CONFIG_HOME="$tmp/config" XDG_STATE_HOME="$tmp/state"
unset DBUS_SESSION_BUS_ADDRESS P2PD_SOCKET NOTIFY_SOCKET LISTEN_PID LISTEN_FDS
units="$XDG_CONFIG_HOME/systemd/user"

# The units as shipped, with the binary paths of this build.
cp "$here/p2pd.socket" "$units/"
sed "s|^ExecStart=/usr/local/bin/p2pd\$|ExecStart=$P2P_BIN_DIR/p2pd|" \
  "$here/p2pd.service" >"$units/p2pd.service"
grep -q "^ExecStart=$P2P_BIN_DIR/p2pd\$" "$units/p2pd.service"
sed "s|^ExecStart=/usr/local/bin/p2p-server\$|ExecStart=$P2P_BIN_DIR/p2p-server --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0|" \
  "$here/p2p-server.service" >"$units/p2p-server.service"
grep -q "^ExecStart=$P2P_BIN_DIR/p2p-server " "$units/p2p-server.service"
mkdir -p "$units/p2p-server.service.d"
{
  echo "[Service]"
  echo "# No journald here: the \"listening on\" line goes to a file."
  echo "StandardOutput=file:$tmp/server.out"
} >"$units/p2p-server.service.d/check.conf"
# Quick reconnects so the "retrying" status shows within seconds.
printf 'reconnect_min = "1s"\nreconnect_max = "30s"\n' >"$XDG_CONFIG_HOME/p2p/p2pd.toml"

/lib/systemd/systemd --user >"$tmp/manager.log" 2>&1 &
manager=$!
wait_until "systemd --user" test -S "$XDG_RUNTIME_DIR/systemd/private"
wait_until "systemd --user to finish starting up" systemctl --user is-system-running
# The system manager's notify socket (/run/systemd/notify) is writable by
# every user, so a DynamicUser= service can say READY=1; a user manager's is
# 0755. Open it as the system manager's is.
chmod 0777 "$XDG_RUNTIME_DIR/systemd/notify"
echo "systemd --user $(systemctl --user --version | head -1 | cut -d' ' -f2) running as pid $manager"
echo

echo "== p2p-server.service (system unit, sandboxed)"
show cat "$units/p2p-server.service.d/check.conf"
# As docs/systemd.md says to: the service's dynamic user, its StateDirectory.
echo "\$ printf 'correct horse\\n' | systemd-run --user --pipe --wait --quiet -p DynamicUser=yes -p User=p2p-server -p StateDirectory=p2p-server p2p-server user add alice --password-stdin"
printf 'correct horse\n' | systemd-run --user --pipe --wait --quiet \
  -p DynamicUser=yes -p User=p2p-server -p StateDirectory=p2p-server \
  "$P2P_BIN_DIR/p2p-server" user add alice --password-stdin
echo
show systemctl --user start p2p-server.service
wait_until "p2p-server to listen" grep -q "^p2p-server listening on " "$tmp/server.out"
addr="$(sed -n 's/^p2p-server listening on //p' "$tmp/server.out")"
show systemctl --user status --no-pager --lines=0 p2p-server.service
# Type=notify: active only after READY=1, with STATUS= from the server.
systemctl --user show -P StatusText p2p-server.service | grep -q 'sessions online'
pid="$(systemctl --user show -P MainPID p2p-server.service)"
# ExecReload= (SIGHUP) reloads in place: same process, still active.
show systemctl --user reload p2p-server.service
wait_until "p2p-server to be active after the reload" systemctl --user is-active p2p-server.service
[ "$(systemctl --user show -P MainPID p2p-server.service)" = "$pid" ]
# The admin socket in its state directory answers root.
state_dir="$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n 's/^STATE_DIRECTORY=//p')"
show "$P2P_BIN_DIR/p2p-server" status --data-dir "$state_dir"
echo "p2p-server runs as uid $(ps -o uid= -p "$pid" | tr -d ' ') (DynamicUser), with" \
  "$(tr '\0' '\n' <"/proc/$pid/environ" | grep '^STATE_DIRECTORY=')"
echo
# Accounts change while it runs, without taking its files away from it
# (the login below still works).
echo "\$ printf 'battery staple\\n' | systemd-run --user --pipe --wait --quiet -p DynamicUser=yes -p User=p2p-server -p StateDirectory=p2p-server p2p-server user add bob --password-stdin"
printf 'battery staple\n' | systemd-run --user --pipe --wait --quiet \
  -p DynamicUser=yes -p User=p2p-server -p StateDirectory=p2p-server \
  "$P2P_BIN_DIR/p2p-server" user add bob --password-stdin
echo

echo "== p2pd.socket + p2pd.service (user units)"
show systemctl --user start p2pd.socket
show systemctl --user is-active p2pd.socket
show systemctl --user is-active p2pd.service || true
echo "(p2pd is not running yet; the next command starts it through the socket)"
echo
show "$P2P_BIN_DIR/p2pctl" status
wait_until "p2pd to report READY=1" systemctl --user is-active p2pd.service
show systemctl --user status --no-pager --lines=0 p2pd.service

echo "\$ printf 'correct horse\\n' | p2pctl login --server $addr --user alice --password-stdin --trust-on-first-use"
printf 'correct horse\n' | "$P2P_BIN_DIR/p2pctl" login --server "$addr" --user alice --password-stdin --trust-on-first-use
echo
wait_until "STATUS=online as alice" online
show systemctl --user status --no-pager --lines=0 p2pd.service

# The server goes away: p2pd keeps retrying and says so in STATUS=.
show systemctl --user stop p2p-server.service
wait_until "STATUS=... retrying in ..." retrying
show systemctl --user status --no-pager --lines=0 p2pd.service

# A stop leaves the socket to systemd; the next p2pctl starts p2pd again.
show systemctl --user stop p2pd.service
show systemctl --user is-active p2pd.socket
show ls -l "$XDG_RUNTIME_DIR/p2p/"
show "$P2P_BIN_DIR/p2pctl" status
wait_until "p2pd to be active again" systemctl --user is-active p2pd.service
show systemctl --user status --no-pager --lines=0 p2pd.service
echo "OK: p2p-server sandboxed, READY=1, reload and admin socket; p2pd socket activation, READY=1, STATUS= and re-activation after a stop, under systemd --user"
