#!/usr/bin/env bash
# peers.sh - fleetstorm side by side with wrk, hey and oha, on one machine in
# one run, against the same loopback targets: nginx answering `return 200`
# for POST /SendHeartbeat (one worker), and `fleetstorm serve`.
#
# Usage: bash benches/peers.sh            (from anywhere; one command)
#
# Cases, each run REPS times with the tools alternating; the table gives
# medians and each tool's ratio to fleetstorm:
#   fixed : RATE heartbeats/s for FIXED_S s over CONNS connections
#           (wrk has no rate control, so it is not in this case);
#           fleetstorm-dash is fleetstorm with --dashboard, followed once
#           a second as the page does: what the dashboard costs a run;
#           fleetstorm-otlp is that and --otlp-endpoint too, pushing every
#           second (ten times the default rate) to a local receiver that
#           decodes each push (tests/interop/otlp_receiver.py);
#   max   : the peers closed-loop over CONNS connections for MAX_S s;
#           fleetstorm open-model at the highest rate it still keeps up
#           with by its own verdict (the report's `generator.kept_up`:
#           schedule lag p99 <= 5 ms and no generator thread short of CPU;
#           its pool verdict: heartbeats did not queue for a connection, or
#           queued only because the backend slowed down; nothing missed or
#           failed), found by a search before the reps (doubling, then
#           bisection to 5%, each probe run once). Each rep then runs once
#           at that rate, as each peer runs once: no re-runs and no
#           stepping down; the table says how many reps kept up;
#   long  : fleetstorm, oha and hey at RATE for LONG_S s, once, against the
#           first target: does peak RSS stay flat as a run gets longer?
# Targets: nginx and serve share both cores with the client; nginx-pinned
# is nginx on core 0 and every client on core 1 (taskset), so that the
# maximum-throughput case is not a contest for the target's core.
# Client figures: user+sys CPU and peak RSS of the client process from GNU
# time -v (wrapped around timeout(1) and the tool). fleetstorm's latency is
# measured from each heartbeat's intended time (corrected for coordinated
# omission); the peers' from when they sent.
#
# Knobs (defaults in brackets): OUT [/tmp/fleetstorm-peers], RATE [10000],
#   FIXED_S [20], MAX_S [10], LONG_S [60], CONNS [50], REPS [3], PAUSE_S [2],
#   SEARCH_S [5] (length of a search probe), TARGETS ["nginx nginx-pinned serve"],
#   TOOLS ["fleetstorm fleetstorm-dash fleetstorm-otlp wrk1 hey oha"], CASES ["fixed max long"],
#   INSTALL [1] (apt wrk hey nginx-light; cargo install oha --locked, ~7 min),
#   BIN [target/release/fleetstorm, built first] (another build to measure,
#   e.g. an older commit's for a before/after comparison).
# Traffic goes to 127.0.0.1 only; every run is bounded by its own duration
# flag and by timeout(1).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT="${OUT:-/tmp/fleetstorm-peers}"
RATE="${RATE:-10000}"
FIXED_S="${FIXED_S:-20}"
MAX_S="${MAX_S:-10}"
LONG_S="${LONG_S:-60}"
CONNS="${CONNS:-50}"
REPS="${REPS:-3}"
PAUSE_S="${PAUSE_S:-2}"
SEARCH_S="${SEARCH_S:-5}"
TARGETS="${TARGETS:-nginx nginx-pinned serve}"
TOOLS="${TOOLS:-fleetstorm fleetstorm-dash fleetstorm-otlp wrk1 hey oha}"
CASES="${CASES:-fixed max long}"
INSTALL="${INSTALL:-1}"
NGINX_PORT=18080
SERVE_PORT=18090
BIN="${BIN:-$ROOT/target/release/fleetstorm}"
PIDS=()
CLIENT_CPU=()   # taskset -c 1 for the pinned target

