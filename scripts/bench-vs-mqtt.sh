#!/usr/bin/env bash
# Side by side with mosquitto (issue 12): the same broadcast scenarios, the
# same pinning (server or broker on CPU 0, load tool on CPU 1), run
# alternately (A B A B) so the machine's drift hits both, and ONE table with
# both and the ratios. A benchmark: it reports figures, asserts nothing.
#
#   A = mosquitto 2 (plain TCP, persistence false) + the anchor tool from
#       ../shared/bench/mqtt-anchor (rumqttc, QoS 1; see its RESULTS.md)
#   B = p2p-server (TLS) + p2p-load (fanout, then catchup)
#
# Usage: scripts/bench-vs-mqtt.sh [N ...]     (default: 1000 5000 10000)
#
# Environment:
#   ROUNDS=R        measured fan-out rounds per run, after 1 warm-up (default 5)
#   PAIRS=P         A B pairs per N (default 2: A B A B)
#   QUIET_MAX=S     longest wait for a quiet machine before each run (default 120)
#   ANCHOR_DIR=DIR  the anchor tool's source (default ../shared/bench/mqtt-anchor)
#   MQTT_PORT=P     the broker's port (default 18830)
#   WORK=DIR        builds of the anchor tool, logs (default target/mqtt-anchor)
#
# Needs mosquitto (installed with apt-get when missing and run as root),
# taskset, python3, and 2 CPUs (0 and 1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SIZES=("$@")
if ((${#SIZES[@]} == 0)); then SIZES=(1000 5000 10000); fi
ROUNDS=${ROUNDS:-5}
PAIRS=${PAIRS:-2}
QUIET_MAX=${QUIET_MAX:-120}
ANCHOR_DIR=${ANCHOR_DIR:-$ROOT/../shared/bench/mqtt-anchor}
MQTT_PORT=${MQTT_PORT:-18830}
# Outside ../shared, which is read-only.
WORK=${WORK:-$ROOT/target/mqtt-anchor}
LOGS="$WORK/logs/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$WORK/conf" "$LOGS"

die() { echo "bench-vs-mqtt: $*" >&2; exit 1; }

if ! command -v mosquitto >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto >/dev/null
    else
        die "mosquitto is missing: apt-get install mosquitto (as root)"
    fi
fi
command -v taskset >/dev/null || die "taskset is missing (util-linux)"
command -v python3 >/dev/null || die "python3 is missing"
[[ -f $ANCHOR_DIR/Cargo.toml ]] || die "no anchor tool in $ANCHOR_DIR"

echo "building the anchor tool and p2p-load/p2p-server (release)..." >&2
cargo build --release --quiet --manifest-path "$ANCHOR_DIR/Cargo.toml" --target-dir "$WORK/target"
cargo build --release --quiet -p p2p-loadgen --bin p2p-load -p p2p-server --bin p2p-server
ANCHOR="$WORK/target/release/mqtt-anchor"
P2P_LOAD="${CARGO_TARGET_DIR:-$ROOT/target}/release/p2p-load"

# Each side needs one fd per session: as far as the hard limit allows.
ulimit -n "$(ulimit -Hn)"
for n in "${SIZES[@]}"; do
    if ((n + 64 > $(ulimit -n))); then
        echo "bench-vs-mqtt: warning: N=$n needs about $((n + 64)) fds per process, the limit is $(ulimit -n)" >&2
    fi
done

# Other jobs distort the figures: wait (up to QUIET_MAX s) until the machine
# is at most 5 % busy over 2 s, then measure anyway (and say so).
wait_quiet() {
    local end=$((SECONDS + QUIET_MAX)) u n s idle iow irq sirq b1 t1 b2 t2 pct
    while :; do
        read -r _ u n s idle iow irq sirq _ </proc/stat; b1=$((u + n + s + irq + sirq)); t1=$((b1 + idle + iow))
        sleep 2
        read -r _ u n s idle iow irq sirq _ </proc/stat; b2=$((u + n + s + irq + sirq)); t2=$((b2 + idle + iow))
        pct=$((100 * (b2 - b1) / (t2 - t1 > 0 ? t2 - t1 : 1)))
        if ((pct <= 5)); then return 0; fi
        if ((SECONDS >= end)); then
            echo "bench-vs-mqtt: machine still ${pct}% busy after ${QUIET_MAX}s; measuring anyway" >&2
            return 0
        fi
        sleep 3
    done
}

BPID=""
stop_broker() {
    if [[ -n $BPID ]] && kill -0 "$BPID" 2>/dev/null; then
        kill -TERM "$BPID"; wait "$BPID" 2>/dev/null || true
    fi
    BPID=""
}
trap stop_broker EXIT

run_mqtt() { # N PAIR
    local n=$1 pair=$2 conf="$WORK/conf/mosquitto.conf" i
    cat >"$conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
max_queued_messages 100000
set_tcp_nodelay true
persistence false
log_dest stderr
log_type error
log_type warning
connection_messages false
CONF
    taskset -c 0 mosquitto -c "$conf" >"$LOGS/mosquitto-$n-$pair.log" 2>&1 &
    BPID=$!
    for ((i = 0; i < 100; i++)); do
        ss -ltn | grep -q "127.0.0.1:$MQTT_PORT " && break
        sleep 0.1
    done
    ss -ltn | grep -q "127.0.0.1:$MQTT_PORT " || die "mosquitto did not start: $(cat "$LOGS/mosquitto-$n-$pair.log")"
    wait_quiet
    taskset -c 1 "$ANCHOR" --workers 1 mqtt --port "$MQTT_PORT" --n "$n" --broker-pid "$BPID" \
        --rounds "$ROUNDS" --catchup-reps 1 --quiet-max-secs "$QUIET_MAX" \
        --tag "vs$n-$pair-$(date +%s)" >"$LOGS/mqtt-$n-$pair.log" 2>"$LOGS/mqtt-$n-$pair.err" \
        || die "anchor tool failed at N=$n: $(tail -5 "$LOGS/mqtt-$n-$pair.err")"
    stop_broker
}

run_p2p() { # N PAIR
    local n=$1 pair=$2 pin=(--server-cpus 0 --client-cpus 1 --json)
    wait_quiet
    "$P2P_LOAD" fanout --online "$n" --rounds "$ROUNDS" "${pin[@]}" \
        >"$LOGS/p2p-fanout-$n-$pair.json" 2>"$LOGS/p2p-fanout-$n-$pair.err" \
        || die "p2p-load fanout failed at N=$n: $(tail -5 "$LOGS/p2p-fanout-$n-$pair.err")"
    wait_quiet
    "$P2P_LOAD" catchup --sessions "$n" "${pin[@]}" \
        >"$LOGS/p2p-catchup-$n-$pair.json" 2>"$LOGS/p2p-catchup-$n-$pair.err" \
        || die "p2p-load catchup failed at N=$n: $(tail -5 "$LOGS/p2p-catchup-$n-$pair.err")"
}

echo "machine: nproc=$(nproc) kernel=$(uname -r) $(mosquitto -h 2>/dev/null | head -1) fd_limit=$(ulimit -n)"
echo "command: scripts/bench-vs-mqtt.sh ${SIZES[*]} (ROUNDS=$ROUNDS PAIRS=$PAIRS); logs in $LOGS"
for n in "${SIZES[@]}"; do
    for ((pair = 1; pair <= PAIRS; pair++)); do
        echo "N=$n pair $pair/$PAIRS: mosquitto..." >&2
        run_mqtt "$n" "$pair"
        echo "N=$n pair $pair/$PAIRS: p2p..." >&2
        run_p2p "$n" "$pair"
    done
done

python3 - "$LOGS" "${SIZES[@]}" <<'PY'
import glob, json, re, statistics, sys

logs, sizes = sys.argv[1], [int(n) for n in sys.argv[2:]]

def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None

def mqtt(n):
    """Per run of the anchor tool: its figures, comparable to p2p-load's."""
    runs = []
    for path in sorted(glob.glob(f"{logs}/mqtt-{n}-*.log")):
        text = open(path).read()
        def summary(phase, key):
            m = re.search(rf"^SUMMARY {phase} n={n} {key} .*?median=([0-9.]+)", text, re.M)
            return float(m.group(1)) if m else None
        def result(phase, key):
            vals = re.findall(rf"^RESULT phase={phase} n={n} (?!round=0)[^\n]*?\b{key}=([0-9.]+)", text, re.M)
            return med([float(x) for x in vals])
        cpu = summary("fanout", "broker_cpu_ms_per_broadcast")
        runs.append({
            "fanout": summary("fanout", "all_received_ms"),
            "store": result("offline", "puback_ms_queue_for_offline"),
            "cpu_us": cpu * 1000 / n if cpu is not None else None,
            "rss": result("mem_online", "bytes_per_online_session"),
            "catchup": summary("catchup", "all_received_ms"),
            "catchup_cpu": result("catchup", "broker_cpu_ms"),
        })
    return runs

def p2p(n):
    runs = []
    for path in sorted(glob.glob(f"{logs}/p2p-fanout-{n}-*.json")):
        f = json.load(open(path))
        c = json.load(open(path.replace("p2p-fanout-", "p2p-catchup-")))
        runs.append({
            "fanout": f["fanout_all_ms_median"],
            "store": f["store_ms_median"],
            "cpu_us": f["server_cpu_us_per_delivery"],
            "rss": f["server_rss_bytes_per_session"],
            "catchup": c["catchup_all_ms"],
            "catchup_cpu": c["server_cpu_ms"],
        })
    return runs

rows = [
    ("fanout", "fan-out, all N have it (ms)"),
    ("store", "sender's answer (ms)"),
    ("cpu_us", "server CPU per delivery (µs)"),
    ("rss", "RSS per online session (bytes)"),
    ("catchup", "catch-up, N resume + receive (ms)"),
    ("catchup_cpu", "server CPU during catch-up (ms)"),
]
fmt = lambda x: "—" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.1f}")
print()
print("| N | figure | mosquitto (TCP) | p2p-server (TLS) | ratio p2p / mosquitto |")
print("|---|---|---|---|---|")
for n in sizes:
    a, b = mqtt(n), p2p(n)
    for key, label in rows:
        x, y = med(r[key] for r in a), med(r[key] for r in b)
        ratio = f"×{y / x:.2f}" if x and y is not None else "—"
        print(f"| {n:,} | {label} | {fmt(x)} | {fmt(y)} | {ratio} |")
print()
print("medians over the runs of each side; per run: the median of its rounds.")
print("mosquitto's 'sender's answer' is its PUBACK for a message queued for N offline sessions.")
PY
