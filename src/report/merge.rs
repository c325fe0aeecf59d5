//! `fleetstorm merge`: the reports of a run's shards added up into the
//! report of the whole run.
//!
//! Counters add; histograms (serialized in every report) are decoded and
//! added exactly, and the percentiles derived again from the sums; device
//! freshness adds the same way; timelines add second by second (the shards
//! started at the same instant: `--start-at`; shards that started more than
//! a second apart without one are warned about, on stderr and in the
//! merged report's `merged.warnings`). The scenario's thresholds, as the shards
//! carry them, are checked again on the merged totals. Shards are checked
//! first: 0..N-1 each present once, every one from the same scenario (the
//! scenario hash covers the file, the overrides and the seed).

use std::collections::BTreeMap;

use super::DeliveryStats;
use super::{
    Cohort, FreshnessStats, MergedFrom, PoolVerdict, Report, SecondStats, Span, Stats, generator_health, stats_of,
};
use crate::gate::{Threshold, ThresholdError};
use crate::stats::{self, Code, Freshness, HistogramError, OutcomeClass, Percentiles, Recorder};

/// Why shard reports do not add up to one run.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("give the shard reports to merge")]
    NoShards,
    #[error("{origin} is not a shard's report (it was not run with --shard or as an Indexed Job)")]
    NotAShard { origin: String },
    #[error(
        "{origin} is from another scenario than {first} (scenario hash {}… against {}…): shards of one run share \
         the scenario file, the overrides and the seed",
        short(hash),
        short(first_hash)
    )]
    OtherScenario { origin: String, hash: String, first: String, first_hash: String },
    #[error("{origin} is shard {index}/{count}, but {first} is of {first_count} shards")]
    OtherCount { origin: String, index: u32, count: u32, first: String, first_count: u32 },
    #[error("shard {index}/{count} is given twice: {first} and {origin}")]
    Twice { index: u32, count: u32, first: String, origin: String },
    #[error("{origin}: shard index {index} is not below {count}")]
    IndexTooLarge { origin: String, index: u32, count: u32 },
    #[error("missing shard report(s): {} (every shard 0..{} must be given once)", missing.join(", "), count - 1)]
    Missing { missing: Vec<String>, count: u32 },
    #[error("{origin}: has no fleet {fleet:?} at {position}")]
    NoFleet { origin: String, fleet: Option<String>, position: usize },
    #[error("{origin}: {source}")]
    Statistics {
        origin: String,
        #[source]
        source: StatsError,
    },
    #[error("cannot read the threshold {0:?}")]
    Threshold(String),
    #[error(transparent)]
    BadThreshold(#[from] ThresholdError),
}

/// The first 12 characters of a scenario hash, as messages show it.
fn short(hash: &str) -> &str {
    &hash[..12.min(hash.len())]
}

/// A report's statistics that cannot be read back as counters and
/// histograms.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("{code:?} is not a {protocol} code")]
    Code { protocol: String, code: String },
    #[error("the {name} histogram: {source}")]
    Histogram {
        name: &'static str,
        #[source]
        source: HistogramError,
    },
    #[error("the {name} histogram: {0:?}", .source)]
    Add { name: &'static str, source: hdrhistogram::AdditionError },
}

impl StatsError {
    fn decoding(name: &'static str) -> impl FnOnce(HistogramError) -> StatsError {
        move |source| StatsError::Histogram { name, source }
    }

    fn adding(name: &'static str) -> impl FnOnce(hdrhistogram::AdditionError) -> StatsError {
        move |source| StatsError::Add { name, source }
    }
}

/// A shard's report and where it came from (for messages).
pub struct ShardReport {
    pub origin: String,
    pub report: Report,
}

