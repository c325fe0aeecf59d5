//! fleetstorm's own listeners at the end of a run and beyond loopback:
//! `/metrics` keeps the final totals until a scrape has read them, the
//! reports are written before any of it, and neither `/metrics` nor the
//! dashboard binds beyond loopback without the user's word.

use std::io::BufRead;
use std::process::{Command, Stdio};

use crate::util::{Running, TempDir, execute, metrics_page, root};

/// The value of the sample of `name` with all of `labels` in a Prometheus
/// text page.
fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .unwrap_or_else(|| panic!("{name} {labels:?} in\n{page}"))
}

/// A scraper that first comes after the run ended reads the run's final
/// totals (the report's), and the run ends as soon as it has; the report
/// was on disk before the run began to wait for it.
#[test]
fn metrics_keep_the_final_totals_until_a_scrape_reads_them() {
    let dir = TempDir::new("metrics-linger");
    let out = dir.path("report.json");
    let child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", "scenarios/quickstart.toml", "-d", "2s", "-q", "--metrics-addr", "127.0.0.1:0"])
        .args(["--metrics-linger", "10m", "-o"])
        .arg(&out)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = Running(child);
    let mut stderr = std::io::BufReader::new(run.0.stderr.take().unwrap());
    let mut said = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the run ended without waiting: {said}");
        said.push_str(&line);
        if line.starts_with("metrics: the final totals stay at") {
            let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap();
            break url.trim_start_matches("http://").trim_end_matches("/metrics").to_string();
        }
    };
    // The run is over and waits: its report is written already.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the report, before the linger")).expect("a whole report");
    let page = metrics_page(&addr);
    for f in report["fleets"].as_array().unwrap() {
        let fleet = f["name"].as_str().unwrap();
        let count = |k: &str| f[k].as_f64().unwrap();
        assert!(count("sent") > 0.0, "{f}");
        let of = [("fleet", fleet)];
        assert_eq!(sample(&page, "fleetstorm_heartbeats_sent_total", &of), count("sent"), "{fleet}:\n{page}");
        assert_eq!(sample(&page, "fleetstorm_heartbeats_scheduled_total", &of), count("scheduled"), "{fleet}");
        let ok = sample(&page, "fleetstorm_heartbeats_completed_total", &[("fleet", fleet), ("outcome", "ok")]);
        assert_eq!(ok, count("ok"), "{fleet}");
    }
    assert_eq!(sample(&page, "fleetstorm_in_flight", &[("shard", "0/1")]), 0.0);
    // Read once: the run ends by itself (a ten-minute linger otherwise).
    let status = run.0.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{said}{rest}");
    assert!(!rest.contains("nothing scraped"), "{rest}");
}

#[test]
fn pages_beyond_loopback_need_the_users_word() {
    for (flag, addr) in [("--dashboard", "0.0.0.0:0"), ("--metrics-addr", "0.0.0.0:0")] {
        let (code, said) = execute(&["run", "scenarios/quickstart.toml", "-d", "1s", "-q", flag, addr]);
        assert_eq!(code, 2, "{said}");
        assert!(
            said.contains(&format!("{flag} {addr} is not loopback")) && said.contains("--allow-remote-pages"),
            "{said}"
        );
    }
    let (code, said) = execute(&["capacity", "scenarios/capacity.toml", "--dashboard", "0.0.0.0:0"]);
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("--dashboard 0.0.0.0:0 is not loopback"), "{said}");
    // With it, the run goes and says who can read it.
    let out = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", "scenarios/quickstart.toml", "-d", "1s", "-q", "--metrics-addr", "0.0.0.0:0"])
        .args(["--metrics-linger", "0s", "--allow-remote-pages"])
        .current_dir(root())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("warning: --metrics-addr 0.0.0.0:0 answers anyone who can reach it"), "{said}");
}
