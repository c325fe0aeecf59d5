#!/usr/bin/env python3
"""same_reports.py - do two fleetstorm builds write the same report for the
same scenario and seed? For a change meant to change no behaviour.

Runs each scenario with each binary (`run SCENARIO --seed 7 --duration D
--quiet --out`) against the built-in backend, whole and as shard 1 of 3
(`--shard 1/3`: which devices a shard owns must not change either), strips what depends on
timing (times, latencies and their histograms, the generator's health,
per-second outcome counts, the backend's uptime and port), and prints the
differences that remain: none is the expected answer.

Usage: same_reports.py BEFORE_BIN AFTER_BIN [SCENARIO...]
"""
import json, subprocess, sys, tempfile, os

TIMING = {"started_at", "elapsed_s", "startup_s", "sending_s", "generator", "backend", "first_errors",
          "latency_ms", "service_time_ms", "schedule_lag_ms", "connection_wait_ms", "lateness_ms",
          "tls_handshake_ms", "histograms", "histogram", "max_gap_ms", "actual", "actual_text", "url"}
# Not timing, but not behaviour either: the scenario hash is of the scenario
# as the build reads it (its Debug form), so a build that adds a scenario
# field (with its default) hashes the same file differently, and merge
# refuses to mix the two builds' shards. Left out of the comparison.
TIMING |= {"scenario_hash"}
# Which build wrote the report (its version and commit): the two builds
# differ by definition.
TIMING |= {"fleetstorm_version"}

# Report schema 3 made outcomes protocol-neutral. An earlier build's v1/v2
# report is brought to v3's form before comparing, by the mapping
# fleetstorm's own reader uses (src/report/upgrade.rs): status_codes become
# codes.http, http_5xx server_error, and http_4xx is split by the report's
# own status codes into auth (401, 403), throttled (429) and rejected (other
# 4xx) when they add up to it, else all rejected; a second's http_4xx goes
# to the class all of the run's went to, or rejected.
V3 = "fleetstorm.report/v3"
FAILED = ["rejected", "auth", "throttled", "server_error", "other_status", "timeout", "connect", "tls", "io", "protocol"]


def http_class(status):
    if 200 <= status <= 299:
        return "ok"
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "throttled"
    if 400 <= status <= 499:
        return "rejected"
    if 500 <= status <= 599:
        return "server_error"
    return "other_status"


def stats_to_v3(stats):
    """One statistics object to v3; the class all its 4xx went to, if one."""
    statuses = stats.pop("status_codes", {}) or {}
    old = stats.pop("errors", {}) or {}
    errors = {c: 0 for c in FAILED}
    n_4xx = 0
    for name, n in old.items():
        if name == "http_4xx":
            n_4xx += n
        elif name == "http_5xx":
            errors["server_error"] += n
        else:
            errors[name] = errors.get(name, 0) + n
    by_status = [(http_class(int(k)), n) for k, n in statuses.items() if k.isdigit() and 400 <= int(k) <= 499]
    split = by_status if sum(n for _, n in by_status) == n_4xx else [("rejected", n_4xx)]
    went_to = []
    for cls, n in split:
        errors[cls] += n
        if n > 0 and cls not in went_to:
            went_to.append(cls)
    stats["errors"] = errors
    stats["codes"] = {"http": statuses} if statuses else {}
    return went_to[0] if len(went_to) == 1 else None


def to_v3(r):
    if r.get("schema") == V3:
        return r
    run_4xx = stats_to_v3(r["totals"])
    for f in r.get("fleets", []):
        stats_to_v3(f)
    for c in r.get("cohorts", []):
        stats_to_v3(c["stats"])
    second_4xx = run_4xx or "rejected"
    for s in r.get("timeline", []):
        if "errors" in s:
            new = {}
            for name, n in s["errors"].items():
                name = {"http_4xx": second_4xx, "http_5xx": "server_error"}.get(name, name)
                new[name] = new.get(name, 0) + n
            s["errors"] = new
    r["schema"] = V3
    return r


def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in TIMING}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


def report(binary, scenario, duration, extra=()):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "r.json")
        subprocess.run([binary, "run", scenario, "--seed", "7", "--duration", duration, "--target", "builtin", "--quiet", "--out", out,
                        *extra],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        r = to_v3(json.load(open(out)))
    # Per-second entries: only when heartbeats were intended is fixed by the schedule.
    r["timeline"] = [{"t": s["t"], "offered": s["offered"]} for s in r["timeline"]]
    r = strip(r)
    # Through a pool, how many connections open depends on how many
    # exchanges overlapped: timing too.
    if r["scenario"]["target"]["connections"].startswith("pool"):
        r = strip_key(r, "connects")
    return r


def strip_key(v, key):
    if isinstance(v, dict):
        return {k: strip_key(x, key) for k, x in v.items() if k != key}
    if isinstance(v, list):
        return [strip_key(x, key) for x in v]
    return v


# Fields a later build added, with the value that means what the earlier
# build's reports meant without them.
ADDED_DEFAULTS = {"profile": "sagemaker-edge"}


def diff(a, b, path=""):
    if type(a) is not type(b):
        yield f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a and k in b and ADDED_DEFAULTS.get(k, object()) == b[k]:
                continue
            if k not in a or k not in b:
                yield f"{path}.{k}: only in {'after' if k in b else 'before'}"
            else:
                yield from diff(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        if len(a) != len(b):
            yield f"{path}: {len(a)} entries != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diff(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {a!r} != {b!r}"


def main():
    before, after = sys.argv[1], sys.argv[2]
    # By default every example the earlier build can read too: no capacity
    # search, no device profile but SendHeartbeat.
    def sendheartbeat_only(path):
        text = open(path).read()
        return all(p == '"sagemaker-edge"' for p in (line.split("=", 1)[1].split("#")[0].strip()
                   for line in text.splitlines() if line.strip().startswith("profile =")))
    scenarios = sys.argv[3:] or [os.path.join("scenarios", f) for f in sorted(os.listdir("scenarios"))
                                 if f.endswith(".toml") and f != "capacity.toml"
                                 and sendheartbeat_only(os.path.join("scenarios", f))]
    bad = 0
    for s, extra in [(s, extra) for s in scenarios for extra in ((), ("--shard", "1/3"))]:
        a, b = report(before, s, "6s", extra), report(after, s, "6s", extra)
        found = list(diff(a, b))
        print(f"{s}{' ' + ' '.join(extra) if extra else ''}: {'identical' if not found else str(len(found)) + ' differences'} "
              f"(scheduled {b['totals']['scheduled']}, sent {b['totals']['sent']}, ok {b['totals']['ok']})")
        for line in found[:20]:
            print("   ", line)
        bad += len(found)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
