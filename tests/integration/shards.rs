//! Sharded runs: the same scenario as one process and as 4 shard
//! processes started together (`--start-at`) against one serve; the
//! shards' schedules partition the single run's; `merge` adds the shard
//! reports up exactly and refuses incomplete or mixed sets.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use fleetstorm::report::Report;
use fleetstorm::run::{PlannedSend, schedule_preview};
use fleetstorm::scenario::{self, Format};
use fleetstorm::server::ServeConfig;
use fleetstorm::shard::Shard;

use super::run::schema_check;
use super::util::{TempDir, start_serve};

fn scenario_text(url: &str) -> String {
    format!(
        "name = \"sharded\"\nseed = 21\nduration = \"3s\"\n[target]\nurl = \"{url}\"\ntimeout = \"2s\"\n\
         [[fleets]]\nname = \"cams\"\ndevices = 250\ninterval = \"1s\"\njitter = \"10%\"\n\
         [[fleets]]\nname = \"sensors\"\ndevices = 97\ninterval = \"500ms\"\narrival = \"poisson\"\n\
         [[fleets.events]]\nat = \"1s\"\nkind = \"outage\"\nshare = \"30%\"\nduration = \"1s\"\n\
         [thresholds]\n\"error_rate\" = \"< 1%\"\n\"latency.p99\" = \"< 2s\"\n"
    )
}

fn fleetstorm(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetstorm")).args(args).output().unwrap()
}

fn key(s: &PlannedSend) -> (u64, String, String) {
    (s.at_ns, s.fleet.clone(), s.device.clone())
}

