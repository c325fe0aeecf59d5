#!/usr/bin/env python3
"""Reads the raw outputs of benches/peers.sh and prints its table.

Raw files are OUT/raw/CASE.TARGET.TOOL.REP.{cmd,out,err,time,rc} (and .json
for fleetstorm's report). For each case, target and tool: the median over
the reps of the achieved rate, client CPU per request, peak RSS and
latency, and each peer's ratio to fleetstorm. Then the floors of the
cost-per-heartbeat issue: fixed-rate CPU and RSS against the nginx target,
user time per request and the kept-up rate against the pinned one.

Usage: peers_table.py OUT
       peers_table.py --verdict REPORT.json   (exit 0 if that run kept up)
"""

import glob
import json
import os
import re
import statistics
import sys



def verdict(report):
    """fleetstorm's own verdict on a run, nothing looser: (kept up, why not).
    Its generator kept up (lag and CPU demand), heartbeats did not wait for
    a pooled connection except because the backend itself slowed down, and
    nothing was missed or failed."""
    t, g = report["totals"], report["generator"]
    pool = g.get("pool") or {}
    why = [w for w, bad in (
        (f"{t['failed'] + t['missed']} missed or failed", t["failed"] + t["missed"] > 0),
        (g["verdict"], not g["kept_up"]),
        (pool.get("verdict", ""), pool.get("limit", "none") not in ("none", "backend")),
    ) if bad]
    return not why, "; ".join(why)


if sys.argv[1] == "--verdict":
    # peers.sh's search and reps: one run's verdict, said on stderr.
    try:
        run = json.load(open(sys.argv[2]))
    except (OSError, ValueError):
        sys.exit(1)
    kept_up, why = verdict(run)
    t = run["totals"]
    print(f"  offered {t['offered_rate']:.0f}/s achieved {t['achieved_rate']:.0f}/s: "
          f"{'kept up' if kept_up else 'fell behind: ' + why}", file=sys.stderr)
    sys.exit(0 if kept_up else 1)

OUT = sys.argv[1]
RAW = os.path.join(OUT, "raw")


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def gnu_time(path):
    t = read(path)

    def get(key):
        m = re.search(re.escape(key) + r":\s*([\d.]+)", t)
        return float(m.group(1)) if m else None

    user, sys_, rss = get("User time (seconds)"), get("System time (seconds)"), get("Maximum resident set size (kbytes)")
    return {"cpu_s": (user or 0) + (sys_ or 0), "user_s": user, "rss_mib": rss / 1024 if rss else None}


def seconds(value, unit):
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def parse_fleetstorm(base):
    try:
        r = json.load(open(base + ".json"))
    except (OSError, ValueError):
        return {}
    t = r["totals"]
    kept_up, why = verdict(r)
    return {
        "kept_up": kept_up,
        "why": why,
        "pool_limit": (r["generator"].get("pool") or {}).get("limit"),
        "conn_wait_p99_ms": t.get("connection_wait_ms", {}).get("p99"),
        "requests": t["sent"],
        "rate": t["achieved_rate"],
        "offered": t["offered_rate"],
        "p50_ms": t["latency_ms"]["p50"],
        "p99_ms": t["latency_ms"]["p99"],
        "lag_p99_ms": t["schedule_lag_ms"]["p99"],
        "errors": t["failed"] + t["missed"],
    }


