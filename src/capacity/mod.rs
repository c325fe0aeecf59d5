//! Capacity planning: `fleetstorm capacity` finds the highest load a
//! backend carries within an SLO, and says it in devices.
//!
//! The data flow: the scenario's `[capacity]` section ([`settings`]) gives
//! the SLO and the search; [`search`] picks each step's rate; a step is the
//! scenario's fleet mix scaled to that rate ([`step_scenario`]: device
//! counts scaled, intervals, shares and payloads kept) and run by the
//! engine, warm-up first and not counted; the step's report is judged
//! (generator kept up? SLO held?) into a [`StepResult`]; when the search
//! ends, the steps become a [`CapacityReport`]: the maximum sustainable
//! rate, the devices it means at each fleet interval, the knee, the first
//! limit, and the saturation curve ([`html`]).

pub mod html;
pub mod search;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::fleet::Schedule;
use crate::gate::ThresholdResult;
use crate::report::Report;
use crate::run::{self, ExecuteOptions, RunError};
pub use crate::scenario::capacity::{CapacitySettings, Scale, Strategy};
use crate::scenario::{ScaleError, Scenario};
use search::{Conclusion, Search, StepVerdict};

/// The capacity report's schema name.
pub const SCHEMA: &str = "fleetstorm-capacity-v1";

/// The scenario's offered rate with every device online.
pub fn nominal_rate(scenario: &Scenario) -> f64 {
    scenario.fleets.iter().map(|f| f.schedule.rate(f.devices)).sum()
}

/// The scenario as one step runs it: the mix brought to `rate`
/// heartbeats/s by scaling every fleet's device count (or, with
/// `scale = "rate"`, every fleet's interval), shares, payloads and the
/// connection mode kept; events, ramp-ups and thresholds left out (a step
/// is steady load, judged by the SLO); run for the warm-up and the step.
pub fn step_scenario(scenario: &Scenario, settings: &CapacitySettings, rate: f64) -> Result<Scenario, String> {
    let factor = rate / nominal_rate(scenario);
    let mut s = scenario.clone();
    s.duration = settings.warmup + settings.step_duration;
    // Steps stop early as the scenario's runs do when nothing succeeds.
    s.thresholds = crate::gate::Thresholds {
        stop_when_nothing_succeeds: scenario.thresholds.stop_when_nothing_succeeds,
        ..Default::default()
    };
    s.capacity = None;
    for f in &mut s.fleets {
        f.events.clear();
        f.schedule = Schedule { ramp_up: Duration::ZERO, ..f.schedule };
        let name = f.name().to_string();
        if settings.scale == Scale::Rate {
            f.scale_rate(factor).map_err(|e| match e {
                ScaleError::IntervalTooShort { seconds } => format!(
                    "at {rate:.0}/s fleet {name:?}'s devices would beat every {:.3} ms, below 1 ms: use scale = \"devices\" or more devices",
                    seconds * 1000.0
                ),
                _ => format!("at {rate:.0}/s fleet {name:?}: {e}"),
            })?;
            continue;
        }
        // Beyond the limit is an error, as the same count in the file is
        // (before the search starts: it checks max_rate's step first).
        let devices = f.scaled_devices(factor).max(1);
        f.set_devices(devices).map_err(|e| match e {
            ScaleError::Names(_) => {
                format!(
                    "at {rate:.0}/s fleet {name:?} has {devices} devices, and its device_name cannot name them: {e}"
                )
            }
            _ => format!("at {rate:.0}/s fleet {name:?}: {e}; lower max_rate or use scale = \"rate\""),
        })?;
    }
    Ok(s)
}

/// How a capacity search ended (in reports: `found`, `max_rate_reached`,
/// `below_start`, `inconclusive`, `interrupted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacityVerdict {
    /// The SLO held up to a rate and broke just above it.
    Found,
    /// The SLO still held at `max_rate`.
    MaxRateReached,
    /// No rate tried met the SLO.
    BelowStart,
    /// The client was the limit before the backend's was found.
    Inconclusive,
    /// Ctrl-C.
    Interrupted,
}

impl std::fmt::Display for CapacityVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CapacityVerdict::Found => "found",
            CapacityVerdict::MaxRateReached => "max_rate_reached",
            CapacityVerdict::BelowStart => "below_start",
            CapacityVerdict::Inconclusive => "inconclusive",
            CapacityVerdict::Interrupted => "interrupted",
        })
    }
}

