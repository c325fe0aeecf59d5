#!/usr/bin/env bash
# serve_vs_nginx.sh - throughput of `fleetstorm serve` (validating and
# recording every heartbeat) against nginx answering `return 200`, on the
# same machine, driven by the same closed-loop load: wrk -t1 -c50, POSTing
# valid ~530-byte heartbeats from 1,000 distinct devices.
#
# Usage: benches/serve_vs_nginx.sh      (from the repository root)
# Knobs: DURATION [10] seconds per run, REPS [3] runs per target (alternating),
#        CONNS [50], THREADS [wrk threads, 1], SERVE_THREADS [tokio workers, default],
#        OUT [/tmp/serve-vs-nginx]
# Prints one table (requests/s, median of REPS, and the ratio serve/nginx).
# Traffic goes to 127.0.0.1 only; every load run is bounded by wrk -d and timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
REPS="${REPS:-3}"
CONNS="${CONNS:-50}"
THREADS="${THREADS:-1}"
SERVE_THREADS="${SERVE_THREADS:-}"
OUT="${OUT:-/tmp/serve-vs-nginx}"
NGINX_PORT=18180
SERVE_PORT=18181
mkdir -p "$OUT/nginx/logs" "$OUT/nginx/tmp"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx; then
  echo "installing wrk and nginx (Debian packages)" >&2
  (apt-get update -qq && apt-get install -y -qq wrk nginx-light) >/dev/null 2>&1 \
    || (apt-get install -y -qq wrk nginx) >/dev/null
fi

cargo build --release --locked --quiet
BIN=target/release/fleetstorm

source benches/nginx.sh
nginx_conf "$OUT/nginx" "$NGINX_PORT"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

nginx -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" & PIDS+=($!)
serve_args=(serve --addr "127.0.0.1:$SERVE_PORT")
[ -n "$SERVE_THREADS" ] && serve_args+=(--threads "$SERVE_THREADS")
"$BIN" "${serve_args[@]}" >"$OUT/serve.log" 2>&1 & PIDS+=($!)
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/SendHeartbeat" -X POST -d x \
    && curl -s -o /dev/null "http://127.0.0.1:$SERVE_PORT/stats" && break
  sleep 0.1
done

# 1,000 distinct valid heartbeats (the 529-byte reference shape), cycled by wrk.
python3 - "$OUT/bodies.lua" <<'PY'
import json, sys
m = lambda d, n, t, v: {"Dimension": d, "MetricName": n, "Timestamp": t, "Value": v}
lines = ["bodies = {}"]
for i in range(1000):
    hb = {"AgentVersion": "1.20231.0", "DeviceName": "device-%06d" % i, "DeviceFleetName": "fleet-east",
          "AgentMetrics": [m("agent", "CpuUtilization", 1764160000.123, 12.5),
                           m("agent", "MemoryUtilization", 1764160000.123, 48.25)],
          "Models": [{"ModelName": "resnet50-int8", "ModelVersion": "1.0", "LatestInference": 1764160000.1,
                      "LatestSampleTime": 1764159990.0,
                      "ModelMetrics": [m("model", "InferenceLatencyMs", 1764160000.1, 8.75)]}]}
    lines.append("bodies[%d] = [[%s]]" % (i + 1, json.dumps(hb, separators=(",", ":"))))
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
cat >"$OUT/post.lua" <<LUA
dofile("$OUT/bodies.lua")
local requests = {}
init = function(args)
  for i = 1, #bodies do
    requests[i] = wrk.format("POST", "/SendHeartbeat", {["Content-Type"] = "application/json"}, bodies[i])
  end
end
local n = 0
request = function()
  n = n % #requests + 1
  return requests[n]
end
LUA

run() { # name url rep
  local f="$OUT/$1.$3.txt"
  timeout $((DURATION + 15)) wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$OUT/post.lua" "$2/SendHeartbeat" >"$f" 2>&1
  local rps non2xx
  rps=$(awk '/^Requests\/sec/ {print $2}' "$f")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$f")
  echo "$1 rep $3: ${rps} req/s${non2xx:+, non-2xx: $non2xx}" >&2
  echo "$rps" >>"$OUT/$1.rps"
}
rm -f "$OUT"/*.rps
for rep in $(seq "$REPS"); do
  run nginx "http://127.0.0.1:$NGINX_PORT" "$rep"
  run serve "http://127.0.0.1:$SERVE_PORT" "$rep"
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
N=$(median "$OUT/nginx.rps"); S=$(median "$OUT/serve.rps")
accepted=$(curl -s "http://127.0.0.1:$SERVE_PORT/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["accepted"], s["rejected"], s["devices"])')
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
echo "load: wrk -t$THREADS -c$CONNS -d${DURATION}s, 1,000 distinct valid ~530 B heartbeats, $REPS runs each, alternating"
printf '| target | requests/s (median) | ratio to nginx |\n|---|---|---|\n'
printf '| nginx `return 200` (1 worker) | %.0f | 1.00 |\n' "$N"
printf '| fleetstorm serve (validates + records) | %.0f | %.2f |\n' "$S" "$(echo "$S / $N" | bc -l)"
echo "serve accepted / rejected / devices: $accepted"
