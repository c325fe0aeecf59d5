//! Reports: the JSON report (`fleetstorm.report/v2`, schema in
//! `schemas/report-v2.schema.json`; v1 reports are still read) and the
//! terminal summary. Where the files go is [`crate::output`]'s.
//!
//! A report carries, for the run and for each fleet, the counters, the
//! offered and achieved rates, percentiles of latency (from each
//! heartbeat's intended time), service time (from the actual send) and
//! schedule lag, and the histograms themselves (base64 of the HdrHistogram
//! V2 + DEFLATE encoding) so that reports can be merged exactly later.

mod gates;
pub mod hlog;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod merge;
pub(crate) mod plots;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::RunOutput;
use crate::fleet::{Arrival, StartMode};
use crate::gate::ThresholdResult;
use crate::scenario::Scenario;
use crate::stats::{self, CLASSES, Freshness, Percentiles, Recorder};
use std::time::Duration;

pub const SCHEMA: &str = "fleetstorm.report/v2";

/// The schema of reports written before connection wait, lateness,
/// pending retries, p75 and p95 (read still: what they lack is filled from
/// their histograms, or left at zero).
pub const SCHEMA_V1: &str = "fleetstorm.report/v1";

/// Schedule lag p99 above which the generator is said to have fallen behind.
pub const KEPT_UP_LAG_P99_MS: f64 = 10.0;

/// The share of the time a generator thread may want a CPU and still be
/// said to keep up: one that always has work takes answers late, and then
/// every time it measures includes its own queueing.
pub const KEPT_UP_DEMAND: f64 = 0.9;

/// Connection wait p99 above which heartbeats are said to have queued for
/// a pooled connection (and the pool verdict says why).
pub const POOL_WAIT_P99_MS: f64 = 10.0;

/// How far the service time must rise over its light-load value for a
/// full pool to be the backend's slowing down rather than the pool's size.
pub const SERVICE_TIME_ROSE_FACTOR: f64 = 2.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub scenario: ScenarioSummary,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// The scheduling window run, in seconds (shorter than planned if interrupted).
    pub duration_s: f64,
    /// The time sending took over that window, in seconds: longer than
    /// `duration_s` when heartbeats queued for a pooled connection went
    /// after the end. Achieved rates are over this. (Absent in v1 reports:
    /// `duration_s`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_s: Option<f64>,
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
    /// The scenario as run, hashed (see `Scenario::hash`): equal in
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
    /// Set when the command line scaled the file's fleets: the counts and
    /// rates of the report are the scaled run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleSummary>,
    pub target: TargetSummary,
    pub fleets: Vec<FleetSummary>,
}

/// How a run was scaled from its scenario file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaleSummary {
    /// `--devices-scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<f64>,
    /// `--rate-scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

impl ScaleSummary {
    /// How the summary says it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.devices {
            parts.push(format!("devices ×{d} (--devices-scale)"));
        }
        if let Some(r) = self.rate {
            parts.push(format!("rates ×{r} (--rate-scale)"));
        }
        format!("SCALED from the scenario file: {}; the counts and rates here are the scaled run's", parts.join(", "))
    }
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
    /// Local addresses connections leave from, when set (or spread).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_addresses: Vec<String>,
    /// The source addresses were spread over loopback by fleetstorm (the
    /// scenario named none; its per-device connections needed more ports
    /// than one address has).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sources_spread: bool,
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
    /// Schedule lag p99 within [`KEPT_UP_LAG_P99_MS`] and no generator
    /// thread saturated (see `busiest_thread`): the generator's own timing
    /// (waiting for a pooled connection is not in it).
    pub kept_up: bool,
    pub schedule_lag_p99_ms: f64,
    /// The share of the measured time the busiest generator thread wanted a
    /// CPU (running or waiting to run); above [`KEPT_UP_DEMAND`] it could
    /// not take answers as they came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busiest_thread: Option<f64>,
    pub verdict: String,
    /// Why heartbeats waited for a pooled connection, when the target has
    /// a pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolVerdict>,
    /// The results understate the backend: the generator fell behind, or
    /// the pool was too small for the offered rate.
    #[serde(default)]
    pub understates_backend: bool,
}

