#!/usr/bin/env bash
# mqtt_locust.sh - fleetstorm and Locust's MqttUser (locust.contrib.mqtt)
# side by side against one mosquitto of this script's own: DEVICES (200)
# devices, each its own MQTT 3.1.1 session publishing at QoS 1 once a
# second for 30 s, run twice per tool:
#
#   steady: nothing done to the broker: CPU per acknowledged message
#           (user + sys of the tool's process, from wait4) and latency;
#   stall:  the broker stopped (SIGSTOP) from 10 s to 12 s: what each tool
#           reports against the schedule's truth, the latency of messages
#           intended at a steady rate through a 2 s stall (those intended
#           in it wait for its end; the others take the steady run's p50).
#
# Locust runs from a virtual environment with paho-mqtt 2 (LOCUST_PY
# [/tmp/locust-venv/bin/python]: python3 -m venv --system-site-packages
# /tmp/locust-venv && /tmp/locust-venv/bin/pip install "paho-mqtt>=2"),
# one process, headless, its users spawned in the first second; its
# percentiles are Locust's own (rounded to two significant figures).
# fleetstorm's payload is its heartbeat (about 560 bytes); Locust's is
# 560 bytes. Traffic goes to 127.0.0.1 only; every run ends by itself.
#
# Usage: benches/mqtt_locust.sh   (BIN [target/release/fleetstorm],
# DEVICES [200], PORT [18850]).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-target/release/fleetstorm}"
DEVICES="${DEVICES:-200}"
PORT="${PORT:-18850}"
LOCUST_PY="${LOCUST_PY:-/tmp/locust-venv/bin/python}"
DURATION=30
dir=$(mktemp -d)
broker=""
trap '[ -n "$broker" ] && kill -CONT "$broker" 2>/dev/null; [ -n "$broker" ] && kill "$broker" 2>/dev/null; rm -rf "$dir"' EXIT

start_broker() {
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\nset_tcp_nodelay true\npersistence false\nlog_dest none\n' \
    "$PORT" > "$dir/m.conf"
  /usr/sbin/mosquitto -c "$dir/m.conf" &
  broker=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

stop_broker() {
  kill "$broker"
  wait "$broker" 2>/dev/null || true
  broker=""
}

# Runs a command in the background; prints its CPU seconds (user + sys)
# into the file $1 when it ends.
timed() {
  local out=$1
  shift
  python3 - "$out" "$@" <<'PY' &
import os, subprocess, sys
p = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, ru = os.wait4(p.pid, 0)
open(sys.argv[1], "w").write(f"{ru.ru_utime + ru.ru_stime:.3f}\n")
PY
}

cat > "$dir/s.toml" <<TOML
name = "mqtt-vs-locust"
seed = 11
duration = "${DURATION}s"
[target]
url = "mqtt://127.0.0.1:$PORT"
timeout = "10s"
[[fleets]]
name = "devices"
devices = $DEVICES
interval = "1s"
device_name = "fs-{index}"
profile = "mqtt"
[fleets.mqtt]
topic = "devices/{device}/telemetry"
qos = 1
TOML

for case in steady stall; do
  for tool in fleetstorm locust; do
    start_broker
    if [ "$tool" = fleetstorm ]; then
      timed "$dir/$tool-$case.cpu" "$BIN" run "$dir/s.toml" --quiet --out "$dir/$tool-$case.json"
    else
      MQTT_PORT=$PORT timed "$dir/$tool-$case.cpu" "$LOCUST_PY" -m locust -f benches/mqtt_locust.py --headless \
        -u "$DEVICES" -r "$DEVICES" -t "${DURATION}s" --csv "$dir/$tool-$case" --only-summary
    fi
    runner=$!
    if [ "$case" = stall ]; then
      sleep 10
      kill -STOP "$broker"
      sleep 2
      kill -CONT "$broker"
    fi
    wait "$runner"
    stop_broker
  done
done

python3 - "$dir" "$DEVICES" <<'PY'
import csv, json, sys
d, devices = sys.argv[1], int(sys.argv[2])

def fleetstorm(case):
    t = json.load(open(f"{d}/fleetstorm-{case}.json"))["totals"]
    l = t["latency_ms"]
    return dict(ok=t["ok"], failed=t["failed"], p50=l["p50"], p95=l["p95"], p99=l["p99"], max=l["max"])

def locust(case):
    rows = list(csv.DictReader(open(f"{d}/locust-{case}_stats.csv")))
    r = next(r for r in rows if r["Name"] == "Aggregated")
    n, f = int(r["Request Count"]), int(r["Failure Count"])
    return dict(ok=n - f, failed=f, p50=float(r["50%"]), p95=float(r["95%"]), p99=float(r["99%"]),
                max=float(r["Max Response Time"]))

def cpu(tool, case):
    return float(open(f"{d}/{tool}-{case}.cpu").read())

# The schedule's truth through a 2 s stall at a steady rate: a message
# intended t into the stall waits 2 - t more; the others take the steady
# run's p50 (fleetstorm's own, the lower of the two tools').
def truth(base_ms, duration_s=30.0, stall_s=2.0, q=(50, 95, 99)):
    n = 100_000
    lat = []
    for i in range(n):
        t = duration_s * i / n
        lat.append((10.0 + stall_s - t) * 1000 + base_ms if 10.0 <= t < 10.0 + stall_s else base_ms)
    lat.sort()
    return {f"p{p}": lat[min(n - 1, int(n * p / 100))] for p in q} | {"max": stall_s * 1000 + base_ms}

print("| case | tool | acknowledged | failed | p50 ms | p95 ms | p99 ms | max ms | CPU s | CPU µs per message |")
print("|---|---|---|---|---|---|---|---|---|---|")
for case in ("steady", "stall"):
    for tool, read in (("fleetstorm", fleetstorm), ("locust", locust)):
        r, c = read(case), cpu(tool, case)
        print(f"| {case} | {tool} | {r['ok']:,} | {r['failed']:,} | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | "
              f"{r['max']:.2f} | {c:.2f} | {c * 1e6 / max(r['ok'], 1):.1f} |")
base = fleetstorm("steady")["p50"]
t = truth(base)
print(f"| stall | **truth** (schedule, base {base:.2f} ms) | | | {t['p50']:.2f} | {t['p95']:.2f} | {t['p99']:.2f} | "
      f"{t['max']:.2f} | | |")
PY
