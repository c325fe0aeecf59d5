//! Fleet dynamics end to end against serve: retries against injected
//! 503s, counted as serve counts them; an outage's gaps as serve and
//! fleetstorm's freshness see them; a thundering herd's spike and recovery
//! in the timeline; events refused where they are written; the schedule
//! printed by `validate --schedule`, the same every time; a model rollout's
//! deployment results, accepted by serve.

use std::collections::BTreeMap;

use fleetstorm::report::Report;
use fleetstorm::scenario::{self, Format, Scenario};
use fleetstorm::server::{Faults, ServeConfig};
use tokio_util::sync::CancellationToken;

use super::run::schema_check;
use super::util::{TempDir, client, fleetstorm, get_json, post, spawn_serve, start_serve};

fn scenario(text: &str) -> Scenario {
    scenario::parse(text, Format::Toml, "test.toml", "test").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_against_injected_503s_add_up_to_what_serve_received() {
    // serve answers its injected 503s with `Retry-After: 1`.
    let faults = Faults { error_rate: 0.3, error_status: Some(503), ..Faults::default() };
    let server = start_serve(ServeConfig { faults, ..ServeConfig::default() }).await;
    let s = scenario(&format!(
        r#"
        seed = 8
        duration = "6s"
        [target]
        url = "{}"
        connections = {{ pool = 16 }}
        [[fleets]]
        name = "retrying"
        devices = 200
        interval = "2s"
        retry = {{ max = 3, backoff = "exponential", base = "100ms", cap = "1s", jitter = "full" }}
        "#,
        server.url()
    ));
    let report = fleetstorm::run::execute(&s, 8, CancellationToken::new(), |_| {}).await.unwrap();
    let stats = server.shared.stats_json();
    server.shutdown().await;
    schema_check(&serde_json::to_value(&report).unwrap());
    let t = &report.totals;
    let received: u64 = stats["responses"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(t.sent + t.retries, received, "every attempt reached serve: {stats}");
    assert_eq!(stats["accepted"].as_u64(), Some(t.ok));
    // Each failed attempt was either retried, a heartbeat's final failure,
    // or the last attempt of a heartbeat whose retry was still due at the end.
    assert_eq!(stats["injected_errors"].as_u64(), Some(t.retries + t.failed + t.retry_pending), "{t:?}\n{stats}");
    // Those pending at the end are out of the error rate.
    assert_eq!(report.totals.error_rate(), t.failed as f64 / (t.ok + t.failed) as f64);
    // 30% of attempts fail: up to 0.3 + 0.09 + 0.027 retries per heartbeat
    // (fewer: retries still waiting when the run ends are not sent), and
    // only the 0.3^4 ≈ 0.8% that fail four times stay failed.
    let per_heartbeat = t.retries as f64 / t.sent as f64;
    assert!((0.15..0.5).contains(&per_heartbeat), "{per_heartbeat} retries per heartbeat");
    assert!(t.retries <= 3 * t.sent, "bounded by max = 3");
    assert!(t.recovered > 0 && t.recovered <= t.ok);
    // Retry-After: 1 is honoured over the 100 ms base: no retry in the first second.
    assert_eq!(report.timeline[0].retries, 0, "{:?}", &report.timeline[..2]);
    assert!(report.timeline[1..].iter().map(|s| s.retries).sum::<u64>() == t.retries);
    assert_eq!(t.scheduled, t.sent + t.missed);
    assert_eq!(t.sent, t.ok + t.failed + t.retry_pending);
    let summary = report.summary();
    assert!(summary.contains(&format!("retries: {}", t.retries)), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_shows_the_same_gaps_in_serve_and_in_freshness() {
    let server = start_serve(ServeConfig::default()).await;
    let s = scenario(&format!(
        r#"
        seed = 21
        duration = "32s"
        [target]
        url = "{}"
        [[fleets]]
        name = "dark"
        devices = 100
        device_name = "dark-{{index:03}}"
        interval = "2s"
        [[fleets.events]]
        at = "5s"
        kind = "outage"
        share = "50%"
        duration = "20s"
        "#,
        server.url()
    ));
    let report = fleetstorm::run::execute(&s, 21, CancellationToken::new(), |_| {}).await.unwrap();
    let c = client();
    let mut serve_gaps: Vec<f64> = Vec::new();
    for i in 0..100 {
        let device = get_json(&c, &format!("{}/devices/dark/dark-{i:03}", server.url())).await;
        serve_gaps.push(device["max_gap_ms"].as_f64().unwrap());
    }
    server.shutdown().await;
    serve_gaps.sort_by(f64::total_cmp);
    let fresh = report.fleets[0].freshness.as_ref().unwrap();
    assert_eq!(fresh.devices, 100);
    assert_eq!(fresh.stale_devices, 50, "the stale devices are the outage's share: {fresh:?}");
    // The two views agree within one interval (2 s), quantile by quantile.
    let h = fleetstorm::stats::decode_histogram(&fresh.histogram).unwrap();
    for q in [0.1, 0.25, 0.45, 0.55, 0.75, 0.9, 1.0] {
        let ours = h.value_at_quantile(q) as f64 / 1000.0;
        let theirs = serve_gaps[((q * 100.0) as usize).min(99)];
        assert!((ours - theirs).abs() <= 2000.0, "q{q}: freshness {ours} ms, serve {theirs} ms");
    }
    assert!(serve_gaps[49] < 4000.0 && serve_gaps[50] > 19_000.0, "half short, half the outage: {serve_gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_rollout_reports_deployment_results_that_serve_accepts() {
    let server = start_serve(ServeConfig::default()).await;
    let text = format!(
        r#"
        seed = 4
        duration = "4s"
        [target]
        url = "{}"
        connections = {{ pool = 8 }}
        [[fleets]]
        name = "deploying"
        devices = 200
        device_name = "dep-{{index:03}}"
        interval = "1s"
        [[fleets.models]]
        name = "detector"
        versions = {{ "3.1" = 1.0 }}
        [[fleets.events]]
        at = "1s"
        kind = "rollout"
        share = "50%"
        over = "1s"
        model = "detector"
        version = "3.2"
        "#,
        server.url()
    );
    let s = scenario(&text);

    // A run: every heartbeat, deployment results included, is accepted,
    // and serve sees the rollout's half of the fleet on the new version.
    let report = fleetstorm::run::execute(&s, 4, CancellationToken::new(), |_| {}).await.unwrap();
    let stats = server.shared.stats_json();
    assert_eq!(stats["rejected"].as_u64(), Some(0), "{stats}");
    assert_eq!(stats["accepted"].as_u64(), Some(report.totals.ok), "{stats}");
    assert!(report.totals.ok > 0);
    let c = client();
    let mut on_new = 0;
    for i in 0..200 {
        let device = get_json(&c, &format!("{}/devices/deploying/dep-{i:03}", server.url())).await;
        on_new += usize::from(device["models"][0]["version"] == "3.2");
    }
    assert_eq!(on_new, 100);

    // What those devices sent, as `sample` shows it: a deployment result
    // from each device the rollout reached, each one accepted.
    let mut samples = Vec::new();
    let opts = fleetstorm::sample::SampleOptions { count: 200 * 4, fleet: None, seed: None };
    fleetstorm::sample::write_samples(&s, &opts, 4, &mut samples).unwrap();
    let mut deployments = 0;
    for line in samples.split(|&b| b == b'\n').filter(|l| l.windows(16).any(|w| w == b"DeploymentResult")) {
        let (status, _, body) = post(&c, &format!("{}/SendHeartbeat", server.url()), line.to_vec()).await;
        assert_eq!(status.as_u16(), 200, "{}\n{}", String::from_utf8_lossy(&body), String::from_utf8_lossy(line));
        deployments += 1;
    }
    server.shutdown().await;
    assert_eq!(deployments, 100, "half the fleet, once each");
}

#[test]
fn a_thundering_herd_spikes_latency_then_recovers() {
    let (mut serve, url) = spawn_serve(&["--workers", "2", "--service-time", "2ms"]);
    let dir = TempDir::new("herd");
    let json = dir.path("herd.json");
    let out = fleetstorm(&[
        "run",
        "scenarios/thundering-herd.toml",
        "--target",
        &url,
        "--quiet",
        "--out",
        json.to_str().unwrap(),
    ]);
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = Report::load(&json).unwrap();
    let p99 = |from: usize, to: usize| report.timeline[from..to].iter().map(|s| s.p99_ms).fold(0.0, f64::max);
    let offered = |second: usize| report.timeline[second].offered;
    // Steady state, the outage (nothing offered by the silenced fleet), the herd at 13 s.
    assert!((450..=750).contains(&offered(2)), "{}", offered(2));
    assert_eq!(offered(8), 0, "the whole fleet is silent");
    assert!(offered(13) >= 3000, "every device comes back at 13 s: {}", offered(13));
    let (before, spike, after) = (p99(1, 5), p99(13, 15), p99(24, 30));
    // serve's queue, timed by serve, makes the spike: seconds of backlog
    // whatever else loads the machine. Before and after it, the p99 is
    // what the generator and serve add on their own, which a busy machine
    // raises (tens of ms, a hundred or two); not the spike's second more.
    assert!(spike > 1000.0, "3,000 heartbeats at once on 1,000/s of capacity queue for seconds: {spike} ms");
    assert!(spike > before + 1000.0, "spike {spike} ms vs {before} ms before");
    assert!(after < spike - 1000.0, "recovered: p99 {after} ms after vs {spike} ms in the spike");
    assert_eq!(report.totals.failed, 0, "{:?}", report.totals.errors);
}

#[test]
fn events_are_refused_where_they_are_written() {
    let base = "duration = \"2m\"\n[[fleets]]\nname = \"f\"\ndevices = 10\n";
    let cases = [
        ("[[fleets.events]]\nat = \"1m\"\nkind = \"meltdown\"\n", 5, "kind is \"meltdown\""),
        ("[[fleets.events]]\nat = \"1m\"\nkind = \"outage\"\n", 5, "give its duration"),
        (
            "[[fleets.events]]\nat = \"1m\"\nkind = \"outage\"\nduration = \"10s\"\nrecover = \"ramp\"\n",
            5,
            "needs recover_over",
        ),
        ("[[fleets.events]]\nat = \"1m\"\nkind = \"surge\"\nduration = \"10s\"\n", 5, "give its interval"),
        (
            "[[fleets.events]]\nat = \"1m\"\nkind = \"outage\"\nshare = \"0%\"\nduration = \"1s\"\n",
            5,
            "touches no device",
        ),
        ("[[fleets.events]]\nat = \"1m\"\nkind = \"rollout\"\n", 5, "give agent_version"),
        ("[[fleets.events]]\nat = \"1m\"\nkind = \"rollout\"\nmodel = \"m\"\nversion = \"2\"\n", 2, "does not run"),
        (
            "[[fleets.events]]\nat = \"1m\"\nkind = \"surge\"\nduration = \"1s\"\ninterval = \"1s\"\ndowntime = \"1s\"\n",
            5,
            "downtime does not apply",
        ),
        ("retry = { max = 30 }\n", 5, "from 1 to 20"),
        // Checks of the events together: placed at the event at fault.
        ("[[fleets.events]]\nat = \"5m\"\nkind = \"restart\"\n", 5, "starts at 5m, but the run lasts 2m"),
        (
            "[[fleets.events]]\nat = \"10s\"\nkind = \"outage\"\nduration = \"30s\"\n[[fleets.events]]\nat = \"20s\"\nkind = \"restart\"\n",
            9,
            "events[1] (at 20s: 100% restart over 0s, each down 10s) overlaps events[0]",
        ),
    ];
    for (events, line, message) in cases {
        let text = format!("{base}{events}");
        let e = scenario::parse(&text, Format::Toml, "e.toml", "e").expect_err(events);
        assert!(e.message.contains(message), "{events}: {e}");
        assert_eq!(e.line, Some(line), "{events}: {e}");
    }
}

#[test]
fn validate_prints_the_same_schedule_every_time() {
    let args = ["validate", "scenarios/outage.toml", "--schedule", "5000"];
    let (a, b) = (fleetstorm(&args), fleetstorm(&args));
    assert_eq!(a.status.code(), Some(0), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout, "same scenario and seed, same schedule");
    let text = String::from_utf8_lossy(&a.stdout);
    let sends: Vec<(f64, &str)> = text
        .lines()
        .skip_while(|l| !l.starts_with("schedule"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next().unwrap().parse().unwrap(), parts.nth(1).unwrap())
        })
        .collect();
    assert_eq!(sends.len(), 5000);
    assert!(sends.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
    // 3,000 devices at 10 s: the first 5,000 sends are each device once, then 2,000 again.
    let mut per_device: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, d) in &sends {
        *per_device.entry(d).or_default() += 1;
    }
    assert_eq!(per_device.len(), 3000);
    let other = fleetstorm(&["validate", "scenarios/outage.toml", "--schedule", "5000", "--seed", "12"]);
    assert_ne!(other.stdout, a.stdout, "another seed, another schedule");
}
