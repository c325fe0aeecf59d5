#!/usr/bin/env bash
# per_device.sh - per-device connections at fleet scale, on loopback:
#  1. 18,000 devices, a connection each, every 12 s for 25 s, one process
#     against one `fleetstorm serve` (each process may hold 20,000 files);
#  2. 36,000 devices as two shards (--shard 0/2, 1/2, one --start-at)
#     against two serve processes;
#  3. a reconnect storm: 15,000 devices come back from an outage at one
#     instant, each on a new connection, while 1,000 others, connected all
#     along, beat every second.
# Prints, per case: ok, failures, time-outs, connections, schedule lag, and
# what serve accepted; for the storm, how long its reconnects took and the
# connected devices' lag during it.
#
# Usage: benches/per_device.sh        Knobs: OUT
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/fleetstorm-per-device}"
mkdir -p "$OUT"
cargo build --release --locked --quiet
BIN=$PWD/target/release/fleetstorm
PIDS=()
trap 'kill ${PIDS[*]} 2>/dev/null || true; wait 2>/dev/null || true' EXIT
serve() { "$BIN" serve --addr "127.0.0.1:$1" >"$OUT/serve-$1.log" 2>&1 & PIDS+=($!); sleep 1; }
accepted() { curl -s "127.0.0.1:$1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accepted"])'; }
summary() { # report.json label
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = r["totals"]
print(f'{sys.argv[2]}: ok {t["ok"]}, failed {t["failed"]} (time-outs {t["errors"]["timeout"]}), connections {t["connects"]}, '
      f'schedule lag p99 {t["schedule_lag_ms"]["p99"]:.2f} ms, sources {r["scenario"]["target"].get("source_addresses", ["(system)"])}, '
      f'generator: {r["generator"]["verdict"]}')
PY
}
scenario() { # file devices interval duration
  cat >"$1" <<TOML
seed = 9
duration = "$4"
[target]
url = "http://127.0.0.1:18801"
connections = "per-device"
timeout = "5s"
[[fleets]]
name = "wide"
devices = $2
interval = "$3"
TOML
}

echo "== 18,000 per-device connections, one process"
serve 18801
scenario "$OUT/18k.toml" 18000 12s 25s
"$BIN" run "$OUT/18k.toml" --quiet --out "$OUT/18k.json" >/dev/null
summary "$OUT/18k.json" "18k"
echo "serve accepted $(accepted 18801)"

echo "== 36,000 across two shards against two serve processes"
serve 18802
scenario "$OUT/36k.toml" 36000 12s 25s
AT=$(date -u -d '+8 sec' +%FT%TZ)
"$BIN" run "$OUT/36k.toml" --shard 0/2 --target http://127.0.0.1:18801 --start-at "$AT" --quiet --out "$OUT/36k-0.json" >/dev/null &
S0=$!
"$BIN" run "$OUT/36k.toml" --shard 1/2 --target http://127.0.0.1:18802 --start-at "$AT" --quiet --out "$OUT/36k-1.json" >/dev/null
wait $S0
summary "$OUT/36k-0.json" "shard 0"
summary "$OUT/36k-1.json" "shard 1"
echo "serve accepted $(accepted 18801) (both runs) and $(accepted 18802)"

# A clean slate for the storm: the earlier cases' servers gone and their
# connections out of TIME_WAIT.
kill ${PIDS[*]} 2>/dev/null || true
wait 2>/dev/null || true
PIDS=()
while [ "$(ss -Htn state time-wait | wc -l)" -gt 500 ]; do sleep 2; done
echo "== reconnect storm: 15,000 devices back at one instant, 1,000 connected"
serve 18803
cat >"$OUT/storm.toml" <<TOML
seed = 4
duration = "30s"
[target]
url = "http://127.0.0.1:18803"
connections = "per-device"
timeout = "5s"
[[fleets]]
name = "storm"
devices = 15000
interval = "10s"
[[fleets.events]]
at = "10s"
kind = "outage"
share = "100%"
duration = "10s"
recover = "synchronized"
[[fleets]]
name = "steady"
devices = 1000
interval = "1s"
TOML
"$BIN" run "$OUT/storm.toml" --quiet --out "$OUT/storm.json" >/dev/null
python3 - "$OUT/storm.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
storm, steady = r["fleets"]
# The storm's heartbeats intended at 20 s: the last of them waited its
# turn to connect (schedule lag max) and ended (latency max) this long after.
took = storm["latency_ms"]["max"] / 1000
print(f'storm: 15,000 reconnects; the last went {storm["schedule_lag_ms"]["max"]:.0f} ms after the instant '
      f'(the generator: its lag), the last answer came {took:.2f} s after it: {15000 / took:,.0f} connections/s '
      f'end to end; failed {storm["failed"]}')
print(f'steady (connected): schedule lag p99 {steady["schedule_lag_ms"]["p99"]:.2f} ms, p99.9 '
      f'{steady["schedule_lag_ms"]["p999"]:.2f} ms, max {steady["schedule_lag_ms"]["max"]:.2f} ms')
PY