log() { echo "[peers $(date +%H:%M:%S)] $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
if [ "$INSTALL" = 1 ]; then
  need=()
  have wrk || need+=(wrk)
  have hey || need+=(hey)
  have nginx || need+=(nginx-light)
  have curl || need+=(curl)
  [ -x /usr/bin/time ] || need+=(time)
  if [ "${#need[@]}" -gt 0 ]; then
    log "apt-get install ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
      || log "apt-get install failed: the missing tools are left out"
  fi
  if [ ! -x "$OHA" ]; then
    log "cargo install oha --locked (about 7 minutes on 2 cores)"
    timeout 2400 cargo install oha --locked --quiet >/dev/null 2>&1 || log "oha install failed: left out"
  fi
fi
if [ "$BIN" = "$ROOT/target/release/fleetstorm" ]; then
  log "building fleetstorm (release)"
  cargo build --release --locked --quiet || exit 1
fi
[ -x "$BIN" ] || { echo "no fleetstorm binary at $BIN" >&2; exit 1; }
have nginx || { echo "nginx is needed for the target" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT/nginx/logs" "$OUT/nginx/tmp" "$OUT/raw"
{
  echo "date:    $(date -u +%FT%TZ)"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
  echo "fleetstorm: $BIN ($("$BIN" --version); tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null))"
  echo "wrk:     $(if have wrk; then wrk -v 2>&1 | head -1; else echo 'not installed'; fi)"
  echo "hey:     $(have hey && dpkg-query -W -f='${Version}' hey 2>/dev/null || echo 'not installed')"
  echo "oha:     $([ -x "$OHA" ] && "$OHA" --version || echo 'not installed')"
  echo "nginx:   $(nginx -v 2>&1 | cut -d/ -f2)"
} | tee "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- bodies
# The peers send one fixed 529-byte heartbeat; fleetstorm builds a fresh one
# per heartbeat (its own device name, clock and random-walk metrics) of the
# same shape: 2 agent metrics, 1 model with 1 metric, about 535 bytes.
python3 - "$OUT/body.json" <<'PY'
import json, sys
m = lambda d, n, t, v: {"Dimension": d, "MetricName": n, "Timestamp": t, "Value": v}
hb = {"AgentVersion": "1.20231.0", "DeviceName": "device-000123", "DeviceFleetName": "fleet-east",
      "AgentMetrics": [m("agent", "CpuUtilization", 1764160000.123, 12.5),
                       m("agent", "MemoryUtilization", 1764160000.123, 48.25)],
      "Models": [{"ModelName": "resnet50-int8", "ModelVersion": "1.0", "LatestInference": 1764160000.1,
                  "LatestSampleTime": 1764159990.0,
                  "ModelMetrics": [m("model", "InferenceLatencyMs", 1764160000.1, 8.75)]}]}
open(sys.argv[1], "w").write(json.dumps(hb, separators=(",", ":")))
PY
cat >"$OUT/post.lua" <<LUA
local f = assert(io.open("$OUT/body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA

# scenario FILE URL RATE SECONDS: RATE devices at a 1 s interval, staggered.
scenario() {
  cat >"$1" <<TOML
name = "peers"
seed = 1
duration = "${4}s"
[target]
url = "$2"
timeout = "2s"
connections = { pool = $CONNS }
[[fleets]]
name = "fleet-east"
devices = $3
device_name = "device-{index:07}"
agent_versions = { "1.20231.0" = 1.0 }
interval = "1s"
start = "staggered"
[[fleets.agent_metrics]]
name = "CpuUtilization"
dimension = "agent"
min = 0.0
max = 100.0
walk = 4.0
[[fleets.agent_metrics]]
name = "MemoryUtilization"
dimension = "agent"
min = 10.0
max = 95.0
walk = 1.5
[[fleets.models]]
name = "resnet50-int8"
versions = { "1.0" = 1.0 }
[[fleets.models.metrics]]
name = "InferenceLatencyMs"
dimension = "model"
min = 4.0
max = 60.0
walk = 2.0
TOML
}

# ---------------------------------------------------------------- targets
source benches/nginx.sh
nginx_conf "$OUT/nginx" "$NGINX_PORT"
start_target() {
  case $1 in
    nginx) nginx -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" & ;;
    nginx-pinned) taskset -c 0 nginx -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" & ;;
    serve) "$BIN" serve --addr "127.0.0.1:$SERVE_PORT" --max-devices 2000000 >"$OUT/serve.log" 2>&1 & ;;
  esac
  TARGET_PID=$!
  PIDS+=("$TARGET_PID")
  sleep 0.3
  # Something else on the port would answer in its place: refuse that.
  kill -0 "$TARGET_PID" 2>/dev/null || { echo "target $1 did not start (is its port taken?)" >&2; exit 1; }
  local base; base=$(target_base "$1")
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
      --data-binary @"$OUT/body.json" "$base/SendHeartbeat")" = 200 ] && return 0
    sleep 0.1
  done
  echo "target $1 did not answer 200 on $base/SendHeartbeat" >&2
  exit 1
}
stop_target() { kill "$TARGET_PID" 2>/dev/null; wait "$TARGET_PID" 2>/dev/null; }
target_base() { case $1 in nginx|nginx-pinned) echo "http://127.0.0.1:$NGINX_PORT" ;; serve) echo "http://127.0.0.1:$SERVE_PORT" ;; esac; }

