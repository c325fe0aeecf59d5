#!/usr/bin/env python3
"""The server's time over each request as the wire saw it: an independent
truth for benches/accuracy.sh.

Reads a packet capture taken on loopback (`tcpdump -i lo -w FILE 'tcp port
PORT'`) and, for each HTTP/1.1 exchange on each connection, takes the
kernel's timestamp of the request's first data segment arriving at PORT and
of the answer's first data segment leaving it. Neither the load generator
nor the server controls these clocks or this arithmetic: the difference is
the time the backend held the request, its queueing, its timer's lateness
and its write included. Requests on one connection alternate with their
answers (no pipelining; every tool here waits for an answer before sending
the next request on a connection), so a connection is either idle or
waiting for the answer to the request it carries.

Prints one JSON object: exchanges (count), p50/p99/p999 in ms (exact,
from the sorted times), arrivals_per_second ([[second, count], ...] from
the first arrival), and unanswered (requests still waiting at the end).

Usage: wire_truth.py CAPTURE PORT
"""

import json
import math
import struct
import sys


def packets(path):
    """(timestamp in seconds, src port, dst port, payload length) per TCP/IPv4 packet."""
    with open(path, "rb") as f:
        head = f.read(24)
        magic = struct.unpack("<I", head[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            endian = "<"
        else:
            endian = ">"
            magic = struct.unpack(">I", head[:4])[0]
        if magic not in (0xA1B2C3D4, 0xA1B23C4D):
            sys.exit(f"{path}: not a pcap file (magic {head[:4].hex()})")
        fraction = 1e-9 if magic == 0xA1B23C4D else 1e-6
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        link_len = {0: 4, 1: 14, 108: 4, 113: 16, 276: 20, 101: 0, 12: 0}.get(linktype)
        if link_len is None:
            sys.exit(f"{path}: link type {linktype} is not one this reader knows")
        record = struct.Struct(endian + "IIII")
        while True:
            rh = f.read(16)
            if len(rh) < 16:
                return
            sec, frac, incl, orig = record.unpack(rh)
            data = f.read(incl)
            ip = data[link_len:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            tcp = ip[ihl:]
            if len(tcp) < 20:
                continue
            sport, dport = struct.unpack(">HH", tcp[:4])
            offset = (tcp[12] >> 4) * 4
            yield sec + frac * fraction, sport, dport, total - ihl - offset


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def main():
    path, port = sys.argv[1], int(sys.argv[2])
    waiting = {}  # client port -> arrival time of the request it carries
    times, arrivals = [], []
    for ts, sport, dport, length in packets(path):
        if length <= 0:
            continue
        if dport == port:
            if sport not in waiting:
                waiting[sport] = ts
                arrivals.append(ts)
        elif sport == port and dport in waiting:
            times.append(ts - waiting.pop(dport))
    times.sort()
    per_second = {}
    if arrivals:
        first = arrivals[0]
        for ts in arrivals:
            s = int(ts - first)
            per_second[s] = per_second.get(s, 0) + 1
    ms = lambda v: None if v is None else v * 1e3
    json.dump({
        "exchanges": len(times),
        "p50": ms(percentile(times, 0.5)),
        "p99": ms(percentile(times, 0.99)),
        "p999": ms(percentile(times, 0.999)),
        "arrivals_per_second": sorted(per_second.items()),
        "unanswered": len(waiting),
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