/// What limited a run that used a connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolLimit {
    /// Heartbeats did not queue for connections (wait p99 within
    /// [`POOL_WAIT_P99_MS`]).
    None,
    /// They queued because the backend slowed down: its limit.
    Backend,
    /// They queued at a flat service time: the pool is too small, a
    /// client-side limit.
    Pool,
    /// They queued although the pool suffices on average (Little's law):
    /// bursts of due heartbeats, or answers taken late.
    Bursts,
    /// They queued, and no light-load service time was measured to tell.
    Unknown,
}

/// The pool verdict: from what was measured, whether heartbeats waited
/// for a pooled connection, and whose limit that was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolVerdict {
    pub limit: PoolLimit,
    /// The pool's connections (all shards' together in a merged report).
    pub connections: u64,
    /// Heartbeats that waited for a connection.
    pub waited: u64,
    pub connection_wait_p99_ms: f64,
    pub service_time_p50_ms: f64,
    /// Service time p50 of exchanges sent while at most half the pool was
    /// busy: the backend under light load from this generator.
    pub light_load_service_time_p50_ms: Option<f64>,
    /// Connections the offered rate needs at the observed mean service
    /// time (Little's law).
    pub needed_connections: u64,
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
    /// Heartbeats sent after their intended time because their device was
    /// busy with the previous one or they waited for a pooled connection.
    #[serde(default)]
    pub late: u64,
    /// Heartbeats that waited for a pooled connection.
    #[serde(default)]
    pub waited: u64,
    /// Heartbeats whose retry was still waiting when the run ended: sent,
    /// neither ok nor failed, and out of the error rate.
    #[serde(default)]
    pub retry_pending: u64,
    /// Failures by class.
    pub errors: BTreeMap<String, u64>,
    pub status_codes: BTreeMap<String, u64>,
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub latency_ms: Percentiles,
    pub service_time_ms: Percentiles,
    pub schedule_lag_ms: Percentiles,
    /// From when the generator got to a heartbeat to when it had a
    /// connection (a full pool's wait; zero without a pool).
    #[serde(default)]
    pub connection_wait_ms: Percentiles,
    /// How late the late heartbeats went, from their intended time.
    #[serde(default)]
    pub lateness_ms: Percentiles,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_wait: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness: Option<String>,
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
    /// The latency-like series with their names, as tables show them:
    /// latency, service time, schedule lag and connection wait always;
    /// lateness when a heartbeat was late.
    pub fn series(&self) -> Vec<(&'static str, &Percentiles)> {
        let mut out = vec![
            ("latency", &self.latency_ms),
            ("service time", &self.service_time_ms),
            ("schedule lag", &self.schedule_lag_ms),
            ("connection wait", &self.connection_wait_ms),
        ];
        if self.late > 0 {
            out.push(("lateness", &self.lateness_ms));
        }
        out
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
        stats_of(name, r, Span::same(seconds), false)
    }

    /// Fills the percentiles a v1 report lacks (p75, p95) from its
    /// histograms; those without a histogram stay as read.
    fn fill_from_histograms(&mut self) {
        let h = &self.histograms;
        let fill = |p: &mut Percentiles, text: Option<&String>| {
            if p.lacks_p75_p95()
                && let Some(decoded) = text.and_then(|t| stats::decode_histogram(t).ok())
            {
                let full = Percentiles::of(&decoded);
                p.p75 = full.p75;
                p.p95 = full.p95;
            }
        };
        fill(&mut self.latency_ms, Some(&h.latency));
        fill(&mut self.service_time_ms, Some(&h.service_time));
        fill(&mut self.schedule_lag_ms, Some(&h.schedule_lag));
        fill(&mut self.connection_wait_ms, h.connection_wait.as_ref());
        fill(&mut self.lateness_ms, h.lateness.as_ref());
        if let Some(t) = self.tls_handshake_ms.as_mut() {
            fill(t, h.tls_handshake.as_ref());
        }
        if let Some(f) = self.freshness.as_mut() {
            let histogram = f.histogram.clone();
            if f.max_gap_ms.lacks_p75_p95()
                && let Ok(decoded) = stats::decode_histogram(&histogram)
            {
                let full = Percentiles::of(&decoded);
                f.max_gap_ms.p75 = full.p75;
                f.max_gap_ms.p95 = full.p95;
            }
        }
    }
}

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