# ---------------------------------------------------------------- one run
# measure NAME SECONDS -- command...: raw files in $OUT/raw/NAME.*
measure() {
  local name=$1 secs=$2
  shift 3
  printf '%s\n' "$*" >"$OUT/raw/$name.cmd"
  /usr/bin/time -v -o "$OUT/raw/$name.time" timeout --signal=INT --kill-after=10 $((secs + 30)) "${CLIENT_CPU[@]}" "$@" \
    >"$OUT/raw/$name.out" 2>"$OUT/raw/$name.err"
  echo $? >"$OUT/raw/$name.rc"
  sleep "$PAUSE_S"
}

# fleetstorm_run NAME URL RATE SECONDS [ARGS...]; then `kept_up NAME` says whether it kept up.
fleetstorm_run() {
  local name=$1 url=$2 rate=$3 secs=$4
  shift 4
  scenario "$OUT/raw/$name.toml" "$url" "$rate" "$secs"
  measure "$name" "$secs" -- "$BIN" run "$OUT/raw/$name.toml" --quiet --out "$OUT/raw/$name.json" "$@"
}
kept_up() { python3 "$ROOT/benches/peers_table.py" --verdict "$OUT/raw/$1.json"; }

# probe TARGET URL RATE NAME: one search probe, run once (a peer gets one
# run per rep too: a stall that costs fleetstorm a probe lowers its rate).
probe() {
  local target=$1 url=$2 rate=$3 name=$4
  fleetstorm_run "$name" "$url" "$rate" "$SEARCH_S"
  kept_up "$name"
}

# search TARGET URL: prints the highest rate fleetstorm kept up with in
# SEARCH_S-second probes: doubling from 10,000/s, then bisection to 5%.
search() {
  local target=$1 url=$2 good=0 bad=0 rate=10000 probe=0
  while [ "$bad" = 0 ] && [ "$rate" -le 1280000 ]; do
    probe=$((probe + 1))
    log "search $target: probe $probe at $rate/s"
    if probe "$target" "$url" "$rate" "search.$target.$probe"; then good=$rate; rate=$((rate * 2)); else bad=$rate; fi
  done
  while [ "$bad" != 0 ] && [ "$good" != 0 ] && [ $(((bad - good) * 100)) -gt $((good * 5)) ]; do
    rate=$(((good + bad) / 2))
    probe=$((probe + 1))
    log "search $target: probe $probe at $rate/s (between $good and $bad)"
    if probe "$target" "$url" "$rate" "search.$target.$probe"; then good=$rate; else bad=$rate; fi
  done
  echo "$good"
}

