#!/usr/bin/env bash
# accuracy.sh - how far each load generator's reported latency and rate are
# from the truth, against a backend whose behaviour is known: `fleetstorm
# serve` with exact injected faults, on loopback, each tool at the same
# target rate in turn.
#
# Usage: bash benches/accuracy.sh        (from anywhere; one command)
#
# Two truths, neither of them a load generator's:
#   wire  : the server's time over each request as the kernel saw it on
#           loopback. tcpdump captures every run (`-i lo`, the server's
#           port, nanosecond timestamps), and benches/wire_truth.py takes,
#           for each exchange, the arrival of the request's first data
#           segment and the departure of the answer's first: what the
#           backend really did, its queueing, its timer's and scheduler's
#           lateness and its write included, measured by a clock no tool
#           here controls. A client adds the loopback transit both ways
#           (tens of µs) to it. The worst second's rate error is counted
#           from the same capture (arrivals by the second).
#   ideal : what serve was told to do, plus serve's answer time with no
#           fault (the base case's wire p50).
# serve's own histogram of its time over each request (GET /stats
# served_us, reset before each run) is shown beside them, as it was the
# truth before the capture: the same program family as the tool judged.
#
# Cases:
#   base      : no added latency at RATE/s. Ratios against the wire: what a
#               tool adds to the backend's own time (its client, the
#               loopback transit).
#   fixed     : 20 ms added to every answer at RATE/s. Ideal: p50 = p99 =
#               p99.9 = 20 ms + base.
#   lognormal : log-normal added latency, median 20 ms, sigma 0.5, at
#               RATE/s. Ideal: p = base + 20 ms * exp(0.5 * z_p), z_p the
#               standard normal quantile (z_0.99 = 2.3263, z_0.999 = 3.0902):
#               p50 20, p99 63.99, p99.9 93.78 ms (+ base).
#   stall     : STALL_RATE/s for SECS s; at STALL_AT s serve holds every
#               request that arrives until the stall is lifted S s later
#               (POST /faults {"stall"}, then {}: lifting releases them at
#               once). A request intended at t in the stall waits until it
#               ends: latency = (t_end - t) + RTT, uniform over (RTT, S +
#               RTT] for the n_s = rate * S requests intended in it; the
#               other N - n_s (N = rate * SECS) take RTT. So percentile q of
#               the run is RTT while q * N <= N - n_s, and otherwise
#               RTT + S * (q * N - (N - n_s)) / n_s: with 500/s, 20 s and a
#               2 s stall, p50 = RTT, p99 = RTT + 1800 ms, p99.9 = RTT +
#               1980 ms. S is the stall as the script timed it, RTT the
#               base case's wire p50. The wire cannot be this case's truth:
#               a request a tool could not send during the stall never
#               reaches it (coordinated omission is what the case tests).
# Rate: requests by the second they arrived in, from the capture (serve's
# own count, GET /stats arrivals_per_second, without tcpdump), each whole
# second of the run against the target rate: the worst second's error
# (fixed and lognormal cases; the stall case stops arrivals on purpose).
# Client CPU per request: user + sys of the tool's process (GNU time) over
# the requests serve counted.
#
# Tools: fleetstorm (open model; latency from each heartbeat's intended
# time), oha -q (as sent) and oha -q --latency-correction (from intended),
# hey -q (per worker: CONNS workers at RATE/CONNS each), Locust (one
# process, constant_throughput users) and k6 (constant-arrival-rate) when
# they install from the reachable registries.
#
# Knobs: OUT [/tmp/fleetstorm-accuracy], RATE [2000], STALL_RATE [500],
#   SECS [20], STALL_AT [10], STALL_S [2], CONNS [200],
#   TOOLS ["fleetstorm oha oha-corrected hey locust k6"],
#   CASES ["base fixed lognormal stall"], INSTALL [1], BIN [a release build],
#   PIN [0] (1: serve on core 0 and each tool on core 1, with taskset, so
#   that the two do not contend for a core).
# Traffic goes to 127.0.0.1 only; every run is bounded by timeout(1).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT="${OUT:-/tmp/fleetstorm-accuracy}"
RATE="${RATE:-2000}"
STALL_RATE="${STALL_RATE:-500}"
SECS="${SECS:-20}"
STALL_AT="${STALL_AT:-10}"
STALL_S="${STALL_S:-2}"
CONNS="${CONNS:-200}"
TOOLS="${TOOLS:-fleetstorm oha oha-corrected hey locust k6}"
CASES="${CASES:-base fixed lognormal stall}"
INSTALL="${INSTALL:-1}"
PIN="${PIN:-0}"
SERVE_CPU=(); TOOL_CPU=()
if [ "$PIN" = 1 ]; then SERVE_CPU=(taskset -c 0); TOOL_CPU=(taskset -c 1); fi
PORT=18190
BASE="http://127.0.0.1:$PORT"
BIN="${BIN:-$ROOT/target/release/fleetstorm}"
PIDS=()