/// What made an inconclusive step so, on the client's side (in reports:
/// `generator`, `pool`, `resources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientLimit {
    /// The generator fell behind.
    Generator,
    /// The pool was too small for the rate at a flat service time.
    Pool,
    /// The step was refused before it ran: more connections than this
    /// machine allows the process (open files, local ports). It never ran,
    /// so it says nothing of the generator's speed either.
    Resources,
}

impl std::fmt::Display for ClientLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientLimit::Generator => "generator",
            ClientLimit::Pool => "pool",
            ClientLimit::Resources => "resources",
        })
    }
}

/// One measured step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// 1 for the first step.
    pub step: usize,
    /// The rate the search asked for, and the devices that offered it.
    pub target_rate: f64,
    pub devices: u64,
    /// Measured after the warm-up.
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub error_rate: f64,
    pub missed: u64,
    pub schedule_lag_p99_ms: f64,
    pub generator_kept_up: bool,
    /// From the generator getting to a heartbeat to a pooled connection.
    #[serde(default)]
    pub connection_wait_p99_ms: f64,
    #[serde(default)]
    pub service_time_p50_ms: f64,
    pub verdict: StepVerdict,
    /// What made an inconclusive step so, on the client's side:
    /// `generator` (it fell behind), `pool` (too small for the rate at a
    /// flat service time) or `resources` (refused before it ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_limit: Option<ClientLimit>,
    pub slo: Vec<ThresholdResult>,
    /// Why, in words.
    pub reason: String,
    /// Seconds since the search started when the step began and ended.
    #[serde(default)]
    pub started_s: f64,
    #[serde(default)]
    pub ended_s: f64,
    /// How long the search then let the backend settle before the next
    /// step (the target's timeout after a step with time-outs: their
    /// heartbeats may still sit in its queue).
    #[serde(default)]
    pub settle_s: f64,
}

/// A step's pool, judged against the service time the backend had at low
/// load: whether heartbeats queued for a connection, and whose limit that
/// was.
fn pool_limit(report: &Report, baseline_service_p50: Option<f64>) -> Option<(crate::report::PoolLimit, String)> {
    use crate::report::PoolLimit;
    let pool = report.generator.pool.as_ref()?;
    match pool.limit {
        PoolLimit::None => return None,
        // Little's law says the pool suffices at this rate: the waits are
        // latency the devices saw, judged by the SLO.
        PoolLimit::Bursts => return Some((PoolLimit::Bursts, pool.verdict.clone())),
        PoolLimit::Backend | PoolLimit::Pool | PoolLimit::Unknown => {}
    }
    let light = baseline_service_p50.or(pool.light_load_service_time_p50_ms)?;
    let service = pool.service_time_p50_ms;
    let with_headroom = (pool.needed_connections as f64 / 0.7).ceil() as u64;
    Some(if service >= crate::report::SERVICE_TIME_ROSE_FACTOR * light {
        (
            PoolLimit::Backend,
            format!(
                "the pool was full because the backend slowed down (service time p50 {light:.2} ms at low load, \
                 {service:.2} ms here)"
            ),
        )
    } else {
        (
            PoolLimit::Pool,
            format!(
                "the pool of {} connections was the limit, not the backend: heartbeats waited for a connection \
                 (wait p99 {:.1} ms) at a flat service time (p50 {service:.2} ms, {light:.2} ms at low load); this \
                 rate needs at least {} connections (Little's law), {with_headroom} with 30% headroom: raise \
                 connections.pool",
                pool.connections, pool.connection_wait_p99_ms, pool.needed_connections
            ),
        )
    })
}