#[test]
fn the_shards_schedules_partition_the_single_runs() {
    let s = scenario::parse(&scenario_text("builtin"), Format::Toml, "s.toml", "s").unwrap();
    let mut single: Vec<_> = schedule_preview(&s, 21, usize::MAX, None).iter().map(key).collect();
    single.sort();
    assert!(single.len() > 1_000, "{}", single.len());
    for count in [1, 3, 7, 64] {
        let mut union = Vec::new();
        for index in 0..count {
            let part = schedule_preview(&s, 21, usize::MAX, Some(Shard { index, count }));
            // Each device in exactly one shard: none of this shard's
            // devices appear in another's.
            union.extend(part.iter().map(key));
        }
        union.sort();
        assert_eq!(union, single, "{count} shards: same sends, no duplicates, no gaps");
    }
    // The command line prints a shard's schedule: a part of the single one.
    let dir = TempDir::new("shard-schedule");
    let file = dir.write("s.toml", &scenario_text("builtin"));
    let out = fleetstorm(&["validate".into(), file, "--schedule".into(), "40".into(), "--shard".into(), "2/7".into()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("schedule")).skip(1).take(40).collect();
    assert_eq!(lines.len(), 40, "{text}");
    let shard_two: Vec<_> = schedule_preview(&s, 21, 40, Some(Shard { index: 2, count: 7 })).iter().map(key).collect();
    for (line, (at_ns, fleet, device)) in lines.iter().zip(&shard_two) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1..], [fleet.as_str(), device.as_str()], "{line}");
        assert!((fields[0].parse::<f64>().unwrap() - *at_ns as f64 / 1e9).abs() < 1e-6, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_started_together_add_up_to_the_single_run() {
    let server = start_serve(ServeConfig::default()).await;
    let dir = TempDir::new("shards");
    let file = dir.write("s.toml", &scenario_text(&server.url()));
    let accepted = || server.shared.stats_json()["accepted"].as_u64().unwrap();

    // One process.
    let single_json = dir.path("single.json").to_str().unwrap().to_string();
    let args: Vec<String> = ["run", &file, "--quiet", "--out", &single_json].map(String::from).to_vec();
    let out = tokio::task::spawn_blocking(move || fleetstorm(&args)).await.unwrap();
    // Ran (0), or ran and its gates failed on a busy machine (3).
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", String::from_utf8_lossy(&out.stderr));
    let single = Report::load(std::path::Path::new(&single_json)).unwrap();
    let by_single = accepted();

    // Four processes, one start instant; serve's count from before the
    // try in which every shard was ready.
    let runs: Vec<Vec<String>> = (0..4)
        .map(|i| {
            let out_json = dir.path(&format!("shard-{i}.json")).to_str().unwrap().to_string();
            ["run", &file, "--quiet", "--out", &out_json, "--shard", &format!("{i}/4")].map(String::from).to_vec()
        })
        .collect();
    let shared = server.shared.clone();
    let (outs, before) = tokio::task::spawn_blocking(move || {
        let accepted = || shared.stats_json()["accepted"].as_u64().unwrap();
        let mut before = accepted();
        let outs = super::util::run_started_together(&runs, || before = accepted());
        (outs, before)
    })
    .await
    .unwrap();
    assert_eq!(before, by_single, "nothing else sent to serve");
    let mut reports = Vec::new();
    for (i, out) in outs.iter().enumerate() {
        assert!(matches!(out.status.code(), Some(0 | 3)), "{}", String::from_utf8_lossy(&out.stderr));
        let path = dir.path(&format!("shard-{i}.json")).to_str().unwrap().to_string();
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        schema_check(&json);
        reports.push((path, serde_json::from_value::<Report>(json).unwrap()));
    }
    let by_shards = accepted() - before;
    server.shutdown().await;

    // Serve accepted what each run counted ok, and at most what it sent
    // (on a busy machine an answer can come after its timeout: accepted,
    // yet failed); with nothing failed or missed in either run, serve saw
    // the same heartbeats from both.
    let shards_total = |f: fn(&Report) -> u64| reports.iter().map(|(_, r)| f(r)).sum::<u64>();
    let (shards_ok, shards_sent) = (shards_total(|r| r.totals.ok), shards_total(|r| r.totals.sent));
    assert!((single.totals.ok..=single.totals.sent).contains(&by_single), "{by_single} {:?}", single.totals);
    assert!((shards_ok..=shards_sent).contains(&by_shards), "{by_shards}: ok {shards_ok}, sent {shards_sent}");
    let clean = |r: &Report| r.totals.failed == 0 && r.totals.missed == 0;
    if clean(&single) && reports.iter().all(|(_, r)| clean(r)) {
        assert_eq!(by_shards, by_single, "serve's accepted counts agree");
        assert_eq!(by_single, single.totals.ok);
    }
    // One start instant, recorded by each. How late each woke after it
    // (`lag_ms`) is the machine's: a busy one wakes a process late.
    let starts: Vec<&str> =
        reports.iter().map(|(_, r)| r.start.as_ref().expect("the start is recorded").at.as_str()).collect();
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{starts:?}");
    for (_, r) in &reports {
        assert!(r.start.as_ref().unwrap().lag_ms >= 0.0);
        assert_eq!(r.shard.as_ref().unwrap().count, 4);
    }
    let hashes: Vec<&str> = reports.iter().map(|(_, r)| r.shard.as_ref().unwrap().scenario_hash.as_str()).collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]));

    // Merged: the sum of the shards, the single run's schedule.
    let merged_json = dir.path("merged.json").to_str().unwrap().to_string();
    let mut args: Vec<String> = vec!["merge".into(), "--out".into(), merged_json.clone()];
    args.extend(reports.iter().rev().map(|(p, _)| p.clone()));
    let out = fleetstorm(&args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&merged_json).unwrap()).unwrap();
    schema_check(&json);
    let merged: Report = serde_json::from_value(json).unwrap();
    let sum = |f: fn(&Report) -> u64| reports.iter().map(|(_, r)| f(r)).sum::<u64>();
    assert_eq!(merged.totals.scheduled, sum(|r| r.totals.scheduled));
    assert_eq!(merged.totals.sent, sum(|r| r.totals.sent));
    assert_eq!(merged.totals.ok, sum(|r| r.totals.ok));
    assert_eq!(merged.totals.failed, sum(|r| r.totals.failed));
    assert_eq!(merged.totals.scheduled, single.totals.scheduled, "the same schedule as one process");
    let latency = fleetstorm::stats::decode_histogram(&merged.totals.histograms.latency).unwrap();
    assert_eq!(latency.len(), merged.totals.ok + merged.totals.failed + merged.totals.missed);
    for (i, fleet) in merged.fleets.iter().enumerate() {
        assert_eq!(fleet.sent, reports.iter().map(|(_, r)| r.fleets[i].sent).sum::<u64>());
        let fresh = fleet.freshness.as_ref().unwrap();
        assert_eq!(
            fresh.devices,
            reports.iter().map(|(_, r)| r.fleets[i].freshness.as_ref().unwrap().devices).sum::<u64>()
        );
    }
    let timeline_sent: u64 = merged.timeline.iter().map(|s| s.sent).sum();
    assert_eq!(timeline_sent, merged.totals.sent);
    assert_eq!(merged.merged.as_ref().unwrap().shards, 4);
    // The merged gates judged on the merged figures (a busy machine may
    // fail them; the judging must be right either way).
    assert_eq!(merged.thresholds.len(), 2);
    let t = &merged.totals;
    let passes = t.error_rate() < 0.01 && t.latency_ms.p99 < 2000.0;
    assert_eq!(merged.thresholds.iter().all(|t| t.ok), passes, "{:?}", merged.thresholds);
    // A merged report is a report: it renders again.
    let html = dir.path("merged.html").to_str().unwrap().to_string();
    let out = fleetstorm(&["report".into(), merged_json.clone(), "--html".into(), html]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("merged from 4 shards"));
    // ... and compares with the single run (whatever the verdict, not a refusal).
    let out = fleetstorm(&[
        "compare".into(),
        single_json.clone(),
        merged_json.clone(),
        "--metrics".into(),
        "error_rate".into(),
    ]);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error_rate"));

    // Refusals, each saying what is wrong.
    let paths: Vec<String> = reports.iter().map(|(p, _)| p.clone()).collect();
    let refuse = |files: Vec<String>, expected: &str| {
        // In-process: the refusal is the command's error, its words and code.
        let mut args = vec!["merge"];
        args.extend(files.iter().map(String::as_str));
        let (code, stderr) = super::util::execute(&args);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    };
    refuse(paths[..3].to_vec(), "missing shard report(s): 3/4");
    refuse(
        vec![paths[0].clone(), paths[1].clone(), paths[1].clone(), paths[2].clone(), paths[3].clone()],
        "given twice",
    );
    refuse(vec![single_json.clone()], "is not a shard's report");
    // A shard of another run (another seed): refused by its scenario hash.
    let other = dir.path("other.json").to_str().unwrap().to_string();
    let (_closed, port) = super::util::closed_port();
    let closed = format!("http://127.0.0.1:{port}");
    let args: Vec<String> = [
        "run",
        &file,
        "--quiet",
        "--out",
        &other,
        "--shard",
        "3/4",
        "--seed",
        "22",
        "--duration",
        "1s",
        "--target",
        &closed,
    ]
    .map(String::from)
    .to_vec();
    let out = fleetstorm(&args);
    assert!(Report::load(std::path::Path::new(&other)).is_ok(), "{}", String::from_utf8_lossy(&out.stderr));
    refuse(vec![paths[0].clone(), paths[1].clone(), paths[2].clone(), other], "from another scenario");
}

