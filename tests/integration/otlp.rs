//! OTLP export (`run --otlp-endpoint`), received by a receiver that decodes
//! with the official protobuf definitions (tests/interop/otlp_receiver.py):
//! the pushes while the run goes, the final one's counts against the
//! report's, the names against /metrics' and the guide's (docs/guide/live.md), and a receiver
//! that is away, refuses, or speaks TLS.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::pki::Pki;
use crate::util::{TempDir, fleetstorm, interop_available, root, spawn_serve};

/// A running receiver; killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
    out: std::path::PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// `None` (skipped loudly) outside CI without the Python package.
    fn start(dir: &TempDir, args: &[&str]) -> Option<Receiver> {
        if !interop_available(&["opentelemetry.proto.collector.metrics.v1.metrics_service_pb2"]) {
            return None;
        }
        let out = dir.path("pushes.jsonl");
        let mut child = Command::new("python3")
            .arg(root().join("tests/interop/otlp_receiver.py"))
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening ").and_then(|p| p.parse().ok());
        let port = port.unwrap_or_else(|| panic!("the receiver's first line: {line:?}"));
        Some(Receiver { child, port, out })
    }

    /// Every push received, decoded.
    fn pushes(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// The metrics of a push, by name.
fn metrics(push: &Value) -> &serde_json::Map<String, Value> {
    push["resources"][0]["scopes"][0]["metrics"].as_object().unwrap()
}

/// The points of `name` whose attributes include all of `having`.
fn points<'p>(push: &'p Value, name: &str, having: &[(&str, &str)]) -> Vec<&'p Value> {
    let Some(m) = metrics(push).get(name) else { panic!("{name} not pushed: {:?}", metrics(push).keys()) };
    m["points"].as_array().unwrap().iter().filter(|p| having.iter().all(|(k, v)| p["attributes"][*k] == *v)).collect()
}

/// The one value of `name` with `having`.
fn value(push: &Value, name: &str, having: &[(&str, &str)]) -> f64 {
    let found = points(push, name, having);
    assert_eq!(found.len(), 1, "{name} {having:?}: {found:?}");
    found[0]["value"].as_f64().unwrap()
}

/// A second of 20 devices against the built-in backend.
const SMALL: &str = "duration = \"1s\"\nseed = 1\n[target]\nurl = \"builtin\"\n[[fleets]]\nname = \"f\"\ndevices = 20\ninterval = \"1s\"\n";

/// `fleetstorm run FILE -q -o REPORT --otlp-endpoint ENDPOINT EXTRA...`.
fn run_pushing(file: &str, report: &std::path::Path, endpoint: &str, extra: &[&str]) -> std::process::Output {
    let args = ["run", file, "-q", "-o", report.to_str().unwrap(), "--otlp-endpoint", endpoint];
    fleetstorm(&[args.as_slice(), extra].concat())
}

fn scenario(dir: &TempDir, url: &str) -> String {
    dir.write(
        "otlp.toml",
        &format!(
            r#"
            name = "otlp-export"
            duration = "4s"
            seed = 7
            [target]
            url = "{url}"
            [[fleets]]
            name = "north"
            devices = 300
            interval = "1s"
            [[fleets]]
            name = "south"
            devices = 200
            interval = "2s"
            "#
        ),
    )
}