log() { echo "[accuracy $(date +%H:%M:%S)] $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
if [ "$INSTALL" = 1 ]; then
  need=()
  have hey || need+=(hey)
  have curl || need+=(curl)
  have tcpdump || need+=(tcpdump)
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
  if ! python3 -c "import locust" 2>/dev/null; then
    log "pip install locust"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore locust >/dev/null 2>&1 \
      || log "locust did not install: left out"
  fi
  if ! have k6; then
    # k6 is a Go binary published on its own site and in Grafana's apt
    # repository, neither reachable here; the npm package of that name is
    # not it. Left out unless already installed.
    log "k6 is not installed (no reachable registry ships it): left out"
  fi
fi
if [ "$BIN" = "$ROOT/target/release/fleetstorm" ]; then
  log "building fleetstorm (release)"
  cargo build --release --locked --quiet || exit 1
fi
rm -rf "$OUT"
mkdir -p "$OUT/raw"
{
  echo "date:    $(date -u +%FT%TZ)"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Linux $(uname -r)"
  echo "fleetstorm: $("$BIN" --version), tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
  echo "oha:     $([ -x "$OHA" ] && "$OHA" --version || echo 'not installed')"
  echo "hey:     $(have hey && dpkg-query -W -f='${Version}' hey 2>/dev/null || echo 'not installed')"
  echo "locust:  $(python3 -c 'import locust; print(locust.__version__)' 2>/dev/null || echo 'not installed')"
  echo "k6:      $(have k6 && k6 version | head -1 || echo 'not installed')"
  echo "tcpdump: $(have tcpdump && tcpdump --version 2>&1 | head -1 || echo 'not installed: no wire truth')"
  echo "pinned:  $([ "$PIN" = 1 ] && echo 'serve on core 0, each tool on core 1' || echo no)"
} | tee "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- serve
"${SERVE_CPU[@]}" "$BIN" serve --addr "127.0.0.1:$PORT" --max-devices 2000000 >"$OUT/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "$BASE/stats" >/dev/null && break; sleep 0.1; done
curl -sf "$BASE/stats" >/dev/null || { echo "serve did not start on port $PORT" >&2; exit 1; }
faults() { curl -sf -X POST -H 'Content-Type: application/json' --data "$1" "$BASE/faults" >/dev/null; }

python3 - "$OUT/body.json" <<'PY'
import json, sys
hb = {"AgentVersion": "1.0", "DeviceName": "device-000123", "DeviceFleetName": "fleet-east",
      "AgentMetrics": [{"Dimension": "agent", "MetricName": "CpuUtilization", "Timestamp": 1764160000.123, "Value": 12.5}]}
open(sys.argv[1], "w").write(json.dumps(hb, separators=(",", ":")))
PY
cat >"$OUT/locustfile.py" <<'PY'
from locust import HttpUser, constant_throughput, task
BODY = open(__file__.replace("locustfile.py", "body.json"), "rb").read()
class Device(HttpUser):
    wait_time = constant_throughput(1)
    @task
    def beat(self):
        self.client.post("/SendHeartbeat", data=BODY, headers={"Content-Type": "application/json"})
PY

scenario() { # FILE RATE
  cat >"$1" <<TOML
name = "accuracy"
seed = 1
duration = "${SECS}s"
[target]
url = "$BASE"
timeout = "10s"
connections = { pool = $CONNS }
[[fleets]]
name = "fleet-east"
devices = $2
interval = "1s"
start = "staggered"
TOML
}

# run TOOL CASE RATE: one run, raw files in $OUT/raw/TOOL.CASE.*
run() {
  local tool=$1 case=$2 rate=$3 name="$1.$2"
  local cmd=()
  case $tool in
    fleetstorm) scenario "$OUT/raw/$name.toml" "$rate"
                cmd=("$BIN" run "$OUT/raw/$name.toml" --quiet --out "$OUT/raw/$name.json") ;;
    oha) cmd=("$OHA" -q "$rate" -c "$CONNS" -z "${SECS}s" --no-tui --output-format json -m POST
              -H 'Content-Type: application/json' -D "$OUT/body.json" "$BASE/SendHeartbeat") ;;
    oha-corrected) cmd=("$OHA" -q "$rate" -c "$CONNS" -z "${SECS}s" --latency-correction --no-tui --output-format json
              -m POST -H 'Content-Type: application/json' -D "$OUT/body.json" "$BASE/SendHeartbeat") ;;
    hey) # -q is per worker: as many workers as divide the rate, up to CONNS.
         local workers=$CONNS
         while [ $((rate % workers)) != 0 ]; do workers=$((workers - 1)); done
         cmd=(hey -z "${SECS}s" -c "$workers" -q $((rate / workers)) -m POST -T application/json -D "$OUT/body.json"
              "$BASE/SendHeartbeat") ;;
    locust) cmd=(python3 -m locust -f "$OUT/locustfile.py" --headless -u "$rate" -r "$rate" -t "${SECS}s"
                 --host "$BASE" --csv "$OUT/raw/$name" --only-summary) ;;
    k6) return 0 ;;
  esac
  printf '%s\n' "${cmd[*]}" >"$OUT/raw/$name.cmd"
  curl -sf -X POST -H 'Content-Type: application/json' "$BASE/stats/reset" >/dev/null
  local capture=""
  if have tcpdump; then
    # The capture runs on core 0 with serve when pinned; it writes 128 bytes
    # of each packet (headers, no bodies) to a buffer the kernel fills.
    "${SERVE_CPU[@]}" tcpdump -i lo -n -s 128 -B 65536 --time-stamp-precision nano -w "$OUT/raw/$name.pcap" \
      "tcp port $PORT" 2>"$OUT/raw/$name.tcpdump" &
    capture=$!
    for _ in $(seq 100); do grep -q "listening on" "$OUT/raw/$name.tcpdump" 2>/dev/null && break; sleep 0.05; done
  fi
  local t0; t0=$(date +%s.%N)
  /usr/bin/time -v -o "$OUT/raw/$name.time" timeout --signal=INT --kill-after=10 $((SECS + 40)) "${TOOL_CPU[@]}" "${cmd[@]}" \
    >"$OUT/raw/$name.out" 2>"$OUT/raw/$name.err" &
  local pid=$!
  if [ "$case" = stall ]; then
    sleep "$STALL_AT"
    local on; on=$(date +%s.%N); faults "{\"stall\": \"60s\"}"
    sleep "$STALL_S"
    faults '{}'; local off; off=$(date +%s.%N)
    echo "$on $off" >"$OUT/raw/$name.stall"
  fi
  wait "$pid"
  echo $? >"$OUT/raw/$name.rc"
  echo "$t0 $(date +%s.%N)" >"$OUT/raw/$name.span"
  curl -sf "$BASE/stats" >"$OUT/raw/$name.stats"
  if [ -n "$capture" ]; then
    # The kernel hands captured packets over in blocks, a partly filled one
    # after its timeout (1 s): wait for it before stopping the capture.
    sleep 1.5
    kill -INT "$capture"; wait "$capture"
    python3 "$ROOT/benches/wire_truth.py" "$OUT/raw/$name.pcap" "$PORT" >"$OUT/raw/$name.wire" \
      && rm -f "$OUT/raw/$name.pcap"
    log "$name: wire $(cut -c1-120 "$OUT/raw/$name.wire"); $(grep -h 'dropped by kernel' "$OUT/raw/$name.tcpdump")"
  fi
  sleep 2
}

