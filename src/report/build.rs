//! A run's report, built from what the engine recorded: its statistics per
//! fleet, per cohort and in total, and the rates over the time spans they
//! are over.

use std::collections::BTreeMap;

use super::verdict::light_load_p50;
use super::*;
use crate::engine::RunOutput;
use crate::fleet::{Arrival, StartMode};
use crate::gate::ThresholdResult;
use crate::scenario::Scenario;
use crate::stats::{self, Freshness, Percentiles, Recorder};

/// The time spans rates are over: scheduled heartbeats over the scheduling
/// window, sent ones over the time sending took (longer when a pool's
/// queue drained after the end).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub scheduled_s: f64,
    pub sending_s: f64,
}

impl Span {
    pub(crate) fn same(seconds: f64) -> Span {
        Span { scheduled_s: seconds, sending_s: seconds }
    }
}

pub(crate) fn stats_of(name: Option<String>, r: &Recorder, span: Span, with_histograms: bool) -> Stats {
    let encode = |h| if with_histograms { stats::encode_histogram(h) } else { String::new() };
    let c = &r.counters;
    let per = |n: u64, seconds: f64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
    Stats {
        name,
        scheduled: c.scheduled,
        sent: c.sent,
        missed: c.missed,
        ok: c.ok(),
        failed: c.failed(),
        retries: c.retries,
        recovered: c.recovered,
        connects: c.connects,
        late: c.late,
        waited: c.waited,
        retry_pending: c.retry_pending,
        unacknowledged: c.unacknowledged,
        errors: c.classes.failed_iter().map(|(class, n)| (class.to_string(), *n)).collect(),
        codes: codes_of(&c.codes),
        offered_rate: per(c.scheduled, span.scheduled_s),
        achieved_rate: per(c.sent, span.sending_s),
        latency_ms: Percentiles::of(&r.latency),
        service_time_ms: Percentiles::of(&r.service_time),
        schedule_lag_ms: Percentiles::of(&r.schedule_lag),
        connection_wait_ms: Percentiles::of(&r.connection_wait),
        lateness_ms: Percentiles::of(&r.lateness),
        tls_handshake_ms: (!r.tls_handshake.is_empty()).then(|| Percentiles::of(&r.tls_handshake)),
        session_open_ms: (!r.session_open.is_empty()).then(|| Percentiles::of(&r.session_open)),
        freshness: None,
        sessions: (!c.sessions.is_empty()).then_some(c.sessions.clone()),
        histograms: Histograms {
            latency: encode(&r.latency),
            service_time: encode(&r.service_time),
            schedule_lag: encode(&r.schedule_lag),
            connection_wait: with_histograms.then(|| stats::encode_histogram(&r.connection_wait)),
            lateness: with_histograms.then(|| stats::encode_histogram(&r.lateness)),
            tls_handshake: (with_histograms && !r.tls_handshake.is_empty())
                .then(|| stats::encode_histogram(&r.tls_handshake)),
            session_open: (with_histograms && !r.session_open.is_empty())
                .then(|| stats::encode_histogram(&r.session_open)),
        },
    }
}

/// Answers by code as a report keeps them: by protocol, then code.
pub(crate) fn codes_of(codes: &BTreeMap<stats::Code, u64>) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (code, n) in codes {
        out.entry(code.protocol().to_string()).or_default().insert(code.value().to_string(), *n);
    }
    out
}

