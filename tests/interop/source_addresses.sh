#!/usr/bin/env bash
# Source addresses lift the local port ceiling. Run inside `unshare -n`
# (a network namespace of its own, so the sysctl below touches nothing
# else): only 1,000 local ports, so one source address carries 500
# connections at full speed. 3,000 per-device connections toward
# 127.0.0.1 with no source addresses given are spread over 127.0.0.1-6 by
# fleetstorm and held at once, counted with ss; the same plan pinned to
# one source address must be refused by validate.
#
# Usage: unshare -n bash source_addresses.sh FLEETSTORM_BIN WORKDIR
# Prints one JSON object.
set -euo pipefail
BIN=$1
DIR=$2
PORT=18500
ip link set lo up
sysctl -q -w net.ipv4.ip_local_port_range="40000 40999"

scenario() { # file, extra target lines
  cat >"$1" <<TOML
seed = 3
duration = "12s"
[target]
url = "http://127.0.0.1:$PORT"
connections = "per-device"
timeout = "5s"
$2
[[fleets]]
name = "wide"
devices = 3000
interval = "4s"
TOML
}
scenario "$DIR/without.toml" 'source_addresses = ["127.0.0.1"]'
scenario "$DIR/with.toml" ""

refused=0
"$BIN" validate "$DIR/without.toml" >/dev/null 2>"$DIR/refusal.txt" || refused=$?

"$BIN" serve --addr "127.0.0.1:$PORT" >"$DIR/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done

"$BIN" run "$DIR/with.toml" --quiet --out "$DIR/report.json" >"$DIR/run.log" 2>&1 &
RUN=$!
most=0
sources=0
for _ in $(seq 20); do
  sleep 0.5
  n=$(ss -Htn state established "( dport = :$PORT )" | wc -l)
  if [ "$n" -gt "$most" ]; then
    most=$n
    sources=$(ss -Htn state established "( dport = :$PORT )" | awk '{print $3}' | cut -d: -f1 | sort -u | wc -l)
  fi
done
wait $RUN || true
python3 - "$DIR" "$refused" "$most" "$sources" <<'PY'
import json, sys
d, refused, most, sources = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
report = json.load(open(f"{d}/report.json"))
print(json.dumps({
    "validate_exit": refused,
    "refusal": open(f"{d}/refusal.txt").read().strip(),
    "established_most": most,
    "distinct_sources": sources,
    "ok": report["totals"]["ok"],
    "failed": report["totals"]["failed"],
    "connects": report["totals"]["connects"],
    "report_sources": report["scenario"]["target"].get("source_addresses", []),
    "spread": report["scenario"]["target"].get("sources_spread", False),
}))
PY
