#!/usr/bin/env bash
# mqtt_scale.sh - MQTT fleets at scale and what they cost, two parts:
#
# scale: DEVICES (18,000) MQTT devices in one fleetstorm process, QoS 1
#   every 10 s for 60 s, against `fleetstorm serve --mqtt` in a process of
#   its own (each process may hold 20,000 files here; both ends of 18,000
#   sessions in one would need 36,000). At 30 s an outage silences every
#   device for 5 s and brings all back at one instant: a connect storm of
#   all of them at once. Then the same fleet split over two shards (two
#   processes, half each) against the same listener. Reported: sent, ok,
#   failed, sessions opened, schedule lag p99, latency p99, fleetstorm's
#   CPU (user + sys, from wait4) and serve's own counts.
#
# cpu: RATE_DEVICES (5,000) devices at QoS 1 every 1 s for 30 s against a
#   mosquitto of this script's own, a rate mosquitto keeps up with on this
#   machine; CPU per acknowledged message of fleetstorm (wait4) and of
#   mosquitto (/proc/PID/stat, utime + stime, over the run), and their
#   ratio.
#
# Usage: benches/mqtt_scale.sh [scale|cpu|all]  (BIN
# [target/release/fleetstorm], DEVICES [18000], RATE_DEVICES [5000]).
# Traffic goes to 127.0.0.1 only; every run ends by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-target/release/fleetstorm}"
DEVICES="${DEVICES:-18000}"
RATE_DEVICES="${RATE_DEVICES:-5000}"
what="${1:-all}"
dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
ulimit -n 20000

# Runs a command, then prints its CPU seconds (user + sys, its children's
# included) on fd 3.
cpu_of() {
  python3 - "$@" 3>&3 <<'PY'
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, ru = os.wait4(p.pid, 0)
os.write(3, f"{ru.ru_utime + ru.ru_stime:.2f}\n".encode())
PY
}

# The CPU seconds (user + sys) a running process has used.
proc_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}

# A running process's user and system CPU seconds, apart.
split_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f %.2f\n", $14 / hz, $15 / hz }' "/proc/$1/stat"
}

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

scenario() { # url devices interval duration extra
  cat <<TOML
name = "mqtt-scale"
seed = 7
duration = "$4"
[target]
url = "$1"
timeout = "10s"
[target.mqtt]
keep_alive = "60s"
[[fleets]]
name = "sensors"
devices = $2
interval = "$3"
device_name = "s-{index}"
profile = "mqtt"
[fleets.mqtt]
topic = "devices/{device}/telemetry"
qos = 1
$5
TOML
}

summary() { # report.json cpu_seconds [storm]
  python3 - "$1" "$2" "${3:-}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["totals"]
cpu = float(sys.argv[2])
storm = sys.argv[3] == "storm"
s = t.get("sessions", {})
# After the outage's end (35 s), the first second at whose end every
# device had its session again.
devices = r["scenario"]["fleets"][0]["devices"]
back = next((f"by the end of second {x['t']} (the storm began at 35 s)" for x in r["timeline"]
             if x["t"] >= 35 and x.get("sessions_open") == devices), "not within the run") if storm else ""
print(f"| {t['sent']:,} | {t['ok']:,} | {t['failed']:,} | {t['connects']:,} | {s.get('reopened', 0):,} | "
      f"{t['schedule_lag_ms']['p99']:.2f} | {t['latency_ms']['p99']:.2f} | {t['latency_ms']['max']:.2f} | "
      f"{cpu:.1f} | {cpu * 1e6 / max(t['ok'], 1):.1f} | {back} |")
PY
}

if [ "$what" = scale ] || [ "$what" = all ]; then
  port=18840
  "$BIN" serve --addr 127.0.0.1:0 --mqtt 127.0.0.1:$port --profile mqtt >"$dir/serve.out" 2>&1 &
  serve=$!
  pids+=("$serve")
  wait_port $port
  http=$(grep -o 'http://127.0.0.1:[0-9]*' "$dir/serve.out" | head -1)
  outage=$'[[fleets.events]]\nat = "30s"\nkind = "outage"\nshare = "100%"\nduration = "5s"\nrecover = "synchronized"'
  scenario "mqtt://127.0.0.1:$port" "$DEVICES" 10s 60s "" > "$dir/steady.toml"
  scenario "mqtt://127.0.0.1:$port" "$DEVICES" 10s 60s "$outage" > "$dir/storm.toml"
  echo "## scale: $DEVICES devices, QoS 1 every 10 s for 60 s"
  echo
  echo "steady: sessions opened as devices' first heartbeats come (over the first 10 s); storm: in addition every"
  echo "device silent from 30 s to 35 s (its session dropped), then all back at one instant, each opening a session"
  echo
  echo "| run | sent | ok | failed | sessions opened | reopened | schedule lag p99 ms | latency p99 ms | latency max ms | fleetstorm CPU s | CPU µs per ok | all sessions up again after the storm |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  exec 3>"$dir/cpu"
  cpu_of "$BIN" run "$dir/steady.toml" --quiet --out "$dir/steady.json"
  printf '| steady, one process '; summary "$dir/steady.json" "$(tail -1 "$dir/cpu")"
  cpu_of "$BIN" run "$dir/storm.toml" --quiet --out "$dir/storm.json"
  printf '| storm, one process '; summary "$dir/storm.json" "$(tail -1 "$dir/cpu")" storm
  curl -s -X POST -H 'content-type: application/json' -d '{}' "$http/stats/reset" >/dev/null || true
  shards=()
  for i in 0 1; do
    cpu_of "$BIN" run "$dir/steady.toml" --quiet --shard "$i/2" --seed 7 --out "$dir/shard$i.json" &
    shards+=("$!")
  done
  wait "${shards[@]}"
  "$BIN" merge "$dir/shard0.json" "$dir/shard1.json" --out "$dir/merged.json" >/dev/null || true
  printf '| steady, two shards, merged '; summary "$dir/merged.json" "$(tail -2 "$dir/cpu" | paste -sd+ | bc)"
  exec 3>&-
  echo
  echo "serve's own counts after the shards: $(curl -s "$http/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); m=s.get("mqtt",{}); print("accepted", s.get("accepted"), "sessions", m.get("sessions"), "acked", m.get("acked"))')"
  kill "$serve"
