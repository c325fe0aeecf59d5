//! Reports: the JSON report (`fleetstorm.report/v3`, schema in
//! `schemas/report-v3.schema.json`; v1 and v2 reports are still read, see
//! [`upgrade`]) and the terminal summary. Where the files go is
//! [`crate::output`]'s.
//!
//! Outcomes are protocol-neutral: `errors` counts the failures by class
//! ([`crate::stats::OutcomeClass`]) and `codes` the answers by protocol and
//! code (`codes.http."503"`).
//!
//! A report carries, for the run and for each fleet, the counters, the
//! offered and achieved rates, percentiles of latency (from each
//! heartbeat's intended time), service time (from the actual send) and
//! schedule lag, and the histograms themselves (base64 of the HdrHistogram
//! V2 + DEFLATE encoding) so that reports can be merged exactly later.

mod build;
pub use build::RunFacts;
mod cohorts;
mod gates;
pub mod hlog;
pub mod html;
pub mod junit;
pub mod markdown;
mod markup;
pub mod merge;
pub mod paint;
pub(crate) mod plots;
mod summary;
mod upgrade;
mod verdict;

pub(crate) use build::{Span, stats_of};
pub(crate) use verdict::generator_health;
pub use verdict::{
    GeneratorHealth, KEPT_UP_DEMAND, KEPT_UP_LAG_P99_MS, POOL_WAIT_P99_MS, PoolLimit, PoolLoad, PoolVerdict,
    SERVICE_TIME_ROSE_FACTOR,
};

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::gate::ThresholdResult;
use crate::stats::{self, Code, Freshness, OutcomeClass, Percentiles, Recorder};
use std::time::Duration;

pub const SCHEMA: &str = "fleetstorm.report/v3";

/// The schema of reports written before outcomes were classes and codes:
/// HTTP's classes (`http_4xx`, `http_5xx`) and `status_codes` (read still:
/// see [`upgrade`]).
pub const SCHEMA_V2: &str = "fleetstorm.report/v2";

/// The schema of reports written before connection wait, lateness,
/// pending retries, p75 and p95 (read still: what they lack is filled from
/// their histograms, or left at zero; their outcomes as v2's).
pub const SCHEMA_V1: &str = "fleetstorm.report/v1";

/// This fleetstorm's version and the commit it was built from, as
/// `--version` says it.
pub const VERSION: &str = env!("FLEETSTORM_VERSION");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    /// The fleetstorm that ran it, as `--version` says (absent in reports
    /// of fleetstorm before it said, and in a merge of shards that ran
    /// different versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleetstorm_version: Option<String>,
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
    /// Set when the run stopped early because nothing had succeeded
    /// (`stop_when_nothing_succeeds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
    /// The first error message of each failure class, as the transport saw it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub first_errors: BTreeMap<String, String>,
    /// End-to-end delivery of each fleet observed (`observe`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivery: Vec<DeliveryStats>,
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

/// A run stopped early: nothing had succeeded `after_s` into it, while
/// heartbeats had failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    /// `stop_when_nothing_succeeds`, in seconds.
    pub after_s: f64,
    /// When it stopped, in seconds into the run.
    pub at_s: f64,
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

impl ScenarioSummary {
    /// Where the run sent, for its headers: the target's URL and the
    /// SendHeartbeat path when a fleet sends there, and the other device
    /// profiles its fleets speak (each to its own paths). Every output
    /// names the target this way (summary, HTML, Markdown, JUnit,
    /// capacity), never as the URL and path alone.
    pub fn destination(&self) -> String {
        crate::wire::destination(&self.target.url, &self.target.path, self.fleets.iter().map(|f| f.profile))
    }
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
    /// The request path, on an HTTP target (none on an MQTT one: its
    /// fleets' topics are theirs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    pub timeout_ms: f64,
    pub connections: String,
    /// Header values as written in the scenario: values read from the
    /// environment appear as their `${env:NAME}` placeholder, never in clear.
    pub headers: BTreeMap<String, String>,
    /// `HTTP/1.1` or `HTTP/2`, on an HTTP target (a v1 or v2 report's
    /// target was HTTP's: read as HTTP/1.1 where it named none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// The MQTT version (`3.1.1`), on an MQTT target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<String>,
    /// How the server's certificate is checked, on https targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSummary>,
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

/// How a report says the server's certificate was checked: written as
/// `platform roots`, `CA file PATH` or `INSECURE (not verified)`, with
/// `, mutual TLS` when a client certificate was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSummary {
    pub check: TlsCheck,
    pub mutual: bool,
}

