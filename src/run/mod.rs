//! `fleetstorm run` and `fleetstorm validate`: from a checked scenario to a
//! [`Plan`] (its fleets as the engine runs them, built once: `plan`, from
//! `fleets`) handed to the plan's text, the live outputs and the run; the
//! target opened (`target`: resources checked once (`resources`), the
//! built-in backend started, the transport built); the engine run over the
//! target's transports ([`run_fleets`], which knows no protocol); and a
//! report built whole; live progress (`progress`).

mod error;
mod fleets;
mod plan;
mod progress;
mod resources;
mod target;

pub use error::{RunError, RunErrorKind};

pub use plan::{
    Counted, Expected, Plan, PlannedSend, STAND_IN_SEED, WALK_BUDGET, expected_heartbeats, plan_text, plan_text_within,
    schedule_preview,
};
pub use progress::{Progress, online_devices};
pub use resources::{ConnectionBudget, Sources, check_resources, connections_needed, plan_sources, predicted_ip};
pub use target::{OpenTarget, OpenTransport, builtin_profiles, endpoint_options};

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::{self, EngineSettings, Live, RunOutput};
use crate::gate::ThresholdResult;
use crate::report::{Aborted, Report, RunFacts, Stats, Stopped};
use crate::scenario::{ScaleError, Scenario, TargetUrl};
use crate::stats::Recorder;
use crate::transport::Transport;
use crate::transport::http::settings::HttpVersion;
use crate::transport::settings::ConnectionMode;

/// Command-line overrides of a scenario.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub target: Option<String>,
    pub duration: Option<Duration>,
    pub seed: Option<u64>,
    /// Multiplies every fleet's rate (divides every interval).
    pub rate_scale: Option<f64>,
    /// Multiplies every fleet's device count.
    pub devices_scale: Option<f64>,
}

/// Applies command-line overrides; the result is checked as the file is.
pub fn apply_overrides(mut s: Scenario, o: &Overrides) -> Result<Scenario, RunError> {
    if let Some(t) = &o.target {
        let (url, path) = TargetUrl::split(t).map_err(|e| RunError::Flag(format!("--target: {e}")))?;
        s.target.url = url;
        // A URL with a path names the heartbeat's path too.
        if let Some(path) = path {
            s.target.path = path;
        }
    }
    if let Some(d) = o.duration {
        if d.is_zero() {
            return Err(RunError::Flag("--duration must be above 0".into()));
        }
        s.duration = d;
    }
    if o.seed.is_some() {
        s.seed = o.seed;
    }
    for (flag, v) in [("--rate-scale", o.rate_scale), ("--devices-scale", o.devices_scale)] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            return Err(RunError::Flag(format!("{flag} must be a number above 0, not {v}")));
        }
    }
    for f in &mut s.fleets {
        let name = f.name().to_string();
        if let Some(scale) = o.devices_scale {
            let before = f.devices;
            f.set_devices(f.scaled_devices(scale)).map_err(|e| RunError::Scale {
                message: match e {
                    ScaleError::Devices(_) => {
                        format!("--devices-scale {scale}: fleet {name:?} ({before} devices): {e}")
                    }
                    _ => format!("--devices-scale {scale}: fleet {name:?}: {e}"),
                },
                source: e,
            })?;
        }
        if let Some(scale) = o.rate_scale {
            f.scale_rate(scale).map_err(|e| RunError::Scale {
                message: match e {
                    ScaleError::IntervalTooShort { .. } => {
                        format!("--rate-scale {scale}: fleet {name:?}'s interval would be below 1ms")
                    }
                    _ => format!("--rate-scale {scale}: fleet {name:?}: {e}"),
                },
                source: e,
            })?;
        }
    }
    s.scaled =
        crate::scenario::Scaled { devices: o.devices_scale.or(s.scaled.devices), rate: o.rate_scale.or(s.scaled.rate) };
    Ok(s)
}