/// The report of the whole run, from its shards' reports.
pub fn merge(shards: &[ShardReport]) -> Result<Report, MergeError> {
    let (count, hash) = check_shards(shards)?;
    let mut sorted: Vec<&ShardReport> = shards.iter().collect();
    sorted.sort_by_key(|s| s.report.shard.as_ref().map(|i| i.index));
    let first = &sorted[0].report;
    let seconds = sorted.iter().map(|s| s.report.duration_s).fold(0.0, f64::max);
    let span = Span {
        scheduled_s: seconds,
        sending_s: sorted.iter().map(|s| s.report.sending_seconds()).fold(seconds, f64::max),
    };
    let seconds = span;

    let totals = add_stats(sorted.iter().map(|s| (&s.origin, &s.report.totals)), None, seconds)?;
    let mut fleets = Vec::with_capacity(first.fleets.len());
    for (i, fleet) in first.fleets.iter().enumerate() {
        let parts = sorted.iter().map(|s| {
            let stats = s.report.fleets.get(i).filter(|f| f.name == fleet.name);
            (&s.origin, stats)
        });
        let mut present = Vec::new();
        for (origin, stats) in parts {
            present.push((
                origin,
                stats.ok_or_else(|| MergeError::NoFleet {
                    origin: origin.clone(),
                    fleet: fleet.name.clone(),
                    position: i,
                })?,
            ));
        }
        let stale_after = fleet.freshness.as_ref().and_then(|f| f.stale_after_s);
        fleets.push(add_stats(present.into_iter(), stale_after, seconds)?);
    }
    let mut cohort_parts: BTreeMap<(String, String), Vec<(&String, &Stats)>> = BTreeMap::new();
    for s in &sorted {
        for c in &s.report.cohorts {
            cohort_parts.entry((c.fleet.clone(), c.agent_version.clone())).or_default().push((&s.origin, &c.stats));
        }
    }
    let mut cohorts = Vec::new();
    for ((fleet, agent_version), parts) in cohort_parts {
        let stats = add_stats(parts.into_iter(), None, seconds)?;
        cohorts.push(Cohort { fleet, agent_version, stats: Stats { freshness: None, ..stats } });
    }

    // Each shard had its own pool: the run had all of them; the light-load
    // service time is the lowest any shard saw.
    let pools: Vec<&PoolVerdict> = sorted.iter().filter_map(|s| s.report.generator.pool.as_ref()).collect();
    let pool = (!pools.is_empty()).then(|| {
        let connections = pools.iter().map(|p| p.connections).sum();
        let light = pools.iter().filter_map(|p| p.light_load_service_time_p50_ms).reduce(f64::min);
        PoolVerdict::judge(connections, &(&totals).into(), light)
    });
    let versions: std::collections::BTreeSet<&str> =
        sorted.iter().map(|s| s.report.fleetstorm_version.as_deref().unwrap_or("unknown")).collect();
    let mut warnings = start_warnings(&sorted);
    if versions.len() > 1 {
        let list: Vec<&str> = versions.iter().copied().collect();
        warnings.push(format!("the shards ran different fleetstorm versions: {}", list.join("; ")));
    }
    let mut merged = Report {
        schema: super::SCHEMA.to_string(),
        fleetstorm_version: match versions.iter().next() {
            Some(&v) if versions.len() == 1 && v != "unknown" => Some(v.to_string()),
            _ => None,
        },
        scenario: first.scenario.clone(),
        started_at: sorted.iter().map(|s| s.report.started_at.clone()).min().unwrap_or_default(),
        duration_s: span.scheduled_s,
        sending_s: Some(span.sending_s),
        elapsed_s: sorted.iter().map(|s| s.report.elapsed_s).fold(0.0, f64::max),
        startup_s: sorted.iter().map(|s| s.report.startup_s).fold(0.0, f64::max),
        interrupted: sorted.iter().any(|s| s.report.interrupted),
        generator: generator_health(
            totals.schedule_lag_ms.p99,
            sorted.iter().filter_map(|s| s.report.generator.busiest_thread).reduce(f64::max),
            pool,
        ),
        totals,
        fleets,
        cohorts,
        timeline: add_timelines(sorted.iter().map(|s| &s.report.timeline)),
        thresholds: Vec::new(),
        aborted: sorted.iter().filter_map(|s| s.report.aborted.clone()).min_by(|a, b| a.at_s.total_cmp(&b.at_s)),
        // The earliest shard to stop: the merged run stopped then.
        stopped: sorted.iter().filter_map(|s| s.report.stopped.clone()).min_by(|a, b| a.at_s.total_cmp(&b.at_s)),
        first_errors: BTreeMap::new(),
        delivery: merge_delivery(&sorted)?,
        backend: None,
        start: None,
        shard: None,
        merged: Some(MergedFrom { shards: count, scenario_hash: hash, warnings }),
    };
    for s in &sorted {
        for (class, message) in &s.report.first_errors {
            merged.first_errors.entry(class.clone()).or_insert_with(|| message.clone());
        }
    }
    // Each threshold again, on the whole run.
    let mut thresholds = Vec::new();
    for t in &first.thresholds {
        let (metric, condition) = t.expr.split_once(' ').ok_or_else(|| MergeError::Threshold(t.expr.clone()))?;
        let threshold = Threshold::parse(metric, condition)?;
        thresholds.push(merged.check(&threshold, t.abort));
    }
    merged.thresholds = thresholds;
    Ok(merged)
}