for case in $CASES; do
  rate=$RATE
  case $case in
    base) faults '{}' ;;
    fixed) faults '{"latency": "20ms"}' ;;
    lognormal) faults '{"latency": "lognormal:20ms,0.5"}' ;;
    stall) faults '{}'; rate=$STALL_RATE ;;
  esac
  for tool in $TOOLS; do
    case $tool in
      oha|oha-corrected) [ -x "$OHA" ] || continue ;;
      hey) have hey || continue ;;
      locust) python3 -c "import locust" 2>/dev/null || continue ;;
      k6) have k6 || continue ;;
    esac
    log "$case: $tool at $rate/s for ${SECS}s"
    run "$tool" "$case" "$rate"
  done
  faults '{}'
done

python3 - "$OUT" "$RATE" "$STALL_RATE" "$SECS" "$STALL_S" $CASES <<'PY' | tee "$OUT/table.md"
import json, math, os, re, sys
out, rate, stall_rate, secs, stall_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
cases = sys.argv[6:]
raw = os.path.join(out, "raw")

def read(p):
    try:
        return open(p).read()
    except OSError:
        return ""

def reported(tool, case):
    """(p50, p99, p99.9) in ms as the tool reports them, or None."""
    name = os.path.join(raw, f"{tool}.{case}")
    try:
        if tool == "fleetstorm":
            l = json.load(open(name + ".json"))["totals"]["latency_ms"]
            return l["p50"], l["p99"], l["p999"]
        if tool.startswith("oha"):
            p = json.loads(read(name + ".out"))["latencyPercentiles"]
            return p["p50"] * 1e3, p["p99"] * 1e3, p["p99.9"] * 1e3
        if tool == "hey":
            text = read(name + ".out")
            pick = lambda q: float(re.search(rf"\b{q}% in ([0-9.]+) secs", text).group(1)) * 1e3
            return pick(50), pick(99), None
        if tool == "locust":
            rows = open(name + "_stats.csv").read().splitlines()
            head = rows[0].split(",")
            agg = next(r.split(",") for r in rows[1:] if ",Aggregated," in r)
            col = lambda k: float(agg[head.index(k)])
            return col("50%"), col("99%"), col("99.9%")
    except (OSError, ValueError, KeyError, AttributeError, StopIteration, TypeError):
        return None