fi

if [ "$what" = cpu ] || [ "$what" = all ]; then
  port=18841
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\nset_tcp_nodelay true\npersistence false\nlog_dest none\n' \
    "$port" > "$dir/m.conf"
  /usr/sbin/mosquitto -c "$dir/m.conf" &
  broker=$!
  pids+=("$broker")
  wait_port $port
  scenario "mqtt://127.0.0.1:$port" "$RATE_DEVICES" 1s 30s "" > "$dir/cpu.toml"
  exec 3>"$dir/cpu"
  before=$(proc_cpu "$broker")
  # The steady part apart: both processes' user and system CPU read from
  # 5 s into the run (every session long open) to 28 s (before the end).
  cpu_of "$BIN" run "$dir/cpu.toml" --quiet --out "$dir/cpu.json" &
  runner=$!
  sleep 1
  fleet=$(pgrep -n -f "run $dir/cpu.toml")
  sleep 4
  w0=$(split_cpu "$fleet"); b0=$(split_cpu "$broker")
  sleep 23
  w1=$(split_cpu "$fleet"); b1=$(split_cpu "$broker")
  wait "$runner"
  after=$(proc_cpu "$broker")
  exec 3>&-
  fs=$(tail -1 "$dir/cpu")
  echo
  echo "## cpu: $RATE_DEVICES devices, QoS 1 every 1 s for 30 s, against mosquitto $(/usr/sbin/mosquitto -h 2>/dev/null | head -1 | grep -o '[0-9][0-9.]*' | head -1)"
  echo
  python3 - "$dir/cpu.json" "$fs" "$before" "$after" "$w0" "$w1" "$b0" "$b1" "$RATE_DEVICES" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["totals"]
fs, before, after = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
(wu0, ws0), (wu1, ws1), (bu0, bs0), (bu1, bs1) = (map(float, a.split()) for a in sys.argv[5:9])
devices = int(sys.argv[9])
mq = after - before
ok = max(t["ok"], 1)
print("Whole run (fleetstorm's includes opening every session):")
print()
print("| acknowledged | failed | schedule lag p99 ms | latency p99 ms | fleetstorm CPU s | µs per message | mosquitto CPU s | µs per message | fleetstorm ÷ mosquitto |")
print("|---|---|---|---|---|---|---|---|---|")
print(f"| {t['ok']:,} | {t['failed']:,} | {t['schedule_lag_ms']['p99']:.2f} | {t['latency_ms']['p99']:.2f} | "
      f"{fs:.2f} | {fs * 1e6 / ok:.1f} | {mq:.2f} | {mq * 1e6 / ok:.1f} | {fs / mq if mq else float('nan'):.2f} |")
n = devices * 23  # messages in the 23 s steady window (one a device a second)
print()
print(f"Steady window (5 s to 28 s, about {n:,} messages), µs per message, user and system (kernel) time apart:")
print()
print("| | user | system | total |")
print("|---|---|---|---|")
for name, (u, s_) in (("fleetstorm", (wu1 - wu0, ws1 - ws0)), ("mosquitto", (bu1 - bu0, bs1 - bs0))):
    print(f"| {name} | {u * 1e6 / n:.1f} | {s_ * 1e6 / n:.1f} | {(u + s_) * 1e6 / n:.1f} |")
ratio = ((wu1 - wu0) + (ws1 - ws0)) / max((bu1 - bu0) + (bs1 - bs0), 1e-9)
print(f"| fleetstorm ÷ mosquitto | {(wu1 - wu0) / max(bu1 - bu0, 1e-9):.2f} | {(ws1 - ws0) / max(bs1 - bs0, 1e-9):.2f} | {ratio:.2f} |")
PY
  kill "$broker"
fi
