//! Thresholds end to end: every kind of metric judged on a real run and
//! checked against the report's own numbers; unknown metrics and fleets
//! refused where they are written; exit code 3 on a failing threshold and
//! 0 when all pass; an abort threshold stopping a run early with a complete
//! report.

use std::time::{Duration, Instant};

use fleetstorm::report::Report;
use fleetstorm::scenario::{self, Format};
use fleetstorm::server::{Faults, ServeConfig};
use tokio_util::sync::CancellationToken;

use super::run::schema_check;
use super::util::{TempDir, fleetstorm, spawn_serve, start_serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_judge_every_kind_of_metric_on_a_real_run() {
    let faults = Faults { error_rate: 0.25, error_status: Some(503), ..Faults::default() };
    let server = start_serve(ServeConfig { faults, ..ServeConfig::default() }).await;
    let text = format!(
        r#"
        seed = 3
        duration = "3s"
        [target]
        url = "{}"
        connections = {{ pool = 8 }}
        [[fleets]]
        name = "east"
        devices = 100
        interval = "500ms"
        [[fleets]]
        name = "west"
        devices = 50
        interval = "1s"
        stale_after = "100ms"
        [thresholds]
        "latency.p99" = "< 10s"
        "latency.p50" = "< 1us"
        "service_time.max" = "<= 10s"
        "schedule_lag.p90" = "> 0ms"
        "error_rate" = "> 10%"
        "fleets.east.error_rate" = "< 1%"
        "errors.http_5xx" = "> 0"
        "errors.server_error" = "> 0"
        "errors.timeout" = "== 0"
        "status.503" = ">= 1"
        "code.http.503" = ">= 1"
        "status.200" = "!= 0"
        "missed" = "== 0"
        "missed_rate" = "<= 0%"
        "scheduled" = "> 0"
        "achieved_rate" = ">= 100/s"
        "offered_rate" = "< 1/s"
        "achieved_rate_ratio" = "> 0.9"
        "fleets.west.freshness.stale_devices" = "== 0"
        "freshness.never_ok" = "== 0"
        "freshness.stale_share" = "< 100%"
        "fleets.east.freshness.max_gap.p99" = "< 1h"
        "#,
        server.url()
    );
    let s = scenario::parse(&text, Format::Toml, "kinds.toml", "kinds").unwrap_or_else(|e| panic!("{e}"));
    let report = fleetstorm::run::execute(&s, 3, CancellationToken::new(), |_| {}).await.unwrap();
    server.shutdown().await;
    let t = &report.totals;
    let east = &report.fleets[0];
    let west = &report.fleets[1];
    let fresh = t.freshness.as_ref().unwrap();
    // Each threshold's actual value, computed here from the report's fields.
    let expected: Vec<(&str, f64, bool)> = vec![
        ("latency.p99 < 10s", t.latency_ms.p99, true),
        ("latency.p50 < 1us", t.latency_ms.p50, false),
        ("service_time.max <= 10s", t.service_time_ms.max, true),
        ("schedule_lag.p90 > 0ms", t.schedule_lag_ms.p90, true),
        ("error_rate > 10%", t.failed as f64 / t.sent as f64, true),
        ("fleets.east.error_rate < 1%", east.failed as f64 / east.sent as f64, false),
        ("errors.http_5xx > 0", t.errors["server_error"] as f64, true),
        ("errors.server_error > 0", t.errors["server_error"] as f64, true),
        ("errors.timeout == 0", 0.0, true),
        ("status.503 >= 1", t.codes["http"]["503"] as f64, true),
        ("code.http.503 >= 1", t.codes["http"]["503"] as f64, true),
        ("status.200 != 0", t.codes["http"]["200"] as f64, true),
        // Nothing is missed unless a busy machine held the generator back
        // half an interval: then these fail, as they should.
        ("missed == 0", t.missed as f64, t.missed == 0),
        ("missed_rate <= 0%", t.missed as f64 / t.scheduled as f64, t.missed == 0),
        ("scheduled > 0", t.scheduled as f64, true),
        ("achieved_rate >= 100/s", t.achieved_rate, t.achieved_rate >= 100.0),
        ("offered_rate < 1/s", t.offered_rate, false),
        ("achieved_rate_ratio > 0.9", t.achieved_rate / t.offered_rate, t.achieved_rate / t.offered_rate > 0.9),
        // 100 ms is below west's 1 s interval: every device is stale.
        ("fleets.west.freshness.stale_devices == 0", west.freshness.as_ref().unwrap().stale_devices as f64, false),
        ("freshness.never_ok == 0", fresh.never_ok as f64, fresh.never_ok == 0),
        ("freshness.stale_share < 100%", fresh.stale_devices as f64 / fresh.devices as f64, true),
        ("fleets.east.freshness.max_gap.p99 < 1h", east.freshness.as_ref().unwrap().max_gap_ms.p99, true),
    ];
    assert_eq!(report.thresholds.len(), expected.len());
    for (result, (expr, actual, ok)) in report.thresholds.iter().zip(&expected) {
        assert_eq!(&result.expr, expr, "thresholds keep the file's order");
        let got = result.actual.unwrap_or_else(|| panic!("{expr}: no value: {}", result.actual_text));
        assert!((got - actual).abs() <= 1e-9 * actual.abs().max(1.0), "{expr}: {got} vs {actual}");
        assert_eq!(result.ok, *ok, "{expr} with actual {}", result.actual_text);
    }
    assert!(fresh.stale_devices >= 50, "west's 50 devices are all stale: {fresh:?}");
    assert!(!report.thresholds_passed());
    let summary = report.summary();
    let failing = expected.iter().filter(|(_, _, ok)| !ok).count();
    assert!(summary.contains(&format!("{failing} of {} FAILED", expected.len())), "{summary}");
    assert!(summary.contains("FAIL  latency.p50 < 1us  (actual "), "{summary}");
    schema_check(&serde_json::to_value(&report).unwrap());
}

#[test]
fn unknown_metrics_and_fleets_are_refused_where_they_are_written() {
    let base = "[[fleets]]\nname = \"east\"\ndevices = 10\n[thresholds]\n";
    let cases = [
        ("\"latency.p98\" = \"< 1s\"\n", 5, "unknown metric \"latency.p98\""),
        ("\"fleets.west.latency.p99\" = \"< 1s\"\n", 5, "names the fleet \"west\", which the scenario does not have"),
        ("\"latency.p99\" = \"250ms\"\n", 5, "no operator"),
        ("\"latency.p99\" = \"< 250\"\n", 5, "no unit"),
        ("\"error_rate\" = 0.1\n", 5, "as a string"),
        ("\"missed\" = \"== none\"\n", 5, "not a number"),
        (
            "\"error_rate\" = \"< 1%\"\n[thresholds.abort]\n\"freshness.never_ok\" = \"> 0\"\n",
            7,
            "only known at the end",
        ),
        ("[thresholds.abort]\ngrace = \"soon\"\n", 6, "not a duration"),
    ];
    for (thresholds, line, message) in cases {
        let text = format!("{base}{thresholds}");
        let e = scenario::parse(&text, Format::Toml, "t.toml", "t").expect_err(thresholds);
        assert!(e.message.contains(message), "{thresholds}: {e}");
        assert_eq!(e.line, Some(line), "{thresholds}: {e}");
    }
    // The same through the command line: exit 2, the place named.
    let dir = TempDir::new("unknown-metric");
    let path = dir.write("bad.toml", &format!("{base}\"latency.p42\" = \"< 1s\"\n"));
    let out = fleetstorm(&["validate", &path]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:5") && err.contains("unknown metric"), "{err}");
}

fn small_scenario(thresholds: &str) -> String {
    format!(
        "seed = 1\nduration = \"2s\"\n[[fleets]]\nname = \"gate\"\ndevices = 20\ninterval = \"200ms\"\n[thresholds]\n{thresholds}"
    )
}

#[test]
fn exit_code_is_3_when_a_threshold_fails_and_0_when_all_pass() {
    let dir = TempDir::new("exit-codes");
    let pass = dir.write("pass.toml", &small_scenario("\"latency.p99\" = \"< 5s\"\n\"error_rate\" = \"== 0\"\n"));
    let out = fleetstorm(&["run", &pass, "--quiet"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("thresholds: all 2 passed"), "{stdout}");

    let fail = dir.write("fail.toml", &small_scenario("\"latency.p99\" = \"< 5s\"\n\"latency.max\" = \"< 1us\"\n"));
    let report_path = dir.path("fail.json");
    let out = fleetstorm(&["run", &fail, "--quiet", "--out", report_path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 of 2 FAILED") && stdout.contains("FAIL  latency.max < 1us  (actual "), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 threshold(s) failed: exit code 3"));
    // The report is written in full all the same.
    let report = Report::load(&report_path).unwrap();
    assert_eq!(report.thresholds.iter().map(|t| t.ok).collect::<Vec<_>>(), vec![true, false]);
    assert!(!report.interrupted && report.totals.ok > 0);
}

#[test]
fn an_abort_threshold_stops_the_run_early_with_a_complete_report() {
    let (mut serve, url) = spawn_serve(&["--error-rate", "1", "--error-status", "503"]);
    let dir = TempDir::new("abort");
    let text = format!(
        "seed = 2\nduration = \"60s\"\n[target]\nurl = \"{url}\"\n[[fleets]]\nname = \"doomed\"\ndevices = 50\n\
         interval = \"100ms\"\n[thresholds]\n\"latency.p99\" = \"< 10s\"\n[thresholds.abort]\ngrace = \"1s\"\n\
         \"error_rate\" = \"> 20%\"\n"
    );
    let path = dir.write("abort.toml", &text);
    let report_path = dir.path("abort.json");
    let started = Instant::now();
    let out = fleetstorm(&["run", &path, "--quiet", "--out", report_path.to_str().unwrap()]);
    let took = started.elapsed();
    let _ = serve.kill();
    let _ = serve.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("aborted by the threshold error_rate > 20%"), "{stderr}");
    assert!(took < Duration::from_secs(20), "a 60 s run stopped after {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ABORTED at "), "{stdout}");

    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    schema_check(&json);
    let report: Report = serde_json::from_value(json).unwrap();
    let aborted = report.aborted.as_ref().expect("the abort is recorded");
    assert_eq!(aborted.expr, "error_rate > 20%");
    assert!(aborted.at_s >= 1.0 && aborted.at_s < 10.0, "{aborted:?}");
    assert!(report.interrupted && report.duration_s < 10.0);
    let abort = report.thresholds.iter().find(|t| t.abort).unwrap();
    assert!(!abort.ok && abort.actual == Some(1.0), "{abort:?}");
    let t = &report.totals;
    assert_eq!(t.scheduled, t.sent + t.missed);
    assert_eq!(t.sent, t.ok + t.failed + t.retry_pending);
    assert_eq!(t.failed, t.errors.values().sum::<u64>());
    assert!(t.errors["server_error"] > 0 && t.ok == 0, "{t:?}");
}

#[test]
fn the_ci_example_passes_against_the_backend_it_starts() {
    // The example's backend (4 workers × 2 ms: 2,000 heartbeats/s) and
    // its scenario (400/s), for 3 s instead of 60.
    let (mut serve, url) = spawn_serve(&["--workers", "4", "--service-time", "2ms"]);
    let dir = TempDir::new("ci-example");
    let summary = dir.path("summary.md");
    let report_path = dir.path("report.json");
    let out = fleetstorm(&[
        "run",
        "examples/ci/gate.toml",
        "--target",
        &url,
        "--duration",
        "3s",
        "--quiet",
        "--summary-md",
        summary.to_str().unwrap(),
        "--out",
        report_path.to_str().unwrap(),
    ]);
    let _ = serve.kill();
    let _ = serve.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = Report::load(&report_path).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out.stderr)));
    // The gates on what the backend did pass however loaded the machine.
    // Those on timing (latency p99 < 100 ms, nothing missed, achieved_rate
    // ratio > 0.99 over 3 s) need a generator with spare CPU: on a busy one
    // they may fail, and then the exit code says so; keeping up is the
    // benches' to measure.
    assert_eq!(report.thresholds.len(), 9, "{stdout}");
    let gate = |expr: &str| report.thresholds.iter().find(|t| t.expr == expr).unwrap_or_else(|| panic!("{expr}"));
    for expr in ["error_rate < 0.1%", "freshness.stale_devices == 0"] {
        assert!(gate(expr).ok, "{:?}\n{stdout}", gate(expr));
    }
    let t = &report.totals;
    assert!(t.ok > 0 && t.failed == 0, "{t:?}");
    if report.thresholds_passed() {
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("thresholds: all 7 passed; 2 abort conditions, none triggered"), "{stdout}");
    } else {
        assert_eq!(out.status.code(), Some(3), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let timing = ["latency.p99", "latency.p999", "missed", "achieved_rate_ratio", "fleets.sensors.latency.p99"];
        for t in report.thresholds.iter().filter(|t| !t.ok) {
            assert!(timing.contains(&t.metric.as_str()), "only a timing gate may fail here: {t:?}");
        }
    }
    let workflow = std::fs::read_to_string(super::util::root().join("examples/ci/fleetstorm-gate.yml")).unwrap();
    // It installs fleetstorm as a user's repository would (a pinned
    // revision, cached), not from a checkout of fleetstorm's own.
    for needle in [
        "fleetstorm run loadtest/gate.toml",
        "--summary-md",
        "--junit",
        "GITHUB_STEP_SUMMARY",
        "--workers 4 --service-time 2ms",
        "cargo install --locked --git \"$FLEETSTORM_GIT\" --rev \"$FLEETSTORM_REV\"",
        "actions/cache@v4",
    ] {
        assert!(workflow.contains(needle), "the workflow lacks {needle:?}");
    }
    assert!(!workflow.contains("target/release"), "no build from a checkout of fleetstorm");
}
