//! Every rendering of a real run's report, checked by what consumes it:
//! the HTML in headless Chromium (every plot drawn), the JUnit XML by
//! junitparser, the HdrHistogram interval log by the HdrHistogram Python
//! package, the Markdown summary as text; and `fleetstorm report`
//! rendering a saved report again, identically.

use fleetstorm::report::Report;

use super::run::schema_check;
use super::util::{TempDir, fleetstorm, interop, root, spawn_serve};

#[test]
fn a_real_run_renders_html_markdown_junit_and_an_hlog_that_their_consumers_read() {
    // 10% of heartbeats fail, so the failure plot and a failing threshold have something to show.
    let (mut serve, url) =
        spawn_serve(&["--error-rate", "0.1", "--error-status", "503", "--latency", "uniform:1ms..5ms"]);
    let dir = TempDir::new("renders");
    let scenario = dir.write(
        "mixed.toml",
        &format!(
            r#"
            name = "renders"
            seed = 5
            duration = "6s"
            breakdown = ["agent_version"]
            [target]
            url = "{url}"
            connections = {{ pool = 16 }}
            [[fleets]]
            name = "cameras"
            devices = 300
            interval = "1s"
            agent_versions = {{ "1.20231.0" = 0.5, "1.20240.1" = 0.5 }}
            [[fleets]]
            name = "sensors"
            devices = 200
            interval = "2s"
            ramp_up = "2s"
            arrival = "poisson"
            [thresholds]
            "latency.p99" = "< 5s"
            "error_rate" = "< 1%"
            "fleets.sensors.missed" = "== 0"
            [thresholds.abort]
            "error_rate" = "> 90%"
            "#
        ),
    );
    let [json, html, md, junit, hlog] = ["r.json", "r.html", "r.md", "r.xml", "r.hlog"].map(|f| dir.path(f));
    let s = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    let out = fleetstorm(&[
        "run",
        &scenario,
        "--quiet",
        "--out",
        &s(&json),
        "--html",
        &s(&html),
        "--summary-md",
        &s(&md),
        "--junit",
        &s(&junit),
        "--hlog",
        &s(&hlog),
    ]);
    let _ = serve.kill();
    let _ = serve.wait();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "error_rate < 1% fails: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report = Report::load(&json).unwrap();
    schema_check(&serde_json::to_value(&report).unwrap());
    let failed: Vec<&str> = report.thresholds.iter().filter(|t| !t.ok).map(|t| t.expr.as_str()).collect();
    assert_eq!(failed, ["error_rate < 1%"]);

    // The cohorts: each fleet by agent version, adding up to the fleet.
    let cohorts: Vec<(&str, &str)> =
        report.cohorts.iter().map(|c| (c.fleet.as_str(), c.agent_version.as_str())).collect();
    assert_eq!(cohorts, [("cameras", "1.20231.0"), ("cameras", "1.20240.1"), ("sensors", "1.0.0")]);
    for f in &report.fleets {
        let of_fleet = report.cohorts.iter().filter(|c| Some(&c.fleet) == f.name.as_ref());
        assert_eq!(of_fleet.map(|c| c.stats.sent).sum::<u64>(), f.sent, "{:?}", f.name);
    }
    assert!(report.cohorts.iter().all(|c| c.stats.sent > 0 && c.stats.failed > 0), "every cohort met the 503s");

    // Markdown: the verdict first, the failing threshold marked, the fleets
    // and the cohorts tabled.
    let markdown = std::fs::read_to_string(&md).unwrap();
    assert!(markdown.starts_with("## ❌ fleetstorm: renders"), "{markdown}");
    assert!(
        markdown.contains("| ❌ FAIL | `error_rate < 1%` |") && markdown.contains("| ✅ pass | `latency.p99 < 5s` |")
    );
    assert!(markdown.contains("| cameras |") && markdown.contains("| sensors |") && markdown.contains("| **total** |"));
    assert!(markdown.contains("**By agent version:**\n\n| fleet | agent version | sent | ok | failed |"), "{markdown}");
    for c in &report.cohorts {
        let s = &c.stats;
        let row = format!("| {} | {} | {} | {} | {} | ", c.fleet, c.agent_version, s.sent, s.ok, s.failed);
        assert!(markdown.contains(&row), "{row:?} in {markdown}");
    }

    // JUnit, read by junitparser: one case per threshold, the failure with
    // its actual value; then a suite of the cohorts, their results in their output.
    if let Some(j) = interop("read_junit.py", &[&s(&junit)], &["junitparser"]) {
        assert_eq!((j["suites"].as_u64(), j["tests"].as_u64(), j["failures"].as_u64()), (Some(2), Some(7), Some(1)));
        let all = j["cases"].as_array().unwrap();
        let (cases, cohort_cases): (Vec<_>, Vec<_>) = all.iter().partition(|c| c["suite"] == "fleetstorm.renders");
        let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["latency.p99 < 5s", "error_rate < 1%", "fleets.sensors.missed == 0", "abort if error_rate > 90%"]
        );
        let failure = cases[1]["failure"].as_str().unwrap();
        let actual = &report.thresholds[1].actual_text;
        assert!(failure.contains("error_rate < 1%: actual ") && failure.contains(actual.as_str()), "{failure}");
        assert!(cases.iter().enumerate().all(|(i, c)| c["passed"].as_bool() == Some(i != 1)));
        assert_eq!(cohort_cases.len(), report.cohorts.len());
        for (case, c) in cohort_cases.iter().zip(&report.cohorts) {
            assert_eq!(case["suite"], "fleetstorm.renders.cohorts");
            assert_eq!(case["name"].as_str(), Some(format!("{}@{}", c.fleet, c.agent_version).as_str()));
            assert_eq!(case["passed"], true);
            let out = case["system_out"].as_str().unwrap();
            let s = &c.stats;
            let counts = format!("sent {}, ok {}, failed {}, error rate ", s.sent, s.ok, s.failed);
            assert!(out.starts_with(&counts) && out.contains(&format!("p99 {:.2} ms", s.latency_ms.p99)), "{out}");
        }
    }

    // The interval log, read by the HdrHistogram Python package: its
    // per-second counts add up to the run's latency histogram.
    if let Some(h) = interop("read_hlog.py", &[&s(&hlog)], &["hdrh"]) {
        let latency = fleetstorm::stats::decode_histogram(&report.totals.histograms.latency).unwrap();
        assert_eq!(h["total"].as_u64(), Some(latency.len()), "{h}");
        assert!(h["intervals"].as_u64().unwrap() >= 6, "{h}");
        let started = humantime::parse_rfc3339(&report.started_at).unwrap();
        let start_s = started.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((h["start_time_sec"].as_f64().unwrap() - start_s).abs() < 0.01, "{h}");
    }

    // The HTML, in a real browser: every plot present, drawn and labelled; nothing fetched.
    let screenshot = root().join("target").join("report-screenshot.png");
    if let Some(page) =
        interop("check_html.py", &[&s(&html), screenshot.to_str().unwrap()], &["websocket", "bin:chromium"])
    {
        assert_eq!(page["title"], "fleetstorm: renders");
        assert_eq!(page["external"].as_array().map(Vec::len), Some(0), "a self-contained page: {page}");
        assert!(page["tables"].as_u64().unwrap() >= 5);
        assert!(page["headings"].as_array().unwrap().iter().any(|h| h == "Cohorts by agent version"), "{page}");
        // The cohorts' table as the browser drew it: a header and a row per cohort.
        let rows = page["cohorts"].as_array().unwrap_or_else(|| panic!("no cohorts table drawn: {page}"));
        assert_eq!(rows.len(), 1 + report.cohorts.len(), "{page}");
        assert_eq!(rows[0][0], "fleet");
        for (row, c) in rows[1..].iter().zip(&report.cohorts) {
            let s = &c.stats;
            let want =
                [c.fleet.clone(), c.agent_version.clone(), s.sent.to_string(), s.ok.to_string(), s.failed.to_string()];
            let drawn: Vec<&str> = row.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert_eq!(drawn[..5], want.iter().map(String::as_str).collect::<Vec<_>>()[..], "{row}");
            assert_eq!(drawn[7], format!("{:.2}", s.latency_ms.p99));
        }
        let figures = page["figures"].as_array().unwrap();
        let ids: Vec<&str> = figures.iter().map(|f| f["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["plot-rate", "plot-latency", "plot-errors", "plot-distribution", "plot-freshness"]);
        for f in figures {
            assert!(f["svg"] == true && f["width"].as_f64() > Some(400.0) && f["height"].as_f64() > Some(200.0), "{f}");
            assert!(f["series"].as_u64() >= Some(1) && f["series_length"].as_f64() > Some(200.0), "no data drawn: {f}");
            assert!(f["labels"].as_u64() >= Some(8), "axes unlabelled: {f}");
        }
        let by_id = |id: &str| figures.iter().find(|f| f["id"] == id).unwrap();
        assert!(by_id("plot-rate")["series"].as_u64() >= Some(3), "offered, achieved, ok");
        assert!(by_id("plot-errors")["series"].as_u64() >= Some(2), "server_error and missed");
        assert!(by_id("plot-freshness")["series"].as_u64() >= Some(2), "one line per fleet");
        assert!(std::fs::metadata(&screenshot).unwrap().len() > 20_000, "a screenshot was taken");
    }

    // `fleetstorm report` renders the saved report again, identically.
    let again = TempDir::new("renders-again");
    let [html2, md2, junit2] = ["r.html", "r.md", "r.xml"].map(|f| again.path(f));
    let out =
        fleetstorm(&["report", &s(&json), "--html", &s(&html2), "--summary-md", &s(&md2), "--junit", &s(&junit2)]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), stdout, "--format text is the run's summary");
    for (a, b) in [(&html, &html2), (&md, &md2), (&junit, &junit2)] {
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "{} differs when rendered again", b.display());
    }
    let out = fleetstorm(&["report", &s(&json), "--format", "json"]);
    let printed: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, report);
}