#[test]
fn pushes_follow_the_run_and_the_last_carries_the_reports_totals() {
    let dir = TempDir::new("otlp-export");
    let Some(receiver) =
        Receiver::start(&dir, &["--require-header", "authorization=Bearer t0k3n", "--unavailable-first", "1"])
    else {
        return;
    };
    // A backend that fails a fifth of the heartbeats, so outcomes differ.
    let (mut serve, url) = spawn_serve(&["--error-rate", "0.2"]);
    let file = scenario(&dir, &url);
    let report_path = dir.path("report.json");
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let extra = ["--otlp-interval", "300ms", "--otlp-header", "authorization=Bearer t0k3n"];
    let out = run_pushing(&file, &report_path, &endpoint, &extra);
    let _ = serve.kill();
    let _ = serve.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The first push met a receiver away for a moment: said once, and the
    // run went on.
    let away = format!("warning: OTLP push to {endpoint}/v1/metrics failed: the receiver answered 503");
    assert_eq!(stderr.matches(&away).count(), 1, "{stderr}");
    assert!(stderr.contains("the last with the report's totals; 1 failed"), "{stderr}");
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let pushes = receiver.pushes();
    // Every 300 ms for 4 s, less the one refused; a loaded machine may
    // delay some, never all.
    assert!(pushes.len() >= 4, "{} pushes\n{stderr}", pushes.len());
    let last = pushes.last().unwrap();
    assert_eq!(last["path"], "/v1/metrics");
    assert!(last["user_agent"].as_str().unwrap().starts_with("fleetstorm/"), "{}", last["user_agent"]);
    let resource = &last["resources"][0];
    assert_eq!(resource["attributes"]["service.name"], "fleetstorm");
    assert_eq!(resource["attributes"]["fleetstorm.scenario"], "otlp-export");
    assert_eq!(resource["scopes"][0]["name"], "fleetstorm");
    // The final counts are the report's, fleet by fleet and outcome by outcome.
    let fleets = report["fleets"].as_array().unwrap();
    assert_eq!(fleets.len(), 2);
    for f in fleets {
        let name = f["name"].as_str().unwrap();
        let of = [("fleet", name), ("shard", "0/1")];
        let count = |k: &str| f[k].as_f64().unwrap();
        for (metric, field) in [
            ("fleetstorm_heartbeats_scheduled_total", "scheduled"),
            ("fleetstorm_heartbeats_sent_total", "sent"),
            ("fleetstorm_heartbeats_missed_total", "missed"),
            ("fleetstorm_retries_total", "retries"),
            ("fleetstorm_heartbeats_late_total", "late"),
            ("fleetstorm_heartbeats_waited_total", "waited"),
        ] {
            assert_eq!(value(last, metric, &of), count(field), "{name}: {metric}");
        }
        assert!(count("sent") > 0.0 && count("failed") > 0.0, "{f}");
        let ok = value(last, "fleetstorm_heartbeats_completed_total", &[("fleet", name), ("outcome", "ok")]);
        assert_eq!(ok, count("ok"), "{name}: ok");
        let mut failed = 0.0;
        for p in points(last, "fleetstorm_heartbeats_completed_total", &[("fleet", name)]) {
            let outcome = p["attributes"]["outcome"].as_str().unwrap();
            let n = p["value"].as_f64().unwrap();
            if outcome != "ok" {
                assert_eq!(n, f["errors"][outcome].as_f64().unwrap_or(0.0), "{name}: {outcome}");
                failed += n;
            }
        }
        assert_eq!(failed, count("failed"), "{name}: failed");
        let latency = points(last, "fleetstorm_latency_seconds", &of);
        assert_eq!(latency.len(), 1);
        let h = latency[0];
        let n = h["count"].as_f64().unwrap();
        assert_eq!(n, count("ok") + count("failed") + count("missed"), "{name}: every outcome is timed");
        let buckets: Vec<f64> = h["buckets"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
        assert_eq!(buckets.len(), h["bounds"].as_array().unwrap().len() + 1);
        assert_eq!(buckets.iter().sum::<f64>(), n, "{name}: each sample in one bucket");
        let (min, max) = (h["min"].as_f64().unwrap(), h["max"].as_f64().unwrap());
        assert!(0.0 < min && min <= max && max < 5.0, "{h}");
        let p50 = value(last, "fleetstorm_latency_quantile_seconds", &[("fleet", name), ("quantile", "0.5")]);
        let report_p50 = f["latency_ms"]["p50"].as_f64().unwrap() / 1000.0;
        assert!((p50 - report_p50).abs() < 1e-6, "{name}: p50 {p50} s, the report's {report_p50} s");
        let devices = f64::from(if name == "north" { 300 } else { 200 });
        assert_eq!(value(last, "fleetstorm_devices", &of), devices);
        assert_eq!(value(last, "fleetstorm_devices_online", &of), devices);
    }
    assert_eq!(value(last, "fleetstorm_in_flight", &[("shard", "0/1")]), 0.0);
    // Kinds and units as a receiver reads them.
    let m = metrics(last);
    let sent = &m["fleetstorm_heartbeats_sent_total"];
    assert_eq!((sent["kind"].as_str(), sent["monotonic"].as_bool()), (Some("sum"), Some(true)));
    assert_eq!(sent["temporality"], 2, "cumulative");
    assert_eq!(sent["unit"], "{heartbeat}");
    assert_eq!(
        (m["fleetstorm_latency_seconds"]["kind"].as_str(), m["fleetstorm_latency_seconds"]["unit"].as_str()),
        (Some("histogram"), Some("s"))
    );
    assert_eq!(m["fleetstorm_devices_online"]["kind"], "gauge");
    // The pushes while the run went: counts that grow, one start for every
    // cumulative series, times that move on.
    let sent_in = |p: &Value| value(p, "fleetstorm_heartbeats_sent_total", &[("fleet", "north")]);
    let during: Vec<f64> = pushes.iter().map(sent_in).collect();
    assert!(during.windows(2).all(|w| w[0] <= w[1]), "{during:?}");
    let end = *during.last().unwrap();
    assert!(during.iter().any(|&n| n > 0.0 && n < end), "pushes came during the run: {during:?}");
    let start_of = |p: &Value| points(p, "fleetstorm_heartbeats_sent_total", &[("fleet", "north")])[0]["start"].clone();
    assert!(pushes.iter().all(|p| start_of(p) == start_of(&pushes[0])));
    let time_of =
        |p: &Value| points(p, "fleetstorm_heartbeats_sent_total", &[("fleet", "north")])[0]["time"].as_u64().unwrap();
    assert!(pushes.windows(2).all(|w| time_of(&w[0]) <= time_of(&w[1])));
    // One name for a metric whichever way it leaves: the pushed names are
    // /metrics' and the guide's.
    let pushed: std::collections::BTreeSet<&str> = m.keys().map(String::as_str).collect();
    let guide = std::fs::read_to_string(root().join("docs/guide/live.md")).unwrap();
    let section = guide.split("## Live metrics").nth(1).expect("the guide has a Live metrics section");
    let section = section.split("\n## ").next().unwrap();
    let mut documented: std::collections::BTreeSet<&str> = section
        .split('`')
        .filter(|w| w.starts_with("fleetstorm_") && w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    // Only a protocol with sessions has these (this run is HTTP's).
    assert!(documented.remove("fleetstorm_session_events_total"), "the guide lists the session events");
    assert_eq!(pushed, documented, "the guide's list of metrics");
}

#[test]
fn a_receiver_that_is_away_is_said_and_does_not_fail_the_run() {
    let dir = TempDir::new("otlp-away");
    // A port nothing listens on, held for the test: bound, never listening,
    // so that no other test's server can take it meanwhile (one did, while
    // the final push was trying again).
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = closed.local_addr().unwrap().port();
    let file = dir.write("away.toml", SMALL);
    let report_path = dir.path("report.json");
    let endpoint = format!("http://127.0.0.1:{port}/v1/metrics");
    let out = run_pushing(&file, &report_path, &endpoint, &["--otlp-interval", "200ms"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the run's verdict is its own: {stderr}");
    assert!(report_path.exists());
    assert!(stderr.contains(&format!("warning: OTLP push to {endpoint} failed: cannot connect")), "{stderr}");
    assert!(
        stderr.contains(&format!("warning: the final OTLP push to {endpoint} did not land (cannot connect")),
        "{stderr}"
    );
}

#[test]
fn bad_otlp_settings_are_refused_before_the_run() {
    let file = "scenarios/quickstart.toml";
    for (args, says) in [
        (vec!["--otlp-endpoint", "grpc://127.0.0.1:4317"], "http:// or https://"),
        (vec!["--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-header", "authorization: x"], "NAME=VALUE"),
        (vec!["--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-interval", "10ms"], "at least 100ms"),
        (vec!["--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-ca", "Cargo.toml"], "TLS is for https://"),
        (vec!["--otlp-endpoint", "https://127.0.0.1:4318", "--otlp-ca", "Cargo.toml"], "Cargo.toml"),
        (vec!["--otlp-header", "a=b"], "--otlp-endpoint"),
    ] {
        let out = fleetstorm(&[&["run", file, "-d", "1s", "-q"], args.as_slice()].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("otlp: pushing"), "{args:?}: refused before the run: {stderr}");
    }
}

#[test]
fn pushes_go_over_tls_to_a_receiver_with_a_certificate_from_the_given_ca() {
    let pki = Pki::new("otlp-tls");
    let dir = TempDir::new("otlp-tls-run");
    let Some(receiver) = Receiver::start(&dir, &["--cert", &pki.path("server.pem"), "--key", &pki.path("server.key")])
    else {
        return;
    };
    let file = dir.write("tls.toml", SMALL);
    let endpoint = format!("https://127.0.0.1:{}", receiver.port);
    let run = |ca: &str| run_pushing(&file, &dir.path("report.json"), &endpoint, &["--otlp-ca", ca]);
    let out = run(&pki.path("ca.pem"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the last with the report's totals"), "{stderr}");
    let pushes = receiver.pushes();
    assert_eq!(pushes.len(), 1, "a 1 s run, pushes every 10 s: the final one only");
    assert_eq!(value(&pushes[0], "fleetstorm_devices", &[("fleet", "f")]), 20.0);
    // A CA that did not sign the receiver's certificate: refused, and said.
    let out = run(&pki.path("other-ca.pem"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("did not land (TLS:"), "{stderr}");
    assert_eq!(receiver.pushes().len(), 1);
}

/// A push's credential can come from a file (a mounted Secret) or from the
/// OpenTelemetry variable instead of the command line, where every process
/// list shows it; a bad entry is named by its place, never by its value.
#[test]
fn a_pushs_credential_comes_from_a_file_or_the_environment() {
    let dir = TempDir::new("otlp-secret");
    let Some(receiver) = Receiver::start(&dir, &["--require-header", "authorization=Bearer t0k3n"]) else {
        return;
    };
    let file = dir.write("small.toml", SMALL);
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let report = dir.path("report.json");
    let headers = dir.write("headers", "# the collector's credential\nauthorization=Bearer t0k3n\n");
    let out = run_pushing(&file, &report, &endpoint, &["--otlp-headers-file", &headers]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("the last with the report's totals"), "{stderr}");
    let args = ["run", &file, "-q", "-o", report.to_str().unwrap(), "--otlp-endpoint", &endpoint];
    let out = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(args)
        .env("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0k3n")
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("the last with the report's totals"), "{stderr}");
    assert_eq!(receiver.pushes().len(), 2, "both pushes carried the credential");
    // Without it, the receiver refuses the push.
    let out = run_pushing(&file, &report, &endpoint, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not land"));
    // A bad line: its place and the header's name, not the value.
    let bad = dir.write("bad", "authorization=Bearer s3cret\nx-key=bad\u{7}s3cret\n");
    let out = run_pushing(&file, &report, &endpoint, &["--otlp-headers-file", &bad]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad:2: x-key: not a valid header value") && !stderr.contains("s3cret"), "{stderr}");
}