/// What a run knew besides what its devices recorded, for its report.
#[derive(Debug, Default)]
pub struct RunFacts {
    /// The target as the report names it: its URL, or the built-in
    /// backend's address (`builtin (http://127.0.0.1:PORT)`).
    pub target: String,
    /// The built-in backend's own counts, when the run had it.
    pub backend: Option<serde_json::Value>,
    /// A synchronized start: the instant, and how late the clock started.
    pub start: Option<StartInfo>,
    /// The shard the run was, with its scenario's hash.
    pub shard: Option<ShardInfo>,
    /// The first message of each kind of failure.
    pub first_errors: BTreeMap<String, String>,
    /// The source addresses fleetstorm spread the connections over itself
    /// (none given in the scenario), if it did.
    pub spread_sources: Option<Vec<std::net::IpAddr>>,
    /// The abort threshold that fired, and its result as it was judged then.
    pub aborted: Option<(Aborted, ThresholdResult)>,
    /// Stopped for want of a success.
    pub stopped: Option<Stopped>,
    /// What the observers saw, by fleet index.
    pub delivery: Vec<(usize, crate::stats::Delivery)>,
}

impl Report {
    /// Builds the report of a run of `scenario` (as run: overrides applied)
    /// from what it recorded (`out`) and what else it knew (`facts`), its
    /// thresholds checked (an abort threshold that fired as it was judged
    /// then).
    pub fn new(scenario: &Scenario, seed: u64, out: &RunOutput, facts: RunFacts) -> Report {
        let RunFacts {
            target: target_url,
            backend,
            start,
            shard,
            first_errors,
            spread_sources,
            aborted,
            stopped,
            delivery,
        } = facts;
        let seconds = out.scheduled_for.as_secs_f64();
        let span = Span { scheduled_s: seconds, sending_s: out.sending_for.as_secs_f64().max(seconds) };
        let mut total = Recorder::default();
        for f in &out.fleets {
            total.add(f);
        }
        let mut total_freshness = Freshness::default();
        for f in &out.freshness {
            total_freshness.add(f);
        }
        let t = &scenario.target;
        let totals = stats_of(None, &total, span, true);
        let pool = match t.connections {
            crate::transport::settings::ConnectionMode::Pool(n) => {
                Some(PoolVerdict::judge(u64::from(n), &(&totals).into(), light_load_p50(&total)))
            }
            _ => None,
        };
        let busiest = out.demand.iter().map(|d| d.share()).reduce(f64::max);
        let generator = generator_health(totals.schedule_lag_ms.p99, busiest, pool);
        let mqtt = scenario.protocol() == crate::transport::Protocol::Mqtt;
        // A run of sessions: its timeline says how many were open.
        let sessions_run = out.timeline.iter().any(|s| s.sessions_opened > 0);
        let mut report = Report {
            schema: SCHEMA.to_string(),
            fleetstorm_version: Some(VERSION.to_string()),
            scenario: ScenarioSummary {
                name: scenario.name.clone(),
                seed,
                planned_duration_s: scenario.duration.as_secs_f64(),
                scale: scenario
                    .scaled
                    .is_scaled()
                    .then_some(ScaleSummary { devices: scenario.scaled.devices, rate: scenario.scaled.rate }),
                target: TargetSummary {
                    url: target_url,
                    path: if mqtt { String::new() } else { t.path.clone() },
                    timeout_ms: t.timeout.as_secs_f64() * 1000.0,
                    connections: t.connections.to_string(),
                    headers: t.headers.iter().map(|h| (h.name.to_string(), h.written.clone())).collect(),
                    http: (!mqtt).then(|| t.http.to_string()),
                    mqtt: mqtt.then(|| t.mqtt.version.to_string()),
                    tls: t.url.tls().then(|| TlsSummary {
                        check: match (&t.tls.ca, t.tls.insecure) {
                            (_, true) => TlsCheck::Insecure,
                            (Some(ca), false) => TlsCheck::CaFile(ca.display().to_string()),
                            (None, false) => TlsCheck::PlatformRoots,
                        },
                        mutual: t.tls.cert.is_some(),
                    }),
                    sigv4: t.sigv4.as_ref().map(|s| format!("{}/{}", s.service, s.region)),
                    source_addresses: spread_sources
                        .as_deref()
                        .unwrap_or(&t.source_addresses)
                        .iter()
                        .map(|a| a.to_string())
                        .collect(),
                    sources_spread: spread_sources.is_some(),
                },
                fleets: scenario
                    .fleets
                    .iter()
                    .map(|f| FleetSummary {
                        name: f.name().to_string(),
                        devices: f.devices,
                        interval_s: f.schedule.interval.as_secs_f64(),
                        offered_rate: f.schedule.rate(f.devices),
                        jitter: f.schedule.jitter,
                        start: match f.schedule.start {
                            StartMode::Staggered => "staggered",
                            StartMode::Synchronized => "synchronized",
                        }
                        .into(),
                        ramp_up_s: f.schedule.ramp_up.as_secs_f64(),
                        stale_after_s: f.stale_after().as_secs_f64(),
                        profile: f.profile,
                        arrival: match f.schedule.arrival {
                            Arrival::Periodic => "periodic",
                            Arrival::Poisson => "poisson",
                        }
                        .into(),
                    })
                    .collect(),
            },
            started_at: humantime::format_rfc3339_millis(out.started_at).to_string(),
            duration_s: seconds,
            sending_s: Some(span.sending_s),
            elapsed_s: out.elapsed.as_secs_f64(),
            startup_s: out.startup.as_secs_f64(),
            generator,
            totals: Stats { freshness: Some(FreshnessStats::of(&total_freshness, None)), ..totals },
            fleets: scenario
                .fleets
                .iter()
                .zip(&out.fleets)
                .zip(&out.freshness)
                .map(|((f, r), fresh)| Stats {
                    freshness: Some(FreshnessStats::of(fresh, Some(f.stale_after()))),
                    ..stats_of(Some(f.name().to_string()), r, span, true)
                })
                .collect(),
            cohorts: scenario
                .fleets
                .iter()
                .zip(&out.cohorts)
                .flat_map(|(f, versions)| {
                    versions.iter().enumerate().filter_map(move |(v, r)| {
                        let r = r.as_ref()?;
                        let agent_version = f.content.agent_versions.name(v as u16).to_string();
                        let name = format!("{}@{agent_version}", f.name());
                        Some(Cohort {
                            fleet: f.name().to_string(),
                            agent_version,
                            stats: stats_of(Some(name), r, span, true),
                        })
                    })
                })
                .collect(),
            timeline: out
                .timeline
                .iter()
                .scan(0u64, |open, s| {
                    *open = (*open + s.sessions_opened).saturating_sub(s.sessions_ended);
                    Some((s, *open))
                })
                .map(|(s, open)| SecondStats {
                    sessions_open: sessions_run.then_some(open),
                    sessions_opened: sessions_run.then_some(s.sessions_opened),
                    sessions_ended: sessions_run.then_some(s.sessions_ended),
                    t: s.start_s,
                    width_s: s.width_s,
                    offered: s.scheduled,
                    sent: s.sent,
                    ok: s.ok,
                    failed: s.failed,
                    missed: s.missed,
                    retries: s.retries,
                    errors: s
                        .errors
                        .failed_iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(class, n)| (class.to_string(), *n))
                        .collect(),
                    p50_ms: s.p50_ms,
                    p99_ms: s.p99_ms,
                })
                .collect(),
            thresholds: Vec::new(),
            aborted: None,
            // Stopped, not interrupted: nothing succeeding is the run's result.
            interrupted: out.interrupted && stopped.is_none(),
            stopped,
            first_errors,
            delivery: delivery
                .iter()
                .filter_map(|(i, d)| scenario.fleets.get(*i).map(|f| super::DeliveryStats::of(f.name(), d)))
                .collect(),
            backend,
            start,
            shard,
            merged: None,
        };
        report.thresholds = scenario
            .thresholds
            .all()
            .map(|(t, abort)| match aborted.as_ref().filter(|(_, fired)| abort && fired.expr == t.expr()) {
                Some((_, result)) => result.clone(),
                None => report.check(t, abort),
            })
            .collect();
        report.aborted = aborted.map(|(aborted, _)| aborted);
        report
    }
}