/// Shards that started further apart than this, without a shared start
/// instant, are said to have: their timelines add as if simultaneous.
pub const START_SPREAD_WARNING: std::time::Duration = std::time::Duration::from_secs(1);

/// Warnings about when the shards started: further apart than
/// [`START_SPREAD_WARNING`] while they shared no `--start-at` instant (or a
/// start time that cannot be read).
fn start_warnings(shards: &[&ShardReport]) -> Vec<String> {
    let first_at = shards.first().and_then(|s| s.report.start.as_ref()).map(|s| &s.at);
    let shared = first_at.is_some() && shards.iter().all(|s| s.report.start.as_ref().map(|s| &s.at) == first_at);
    if shared {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    let mut started = Vec::new();
    for s in shards {
        match humantime::parse_rfc3339_weak(&s.report.started_at) {
            Ok(at) => started.push((at, s)),
            Err(e) => warnings.push(format!(
                "{}: started_at {:?} cannot be read ({e}): whether the shards started together is not checked",
                s.origin, s.report.started_at
            )),
        }
    }
    let earliest = started.iter().min_by_key(|(at, _)| *at);
    let latest = started.iter().max_by_key(|(at, _)| *at);
    if let (Some((early, e)), Some((late, l))) = (earliest, latest) {
        let apart = late.duration_since(*early).unwrap_or_default();
        if apart > START_SPREAD_WARNING {
            warnings.push(format!(
                "the shards started {:.1} s apart ({} at {}, {} at {}) with no shared --start-at: their timelines \
                 are added second by second as if they had started together, so per-second rates and \
                 percentiles mix different moments (totals are unaffected); start shards with --start-at",
                apart.as_secs_f64(),
                e.origin,
                e.report.started_at,
                l.origin,
                l.report.started_at
            ));
        }
    }
    warnings
}

/// Every report a shard of one run, each shard once: the shard count and
/// the scenario hash.
fn check_shards(shards: &[ShardReport]) -> Result<(u32, String), MergeError> {
    let Some(first) = shards.first() else {
        return Err(MergeError::NoShards);
    };
    let info =
        |s: &ShardReport| s.report.shard.clone().ok_or_else(|| MergeError::NotAShard { origin: s.origin.clone() });
    let first_info = info(first)?;
    let count = first_info.count;
    let mut seen: Vec<Option<&str>> = vec![None; count as usize];
    for s in shards {
        let i = info(s)?;
        if i.scenario_hash != first_info.scenario_hash {
            return Err(MergeError::OtherScenario {
                origin: s.origin.clone(),
                hash: i.scenario_hash,
                first: first.origin.clone(),
                first_hash: first_info.scenario_hash,
            });
        }
        if i.count != count {
            return Err(MergeError::OtherCount {
                origin: s.origin.clone(),
                index: i.index,
                count: i.count,
                first: first.origin.clone(),
                first_count: count,
            });
        }
        match seen.get_mut(i.index as usize) {
            Some(Some(other)) => {
                return Err(MergeError::Twice {
                    index: i.index,
                    count,
                    first: (*other).to_string(),
                    origin: s.origin.clone(),
                });
            }
            Some(slot) => *slot = Some(&s.origin),
            None => return Err(MergeError::IndexTooLarge { origin: s.origin.clone(), index: i.index, count }),
        }
    }
    let missing: Vec<String> =
        seen.iter().enumerate().filter(|(_, o)| o.is_none()).map(|(i, _)| format!("{i}/{count}")).collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing { missing, count });
    }
    Ok((count, first_info.scenario_hash))
}

