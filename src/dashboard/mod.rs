//! The live web dashboard of a run or a capacity search
//! (`fleetstorm run --dashboard ADDR`, `fleetstorm capacity --dashboard ADDR`):
//! a self-contained page ([`page`]) that polls `/api/state` once a second
//! and draws what the run has recorded so far, and at the end shows the
//! final report, the same HTML as `--html`.
//!
//! It reads the merged snapshots the progress line reads
//! ([`Dashboard::update`], called from the run's progress callback a few
//! times a second): once a second of the run it takes one [`Point`] from
//! the difference between the run's totals now and a second ago, so the
//! engine's hot path does nothing for it. [`server`] serves the page, the
//! state and the final report, on loopback unless told otherwise.

mod page;
mod server;

pub use server::serve;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::engine::Live;
use crate::fleet::Online;
use crate::gate::Threshold;
use crate::pages::OnWritten;
use crate::report::Stats;
use crate::scenario::Scenario;
use crate::stats::{OutcomeClass, Recorder};

/// How often a point is taken, in run time.
const PERIOD: Duration = Duration::from_secs(1);

/// How long after the end a page that was polling gets to load the final
/// report before the command exits (a page polls once a second; a busy
/// machine may delay it several).
const LINGER: Duration = Duration::from_secs(10);

/// A page that polled this recently is following the run.
const FOLLOWING: Duration = Duration::from_secs(10);

/// What the dashboard follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Run,
    Capacity,
}

/// One second (or so) of the run, from the difference of its totals.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Seconds since the dashboard's clock started (the run's start; for a
    /// capacity search, the search's).
    pub t: f64,
    /// Heartbeats per second whose intended time came, and sent.
    pub offered: f64,
    pub achieved: f64,
    pub ok: f64,
    pub failed: f64,
    /// Failures per second by class (those of [`OutcomeClass::FAILED`], in
    /// its order: the state's `classes`).
    pub errors: Vec<f64>,
    /// Latency percentiles of the heartbeats that ended in the period, ms
    /// (`null` when none did).
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// The generator's schedule lag and the pool's connection wait, p99 of
    /// the period, ms.
    pub lag_p99: Option<f64>,
    pub wait_p99: Option<f64>,
    pub online: u64,
    pub in_flight: usize,
    /// Devices stale so far (their largest gap without a success, an open
    /// one running to now, over their fleet's bound), and the p99 over
    /// devices of that gap, ms: when the run walks its devices for it.
    pub stale: Option<u64>,
    pub gap_p99: Option<f64>,
    /// A run of sessions' (MQTT's): sessions open, and opened and ended
    /// per second (`null` in an HTTP run, which has none).
    pub sessions_open: Option<u64>,
    pub sessions_opened: Option<f64>,
    pub sessions_ended: Option<f64>,
}

/// A threshold (or, for a capacity search, an SLO condition) as it stands.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdNow {
    pub expr: String,
    pub abort: bool,
    pub ok: bool,
    /// The metric has a value during the run (freshness has one only at
    /// the end): without one, `ok` means nothing yet.
    pub known: bool,
    pub actual: String,
}

/// One finished step of a capacity search, as the dashboard draws it.
#[derive(Debug, Clone, Serialize)]
pub struct StepPoint {
    pub step: usize,
    pub target_rate: f64,
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    pub verdict: String,
    pub reason: String,
}

/// The step of a capacity search under way.
#[derive(Debug, Clone, Serialize)]
struct StepNow {
    step: usize,
    rate: f64,
    devices: u64,
}

/// Totals since the start (of the step, for a capacity search).
#[derive(Debug, Clone, Default, Serialize)]
struct Totals {
    scheduled: u64,
    sent: u64,
    ok: u64,
    failed: u64,
    missed: u64,
    retries: u64,
    in_flight: usize,
    online: u64,
    devices: u64,
    /// Freshness so far (see [`Point::stale`]), when the run gives it.
    stale: Option<u64>,
    never_ok: Option<u64>,
    gap_p99_ms: Option<f64>,
    gap_max_ms: Option<f64>,
    /// Sessions open now, in a run of sessions.
    sessions_open: Option<u64>,
}

