//! `fleetstorm run` end to end on loopback: against the in-process
//! reference backend, every heartbeat accounted for on both sides; the
//! open model under a stall; connection modes; interruption; the report's
//! schema.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fleetstorm::report::Report;
use fleetstorm::scenario::{self, Format, Scenario};
use fleetstorm::server::{ActiveFaults, Faults, ServeConfig};
use tokio_util::sync::CancellationToken;

use super::util::{root, start_serve};

fn scenario(text: &str) -> Scenario {
    scenario::parse(text, Format::Toml, "test.toml", "test").unwrap_or_else(|e| panic!("{e}"))
}

pub fn schema_check(report: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("schemas/report-v3.schema.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(report).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "the report breaks its schema: {errors:#?}");
}

/// Samples serve's open connections every 100 ms until cancelled; returns the largest.
fn watch_connections(shared: Arc<fleetstorm::server::Shared>, stop: CancellationToken) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let most = AtomicU64::new(0);
        while !stop.is_cancelled() {
            most.fetch_max(shared.metrics.connections_open.load(Ordering::Relaxed), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        most.load(Ordering::Relaxed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_heartbeat_is_accounted_for_on_both_sides() {
    let _ = rlimit::increase_nofile_limit(10_000);
    let server = start_serve(ServeConfig::default()).await;
    let s = scenario(&format!(
        r#"
        seed = 11
        duration = "10s"
        [target]
        url = "{}"
        connections = "per-device"
        [[fleets]]
        name = "accounting"
        devices = 2000
        device_name = "acc-{{index:04}}"
        interval = "1s"
        "#,
        server.url()
    ));
    let stop = CancellationToken::new();
    let connections = watch_connections(server.shared.clone(), stop.clone());
    let report = fleetstorm::run::execute(&s, 11, CancellationToken::new(), |_| {}).await.unwrap();
    stop.cancel();
    let most_connections = connections.await.unwrap();
    let t = &report.totals;
    let accepted = server.shared.metrics.accepted.load(Ordering::Relaxed);
    // Accounted for, whatever else loads the machine: every slot sent or
    // missed (a device still busy when its next slot came), every one sent
    // answered, and serve's counts agree. How close the achieved rate came
    // to the offered 2,000/s needs spare CPU: that is benches/'s to measure.
    assert_eq!(t.scheduled, 20_000);
    assert_eq!(t.scheduled, t.sent + t.missed, "{}", report.summary());
    assert_eq!(t.failed, 0, "{}", report.summary());
    assert_eq!((accepted, t.ok), (t.sent, t.sent), "serve accepted = report ok = sent");
    assert_eq!(t.achieved_rate, t.sent as f64 / report.sending_seconds(), "achieved is over the time sending took");
    let mut by_devices = 0;
    for i in 0..2000 {
        let d = server.shared.registry.device("accounting", &format!("acc-{i:04}")).expect("every device seen");
        assert!((1..=11).contains(&d.heartbeats), "device {i}: {} heartbeats", d.heartbeats);
        by_devices += d.heartbeats;
    }
    assert_eq!(by_devices, accepted, "serve's devices add up to what it accepted");
    assert!(most_connections <= 2000, "per-device: a connection per device at most: {most_connections}");
    assert_eq!(t.connects, 2000, "each device opened its one connection");
    // Whether the generator kept up depends on what else loads the machine
    // (a timing matter for benchmarks); its verdict must follow what it
    // measured.
    let g = &report.generator;
    let kept_up = g.schedule_lag_p99_ms <= fleetstorm::report::KEPT_UP_LAG_P99_MS
        && g.busiest_thread.is_some_and(|d| d <= fleetstorm::report::KEPT_UP_DEMAND);
    assert_eq!(g.kept_up, kept_up, "{g:?}");
    schema_check(&serde_json::to_value(&report).unwrap());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_holds_at_most_its_connections() {
    let server = start_serve(ServeConfig::default()).await;
    let s = scenario(&format!(
        r#"
        duration = "4s"
        [target]
        url = "{}"
        connections = {{ pool = 8 }}
        [[fleets]]
        name = "pooled"
        devices = 500
        rate = "1000/s"
        "#,
        server.url()
    ));
    let stop = CancellationToken::new();
    let connections = watch_connections(server.shared.clone(), stop.clone());
    let report = fleetstorm::run::execute(&s, 1, CancellationToken::new(), |_| {}).await.unwrap();
    stop.cancel();
    let most = connections.await.unwrap();
    assert!((1..=8).contains(&most), "a pool of 8 holds at most 8 connections: {most}");
    assert_eq!(report.totals.ok, report.totals.sent);
    assert!(report.totals.ok >= 3900, "{}", report.summary());
    server.shutdown().await;
}

/// Coordinated omission: at a constant 500/s, serve holds every request for
/// 2 s during one second mid-run. Measured from the intended times, the
/// stall shows (p99 ≥ 1.5 s, and in the timeline); measured from the
/// actual sends over a pool of 20, it would not. The stall is set and
/// lifted from the run's own progress (its elapsed time), not from a
/// clock of the test's own that a busy machine would let drift from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_up_as_latency_not_as_a_lower_rate() {
    let server = start_serve(ServeConfig::default()).await;
    let s = scenario(&format!(
        r#"
        duration = "10s"
        [target]
        url = "{}"
        timeout = "5s"
        connections = {{ pool = 20 }}
        [[fleets]]
        name = "steady"
        devices = 500
        interval = "1s"
        "#,
        server.url()
    ));
    let faults = server.shared.clone();
    let set = |f: Faults| faults.faults.send_replace(Arc::new(ActiveFaults::new(f)));
    // When the run's clock passed 4 s and 5 s: the stall's start and end.
    let (mut began, mut ended) = (None, None);
    let report = fleetstorm::run::execute(&s, 5, CancellationToken::new(), |live| {
        if began.is_none() && live.elapsed >= Duration::from_secs(4) {
            set(Faults { latency: Some("2s".parse().unwrap()), ..Faults::default() });
            began = Some(live.elapsed);
        } else if began.is_some() && ended.is_none() && live.elapsed >= Duration::from_secs(5) {
            set(Faults::default());
            ended = Some(live.elapsed);
        }
    })
    .await
    .unwrap();
    let (began, ended) = (began.expect("the stall began"), ended.expect("the stall ended"));
    let t = &report.totals;
    assert_eq!(t.scheduled, t.sent + t.missed);
    assert_eq!(t.failed, 0, "{}", report.summary());
    assert!(t.latency_ms.p99 >= 1500.0, "latency p99 {} ms\n{}", t.latency_ms.p99, report.summary());
    // The heartbeats the stall held: at most the 20 connections' worth for
    // each 2 s of it, well under 1% of the run's.
    assert!(t.service_time_ms.p99 < 500.0, "service time p99 {} ms", t.service_time_ms.p99);
    // The seconds wholly before the stall are quiet; those from its start
    // to 2 s after its end show it.
    let quiet: Vec<f64> = report.timeline[1..began.as_secs() as usize].iter().map(|s| s.p99_ms).collect();
    let last = ((ended.as_secs() + 2) as usize).min(report.timeline.len() - 1);
    let stalled = report.timeline[began.as_secs() as usize..=last].iter().map(|s| s.p99_ms).fold(0.0, f64::max);
    assert!(quiet.iter().all(|p| *p < 1000.0), "before the stall (from {began:?}): {quiet:?}");
    assert!(stalled >= 1000.0, "the timeline shows the stall ({began:?} to {ended:?}): {:?}", report.timeline);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_delay_is_measured_as_such() {
    let faults = Faults { latency: Some("20ms".parse().unwrap()), ..Faults::default() };
    let server = start_serve(ServeConfig { faults, ..ServeConfig::default() }).await;
    let s = scenario(&format!(
        r#"
        duration = "5s"
        [target]
        url = "{}"
        [[fleets]]
        name = "delayed"
        devices = 200
        interval = "1s"
        "#,
        server.url()
    ));
    let report = fleetstorm::run::execute(&s, 5, CancellationToken::new(), |_| {}).await.unwrap();
    // The injected delay is a floor no measurement may go under (HDR keeps
    // three significant digits). Above it the bound is generous: CI runs
    // this beside other tests on two cores, where the median was seen at
    // 22.3 ms; the tight figure is benches/accuracy.sh's to measure. A
    // clock read at the wrong point or a unit slip is far outside it.
    let (latency, service) = (report.totals.latency_ms.p50, report.totals.service_time_ms.p50);
    assert!((19.9..=40.0).contains(&latency), "p50 {latency} ms for an injected 20 ms");
    assert!((19.9..=latency).contains(&service), "service time p50 {service} ms, latency p50 {latency} ms");
    server.shutdown().await;
}

/// At 4,000/s a worker's wake-ups (at most one per millisecond) also send
/// what falls due before the next one, up to 1 ms early: such a heartbeat
/// is timed from when it went, so its latency is never below its service
/// time (sent to answered), and no percentile of latency is below that of
/// service time. Timed from its intended time, a heartbeat sent early
/// would seem faster than the backend answered it: the median latency
/// about 0.4 ms under the median service time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_sent_ahead_of_their_time_are_timed_from_when_they_went() {
    let faults = Faults { latency: Some("20ms".parse().unwrap()), ..Faults::default() };
    let server = start_serve(ServeConfig { faults, ..ServeConfig::default() }).await;
    let s = scenario(&format!(
        r#"
        duration = "3s"
        [target]
        url = "{}"
        connections = {{ pool = 150 }}
        [[fleets]]
        name = "dense"
        devices = 4000
        interval = "1s"
        start = "staggered"
        "#,
        server.url()
    ));
    let report = fleetstorm::run::execute(&s, 5, CancellationToken::new(), |_| {}).await.unwrap();
    let (l, st) = (&report.totals.latency_ms, &report.totals.service_time_ms);
    assert!(report.totals.ok > 8_000, "{}", report.summary());
    for (q, latency, service) in [("p50", l.p50, st.p50), ("p75", l.p75, st.p75), ("p90", l.p90, st.p90)] {
        // Both in histograms of the same precision, printed to the microsecond.
        assert!(
            latency >= service - 0.001,
            "latency {q} {latency} ms below service time {q} {service} ms\n{}",
            report.summary()
        );
    }
    assert!(l.p50 >= 19.98, "latency p50 {} ms below serve's 20 ms", l.p50);
    server.shutdown().await;
}

#[test]
fn sigint_mid_run_writes_a_complete_interrupted_report() {
    signal_mid_run_writes_a_complete_interrupted_report("-INT");
}

#[test]
fn sigterm_mid_run_writes_a_complete_interrupted_report() {
    signal_mid_run_writes_a_complete_interrupted_report("-TERM");
}

fn signal_mid_run_writes_a_complete_interrupted_report(signal: &str) {
    let dir = std::env::temp_dir().join(format!("fleetstorm-signal{signal}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario_path = dir.join("long.toml");
    let report_path = dir.join("report.json");
    std::fs::write(
        &scenario_path,
        "duration = \"60s\"\n[[fleets]]\nname = \"long\"\ndevices = 200\ninterval = \"1s\"\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args([
            "run",
            scenario_path.to_str().unwrap(),
            "--out",
            report_path.to_str().unwrap(),
            "--quiet",
            "--seed",
            "1",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-run: once the run says (on its live metrics) that 400 heartbeats
    // succeeded, however long a busy machine took to get there.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let metrics = line.trim().strip_prefix("metrics: ").unwrap_or_else(|| panic!("the address line: {line:?}"));
    let asked = std::time::Instant::now();
    let ok_before = loop {
        let ok = succeeded(metrics);
        if ok >= 400.0 {
            break ok;
        }
        assert!(asked.elapsed() < Duration::from_secs(50), "400 heartbeats succeeded within 50 s of a 60 s run: {ok}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let signalled = std::time::Instant::now();
    std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let stopped = signalled.elapsed();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let stderr = line + &rest;
    // A second and the drain's timeout, with room for a busy machine; far
    // less than the 50 s the run had left.
    assert!(stopped < Duration::from_secs(15), "stopped {stopped:?} after the signal");
    assert_eq!(status.code(), Some(6), "an interrupted run exits 6: {status:?}\n{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    schema_check(&json);
    let report: Report = serde_json::from_value(json).unwrap();
    assert!(report.interrupted);
    assert!(report.duration_s < 55.0, "interrupted, not run to its end: {}", report.duration_s);
    let t = &report.totals;
    assert_eq!(t.scheduled, t.sent + t.missed);
    assert_eq!(t.sent, t.ok + t.failed + t.retry_pending);
    assert!(t.ok as f64 >= ok_before, "{t:?}: {ok_before} before the signal");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The heartbeats a run's live metrics (at `url`) say succeeded so far.
fn succeeded(url: &str) -> f64 {
    super::util::metrics_page(url)
        .lines()
        .filter(|l| l.starts_with("fleetstorm_heartbeats_completed_total{") && l.contains("outcome=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn the_quickstart_runs_and_reports() {
    let dir = std::env::temp_dir().join(format!("fleetstorm-quick-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report_path = dir.join("report.json");
    let out = super::util::fleetstorm(&[
        "run",
        "scenarios/quickstart.toml",
        "--duration",
        "3s",
        "--out",
        report_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8_lossy(&out.stdout);
    for needle in ["factory-east", "cold-chain-sensors", "TOTAL", "latency", "schedule lag"] {
        assert!(summary.contains(needle), "summary lacks {needle:?}:\n{summary}");
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    schema_check(&json);
    let report: Report = serde_json::from_value(json).unwrap();
    // The summary gives the generator's verdict, the report's. Whether it
    // kept up depends on spare CPU (CI saw schedule lag p99 29 ms beside
    // other tests): that is the benches' to measure, not this test's.
    let g = &report.generator;
    assert!(summary.contains(&format!("generator: {}", g.verdict)), "{summary}");
    assert_eq!(g.verdict.starts_with("kept up"), g.kept_up, "{g:?}");
    // The report names the fleetstorm that made it, as --version does.
    let version = super::util::fleetstorm(&["--version"]);
    let version = String::from_utf8_lossy(&version.stdout);
    assert_eq!(report.fleetstorm_version.as_deref(), version.trim().strip_prefix("fleetstorm "));
    assert!(
        report.fleetstorm_version.as_deref().is_some_and(|v| v.contains("commit")),
        "{:?}",
        report.fleetstorm_version
    );
    assert_eq!(report.fleets.len(), 2);
    assert_eq!(report.totals.ok, report.totals.sent);
    let backend = report.backend.as_ref().expect("the built-in backend's counts");
    assert_eq!(backend["accepted"].as_u64(), Some(report.totals.ok));
    // The histograms decode and agree with the counts.
    let latency = fleetstorm::stats::decode_histogram(&report.totals.histograms.latency).unwrap();
    assert_eq!(latency.len(), report.totals.ok + report.totals.missed);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_prints_the_plan_and_refuses_impossible_ones() {
    let out = super::util::fleetstorm(&["validate", "scenarios/quickstart.toml"]);
    assert_eq!(out.status.code(), Some(0));
    let plan = String::from_utf8_lossy(&out.stdout);
    for needle in ["factory-east", "2000", "200.0", "TOTAL", "233.3", "resources", "abort if error_rate > 20%"] {
        assert!(plan.contains(needle), "plan lacks {needle:?}:\n{plan}");
    }
    let out = super::util::fleetstorm(&["validate", "scenarios/quickstart.toml", "--devices-scale", "40"]);
    assert_eq!(out.status.code(), Some(2), "120,000 per-device connections cannot fit");
    assert!(String::from_utf8_lossy(&out.stderr).contains("connections"));
    let out = super::util::fleetstorm(&["run", "scenarios/quickstart.toml", "--target", "ftp://example.invalid"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://host:port"));
}
