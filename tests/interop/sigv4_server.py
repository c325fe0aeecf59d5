#!/usr/bin/env python3
"""A loopback HTTP server that checks every request's AWS SigV4 signature
independently of fleetstorm, with botocore's signer: it rebuilds the
request from what arrived (the signed headers only, the body, the
X-Amz-Date), signs it with the given secret key and compares signatures.
Answers 200 when they match, 403 otherwise. Prints its port, then on
stdin EOF prints a JSON summary {"valid", "invalid", "reasons"} and exits.

Usage: sigv4_server.py ACCESS_KEY SECRET_KEY REGION SERVICE
"""
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS, SECRET, REGION, SERVICE = sys.argv[1:5]
AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<sig>[0-9a-f]{64})$"
)
counts = {"valid": 0, "invalid": 0, "reasons": {}}
lock = threading.Lock()


def check(handler, body):
    auth = handler.headers.get("Authorization", "")
    m = AUTH.match(auth)
    if not m:
        return "no SigV4 Authorization header"
    if (m["key"], m["region"], m["service"]) != (ACCESS, REGION, SERVICE):
        return "wrong credential scope"
    signed = m["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "host and x-amz-date must be signed"
    headers = {name: handler.headers[name] for name in signed}
    url = f"http://{handler.headers['Host']}{handler.path}"
    request = AWSRequest(method=handler.command, url=url, data=body, headers=headers)
    request.context["timestamp"] = handler.headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials(ACCESS, SECRET), SERVICE, REGION)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return None if expected == m["sig"] else "signature mismatch"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            reason = check(self, body)
        except Exception as e:  # a malformed request is invalid, not a crash
            reason = f"error: {e}"
        with lock:
            if reason is None:
                counts["valid"] += 1
            else:
                counts["invalid"] += 1
                counts["reasons"][reason] = counts["reasons"].get(reason, 0) + 1
        self.send_response(200 if reason is None else 403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], flush=True)
sys.stdin.read()
server.shutdown()
with lock:
    print(json.dumps(counts), flush=True)