/// A report's statistics back as what recorded them: counters, and the
/// histograms decoded.
pub fn recorder_of(stats: &Stats) -> Result<Recorder, StatsError> {
    let mut r = Recorder::default();
    let c = &mut r.counters;
    c.scheduled = stats.scheduled;
    c.sent = stats.sent;
    c.missed = stats.missed;
    c.retries = stats.retries;
    c.recovered = stats.recovered;
    c.connects = stats.connects;
    c.late = stats.late;
    c.waited = stats.waited;
    c.retry_pending = stats.retry_pending;
    c.unacknowledged = stats.unacknowledged;
    c.sessions = stats.sessions.clone().unwrap_or_default();
    c.classes[OutcomeClass::Ok] = stats.ok;
    for class in OutcomeClass::FAILED {
        c.classes[class] = stats.errors_of(class);
    }
    for (protocol, codes) in &stats.codes {
        for (code, n) in codes {
            let bad = || StatsError::Code { protocol: protocol.clone(), code: code.clone() };
            c.codes.insert(Code::parse(protocol, code).ok_or_else(bad)?, *n);
        }
    }
    let h = &stats.histograms;
    for (name, text, into) in [
        ("latency", &h.latency, &mut r.latency),
        ("service_time", &h.service_time, &mut r.service_time),
        ("schedule_lag", &h.schedule_lag, &mut r.schedule_lag),
    ] {
        let decoded = stats::decode_histogram(text).map_err(StatsError::decoding(name))?;
        into.add(&decoded).map_err(StatsError::adding(name))?;
    }
    for (name, text, into) in
        [("connection wait", &h.connection_wait, &mut r.connection_wait), ("lateness", &h.lateness, &mut r.lateness)]
    {
        if let Some(text) = text {
            let decoded = stats::decode_histogram(text).map_err(StatsError::decoding(name))?;
            into.add(&decoded).map_err(StatsError::adding(name))?;
        }
    }
    if let Some(text) = &h.tls_handshake {
        let decoded = stats::decode_histogram(text).map_err(StatsError::decoding("TLS handshake"))?;
        r.tls_handshake.add(&decoded).map_err(StatsError::adding("TLS handshake"))?;
    }
    if let Some(text) = &h.session_open {
        let decoded = stats::decode_histogram(text).map_err(StatsError::decoding("session opening"))?;
        r.session_open.add(&decoded).map_err(StatsError::adding("session opening"))?;
    }
    Ok(r)
}

fn freshness_of(f: &FreshnessStats) -> Result<Freshness, StatsError> {
    let mut out =
        Freshness { devices: f.devices, stale: f.stale_devices, never_ok: f.never_ok, ..Freshness::default() };
    let decoded = stats::decode_histogram(&f.histogram).map_err(StatsError::decoding("freshness"))?;
    out.max_gap.add(&decoded).map_err(StatsError::adding("freshness"))?;
    Ok(out)
}

/// The shards' end-to-end deliveries, fleet by fleet: counts added,
/// histograms merged (each shard's observer saw its own messages).
fn merge_delivery(shards: &[&ShardReport]) -> Result<Vec<DeliveryStats>, MergeError> {
    let mut merged: Vec<(String, stats::Delivery)> = Vec::new();
    for s in shards {
        for d in &s.report.delivery {
            let within = |source| MergeError::Statistics { origin: s.origin.clone(), source };
            let at = match merged.iter().position(|(f, _)| *f == d.fleet) {
                Some(at) => at,
                None => {
                    merged.push((d.fleet.clone(), stats::Delivery::default()));
                    merged.len() - 1
                }
            };
            let m = &mut merged[at].1;
            m.expected += d.expected;
            m.delivered += d.delivered;
            m.duplicates += d.duplicates;
            m.foreign += d.foreign;
            m.broken |= d.observer_broke;
            let decoded =
                stats::decode_histogram(&d.histogram).map_err(StatsError::decoding("delivery")).map_err(within)?;
            m.latency.add(&decoded).map_err(StatsError::adding("delivery")).map_err(within)?;
        }
    }
    // Another shard's observer saw these as foreign: not foreign to the run.
    Ok(merged.iter().map(|(fleet, d)| DeliveryStats::of(fleet, d)).collect())
}

/// Several shards' statistics of one thing (the totals, a fleet, a cohort), added.
fn add_stats<'a>(
    parts: impl Iterator<Item = (&'a String, &'a Stats)>,
    stale_after_s: Option<f64>,
    seconds: Span,
) -> Result<Stats, MergeError> {
    let mut sum = Recorder::default();
    let mut freshness: Option<Freshness> = None;
    let mut name = None;
    for (origin, stats) in parts {
        name = stats.name.clone();
        let within = |source| MergeError::Statistics { origin: origin.clone(), source };
        sum.add(&recorder_of(stats).map_err(within)?);
        if let Some(f) = &stats.freshness {
            freshness.get_or_insert_with(Freshness::default).add(&freshness_of(f).map_err(within)?);
        }
    }
    Ok(Stats {
        freshness: freshness.map(|f| FreshnessStats {
            devices: f.devices,
            stale_after_s,
            stale_devices: f.stale,
            never_ok: f.never_ok,
            max_gap_ms: Percentiles::of(&f.max_gap),
            histogram: stats::encode_histogram(&f.max_gap),
        }),
        ..stats_of(name, &sum, seconds, true)
    })
}

