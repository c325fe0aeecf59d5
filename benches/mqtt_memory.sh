#!/usr/bin/env bash
# mqtt_memory.sh - what a connected, idle MQTT device costs fleetstorm in
# user-space memory: fleets of 1,000, 5,000 and 10,000 devices (COUNTS),
# each its own MQTT 3.1.1 session to a mosquitto of this script's own on
# a loopback port, QoS 1 every 10 s for 30 s; fleetstorm's resident set
# (VmRSS) read at 25 s, when every session is open and each device is
# between two heartbeats. The slope between the smallest and the largest
# fleet is the cost of one more connected device (its state, its session,
# its idle wait), the fixed cost of the process left out. Kernel socket
# buffers are not in a process's RSS.
#
# Usage: benches/mqtt_memory.sh   (BIN [target/release/fleetstorm],
# COUNTS ["1000 5000 10000"], PORT [18830]). Needs mosquitto. Traffic goes
# to 127.0.0.1 only; every run ends by itself after 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-target/release/fleetstorm}"
COUNTS="${COUNTS:-1000 5000 10000}"
PORT="${PORT:-18830}"
dir=$(mktemp -d)
ulimit -n 20000
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\nset_tcp_nodelay true\npersistence false\nlog_dest none\n' \
  "$PORT" > "$dir/m.conf"
/usr/sbin/mosquitto -c "$dir/m.conf" &
broker=$!
trap 'kill $broker 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
  sleep 0.1
done
echo "| devices | fleetstorm VmRSS at 25 s (KiB) | sessions opened | failed |"
echo "|---|---|---|---|"
results=""
for n in $COUNTS; do
  cat > "$dir/s.toml" <<TOML
name = "mqtt-memory"
seed = 1
duration = "30s"
[target]
url = "mqtt://127.0.0.1:$PORT"
timeout = "5s"
[target.mqtt]
keep_alive = "60s"
[[fleets]]
name = "idle"
devices = $n
interval = "10s"
device_name = "m-{index}"
profile = "mqtt"
[fleets.mqtt]
topic = "mem/{device}"
qos = 1
TOML
  "$BIN" run "$dir/s.toml" --quiet --threads 1 --out "$dir/r.json" >/dev/null 2>&1 &
  run=$!
  sleep 25
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$run/status")
  wait "$run" || true
  read -r opened failed < <(python3 -c "import json; t=json.load(open('$dir/r.json'))['totals']; print(t['connects'], t['failed'])")
  echo "| $n | $rss | $opened | $failed |"
  results="$results $n:$rss"
done
python3 - "$results" <<'PY'
import sys
pairs = [tuple(map(int, p.split(":"))) for p in sys.argv[1].split()]
(n0, r0), (n1, r1) = pairs[0], pairs[-1]
print(f"\nper connected idle device: {(r1 - r0) * 1024 / (n1 - n0):.0f} bytes "
      f"(({r1} - {r0}) KiB over {n1 - n0} devices)")
PY
