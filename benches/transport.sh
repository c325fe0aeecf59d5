#!/usr/bin/env bash
# transport.sh - client CPU per heartbeat for each way of reaching a
# backend: HTTP/1.1 keep-alive, HTTP/2 (h2c), HTTPS keep-alive (HTTP/1.1
# and HTTP/2) and HTTPS with a new connection (TCP + TLS handshake) per
# heartbeat. Each case runs 2,000 heartbeats/s for RUN_S seconds against
# `fleetstorm serve` on 127.0.0.1 (its own process; HTTPS with a
# throwaway certificate made here with openssl), alternating cases, ROUNDS
# times; GNU time measures the fleetstorm run process only.
#
# Usage: benches/transport.sh        Knobs: OUT, RUN_S [10], ROUNDS [3]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/fleetstorm-transport}"
RUN_S="${RUN_S:-10}"
ROUNDS="${ROUNDS:-3}"
PLAIN=18201
TLS=18202
mkdir -p "$OUT"
cargo build --release --locked --quiet
BIN=target/release/fleetstorm

# A CA, and a server certificate for 127.0.0.1 signed by it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=fleetstorm bench CA" -keyout "$OUT/ca.key" -out "$OUT/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
  -keyout "$OUT/key.pem" -out "$OUT/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' >"$OUT/ext.cnf"
openssl x509 -req -in "$OUT/server.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" -CAcreateserial -days 1 \
  -extfile "$OUT/ext.cnf" -out "$OUT/cert.pem" 2>/dev/null

"$BIN" serve --addr "127.0.0.1:$PLAIN" >"$OUT/serve-plain.log" 2>&1 &
S1=$!
"$BIN" serve --addr "127.0.0.1:$TLS" --tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem" >"$OUT/serve-tls.log" 2>&1 &
S2=$!
trap 'kill $S1 $S2 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 1

scenario() { # name url http connections
  cat >"$OUT/$1.toml" <<TOML
name = "$1"
seed = 1
duration = "${RUN_S}s"
[target]
url = "$2"
http = "$3"
connections = $4
timeout = "2s"
$( [[ $2 == https* ]] && echo "tls = { ca = \"$OUT/ca.pem\" }" )
[[fleets]]
name = "bench"
devices = 1000
interval = "500ms"
TOML
}
scenario h1-keepalive "http://127.0.0.1:$PLAIN" 1.1 "{ pool = 50 }"
scenario h2c "http://127.0.0.1:$PLAIN" 2 "{ pool = 4 }"
scenario https-h1-keepalive "https://127.0.0.1:$TLS" 1.1 "{ pool = 50 }"
scenario https-h2 "https://127.0.0.1:$TLS" 2 "{ pool = 4 }"
scenario https-new-per-request "https://127.0.0.1:$TLS" 1.1 '"new-per-request"'

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
for round in $(seq "$ROUNDS"); do
  for c in h1-keepalive h2c https-h1-keepalive https-h2 https-new-per-request; do
    /usr/bin/time -v -o "$OUT/$c-$round.time" timeout $((RUN_S + 30)) "$BIN" run "$OUT/$c.toml" --quiet \
      --out "$OUT/$c-$round.json" >/dev/null 2>"$OUT/$c-$round.err" || true
  done
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
cases = ["h1-keepalive", "h2c", "https-h1-keepalive", "https-h2", "https-new-per-request"]
print(f"{'case':<24}{'us/heartbeat (median)':>22}{'runs':>22}{'connects':>10}{'TLS p50 ms':>12}{'p99 ms':>9}{'failed':>8}")
for c in cases:
    per, last = [], None
    for r in range(1, rounds + 1):
        t = open(f"{out}/{c}-{r}.time").read()
        get = lambda k: float(re.search(re.escape(k) + r":\s*([0-9.]+)", t).group(1))
        rep = json.load(open(f"{out}/{c}-{r}.json"))
        tot = rep["totals"]
        per.append((get("User time (seconds)") + get("System time (seconds)")) / max(tot["sent"], 1) * 1e6)
        last = tot
    tls = last.get("tls_handshake_ms", {}).get("p50", float("nan"))
    runs = " ".join(f"{x:.1f}" for x in per)
    print(f"{c:<24}{statistics.median(per):>22.1f}{runs:>22}{last['connects']:>10}{tls:>12.2f}"
          f"{last['latency_ms']['p99']:>9.2f}{last['failed']:>8}")
PY
