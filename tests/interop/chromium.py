"""Headless Chromium over the DevTools protocol, for the browser checks
(check_html.py, check_dashboard.py): a fresh profile, sandboxing off (CI
runs as root), every background network feature off, DevTools on
loopback.

    with Chromium(1000, 1200) as browser:
        browser.call("Page.navigate", url=...)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket


def executable():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium on PATH (apt-get install chromium)")


class Chromium:
    def __init__(self, width, height, extra_args=()):
        self.args = [f"--window-size={width},{height}", *extra_args]
        # Called with each DevTools event that arrives while a call waits.
        self.on_event = None
        self._ids = iter(range(1, 1_000_000))

    def __enter__(self):
        self.profile = tempfile.mkdtemp(prefix="fleetstorm-chromium-")
        self.proc = subprocess.Popen(
            [
                executable(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--hide-scrollbars", *self.args,
                f"--user-data-dir={self.profile}", "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            port_file = os.path.join(self.profile, "DevToolsActivePort")
            deadline = time.time() + 60
            while not (os.path.exists(port_file) and open(port_file).read().strip()):
                if time.time() > deadline or self.proc.poll() is not None:
                    sys.exit("chromium did not start its DevTools endpoint")
                time.sleep(0.1)
            port = open(port_file).read().split()[0]
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            page = next(p for p in pages if p.get("type") == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_):
        if getattr(self, "ws", None):
            self.ws.close()
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def send(self, method, **params):
        """Sends a command without waiting for its answer."""
        self.ws.send(json.dumps({"id": next(self._ids), "method": method, "params": params}))

    def call(self, method, tolerate=False, **params):
        """Sends a command and returns its result; an error ends the check,
        or with `tolerate` returns None."""
        i = next(self._ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    if tolerate:
                        return None
                    sys.exit(f"{method}: {msg['error']}")
                return msg["result"]
            if "method" in msg and self.on_event:
                self.on_event(msg)