run_case() { # TOOL CASE TARGET REP
  local tool=$1 case=$2 target=$3 rep=$4 base url secs name
  base=$(target_base "$target")
  url="$base/SendHeartbeat"
  case $case in fixed) secs=$FIXED_S ;; max) secs=$MAX_S ;; long) secs=$LONG_S ;; esac
  name="$case.$target.$tool.$rep"
  local q=$((RATE / CONNS))
  case "$tool:$case" in
    fleetstorm:max)
      local rate=${FOUND[$target]}
      [ "$rate" -gt 0 ] || return 0
      log "$name: fleetstorm at $rate/s for ${secs}s"
      fleetstorm_run "$name" "$base" "$rate" "$secs"
      kept_up "$name" ;;
    fleetstorm:*)
      log "$name: fleetstorm at $RATE/s for ${secs}s"
      fleetstorm_run "$name" "$base" "$RATE" "$secs" ;;
    fleetstorm-dash:fixed)
      # The same run with the live dashboard served and followed once a
      # second as its page does (benches/dashboard_poll.py, its own process).
      log "$name: fleetstorm at $RATE/s for ${secs}s, dashboard followed"
      rm -f "$OUT/raw/$name.err"
      python3 "$ROOT/benches/dashboard_poll.py" "$OUT/raw/$name.err" "$secs" 2>"$OUT/raw/$name.poll" &
      local poller=$!
      fleetstorm_run "$name" "$base" "$RATE" "$secs" --dashboard 127.0.0.1:0
      wait "$poller" ;;
    fleetstorm-otlp:fixed)
      # As fleetstorm-dash, and pushing OTLP every second to a receiver on
      # 127.0.0.1 (its own process, as a collector would be).
      python3 -c "import opentelemetry.proto" 2>/dev/null || { log "$name: skipped (pip install opentelemetry-proto)"; return 0; }
      log "$name: fleetstorm at $RATE/s for ${secs}s, dashboard followed, OTLP every second"
      rm -f "$OUT/raw/$name.err" "$OUT/raw/$name.otlp"
      coproc RECEIVER { exec python3 "$ROOT/tests/interop/otlp_receiver.py" --out "$OUT/raw/$name.otlp"; }
      local receiver=$RECEIVER_PID line
      read -r -t 10 line <&"${RECEIVER[0]}" || { log "$name: the receiver did not start"; kill "$receiver"; return 0; }
      python3 "$ROOT/benches/dashboard_poll.py" "$OUT/raw/$name.err" "$secs" 2>"$OUT/raw/$name.poll" &
      local poller=$!
      fleetstorm_run "$name" "$base" "$RATE" "$secs" --dashboard 127.0.0.1:0 \
        --otlp-endpoint "http://127.0.0.1:${line#listening }" --otlp-interval 1s
      wait "$poller"
      kill "$receiver" 2>/dev/null; wait "$receiver" 2>/dev/null
      log "$name: $(wc -l <"$OUT/raw/$name.otlp") pushes received" ;;
    wrk1:max)
      have wrk || return 0
      log "$name"
      measure "$name" "$secs" -- wrk -t1 -c"$CONNS" -d"${secs}s" --latency -s "$OUT/post.lua" "$url" ;;
    hey:max | hey:fixed | hey:long)
      have hey || return 0
      log "$name"
      local rate=(); [ "$case" = max ] || rate=(-q "$q")   # hey's -q is per worker (CONNS workers)
      measure "$name" "$secs" -- hey -z "${secs}s" -c "$CONNS" "${rate[@]}" -m POST -T application/json \
        -D "$OUT/body.json" "$url" ;;
    oha:max | oha:fixed | oha:long)
      [ -x "$OHA" ] || return 0
      log "$name"
      local rate=(); [ "$case" = max ] || rate=(-q "$RATE")
      measure "$name" "$secs" -- "$OHA" -z "${secs}s" -c "$CONNS" "${rate[@]}" -m POST -T application/json \
        -D "$OUT/body.json" --no-tui --output-format json "$url" ;;
  esac
}

declare -A FOUND
for target in $TARGETS; do
  log "target: $target"
  CLIENT_CPU=()
  if [ "$target" = nginx-pinned ]; then CLIENT_CPU=(taskset -c 1); fi
  start_target "$target"
  if [[ " $CASES " == *" max "* && " $TOOLS " == *" fleetstorm "* ]]; then
    FOUND[$target]=$(search "$target" "$(target_base "$target")")
    log "search $target: fleetstorm keeps up with ${FOUND[$target]}/s"
    echo "${FOUND[$target]}" >"$OUT/raw/found.$target"
  fi
  for rep in $(seq 1 "$REPS"); do
    for case in fixed max; do
      [[ " $CASES " == *" $case "* ]] || continue
      for tool in $TOOLS; do run_case "$tool" "$case" "$target" "$rep"; done
    done
  done
  if [[ " $CASES " == *" long "* && $target == "${TARGETS%% *}" ]]; then
    for tool in $TOOLS; do run_case "$tool" long "$target" 1; done
  fi
  stop_target
done

python3 "$ROOT/benches/peers_table.py" "$OUT" | tee "$OUT/results.md"