fn stats_of(name: Option<String>, r: &Recorder, span: Span, with_histograms: bool) -> Stats {
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
        errors: CLASSES.iter().zip(c.classes).skip(1).map(|(k, n)| (k.to_string(), n)).collect(),
        status_codes: c.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        offered_rate: per(c.scheduled, span.scheduled_s),
        achieved_rate: per(c.sent, span.sending_s),
        latency_ms: Percentiles::of(&r.latency),
        service_time_ms: Percentiles::of(&r.service_time),
        schedule_lag_ms: Percentiles::of(&r.schedule_lag),
        connection_wait_ms: Percentiles::of(&r.connection_wait),
        lateness_ms: Percentiles::of(&r.lateness),
        tls_handshake_ms: (!r.tls_handshake.is_empty()).then(|| Percentiles::of(&r.tls_handshake)),
        freshness: None,
        histograms: Histograms {
            latency: encode(&r.latency),
            service_time: encode(&r.service_time),
            schedule_lag: encode(&r.schedule_lag),
            connection_wait: with_histograms.then(|| stats::encode_histogram(&r.connection_wait)),
            lateness: with_histograms.then(|| stats::encode_histogram(&r.lateness)),
            tls_handshake: (with_histograms && !r.tls_handshake.is_empty())
                .then(|| stats::encode_histogram(&r.tls_handshake)),
        },
    }
}

/// The generator's health from the run's schedule lag p99, and the pool
/// verdict when there is one.
fn generator_health(lag_p99: f64, busiest_thread: Option<f64>, pool: Option<PoolVerdict>) -> GeneratorHealth {
    let on_time = lag_p99 <= KEPT_UP_LAG_P99_MS;
    let saturated = busiest_thread.filter(|d| *d > KEPT_UP_DEMAND);
    let kept_up = on_time && saturated.is_none();
    let verdict = match (on_time, saturated) {
        (true, None) => format!("kept up: schedule lag p99 {lag_p99:.1} ms"),
        (false, _) => format!(
            "fell behind: schedule lag p99 {lag_p99:.1} ms (limit {KEPT_UP_LAG_P99_MS} ms) — results understate the backend's latency"
        ),
        (true, Some(d)) => format!(
            "fell behind: its busiest thread wanted a CPU {:.0}% of the time (limit {:.0}%), so it took answers late \
             and the latencies, service times and connection waits it measured include its own queueing (schedule \
             lag p99 {lag_p99:.1} ms) — results understate the backend",
            d * 100.0,
            KEPT_UP_DEMAND * 100.0
        ),
    };
    let understates_backend = !kept_up || pool.as_ref().is_some_and(|p| p.limit == PoolLimit::Pool);
    GeneratorHealth { kept_up, schedule_lag_p99_ms: lag_p99, busiest_thread, verdict, pool, understates_backend }
}

