//! Reports: the JSON report (`fleetstorm.report/v1`, schema in
//! `schemas/report-v1.schema.json`), the terminal summary, and writing
//! files whole or not at all.
//!
//! A report carries, for the run and for each fleet, the counters, the
//! offered and achieved rates, percentiles of latency (from each
//! heartbeat's intended time), service time (from the actual send) and
//! schedule lag, and the histograms themselves (base64 of the HdrHistogram
//! V2 + DEFLATE encoding) so that reports can be merged exactly later.

pub mod hlog;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod merge;
pub(crate) mod plots;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::RunOutput;
use crate::gate::ThresholdResult;
use crate::scenario::{Arrival, Scenario, StartMode};
use crate::stats::{self, CLASSES, Freshness, Percentiles, Recorder};
use std::time::Duration;

pub const SCHEMA: &str = "fleetstorm.report/v1";

/// Schedule lag p99 above which the generator is said to have fallen behind.
pub const KEPT_UP_LAG_P99_MS: f64 = 10.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub scenario: ScenarioSummary,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// The scheduling window run, in seconds (shorter than planned if interrupted).
    pub duration_s: f64,
    /// Until the last heartbeat in flight ended.
    pub elapsed_s: f64,
    /// Building and scheduling every device, before the clock started.
    pub startup_s: f64,
    pub interrupted: bool,
    pub generator: GeneratorHealth,
    pub totals: Stats,
    pub fleets: Vec<Stats>,
    /// Per fleet and agent version, when the scenario asks for
    /// `breakdown = ["agent_version"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cohorts: Vec<Cohort>,
    pub timeline: Vec<SecondStats>,
    /// The scenario's thresholds and how each fared.
    #[serde(default)]
    pub thresholds: Vec<ThresholdResult>,
    /// Set when an abort threshold stopped the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Aborted>,
    /// The first error message of each failure class, as the transport saw it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub first_errors: BTreeMap<String, String>,
    /// The built-in backend's own counts at the end, when it was the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<serde_json::Value>,
    /// A synchronized start (`--start-at`): the instant, and how late the
    /// clock started after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartInfo>,
    /// Set in a shard's report (`--shard I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// Set in a report merged from shards (`fleetstorm merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<MergedFrom>,
}

/// When a run was told to start, and how late it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartInfo {
    /// RFC 3339, UTC.
    pub at: String,
    pub lag_ms: f64,
}

/// Which shard of which run a report is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: u32,
    pub count: u32,
    /// The scenario as run, hashed (see `shard::scenario_hash`): equal in
    /// every shard of one run.
    pub scenario_hash: String,
}

/// The shards a merged report was added up from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedFrom {
    pub shards: u32,
    pub scenario_hash: String,
    /// What the merge could not vouch for (shards that started apart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The results of one fleet's devices on one agent version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cohort {
    pub fleet: String,
    pub agent_version: String,
    pub stats: Stats,
}

/// Which abort threshold stopped a run, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aborted {
    pub expr: String,
    pub actual_text: String,
    /// Seconds into the run.
    pub at_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    pub name: String,
    pub seed: u64,
    pub planned_duration_s: f64,
    pub target: TargetSummary,
    pub fleets: Vec<FleetSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSummary {
    pub url: String,
    pub path: String,
    pub timeout_ms: f64,
    pub connections: String,
    /// Header values as written in the scenario: values read from the
    /// environment appear as their `${env:NAME}` placeholder, never in clear.
    pub headers: BTreeMap<String, String>,
    /// `HTTP/1.1` or `HTTP/2`.
    #[serde(default = "http11")]
    pub http: String,
    /// How the server's certificate is checked, on https targets: `platform
    /// roots`, `CA file PATH`, or `INSECURE (not verified)`; with `mutual
    /// TLS` when a client certificate is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// `SERVICE/REGION` when requests are signed with SigV4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<String>,
    /// Local addresses connections leave from, when set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_addresses: Vec<String>,
}

