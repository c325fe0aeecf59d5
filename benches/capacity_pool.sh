#!/usr/bin/env bash
# capacity_pool.sh - the verdicts of a connection pool, measured:
#  1. `fleetstorm capacity` through a pool of 64 and through per-device
#     connections against `serve --workers 4 --service-time 2ms` (an M/D/4
#     queue that carries 2,000 heartbeats/s): both must find 2,000/s, the
#     first limit latency (the pool full because the backend slowed down);
#  2. `fleetstorm run` with pools of 2 and 8 at 5,000/s against a backend
#     that answers in 1 ms with no capacity limit: the pool of 2 is "too
#     small" and names the connections the rate needs; 8 keeps up.
# Everything on 127.0.0.1. Prints the capacity tables and the verdict lines.
#
# Usage: benches/capacity_pool.sh        Knobs: OUT, STEP [4s]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/fleetstorm-capacity-pool}"
STEP="${STEP:-4s}"
QUEUE=18301
FAST=18302
mkdir -p "$OUT"
cargo build --release --locked --quiet
BIN=target/release/fleetstorm

"$BIN" serve --addr "127.0.0.1:$QUEUE" --workers 4 --service-time 2ms --queue-limit 2000 >"$OUT/serve-queue.log" 2>&1 &
S1=$!
"$BIN" serve --addr "127.0.0.1:$FAST" --latency 1ms >"$OUT/serve-fast.log" 2>&1 &
S2=$!
trap 'kill $S1 $S2 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 1

for connections in '{ pool = 64 }' '"per-device"'; do
  name=$([ "$connections" = '"per-device"' ] && echo per-device || echo pool-64)
  cat >"$OUT/$name.toml" <<TOML
name = "capacity-$name"
seed = 11
[target]
url = "http://127.0.0.1:$QUEUE"
timeout = "2s"
connections = $connections
[[fleets]]
name = "devices"
devices = 5000
interval = "10s"
[capacity]
slo = { "latency.p99" = "< 100ms", "error_rate" = "< 1%" }
start_rate = "500/s"
max_rate = "100000/s"
step_duration = "$STEP"
warmup = "1s"
precision = "5%"
scale = "rate"     # 5,000 devices throughout, their intervals shortened: per-device stays at 5,000 connections
TOML
  echo "== capacity, $name"
  /usr/bin/time -f "search took %e s" "$BIN" capacity "$OUT/$name.toml" --quiet --out "$OUT/$name.json" || true
done

for pool in 2 8; do
  cat >"$OUT/small-$pool.toml" <<TOML
name = "pool-$pool"
seed = 3
duration = "10s"
[target]
url = "http://127.0.0.1:$FAST"
connections = { pool = $pool }
[[fleets]]
name = "fast"
devices = 5000
interval = "1s"
TOML
  echo "== run, pool of $pool at 5,000/s against a 1 ms backend"
  "$BIN" run "$OUT/small-$pool.toml" --quiet --out "$OUT/small-$pool.json" |
    grep -E '^(TOTAL|fast)  +(offered|[0-9])|connection wait|^generator:|^pool:' || true
done
