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
    assert_eq!(upgraded["schema"], "fleetstorm.report/v3");
    super::run::schema_check(&upgraded);
    let p = &upgraded["totals"]["latency_ms"];
    assert!(p["p75"].as_f64() <= p["p90"].as_f64() && p["p95"].as_f64() >= p["p90"].as_f64(), "{p}");
    // compare: a v1 baseline against a v3 run of the same scenario.
    let current = dir.write("current.json", &serde_json::to_string(&upgraded).unwrap());
    let (code, text) = compare(&[v1, &current]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("latency.p95") && text.contains("unchanged"), "{text}");
    // merge: two v1 shards add up into a v3 report.
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

/// A fixture as written.
fn fixture(name: &str) -> serde_json::Value {
    let path = super::util::root().join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn version_2_reports_are_read_with_classes_and_codes_by_report_merge_and_compare() {
    // Written by the fleetstorm before the v3 schema, against a backend
    // answering 429 to a share of heartbeats: v2's http_4xx, all of them
    // 429s by its status codes (tests/fixtures/report-v2*.json).
    let dir = TempDir::new("compare-v2");
    let v2 = "tests/fixtures/report-v2.json";
    let before = fixture("report-v2.json");
    assert_eq!(before["schema"], "fleetstorm.report/v2");
    let out = fleetstorm(&["report", v2, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let after: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(after["schema"], "fleetstorm.report/v3");
    super::run::schema_check(&after);
    let rows = |r: &serde_json::Value| {
        let mut rows: Vec<serde_json::Value> = r["fleets"].as_array().unwrap().clone();
        rows.push(r["totals"].clone());
        rows
    };
    for (b, a) in rows(&before).iter().zip(rows(&after)) {
        let (eb, ea) = (&b["errors"], &a["errors"]);
        assert!(eb["http_4xx"].as_u64() > Some(0), "the fixture has 4xx answers: {b}");
        assert_eq!(a["codes"]["http"], b["status_codes"], "status codes are HTTP's codes");
        assert_eq!(a["codes"]["http"]["429"], eb["http_4xx"], "every 4xx a 429");
        let zero = serde_json::json!(0);
        assert_eq!((&ea["throttled"], &ea["rejected"], &ea["auth"]), (&eb["http_4xx"], &zero, &zero));
        assert_eq!(ea["server_error"], eb["http_5xx"]);
        for kept in ["other_status", "timeout", "connect", "tls", "io", "protocol"] {
            assert_eq!(ea[kept], eb[kept], "{kept}");
        }
        assert_eq!(a["failed"], b["failed"]);
    }
    // A second's 4xx are the run's class: throttled.
    let sum = |r: &serde_json::Value, class: &str| -> u64 {
        r["timeline"].as_array().unwrap().iter().map(|s| s["errors"][class].as_u64().unwrap_or(0)).sum()
    };
    assert!(sum(&before, "http_4xx") > 0);
    assert_eq!(sum(&after, "throttled"), sum(&before, "http_4xx"));
    assert_eq!(sum(&after, "http_4xx"), 0);
    // compare: gates read the v2 baseline by the new names and the old
    // ones alike; against its own v3 rendering, nothing changed.
    let current = dir.write("current.json", &serde_json::to_string(&after).unwrap());
    let metrics = "errors.http_4xx,errors.throttled,errors.server_error,status.429,code.http.429,error_rate";
    let (code, text) = compare(&[v2, &current, "--metrics", metrics]);
    assert_eq!(code, Some(0), "{text}");
    for metric in metrics.split(',') {
        let line = text.lines().find(|l| l.starts_with(metric)).unwrap_or_else(|| panic!("no {metric}: {text}"));
        assert!(line.contains("unchanged"), "{line}");
    }
    // merge: a v2 shard and a v3 shard (the other v2 shard as this
    // fleetstorm writes it) add up, by class and by code.
    let out = fleetstorm(&["report", "tests/fixtures/report-v2-shard1.json", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let shard1 = dir.path("shard1-v3.json");
    std::fs::write(&shard1, &out.stdout).unwrap();
    assert_eq!(fixture_at(&shard1)["schema"], "fleetstorm.report/v3");
    let merged = dir.path("merged.json");
    let (code, err) = execute(&[
        "merge",
        &super::util::root().join("tests/fixtures/report-v2-shard0.json").to_string_lossy(),
        shard1.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let merged = fixture_at(&merged);
    super::run::schema_check(&merged);
    let (s0, s1) = (fixture("report-v2-shard0.json"), fixture("report-v2-shard1.json"));
    let t = |r: &serde_json::Value, path: &[&str]| path.iter().fold(r["totals"].clone(), |v, k| v[k].clone()).as_u64();
    let both = |path: &[&str]| t(&s0, path).unwrap_or(0) + t(&s1, path).unwrap_or(0);
    assert_eq!(t(&merged, &["sent"]), Some(both(&["sent"])));
    assert_eq!(t(&merged, &["errors", "throttled"]), Some(both(&["errors", "http_4xx"])));
    assert!(both(&["errors", "http_4xx"]) > 0);
    assert_eq!(t(&merged, &["errors", "server_error"]), Some(both(&["errors", "http_5xx"])));
    for status in ["200", "429"] {
        assert_eq!(t(&merged, &["codes", "http", status]), Some(both(&["status_codes", status])), "{status}");
    }
}

fn fixture_at(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}
