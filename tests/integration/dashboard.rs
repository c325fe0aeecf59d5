//! The live web dashboard, followed in headless Chromium while a run goes.

use std::io::BufRead;
use std::process::{Command, Stdio};

use crate::util::{Running, TempDir, interop, root};

/// What the browser check read of the dashboard of a run of `scenario`
/// (interrupted once read), the run's report, and the
/// dashboard's address; `None` where the check cannot run.
fn follow(name: &str, scenario: &str) -> Option<(serde_json::Value, serde_json::Value, String)> {
    let dir = TempDir::new(name);
    let out = dir.path("report.json");
    // Five minutes at most; the browser check interrupts it once it has read the page.
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", scenario, "-d", "300s", "-q", "--dashboard", "127.0.0.1:0", "-o"])
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
    let shots = root().join("target").join(name);
    let page = interop("check_dashboard.py", &[&url, &pid, shots.to_str().unwrap()], &["websocket", "bin:chromium"])?;
    let status = run.0.wait().unwrap();
    let said = said.join().unwrap();
    assert_eq!(status.code(), Some(6), "an interrupted run: {said}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    Some((page, report, url))
}

/// The ids of the charts a reading shows, with their first series' points.
fn charts(v: &serde_json::Value) -> Vec<(String, u64)> {
    v["charts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_string(), c["series"].as_array().unwrap()[0].as_u64().unwrap()))
        .collect()
}

#[test]
fn the_dashboard_follows_a_run_and_ends_on_its_report() {
    let Some((page, report, url)) = follow("dashboard", "scenarios/quickstart.toml") else { return };
    let (first, second, last) = (&page["first"], &page["second"], &page["final"]);
    // Rising counts, read from the DOM.
    let count = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert!(count(second, "sent") > count(first, "sent"), "{first}\n{second}");
    assert!(count(second, "ok") > count(first, "ok"), "{first}\n{second}");
    assert!(count(second, "elapsed") > count(first, "elapsed"), "{first}\n{second}");
    assert!(count(first, "online") > 0.0 && count(first, "online") <= 3000.0, "{first}");
    assert_eq!(first["title"], "fleetstorm: quickstart");
    assert_eq!(first["external"].as_array().map(Vec::len), Some(0), "a self-contained page: {first}");
    // Every chart drawn, and with more points in the second reading; no
    // sessions chart, nor tile, in an HTTP run.
    let (before, after) = (charts(first), charts(second));
    let ids: Vec<&str> = before.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["rate", "latency", "errors", "devices-online", "generator", "freshness"]);
    assert!(second["sessions_open"].is_null(), "no sessions tile shown: {second}");
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
    assert_eq!(report["interrupted"], true);
    assert!(report["totals"]["sent"].as_f64().unwrap() >= count(second, "sent"), "{}", report["totals"]);
}

/// An MQTT run's dashboard draws its sessions: the chart, with the
/// sessions open rising as the staggered devices open theirs (200 over
/// the first 10 s), and the tile; the final report has the sessions plot.
#[test]
fn an_mqtt_run_s_dashboard_draws_its_sessions() {
    let Some((page, report, _)) = follow("dashboard-mqtt", "scenarios/mqtt.toml") else { return };
    let (first, second, last) = (&page["first"], &page["second"], &page["final"]);
    let ids: Vec<String> = charts(second).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["rate", "latency", "errors", "devices-online", "sessions", "generator", "freshness"]);
    let sessions =
        |v: &serde_json::Value| v["charts"].as_array().unwrap().iter().find(|c| c["id"] == "sessions").cloned();
    let (a, b) = (sessions(first).unwrap(), sessions(second).unwrap());
    // Open, opened/s and ended/s, each with a point a second, more in the second reading.
    let points = |c: &serde_json::Value| -> Vec<u64> { serde_json::from_value(c["series"].clone()).unwrap() };
    assert_eq!(points(&b).len(), 3, "{b}");
    assert!(points(&a).iter().all(|n| *n >= 2) && points(&b)[0] > points(&a)[0], "{a}\n{b}");
    // Real data: sessions opened, the axis above its empty chart's 1.1.
    assert!(b["top"].as_f64() > Some(1.1), "{b}");
    let open = |v: &serde_json::Value| v["sessions_open"].as_f64().unwrap_or_else(|| panic!("the tile: {v}"));
    assert!(open(first) > 0.0 && open(second) >= open(first) && open(second) <= 200.0, "{first}\n{second}");
    assert_eq!(last["path"], "/report");
    let final_ids: Vec<&str> = last["charts"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(final_ids.contains(&"plot-sessions"), "{last}");
    assert!(report["timeline"].as_array().unwrap().iter().any(|s| s["sessions_opened"].as_u64() > Some(0)));
}