/// The shards' timelines added second by second. Per-second percentiles
/// cannot be added exactly (the report keeps no per-second histograms):
/// the merged p99 is the shards' largest, the p50 their average weighted
/// by heartbeats ended.
fn add_timelines<'a>(timelines: impl Iterator<Item = &'a Vec<SecondStats>>) -> Vec<SecondStats> {
    let mut by_t: BTreeMap<u64, (SecondStats, f64, u64)> = BTreeMap::new();
    for timeline in timelines {
        for s in timeline {
            let ended = s.ok + s.failed;
            let (m, p50_sum, ended_sum) = by_t.entry(s.t).or_insert_with(|| {
                (
                    SecondStats {
                        offered: 0,
                        sent: 0,
                        ok: 0,
                        failed: 0,
                        missed: 0,
                        retries: 0,
                        errors: BTreeMap::new(),
                        p50_ms: 0.0,
                        p99_ms: 0.0,
                        sessions_open: None,
                        sessions_opened: None,
                        sessions_ended: None,
                        ..s.clone()
                    },
                    0.0,
                    0,
                )
            });
            m.width_s = m.width_s.max(s.width_s);
            m.offered += s.offered;
            m.sent += s.sent;
            m.ok += s.ok;
            m.failed += s.failed;
            m.missed += s.missed;
            m.retries += s.retries;
            for (sum, n) in [
                (&mut m.sessions_open, s.sessions_open),
                (&mut m.sessions_opened, s.sessions_opened),
                (&mut m.sessions_ended, s.sessions_ended),
            ] {
                if let Some(n) = n {
                    *sum.get_or_insert(0) += n;
                }
            }
            for (class, n) in &s.errors {
                *m.errors.entry(class.clone()).or_default() += n;
            }
            m.p99_ms = m.p99_ms.max(s.p99_ms);
            *p50_sum += s.p50_ms * ended as f64;
            *ended_sum += ended;
        }
    }
    by_t.into_values()
        .map(|(mut s, p50_sum, ended)| {
            s.p50_ms = if ended > 0 { p50_sum / ended as f64 } else { 0.0 };
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Failure, Outcome};

    /// Samples spread over three decades, with some failures.
    fn record(r: &mut Recorder, i: u64) {
        let latency = 100 + (i * 7919) % 250_000;
        r.scheduled();
        r.sent(i % 900, i % 3);
        let outcome = match i % 97 {
            0 => Outcome::Failed(Failure::Timeout),
            1 => Outcome::Status(503),
            _ => Outcome::Status(200),
        };
        r.completed(outcome, latency, latency / 2);
    }

    #[test]
    fn histograms_added_from_shards_equal_those_of_all_the_samples() {
        let mut all = Recorder::default();
        let mut shards: Vec<Recorder> = (0..4).map(|_| Recorder::default()).collect();
        for i in 0..100_000u64 {
            record(&mut all, i);
            record(&mut shards[(i % 4) as usize], i);
        }
        let all = all.take();
        // Through each shard's report (serialized histograms) and back.
        let mut merged = Recorder::default();
        for shard in &mut shards {
            let stats = stats_of(None, &shard.take(), Span::same(10.0), true);
            let json = serde_json::to_string(&stats).unwrap();
            merged.add(&recorder_of(&serde_json::from_str(&json).unwrap()).unwrap());
        }
        assert_eq!(merged.counters, all.counters);
        for (a, b) in [
            (&merged.latency, &all.latency),
            (&merged.service_time, &all.service_time),
            (&merged.schedule_lag, &all.schedule_lag),
            (&merged.connection_wait, &all.connection_wait),
        ] {
            assert_eq!(a.len(), b.len());
            let values = |h: &hdrhistogram::Histogram<u64>| {
                h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect::<Vec<_>>()
            };
            assert_eq!(values(a), values(b), "every bucket equal");
        }
        assert_eq!(stats_of(None, &merged, Span::same(10.0), true), stats_of(None, &all, Span::same(10.0), true));
    }
}