def parse_wrk(base):
    o, r = read(base + ".out"), {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", o)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s*([\d.]+)", o)
    r["rate"] = float(m.group(1)) if m else None
    for q in ("50", "99"):
        m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s|m)\s*$" % q, o, re.M)
        r["p%s_ms" % q] = seconds(m.group(1), m.group(2)) * 1e3 if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", o)
    r["errors"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", o)
    if m:
        r["errors"] += sum(map(int, m.groups()))
    return r


def parse_hey(base):
    o, r = read(base + ".out"), {}
    m = re.search(r"Requests/sec:\s*([\d.]+)", o)
    r["rate"] = float(m.group(1)) if m else None
    errors = 0
    if "Error distribution:" in o:
        o, tail = o.split("Error distribution:", 1)
        errors = sum(int(x) for x in re.findall(r"^\s*\[(\d+)\]\s", tail, re.M))
    codes = {int(a): int(b) for a, b in re.findall(r"\[(\d+)\]\s+(\d+) responses", o)}
    r["requests"] = sum(codes.values()) + errors
    r["errors"] = sum(v for k, v in codes.items() if k >= 400) + errors
    for q in ("50", "99"):
        m = re.search(r"%s%% in ([\d.]+) secs" % q, o)
        r["p%s_ms" % q] = float(m.group(1)) * 1e3 if m else None
    return r


def parse_oha(base):
    o, r = read(base + ".out"), {}
    try:
        j = json.loads(o[o.index("{"):])
    except ValueError:
        return r
    s = j.get("summary", {})
    r["rate"] = s.get("requestsPerSec")
    codes = {int(k): v for k, v in j.get("statusCodeDistribution", {}).items()}
    errors = dict(j.get("errorDistribution", {}))
    errors.pop("aborted due to deadline", 0)  # in flight at the -z deadline: not failures
    r["requests"] = sum(codes.values()) + sum(errors.values())
    r["errors"] = sum(v for k, v in codes.items() if k >= 400) + sum(errors.values())
    lp = j.get("latencyPercentiles", {})
    for q in ("50", "99"):
        v = lp.get("p" + q)
        r["p%s_ms" % q] = v * 1e3 if v is not None else None
    return r


PARSERS = {"fleetstorm": parse_fleetstorm, "fleetstorm-dash": parse_fleetstorm,
           "fleetstorm-otlp": parse_fleetstorm, "wrk1": parse_wrk, "hey": parse_hey, "oha": parse_oha}

runs = []
for cmd in sorted(glob.glob(os.path.join(RAW, "*.cmd"))):
    base = cmd[: -len(".cmd")]
    parts = os.path.basename(base).split(".")
    if len(parts) != 4 or parts[0] == "search":
        continue
    case, target, tool, rep = parts
    r = PARSERS[tool](base)
    r.update(gnu_time(base + ".time"))
    r.update(case=case, target=target, tool=tool, rep=int(rep), rc=read(base + ".rc").strip())
    r["cpu_us"] = r["cpu_s"] * 1e6 / r["requests"] if r.get("requests") else None
    r["user_us"] = r["user_s"] * 1e6 / r["requests"] if r.get("requests") and r.get("user_s") is not None else None
    runs.append(r)
json.dump(runs, open(os.path.join(OUT, "results.json"), "w"), indent=1)


def median(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(x, spec="{:,.0f}"):
    return "-" if x is None else spec.format(x)


TOOL_ORDER = ["fleetstorm", "fleetstorm-dash", "fleetstorm-otlp", "wrk1", "hey", "oha"]
machine = read(os.path.join(OUT, "machine.txt")).strip()
print("```")
print(machine)
print("```")
summary = {}
for case, title in (("fixed", "fixed rate"), ("max", "maximum throughput"), ("long", "long fixed-rate run")):
    targets = sorted({r["target"] for r in runs if r["case"] == case}, key=lambda t: (t != "nginx", t))
    for target in targets:
        rows = [r for r in runs if r["case"] == case and r["target"] == target]
        tools = sorted({r["tool"] for r in rows}, key=TOOL_ORDER.index)
        print()
        reps = max(r["rep"] for r in rows)
        print(f"### {title}, target {target} ({'median of %d' % reps if reps > 1 else 'one run'})")
        print()
        print("| tool | achieved req/s | client CPU µs/req | of it user µs/req | peak RSS MiB | p50 ms | p99 ms | errors | "
              "CPU/req ÷ fleetstorm's | req/s ÷ fleetstorm's |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        med = {t: {k: median([r for r in rows if r["tool"] == t], k)
                   for k in ("rate", "cpu_us", "user_us", "rss_mib", "p50_ms", "p99_ms", "errors")} for t in tools}
        summary[(case, target)] = med
        base = med.get("fleetstorm", {})
        for t in tools:
            m = med[t]
            cpu_ratio = m["cpu_us"] / base["cpu_us"] if base.get("cpu_us") and m["cpu_us"] else None
            rate_ratio = m["rate"] / base["rate"] if base.get("rate") and m["rate"] else None
            print(f"| {t} | {fmt(m['rate'])} | {fmt(m['cpu_us'], '{:.1f}')} | {fmt(m['user_us'], '{:.2f}')} | "
                  f"{fmt(m['rss_mib'], '{:.1f}')} | "
                  f"{fmt(m['p50_ms'], '{:.2f}')} | {fmt(m['p99_ms'], '{:.2f}')} | {fmt(m['errors'])} | "
                  f"{fmt(cpu_ratio, '{:.2f}')} | {fmt(rate_ratio, '{:.2f}')} |")
        if case == "max" and "fleetstorm" in tools:
            fs = [r for r in rows if r["tool"] == "fleetstorm"]
            found = read(os.path.join(RAW, "found." + target)).strip()
            print()
            kept = sum(1 for r in fs if r.get("kept_up"))
            print(f"fleetstorm: search found {found}/s (each probe run once); kept up by its own verdict in "
                  f"{kept} of {len(fs)} reps (each run once, as each peer's):")
            for r in sorted(fs, key=lambda r: r["rep"]):
                print(f"- rep {r['rep']}: {fmt(r.get('offered'))}/s offered, schedule lag p99 "
                      f"{fmt(r.get('lag_p99_ms'), '{:.2f}')} ms, connection wait p99 "
                      f"{fmt(r.get('conn_wait_p99_ms'), '{:.2f}')} ms: "
                      f"{'kept up' if r.get('kept_up') else 'fell behind: ' + r.get('why', '')}")

print()
print("### Floors")
print()


def floor(text, ok):
    print(f"- {'met' if ok else 'NOT met'}: {text}")


def spread(case, target, tool, key):
    values = sorted(r[key] for r in runs if r["case"] == case and r["target"] == target and r["tool"] == tool
                    and r.get(key) is not None)
    return f"{values[0]:.1f}–{values[-1]:.1f}" if values else "-"


for target in ("nginx", "nginx-pinned"):
    fixed = summary.get(("fixed", target), {})
    fs, oha = fixed.get("fleetstorm", {}), fixed.get("oha", {})
    if fs.get("cpu_us") and oha.get("cpu_us"):
        ratio = fs["cpu_us"] / oha["cpu_us"]
        floor(f"client CPU per request at a fixed rate ({target}) ≤ 0.45 × oha's: medians {fs['cpu_us']:.1f} / "
              f"{oha['cpu_us']:.1f} µs = {ratio:.2f} (reps: fleetstorm {spread('fixed', target, 'fleetstorm', 'cpu_us')}, "
              f"oha {spread('fixed', target, 'oha', 'cpu_us')} µs)", ratio <= 0.45)
fixed = summary.get(("fixed", "nginx"), {})
fs = fixed.get("fleetstorm", {})
if fs.get("rss_mib"):
    floor(f"peak RSS at a fixed rate ≤ 50 MiB: {fs['rss_mib']:.1f} MiB", fs["rss_mib"] <= 50)
long = summary.get(("long", "nginx"), {}).get("fleetstorm", {})
if fs.get("rss_mib") and long.get("rss_mib"):
    floor(f"peak RSS flat as the run gets longer: {fs['rss_mib']:.1f} MiB (short) → {long['rss_mib']:.1f} MiB "
          f"(long), growth ≤ 10%", long["rss_mib"] <= fs["rss_mib"] * 1.10)
for target in ("nginx-pinned", "nginx"):
    top = summary.get(("max", target), {})
    f, w = top.get("fleetstorm", {}), top.get("wrk1", {})
    if f.get("user_us") and w.get("user_us"):
        ratio = f["user_us"] / w["user_us"]
        floor(f"user time per request at the maximum ({target}) ≤ 2 × wrk1's: {f['user_us']:.2f} / "
              f"{w['user_us']:.2f} µs = {ratio:.2f}", ratio <= 2.0)
    reps = [r for r in runs if r["case"] == "max" and r["target"] == target and r["tool"] == "fleetstorm"]
    kept = sum(1 for r in reps if r.get("kept_up"))
    if reps and kept < len(reps):
        print(f"- {target}: fleetstorm kept up in {kept} of {len(reps)} maximum-throughput reps; the medians "
              f"include the reps that fell behind")
    if reps and 2 * kept <= len(reps):
        # Not a kept-up rate: most reps at it fell behind.
        if target == "nginx-pinned":
            floor(f"kept-up rate ({target}) ≥ 0.9 × wrk1's closed-loop throughput: fleetstorm kept up in only "
                  f"{kept} of {len(reps)} reps at the rate its search found", False)
        continue
    if f.get("rate") and w.get("rate"):
        text = (f"kept-up rate ({target}) ÷ wrk1's closed-loop throughput: {f['rate']:,.0f} / "
                f"{w['rate']:,.0f} = {f['rate'] / w['rate']:.2f}")
        if target == "nginx-pinned":
            floor(text.replace("÷", "≥ 0.9 ×"), f["rate"] >= 0.9 * w["rate"])
        else:
            print(f"- for reference, unpinned: {text}")

# What the live dashboard (and OTLP on top) costs a run: the same
# fixed-rate run with it served and followed, against the reps' own spread.
for target in ("nginx", "nginx-pinned", "serve"):
    rows = [r for r in runs if r["case"] == "fixed" and r["target"] == target and r.get("cpu_us")]
    plain = sorted(r["cpu_us"] for r in rows if r["tool"] == "fleetstorm")
    for tool, what in (("fleetstorm-dash", "the dashboard followed"),
                       ("fleetstorm-otlp", "the dashboard followed and OTLP pushed every second")):
        live = sorted(r["cpu_us"] for r in rows if r["tool"] == tool)
        if plain and live:
            a, b = statistics.median(plain), statistics.median(live)
            noise = max(plain[-1] - plain[0], live[-1] - live[0])
            within = abs(b - a) <= noise
            label = "dashboard cost" if tool == "fleetstorm-dash" else "dashboard + OTLP cost"
            print(f"- {label} ({target}, fixed rate): CPU per request {b:.2f} µs with {what}, "
                  f"{a:.2f} without ({b / a:.3f} ×; difference {b - a:+.2f} µs, the reps' spread {noise:.2f} µs): "
                  f"{'within noise' if within else 'above noise'}")
