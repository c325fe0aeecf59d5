#!/usr/bin/env bash
# profile_max.sh - where fleetstorm's time goes at its maximum rate: the
# pinned case of peers.sh (nginx on core 0, fleetstorm on core 1), one run
# at RATE heartbeats/s under `perf record -e cpu-clock`, then the samples
# grouped by what they do (kernel network path, runtime, HTTP/1.1, body,
# accounting, allocator...) and the top symbols.
#
# Usage: benches/profile_max.sh
# Knobs: RATE [180000] (heartbeats/s: peers.sh's pinned kept-up rate),
#        SECONDS_RUN [10], CONNS [50] (as peers.sh), OUT [/tmp/fleetstorm-profile],
#        PORT [18291].
# Needs: nginx, perf (Debian's nginx-light and linux-perf; installed if
# missing and this is root). Traffic goes to 127.0.0.1 only; the run is
# bounded by its scenario's duration and by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${RATE:-180000}"
SECONDS_RUN="${SECONDS_RUN:-10}"
CONNS="${CONNS:-50}"
OUT="${OUT:-/tmp/fleetstorm-profile}"
PORT="${PORT:-18291}"
mkdir -p "$OUT"
if ! command -v nginx >/dev/null || ! command -v perf >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "needs nginx and perf (apt-get install nginx-light linux-perf)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light linux-perf >/dev/null
fi
cargo build --release --locked --quiet
BIN=target/release/fleetstorm

source benches/nginx.sh
nginx_conf "$OUT/nginx" "$PORT"
taskset -c 0 nginx -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" &
NGINX=$!
trap 'kill $NGINX 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary '{}' "http://127.0.0.1:$PORT/SendHeartbeat")" = 200 ] && break
  sleep 0.1
done

cat >"$OUT/max.toml" <<TOML
name = "profile"
seed = 1
duration = "${SECONDS_RUN}s"
[target]
url = "http://127.0.0.1:$PORT"
timeout = "2s"
connections = { pool = $CONNS }
[[fleets]]
name = "fleet-east"
devices = $RATE
device_name = "device-{index:07}"
agent_versions = { "1.20231.0" = 1.0 }
interval = "1s"
start = "staggered"
[[fleets.agent_metrics]]
name = "CpuUtilization"
min = 0.0
max = 100.0
[[fleets.agent_metrics]]
name = "MemoryUtilization"
min = 10.0
max = 95.0
[[fleets.models]]
name = "resnet50-int8"
versions = { "1.0" = 1.0 }
[[fleets.models.metrics]]
name = "InferenceLatencyMs"
min = 4.0
max = 60.0
TOML

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "fleetstorm: tree at $(git rev-parse --short HEAD), $RATE/s for ${SECONDS_RUN}s over $CONNS connections, pinned to core 1"
/usr/bin/time -f "client: user %U s, system %S s" -o "$OUT/time.txt" \
  timeout --signal=INT $((SECONDS_RUN + 30)) \
  taskset -c 1 perf record -q -e cpu-clock -F 4000 -o "$OUT/perf.data" -- \
  "$BIN" run "$OUT/max.toml" --quiet --out "$OUT/max.json" >"$OUT/run.out" 2>"$OUT/run.err" || true
cat "$OUT/time.txt"
python3 - "$OUT/max.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["totals"]
print(f"run: offered {t['offered_rate']:.0f}/s achieved {t['achieved_rate']:.0f}/s, sent {t['sent']}, "
      f"missed {t['missed']} failed {t['failed']}, schedule lag p99 {t['schedule_lag_ms']['p99']:.2f} ms")
PY
perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio -q --percent-limit 0.01 2>/dev/null \
  >"$OUT/report.txt"
