#!/usr/bin/env python3
"""Follows a running fleetstorm dashboard in headless Chromium and reports,
as JSON on stdout, what the page showed: two readings of its counts from
the DOM some seconds apart (with a screenshot each), then, after the run
is interrupted (SIGINT to PID), the page the browser ended on. Every
request the page makes goes through the DevTools Fetch domain: those to
the dashboard's address go on, any other is failed and listed in
`blocked`. Chromium's own traffic goes to a proxy on a closed loopback
port, so nothing leaves the machine either way.

Usage: check_dashboard.py URL PID SCREENSHOT_PREFIX

Needs `chromium` and the `websocket-client` package.
"""
import base64
import json
import os
import signal
import sys
import time

from chromium import Chromium

READ = r"""
(() => {
  const n = id => Number((document.getElementById(id) || {textContent: 'NaN'}).textContent.replace(/,/g, ''));
  return JSON.stringify({
    path: location.pathname,
    title: document.title,
    status: (document.getElementById('status') || {}).textContent,
    elapsed: n('elapsed'), sent: n('sent'), ok: n('ok'), scheduled: n('scheduled'), online: n('online'),
    stale: (document.getElementById('stale') || {}).textContent,
    // The sessions tile, when shown (a run of sessions'); null otherwise.
    sessions_open: (document.getElementById('sessions-tile') || {hidden: true}).hidden ? null : n('sessions-open'),
    // Data series drawn in each chart, and their vertices; the top of its
    // y axis (its largest label: above 1 when some value was).
    charts: [...document.querySelectorAll('figure')].filter(f => !f.hidden).map(f => ({
      id: f.id,
      series: [...f.querySelectorAll('polyline.series')].map(l => l.points.numberOfItems),
      width: f.querySelector('svg').getBoundingClientRect().width,
      top: Math.max(0, ...[...f.querySelectorAll('svg text')].map(t => Number(t.textContent.replace(/,/g, ''))).filter(v => !isNaN(v))),
    })),
    thresholds: [...document.querySelectorAll('#thresholds tr')].map(r => [...r.cells].map(c => c.innerText.trim())),
    headings: [...document.querySelectorAll('h2')].map(h => h.innerText),
    external: [...document.querySelectorAll('[src], link[href]')].map(e => e.src || e.href),
    height: document.documentElement.scrollHeight,
  });
})()
"""


def main():
    url, pid, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    origin = url.rstrip("/")
    requested, blocked = [], []
    # Anything not on loopback would go to a closed port here.
    with Chromium(1200, 1000, ["--proxy-server=http://127.0.0.1:9"]) as browser:
        call = browser.call

        def handle(msg):
            """Lets a paused request go on if it is the dashboard's, fails it otherwise."""
            if msg.get("method") != "Fetch.requestPaused":
                return
            p = msg["params"]
            target = p["request"]["url"]
            requested.append(target)
            if target == origin or target.startswith(origin + "/"):
                browser.send("Fetch.continueRequest", requestId=p["requestId"])
            else:
                blocked.append(target)
                browser.send("Fetch.failRequest", requestId=p["requestId"], errorReason="BlockedByClient")

        browser.on_event = handle

        def read():
            """The page's readings; `{}` while it is between documents."""
            r = call("Runtime.evaluate", tolerate=True, expression=READ, returnByValue=True)
            value = ((r or {}).get("result") or {}).get("value")
            return json.loads(value) if isinstance(value, str) else {}

        def loaded():
            """The document has been parsed whole (its last byte arrived)."""
            r = call("Runtime.evaluate", tolerate=True, expression="document.readyState", returnByValue=True)
            return ((r or {}).get("result") or {}).get("value") == "complete"

        def pump(seconds):
            """Waits, letting the page's requests through meanwhile."""
            until = time.time() + seconds
            while time.time() < until:
                call("Runtime.evaluate", tolerate=True, expression="1", returnByValue=True)
                time.sleep(0.05)

        def shot(name, height):
            data = call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": 1200, "height": height, "scale": 1})["data"]
            with open(f"{prefix}-{name}.png", "wb") as f:
                f.write(base64.b64decode(data))

        call("Fetch.enable", patterns=[{"urlPattern": "*"}])
        call("Page.enable")
        call("Page.navigate", url=url)
        def count(reading, name):
            """A count the page shows; 0 until its first poll has filled it
            in (the DOM's placeholder reads as NaN, which JSON makes null)."""
            value = reading.get(name)
            return value if isinstance(value, (int, float)) else 0

        def drawn(reading):
            """The points of the rate chart's least-drawn series."""
            return min((s for c in reading.get("charts", []) if c["id"] == "rate" for s in c["series"]), default=0)

        # The first reading: the page has drawn counts and at least two points.
        deadline = time.time() + 60
        while True:
            first = read()
            if count(first, "sent") > 0 and drawn(first) >= 2:
                break
            if time.time() > deadline:
                sys.exit(f"the dashboard drew no counts within 60 s: {first}")
            pump(0.2)
        shot("1", first["height"])
        # The second reading, a few seconds on, once the counts have moved
        # and a point has been added (a busy machine may delay the polls).
        pump(3)
        deadline = time.time() + 30
        while True:
            second = read()
            moved = count(second, "sent") > count(first, "sent") and drawn(second) > drawn(first)
            if moved or time.time() > deadline:
                break
            pump(0.2)
        shot("2", second["height"])
        # The end of the run: the final report replaces the page.
        os.kill(pid, signal.SIGINT)
        deadline = time.time() + 60
        while True:
            final = read()
            if final.get("path") == "/report" and final.get("title", "").startswith("fleetstorm") and loaded():
                final = read()  # the whole document, parsed
                break
            if time.time() > deadline:
                sys.exit(f"the page did not show the final report within 60 s: {final}")
            pump(0.2)
    print(json.dumps({"first": first, "second": second, "final": final,
                      "requested": sorted(set(requested)), "blocked": blocked}))


if __name__ == "__main__":
    main()