impl StepResult {
    /// Judges a step's report: inconclusive when the generator fell behind
    /// or the pool (not the backend) was the limit, else good or bad by
    /// the SLO. `baseline_service_p50` is the service time p50 of the
    /// search's lowest step that did not queue for connections.
    fn judged(
        step: usize,
        target_rate: f64,
        devices: u64,
        report: &Report,
        slo: Vec<ThresholdResult>,
        baseline_service_p50: Option<f64>,
    ) -> StepResult {
        use crate::report::PoolLimit;
        let t = &report.totals;
        let kept_up = report.generator.kept_up;
        let failing: Vec<String> =
            slo.iter().filter(|r| !r.ok).map(|r| format!("{} was {}", r.expr, r.actual_text)).collect();
        let pool = pool_limit(report, baseline_service_p50);
        let (verdict, reason, client_limit) = match (&pool, kept_up) {
            (_, false) => (
                StepVerdict::Inconclusive,
                format!("the generator {}", report.generator.verdict),
                Some(ClientLimit::Generator),
            ),
            (Some((PoolLimit::Pool, why)), true) => (StepVerdict::Inconclusive, why.clone(), Some(ClientLimit::Pool)),
            (pool, true) => {
                let mut reason = if failing.is_empty() { "the SLO held".to_string() } else { failing.join("; ") };
                if let Some((_, why)) = pool {
                    reason = format!("{reason}; {why}");
                }
                (if failing.is_empty() { StepVerdict::Good } else { StepVerdict::Bad }, reason, None)
            }
        };
        StepResult {
            step,
            target_rate,
            devices,
            offered_rate: t.offered_rate,
            achieved_rate: t.achieved_rate,
            p50_ms: t.latency_ms.p50,
            p99_ms: t.latency_ms.p99,
            p999_ms: t.latency_ms.p999,
            error_rate: t.error_rate(),
            missed: t.missed,
            schedule_lag_p99_ms: t.schedule_lag_ms.p99,
            generator_kept_up: kept_up,
            connection_wait_p99_ms: t.connection_wait_ms.p99,
            service_time_p50_ms: t.service_time_ms.p50,
            verdict,
            client_limit,
            slo,
            reason,
            started_s: 0.0,
            ended_s: 0.0,
            settle_s: 0.0,
        }
    }

    /// A step refused before it ran (more than this machine allows).
    fn not_run(step: usize, target_rate: f64, devices: u64, why: &str) -> StepResult {
        StepResult {
            step,
            target_rate,
            devices,
            offered_rate: 0.0,
            achieved_rate: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            p999_ms: 0.0,
            error_rate: 0.0,
            missed: 0,
            schedule_lag_p99_ms: 0.0,
            generator_kept_up: false,
            connection_wait_p99_ms: 0.0,
            service_time_p50_ms: 0.0,
            verdict: StepVerdict::Inconclusive,
            client_limit: Some(ClientLimit::Resources),
            slo: vec![],
            reason: format!("not run: refused before it started: {why}"),
            started_s: 0.0,
            ended_s: 0.0,
            settle_s: 0.0,
        }
    }
}

/// Devices one rate carries at one heartbeat interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevicesAt {
    pub interval_s: f64,
    pub devices: u64,
    /// With the settings' headroom kept free.
    pub with_headroom: u64,
}

/// The search's settings, as the report records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    pub start_rate: f64,
    pub max_rate: f64,
    pub step_duration_s: f64,
    pub warmup_s: f64,
    pub strategy: String,
    /// `devices` or `rate`: what a step scales.
    pub scale: String,
    pub precision: f64,
    pub growth: f64,
    pub headroom: f64,
}

/// What a capacity search found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityReport {
    pub schema: String,
    pub scenario: String,
    pub target: String,
    pub seed: u64,
    pub started_at: String,
    /// The SLO, one condition per entry.
    pub slo: Vec<String>,
    pub settings: SearchSettings,
    pub verdict: CapacityVerdict,
    /// Heartbeats/s the backend sustains within the SLO; null unless the
    /// verdict is `found` or `max_rate_reached`.
    pub max_sustainable_rate: Option<f64>,
    /// The highest rate a step met the SLO at, whatever the verdict.
    pub highest_good_rate: Option<f64>,
    /// The lowest rate a step broke the SLO at.
    pub lowest_bad_rate: Option<f64>,
    /// What stopped the load growing: `latency`, `errors`, `missed`,
    /// `freshness`, `throughput`, `slo`, `generator` or `max_rate`.
    pub limit: Option<String>,
    /// The limit in words: the failing conditions and their values.
    pub limit_detail: Option<String>,
    /// The highest rate before p99 latency first doubled over its value at
    /// the lowest load: where latency starts climbing.
    pub knee_rate: Option<f64>,
    /// The maximum sustainable rate in devices, at each fleet interval.
    pub devices: Vec<DevicesAt>,
    /// The answer in one sentence.
    pub answer: String,
    pub steps: Vec<StepResult>,
}