python3 - "$OUT/report.txt" <<'PY'
# Groups perf's flat profile (no call graphs: the release build has no
# frame pointers) by what each symbol does. A symbol no rule names is
# "other user code"; the top of that bucket is printed so a new hot spot
# cannot hide in it.
import re, sys
rules = [
    ("kernel: TCP send path", r"tcp_sendmsg|tcp_write_xmit|__tcp_transmit|tcp_push|ip_output|ip_finish|__ip_queue_xmit|__dev_queue_xmit|loopback_xmit|dev_hard_start|skb_copy_datagram_from|sock_sendmsg|__sys_sendto|sendto"),
    ("kernel: TCP receive path", r"tcp_recvmsg|tcp_v4_rcv|tcp_rcv|ip_rcv|ip_local_deliver|__netif_receive|process_backlog|net_rx_action|skb_copy_datagram_iter|__skb_datagram|tcp_ack|tcp_clean_rtx|sock_recvmsg|____sys_recvmsg|__sys_recvmsg|recvmsg|__napi|tcp_cleanup_rbuf|sock_def_readable|tcp_data_queue|tcp_event_data|kfree_skb|skb_release|__alloc_skb|kmalloc_reserve|__kmem_cache|kmem_cache|sk_filter|__sk_mem|tcp_queue_rcv|tcp_urg|tcp_stream_memory|tcp_recv_timestamp|put_cmsg|__sock_recv_timestamp"),
    ("kernel: epoll and wake-ups", r"ep_poll|ep_send_events|ep_item_poll|do_epoll|__x64_sys_epoll|epoll_wait|__wake_up|ep_poll_callback|try_to_wake|tcp_poll|sock_poll|eventfd|timerfd|hrtimer|schedule|__schedule|finish_task_switch|pick_next|dequeue_task|enqueue_task|update_curr|psi_"),
    ("kernel: syscall entry and exit, other", r"entry_SYSCALL|syscall_exit|do_syscall|syscall_return|__fget|fput|fdget|_copy_to_user|_copy_from_user|__check_object|rep_movs|clear_user|native_|srso|retbleed|__x86_return|irqentry|asm_|__rcu|rcu_|__local_bh|_raw_spin|__softirq|do_softirq|__irq|ktime_get|read_tsc|lock_sock|release_sock|__release_sock"),
    ("user: tokio runtime and I/O driver", r"tokio::|mio::|futures_util::|futures_core|core::task|std::thread::local|Waker|waker"),
    ("user: HTTP/1.1 request and answer", r"transport::http::h1|transport::|httparse|http::|hyper|write_request|Answer|parse"),
    ("user: heartbeat body", r"device::|generate|write_next|write_metrics|ryu|itoa|format_ts|Xoshiro|rand::"),
    ("user: accounting (histograms, counters, timeline)", r"hdrhistogram|metrics::|record|Histogram|Recorder|timeline|Timeline|stats::"),
    ("user: worker schedule and dispatch", r"engine::|worker::|fleet::|dispatch|BinaryHeap|sift|Schedule|DeviceClock"),
    ("user: allocator", r"malloc|free|realloc|_int_|cfree|tcache|arena|alloc::alloc|__rust_alloc|__rust_dealloc|__rdl_|__rg_"),
    ("user: memory copies", r"memcpy|memmove|memset|__memcpy|__memmove"),
    ("user: libc syscall wrappers", r"__libc_|__GI_|recvmsg@|sendto@|__send|__recv|epoll_wait@|clock_gettime|__vdso|vdso"),
]
compiled = [(name, re.compile(pat)) for name, pat in rules]
buckets, top, other = {}, [], []
total = 0.0
for line in open(sys.argv[1]):
    m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[([.k])\]\s+(.*)", line)
    if not m:
        continue
    pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
    total += pct
    kernel = kind == "k" or dso.startswith("[kernel")
    name = None
    for bucket, rx in compiled:
        if bucket.startswith("kernel") != kernel:
            continue
        if rx.search(sym):
            name = bucket
            break
    if name is None:
        name = "kernel: other" if kernel else "user: other"
        if not kernel:
            other.append((pct, sym))
    buckets[name] = buckets.get(name, 0.0) + pct
    top.append((pct, "k" if kernel else "u", sym))
print(f"\nsamples grouped (% of all fleetstorm samples; {total:.1f}% classified lines):")
kern = sum(v for k, v in buckets.items() if k.startswith("kernel"))
print(f"  kernel {kern:.1f}%   user {total - kern:.1f}%")
for name, pct in sorted(buckets.items(), key=lambda kv: -kv[1]):
    print(f"  {pct:5.1f}%  {name}")
print("\ntop 25 symbols:")
for pct, k, sym in sorted(top, reverse=True)[:25]:
    print(f"  {pct:5.2f}%  [{k}] {sym[:110]}")
if other:
    print("\ntop of 'user: other':")
    for pct, sym in sorted(other, reverse=True)[:8]:
        print(f"  {pct:5.2f}%  {sym[:110]}")
PY
echo "raw: $OUT/perf.data, $OUT/report.txt"
