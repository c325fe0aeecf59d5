#!/usr/bin/env bash
# soak.sh - does fleetstorm stay flat on a long run? Runs SOAK_S seconds
# (default 1800) at RATE heartbeats/s (default 5,000: 25,000 devices at a
# 5 s interval, a pool of 64) against `fleetstorm serve` in its own
# process on 127.0.0.1, sampling the fleetstorm run process's resident
# memory and open file descriptors every 10 s. After a warm-up (WARMUP_S,
# default 120) both must stay flat: RSS growth < 20 MB, and no more fds in
# the second half of the run than in the first (a pool may still open its
# last connections after the warm-up; a leak keeps climbing).
#
# Usage: benches/soak.sh     Knobs: OUT, SOAK_S, WARMUP_S, DEVICES, INTERVAL
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/fleetstorm-soak}"
SOAK_S="${SOAK_S:-1800}"
WARMUP_S="${WARMUP_S:-120}"
DEVICES="${DEVICES:-25000}"
INTERVAL="${INTERVAL:-5s}"
PORT=18301
mkdir -p "$OUT"
cargo build --release --locked --quiet
BIN=target/release/fleetstorm

cat >"$OUT/soak.toml" <<TOML
name = "soak"
seed = 1
duration = "${SOAK_S}s"
[target]
url = "http://127.0.0.1:$PORT"
connections = { pool = 64 }
[[fleets]]
name = "soak"
devices = $DEVICES
interval = "$INTERVAL"
TOML

"$BIN" serve --addr "127.0.0.1:$PORT" >"$OUT/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 1
"$BIN" run "$OUT/soak.toml" --quiet --out "$OUT/report.json" >"$OUT/run.out" 2>"$OUT/run.err" &
RUN=$!   # the fleetstorm process itself (the run ends by itself after SOAK_S)
echo "t_s,rss_kib,fds" >"$OUT/samples.csv"
start=$(date +%s)
while kill -0 $RUN 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$RUN/status 2>/dev/null || echo "")
  fds=$(ls /proc/$RUN/fd 2>/dev/null | wc -l)
  [ -n "$rss" ] && echo "$(( $(date +%s) - start )),$rss,$fds" >>"$OUT/samples.csv"
  sleep 10
done
wait $RUN || true
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
python3 - "$OUT" "$WARMUP_S" <<'PY'
import csv, json, sys
out, warmup = sys.argv[1], int(sys.argv[2])
rows = [(int(r["t_s"]), int(r["rss_kib"]), int(r["fds"])) for r in csv.DictReader(open(f"{out}/samples.csv"))]
after = [r for r in rows if r[0] >= warmup]
rss = [r[1] / 1024 for r in after]
fds = [r[2] for r in after]
rep = json.load(open(f"{out}/report.json"))
t = rep["totals"]
print(f"samples: {len(rows)} ({len(after)} after the {warmup} s warm-up), run {rep['duration_s']:.0f} s")
print(f"RSS after warm-up: min {min(rss):.1f} MiB, max {max(rss):.1f} MiB, growth {max(rss) - rss[0]:+.1f} MiB "
      f"(first {rss[0]:.1f}, last {rss[-1]:.1f})")
print(f"open fds after warm-up: min {min(fds)}, max {max(fds)}, first {fds[0]}, last {fds[-1]}")
print(f"heartbeats: sent {t['sent']}, ok {t['ok']}, failed {t['failed']}, missed {t['missed']}, "
      f"achieved {t['achieved_rate']:.0f}/s, latency p99 {t['latency_ms']['p99']:.2f} ms; {rep['generator']['verdict']}")
# File descriptors: the pool may still be opening its last connections
# after the warm-up (it opens one only when every open one is busy), so
# "no growth" means the second half of the run holds no more than the
# first half did: a leak keeps climbing, a filled pool does not.
half = len(fds) // 2
fds_flat = max(fds[half:]) <= max(fds[:half])
print(f"open fds: first half max {max(fds[:half])}, second half max {max(fds[half:])}")
flat = max(rss) - rss[0] < 20 and fds_flat
print("verdict:", "FLAT" if flat else "GROWING")
PY