/// A run's sessions so far, added up from its timeline: the timeline is
/// the one place that counts both openings and endings (a session lost in
/// an exchange is in no other count). The live timeline holds the recent
/// hour's seconds, a late flush may still add to one of them, and older
/// ones fold away: each second's counts are kept as last added, and only
/// what a second gained since is added again.
#[derive(Debug, Default)]
struct Sessions {
    opened: u64,
    ended: u64,
    /// Each second's (opened, ended) as last added, by its start.
    seen: std::collections::HashMap<u64, (u64, u64)>,
}

impl Sessions {
    fn add(&mut self, timeline: &[crate::engine::Second]) {
        for s in timeline {
            let was = self.seen.entry(s.start_s).or_default();
            self.opened += s.sessions_opened.saturating_sub(was.0);
            self.ended += s.sessions_ended.saturating_sub(was.1);
            *was = (s.sessions_opened, s.sessions_ended);
        }
        if let Some(first) = timeline.first() {
            self.seen.retain(|&t, _| t >= first.start_s);
        }
    }

    fn open(&self) -> u64 {
        self.opened.saturating_sub(self.ended)
    }
}

/// What the run's totals were at the last point.
struct Previous {
    elapsed: Duration,
    /// The next point is taken at the first update from this run time on:
    /// the next whole period, so that points keep one a period on average
    /// whatever the updates' cadence.
    next_at: Duration,
    counters: crate::stats::Counters,
    latency: Histogram<u64>,
    lag: Histogram<u64>,
    wait: Histogram<u64>,
    /// Sessions opened and ended.
    sessions: (u64, u64),
}

struct State {
    /// Each fleet's devices online over the run (runs only).
    online: Vec<Online>,
    thresholds: Vec<(Threshold, bool)>,
    fleet_names: Vec<String>,
    /// Each fleet's staleness bound.
    stale_after: Vec<Duration>,
    /// Where the current step's run time starts on the dashboard's clock.
    offset: Duration,
    previous: Option<Previous>,
    points: Vec<Point>,
    totals: Totals,
    elapsed: Duration,
    duration: Duration,
    threshold_now: Vec<ThresholdNow>,
    steps: Vec<StepPoint>,
    step: Option<StepNow>,
    /// The final report's HTML, once the run ended, and its verdict.
    report: Option<(Vec<u8>, String)>,
    /// The sessions so far, when the run's devices hold sessions.
    sessions: Option<Sessions>,
}

/// The dashboard's state, fed by the run and read by the server.
pub struct Dashboard {
    kind: Kind,
    title: String,
    target: String,
    started: Instant,
    state: Mutex<State>,
    /// When a page last asked for the state.
    last_poll: Mutex<Option<Instant>>,
    /// Told when a page's copy of the final report has been written whole.
    report_delivered: Arc<tokio::sync::Notify>,
}

impl Dashboard {
    /// A dashboard of a run of `scenario`; `online`: each fleet's devices as
    /// this process runs them ([`crate::run::online_devices`]).
    pub fn for_run(scenario: &Scenario, online: Vec<Online>) -> Dashboard {
        let thresholds = scenario.thresholds.all().map(|(t, abort)| (t.clone(), abort)).collect();
        Dashboard::new(Kind::Run, scenario, online, thresholds)
    }

    /// A dashboard of a capacity search of `scenario`: each step's run, the
    /// SLO as it stands in the step, and the steps so far.
    pub fn for_capacity(scenario: &Scenario) -> Dashboard {
        let slo = scenario.capacity.iter().flat_map(|c| c.slo.iter()).map(|t| (t.clone(), false)).collect();
        Dashboard::new(Kind::Capacity, scenario, Vec::new(), slo)
    }