/// How the server's certificate was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsCheck {
    PlatformRoots,
    CaFile(String),
    /// `tls.insecure`: not at all.
    Insecure,
}

impl std::fmt::Display for TlsSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.check {
            TlsCheck::PlatformRoots => f.write_str("platform roots")?,
            TlsCheck::CaFile(path) => write!(f, "CA file {path}")?,
            TlsCheck::Insecure => f.write_str("INSECURE (not verified)")?,
        }
        if self.mutual {
            f.write_str(", mutual TLS")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for TlsSummary {
    type Err = String;

    fn from_str(text: &str) -> Result<TlsSummary, String> {
        let (check, mutual) = match text.strip_suffix(", mutual TLS") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let check = match check {
            "platform roots" => TlsCheck::PlatformRoots,
            "INSECURE (not verified)" => TlsCheck::Insecure,
            other => TlsCheck::CaFile(
                other.strip_prefix("CA file ").ok_or_else(|| format!("{text:?} is not a TLS check"))?.to_string(),
            ),
        };
        Ok(TlsSummary { check, mutual })
    }
}

impl Serialize for TlsSummary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TlsSummary {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
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
    /// The wire its devices spoke (reports from before profiles existed
    /// read as `sagemaker-edge`).
    #[serde(default)]
    pub profile: crate::wire::ProfileName,
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
    /// Ok heartbeats the protocol acknowledges nothing of (MQTT's QoS 0):
    /// written, untimed; the latencies are the others'.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unacknowledged: u64,
    /// Failures by class (every class but ok, by its name:
    /// [`OutcomeClass::as_str`]).
    pub errors: BTreeMap<String, u64>,
    /// Answers by protocol, then by the protocol's code (`http` → `503`).
    pub codes: BTreeMap<String, BTreeMap<String, u64>>,
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
    /// How long opening each device's session took (a session protocol's:
    /// TCP and MQTT's CONNECT to CONNACK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_open_ms: Option<Percentiles>,
    /// How fresh the devices stayed (absent in reports of live snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<FreshnessStats>,
    /// What the devices' idle sessions did between heartbeats (a session
    /// transport's keep-alives, inbound messages and closes by the far
    /// end); absent when nothing was counted (HTTP's connections do none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<crate::stats::SessionCounts>,
    pub histograms: Histograms,
}

/// What a fleet's observer saw of its messages end to end: each one the
/// broker took, delivered or not, timed from its intended time to its
/// delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStats {
    pub fleet: String,
    /// Messages the broker took (acknowledged at QoS 1, written at QoS 0).
    pub expected: u64,
    /// Of the messages, how many were delivered (each once).
    pub delivered: u64,
    /// The broker took them, and they never came.
    pub lost: u64,
    /// Deliveries of a message already delivered.
    pub duplicates: u64,
    /// Messages on the fleet's topics that were not this run's.
    pub foreign: u64,
    /// The observer's session broke before the end: what was not seen
    /// may not be lost.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub observer_broke: bool,
    /// Intended time to delivery.
    pub latency_ms: Percentiles,
    /// Its histogram (µs), encoded like the others.
    pub histogram: String,
}

impl DeliveryStats {
    pub fn of(fleet: &str, d: &crate::stats::Delivery) -> DeliveryStats {
        DeliveryStats {
            fleet: fleet.to_string(),
            expected: d.expected,
            delivered: d.delivered,
            lost: d.lost(),
            duplicates: d.duplicates,
            foreign: d.foreign,
            observer_broke: d.broken,
            latency_ms: Percentiles::of(&d.latency),
            histogram: stats::encode_histogram(&d.latency),
        }
    }
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
    /// One fleet's (with its staleness bound) or the run's freshness.
    pub fn of(f: &Freshness, stale_after: Option<Duration>) -> FreshnessStats {
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
    /// Sessions opened, for a session protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_open: Option<String>,
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
    /// Devices' sessions open at the end of the second (a session
    /// protocol's, such as MQTT's): how a fleet's sessions came up, went
    /// down in an outage or a broker's restart, and came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_open: Option<u64>,
    /// Devices' sessions opened (first openings and reopenings), and
    /// ended (lost, closed by the far end, or by their devices going
    /// silent), in the second; with `sessions_open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_opened: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_ended: Option<u64>,
}

impl Stats {
    /// Whether none of its heartbeats was timed: every one that ended was
    /// acknowledged by nothing (MQTT QoS 0), so it has no latency.
    pub fn untimed(&self) -> bool {
        self.unacknowledged > 0 && self.ok + self.failed == self.unacknowledged
    }