def wire(tool, case):
    try:
        return json.load(open(os.path.join(raw, f"{tool}.{case}.wire")))
    except (OSError, ValueError):
        return None

def dropped(tool, case):
    m = re.search(r"(\d+) packets? dropped by kernel", read(os.path.join(raw, f"{tool}.{case}.tcpdump")))
    return int(m.group(1)) if m else None

def cpu_and_arrivals(tool, case):
    t = read(os.path.join(raw, f"{tool}.{case}.time"))
    u = re.search(r"User time \(seconds\): ([0-9.]+)", t)
    s = re.search(r"System time \(seconds\): ([0-9.]+)", t)
    try:
        stats = json.load(open(os.path.join(raw, f"{tool}.{case}.stats")))
    except (OSError, ValueError):
        return None, None
    served_n = sum(c for _, c in stats.get("arrivals_per_second", []))
    w = wire(tool, case)
    arrivals = w["arrivals_per_second"] if w else stats.get("arrivals_per_second", [])
    cpu = (float(u.group(1)) + float(s.group(1))) * 1e6 / served_n if u and s and served_n else None
    return cpu, arrivals

def served(tool, case):
    """serve's own (p50, p99, p99.9) in ms over the tool's run, or None."""
    try:
        s = json.load(open(os.path.join(raw, f"{tool}.{case}.stats")))["served_us"]
        return s["p50_us"] / 1e3, s["p99_us"] / 1e3, s["p999_us"] / 1e3
    except (OSError, ValueError, KeyError, TypeError):
        return None

def worst_second(arrivals, target):
    whole = arrivals[1:-1]  # the first and last seconds are partial
    if not whole:
        return None
    return max(abs(c - target) / target for _, c in whole)

