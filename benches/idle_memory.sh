#!/usr/bin/env bash
# idle_memory.sh - the generator's memory per idle per-device connection.
# DEVICES devices beating every 20 s against `fleetstorm serve` on
# 127.0.0.1 (its own process), once with a connection each and once
# through a pool of 16; the client's RSS is read from /proc once every
# device has connected and sits idle between heartbeats (at 22 s). The
# difference over DEVICES is what one idle connection costs in the
# generator's memory (the kernel's socket buffers are not in RSS).
#
# Usage: benches/idle_memory.sh        Knobs: DEVICES [15000], OUT
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES="${DEVICES:-15000}"
OUT="${OUT:-/tmp/fleetstorm-idle-memory}"
PORT=18601
mkdir -p "$OUT"
cargo build --release --locked --quiet
BIN=target/release/fleetstorm
"$BIN" serve --addr "127.0.0.1:$PORT" --max-connections 200000 >"$OUT/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 1
for mode in per-device pool; do
  connections='"per-device"'
  [ "$mode" = pool ] && connections='{ pool = 16 }'
  cat >"$OUT/$mode.toml" <<TOML
seed = 5
duration = "25s"
[target]
url = "http://127.0.0.1:$PORT"
connections = $connections
[[fleets]]
name = "idle"
devices = $DEVICES
interval = "20s"
TOML
  "$BIN" run "$OUT/$mode.toml" --quiet --out "$OUT/$mode.json" >/dev/null &
  RUN=$!
  sleep 22
  rss=$(awk '/VmRSS/ {print $2}' /proc/$RUN/status)
  conns=$(ss -Htn state established "( dport = :$PORT )" | wc -l)
  wait $RUN
  echo "$mode rss_kib=$rss established=$conns"
  eval "rss_$(echo $mode | tr - _)=$rss"
done
python3 -c "print(f'per idle connection: {($rss_per_device - $rss_pool) * 1024 / $DEVICES:.0f} bytes ({$rss_per_device} KiB per-device, {$rss_pool} KiB pool, {$DEVICES} devices)')"
