"""An OTLP/HTTP metrics receiver that decodes with the official protobuf
definitions (the opentelemetry-proto package), for the OTLP export test.

Listens on 127.0.0.1 (a free port, printed as `listening PORT`), takes
POST /v1/metrics in application/x-protobuf, and writes each push it
decodes as one JSON line to --out: every metric with its kind, unit and
points, the resource's and scope's names, the headers that matter. Answers
as a receiver does: 200 with an empty ExportMetricsServiceResponse, 415
for another content type, 400 for what does not decode, 401 without the
--require-header, and 503 to the first --unavailable-first pushes (a
receiver that is away for a moment).

    python3 otlp_receiver.py --out pushes.jsonl [--require-header NAME=VALUE]
        [--unavailable-first N] [--cert PEM --key PEM]
"""

import argparse
import http.server
import json
import ssl
import sys
import threading

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2


def attrs(kvs):
    return {kv.key: kv.value.string_value for kv in kvs}


def point(p, kind):
    out = {
        "attributes": attrs(p.attributes),
        "start": p.start_time_unix_nano,
        "time": p.time_unix_nano,
    }
    if kind == "histogram":
        out.update(
            count=p.count,
            sum=p.sum,
            bounds=list(p.explicit_bounds),
            buckets=list(p.bucket_counts),
            min=p.min if p.HasField("min") else None,
            max=p.max if p.HasField("max") else None,
        )
    else:
        out["value"] = p.as_double if p.HasField("as_double") else p.as_int
    return out


def summary(request):
    """One push as plain JSON."""
    out = {"resources": []}
    for rm in request.resource_metrics:
        resource = {"attributes": attrs(rm.resource.attributes), "scopes": []}
        for sm in rm.scope_metrics:
            metrics = {}
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                metrics[m.name] = {
                    "kind": kind,
                    "unit": m.unit,
                    "description": m.description,
                    "monotonic": getattr(data, "is_monotonic", None),
                    "temporality": getattr(data, "aggregation_temporality", None),
                    "points": [point(p, kind) for p in data.data_points],
                }
            resource["scopes"].append({"name": sm.scope.name, "version": sm.scope.version, "metrics": metrics})
        out["resources"].append(resource)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--require-header")
    ap.add_argument("--unavailable-first", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    required = None
    if args.require_header:
        name, value = args.require_header.split("=", 1)
        required = (name, value)
    lock = threading.Lock()
    state = {"posts": 0}
    out = open(args.out, "a", encoding="utf-8")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status, body=b"", content_type="text/plain"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state["posts"] += 1
                n = state["posts"]
            if self.path.split("?")[0] != "/v1/metrics":
                return self.answer(404, b"not here")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                return self.answer(415, b"application/x-protobuf only")
            if required and self.headers.get(required[0]) != required[1]:
                return self.answer(401, b"no credentials")
            if n <= args.unavailable_first:
                return self.answer(503, b"away for a moment")
            request = metrics_service_pb2.ExportMetricsServiceRequest()
            try:
                request.ParseFromString(body)
            except DecodeError as e:
                return self.answer(400, f"not an ExportMetricsServiceRequest: {e}".encode())
            line = summary(request)
            line["path"] = self.path
            line["user_agent"] = self.headers.get("User-Agent")
            with lock:
                out.write(json.dumps(line) + "\n")
                out.flush()
            response = metrics_service_pb2.ExportMetricsServiceResponse()
            self.answer(200, response.SerializeToString(), "application/x-protobuf")

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
