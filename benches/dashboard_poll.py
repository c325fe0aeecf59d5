#!/usr/bin/env python3
"""Follows a fleetstorm dashboard as its page does, for peers.sh's
`fleetstorm-dash` tool: waits for the address fleetstorm prints on stderr
(in ERRFILE), loads the page once, then asks for /api/state?since=N once a
second (N: the points it already has), until the run stops answering or
SECONDS + 30 s pass. Loopback only: the address is the one fleetstorm
bound, 127.0.0.1.

Usage: dashboard_poll.py ERRFILE SECONDS
"""
import json
import re
import sys
import time
import urllib.request

errfile, seconds = sys.argv[1], float(sys.argv[2])
deadline = time.time() + seconds + 30
url = None
while url is None and time.time() < deadline:
    try:
        m = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", open(errfile).read())
        url = m and m.group(1)
    except OSError:
        pass
    time.sleep(0.05)
if url is None:
    sys.exit("no dashboard address on fleetstorm's stderr")
polls, points = 0, 0
try:
    urllib.request.urlopen(url, timeout=5).read()
    while time.time() < deadline:
        state = json.load(urllib.request.urlopen(f"{url}api/state?since={points}", timeout=5))
        points = state["points_from"] + len(state["points"])
        polls += 1
        if state["finished"]:
            urllib.request.urlopen(url + "report", timeout=5).read()
            break
        time.sleep(1)
except OSError:
    pass
print(f"dashboard polled {polls} times, {points} points", file=sys.stderr)
