//! Every output of an MQTT run carries its sessions: the HTML report, the
//! Markdown summary and the JUnit file show the sessions opened and how
//! long opening took, what the idle sessions did and the untimed QoS 0
//! heartbeats (with no latency for a fleet that has none timed), and
//! `compare` compares session opening and connects; an HTTP run's
//! outputs show none of it.

use fleetstorm::report::Report;

use super::util::{TempDir, fleetstorm, interop, root};

/// A QoS 1 fleet and a QoS 0 one against the built-in backend's MQTT listener.
const MQTT: &str = "name = \"mqtt-outputs\"\nseed = 9\nduration = \"2s\"\n[target]\nurl = \"builtin\"\ntimeout = \"2s\"\n\
    [[fleets]]\nname = \"meters\"\ndevices = 6\ninterval = \"500ms\"\ndevice_name = \"meter-{index}\"\nprofile = \"mqtt\"\n\
    [fleets.mqtt]\nqos = 1\n\
    [[fleets]]\nname = \"tags\"\ndevices = 4\ninterval = \"500ms\"\ndevice_name = \"tag-{index}\"\nprofile = \"mqtt\"\n\
    [fleets.mqtt]\nqos = 0\n";

/// Runs `scenario` with every output; (report, html, markdown, junit).
fn run_with_outputs(dir: &TempDir, scenario: &str) -> (Report, String, String, String) {
    let [json, html, md, junit] = ["r.json", "r.html", "r.md", "r.xml"].map(|f| dir.path(f));
    let s = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    let out = fleetstorm(&[
        "run",
        scenario,
        "--quiet",
        "--out",
        &s(&json),
        "--html",
        &s(&html),
        "--summary-md",
        &s(&md),
        "--junit",
        &s(&junit),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let read = |p: &std::path::PathBuf| std::fs::read_to_string(p).unwrap();
    (Report::load(&json).unwrap(), read(&html), read(&md), read(&junit))
}

#[test]
fn every_output_of_an_mqtt_run_carries_its_sessions_and_no_latency_for_qos_0() {
    let dir = TempDir::new("mqtt-outputs");
    let file = dir.write("mqtt.toml", MQTT);
    let (report, html, md, junit) = run_with_outputs(&dir, &file);
    let (meters, tags, t) = (&report.fleets[0], &report.fleets[1], &report.totals);
    assert!(!meters.untimed() && tags.untimed() && tags.unacknowledged > 0, "{tags:?}");
    assert_eq!(t.connects, 10, "a session per device, none lost");
    let open = t.session_open_ms.as_ref().expect("sessions were timed");

    // HTML: a sessions table, the sentence, and no latency rows for tags.
    assert!(html.contains("<h2>Sessions</h2>"), "{html}");
    let row = |name: &str, r: &fleetstorm::report::Stats| {
        format!("<tr><td>{name}</td><td>{}</td><td>{:.2}</td>", r.connects, r.session_open_ms.as_ref().unwrap().p50)
    };
    for (name, r) in [("meters", meters), ("tags", tags), ("TOTAL", t)] {
        assert!(html.contains(&row(name, r)), "{name}: {html}");
    }
    assert!(html.contains("unacknowledged: heartbeats published at QoS 0"), "{html}");
    assert!(
        html.contains("<tr><td>meters</td><td>latency</td>") && !html.contains("<tr><td>tags</td><td>latency</td>")
    );
    assert!(html.contains(&format!("<td>{}</td></tr>", tags.unacknowledged)), "{html}");

    // The timeline counts each second's openings and endings beside the
    // sessions open: every device opened its one session, none ended.
    let opened: u64 = report.timeline.iter().map(|s| s.sessions_opened.expect("a session run's timeline")).sum();
    let ended: u64 = report.timeline.iter().map(|s| s.sessions_ended.expect("a session run's timeline")).sum();
    assert_eq!((opened, ended), (t.connects, 0), "{:?}", report.timeline);
    assert_eq!(report.timeline.last().and_then(|s| s.sessions_open), Some(t.connects));
    // HTML: a sessions plot, drawn with that data and labelled, in a real browser.
    assert!(html.contains("<figure id=\"plot-sessions\"><h3>Sessions over time</h3>"), "{html}");
    let screenshot = root().join("target").join("mqtt-report-screenshot.png");
    let html_path = dir.path("r.html");
    if let Some(page) = interop(
        "check_html.py",
        &[html_path.to_str().unwrap(), screenshot.to_str().unwrap()],
        &["websocket", "bin:chromium"],
    ) {
        let figures = page["figures"].as_array().unwrap();
        let ids: Vec<&str> = figures.iter().map(|f| f["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            ["plot-rate", "plot-latency", "plot-errors", "plot-sessions", "plot-distribution", "plot-freshness"]
        );
        let f = &figures[3];
        assert!(f["svg"] == true && f["width"].as_f64() > Some(400.0) && f["height"].as_f64() > Some(200.0), "{f}");
        assert!(f["series"].as_u64() >= Some(1) && f["series_length"].as_f64() > Some(200.0), "no data drawn: {f}");
        assert!(f["labels"].as_u64() >= Some(8), "axes unlabelled: {f}");
    }

    // Markdown: the fleet table shows no latency for tags; a sessions table.
    let tags_row = md.lines().find(|l| l.starts_with("| tags |")).unwrap();
    assert!(tags_row.contains("| — | — | — | — | — | — |"), "{tags_row}");
    assert!(!md.lines().find(|l| l.starts_with("| meters |")).unwrap().contains('—'));
    assert!(md.contains("**Sessions:**"), "{md}");
    let sessions_row = format!("| **total** | {} | {:.2} | {:.2} | {:.2} |", t.connects, open.p50, open.p99, open.max);
    assert!(md.contains(&sessions_row), "{sessions_row} not in:\n{md}");
    assert!(md.contains("unacknowledged: heartbeats published at QoS 0"), "{md}");

    // JUnit: the run's sessions as properties.
    for (name, value) in [
        ("sessions_opened", t.connects.to_string()),
        ("session_open_p99_ms", format!("{:.3}", open.p99)),
        ("unacknowledged", t.unacknowledged.to_string()),
    ] {
        assert!(junit.contains(&format!("<property name=\"{name}\" value=\"{value}\"/>")), "{name}: {junit}");
    }

    // compare: session opening and connects, between two MQTT runs.
    let json = dir.path("r.json");
    let out = fleetstorm(&["compare", json.to_str().unwrap(), json.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", String::from_utf8_lossy(&out.stderr));
    for metric in ["session_open.p50", "session_open.p99", "connects", "latency.p99"] {
        assert!(said.lines().any(|l| l.starts_with(metric)), "{metric} not compared:\n{said}");
    }
}

#[test]
fn an_http_run_s_outputs_show_no_sessions() {
    let dir = TempDir::new("http-outputs");
    let file = dir.write(
        "http.toml",
        "name = \"http-outputs\"\nseed = 9\nduration = \"2s\"\n[target]\nurl = \"builtin\"\n\
         [[fleets]]\nname = \"f\"\ndevices = 5\ninterval = \"500ms\"\n",
    );
    let (report, html, md, junit) = run_with_outputs(&dir, &file);
    assert!(report.totals.session_open_ms.is_none());
    assert!(!html.contains("Sessions") && !md.contains("Sessions") && !junit.contains("session"));
    assert!(!html.contains("plot-sessions") && report.timeline.iter().all(|s| s.sessions_opened.is_none()));
    assert!(!md.contains('—') && !html.contains("unacknowledged"));
    let json = dir.path("r.json");
    let out = fleetstorm(&["compare", json.to_str().unwrap(), json.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!said.contains("session_open") && !said.contains("connects"), "{said}");
}