/// What the search reports as it goes.
pub enum Progress<'a> {
    /// A step is starting.
    Starting { step: usize, rate: f64, devices: u64 },
    /// A step ended.
    Finished(&'a StepResult),
    /// The step's run so far (a few times a second, as `run`'s progress).
    Live(&'a crate::engine::Live<'a>),
}

/// Runs the capacity search of `scenario` (which must have a `[capacity]`
/// section). `cancel` (Ctrl-C) stops it: the step under way is dropped and
/// the report says what the finished steps showed; `abandon` (a second
/// Ctrl-C) stops that step without waiting for its heartbeats in flight.
/// `live_freshness`: give [`Progress::Live`] the devices' freshness so far
/// (see [`ExecuteOptions::live_freshness`]).
pub async fn search(
    scenario: &Scenario,
    seed: u64,
    cancel: CancellationToken,
    abandon: Option<CancellationToken>,
    threads: Option<usize>,
    live_freshness: bool,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<CapacityReport, RunError> {
    let settings = scenario.capacity.as_ref().ok_or_else(|| {
        RunError::Plan(
            "the scenario has no [capacity] section: add one with an slo, a start_rate and a max_rate".into(),
        )
    })?;
    // Every rate the search may try must be expressible before it starts.
    step_scenario(scenario, settings, settings.max_rate).map_err(RunError::Plan)?;
    let started_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let mut search = Search::new(settings);
    let mut steps: Vec<StepResult> = Vec::new();
    // As the outputs of a run name it; each step's report names it again
    // with the built-in backend's address.
    let mut target = crate::wire::destination(
        &scenario.target.url.to_string(),
        &scenario.target.path,
        scenario.fleets.iter().map(|f| f.profile),
    );
    let mut interrupted = false;
    let mut retried = None;
    let began = std::time::Instant::now();
    // The service time of the lowest step that did not queue for pooled
    // connections: what "the backend slowed down" is measured against.
    let mut baseline: Option<(f64, f64)> = None;
    while let Some(rate) = search.next() {
        let step = step_scenario(scenario, settings, rate).map_err(RunError::Plan)?;
        let devices = step.fleets.iter().map(|f| f.devices).sum();
        progress(Progress::Starting { step: steps.len() + 1, rate, devices });
        let options = ExecuteOptions {
            threads,
            warmup: settings.warmup,
            abandon: abandon.clone(),
            live_freshness,
            ..ExecuteOptions::default()
        };
        let started_s = began.elapsed().as_secs_f64();
        let report = match run::execute_with(&run::Plan::new(&step, seed, None), cancel.clone(), options, |live| {
            progress(Progress::Live(live))
        })
        .await
        {
            Ok(executed) => executed.report,
            // Too large for this machine (open files, ports): the
            // generator's limit, not the backend's.
            Err(e) if e.kind() == run::RunErrorKind::Invalid => {
                let mut result = StepResult::not_run(steps.len() + 1, rate, devices, &e.to_string());
                (result.started_s, result.ended_s) = (started_s, began.elapsed().as_secs_f64());
                search.record(rate, StepVerdict::Inconclusive);
                progress(Progress::Finished(&result));
                steps.push(result);
                break;
            }
            Err(e) => return Err(e),
        };
        if report.interrupted || cancel.is_cancelled() {
            interrupted = true;
            break;
        }
        target = report.scenario.destination();
        let slo = settings.slo.iter().map(|t| report.check(t, false)).collect();
        let mut result = StepResult::judged(steps.len() + 1, rate, devices, &report, slo, baseline.map(|(_, p50)| p50));
        (result.started_s, result.ended_s) = (started_s, began.elapsed().as_secs_f64());
        let t = &report.totals;
        if report.generator.kept_up
            && t.connection_wait_ms.p99 <= crate::report::POOL_WAIT_P99_MS
            && t.ok > 0
            && baseline.is_none_or(|(r, _)| t.offered_rate < r)
        {
            baseline = Some((t.offered_rate, t.service_time_ms.p50));
        }
        // A generator that fell behind once may have been interrupted by
        // something else on the machine: such a step is run again once
        // before it ends the search. A pool too small stays so.
        let again = result.verdict == StepVerdict::Inconclusive
            && result.client_limit == Some(ClientLimit::Generator)
            && retried != Some(rate);
        if again {
            result.reason.push_str("; running this step again");
        }
        // Heartbeats that timed out may still sit in the backend's queue:
        // let it work them off before the next step, for the timeout.
        if t.errors_of(crate::stats::OutcomeClass::Timeout) > 0 {
            let settle = scenario.target.timeout;
            result.settle_s = settle.as_secs_f64();
            tokio::select! {
                () = tokio::time::sleep(settle) => {}
                () = cancel.cancelled() => {}
            }
        }
        progress(Progress::Finished(&result));
        if again {
            retried = Some(rate);
        } else {
            search.record(rate, result.verdict);
        }
        steps.push(result);
        if cancel.is_cancelled() {
            interrupted = true;
            break;
        }
    }
    Ok(conclude(scenario, settings, seed, started_at, target, &search, steps, interrupted))
}

#[allow(clippy::too_many_arguments)]
fn conclude(
    scenario: &Scenario,
    settings: &CapacitySettings,
    seed: u64,
    started_at: String,
    target: String,
    search: &Search,
    steps: Vec<StepResult>,
    interrupted: bool,
) -> CapacityReport {
    let conclusion = search.conclusion();
    let verdict = if interrupted {
        CapacityVerdict::Interrupted
    } else {
        match conclusion {
            Conclusion::Found => CapacityVerdict::Found,
            Conclusion::MaxRateReached => CapacityVerdict::MaxRateReached,
            Conclusion::BelowStart => CapacityVerdict::BelowStart,
            Conclusion::Inconclusive => CapacityVerdict::Inconclusive,
        }
    };
    let max_sustainable_rate = match (interrupted, conclusion) {
        (false, Conclusion::Found | Conclusion::MaxRateReached) => search.good,
        _ => None,
    };
    // The first limit: the generator's, or the SLO's first broken step's.
    let first_bad = steps.iter().find(|s| s.verdict == StepVerdict::Bad);
    let generator = steps
        .iter()
        .rev()
        .find(|s| s.verdict == StepVerdict::Inconclusive)
        .filter(|_| conclusion == Conclusion::Inconclusive);
    let (limit, limit_detail) = match (generator, first_bad, verdict) {
        (Some(g), _, _) => (
            Some(g.client_limit.unwrap_or(ClientLimit::Generator).to_string()),
            Some(format!("at {}/s {}", rate(g.target_rate), g.reason)),
        ),
        (None, Some(b), _) => {
            let kinds: BTreeSet<&str> = b.slo.iter().filter(|r| !r.ok).map(|r| limit_kind(&r.metric)).collect();
            let kind = kinds.into_iter().collect::<Vec<_>>().join("+");
            (Some(kind), Some(format!("at {}/s {}", rate(b.target_rate), b.reason)))
        }
        (None, None, CapacityVerdict::MaxRateReached) => (
            Some("max_rate".to_string()),
            Some(format!("the SLO still held at max_rate, {}/s", rate(settings.max_rate))),
        ),
        _ => (None, None),
    };
    let devices = devices_at(scenario, max_sustainable_rate.or(search.good).unwrap_or(0.0), settings.headroom);
    let knee_rate = knee(&steps);
    let refused = generator
        .filter(|g| g.client_limit == Some(ClientLimit::Resources))
        .map(|g| (g.target_rate, fixes(scenario, settings)));
    let limits = Limits { detail: limit_detail.as_deref(), refused: refused.as_ref().map(|(r, f)| (*r, f.as_str())) };
    let answer = answer(verdict, max_sustainable_rate, search, &devices, settings, limits);
    CapacityReport {
        schema: SCHEMA.to_string(),
        scenario: scenario.name.clone(),
        target,
        seed,
        started_at,
        slo: settings.slo.iter().map(|t| t.expr()).collect(),
        settings: SearchSettings {
            start_rate: settings.start_rate,
            max_rate: settings.max_rate,
            step_duration_s: settings.step_duration.as_secs_f64(),
            warmup_s: settings.warmup.as_secs_f64(),
            strategy: match settings.strategy {
                Strategy::StepThenBisect => "step-then-bisect",
                Strategy::Steps => "steps",
            }
            .to_string(),
            scale: match settings.scale {
                Scale::Devices => "devices",
                Scale::Rate => "rate",
            }
            .to_string(),
            precision: settings.precision,
            growth: settings.growth,
            headroom: settings.headroom,
        },
        verdict,
        max_sustainable_rate,
        highest_good_rate: search.good,
        lowest_bad_rate: search.bad,
        limit,
        limit_detail,
        knee_rate,
        devices,
        answer,
        steps,
    }
}

/// What kind of limit a broken SLO metric is.
fn limit_kind(metric: &str) -> &'static str {
    let base = match metric.strip_prefix("fleets.") {
        Some(rest) => rest.split_once('.').map_or(rest, |(_, m)| m),
        None => metric,
    };
    let first = base.split('.').next().unwrap_or(base);
    match first {
        "latency" | "service_time" | "schedule_lag" | "connection_wait" | "lateness" => "latency",
        "error_rate" | "errors" | "status" | "code" | "failed" | "retries" | "retry_rate" => "errors",
        "missed" | "missed_rate" | "late" | "late_rate" => "missed",
        "freshness" => "freshness",
        "achieved_rate" | "achieved_rate_ratio" | "offered_rate" | "sent" | "ok" => "throughput",
        _ => "slo",
    }
}