/// What a run should keep beyond its report.
#[derive(Debug, Clone, Default)]
pub struct ExecuteOptions {
    /// Keep every second's latency histogram (for `--hlog`).
    pub keep_second_histograms: bool,
    /// Generator threads; by default [`default_threads`].
    pub threads: Option<usize>,
    /// Run this long before measuring: the report's totals cover the rest
    /// of the run (its timeline, all of it).
    pub warmup: Duration,
    /// Start the clock at this instant, once every device is built; fail
    /// with [`RunError::NotReady`] if it passes first.
    pub start_at: Option<std::time::SystemTime>,
    /// Cancelled to give up at once (a second Ctrl-C): the report is of
    /// what was merged so far, marked interrupted.
    pub abandon: Option<CancellationToken>,
    /// Give the progress callback the devices' freshness so far, about
    /// once a second ([`Live::freshness`]; a walk over every device).
    pub live_freshness: bool,
}

/// Heartbeats per second one generator thread is given, over kept-alive
/// plain HTTP/1.1 connections (the lean client, [`crate::transport::http::h1`]).
/// Threads cost wake-ups and hand-offs, and against a target on the same
/// small machine they take its cores: with nginx on the same two cores,
/// one thread kept up with 80,000/s (about 9 µs of CPU per heartbeat) where
/// two fell behind at 90,000/s.
const RATE_PER_THREAD: f64 = 75_000.0;

/// The same over hyper's connections (TLS, HTTP/2) or with SigV4 signing:
/// what these were given before the lean client, half of the 25,000/s a
/// thread then carried over hyper's plain HTTP/1.1.
const RATE_PER_THREAD_HYPER: f64 = 12_500.0;

/// How many generator threads a scenario gets unless told: enough for its
/// offered rate (75,000/s per thread, less per thread when every heartbeat
/// costs more: TLS, HTTP/2, a new connection each), at most one per core.
/// Fleets with events (surges, synchronized returns) get every core, since
/// their peaks are far above their average. A target on this machine keeps
/// a core for itself: generator threads that take its cores slow it down
/// and fall behind themselves.
pub fn default_threads(scenario: &Scenario) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cores = if scenario.target.url.is_local() { (cores - 1).max(1) } else { cores };
    if scenario.fleets.iter().any(|f| !f.events.is_empty()) {
        return cores;
    }
    let t = &scenario.target;
    let mut per_thread = RATE_PER_THREAD;
    if matches!(t.url, TargetUrl::Http { tls: true, .. }) || t.http == HttpVersion::Http2 || t.sigv4.is_some() {
        per_thread = RATE_PER_THREAD_HYPER;
    }
    if t.connections == ConnectionMode::NewPerRequest {
        per_thread /= 10.0;
    }
    let rate: f64 = scenario.fleets.iter().map(|f| f.schedule.rate(f.devices)).sum();
    ((rate / per_thread).ceil() as usize).clamp(1, cores)
}

/// A finished run: its report, and what else was asked for.
#[derive(Debug)]
pub struct Executed {
    pub report: Report,
    /// Each timeline entry's (start second, width, latency histogram
    /// (V2 + DEFLATE)), when kept.
    pub second_histograms: Vec<(u64, u64, Option<Vec<u8>>)>,
    /// What each fleet recorded, the report's totals are made of: for
    /// live outputs to end on the report's figures.
    pub fleets: Vec<Recorder>,
}