#[test]
fn merge_warns_when_shards_started_apart_without_a_shared_start() {
    let dir = TempDir::new("shards-apart");
    let file = dir.write("s.toml", &scenario_text("builtin"));
    // Two shards run one after the other, no --start-at.
    let mut shards = Vec::new();
    for i in 0..2 {
        let path = dir.path(&format!("shard-{i}.json")).to_str().unwrap().to_string();
        let args: Vec<String> =
            ["run", &file, "--quiet", "--duration", "1s", "--out", &path, "--shard", &format!("{i}/2")]
                .map(String::from)
                .to_vec();
        let out = fleetstorm(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        shards.push(serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap()).unwrap());
    }
    let started = humantime::parse_rfc3339(shards[0]["started_at"].as_str().unwrap()).unwrap();
    let version = shards[0]["fleetstorm_version"].clone();
    assert!(version.as_str().is_some_and(|v| v.starts_with("0.")), "{version}");
    // Merges the shards with shard 1 started `later` after shard 0 (and
    // both given `start`, if any; shard 1 made by fleetstorm `other`, if
    // any): the warnings, on stderr and in the report, and the version.
    let merge_made_by = |later: Duration, start: Option<&str>, other: Option<&str>| {
        let mut paths = Vec::new();
        for (i, shard) in shards.iter().enumerate() {
            let mut shard = shard.clone();
            let at = if i == 0 { started } else { started + later };
            shard["started_at"] = humantime::format_rfc3339_millis(at).to_string().into();
            if let Some(start) = start {
                shard["start"] = serde_json::json!({ "at": start, "lag_ms": 0.5 });
            }
            if let (1, Some(other)) = (i, other) {
                shard["fleetstorm_version"] = other.into();
            }
            let path = dir.path(&format!("edited-{i}.json")).to_str().unwrap().to_string();
            std::fs::write(&path, serde_json::to_vec(&shard).unwrap()).unwrap();
            paths.push(path);
        }
        let merged = dir.path("merged.json").to_str().unwrap().to_string();
        let mut args = vec!["merge".to_string(), "--out".into(), merged.clone()];
        args.extend(paths);
        let out = fleetstorm(&args);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
        schema_check(&json);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let warnings: Vec<String> = json["merged"]["warnings"]
            .as_array()
            .map(|w| w.iter().map(|w| w.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        for w in &warnings {
            assert!(stderr.contains(&format!("warning: {w}")), "{stderr}");
        }
        (warnings, json["fleetstorm_version"].clone())
    };
    let merge = |later: Duration, start: Option<&str>| {
        let (warnings, merged_version) = merge_made_by(later, start, None);
        assert_eq!(merged_version, version, "one version in every shard: the merge's");
        warnings
    };
    let apart = merge(Duration::from_secs(5), None);
    assert_eq!(apart.len(), 1, "{apart:?}");
    assert!(apart[0].contains("started 5.0 s apart") && apart[0].contains("--start-at"), "{apart:?}");
    assert_eq!(merge(Duration::from_millis(800), None), Vec::<String>::new(), "within a second: together");
    let shared = humantime::format_rfc3339_millis(started).to_string();
    assert_eq!(merge(Duration::from_secs(5), Some(&shared)), Vec::<String>::new(), "one start instant shared");
    let (warnings, merged_version) = merge_made_by(Duration::ZERO, None, Some("0.0.9 (commit 0123456789ab)"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("different fleetstorm versions") && warnings[0].contains("0.0.9"), "{warnings:?}");
    assert!(merged_version.is_null(), "no one version made a merge of two: {merged_version}");
}

#[test]
fn a_shard_not_ready_at_the_start_instant_exits_4_without_sending() {
    let dir = TempDir::new("shard-late");
    let (_closed, port) = super::util::closed_port();
    let file = dir.write("s.toml", &scenario_text(&format!("http://127.0.0.1:{port}")));
    let out = fleetstorm(&[
        "run".into(),
        file,
        "--quiet".into(),
        "--shard".into(),
        "0/2".into(),
        "--start-at".into(),
        "2026-01-01T00:00:00Z".into(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("not ready at the start instant"), "{stderr}");
    // Sharding needs the seed every shard shares.
    let unseeded = dir.write("u.toml", "[[fleets]]\nname = \"f\"\ndevices = 10\n");
    let out = fleetstorm(&["run".into(), unseeded, "--shard".into(), "0/2".into()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs the run's seed"));
}

#[test]
fn the_kubernetes_manifests_pass_the_api_schemas_and_carry_a_valid_scenario() {
    let deploy = super::util::root().join("deploy");
    let Some(checked) =
        super::util::interop("check_manifests.py", &[deploy.to_str().unwrap()], &["kubernetes_validate"])
    else {
        return;
    };
    let manifests = checked["manifests"].as_array().unwrap();
    let kinds: Vec<&str> = manifests.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    for kind in ["Namespace", "ConfigMap", "PersistentVolumeClaim", "Job", "Service"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    for m in manifests {
        assert_eq!(m["valid"], true, "{m}");
    }
    // The Indexed Job's shard count matches its --shards.
    let job = std::fs::read_to_string(deploy.join("kubernetes/shards-job.yaml")).unwrap();
    assert!(job.contains("completionMode: Indexed") && job.contains("backoffLimitPerIndex: 0"));
    assert!(job.contains("completions: 8") && job.contains("parallelism: 8") && job.contains("- \"8\""));
    assert!(job.contains("values: [4]"), "the not-ready exit code fails the Job");
    // As shipped: the image's user may write the reports volume, the
    // metrics port is scrapeable, the image placeholder is called out.
    for file in ["shards-job.yaml", "merge-job.yaml"] {
        let text = std::fs::read_to_string(deploy.join("kubernetes").join(file)).unwrap();
        assert!(text.contains("fsGroup: 65532") && text.contains("runAsUser: 65532"), "{file}");
        assert!(text.starts_with("# IMAGE:"), "{file} says first that the image must be replaced");
    }
    assert!(job.contains("prometheus.io/scrape: \"true\"") && job.contains("name: fleetstorm-metrics"));
    // The scenario in the ConfigMap is one fleetstorm accepts, with a seed.
    let dir = TempDir::new("k8s-scenario");
    let file = dir.write("scenario.toml", checked["scenario"].as_str().unwrap());
    let out = fleetstorm(&["validate".into(), file, "--shard".into(), "7/8".into(), "--schedule".into(), "3".into()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_example_shard_runs_as_the_container_would() {
    // The ConfigMap's scenario as shard 0 of 8 runs it: as user 65532 (the
    // image's), writing to a volume prepared as fsGroup does (group 65532,
    // setgid), with this machine's open-files limit; only the duration is
    // shorter, and the target is a serve on loopback instead of the
    // cluster's service. Whether 8,000 connections kept up depends on
    // spare CPU, which a busy CI machine lacks: the verdict is checked
    // against what the run measured, and keeping up at this size is
    // benches/'s to measure.
    let _turn = super::util::heavy();
    let deploy = super::util::root().join("deploy/kubernetes/scenario-configmap.yaml");
    let yaml = std::fs::read_to_string(deploy).unwrap();
    let scenario: String = yaml
        .split("scenario.toml: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let setpriv = std::process::Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !(setpriv && root) {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root with setpriv (util-linux)");
        eprintln!("SKIPPED: needs root and setpriv to run as the container's user");
        return;
    }
    let dir = TempDir::new("k8s-shard");
    let file = dir.write("scenario.toml", &scenario);
    let volume = dir.path("reports");
    std::fs::create_dir(&volume).unwrap();
    // What fsGroup does to a volume: its group, group-writable, setgid.
    let chgrp = std::process::Command::new("chgrp").arg("65532").arg(&volume).status().unwrap();
    assert!(chgrp.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o2775)).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (mut serve, url) = super::util::spawn_serve(&[]);
    let out_file = volume.join("shard-0.json");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65532", "--regid=65532", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", &file, "--shards", "8", "--quiet", "--duration", "20s", "--target", &url, "--out"])
        .arg(&out_file)
        .env("JOB_COMPLETION_INDEX", "0")
        .output()
        .unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The thresholds are the scenario's (missed == 0 ...): what matters
    // here is that the shard ran and wrote its report.
    assert!(matches!(out.status.code(), Some(0 | 3)), "{stderr}");
    let report = fleetstorm::report::Report::load(&out_file).unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    assert_eq!((report.shard.as_ref().map(|s| (s.index, s.count))), Some((0, 8)));
    assert_eq!(report.scenario.fleets[0].devices, 64_000);
    assert_eq!(report.totals.connects, report.totals.sent.min(8_000), "a connection per device of the shard");
    let t = &report.totals;
    assert!(t.sent > 5_000 && t.failed == 0, "{t:?}");
    assert_eq!(t.scheduled, t.sent + t.missed, "{t:?}");
    let g = &report.generator;
    let kept_up = g.schedule_lag_p99_ms <= fleetstorm::report::KEPT_UP_LAG_P99_MS
        && g.busiest_thread.is_some_and(|d| d <= fleetstorm::report::KEPT_UP_DEMAND);
    assert_eq!(g.kept_up, kept_up, "the verdict follows what the run measured: {g:?}");
    assert_eq!(g.verdict.starts_with("kept up"), g.kept_up, "{g:?}");
}

/// (metric, labels) -> value, and the latency histograms' counts by fleet.
type Scraped = (BTreeMap<(String, String), f64>, BTreeMap<String, f64>);

/// One scrape of a run's live metrics: (metric, labels) -> value, and the
/// latency histograms' total counts by fleet.
fn scrape(url: &str) -> Scraped {
    let text = super::util::metrics_page(url);
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut values = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    for s in parsed.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let fleet = s.labels.get("fleet").unwrap_or("").to_string();
        assert_eq!(s.labels.get("shard"), Some("1/2"), "every sample is labelled with its shard: {}", s.metric);
        match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => {
                values.insert((s.metric.clone(), labels.join(",")), v);
            }
            prometheus_parse::Value::Histogram(buckets) if s.metric == "fleetstorm_latency_seconds" => {
                assert!(buckets.len() >= 10, "{buckets:?}");
                histograms.insert(fleet, buckets.last().unwrap().count);
            }
            _ => {}
        }
    }
    (values, histograms)
}

#[test]
fn live_metrics_are_scraped_during_a_run_and_rise() {
    use std::io::BufRead;
    let dir = TempDir::new("live-metrics");
    let file = dir.write("s.toml", &scenario_text("builtin").replace("duration = \"3s\"", "duration = \"5s\""));
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", &file, "--quiet", "--shard", "1/2", "--metrics-addr", "127.0.0.1:0", "--metrics-linger", "0s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("metrics: ").unwrap_or_else(|| panic!("the address line: {line:?}")).to_string();
    let key = |metric: &str, labels: &str| (metric.to_string(), labels.to_string());
    let sent = |fleet: &str| key("fleetstorm_heartbeats_sent_total", &format!("fleet={fleet},shard=1/2"));
    let ok = |fleet: &str| key("fleetstorm_heartbeats_completed_total", &format!("fleet={fleet},outcome=ok,shard=1/2"));
    // Scrapes until `enough` says so of what it scraped: the run's own
    // progress, however long a busy machine takes to make it (its 5 s
    // bound the wait: after them the scrape finds no metrics to read).
    let scrape_until = |enough: &dyn Fn(&Scraped) -> bool| loop {
        let scraped = scrape(&url);
        if enough(&scraped) {
            break scraped;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (first, first_latency) = scrape_until(&|(v, l)| {
        ["cams", "sensors"]
            .iter()
            .all(|f| v.get(&sent(f)) > Some(&0.0) && v.get(&ok(f)) > Some(&0.0) && l.get(*f) > Some(&0.0))
    });
    let (second, second_latency) = scrape_until(&|(v, l)| {
        ["cams", "sensors"]
            .iter()
            .all(|f| v[&sent(f)] > first[&sent(f)] && v[&ok(f)] > first[&ok(f)] && l[*f] > first_latency[*f])
    });
    assert!(child.wait().unwrap().success());

    for fleet in ["cams", "sensors"] {
        assert!(first[&sent(fleet)] > 0.0 && second[&sent(fleet)] > first[&sent(fleet)], "{fleet}");
        assert!(second[&ok(fleet)] > first[&ok(fleet)]);
        assert!(second_latency[fleet] > first_latency[fleet]);
    }
    // The shard's own devices: 125 of the 250 cameras, 48 of the 97 sensors.
    assert_eq!(second[&key("fleetstorm_devices", "fleet=cams,shard=1/2")], 125.0);
    assert_eq!(second[&key("fleetstorm_devices", "fleet=sensors,shard=1/2")], 48.0);
    assert!(second.contains_key(&key("fleetstorm_in_flight", "shard=1/2")));
    // Devices online: the run's own count (fleet::Online) at the snapshot's
    // elapsed time, the one the progress line shows too.
    let s = scenario::parse(&scenario_text("builtin"), Format::Toml, "s.toml", "s").unwrap();
    let online = fleetstorm::run::online_devices(&s, 21, Some(Shard { index: 1, count: 2 }));
    for scrape in [&first, &second] {
        let elapsed = Duration::from_secs_f64(scrape[&key("fleetstorm_elapsed_seconds", "shard=1/2")]);
        for (i, fleet) in ["cams", "sensors"].iter().enumerate() {
            let shown = scrape[&key("fleetstorm_devices_online", &format!("fleet={fleet},shard=1/2"))];
            assert_eq!(shown, online[i].at(elapsed) as f64, "{fleet} at {elapsed:?}");
        }
    }
    // The Grafana dashboard asks only for metrics the run exposes.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(super::util::root().join("deploy/grafana/fleetstorm.json")).unwrap(),
    )
    .unwrap();
    let exposed: Vec<&str> = second.keys().map(|(m, _)| m.as_str()).chain(["fleetstorm_latency_seconds"]).collect();
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in
                expr.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| w.starts_with("fleetstorm_"))
            {
                let metric = word.trim_end_matches("_bucket");
                let known = exposed.contains(&metric) || metric == "fleetstorm_schedule_lag_seconds";
                assert!(known, "the dashboard asks for {metric}, which the run does not expose");
                asked += 1;
            }
        }
    }
    assert!(asked >= 10, "{asked}");
}

#[test]
fn a_synchronized_start_opens_the_pool_before_the_clock_starts() {
    let dir = TempDir::new("shard-preconnect");
    let text = scenario_text("builtin").replace("timeout = \"2s\"\n", "timeout = \"2s\"\nconnections = { pool = 8 }\n");
    let file = dir.write("s.toml", &text);
    let run = |extra: &[String]| {
        let out_json = dir.path("r.json").to_str().unwrap().to_string();
        let mut args: Vec<String> = ["run", &file, "--quiet", "--out", &out_json].map(String::from).to_vec();
        args.extend_from_slice(extra);
        let out = fleetstorm(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Report::load(std::path::Path::new(&out_json)).unwrap()
    };
    let plain = run(&[]);
    assert!(plain.totals.connects > 0, "connections opened as heartbeats need them");
    let out_json = dir.path("r.json").to_str().unwrap().to_string();
    let args: Vec<String> = ["run", &file, "--quiet", "--out", &out_json].map(String::from).to_vec();
    let out = super::util::run_started_together(&[args], || {}).remove(0);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let synchronized = Report::load(std::path::Path::new(&out_json)).unwrap();
    // Opened before the clock started, and counted: the pool's 8 carried
    // every heartbeat (it said 0 once).
    let opened = synchronized.totals.connects;
    assert!((1..=8).contains(&opened), "connections opened: {opened}, pool of 8");
    assert_eq!(synchronized.totals.ok, plain.totals.ok);
    assert!(synchronized.start.is_some(), "the start is recorded");
}