fn http11() -> String {
    "HTTP/1.1".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetSummary {
    pub name: String,
    pub devices: u64,
    pub interval_s: f64,
    pub offered_rate: f64,
    pub jitter: f64,
    pub start: String,
    pub ramp_up_s: f64,
    pub arrival: String,
    pub stale_after_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorHealth {
    pub kept_up: bool,
    pub schedule_lag_p99_ms: f64,
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub scheduled: u64,
    pub sent: u64,
    pub missed: u64,
    pub ok: u64,
    pub failed: u64,
    /// Retries sent: attempts beyond each heartbeat's first (so the
    /// backend received `sent + retries` requests).
    #[serde(default)]
    pub retries: u64,
    /// Heartbeats that succeeded after at least one retry.
    #[serde(default)]
    pub recovered: u64,
    /// Connections opened.
    #[serde(default)]
    pub connects: u64,
    /// Failures by class.
    pub errors: BTreeMap<String, u64>,
    pub status_codes: BTreeMap<String, u64>,
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub latency_ms: Percentiles,
    pub service_time_ms: Percentiles,
    pub schedule_lag_ms: Percentiles,
    /// TLS handshake times of the connections opened (https targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshake_ms: Option<Percentiles>,
    /// How fresh the devices stayed (absent in reports of live snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<FreshnessStats>,
    pub histograms: Histograms,
}

/// Device freshness: each device's largest gap without a successful
/// heartbeat, over the devices that were due at least once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FreshnessStats {
    pub devices: u64,
    /// The fleet's staleness bound (absent in the run's totals, where
    /// fleets may differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after_s: Option<f64>,
    pub stale_devices: u64,
    pub never_ok: u64,
    /// Percentiles over devices of each one's largest gap.
    pub max_gap_ms: Percentiles,
    /// The histogram of largest gaps (µs), encoded like the others.
    pub histogram: String,
}

impl FreshnessStats {
    fn of(f: &Freshness, stale_after: Option<Duration>) -> FreshnessStats {
        FreshnessStats {
            devices: f.devices,
            stale_after_s: stale_after.map(|d| d.as_secs_f64()),
            stale_devices: f.stale,
            never_ok: f.never_ok,
            max_gap_ms: Percentiles::of(&f.max_gap),
            histogram: stats::encode_histogram(&f.max_gap),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    pub latency: String,
    pub service_time: String,
    pub schedule_lag: String,
    /// TLS handshakes, when connections were opened over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshake: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondStats {
    /// Seconds since the start.
    pub t: u64,
    /// Seconds covered: 1, except for entries folded in long runs.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub width_s: u64,
    pub offered: u64,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub missed: u64,
    /// Retries sent in this second.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
    /// Failures by class, those above zero.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Stats {
    /// The three latency-like series with their names, as tables show them.
    pub fn series(&self) -> [(&'static str, &Percentiles); 3] {
        [
            ("latency", &self.latency_ms),
            ("service time", &self.service_time_ms),
            ("schedule lag", &self.schedule_lag_ms),
        ]
    }

    /// Failed heartbeats over those that ended.
    pub fn error_rate(&self) -> f64 {
        let ended = self.ok + self.failed;
        if ended == 0 { 0.0 } else { self.failed as f64 / ended as f64 }
    }

    /// The row name in tables: the fleet's, or TOTAL.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("TOTAL")
    }

    /// Statistics of a run so far, for checks during it: no freshness and
    /// no encoded histograms.
    pub fn live(name: Option<String>, r: &Recorder, seconds: f64) -> Stats {
        stats_of(name, r, seconds, false)
    }
}

fn stats_of(name: Option<String>, r: &Recorder, seconds: f64, with_histograms: bool) -> Stats {
    let encode = |h| if with_histograms { stats::encode_histogram(h) } else { String::new() };
    let c = &r.counters;
    let rate = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
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
        errors: CLASSES.iter().zip(c.classes).skip(1).map(|(k, n)| (k.to_string(), n)).collect(),
        status_codes: c.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        offered_rate: rate(c.scheduled),
        achieved_rate: rate(c.sent),
        latency_ms: Percentiles::of(&r.latency),
        service_time_ms: Percentiles::of(&r.service_time),
        schedule_lag_ms: Percentiles::of(&r.schedule_lag),
        tls_handshake_ms: (!r.tls_handshake.is_empty()).then(|| Percentiles::of(&r.tls_handshake)),
        freshness: None,
        histograms: Histograms {
            latency: encode(&r.latency),
            service_time: encode(&r.service_time),
            schedule_lag: encode(&r.schedule_lag),
            tls_handshake: (with_histograms && !r.tls_handshake.is_empty())
                .then(|| stats::encode_histogram(&r.tls_handshake)),
        },
    }
}

/// The generator's health from the run's schedule lag p99.
fn generator_health(lag_p99: f64) -> GeneratorHealth {
    let kept_up = lag_p99 <= KEPT_UP_LAG_P99_MS;
    let verdict = if kept_up {
        format!("kept up: schedule lag p99 {lag_p99:.1} ms")
    } else {
        format!(
            "fell behind: schedule lag p99 {lag_p99:.1} ms (limit {KEPT_UP_LAG_P99_MS} ms) — results understate the backend's latency"
        )
    };
    GeneratorHealth { kept_up, schedule_lag_p99_ms: lag_p99, verdict }
}

impl Report {
    /// Builds the report of a run of `scenario` (as run: overrides applied).
    pub fn new(
        scenario: &Scenario,
        seed: u64,
        target_url: &str,
        out: &RunOutput,
        backend: Option<serde_json::Value>,
    ) -> Report {
        let seconds = out.scheduled_for.as_secs_f64();
        let mut total = Recorder::default();
        for f in &out.fleets {
            total.add(f);
        }
        let mut total_freshness = Freshness::default();
        for f in &out.freshness {
            total_freshness.add(f);
        }
        let generator = generator_health(Percentiles::of(&total.schedule_lag).p99);
        let t = &scenario.target;
        Report {
            schema: SCHEMA.to_string(),
            scenario: ScenarioSummary {
                name: scenario.name.clone(),
                seed,
                planned_duration_s: scenario.duration.as_secs_f64(),
                target: TargetSummary {
                    url: target_url.to_string(),
                    path: t.path.clone(),
                    timeout_ms: t.timeout.as_secs_f64() * 1000.0,
                    connections: t.connections.to_string(),
                    headers: t.headers.iter().map(|h| (h.name.to_string(), h.written.clone())).collect(),
                    http: t.http.to_string(),
                    tls: matches!(t.url, crate::scenario::TargetUrl::Http { tls: true, .. }).then(|| {
                        let check = match (&t.tls.ca, t.tls.insecure) {
                            (_, true) => "INSECURE (not verified)".to_string(),
                            (Some(ca), false) => format!("CA file {}", ca.display()),
                            (None, false) => "platform roots".to_string(),
                        };
                        if t.tls.cert.is_some() { format!("{check}, mutual TLS") } else { check }
                    }),
                    sigv4: t.sigv4.as_ref().map(|s| format!("{}/{}", s.service, s.region)),
                    source_addresses: t.source_addresses.iter().map(|a| a.to_string()).collect(),
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
            elapsed_s: out.elapsed.as_secs_f64(),
            startup_s: out.startup.as_secs_f64(),
            interrupted: out.interrupted,
            generator,
            totals: Stats {
                freshness: Some(FreshnessStats::of(&total_freshness, None)),
                ..stats_of(None, &total, seconds, true)
            },
            fleets: scenario
                .fleets
                .iter()
                .zip(&out.fleets)
                .zip(&out.freshness)
                .map(|((f, r), fresh)| Stats {
                    freshness: Some(FreshnessStats::of(fresh, Some(f.stale_after()))),
                    ..stats_of(Some(f.name().to_string()), r, seconds, true)
                })
                .collect(),
            cohorts: scenario
                .fleets
                .iter()
                .zip(&out.cohorts)
                .flat_map(|(f, versions)| {
                    versions.iter().enumerate().filter_map(move |(v, r)| {
                        let r = r.as_ref()?;
                        let agent_version = f.profile.agent_versions.name(v as u16).to_string();
                        let name = format!("{}@{agent_version}", f.name());
                        Some(Cohort {
                            fleet: f.name().to_string(),
                            agent_version,
                            stats: stats_of(Some(name), r, seconds, true),
                        })
                    })
                })
                .collect(),
            timeline: out
                .timeline
                .iter()
                .map(|s| SecondStats {
                    t: s.start_s,
                    width_s: s.width_s,
                    offered: s.scheduled,
                    sent: s.sent,
                    ok: s.ok,
                    failed: s.failed,
                    missed: s.missed,
                    retries: s.retries,
                    errors: CLASSES[1..]
                        .iter()
                        .zip(s.errors)
                        .filter(|(_, n)| *n > 0)
                        .map(|(k, n)| (k.to_string(), n))
                        .collect(),
                    p50_ms: s.p50_ms,
                    p99_ms: s.p99_ms,
                })
                .collect(),
            thresholds: Vec::new(),
            aborted: None,
            first_errors: BTreeMap::new(),
            backend,
            start: None,
            shard: None,
            merged: None,
        }
    }

    /// Reads a report written by `run --out` (or `merge`), checking its schema tag.
    pub fn load(path: &Path) -> Result<Report, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(format!("{}: a {other} report; this fleetstorm reads {SCHEMA}", path.display()));
            }
            None => return Err(format!("{}: not a fleetstorm report (no \"schema\" member)", path.display())),
        }
        let mut de = serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| format!("{}: not a valid {SCHEMA} report at {}: {}", path.display(), e.path(), e.inner()))
    }

    /// Each fleet's statistics, then the run's totals: the rows of a table.
    pub fn rows(&self) -> impl Iterator<Item = &Stats> {
        self.fleets.iter().chain(std::iter::once(&self.totals))
    }

    /// How many thresholds failed.
    pub fn failed_thresholds(&self) -> usize {
        self.thresholds.iter().filter(|t| !t.ok).count()
    }

    /// Whether every end threshold held and no abort threshold fired.
    pub fn thresholds_passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.ok) && self.aborted.is_none()
    }

    /// The terminal summary: a table per fleet and in total, and the
    /// verdict on the generator's own health.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let s = &self.scenario;
        let _ = writeln!(
            out,
            "fleetstorm run \"{}\" against {}{} ({}, seed {}){}",
            s.name,
            s.target.url,
            s.target.path,
            s.target.connections,
            s.seed,
            if self.interrupted { " — INTERRUPTED" } else { "" }
        );
        if let Some(shard) = &self.shard {
            let _ = writeln!(out, "shard {}/{} (scenario hash {:.12})", shard.index, shard.count, shard.scenario_hash);
        }
        if let Some(m) = &self.merged {
            let _ = writeln!(out, "merged from {} shards (scenario hash {:.12})", m.shards, m.scenario_hash);
        }
        if let Some(start) = &self.start {
            let _ = writeln!(out, "started at {} ({:.1} ms late)", start.at, start.lag_ms);
        }
        let _ = writeln!(
            out,
            "{}{}{}",
            s.target.http,
            s.target.tls.as_ref().map_or(String::new(), |t| format!(", TLS: {t}")),
            s.target.sigv4.as_ref().map_or(String::new(), |v| format!(", SigV4 {v}"))
        );
        if s.target.tls.as_deref().is_some_and(|t| t.starts_with("INSECURE")) {
            let _ = writeln!(out, "WARNING: tls.insecure: the server's certificate was not verified");
        }
        let _ = writeln!(
            out,
            "ran {:.1} s of {:.1} s planned; started {} after {:.2} s building devices\n",
            self.duration_s, s.planned_duration_s, self.started_at, self.startup_s
        );
        let rows: Vec<&Stats> = self.rows().collect();
        let name = Stats::label;
        let width = rows.iter().map(|r| name(r).len()).max().unwrap_or(5).max(5);
        let _ = writeln!(
            out,
            "{:<width$}  {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "fleet", "offered/s", "achieved/s", "scheduled", "sent", "missed", "ok", "failed"
        );
        for r in &rows {
            let _ = writeln!(
                out,
                "{:<width$}  {:>10.1} {:>10.1} {:>10} {:>9} {:>9} {:>9} {:>9}",
                name(r),
                r.offered_rate,
                r.achieved_rate,
                r.scheduled,
                r.sent,
                r.missed,
                r.ok,
                r.failed
            );
        }
        let _ = writeln!(
            out,
            "\n{:<width$}  {:<14} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "fleet", "(ms)", "p50", "p90", "p99", "p99.9", "max"
        );
        for r in &rows {
            for (what, p) in r.series() {
                let _ = writeln!(
                    out,
                    "{:<width$}  {:<14} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    name(r),
                    what,
                    p.p50,
                    p.p90,
                    p.p99,
                    p.p999,
                    p.max
                );
            }
        }
        let failures: Vec<String> =
            self.totals.errors.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
        let statuses: Vec<String> = self.totals.status_codes.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        let _ = writeln!(out, "\nfailures: {}", if failures.is_empty() { "none".into() } else { failures.join(", ") });
        let _ = writeln!(out, "statuses: {}", if statuses.is_empty() { "none".into() } else { statuses.join(", ") });
        if self.totals.retries > 0 {
            let t = &self.totals;
            let _ = writeln!(
                out,
                "retries: {} ({:.1}% on top of the {} heartbeats sent: the backend got {} requests); {} heartbeats succeeded after retrying",
                t.retries,
                100.0 * t.retries as f64 / t.sent.max(1) as f64,
                t.sent,
                t.sent + t.retries,
                t.recovered
            );
        }
        if !self.cohorts.is_empty() {
            let _ = writeln!(out, "\nby agent version:");
            for c in &self.cohorts {
                let s = &c.stats;
                let _ = writeln!(
                    out,
                    "  {:<20} {:<16} sent {:>9}  ok {:>9}  failed {:>7}  p50 {:>8.2} ms  p99 {:>8.2} ms",
                    c.fleet, c.agent_version, s.sent, s.ok, s.failed, s.latency_ms.p50, s.latency_ms.p99
                );
            }
        }
        for (class, message) in &self.first_errors {
            let _ = writeln!(out, "first {class} error: {message}");
        }
        let t = &self.totals;
        match &t.tls_handshake_ms {
            Some(h) => {
                let _ = writeln!(
                    out,
                    "connections opened: {}; TLS handshake p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    t.connects, h.p50, h.p99, h.max
                );
            }
            None => {
                let _ = writeln!(out, "connections opened: {}", t.connects);
            }
        }
        let _ = writeln!(out, "generator: {}", self.generator.verdict);
        if let Some(f) = &self.totals.freshness {
            let _ = writeln!(
                out,
                "freshness: {} of {} devices stale, {} never succeeded; largest gap p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                f.stale_devices, f.devices, f.never_ok, f.max_gap_ms.p50, f.max_gap_ms.p99, f.max_gap_ms.max
            );
        }
        if let Some(a) = &self.aborted {
            let _ = writeln!(out, "ABORTED at {:.1} s: {} (was {})", a.at_s, a.expr, a.actual_text);
        }
        if !self.thresholds.is_empty() {
            let failed = self.failed_thresholds();
            let _ = writeln!(
                out,
                "\nthresholds: {}",
                if failed == 0 {
                    format!("all {} passed", self.thresholds.len())
                } else {
                    format!("{failed} of {} FAILED", self.thresholds.len())
                }
            );
            for t in &self.thresholds {
                let _ = writeln!(
                    out,
                    "  {}  {}{}  (actual {})",
                    if t.ok { "pass" } else { "FAIL" },
                    t.expr,
                    if t.abort { " [abort]" } else { "" },
                    t.actual_text
                );
            }
        }
        out
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn one() -> u64 {
    1
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

/// Checks that `path` can be written, as [`write_atomically`] will: a
/// probe file is created in its directory and removed.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if path.is_dir() {
        return Err(std::io::Error::other("it is a directory"));
    }
    let probe = dir.join(format!(".fleetstorm-probe-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file in
/// the same directory, synced, then renamed over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("report");
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