impl PoolVerdict {
    /// Judges a pool of `connections` from a run's totals and the service
    /// time p50 it had under light load (`None` if nothing was sent so).
    ///
    /// Heartbeats queued for a connection (wait p99 above
    /// [`POOL_WAIT_P99_MS`]) either because the backend slowed down (its
    /// service time p50 rose [`SERVICE_TIME_ROSE_FACTOR`] times over its
    /// light-load value: every connection was busy waiting on it) or
    /// because the pool was too small for the offered rate at a service
    /// time that stayed flat. By Little's law the rate needs `offered ×
    /// mean service time` connections.
    pub fn judge(connections: u64, totals: &Stats, light_load_p50_ms: Option<f64>) -> PoolVerdict {
        let wait_p99 = totals.connection_wait_ms.p99;
        let service_p50 = totals.service_time_ms.p50;
        let needed = (totals.offered_rate * totals.service_time_ms.mean / 1000.0).ceil().max(1.0) as u64;
        let with_headroom = (needed as f64 / 0.7).ceil() as u64;
        let rose = light_load_p50_ms.map(|light| service_p50 >= SERVICE_TIME_ROSE_FACTOR * light);
        let waited = totals.waited;
        let rate = crate::units::thousands(totals.offered_rate.round() as u64);
        let (limit, verdict) = if wait_p99 <= POOL_WAIT_P99_MS {
            (
                PoolLimit::None,
                format!("the pool of {connections} connections kept up: connection wait p99 {wait_p99:.2} ms"),
            )
        } else {
            match (rose, light_load_p50_ms) {
                // Little's law says the pool suffices for the average rate.
                _ if needed <= connections => (
                    PoolLimit::Bursts,
                    format!(
                        "{waited} heartbeats waited for a connection (wait p99 {wait_p99:.1} ms) although the pool \
                         suffices on average: at the observed service time (p50 {service_p50:.2} ms) the offered \
                         {rate}/s needs {needed} of its {connections} connections; bursts of due heartbeats, or \
                         answers taken late"
                    ),
                ),
                (Some(true), Some(light)) => (
                    PoolLimit::Backend,
                    format!(
                        "{waited} heartbeats waited for one of the pool's {connections} connections (wait p99 \
                         {wait_p99:.1} ms) because the backend slowed down: service time p50 rose from {light:.2} ms \
                         (pool at most half busy) to {service_p50:.2} ms — the backend's limit, which is what this \
                         run measures"
                    ),
                ),
                (Some(false), Some(light)) => (
                    PoolLimit::Pool,
                    format!(
                        "the pool of {connections} connections is too small for the offered {rate}/s at the observed \
                         service time (p50 {service_p50:.2} ms, {light:.2} ms under light load: flat): \
                         {waited} heartbeats waited for a connection (wait p99 {wait_p99:.1} ms); the rate needs at \
                         least {needed} connections (Little's law), {with_headroom} with 30% headroom — a \
                         client-side limit: results understate the backend"
                    ),
                ),
                _ => (
                    PoolLimit::Unknown,
                    format!(
                        "{waited} heartbeats waited for one of the pool's {connections} connections (wait p99 \
                         {wait_p99:.1} ms); no exchange ran with the pool at most half busy, so whether the backend \
                         slowed down cannot be told; at the observed service time the rate needs {needed} connections"
                    ),
                ),
            }
        };
        PoolVerdict {
            limit,
            connections,
            waited,
            connection_wait_p99_ms: wait_p99,
            service_time_p50_ms: service_p50,
            light_load_service_time_p50_ms: light_load_p50_ms,
            needed_connections: needed,
            verdict,
        }
    }
}