    /// The latency-like series with their names, as tables show them:
    /// latency and service time unless nothing was timed ([`Stats::untimed`]),
    /// schedule lag and connection wait always; lateness when a heartbeat
    /// was late.
    pub fn series(&self) -> Vec<(&'static str, &Percentiles)> {
        let mut out = Vec::new();
        if !self.untimed() {
            out.push(("latency", &self.latency_ms));
            out.push(("service time", &self.service_time_ms));
        }
        out.push(("schedule lag", &self.schedule_lag_ms));
        out.push(("connection wait", &self.connection_wait_ms));
        if self.late > 0 {
            out.push(("lateness", &self.lateness_ms));
        }
        out
    }

    /// Failures of `class`.
    pub fn errors_of(&self, class: OutcomeClass) -> u64 {
        self.errors.get(class.as_str()).copied().unwrap_or(0)
    }

    /// Answers with `code`.
    pub fn answers_with(&self, code: Code) -> u64 {
        self.codes.get(code.protocol()).and_then(|c| c.get(&code.value().to_string())).copied().unwrap_or(0)
    }

    /// The answers by code as one line, `http 200: 10, http 503: 2`.
    pub fn codes_line(&self) -> String {
        let all: Vec<String> = self
            .codes
            .iter()
            .flat_map(|(protocol, codes)| codes.iter().map(move |(code, n)| format!("{protocol} {code}: {n}")))
            .collect();
        if all.is_empty() { "none".to_string() } else { all.join(", ") }
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

/// A file that does not read as a report.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not JSON: {source}", path.display())]
    NotJson {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: a {schema} report; this fleetstorm reads {SCHEMA}, {SCHEMA_V2} and {SCHEMA_V1}", path.display())]
    OtherSchema { path: std::path::PathBuf, schema: String },
    #[error("{}: not a fleetstorm report (no \"schema\" member)", path.display())]
    NoSchema { path: std::path::PathBuf },
    #[error("{}: not a valid {schema} report at {at}: {source}", path.display())]
    Invalid {
        path: std::path::PathBuf,
        schema: String,
        at: String,
        #[source]
        source: serde_json::Error,
    },
    /// A capacity report (`fleetstorm capacity --out`) that is not one.
    #[error("{} is not a capacity report: {source}", path.display())]
    NotCapacity {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Report {
    /// Reads a report written by `run --out` (or `merge`), checking its schema tag.
    pub fn load(path: &Path) -> Result<Report, LoadError> {
        let path_buf = || path.to_path_buf();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path_buf(), source })?;
        let mut value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| LoadError::NotJson { path: path_buf(), source })?;
        let schema = match value.get("schema").and_then(|s| s.as_str()) {
            Some(s @ (SCHEMA | SCHEMA_V2 | SCHEMA_V1)) => s.to_string(),
            Some(other) => return Err(LoadError::OtherSchema { path: path_buf(), schema: other.to_string() }),
            None => return Err(LoadError::NoSchema { path: path_buf() }),
        };
        if schema != SCHEMA {
            upgrade::outcomes_from_v2(&mut value);
        }
        let mut report: Report = serde_path_to_error::deserialize(value).map_err(|e| LoadError::Invalid {
            path: path_buf(),
            schema,
            at: e.path().to_string(),
            source: e.into_inner(),
        })?;
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
        if let Some(stop) = &self.stopped {
            let failures: Vec<String> =
                t.errors.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
            return Some(format!(
                "stopped: nothing succeeded in the first {} (at {:.1} s of {:.1} s planned; {} heartbeats sent, {} ok{}); \
                 a run that starts in an outage sets stop_when_nothing_succeeds = \"off\" under [thresholds.abort]",
                crate::units::format_duration(Duration::from_secs_f64(stop.after_s)),
                stop.at_s,
                self.scenario.planned_duration_s,
                t.sent,
                t.ok,
                if failures.is_empty() { String::new() } else { format!(", {}", failures.join(", ")) }
            ));
        }
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

    /// The thresholds in one line: end thresholds passed or failed, and
    /// abort conditions, counted apart ("all 6 passed; 1 abort condition,
    /// not triggered").
    pub fn thresholds_line(&self) -> String {
        let (aborts, ends): (Vec<_>, Vec<_>) = self.thresholds.iter().partition(|t| t.abort);
        let failed = ends.iter().filter(|t| !t.ok).count();
        let mut line = match (ends.len(), failed) {
            (0, _) => String::new(),
            (n, 0) => format!("all {n} passed"),
            (n, f) => format!("{f} of {n} FAILED"),
        };
        if !aborts.is_empty() {
            let triggered = aborts.iter().filter(|t| !t.ok).count();
            let n = aborts.len();
            let what = if n == 1 { "1 abort condition".to_string() } else { format!("{n} abort conditions") };
            let how = match triggered {
                0 if n == 1 => "not triggered".to_string(),
                0 => "none triggered".to_string(),
                t => format!("{t} TRIGGERED"),
            };
            if !line.is_empty() {
                line.push_str("; ");
            }
            line.push_str(&format!("{what}, {how}"));
        }
        line
    }

    /// Whether every end threshold held and no abort threshold fired.
    pub fn thresholds_passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.ok) && self.aborted.is_none()
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

impl From<&Stats> for PoolLoad {
    fn from(s: &Stats) -> PoolLoad {
        PoolLoad {
            offered_rate: s.offered_rate,
            waited: s.waited,
            connection_wait_p99_ms: s.connection_wait_ms.p99,
            service_time_p50_ms: s.service_time_ms.p50,
            service_time_mean_ms: s.service_time_ms.mean,
        }
    }
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
    fn tls_checks_are_written_as_they_always_were() {
        for text in ["platform roots", "CA file /etc/ca.pem", "INSECURE (not verified)", "CA file ca.pem, mutual TLS"] {
            let t: TlsSummary = text.parse().unwrap();
            assert_eq!(t.to_string(), text);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("{text:?}"));
        }
        assert_eq!("INSECURE (not verified), mutual TLS".parse::<TlsSummary>().unwrap().check, TlsCheck::Insecure);
        assert!("whatever".parse::<TlsSummary>().is_err());
    }

    #[test]
    fn a_full_pool_at_a_flat_service_time_is_too_small_and_says_how_many_it_needs() {
        // 5,000/s at 1 ms each needs 5 connections; the pool has 2.
        let v = PoolVerdict::judge(2, &PoolLoad::from(&pooled(5_000.0, 1, 400)), Some(1.0));
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
        let v = PoolVerdict::judge(64, &PoolLoad::from(&pooled(4_000.0, 32, 3_000)), Some(2.0));
        assert_eq!(v.limit, PoolLimit::Backend, "{}", v.verdict);
        assert!(v.verdict.contains("backend slowed down") && v.verdict.contains("rose from 2.00 ms"), "{}", v.verdict);
        assert!(!generator_health(0.5, None, Some(v)).understates_backend);
    }

    #[test]
    fn a_pool_without_queueing_kept_up_and_unknown_light_load_says_so() {
        assert_eq!(PoolVerdict::judge(64, &PoolLoad::from(&pooled(1_000.0, 2, 0)), Some(2.0)).limit, PoolLimit::None);
        let v = PoolVerdict::judge(64, &PoolLoad::from(&pooled(4_000.0, 32, 3_000)), None);
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
                // Outcomes as classes and codes: every class listed, HTTP's statuses as codes.
                let classes: std::collections::BTreeSet<&str> =
                    OutcomeClass::FAILED.iter().map(|c| c.as_str()).collect();
                assert_eq!(s.errors.keys().map(String::as_str).collect::<std::collections::BTreeSet<_>>(), classes);
                assert!(s.ok > 0 && s.answers_with(Code::Http(200)) == s.ok, "{:?}", s.codes);
            }
            assert_eq!(r.sending_seconds(), r.duration_s);
        }
    }
}