/// `rate` heartbeats/s as devices at each distinct fleet interval.
fn devices_at(scenario: &Scenario, rate: f64, headroom: f64) -> Vec<DevicesAt> {
    let mut intervals: Vec<Duration> = scenario.fleets.iter().map(|f| f.schedule.interval).collect();
    intervals.sort();
    intervals.dedup();
    intervals
        .into_iter()
        .map(|i| {
            let devices = rate * i.as_secs_f64();
            DevicesAt {
                interval_s: i.as_secs_f64(),
                devices: devices.floor() as u64,
                with_headroom: (devices.floor() * (1.0 - headroom)).round() as u64,
            }
        })
        .collect()
}

/// The highest rate before p99 latency first exceeds twice its value at
/// the lowest load (and by at least a millisecond, so that sub-millisecond
/// noise is no knee).
fn knee(steps: &[StepResult]) -> Option<f64> {
    let mut measured: Vec<&StepResult> = steps.iter().filter(|s| s.generator_kept_up).collect();
    measured.sort_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate));
    let base = measured.first()?.p99_ms;
    let climbing = measured.iter().position(|s| s.p99_ms > 2.0 * base && s.p99_ms > base + 1.0)?;
    climbing.checked_sub(1).map(|i| measured[i].offered_rate)
}

