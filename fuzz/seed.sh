#!/usr/bin/env bash
# Seeds the fuzz corpora from the repository: example and broken scenarios,
# sample heartbeats, a few raw HTTP requests, and valid MQTT sessions.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/scenario corpus/validator corpus/serve_request corpus/answer corpus/mqtt_client corpus/mqtt_serve
cp ../scenarios/*.toml ../tests/bad-scenarios/*.toml ../tests/bad-scenarios/*.json corpus/scenario/
cargo run --quiet --manifest-path ../Cargo.toml -- sample ../scenarios/quickstart.toml --count 20 | split -l 1 - corpus/validator/sample-
body=$(head -1 corpus/validator/sample-aa)
printf 'POST /SendHeartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' "${#body}" "$body" >corpus/serve_request/heartbeat
printf 'GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >corpus/serve_request/stats
printf 'GET /devices/f/d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >corpus/serve_request/device
printf 'POST /SendHeartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n0\r\n\r\n' >corpus/serve_request/chunked
# Answers for the client's reader; the first byte picks the read size.
printf '\x07HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n' >corpus/answer/nginx
printf '\x02HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\nX-T: 1\r\n\r\n' >corpus/answer/chunked
printf '\x3fHTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\n\r\n' >corpus/answer/continue
# MQTT: a broker's CONNACK then PUBACK (and more) for mqtt_client, a
# device's CONNECT then PUBLISH (and more) for mqtt_serve, encoded by the
# codec itself (the ignored tests write them).
cargo test --quiet --manifest-path ../Cargo.toml --lib -- --ignored seeds_to_the_fuzz_corpus >/dev/null