/// The light-load service time p50 of a recorder, in ms, if it has any.
fn light_load_p50(r: &Recorder) -> Option<f64> {
    (!r.light_service_time.is_empty()).then(|| Percentiles::of(&r.light_service_time).p50)
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
                Some(PoolVerdict::judge(u64::from(n), &totals, light_load_p50(&total)))
            }
            _ => None,
        };
        let busiest = out.demand.iter().map(|d| d.share()).reduce(f64::max);
        let generator = generator_health(totals.schedule_lag_ms.p99, busiest, pool);
        Report {
            schema: SCHEMA.to_string(),
            scenario: ScenarioSummary {
                name: scenario.name.clone(),
                seed,
                planned_duration_s: scenario.duration.as_secs_f64(),
                scale: scenario
                    .scaled
                    .is_scaled()
                    .then_some(ScaleSummary { devices: scenario.scaled.devices, rate: scenario.scaled.rate }),
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
                    sources_spread: false,
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
            sending_s: Some(span.sending_s),
            elapsed_s: out.elapsed.as_secs_f64(),
            startup_s: out.startup.as_secs_f64(),
            interrupted: out.interrupted,
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
                        let agent_version = f.profile.agent_versions.name(v as u16).to_string();
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
        let schema = match value.get("schema").and_then(|s| s.as_str()) {
            Some(s @ (SCHEMA | SCHEMA_V1)) => s.to_string(),
            Some(other) => {
                return Err(format!(
                    "{}: a {other} report; this fleetstorm reads {SCHEMA} and {SCHEMA_V1}",
                    path.display()
                ));
            }
            None => return Err(format!("{}: not a fleetstorm report (no \"schema\" member)", path.display())),
        };
        let mut de = serde_json::Deserializer::from_str(&text);
        let mut report: Report = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| format!("{}: not a valid {schema} report at {}: {}", path.display(), e.path(), e.inner()))?;
        report.upgrade();
        Ok(report)
    }

    /// Brings a report read from an older schema to this one: percentiles
    /// it lacks are derived from its histograms, and its schema tag is
    /// this version's (it is written back as one).
    pub fn upgrade(&mut self) {
        for s in self.fleets.iter_mut().chain(std::iter::once(&mut self.totals)) {
            s.fill_from_histograms();
        }
        for c in &mut self.cohorts {
            c.stats.fill_from_histograms();
        }
        self.schema = SCHEMA.to_string();
    }

    /// The time sending took, in seconds (see [`Report::sending_s`]).
    pub fn sending_seconds(&self) -> f64 {
        self.sending_s.unwrap_or(self.duration_s).max(self.duration_s)
    }

    /// Each fleet's statistics, then the run's totals: the rows of a table.
    pub fn rows(&self) -> impl Iterator<Item = &Stats> {
        self.fleets.iter().chain(std::iter::once(&self.totals))
    }

    /// How long after the end of the schedule the last first attempt went,
    /// in seconds, when that lengthened sending noticeably (a pool's queue
    /// draining; more than 1% of the run or 50 ms).
    pub fn drain_lengthened(&self) -> Option<f64> {
        let extra = self.sending_seconds() - self.duration_s;
        (extra > 0.05_f64.max(0.01 * self.duration_s)).then_some(extra)
    }

    /// Why the run failed outright, whatever its thresholds: not one
    /// heartbeat succeeded (the target is down, refuses every connection
    /// or answers every heartbeat with an error), or none was due.
    pub fn no_success(&self) -> Option<String> {
        let t = &self.totals;
        if t.ok > 0 || self.interrupted || self.aborted.is_some() {
            return None;
        }
        Some(if t.scheduled == 0 {
            "no heartbeat was due in the run: nothing was measured".to_string()
        } else if t.sent == 0 {
            format!("not one of {} heartbeats was sent (all missed)", t.scheduled)
        } else {
            let failures: Vec<String> =
                t.errors.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
            format!(
                "not one of {} heartbeats sent succeeded ({})",
                t.sent,
                if failures.is_empty() { "no outcome".to_string() } else { failures.join(", ") }
            )
        })
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
        if let Some(scale) = &s.scale {
            let _ = writeln!(out, "{}", scale.describe());
        }
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
            "ran {:.1} s of {:.1} s planned; started {} after {:.2} s building devices",
            self.duration_s, s.planned_duration_s, self.started_at, self.startup_s
        );
        if let Some(lengthened) = self.drain_lengthened() {
            let _ = writeln!(
                out,
                "sending took {:.2} s: heartbeats queued for a pooled connection went up to {:.2} s after the end; \
                 achieved rates are over the {:.2} s",
                self.sending_seconds(),
                lengthened,
                self.sending_seconds()
            );
        }
        out.push('\n');
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
            "\n{:<width$}  {:<15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "fleet", "(ms)", "p50", "p75", "p90", "p95", "p99", "p99.9", "max"
        );
        for r in &rows {
            for (what, p) in r.series() {
                let _ = writeln!(
                    out,
                    "{:<width$}  {:<15} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    name(r),
                    what,
                    p.p50,
                    p.p75,
                    p.p90,
                    p.p95,
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
        if self.totals.retry_pending > 0 {
            let _ = writeln!(
                out,
                "retries pending at the end: {} heartbeats were waiting for a retry when the run ended: sent, \
                 neither ok nor failed, and left out of the error rate",
                self.totals.retry_pending
            );
        }
        // One fleet: its line says it all, without the same TOTAL line.
        let single = self.fleets.len() == 1;
        for r in rows.iter().filter(|r| !(single && r.name.is_none())) {
            if r.late > 0 {
                let _ = writeln!(
                    out,
                    "late: {} of {}'s {} heartbeats went after their intended time, held back by a busy device or \
                     a full pool (lateness p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)",
                    r.late,
                    name(r),
                    r.sent,
                    r.lateness_ms.p50,
                    r.lateness_ms.p99,
                    r.lateness_ms.max
                );
            }
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
        if let Some(pool) = &self.generator.pool {
            let _ = writeln!(out, "pool: {}", pool.verdict);
        }
        if let Some(why) = self.no_success() {
            let _ = writeln!(out, "FAILED: {why}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Outcome;

    /// Totals of a pooled run: `offered`/s for 10 s, every heartbeat
    /// answered in `service_ms`, waiting `wait_ms` for a connection.
    fn pooled(offered: f64, service_ms: u64, wait_ms: u64) -> Stats {
        let mut r = Recorder::default();
        for _ in 0..(offered * 10.0) as u64 {
            r.scheduled();
            r.sent(5, wait_ms * 1000);
            r.completed(Outcome::Status(200), (service_ms + wait_ms) * 1000, service_ms * 1000);
        }
        stats_of(None, &r.take(), Span::same(10.0), false)
    }

    #[test]
    fn a_full_pool_at_a_flat_service_time_is_too_small_and_says_how_many_it_needs() {
        // 5,000/s at 1 ms each needs 5 connections; the pool has 2.
        let v = PoolVerdict::judge(2, &pooled(5_000.0, 1, 400), Some(1.0));
        assert_eq!(v.limit, PoolLimit::Pool, "{}", v.verdict);
        assert_eq!(v.needed_connections, 5);
        assert!(v.verdict.contains("too small") && v.verdict.contains("at least 5 connections"), "{}", v.verdict);
        let health = generator_health(0.5, Some(0.3), Some(v));
        assert!(health.kept_up && health.understates_backend);
    }

    #[test]
    fn a_full_pool_whose_service_time_rose_is_the_backend_s_limit() {
        // Light load took 2 ms; saturated, every exchange waits 32 ms in
        // the backend's queue.
        let v = PoolVerdict::judge(64, &pooled(4_000.0, 32, 3_000), Some(2.0));
        assert_eq!(v.limit, PoolLimit::Backend, "{}", v.verdict);
        assert!(v.verdict.contains("backend slowed down") && v.verdict.contains("rose from 2.00 ms"), "{}", v.verdict);
        assert!(!generator_health(0.5, None, Some(v)).understates_backend);
    }

    #[test]
    fn a_pool_without_queueing_kept_up_and_unknown_light_load_says_so() {
        assert_eq!(PoolVerdict::judge(64, &pooled(1_000.0, 2, 0), Some(2.0)).limit, PoolLimit::None);
        let v = PoolVerdict::judge(64, &pooled(4_000.0, 32, 3_000), None);
        assert_eq!(v.limit, PoolLimit::Unknown);
        assert!(!generator_health(0.5, None, Some(v)).understates_backend);
    }

    #[test]
    fn v1_reports_are_read_with_p75_and_p95_from_their_histograms() {
        for file in ["report-v1.json", "report-v1-shard0.json"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file);
            let r = Report::load(&path).unwrap();
            assert_eq!(r.schema, SCHEMA, "upgraded");
            for s in r.rows() {
                let h = stats::decode_histogram(&s.histograms.latency).unwrap();
                assert_eq!(s.latency_ms.p95, Percentiles::of(&h).p95);
                assert!(s.latency_ms.p75 <= s.latency_ms.p90 && s.latency_ms.p95 >= s.latency_ms.p90);
                assert_eq!((s.late, s.waited, s.retry_pending), (0, 0, 0));
            }
            assert_eq!(r.sending_seconds(), r.duration_s);
        }
    }
}