fn rate(r: f64) -> String {
    crate::units::thousands(r.round() as u64)
}

/// What to change so that a step refused here can run: what the scenario
/// does not do already.
fn fixes(scenario: &Scenario, settings: &CapacitySettings) -> String {
    let mut fixes = Vec::new();
    if settings.scale == Scale::Devices {
        fixes.push(
            "scale = \"rate\" under [capacity] (the same devices beating faster: their connections do not multiply)",
        );
    }
    if !matches!(scenario.target.connections, crate::transport::settings::ConnectionMode::Pool(_)) {
        fixes.push("target.connections = { pool = N }");
    }
    fixes.push("or measure the rate with shards (run --shard I/N, one process each, then merge)");
    format!("to search further: {}", fixes.join(", "))
}

/// Why the search ended where it did, for its answer.
struct Limits<'a> {
    /// The first limit met, in words (`limit_detail`).
    detail: Option<&'a str>,
    /// A step was refused before it ran: its rate, and what would let it run.
    refused: Option<(f64, &'a str)>,
}

fn answer(
    verdict: CapacityVerdict,
    max: Option<f64>,
    search: &Search,
    devices: &[DevicesAt],
    settings: &CapacitySettings,
    limits: Limits<'_>,
) -> String {
    let limit = limits.detail;
    let in_devices = |r: f64| {
        let parts: Vec<String> = devices
            .iter()
            .map(|d| {
                format!(
                    "{} devices at a {} interval ({} with {:.0}% headroom)",
                    crate::units::thousands(d.devices),
                    crate::units::format_duration(Duration::from_secs_f64(d.interval_s)),
                    crate::units::thousands(d.with_headroom),
                    settings.headroom * 100.0
                )
            })
            .collect();
        format!("{} heartbeats/s → {}", rate(r), parts.join("; "))
    };
    match (verdict, max) {
        (CapacityVerdict::Found, Some(m)) => format!("sustains {}", in_devices(m)),
        (CapacityVerdict::MaxRateReached, Some(m)) => {
            format!("sustains at least {} (max_rate; raise it to find the limit)", in_devices(m))
        }
        (CapacityVerdict::BelowStart, _) => format!(
            "no rate tried met the SLO, down to {}/s: {}",
            rate(search.bad.unwrap_or(settings.start_rate)),
            limit.unwrap_or("")
        ),
        (CapacityVerdict::Inconclusive, _) if limits.refused.is_some() => {
            let (at, fixes) = limits.refused.unwrap_or_default();
            let known = match search.good {
                Some(g) => format!("the backend carried at least {}/s", rate(g)),
                None => "nothing is known of the backend".to_string(),
            };
            format!(
                "inconclusive: the step at {}/s was refused before it ran (more connections than this machine \
                 allows the process; see the first limit), so it measured nothing; {known}; {fixes}",
                rate(at)
            )
        }
        (CapacityVerdict::Inconclusive, _) => {
            let who = match limit {
                Some(l) if l.contains("the pool of") => "the connection pool was too small",
                _ => "the generator fell behind",
            };
            match search.good {
                Some(g) => format!(
                    "inconclusive: {who} before the backend's limit; the backend carried at least {}/s",
                    rate(g)
                ),
                None => format!("inconclusive: {who} at the first step; nothing is known of the backend"),
            }
        }
        _ => match search.good {
            Some(g) => format!("interrupted; so far the backend carried {} heartbeats/s within the SLO", rate(g)),
            None => "interrupted before any step met the SLO".into(),
        },
    }
}