#[test]
fn report_refuses_what_is_not_a_report() {
    let dir = TempDir::new("not-a-report");
    for (file, text, message) in [
        ("a.json", "{\"schema\": \"other/v9\"}", "a other/v9 report"),
        ("b.json", "[1, 2]", "not a fleetstorm report"),
        ("c.json", "{", "not JSON"),
        (
            "d.json",
            "{\"schema\": \"fleetstorm.report/v1\", \"scenario\": 1}",
            "not a valid fleetstorm.report/v1 report at scenario",
        ),
    ] {
        let path = dir.write(file, text);
        let (code, err) = super::util::execute(&["report", &path]);
        assert_eq!(code, 2, "{file}");
        assert!(err.contains(message) && err.contains(file), "{file}: {err}");
    }
}

#[test]
fn every_output_names_a_profile_fleet_s_paths_not_send_heartbeat() {
    // A ThingsBoard fleet never sends to the target's SendHeartbeat path:
    // the terminal summary, the HTML, the Markdown, the JUnit file and
    // capacity (text and HTML) all name the target as the summary does
    // (once, all but the summary named `.../SendHeartbeat`).
    let dir = TempDir::new("profile-destination");
    let scenario = dir.write(
        "tb.toml",
        r#"
        name = "tb-destination"
        seed = 3
        duration = "1s"
        [target]
        url = "builtin"
        timeout = "2s"
        [[fleets]]
        name = "meters"
        profile = "thingsboard"
        devices = 10
        device_name = "meter-{index:04}"
        interval = "1s"
        [capacity]
        slo = { "latency.p99" = "< 2s" }
        start_rate = "10/s"
        max_rate = "10/s"
        strategy = "steps"
        scale = "rate"
        step_duration = "1s"
        warmup = "1s"
        "#,
    );
    let [json, html, md, junit, cap_json, cap_html] =
        ["r.json", "r.html", "r.md", "r.xml", "c.json", "c.html"].map(|f| dir.path(f));
    let s = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    let run = fleetstorm(&[
        "run",
        &scenario,
        "--out",
        &s(&json),
        "--html",
        &s(&html),
        "--summary-md",
        &s(&md),
        "--junit",
        &s(&junit),
    ]);
    let summary = String::from_utf8_lossy(&run.stdout).to_string();
    assert_eq!(run.status.code(), Some(0), "{summary}{}", String::from_utf8_lossy(&run.stderr));
    let cap = fleetstorm(&["capacity", &scenario, "--quiet", "--out", &s(&cap_json), "--html", &s(&cap_html)]);
    let cap_text = String::from_utf8_lossy(&cap.stdout).to_string();
    assert!(cap_json.exists(), "{cap_text}{}", String::from_utf8_lossy(&cap.stderr));
    let said = [
        ("summary", summary.lines().next().unwrap_or_default().to_string()),
        ("html", std::fs::read_to_string(&html).unwrap()),
        ("markdown", std::fs::read_to_string(&md).unwrap()),
        ("junit", std::fs::read_to_string(&junit).unwrap()),
        ("capacity text", cap_text.lines().next().unwrap_or_default().to_string()),
        ("capacity html", std::fs::read_to_string(&cap_html).unwrap()),
    ];
    for (output, text) in said {
        assert!(text.contains("(thingsboard profile paths)"), "{output} does not name the profile's paths: {text}");
        assert!(!text.contains("SendHeartbeat"), "{output} names a path never hit: {text}");
    }
}
