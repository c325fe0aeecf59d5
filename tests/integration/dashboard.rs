//! The live web dashboard, followed in headless Chromium while a run goes.

use std::io::BufRead;
use std::process::{Command, Stdio};

use crate::util::{Running, TempDir, interop, root};

#[test]
fn the_dashboard_follows_a_run_and_ends_on_its_report() {
    let dir = TempDir::new("dashboard");
    let out = dir.path("report.json");
    // Five minutes at most; the browser check interrupts it once it has read the page.
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", "scenarios/quickstart.toml", "-d", "300s", "-q", "--dashboard", "127.0.0.1:0", "-o"])
        .arg(&out)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let pid = child.id().to_string();
    let mut run = Running(child);
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url =
        line.trim().strip_prefix("dashboard: ").unwrap_or_else(|| panic!("the address line: {line:?}")).to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "binds loopback: {url}");
    // Keep reading what the run says, so that it never blocks on stderr.
    let said = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });
    let shots = root().join("target").join("dashboard");
    let Some(page) =
        interop("check_dashboard.py", &[&url, &pid, shots.to_str().unwrap()], &["websocket", "bin:chromium"])
    else {
        return;
    };
    let status = run.0.wait().unwrap();
    let said = said.join().unwrap();
    assert_eq!(status.code(), Some(6), "an interrupted run: {said}");
    let (first, second, last) = (&page["first"], &page["second"], &page["final"]);
    // Rising counts, read from the DOM.
    let count = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert!(count(second, "sent") > count(first, "sent"), "{first}\n{second}");
    assert!(count(second, "ok") > count(first, "ok"), "{first}\n{second}");
    assert!(count(second, "elapsed") > count(first, "elapsed"), "{first}\n{second}");
    assert!(count(first, "online") > 0.0 && count(first, "online") <= 3000.0, "{first}");
    assert_eq!(first["title"], "fleetstorm: quickstart");
    assert_eq!(first["external"].as_array().map(Vec::len), Some(0), "a self-contained page: {first}");
    // Every chart drawn, and with more points in the second reading.
    let charts = |v: &serde_json::Value| -> Vec<(String, u64)> {
        v["charts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_string(), c["series"].as_array().unwrap()[0].as_u64().unwrap()))
            .collect()
    };
    let (before, after) = (charts(first), charts(second));
    let ids: Vec<&str> = before.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["rate", "latency", "errors", "devices-online", "generator", "freshness"]);
    for ((id, a), (_, b)) in before.iter().zip(&after) {
        assert!(*a >= 2 && b > a, "chart {id}: {a} then {b} points");
    }
    // The thresholds as they stand, freshness so far among them; no device
    // has gone stale (3 intervals without a success) against serve. (A
    // device whose first heartbeat is still in flight shows as never ok.)
    let rows: Vec<Vec<String>> = serde_json::from_value(second["thresholds"].clone()).unwrap();
    // (Judged, whichever way: a loaded machine may slow the debug build,
    // to seconds as well as milliseconds.)
    assert!(
        rows.iter().any(|r| r[0] == "latency.p99 < 250ms"
            && fleetstorm::units::parse_duration(&r[1]).is_ok()
            && ["passing", "failing"].contains(&r[2].as_str())),
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| r == &["freshness.stale_devices == 0", "0", "passing"]), "{rows:?}");
    let stale = second["stale"].as_str().unwrap_or_default();
    assert_eq!(stale.split(' ').next(), Some("0"), "{second}");
    // Only the dashboard's address was asked for, and the end shows the report.
    assert_eq!(page["blocked"].as_array().map(Vec::len), Some(0), "{page}");
    assert!(page["requested"].as_array().unwrap().iter().all(|u| u.as_str().unwrap().starts_with(&url)), "{page}");
    assert_eq!(last["path"], "/report");
    assert_eq!(last["title"], "fleetstorm: quickstart");
    assert!(last["headings"].as_array().unwrap().iter().any(|h| h == "Device freshness"), "{last}");
    // The run's own report agrees with what the page counted.
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(report["interrupted"], true);
    assert!(report["totals"]["sent"].as_f64().unwrap() >= count(second, "sent"), "{}", report["totals"]);
}