/// Runs a checked scenario and builds its report, with its thresholds
/// checked. `cancel` stops it early (Ctrl-C); an abort threshold that
/// fires cancels it too. `progress` is called a few times a second.
pub async fn execute(
    scenario: &Scenario,
    seed: u64,
    cancel: CancellationToken,
    progress: impl FnMut(&Live<'_>),
) -> Result<Report, RunError> {
    let plan = Plan::new(scenario, seed, None);
    Ok(execute_with(&plan, cancel, ExecuteOptions::default(), progress).await?.report)
}

/// Runs `plan` (its fleets as built once) and builds its report, keeping
/// what `options` asks for.
pub async fn execute_with(
    plan: &Plan<'_>,
    cancel: CancellationToken,
    options: ExecuteOptions,
    progress: impl FnMut(&Live<'_>),
) -> Result<Executed, RunError> {
    let mut target = OpenTarget::open(plan.scenario, plan.shard).await?;
    // One protocol per run today: the engine runs monomorphic over it.
    let ran = match &target.transport {
        OpenTransport::Http(t) => run_fleets(plan, cancel, &options, vec![t.clone()], progress).await,
        OpenTransport::Mqtt(t) => run_fleets(plan, cancel, &options, vec![t.clone()], progress).await,
    };
    let abandoned = options.abandon.as_ref().is_some_and(CancellationToken::is_cancelled);
    let delivery = if abandoned { Vec::new() } else { target.observed(&ran.output, Some(options.warmup)).await };
    let facts = RunFacts { delivery, ..target.close(abandoned).await };
    finish(plan, &options, ran, facts)
}

/// What the engine's run of a scenario gave: its output, and what the
/// abort watch saw.
pub struct Ran {
    pub output: RunOutput,
    /// The abort threshold that fired, and its result then.
    pub fired: Option<(Aborted, ThresholdResult)>,
    /// Stopped for want of a success.
    pub stopped: Option<Stopped>,
}

/// The engine settings a plan's run gets.
fn engine_settings(plan: &Plan<'_>, options: &ExecuteOptions) -> EngineSettings {
    let scenario = plan.scenario;
    let t = &scenario.target;
    EngineSettings {
        duration: scenario.duration,
        connections: t.connections,
        workers: options.threads.unwrap_or_else(|| default_threads(scenario)),
        seed: plan.seed,
        precise_timer: true,
        thread_per_worker: true,
        keep_second_histograms: options.keep_second_histograms,
        cohorts: scenario.breakdown.contains(&crate::scenario::Breakdown::AgentVersion),
        measure_after: options.warmup,
        shard: plan.shard,
        start_at: options.start_at,
        drain: t.timeout,
        abandon: options.abandon.clone(),
        live_freshness: options.live_freshness,
    }
}

/// Runs `plan`'s fleets over `transports` (one per target: every fleet's
/// is the first today), watching its abort thresholds. Generic over the
/// transport: nothing here knows a protocol.
pub async fn run_fleets<T: Transport>(
    plan: &Plan<'_>,
    cancel: CancellationToken,
    options: &ExecuteOptions,
    transports: Vec<std::sync::Arc<T>>,
    progress: impl FnMut(&Live<'_>),
) -> Ran {
    run_fleets_with(plan, cancel, transports, engine_settings(plan, options), progress).await
}

/// [`run_fleets`] with the engine's settings given (tests run it under a
/// paused clock).
async fn run_fleets_with<T: Transport>(
    plan: &Plan<'_>,
    cancel: CancellationToken,
    transports: Vec<std::sync::Arc<T>>,
    settings: EngineSettings,
    mut progress: impl FnMut(&Live<'_>),
) -> Ran {
    // The run's own: stopping it (an abort threshold, nothing succeeding)
    // does not cancel whoever runs it (a capacity search goes on).
    let cancel = cancel.child_token();
    let mut watch = AbortWatch::new(plan.scenario, cancel.clone());
    let output = engine::run(transports, plan.fleets().clone(), settings, cancel, |live| {
        watch.observe(live);
        progress(live);
    })
    .await;
    Ran { output, fired: watch.fired, stopped: watch.stopped }
}

/// The report of a run, built whole from what it recorded and `facts`
/// (the start, the shard and the abort watch's filled in here).
fn finish(plan: &Plan<'_>, options: &ExecuteOptions, ran: Ran, facts: RunFacts) -> Result<Executed, RunError> {
    let (scenario, seed) = (plan.scenario, plan.seed);
    let Ran { mut output, fired, stopped } = ran;
    if let Some(late) = output.not_ready_by {
        return Err(RunError::NotReady { late });
    }
    let facts = RunFacts {
        start: options.start_at.zip(output.start_lag).map(|(at, lag)| crate::report::StartInfo {
            at: humantime::format_rfc3339_millis(at).to_string(),
            lag_ms: lag.as_secs_f64() * 1000.0,
        }),
        shard: plan.shard.map(|s| crate::report::ShardInfo {
            index: s.index,
            count: s.count,
            scenario_hash: scenario.hash(seed),
        }),
        aborted: fired,
        stopped,
        ..facts
    };
    let report = Report::new(scenario, seed, &output, facts);
    let second_histograms = output.timeline.iter_mut().map(|s| (s.start_s, s.width_s, s.histogram.take())).collect();
    Ok(Executed { report, second_histograms, fleets: std::mem::take(&mut output.fleets) })
}

/// Checks abort thresholds during a run, about once a second after the
/// grace period, and cancels the run when one fires; and cancels it when,
/// `stop_when_nothing_succeeds` into it, heartbeats have failed and none
/// has succeeded.
struct AbortWatch<'s> {
    scenario: &'s Scenario,
    cancel: CancellationToken,
    last_check: Option<Duration>,
    fired: Option<(Aborted, ThresholdResult)>,
    stopped: Option<Stopped>,
    /// A heartbeat has succeeded: the run is not stopped for want of one.
    succeeded: bool,
}

impl<'s> AbortWatch<'s> {
    fn new(scenario: &'s Scenario, cancel: CancellationToken) -> Self {
        AbortWatch { scenario, cancel, last_check: None, fired: None, stopped: None, succeeded: false }
    }

    /// Stops the run when, `stop_when_nothing_succeeds` into it, heartbeats
    /// have failed and not one has succeeded, warm-up included (the
    /// timeline counts it, the totals do not). The live timeline holds the
    /// last hour: a success is remembered once seen.
    fn stop_if_nothing_succeeds(&mut self, live: &Live<'_>) {
        let Some(after) = self.scenario.thresholds.stop_when_nothing_succeeds else {
            return;
        };
        if self.succeeded || self.stopped.is_some() || self.fired.is_some() {
            return;
        }
        let ok =
            live.timeline.iter().map(|s| s.ok).sum::<u64>() + live.fleets.iter().map(|f| f.counters.ok()).sum::<u64>();
        if ok > 0 {
            self.succeeded = true;
            return;
        }
        // Before the grace, or past the end (draining): nothing to stop.
        if live.elapsed < after || live.elapsed >= live.duration {
            return;
        }
        if live.timeline.iter().all(|s| s.failed == 0) {
            return; // nothing has ended yet: no answer is not a failure
        }
        self.stopped = Some(Stopped { after_s: after.as_secs_f64(), at_s: live.elapsed.as_secs_f64() });
        self.cancel.cancel();
    }

    fn observe(&mut self, live: &Live<'_>) {
        self.stop_if_nothing_succeeds(live);
        let t = &self.scenario.thresholds;
        if t.abort.is_empty() || self.fired.is_some() || live.elapsed < t.abort_grace {
            return;
        }
        if self.last_check.is_some_and(|at| live.elapsed < at + Duration::from_secs(1)) {
            return;
        }
        self.last_check = Some(live.elapsed);
        let seconds = live.elapsed.min(live.duration).as_secs_f64();
        let mut all = Recorder::default();
        live.fleets.iter().for_each(|f| all.add(f));
        for threshold in &t.abort {
            let stats = match &threshold.metric.fleet {
                None => Stats::live(None, &all, seconds),
                Some(name) => match self.scenario.fleets.iter().position(|f| f.name() == name) {
                    Some(i) => Stats::live(Some(name.clone()), &live.fleets[i], seconds),
                    None => continue,
                },
            };
            let result = stats.check(threshold, true);
            if !result.ok && self.stopped.is_none() {
                let aborted =
                    Aborted { expr: result.expr.clone(), actual_text: result.actual_text.clone(), at_s: seconds };
                self.fired = Some((aborted, result));
                self.cancel.cancel();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{self, Format};

    fn threads(url: &str, devices: u64, extra: &str) -> usize {
        let text = format!(
            "[target]\nurl = \"{url}\"\n{extra}\n[[fleets]]\nname = \"f\"\ndevices = {devices}\ninterval = \"1s\"\n"
        );
        default_threads(&scenario::parse(&text, Format::Toml, "t.toml", "t").unwrap())
    }

    #[test]
    fn threads_follow_the_rate_and_leave_a_local_target_a_core() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let local_cores = (cores - 1).max(1);
        // One thread carries 75,000/s on the lean client.
        assert_eq!(threads("http://10.0.0.1:80", 70_000, ""), 1);
        assert_eq!(threads("http://10.0.0.1:80", 1_000_000, ""), cores.min(14));
        // A target on this machine keeps a core.
        assert_eq!(threads("http://127.0.0.1:80", 1_000_000, ""), local_cores);
        assert_eq!(threads("builtin", 1_000_000, ""), local_cores);
        // TLS costs more per heartbeat: fewer heartbeats per thread.
        assert_eq!(threads("https://10.0.0.1:443", 20_000, ""), 2.min(cores));
        assert_eq!(threads("http://10.0.0.1:80", 20_000, "connections = \"new-per-request\""), 3.min(cores));
    }

    /// The protocol seam end to end: a run over a fake session transport
    /// shaped like MQTT (sessions opened with each device's identity,
    /// acknowledgements without a code arriving after 50 ms or, for one
    /// message, too late; keep-alives between heartbeats; one session
    /// closed by the far end and reopened) comes out right in the report,
    /// its gates and the live metrics, with nothing protocol-specific
    /// outside the fake.
    #[tokio::test(start_paused = true)]
    async fn a_session_transport_s_run_comes_out_right_in_its_report_gates_and_live_metrics() {
        use crate::live_metrics::{LiveMetrics, Value};
        use crate::transport::testing::{Fake, SessionScript};
        let text = r#"
name = "sessions"
duration = "60s"
[thresholds]
"sent" = "== 24"
"errors.timeout" = "== 1"
"error_rate" = "< 5%"
"latency.p50" = "< 60ms"
"missed" = "== 0"
"session_open.p99" = "< 30ms"
[[fleets]]
name = "f"
devices = 4
interval = "10s"
device_name = "d-{index}"
"#;
        let scenario = scenario::parse(text, Format::Toml, "s.toml", "s").unwrap();
        let script = SessionScript {
            keepalive: Duration::from_secs(4),
            ack: |device, n| {
                if (device, n) == ("d-0", 2) { Duration::from_secs(12) } else { Duration::from_millis(50) }
            },
            close: |device, n| ((device, n) == ("d-1", 1)).then_some(Duration::from_secs(15)),
            ..SessionScript::default()
        };
        // Opening a session takes 20 ms.
        let fake = Fake { connect_delay: Duration::from_millis(20), ..Fake::with_sessions(script) };
        let options = ExecuteOptions { threads: Some(2), ..ExecuteOptions::default() };
        let plan = Plan::new(&scenario, 7, None);
        // Paused clock: the workers on this runtime, tokio's timer.
        let settings =
            EngineSettings { precise_timer: false, thread_per_worker: false, ..engine_settings(&plan, &options) };
        let live = LiveMetrics::new(&scenario, None, plan.online());
        let ran =
            run_fleets_with(&plan, CancellationToken::new(), vec![std::sync::Arc::new(fake.clone())], settings, |l| {
                live.update(l)
            })
            .await;
        let facts = RunFacts { target: "fake".into(), first_errors: fake.first_errors(), ..RunFacts::default() };
        let executed = finish(&plan, &options, ran, facts).unwrap();
        live.settle(&executed.fleets, scenario.duration);
        let report = executed.report;

        // The report: every heartbeat sent, one failed by its late
        // acknowledgement, classed as a timeout; no code (none was given).
        let t = &report.totals;
        assert_eq!((t.scheduled, t.sent, t.ok, t.failed, t.missed), (24, 24, 23, 1, 0), "{t:?}");
        assert_eq!(t.errors.get("timeout"), Some(&1), "{:?}", t.errors);
        assert_eq!(t.errors.values().sum::<u64>(), 1);
        assert!(t.codes.is_empty(), "{:?}", t.codes);
        assert_eq!(t.connects, 5, "four sessions and d-1's second");
        let opening = t.session_open_ms.as_ref().expect("sessions' opening, timed");
        assert!((19.9..=20.1).contains(&opening.p50) && (19.9..=20.1).contains(&opening.max), "{opening:?}");
        assert!(report.summary().contains("sessions opened: 5; opening (connect to acceptance) p50 20.0"));
        // From the intended time: 50 ms acknowledgements.
        assert!((49.0..=52.0).contains(&t.latency_ms.p50), "{:?}", t.latency_ms);
        assert_eq!(report.fleets[0].sent, 24);
        // What the idle sessions did: the fake's keep-alives, d-0's late
        // acknowledgement arriving unasked, d-1's session closed.
        let keepalives: usize = fake.opened_sessions().values().map(|s| s.keepalives.len()).sum();
        let closed_by = crate::stats::ClosedBy { disconnect: 1, ..Default::default() };
        let sessions = crate::stats::SessionCounts {
            keepalives: keepalives as u64,
            inbound: 1,
            closed: 1,
            closed_by,
            ..Default::default()
        };
        assert!(keepalives >= 4 * 2 * 5 - 2, "{keepalives}");
        assert_eq!((t.sessions.clone(), report.fleets[0].sessions.clone()), (Some(sessions.clone()), Some(sessions)));
        assert!(report.summary().contains(&format!(
            "idle sessions: keep-alives {keepalives}, inbound messages 1, closed by the far end 1 (DISCONNECT 1)"
        )));
        // Its gates: each threshold judged on those figures.
        assert_eq!(report.thresholds.len(), 6);
        for r in &report.thresholds {
            assert!(r.ok, "{r:?}");
        }
        // The live metrics end on the report's figures.
        let families = live.families();
        let number = |name: &str, outcome: Option<&str>| {
            let family = families.iter().find(|f| f.name == name).unwrap();
            let point = family
                .points
                .iter()
                .find(|p| outcome.is_none_or(|o| p.labels.iter().any(|(k, v)| *k == "outcome" && v == o)))
                .unwrap();
            match point.value {
                Value::Number(n) => n,
                Value::Histogram(_) => panic!("{name} is a histogram"),
            }
        };
        assert_eq!(number("fleetstorm_heartbeats_sent_total", None), 24.0);
        assert_eq!(number("fleetstorm_heartbeats_completed_total", Some("ok")), 23.0);
        assert_eq!(number("fleetstorm_heartbeats_completed_total", Some("timeout")), 1.0);
        let event = |name: &str| {
            let family = families.iter().find(|f| f.name == "fleetstorm_session_events_total").unwrap();
            let point = family.points.iter().find(|p| p.labels.iter().any(|(k, v)| *k == "event" && v == name));
            match point.map(|p| &p.value) {
                Some(Value::Number(n)) => *n,
                other => panic!("{name}: {other:?}"),
            }
        };
        assert_eq!((event("keepalive"), event("inbound"), event("closed_disconnect")), (keepalives as f64, 1.0, 1.0));
    }
}
