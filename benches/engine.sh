#!/usr/bin/env bash
# engine.sh - what fleetstorm run costs: memory of idle fleets, a million
# devices on one machine, and client CPU per heartbeat at a fixed rate.
#
# Usage: benches/engine.sh [idle] [million] [cpu]   (default: all three)
# Knobs: OUT [/tmp/fleetstorm-engine], MILLION_S [60] (length of the
#        1,000,000-device run), CPU_S [20] (length of the 10,000/s run),
#        RUN_ARGS [] (more flags for every run, e.g. "--dashboard 127.0.0.1:0"
#        to measure what the live dashboard's freshness walks cost).
# Everything runs against `fleetstorm serve` in its own process on
# 127.0.0.1; each run is bounded by its scenario's duration and `timeout`.
# Client figures come from GNU time around the fleetstorm run process only.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/fleetstorm-engine}"
MILLION_S="${MILLION_S:-60}"
CPU_S="${CPU_S:-20}"
read -r -a RUN_ARGS <<<"${RUN_ARGS:-}"
PORT=18191
mkdir -p "$OUT"
cargo build --release --locked --quiet
BIN=target/release/fleetstorm
CASES="${*:-idle million cpu}"

"$BIN" serve --addr "127.0.0.1:$PORT" --max-devices 2000000 >"$OUT/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/stats" && break; sleep 0.1; done

scenario() { # file devices interval duration connections
  cat >"$1" <<TOML
name = "$(basename "$1" .toml)"
seed = 1
duration = "$4"
[target]
url = "http://127.0.0.1:$PORT"
timeout = "2s"
connections = $5
[[fleets]]
name = "bench"
devices = $2
device_name = "dev-{index:07}"
interval = "$3"
[[fleets.models]]
name = "defect-detector"
versions = { "3.1" = 0.7, "3.2" = 0.3 }
[[fleets.models.metrics]]
name = "inference-latency-ms"
min = 4.0
max = 60.0
TOML
}

measure() { # name seconds-limit scenario
  local name=$1 limit=$2 file=$3
  /usr/bin/time -v -o "$OUT/$name.time" timeout "$limit" "$BIN" run "$file" --quiet --out "$OUT/$name.json" "${RUN_ARGS[@]}" >"$OUT/$name.out" 2>"$OUT/$name.err" || true
  python3 - "$OUT/$name.time" "$OUT/$name.json" "$name" <<'PY'
import json, re, sys
t = open(sys.argv[1]).read()
get = lambda k: float(re.search(re.escape(k) + r":\s*([0-9.]+)", t).group(1))
cpu = get("User time (seconds)") + get("System time (seconds)")
rss = get("Maximum resident set size (kbytes)") / 1024
r = json.load(open(sys.argv[2]))
tot = r["totals"]
sent = max(tot["sent"], 1)
print(f"{sys.argv[3]}: devices {sum(f['devices'] for f in r['scenario']['fleets'])}, "
      f"peak RSS {rss:.1f} MiB, client CPU {cpu:.2f} s = {cpu / sent * 1e6:.1f} us/heartbeat, "
      f"offered {tot['offered_rate']:.0f}/s achieved {tot['achieved_rate']:.0f}/s "
      f"(ok {tot['ok']} failed {tot['failed']} missed {tot['missed']}), "
      f"latency p50 {tot['latency_ms']['p50']:.2f} p99 {tot['latency_ms']['p99']:.2f} ms, "
      f"schedule lag p99 {tot['schedule_lag_ms']['p99']:.2f} ms, {r['generator']['verdict']}")
PY
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
for c in $CASES; do
  case $c in
    idle)
      # Devices that sleep almost all the time: a 1 h interval, a 20 s run.
      scenario "$OUT/idle-100k.toml" 100000 1h 20s "{ pool = 64 }"
      measure idle-100k 60 "$OUT/idle-100k.toml"
      scenario "$OUT/idle-1m.toml" 1000000 1h 20s "{ pool = 64 }"
      measure idle-1m 90 "$OUT/idle-1m.toml"
      ;;
    million)
      scenario "$OUT/million.toml" 1000000 60s "${MILLION_S}s" "{ pool = 64 }"
      measure million-60s-interval $((MILLION_S + 60)) "$OUT/million.toml"
      ;;
    cpu)
      scenario "$OUT/cpu.toml" 10000 1s "${CPU_S}s" "{ pool = 50 }"
      measure rate-10000 $((CPU_S + 30)) "$OUT/cpu.toml"
      ;;
  esac
done
