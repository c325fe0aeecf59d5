//! How thresholds read and what they can name: an abort condition that did
//! not fire reads as "not triggered", never as a pass of its condition
//! (`pass error_rate > 20%` read as a breach), and is counted apart from
//! the end thresholds, in every output; the generator's verdicts are gate
//! metrics.

use crate::util::{TempDir, fleetstorm};

#[test]
fn abort_conditions_read_as_triggered_or_not_and_are_counted_apart() {
    let dir = TempDir::new("abort-wording");
    let file = dir.write(
        "s.toml",
        "seed = 1\nduration = \"1s\"\n[[fleets]]\nname = \"f\"\ndevices = 10\ninterval = \"200ms\"\n\
         [thresholds]\n\"error_rate\" = \"< 50%\"\n[thresholds.abort]\ngrace = \"10s\"\n\"error_rate\" = \"> 20%\"\n",
    );
    let (md, html) = (dir.path("s.md"), dir.path("s.html"));
    let out = fleetstorm(&["run", &file, "-q", "--summary-md", md.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("thresholds: all 1 passed; 1 abort condition, not triggered"), "{stdout}");
    assert!(stdout.contains("not triggered  abort if error_rate > 20%"), "{stdout}");
    assert!(!stdout.contains("pass  error_rate > 20%"), "{stdout}");
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("**Thresholds:** all 1 passed; 1 abort condition, not triggered."), "{md}");
    assert!(md.contains("| ✅ not triggered | abort if `error_rate > 20%` |"), "{md}");
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("thresholds: all 1 passed; 1 abort condition, not triggered"), "{html}");
    assert!(html.contains(">not triggered</td>"), "{html}");
}

/// The generator's verdicts can be gated on: each metric is the report's
/// own verdict as 0 or 1, whichever way this machine's load made it.
#[test]
fn the_generators_verdicts_are_gate_metrics_equal_to_the_reports_verdicts() {
    let dir = TempDir::new("verdict-gates");
    let file = dir.write(
        "s.toml",
        "seed = 1\nduration = \"1s\"\n[target]\nurl = \"builtin\"\nconnections = { pool = 1 }\n\
         [[fleets]]\nname = \"f\"\ndevices = 50\ninterval = \"100ms\"\n\
         [thresholds]\n\"generator.fell_behind\" = \"== 0\"\n\"generator.pool_limited\" = \"== 0\"\n",
    );
    let report = dir.path("r.json");
    let out = fleetstorm(&["run", &file, "-q", "-o", report.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let generator = &report["generator"];
    let fell_behind = if generator["kept_up"].as_bool().unwrap() { 0.0 } else { 1.0 };
    let limit = generator["pool"]["limit"].as_str().unwrap_or("none");
    let pool_limited = if matches!(limit, "pool" | "bursts") { 1.0 } else { 0.0 };
    let thresholds = report["thresholds"].as_array().unwrap();
    assert_eq!(thresholds[0]["expr"], "generator.fell_behind == 0");
    assert_eq!(thresholds[0]["actual"].as_f64(), Some(fell_behind), "{generator}");
    assert_eq!(thresholds[1]["actual"].as_f64(), Some(pool_limited), "{generator}");
    let passed = fell_behind == 0.0 && pool_limited == 0.0;
    assert_eq!(out.status.code(), Some(if passed { 0 } else { 3 }), "{generator}");
    // They are the run's and known at the end only.
    for (text, says) in [
        ("[thresholds]\n\"fleets.f.generator.fell_behind\" = \"== 0\"\n", "unknown metric"),
        ("[thresholds.abort]\n\"generator.fell_behind\" = \"> 0\"\n", "only known at the end of a run"),
    ] {
        let bad = dir.write("bad.toml", &format!("[[fleets]]\nname = \"f\"\ndevices = 5\n{text}"));
        let out = fleetstorm(&["validate", &bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}
