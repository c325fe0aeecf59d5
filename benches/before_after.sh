#!/usr/bin/env bash
# before_after.sh REV - a change meant to cost nothing, measured: this
# tree against commit REV, alternating builds, twice each, on a quiet
# machine.
#
#   1. benches/same_reports.py: the two builds' reports for the same
#      scenarios and seed (whole and as a shard), minus timing: identical?
#   2. cargo bench --bench hot_path and --bench heartbeat, before, after,
#      before, after (criterion's output in $OUT).
#   3. benches/peers.sh's fixed-rate case on nginx, fleetstorm beside oha,
#      with each build (BIN=...), twice.
#
# REV is checked out as a git worktree in $OUT/before and built there
# with its own target directory (minutes on 2 cores). Knobs: OUT
# [/tmp/fleetstorm-before-after], ROUNDS [2], PEERS [1] (0 skips step 3).
# Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REV=${1:?usage: benches/before_after.sh REV}
OUT="${OUT:-/tmp/fleetstorm-before-after}"
ROUNDS="${ROUNDS:-2}"
PEERS="${PEERS:-1}"
log() { echo "[before_after $(date +%H:%M:%S)] $*" >&2; }
mkdir -p "$OUT"
if [ ! -d "$OUT/before" ]; then
  git worktree add --detach "$OUT/before" "$REV" >/dev/null
fi
# Prints the path of a bench executable cargo just built.
bench_exe() { grep -o "Executable benches/$1.rs ([^)]*)" | sed 's/.*(\(.*\))/\1/' | tail -1; }
build() { # DIR TARGET
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo build --release --locked --quiet)
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench --locked --no-run --bench hot_path --bench heartbeat 2>&1) > "$OUT/build.log"
  echo "$(bench_exe hot_path < "$OUT/build.log") $(bench_exe heartbeat < "$OUT/build.log")"
}
log "building $REV"
read -r HOT_B HB_B <<<"$(build "$OUT/before" "$OUT/target-before")"
log "building this tree"
read -r HOT_A HB_A <<<"$(build "$ROOT" "$ROOT/target")"
BIN_B="$OUT/target-before/release/fleetstorm"
BIN_A="$ROOT/target/release/fleetstorm"

log "same reports"
python3 benches/same_reports.py "$BIN_B" "$BIN_A" | tee "$OUT/same_reports.txt"

times() { # criterion's output -> "name median" lines, its change blocks left out
  python3 -c '
import re, sys
name = None
for line in open(sys.argv[1]):
    if line.strip().startswith(("change:", "thrpt:")) or "change:" in line:
        name = None if "change:" in line else name
        continue
    m = re.match(r"^(\S+)", line)
    if m and not line.startswith(("Benchmarking", "Found", "Gnuplot", "Warning")):
        name = m.group(1)
    t = re.search(r"time:\s+\[\S+ \S+ (\S+ \S+)", line)
    if t and name:
        print(f"{name:45} {t.group(1)}")
        name = None
' "$1"
}
for round in $(seq "$ROUNDS"); do
  for side in before after; do
    if [ $side = before ]; then dir="$OUT/before" hot=$HOT_B hb=$HB_B; else dir=$ROOT hot=$HOT_A hb=$HB_A; fi
    log "round $round: $side: hot_path, heartbeat"
    (cd "$dir" && "$hot" --bench --warm-up-time 1 --measurement-time 3 --noplot) > "$OUT/hot_path.$side.$round.txt" 2>&1
    (cd "$dir" && "$hb" --bench --warm-up-time 2 --measurement-time 6 --noplot) > "$OUT/heartbeat.$side.$round.txt" 2>&1
  done
done
for side in before after; do
  for round in $(seq "$ROUNDS"); do
    echo "== $side, round $round"
    times "$OUT/hot_path.$side.$round.txt"
    times "$OUT/heartbeat.$side.$round.txt"
  done
done
if [ "$PEERS" = 1 ]; then
  for round in $(seq "$ROUNDS"); do
    for side in before after; do
      bin=$BIN_B; [ $side = after ] && bin=$BIN_A
      log "round $round: $side: peers.sh fixed rate"
      OUT="$OUT/peers.$side.$round" BIN="$bin" TOOLS="fleetstorm oha" CASES=fixed TARGETS=nginx REPS=3 \
        bash benches/peers.sh > "$OUT/peers.$side.$round.txt" 2>&1 || true
      echo "== peers $side, round $round"
      grep -E '^\| (tool|fleetstorm|oha) ' "$OUT/peers.$side.$round.txt" || echo "(no table: see $OUT/peers.$side.$round.txt)"
    done
  done
fi