    fn new(kind: Kind, scenario: &Scenario, online: Vec<Online>, thresholds: Vec<(Threshold, bool)>) -> Dashboard {
        let devices = online.iter().map(Online::devices).sum();
        Dashboard {
            kind,
            title: scenario.name.clone(),
            target: crate::wire::destination(
                &scenario.target.url.to_string(),
                &scenario.target.path,
                scenario.fleets.iter().map(|f| f.profile),
            ),
            started: Instant::now(),
            state: Mutex::new(State {
                online,
                thresholds,
                fleet_names: scenario.fleets.iter().map(|f| f.name().to_string()).collect(),
                stale_after: scenario.fleets.iter().map(|f| f.stale_after()).collect(),
                offset: Duration::ZERO,
                previous: None,
                points: Vec::new(),
                totals: Totals { devices, ..Totals::default() },
                elapsed: Duration::ZERO,
                duration: scenario.duration,
                threshold_now: Vec::new(),
                steps: Vec::new(),
                step: None,
                report: None,
                sessions: (scenario.protocol() == crate::transport::Protocol::Mqtt).then(Sessions::default),
            }),
            last_poll: Mutex::new(None),
            report_delivered: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// A capacity step starts: its run's totals start from zero.
    pub fn begin_step(&self, step: usize, rate: f64, devices: u64, duration: Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.offset = self.started.elapsed();
            s.previous = None;
            s.step = Some(StepNow { step, rate, devices });
            s.totals = Totals { devices, online: devices, ..Totals::default() };
            // Each step's run has a timeline of its own.
            s.sessions = s.sessions.as_ref().map(|_| Sessions::default());
            s.duration = duration;
            s.elapsed = Duration::ZERO;
        }
    }

    /// A capacity step ended.
    pub fn end_step(&self, step: StepPoint) {
        if let Ok(mut s) = self.state.lock() {
            s.steps.push(step);
            s.step = None;
        }
    }

    /// Takes in the run's latest totals: a point once a second of run time.
    pub fn update(&self, live: &Live<'_>) {
        let Ok(mut s) = self.state.lock() else { return };
        if s.previous.as_ref().is_some_and(|p| live.elapsed < p.next_at) {
            return;
        }
        let mut all = Recorder::default();
        live.fleets.iter().for_each(|f| all.add(f));
        let elapsed = live.elapsed.min(live.duration);
        let online = if self.kind == Kind::Run {
            s.online.iter().map(|o| o.at(elapsed)).sum()
        } else {
            s.step.as_ref().map_or(0, |st| st.devices)
        };
        let mut fresh = None;
        if let Some(fleets) = live.freshness {
            let mut sum = crate::stats::Freshness::default();
            fleets.iter().for_each(|f| sum.add(f));
            fresh = Some(sum);
        }
        let gap =
            |q: f64| fresh.as_ref().filter(|f| f.devices > 0).map(|f| f.max_gap.value_at_quantile(q) as f64 / 1000.0);
        let c = &all.counters;
        if let Some(sessions) = &mut s.sessions {
            sessions.add(live.timeline);
        }
        let sessions = s.sessions.as_ref().map(|t| (t.opened, t.ended, t.open()));
        s.totals = Totals {
            scheduled: c.scheduled,
            sent: c.sent,
            ok: c.ok(),
            failed: c.failed(),
            missed: c.missed,
            retries: c.retries,
            in_flight: live.in_flight,
            online,
            devices: s.totals.devices,
            stale: fresh.as_ref().map(|f| f.stale),
            never_ok: fresh.as_ref().map(|f| f.never_ok),
            gap_p99_ms: gap(0.99),
            gap_max_ms: gap(1.0),
            sessions_open: sessions.map(|(_, _, open)| open),
        };
        s.elapsed = elapsed;
        let seconds = elapsed.as_secs_f64();
        // The run's statistics so far, with its freshness so far when given.
        let with_freshness = |mut stats: Stats, f: Option<(&crate::stats::Freshness, Option<Duration>)>| {
            stats.freshness = f.map(|(f, stale_after)| crate::report::FreshnessStats::of(f, stale_after));
            stats
        };
        let totals = with_freshness(Stats::live(None, &all, seconds), fresh.as_ref().map(|f| (f, None)));
        let now = s
            .thresholds
            .iter()
            .map(|(t, abort)| {
                let fleet_stats;
                let stats = match &t.metric.fleet {
                    None => &totals,
                    Some(name) => {
                        let i = s.fleet_names.iter().position(|f| f == name);
                        let recorder = i.and_then(|i| live.fleets.get(i));
                        let fresh = i.and_then(|i| Some((live.freshness?.get(i)?, s.stale_after.get(i).copied())));
                        fleet_stats = with_freshness(
                            Stats::live(Some(name.clone()), recorder.unwrap_or(&Recorder::default()), seconds),
                            fresh,
                        );
                        &fleet_stats
                    }
                };
                let r = stats.check(t, *abort);
                ThresholdNow { expr: r.expr, abort: *abort, ok: r.ok, known: r.actual.is_some(), actual: r.actual_text }
            })
            .collect();
        s.threshold_now = now;
        if let Some(p) = &s.previous {
            let dt = live.elapsed.saturating_sub(p.elapsed).as_secs_f64().max(1e-3);
            let per_s = |now: u64, then: u64| now.saturating_sub(then) as f64 / dt;
            let point = Point {
                t: (s.offset + live.elapsed).as_secs_f64(),
                offered: per_s(c.scheduled, p.counters.scheduled),
                achieved: per_s(c.sent, p.counters.sent),
                ok: per_s(c.ok(), p.counters.ok()),
                failed: per_s(c.failed(), p.counters.failed()),
                errors: OutcomeClass::FAILED.map(|class| per_s(c.classes[class], p.counters.classes[class])).to_vec(),
                p50: quantile_since(&all.latency, &p.latency, 0.5),
                p95: quantile_since(&all.latency, &p.latency, 0.95),
                p99: quantile_since(&all.latency, &p.latency, 0.99),
                lag_p99: quantile_since(&all.schedule_lag, &p.lag, 0.99),
                wait_p99: quantile_since(&all.connection_wait, &p.wait, 0.99),
                online,
                in_flight: live.in_flight,
                stale: fresh.as_ref().map(|f| f.stale),
                gap_p99: gap(0.99),
                sessions_open: sessions.map(|(_, _, open)| open),
                sessions_opened: sessions.map(|(opened, _, _)| per_s(opened, p.sessions.0)),
                sessions_ended: sessions.map(|(_, ended, _)| per_s(ended, p.sessions.1)),
            };
            s.points.push(point);
        }
        let periods = (live.elapsed.as_nanos() / PERIOD.as_nanos()) as u32;
        s.previous = Some(Previous {
            elapsed: live.elapsed,
            next_at: PERIOD * (periods + 1),
            counters: all.counters.clone(),
            latency: all.latency,
            lag: all.schedule_lag,
            wait: all.connection_wait,
            sessions: sessions.map_or((0, 0), |(opened, ended, _)| (opened, ended)),
        });
    }

    /// The run (or search) ended: `html` is its final report, `verdict` one
    /// line of it.
    pub fn finish(&self, html: Vec<u8>, verdict: String) {
        if let Ok(mut s) = self.state.lock() {
            s.report = Some((html, verdict));
            s.step = None;
        }
    }

    /// After [`Dashboard::finish`]: if a page was following the run, gives
    /// it a moment to load the final report.
    pub async fn linger(&self) {
        let following = self.last_poll.lock().ok().and_then(|t| *t).is_some_and(|t| t.elapsed() < FOLLOWING);
        if !following {
            return;
        }
        let _ = tokio::time::timeout(LINGER, self.report_delivered.notified()).await;
    }

    /// The state as JSON, with the points from index `since` on.
    pub fn state_json(&self, since: usize) -> Vec<u8> {
        if let Ok(mut t) = self.last_poll.lock() {
            *t = Some(Instant::now());
        }
        let Ok(s) = self.state.lock() else { return b"{}".to_vec() };
        let since = since.min(s.points.len());
        let view = StateView {
            kind: self.kind,
            title: &self.title,
            target: &self.target,
            classes: OutcomeClass::FAILED.map(OutcomeClass::as_str),
            fleets: &s.fleet_names,
            sessions: s.sessions.is_some(),
            elapsed_s: s.elapsed.as_secs_f64(),
            duration_s: s.duration.as_secs_f64(),
            totals: &s.totals,
            points_from: since,
            points: &s.points[since..],
            thresholds: &s.threshold_now,
            steps: &s.steps,
            step: s.step.as_ref(),
            finished: s.report.is_some(),
            verdict: s.report.as_ref().map(|(_, v)| v.as_str()),
        };
        serde_json::to_vec(&view).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The final report's HTML, once the run ended.
    /// With it, what the answer carries to tell the dashboard, once its
    /// last byte is written, that the report was delivered (which ends
    /// [`Dashboard::linger`]).
    pub fn report_html(&self) -> Option<(Vec<u8>, OnWritten)> {
        let html = self.state.lock().ok()?.report.as_ref().map(|(h, _)| h.clone())?;
        let delivered = self.report_delivered.clone();
        Some((html, OnWritten(Arc::new(move || delivered.notify_one()))))
    }
}

#[derive(Serialize)]
struct StateView<'a> {
    kind: Kind,
    title: &'a str,
    target: &'a str,
    /// The failure classes, in the order of each point's `errors`.
    classes: [&'static str; OutcomeClass::COUNT - 1],
    fleets: &'a [String],
    /// The run's devices hold sessions: the page draws them.
    sessions: bool,
    elapsed_s: f64,
    duration_s: f64,
    totals: &'a Totals,
    /// The index of the first point given: a page asks for what it lacks.
    points_from: usize,
    points: &'a [Point],
    thresholds: &'a [ThresholdNow],
    steps: &'a [StepPoint],
    step: Option<&'a StepNow>,
    finished: bool,
    verdict: Option<&'a str>,
}

/// The `q` quantile (ms) of what `now` recorded since it was `then`.
fn quantile_since(now: &Histogram<u64>, then: &Histogram<u64>, q: f64) -> Option<f64> {
    let mut since = now.clone();
    since.subtract(then).ok()?;
    (!since.is_empty()).then(|| since.value_at_quantile(q) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Live;
    use crate::scenario::{self, Format};

    fn scenario() -> Scenario {
        let text = "name = \"dash\"\nduration = \"10s\"\n[target]\nurl = \"builtin\"\n\
                    [[fleets]]\nname = \"f\"\ndevices = 100\ninterval = \"1s\"\n\
                    [thresholds]\n\"latency.p99\" = \"< 50ms\"\n\"freshness.stale_devices\" = \"== 0\"\n";
        scenario::parse(text, Format::Toml, "t.toml", "t").unwrap()
    }

    fn live<'a>(elapsed_s: u64, fleets: &'a [Recorder]) -> Live<'a> {
        Live {
            elapsed: Duration::from_secs(elapsed_s),
            duration: Duration::from_secs(10),
            fleets,
            timeline: &[],
            in_flight: 3,
            freshness: None,
        }
    }

    fn record(r: &mut Recorder, n: u64, latency_us: u64) {
        for _ in 0..n {
            r.counters.scheduled += 1;
            r.counters.sent += 1;
            r.counters.classes[OutcomeClass::Ok] += 1;
            r.latency.record(latency_us).unwrap();
        }
    }

    fn state(d: &Dashboard, since: usize) -> serde_json::Value {
        serde_json::from_slice(&d.state_json(since)).unwrap()
    }

    #[test]
    fn each_point_is_the_difference_of_the_totals_over_one_second() {
        let d = Dashboard::for_run(&scenario(), Vec::new());
        let mut r = Recorder::default();
        record(&mut r, 100, 2_000);
        d.update(&live(0, std::slice::from_ref(&r)));
        // Updates within the second take no point.
        record(&mut r, 500, 40_000);
        d.update(&live(0, std::slice::from_ref(&r)));
        assert_eq!(state(&d, 0)["points"].as_array().unwrap().len(), 0);
        d.update(&live(1, std::slice::from_ref(&r)));
        record(&mut r, 200, 3_000);
        d.update(&live(2, std::slice::from_ref(&r)));
        let s = state(&d, 0);
        let points = s["points"].as_array().unwrap();
        assert_eq!(points.len(), 2);
        // The first second: 500 heartbeats at 40 ms, not the 100 before.
        assert_eq!(points[0]["achieved"], 500.0);
        assert!((points[0]["p50"].as_f64().unwrap() - 40.0).abs() < 0.1, "{}", points[0]);
        assert_eq!(points[1]["achieved"], 200.0);
        assert!((points[1]["p99"].as_f64().unwrap() - 3.0).abs() < 0.01, "{}", points[1]);
        assert_eq!(s["totals"]["sent"], 800);
        assert_eq!(s["totals"]["in_flight"], 3);
        // The threshold as it stands: p99 of everything so far is 40 ms.
        assert_eq!(s["thresholds"][0]["expr"], "latency.p99 < 50ms");
        assert_eq!(s["thresholds"][0]["ok"], true);
        assert_eq!(s["thresholds"][0]["known"], true);
        // Freshness is known only at the end: not failing, pending.
        assert_eq!(s["thresholds"][1]["expr"], "freshness.stale_devices == 0");
        assert_eq!(s["thresholds"][1]["known"], false);
        // A page asks only for the points it lacks.
        let later = state(&d, 1);
        assert_eq!(later["points_from"], 1);
        assert_eq!(later["points"].as_array().unwrap().len(), 1);
        assert_eq!(state(&d, 99)["points"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn points_keep_one_a_second_whatever_the_updates_cadence() {
        let d = Dashboard::for_run(&scenario(), Vec::new());
        let mut r = Recorder::default();
        // Updates every 300 ms for 10 s, 30 heartbeats each: 100/s.
        for tick in 0..=33u64 {
            record(&mut r, 30, 1_000);
            let mut l = live(0, std::slice::from_ref(&r));
            l.elapsed = Duration::from_millis(300 * tick + 50);
            d.update(&l);
        }
        let s = state(&d, 0);
        let points = s["points"].as_array().unwrap();
        assert_eq!(points.len(), 9, "{points:?}");
        for p in points {
            let rate = p["achieved"].as_f64().unwrap();
            assert!((rate - 100.0).abs() < 1e-6, "{p}");
        }
    }

    #[test]
    fn freshness_so_far_is_shown_and_judged_when_the_run_gives_it() {
        let d = Dashboard::for_run(&scenario(), Vec::new());
        let r = Recorder::default();
        let mut fresh = crate::stats::Freshness::default();
        // Stale after 3 s (3 intervals): one device 5 s without a success, one fresh.
        fresh.device(5_000_000, 3_000_000, true);
        fresh.device(1_000_000, 3_000_000, true);
        for second in 0..2 {
            let mut l = live(second, std::slice::from_ref(&r));
            l.freshness = Some(std::slice::from_ref(&fresh));
            d.update(&l);
        }
        let s = state(&d, 0);
        assert_eq!(s["totals"]["stale"], 1);
        assert_eq!(s["totals"]["never_ok"], 0);
        assert!((s["totals"]["gap_max_ms"].as_f64().unwrap() - 5_000.0).abs() < 5.0, "{}", s["totals"]);
        assert_eq!(s["points"][0]["stale"], 1);
        let t = &s["thresholds"][1];
        assert_eq!(
            (t["known"].as_bool(), t["ok"].as_bool(), t["actual"].as_str()),
            (Some(true), Some(false), Some("1"))
        );
    }

    /// A profile fleet is shown by the paths it sends to, as every output
    /// names it, never as the SendHeartbeat path it never hits.
    #[test]
    fn the_target_is_named_as_every_output_names_it() {
        let text = "[target]\nurl = \"http://127.0.0.1:9\"\n\
                    [[fleets]]\nname = \"meters\"\ndevices = 3\nprofile = \"thingsboard\"\n";
        let d = Dashboard::for_run(&scenario::parse(text, Format::Toml, "t.toml", "t").unwrap(), Vec::new());
        assert_eq!(state(&d, 0)["target"], "http://127.0.0.1:9 (thingsboard profile paths)");
        assert_eq!(state(&Dashboard::for_run(&scenario(), Vec::new()), 0)["target"], "builtin/SendHeartbeat");
    }

    #[test]
    fn the_final_report_is_served_once_the_run_ended() {
        let d = Dashboard::for_run(&scenario(), Vec::new());
        assert!(d.report_html().is_none());
        assert_eq!(state(&d, 0)["finished"], false);
        d.finish(b"<html>report</html>".to_vec(), "passed".into());
        let s = state(&d, 0);
        assert_eq!(s["finished"], true);
        assert_eq!(s["verdict"], "passed");
        assert_eq!(d.report_html().unwrap().0, b"<html>report</html>");
    }

    /// A page that asked for the final report holds the run only until the
    /// report's last byte is written, not while it is still being sent.
    #[tokio::test(start_paused = true)]
    async fn the_linger_ends_when_the_report_was_written_whole() {
        let d = Dashboard::for_run(&scenario(), Vec::new());
        state(&d, 0); // a page follows the run
        d.finish(b"<html>report</html>".to_vec(), "passed".into());
        let (_, asked) = d.report_html().unwrap();
        let start = tokio::time::Instant::now();
        d.linger().await;
        assert!(start.elapsed() >= LINGER, "asked for but not written: the linger waits its whole time");
        (asked.0)();
        let start = tokio::time::Instant::now();
        d.linger().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "written: the linger ends at once");
    }

    /// A run of sessions draws them, from its timeline: a second's late
    /// flush adds only what it brought, and a second folded away takes
    /// nothing with it. An HTTP run has none.
    #[test]
    fn a_run_of_sessions_adds_them_up_from_its_timeline_and_an_http_run_has_none() {
        let text = "[target]\nurl = \"builtin\"\n[[fleets]]\nname = \"m\"\ndevices = 100\nprofile = \"mqtt\"\n";
        let d = Dashboard::for_run(&scenario::parse(text, Format::Toml, "t.toml", "t").unwrap(), Vec::new());
        let second = |start_s, opened, ended| {
            let mut s = crate::engine::Second::default();
            (s.start_s, s.sessions_opened, s.sessions_ended) = (start_s, opened, ended);
            s
        };
        let r = Recorder::default();
        let update = |elapsed_s, timeline: &[crate::engine::Second]| {
            let mut l = live(elapsed_s, std::slice::from_ref(&r));
            l.timeline = timeline;
            d.update(&l);
        };
        update(0, &[second(0, 40, 0)]);
        // Second 0 gained 10 from a late flush; second 1 opened 50, ended 5.
        update(1, &[second(0, 50, 0), second(1, 50, 5)]);
        // Second 0 folded away; second 2 ended 20.
        update(2, &[second(1, 50, 5), second(2, 0, 20)]);
        let s = state(&d, 0);
        assert_eq!(s["sessions"], true);
        assert_eq!(s["totals"]["sessions_open"], 75);
        let drawn: Vec<(u64, f64, f64)> = s["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let n = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("{k} in {p}"));
                (n("sessions_open") as u64, n("sessions_opened"), n("sessions_ended"))
            })
            .collect();
        assert_eq!(drawn, [(95, 60.0, 5.0), (75, 0.0, 20.0)]);

        let http = Dashboard::for_run(&scenario(), Vec::new());
        http.update(&live(0, std::slice::from_ref(&r)));
        http.update(&live(1, std::slice::from_ref(&r)));
        let s = state(&http, 0);
        assert_eq!(
            (&s["sessions"], &s["totals"]["sessions_open"]),
            (&serde_json::json!(false), &serde_json::Value::Null)
        );
        assert!(s["points"][0]["sessions_open"].is_null(), "{}", s["points"][0]);
    }

    #[test]
    fn capacity_steps_restart_the_totals_and_keep_the_clock() {
        let mut sc = scenario();
        sc.capacity = None;
        let d = Dashboard::for_capacity(&sc);
        d.begin_step(1, 500.0, 500, Duration::from_secs(10));
        let mut r = Recorder::default();
        record(&mut r, 10, 1_000);
        d.update(&live(0, std::slice::from_ref(&r)));
        record(&mut r, 10, 1_000);
        d.update(&live(1, std::slice::from_ref(&r)));
        d.end_step(StepPoint {
            step: 1,
            target_rate: 500.0,
            offered_rate: 500.0,
            achieved_rate: 500.0,
            p50_ms: 1.0,
            p99_ms: 1.0,
            error_rate: 0.0,
            verdict: "pass".into(),
            reason: String::new(),
        });
        d.begin_step(2, 1000.0, 1000, Duration::from_secs(10));
        let mut r = Recorder::default();
        record(&mut r, 5, 1_000);
        d.update(&live(0, std::slice::from_ref(&r)));
        let s = state(&d, 0);
        assert_eq!(s["kind"], "capacity");
        assert_eq!(s["steps"].as_array().unwrap().len(), 1);
        assert_eq!(s["step"]["step"], 2);
        assert_eq!(s["totals"]["sent"], 5);
        assert_eq!(s["totals"]["online"], 1000);
        assert_eq!(s["points"].as_array().unwrap().len(), 1);
    }
}
