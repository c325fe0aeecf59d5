#!/usr/bin/env bash
# connect_ports.sh - the cost of connect() as one destination's local ports
# fill up (the per-device connection ceiling of issue "connections at
# scale"), for each way of choosing the source port: the kernel's search,
# IP_BIND_ADDRESS_NO_PORT, and fleetstorm's own allocator. Opens TOTAL
# connections to 127.0.0.1 in two processes (one may hold 20,000 files),
# STEP at a time, and prints the seconds each step took.
#
# Usage: benches/connect_ports.sh        Knobs: TOTAL [28000], STEP [1500]
set -euo pipefail
cd "$(dirname "$0")"
TOTAL="${TOTAL:-28000}"
STEP="${STEP:-1500}"
HALF=$((TOTAL / 2))
PORT=18400
for mode in kernel no-port allocator; do
  rm -f /tmp/connect-ports-ready.*
  # Two acceptors sharing the port (SO_REUSEPORT), each keeping its half.
  python3 connect_ports.py --accept --port $PORT --keep $((HALF + 2000)) --ready /tmp/connect-ports-ready.1 &
  A1=$!
  python3 connect_ports.py --accept --port $PORT --keep $((HALF + 2000)) --ready /tmp/connect-ports-ready.2 &
  A2=$!
  while [ ! -e /tmp/connect-ports-ready.1 ] || [ ! -e /tmp/connect-ports-ready.2 ]; do sleep 0.1; done
  python3 connect_ports.py --mode $mode --port $PORT --count $HALF --step $STEP --hold 600 &
  C1=$!
  # The second process starts once the first holds its half.
  sleep 1
  while [ "$(ss -Htn state established "( dport = :$PORT )" | wc -l)" -lt "$HALF" ]; do sleep 0.2; done
  python3 connect_ports.py --mode $mode --port $PORT --count $HALF --step $STEP --offset $HALF --already $HALF
  kill $C1 $A1 $A2 2>/dev/null || true
  wait 2>/dev/null || true
  # Let the closed connections' TIME_WAIT not pollute the next mode's range.
  sleep 2
  while [ "$(ss -Htn state time-wait | wc -l)" -gt 100 ]; do sleep 1; done
done
