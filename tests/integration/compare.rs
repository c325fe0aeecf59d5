//! `fleetstorm compare` as a CI gate, on reports crafted from a real one:
//! a regression exits 3, an improvement or a change within noise exits 0,
//! bad input exits 2.

use super::util::{TempDir, execute, fleetstorm};

/// A real report, as JSON, to craft variants of.
fn real_report(dir: &TempDir) -> serde_json::Value {
    let scenario = dir.write(
        "s.toml",
        "seed = 4\nduration = \"1s\"\n[[fleets]]\nname = \"east\"\ndevices = 20\ninterval = \"200ms\"\n",
    );
    let out_path = dir.path("real.json");
    let out = fleetstorm(&["run", &scenario, "--quiet", "--out", out_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(out_path).unwrap()).unwrap()
}

/// Writes a copy of `base` whose run-wide latency p99 is `p99` ms.
fn variant(dir: &TempDir, base: &serde_json::Value, name: &str, p99: f64) -> String {
    let mut r = base.clone();
    r["totals"]["latency_ms"]["p99"] = serde_json::json!(p99);
    dir.write(name, &serde_json::to_string(&r).unwrap())
}

fn compare(args: &[&str]) -> (Option<i32>, String) {
    let out = fleetstorm(&[&["compare"], args].concat());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn compare_gates_regressions_and_knows_noise() {
    let dir = TempDir::new("compare");
    let base = real_report(&dir);
    let b = variant(&dir, &base, "b.json", 10.0);
    let worse = variant(&dir, &base, "worse.json", 15.0);
    let better = variant(&dir, &base, "better.json", 6.0);
    let slightly = variant(&dir, &base, "slightly.json", 10.5);

    let (code, text) = compare(&[&b, &worse]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("latency.p99") && text.contains("REGRESSION") && text.contains("+50"), "{text}");

    let (code, text) = compare(&[&b, &better]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("improvement"), "{text}");
    assert!(!text.contains("fleetstorm versions"), "one fleetstorm made both: {text}");
    // The same reports, as if made by another fleetstorm: said, not judged.
    let mut older = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&better).unwrap()).unwrap();
    older["fleetstorm_version"] = "0.0.9 (commit 0123456789ab)".into();
    let older = dir.write("older.json", &older.to_string());
    let (code, text) = compare(&[&b, &older]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("warning: the sides were made by different fleetstorm versions"), "{text}");
    assert!(text.contains("current: 0.0.9 (commit 0123456789ab)"), "{text}");

    let (code, text) = compare(&[&b, &slightly]);
    assert_eq!(code, Some(0), "+5% is within the default 10%: {text}");
    let (code, text) = compare(&[&b, &slightly, "--max-regression", "2%"]);
    assert_eq!(code, Some(3), "+5% is beyond 2%: {text}");

    // Several runs per side: a clear shift is a regression...
    let tight_b: Vec<String> =
        [10.0, 10.2, 9.9].iter().enumerate().map(|(i, v)| variant(&dir, &base, &format!("tb{i}.json"), *v)).collect();
    let tight_c: Vec<String> =
        [15.0, 15.1, 14.8].iter().enumerate().map(|(i, v)| variant(&dir, &base, &format!("tc{i}.json"), *v)).collect();
    let args = |b: &[String], c: &[String]| -> Vec<String> {
        let mut a = vec!["--baseline".to_string()];
        a.extend(b.iter().cloned());
        a.push("--current".into());
        a.extend(c.iter().cloned());
        a
    };
    let a = args(&tight_b, &tight_c);
    let (code, text) = compare(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("REGRESSION"), "{text}");
    // ...while the same mean shift amid a wide spread is within noise.
    let wide_b: Vec<String> =
        [5.0, 10.0, 15.0].iter().enumerate().map(|(i, v)| variant(&dir, &base, &format!("wb{i}.json"), *v)).collect();
    let wide_c: Vec<String> =
        [7.0, 14.0, 21.0].iter().enumerate().map(|(i, v)| variant(&dir, &base, &format!("wc{i}.json"), *v)).collect();
    let a = args(&wide_b, &wide_c);
    let (code, text) = compare(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("within noise"), "{text}");

    // Bad input: exit 2 with the reason (in-process: the command's error).
    let (code, text) = execute(&["compare", &b, &worse, "--metrics", "latency.p98"]);
    assert_eq!(code, 2);
    assert!(text.contains("unknown metric \"latency.p98\""), "{text}");
    let (code, text) = execute(&["compare", &b, &worse, "--metrics", "fleets.west.latency.p99"]);
    assert_eq!(code, 2);
    assert!(text.contains("no fleet \"west\""), "{text}");
    let (code, text) = execute(&["compare", &b]);
    assert_eq!(code, 2, "{text}");
    // The gate's verdict alone, in-process: a regression is exit code 3.
    assert_eq!(execute(&["compare", &b, &worse]).0, 3);
    assert_eq!(execute(&["compare", &b, &better]).0, 0);
}

#[test]
fn version_1_reports_are_still_read_by_report_merge_and_compare() {
    // Written by the fleetstorm before the v2 schema (tests/fixtures).
    let dir = TempDir::new("compare-v1");
    let v1 = "tests/fixtures/report-v1.json";
    let out = fleetstorm(&["report", v1, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let upgraded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(upgraded["schema"], "fleetstorm.report/v2");
    super::run::schema_check(&upgraded);
    let p = &upgraded["totals"]["latency_ms"];
    assert!(p["p75"].as_f64() <= p["p90"].as_f64() && p["p95"].as_f64() >= p["p90"].as_f64(), "{p}");
    // compare: a v1 baseline against a v2 run of the same scenario.
    let current = dir.write("current.json", &serde_json::to_string(&upgraded).unwrap());
    let (code, text) = compare(&[v1, &current]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("latency.p95") && text.contains("unchanged"), "{text}");
    // merge: two v1 shards add up into a v2 report.
    // (In-process: the merged report is the command's file.)
    let merged = dir.path("merged.json");
    let (code, err) = execute(&[
        "merge",
        &super::util::root().join("tests/fixtures/report-v1-shard0.json").to_string_lossy(),
        &super::util::root().join("tests/fixtures/report-v1-shard1.json").to_string_lossy(),
        "--out",
        merged.to_str().unwrap(),
        "--html",
        dir.path("merged.html").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read_to_string(dir.path("merged.html")).unwrap().trim_end().ends_with("</html>"));
    let merged: serde_json::Value = serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
    super::run::schema_check(&merged);
    let shard = |i: u32| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(super::util::root().join(format!("tests/fixtures/report-v1-shard{i}.json")))
                .unwrap(),
        )
        .unwrap()
    };
    let sent = |r: &serde_json::Value| r["totals"]["sent"].as_u64().unwrap();
    assert_eq!(sent(&merged), sent(&shard(0)) + sent(&shard(1)));
}
