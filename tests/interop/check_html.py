#!/usr/bin/env python3
"""Renders a fleetstorm HTML report in headless Chromium and reports, as
JSON on stdout, the section headings, the cohorts' table as drawn, and
what the browser drew for each plot: the SVG's size on the
page, its data lines and their drawn length, and its text labels. Saves a
full-page screenshot. Needs `chromium` and the `websocket-client` package.

Usage: check_html.py REPORT.html SCREENSHOT.png

Chromium runs with its own fresh profile, sandboxing off (CI runs as
root) and every background network feature off; it loads only the local
file. The DevTools connection is on loopback.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

MEASURE = r"""
(() => {
  const figures = [...document.querySelectorAll('figure')].map(f => {
    const svg = f.querySelector('svg');
    if (!svg) return {id: f.id, svg: false};
    const box = svg.getBoundingClientRect();
    // Data series are the 2-px polylines with more than two points
    // (legend samples have two; axes and grid lines are 1 px).
    const series = [...svg.querySelectorAll('polyline[stroke-width="2"]')]
      .filter(l => l.points.numberOfItems > 2)
      .map(l => l.getTotalLength());
    return {
      id: f.id,
      svg: true,
      width: box.width,
      height: box.height,
      series: series.filter(n => n > 0).length,
      series_length: series.reduce((a, b) => a + b, 0),
      labels: [...svg.querySelectorAll('text')].filter(t => t.textContent.trim() !== '').length,
    };
  });
  // The cohorts' table as drawn: each row's cells as the reader sees them
  // (innerText is empty for what is not rendered).
  const cohorts = document.querySelector('table#cohorts');
  return JSON.stringify({
    title: document.title,
    tables: document.querySelectorAll('table').length,
    headings: [...document.querySelectorAll('h2')].map(h => h.innerText),
    cohorts: cohorts && cohorts.getBoundingClientRect().height > 0
      ? [...cohorts.querySelectorAll('tr')].map(r => [...r.cells].map(c => c.innerText.trim()))
      : null,
    external: [...document.querySelectorAll('[src], link[href]')].map(e => e.src || e.href),
    figures,
    height: document.documentElement.scrollHeight,
  });
})()
"""


def browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium on PATH (apt-get install chromium)")


def main():
    html, screenshot = os.path.abspath(sys.argv[1]), sys.argv[2]
    profile = tempfile.mkdtemp(prefix="fleetstorm-chromium-")
    proc = subprocess.Popen(
        [
            browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--hide-scrollbars", "--window-size=1000,1200",
            f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + 60
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.time() > deadline or proc.poll() is not None:
                sys.exit("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(p for p in pages if p.get("type") == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        ids = iter(range(1, 1_000_000))

        def call(method, **params):
            i = next(ids)
            ws.send(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("id") == i:
                    if "error" in msg:
                        sys.exit(f"{method}: {msg['error']}")
                    return msg["result"]

        call("Page.enable")
        call("Page.navigate", url="file://" + html)
        deadline = time.time() + 30
        while call("Runtime.evaluate", expression="document.readyState", returnByValue=True)["result"]["value"] != "complete":
            if time.time() > deadline:
                sys.exit("the page did not finish loading")
            time.sleep(0.1)
        measured = json.loads(call("Runtime.evaluate", expression=MEASURE, returnByValue=True)["result"]["value"])
        shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                    clip={"x": 0, "y": 0, "width": 1000, "height": measured["height"], "scale": 1})
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        ws.close()
        print(json.dumps(measured))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
