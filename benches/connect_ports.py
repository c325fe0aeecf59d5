#!/usr/bin/env python3
"""connect_ports.py - what one connect() costs as a destination's local
ports fill up, by how the source port is chosen.

Opens COUNT connections to 127.0.0.1:PORT (an acceptor that keeps them:
`--accept`), in steps of STEP, and prints the seconds each step took.
Modes (how each socket gets its local port):

  kernel     connect() on an unbound socket: the kernel searches the
             ephemeral range inside connect() (even ports first, then odd)
  no-port    bind(SOURCE, 0) with IP_BIND_ADDRESS_NO_PORT: the port is
             chosen at connect() by the whole 4-tuple
  allocator  bind(SOURCE, p) to ports fleetstorm picks in turn from the
             ephemeral range (a port the kernel refuses is skipped)

One process may hold at most 20,000 files here: open more in a second
process (`--offset` continues the allocator past the first's ports).
Every address is on loopback.
"""
import argparse, os, selectors, socket, sys, time

IP_BIND_ADDRESS_NO_PORT = 24


def port_range():
    lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
    return int(lo), int(hi)


def accept(port, keep, ready):
    """Accepts and keeps connections (SO_REUSEPORT: several acceptors)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(4096)
    if ready:
        open(ready, "w").write("ready")
    held = []
    while len(held) < keep:
        c, _ = s.accept()
        held.append(c)
    time.sleep(3600)


def connect(args):
    lo, hi = port_range()
    next_port = lo + args.offset
    held, out = [], []
    t0 = time.perf_counter()
    step_t = t0
    for i in range(args.count):
        s = socket.socket()
        if args.mode == "no-port":
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((args.source, 0))
        elif args.mode == "allocator":
            while True:
                if next_port > hi:
                    sys.exit("allocator: ports exhausted")
                try:
                    s.bind((args.source, next_port))
                    next_port += 1
                    break
                except OSError:
                    next_port += 1
        s.connect(("127.0.0.1", args.port))
        held.append(s)
        if (i + 1) % args.step == 0:
            now = time.perf_counter()
            out.append((i + 1 + args.already, now - step_t))
            step_t = now
    for n, dt in out:
        print(f"{args.mode} {n} {dt:.4f}")
    sys.stdout.flush()
    if args.hold:
        time.sleep(args.hold)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--accept", action="store_true")
    p.add_argument("--keep", type=int, default=15000)
    p.add_argument("--ready")
    p.add_argument("--port", type=int, default=18400)
    p.add_argument("--mode", choices=["kernel", "no-port", "allocator"], default="kernel")
    p.add_argument("--source", default="127.0.0.1")
    p.add_argument("--count", type=int, default=14000)
    p.add_argument("--step", type=int, default=1500)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--already", type=int, default=0)
    p.add_argument("--hold", type=float, default=0)
    a = p.parse_args()
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    if a.accept:
        accept(a.port, a.keep, a.ready)
    else:
        connect(a)


if __name__ == "__main__":
    main()