impl CapacityReport {
    /// The report as people read it in a terminal.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "capacity of {} for scenario {:?} (SLO: {})",
            self.target,
            self.scenario,
            self.slo.join(", ")
        );
        let _ = writeln!(
            out,
            "{:>4} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8} {:>9}  verdict",
            "step", "devices", "offered/s", "achieved/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "lag p99"
        );
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{:>4} {:>10} {:>10} {:>10} {:>9.2} {:>9.2} {:>9.2} {:>7.2}% {:>9.2}  {}: {}",
                s.step,
                crate::units::thousands(s.devices),
                rate(s.offered_rate),
                rate(s.achieved_rate),
                s.p50_ms,
                s.p99_ms,
                s.p999_ms,
                s.error_rate * 100.0,
                s.schedule_lag_p99_ms,
                s.verdict,
                s.reason
            );
        }
        let _ = writeln!(out, "verdict: {}", self.answer);
        if let Some(k) = self.knee_rate {
            let _ = writeln!(out, "knee: p99 latency starts climbing above {}/s", rate(k));
        }
        if let (Some(limit), Some(detail)) = (&self.limit, &self.limit_detail) {
            let _ = writeln!(out, "first limit: {limit} ({detail})");
        }
        out
    }

    /// Reads a capacity report written by `fleetstorm capacity --out`.
    pub fn load(path: &std::path::Path) -> Result<CapacityReport, crate::report::LoadError> {
        use crate::report::LoadError;
        let text =
            std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text).map_err(|source| LoadError::NotCapacity { path: path.to_path_buf(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: usize, rate: f64, p99: f64, verdict: &str) -> StepResult {
        StepResult {
            step: n,
            target_rate: rate,
            devices: rate as u64,
            offered_rate: rate,
            achieved_rate: rate,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            p999_ms: p99 * 1.5,
            error_rate: 0.0,
            missed: 0,
            schedule_lag_p99_ms: 0.5,
            generator_kept_up: verdict != "inconclusive",
            connection_wait_p99_ms: 0.0,
            service_time_p50_ms: p99 / 3.0,
            verdict: match verdict {
                "good" => StepVerdict::Good,
                "bad" => StepVerdict::Bad,
                _ => StepVerdict::Inconclusive,
            },
            client_limit: (verdict == "inconclusive").then_some(ClientLimit::Generator),
            slo: vec![],
            reason: String::new(),
            started_s: 0.0,
            ended_s: 0.0,
            settle_s: 0.0,
        }
    }

    #[test]
    fn the_knee_is_the_last_rate_before_p99_doubles() {
        let steps = [
            step(1, 500.0, 2.0, "good"),
            step(2, 1_000.0, 2.4, "good"),
            step(3, 2_000.0, 3.5, "good"),
            step(4, 4_000.0, 90.0, "bad"),
            step(5, 3_000.0, 6.0, "good"),
        ];
        assert_eq!(knee(&steps), Some(2_000.0));
        // Sub-millisecond noise is no knee.
        let flat = [step(1, 500.0, 0.2, "good"), step(2, 1_000.0, 0.5, "good")];
        assert_eq!(knee(&flat), None);
    }

    #[test]
    fn limits_are_named_by_what_broke() {
        assert_eq!(limit_kind("latency.p99"), "latency");
        assert_eq!(limit_kind("fleets.east.latency.p999"), "latency");
        assert_eq!(limit_kind("error_rate"), "errors");
        assert_eq!(limit_kind("status.503"), "errors");
        assert_eq!(limit_kind("code.http.503"), "errors");
        assert_eq!(limit_kind("freshness.stale_devices"), "freshness");
        assert_eq!(limit_kind("achieved_rate_ratio"), "throughput");
    }

    #[test]
    fn a_rate_becomes_devices_at_each_interval_with_headroom() {
        let text = "[[fleets]]\nname = \"a\"\ndevices = 10\ninterval = \"30s\"\n[[fleets]]\nname = \"b\"\ndevices = 10\ninterval = \"5s\"\n[[fleets]]\nname = \"c\"\ndevices = 1\ninterval = \"30s\"\n";
        let s = crate::scenario::parse(text, crate::scenario::Format::Toml, "t.toml", "t").unwrap();
        let d = devices_at(&s, 12_400.0, 0.3);
        assert_eq!(
            d,
            [
                DevicesAt { interval_s: 5.0, devices: 62_000, with_headroom: 43_400 },
                DevicesAt { interval_s: 30.0, devices: 372_000, with_headroom: 260_400 },
            ]
        );
    }

    #[test]
    fn a_step_scales_the_mix_and_keeps_its_shape() {
        let text = "duration = \"5m\"\n[[fleets]]\nname = \"a\"\ndevices = 300\ninterval = \"30s\"\nramp_up = \"1m\"\n[[fleets.events]]\nat = \"2m\"\nkind = \"outage\"\nshare = \"10%\"\nduration = \"30s\"\n[[fleets]]\nname = \"b\"\ndevices = 50\ninterval = \"5s\"\n[capacity]\nslo = { \"latency.p99\" = \"< 250ms\" }\nstart_rate = \"100/s\"\nmax_rate = \"1000/s\"\nstep_duration = \"10s\"\nwarmup = \"2s\"\n";
        let s = crate::scenario::parse(text, crate::scenario::Format::Toml, "t.toml", "t").unwrap();
        assert_eq!(nominal_rate(&s), 20.0);
        let step = step_scenario(&s, s.capacity.as_ref().unwrap(), 200.0).unwrap();
        assert_eq!(step.fleets.iter().map(|f| f.devices).collect::<Vec<_>>(), [3_000, 500]);
        assert_eq!(nominal_rate(&step), 200.0);
        assert_eq!(step.duration, Duration::from_secs(12));
        assert!(step.fleets.iter().all(|f| f.events.is_empty() && f.schedule.ramp_up.is_zero()));
        assert_eq!(step.fleets[1].schedule.interval, Duration::from_secs(5));
        // Scaling the rate instead keeps the devices and shortens intervals.
        let rate = CapacitySettings { scale: Scale::Rate, ..s.capacity.clone().unwrap() };
        let step = step_scenario(&s, &rate, 200.0).unwrap();
        assert_eq!(step.fleets.iter().map(|f| f.devices).collect::<Vec<_>>(), [300, 50]);
        assert_eq!(step.fleets[0].schedule.interval, Duration::from_secs(3));
        assert_eq!(nominal_rate(&step), 200.0);
        assert!(step_scenario(&s, &rate, 1e9).unwrap_err().contains("below 1 ms"));
    }
}
