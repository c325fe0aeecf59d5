#!/usr/bin/env python3
"""Renders a fleetstorm HTML report in headless Chromium and reports, as
JSON on stdout, the section headings, the cohorts' table as drawn, and
what the browser drew for each plot: the SVG's size on the
page, its data lines and their drawn length, and its text labels. Saves a
full-page screenshot. Needs `chromium` and the `websocket-client` package.

Usage: check_html.py REPORT.html SCREENSHOT.png

Chromium (chromium.py) loads only the local file.
"""
import base64
import json
import os
import sys
import time

from chromium import Chromium

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


def main():
    html, screenshot = os.path.abspath(sys.argv[1]), sys.argv[2]
    with Chromium(1000, 1200) as browser:
        call = browser.call
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
        print(json.dumps(measured))


if __name__ == "__main__":
    main()