tools = ["fleetstorm", "oha", "oha-corrected", "hey", "locust", "k6"]
present = [t for t in tools if any(os.path.exists(os.path.join(raw, f"{t}.{c}.time")) for c in cases)]
# The backend's own answer time with no fault: the lowest wire p50 of the
# base runs (serve's own p50 without a capture).
base_wire = [w["p50"] for t in present if (w := wire(t, "base")) and w["p50"] is not None]
base_served = [s[0] for t in present if (s := served(t, "base"))]
base = min(base_wire) if base_wire else min(base_served) if base_served else 0.0
z99, z999 = 2.3263, 3.0902
ideal = {
    "fixed": (20 + base, 20 + base, 20 + base),
    "lognormal": (20 + base, 20 * math.exp(0.5 * z99) + base, 20 * math.exp(0.5 * z999) + base),
}
def stall_truth(tool):
    try:
        on, off = map(float, read(os.path.join(raw, f"{tool}.stall.stall")).split())
    except ValueError:
        return None
    s = off - on
    n = stall_rate * secs
    n_s = stall_rate * s
    def q(p):
        rank = p * n
        return base if rank <= n - n_s else base + 1000 * s * (rank - (n - n_s)) / n_s
    return q(0.5), q(0.99), q(0.999)

def cell(v, *truths):
    if v is None:
        return "—"
    ratios = [f"{v / t:.3f}" for t in truths if t is not None and t > 0]
    return f"{v:.2f}" + (f" ({' · '.join(ratios)})" if ratios else "")

print(f"backend's answer time with no fault (the base case's lowest wire p50): {base:.3f} ms\n")
print("Each tool's percentile, then in brackets its ratio to the wire truth (the server's time over each")
print("request, from the packet capture of that same run) · and to the ideal (what serve was told + the")
print("base answer time). The stall case has one ratio: to the schedule's truth (the script's header).\n")
print("| case | tool | p50 ms (÷ wire · ideal) | p99 ms (÷ wire · ideal) | p99.9 ms (÷ wire · ideal) | wire p50 / p99 / p99.9 ms | serve's own p50 / p99 / p99.9 ms | worst second's rate error | client CPU µs/req | capture |")
print("|---|---|---|---|---|---|---|---|---|---|")
for case in cases:
    for tool in present:
        r = reported(tool, case)
        cpu, arrivals = cpu_and_arrivals(tool, case)
        if r is None and cpu is None:
            continue
        w = wire(tool, case)
        wt = (w["p50"], w["p99"], w["p999"]) if w and w["exchanges"] else (None, None, None)
        if case == "stall":
            truths = [(t,) for t in (stall_truth(tool) or (None, None, None))]
        else:
            it = ideal.get(case, (None, None, None))
            truths = [(wt[i], it[i]) for i in range(3)]
        cells = [cell(r[i] if r else None, *truths[i]) for i in range(3)]
        own = served(tool, case)
        target = stall_rate if case == "stall" else rate
        ws = worst_second(arrivals or [], target) if case != "stall" else None
        d = dropped(tool, case)
        cap = "—" if not w else f"{w['exchanges']:,} exchanges, {d if d is not None else '?'} dropped, {w['unanswered']} unanswered"
        fmt3 = lambda t: "—" if t is None or t[0] is None else " / ".join(f"{v:.2f}" for v in t)
        print(f"| {case} | {tool} | {cells[0]} | {cells[1]} | {cells[2]} | {fmt3(wt)} | {fmt3(own)} | "
              f"{'—' if ws is None else f'{ws * 100:.2f}%'} | {'—' if cpu is None else f'{cpu:.1f}'} | {cap} |")
    if case == "stall" and present:
        t = stall_truth(present[0])
        if t:
            print(f"| {case} | **truth** (stall as timed for {present[0]}) | {t[0]:.2f} | {t[1]:.2f} | {t[2]:.2f} | | | 0% | | |")
    elif case in ideal:
        t = ideal[case]
        print(f"| {case} | **ideal** (what serve was told + base) | {t[0]:.2f} | {t[1]:.2f} | {t[2]:.2f} | | | 0% | | |")
PY
log "table in $OUT/table.md; raw files in $OUT/raw"
