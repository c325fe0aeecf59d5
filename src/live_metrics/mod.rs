//! Live metrics of a run, as Prometheus serves them (`fleetstorm run
//! --metrics-addr`) and as OpenTelemetry receives them (`--otlp-endpoint`):
//! what the engine has recorded so far, per fleet, with latency and
//! schedule lag as histograms (bucketed from the run's HDR histograms when
//! read), everything labelled with the shard so that a distributed run's
//! shards add up (`sum by (fleet)`), and `deploy/grafana/fleetstorm.json`
//! can follow it.
//!
//! This module owns the one list of metrics, [`LiveMetrics::families`]:
//! their names, help, units and points. The two encoders only encode it
//! ([`prometheus`], [`otlp`]), so a metric has one name whichever way it
//! leaves.
//!
//! The run's progress callback hands each snapshot over ([`LiveMetrics::update`],
//! a few times a second), the run's end its final totals
//! ([`LiveMetrics::settle`]); a scrape or a push reads the latest one.

pub mod otlp;
pub mod prometheus;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::engine::Live;
use crate::fleet::Online;
use crate::scenario::Scenario;
use crate::shard::Shard;
use crate::stats::Recorder;

pub use self::prometheus::serve;

/// Upper bounds of the latency and lag buckets, in seconds.
pub const BUCKETS_S: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The latency percentiles served as gauges, with their label values.
const QUANTILES: [(f64, &str); 6] =
    [(0.5, "0.5"), (0.75, "0.75"), (0.9, "0.9"), (0.95, "0.95"), (0.99, "0.99"), (0.999, "0.999")];

/// What a metric's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows over the run.
    Counter,
    /// A value now.
    Gauge,
    /// A distribution since the start.
    Histogram,
}

/// What a metric counts or measures, for OpenTelemetry's `unit` (UCUM; an
/// annotation in braces is a count of things). Prometheus carries the unit
/// in the name (`_seconds`), which every metric here already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Heartbeats,
    Retries,
    Devices,
    Events,
}

impl Unit {
    pub fn ucum(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Heartbeats => "{heartbeat}",
            Unit::Retries => "{retry}",
            Unit::Devices => "{device}",
            Unit::Events => "{event}",
        }
    }
}

/// A histogram's content, in seconds: as Prometheus wants it (cumulative
/// counts up to each of [`BUCKETS_S`]), and the extremes OTLP can carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    pub count: u64,
    pub sum: f64,
    /// Samples at or under each bound of [`BUCKETS_S`].
    pub cumulative: Vec<u64>,
    /// The smallest and largest samples; `None` when empty.
    pub min_max: Option<(f64, f64)>,
}

impl Buckets {
    /// An HDR histogram (µs), bucketed.
    fn of(h: &hdrhistogram::Histogram<u64>) -> Buckets {
        let empty = h.is_empty();
        Buckets {
            count: h.len(),
            sum: h.mean() * h.len() as f64 / 1e6,
            cumulative: BUCKETS_S
                .iter()
                .map(|le| if empty { 0 } else { h.count_between(0, (le * 1e6) as u64) })
                .collect(),
            min_max: (!empty).then(|| (h.min() as f64 / 1e6, h.max() as f64 / 1e6)),
        }
    }
}

/// One point's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Histogram(Buckets),
}

/// One series of a metric: its labels (always ending with `shard`) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// One metric: every series of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub points: Vec<Point>,
}

/// One fleet as this process runs it.
struct FleetPlan {
    name: String,
    /// This shard's devices of the fleet, and how many are online when.
    online: Online,
}

#[derive(Default)]
struct Snapshot {
    fleets: Vec<Recorder>,
    elapsed: Duration,
    in_flight: usize,
    /// The wall-clock time the run's clock started, from the first update.
    started: Option<SystemTime>,
    /// These are the run's final totals.
    settled: bool,
}

/// The families of one snapshot, and when they were true.
#[derive(Debug, Clone)]
pub struct Reading {
    pub families: Vec<Family>,
    /// When the run's clock started (the start of every cumulative series).
    pub started: SystemTime,
    /// When the snapshot was taken.
    pub at: SystemTime,
}

/// The latest snapshot of a run, as metrics.
pub struct LiveMetrics {
    plans: Vec<FleetPlan>,
    shard: String,
    snapshot: Mutex<Snapshot>,
    /// Told when a scrape of the final totals has been written.
    final_scraped: tokio::sync::Notify,
}

impl LiveMetrics {
    /// `online`: each fleet's devices as this process runs them
    /// ([`crate::run::online_devices`]).
    pub fn new(scenario: &Scenario, shard: Option<Shard>, online: Vec<Online>) -> Arc<LiveMetrics> {
        let plans = scenario
            .fleets
            .iter()
            .zip(online)
            .map(|(f, online)| FleetPlan { name: f.name().to_string(), online })
            .collect();
        let shard = shard.map_or_else(|| "0/1".to_string(), |s| s.to_string());
        let snapshot = Mutex::new(Snapshot::default());
        Arc::new(LiveMetrics { plans, shard, snapshot, final_scraped: tokio::sync::Notify::new() })
    }

    /// Takes in the run's latest totals.
    pub fn update(&self, live: &Live<'_>) {
        self.take(live.fleets, live.elapsed, live.in_flight);
    }

    /// Takes in the run's final totals, the ones its report is made of
    /// ([`crate::run::Executed::fleets`]): what a last scrape or the final
    /// push says is what the report says.
    pub fn settle(&self, fleets: &[Recorder], elapsed: Duration) {
        self.take(fleets, elapsed, 0);
        if let Ok(mut s) = self.snapshot.lock() {
            s.settled = true;
        }
    }

    /// The latest snapshot's metrics for a scrape, and whether they are the
    /// run's final totals ([`LiveMetrics::settle`]).
    pub fn scrape(&self) -> (Vec<Family>, bool) {
        self.snapshot.lock().map(|s| (self.families_of(&s), s.settled)).unwrap_or_default()
    }

    /// A scrape of the final totals was written (see [`LiveMetrics::scrape`]).
    pub fn final_totals_scraped(&self) {
        self.final_scraped.notify_one();
    }

    /// Returns once a scrape of the final totals has been written.
    pub async fn final_scrape(&self) {
        self.final_scraped.notified().await;
    }

    fn take(&self, fleets: &[Recorder], elapsed: Duration, in_flight: usize) {
        if let Ok(mut s) = self.snapshot.lock() {
            s.fleets = fleets.to_vec();
            s.elapsed = elapsed;
            s.in_flight = in_flight;
            s.started.get_or_insert_with(|| SystemTime::now().checked_sub(elapsed).unwrap_or(SystemTime::now()));
        }
    }

    /// The latest snapshot's metrics, or `None` before the first.
    pub fn read(&self) -> Option<Reading> {
        let s = self.snapshot.lock().ok()?;
        let started = s.started?;
        Some(Reading { families: self.families_of(&s), started, at: started + s.elapsed })
    }

    /// The latest snapshot's metrics (none of a fleet before the first).
    pub fn families(&self) -> Vec<Family> {
        self.snapshot.lock().map(|s| self.families_of(&s)).unwrap_or_default()
    }

    fn families_of(&self, s: &Snapshot) -> Vec<Family> {
        let fleets = || s.fleets.iter().zip(&self.plans);
        let per_fleet = |name, help, kind, unit, value: &dyn Fn(&Recorder, &FleetPlan) -> f64| Family {
            name,
            help,
            kind,
            unit,
            points: fleets().map(|(r, p)| self.point(&[("fleet", &p.name)], Value::Number(value(r, p)))).collect(),
        };
        use Kind::{Counter, Gauge};
        use Unit::{Devices, Heartbeats, Seconds};
        let mut families = vec![
            per_fleet(
                "fleetstorm_heartbeats_scheduled_total",
                "Heartbeats whose intended time has come",
                Counter,
                Heartbeats,
                &|r, _| r.counters.scheduled as f64,
            ),
            per_fleet("fleetstorm_heartbeats_sent_total", "Heartbeats sent", Counter, Heartbeats, &|r, _| {
                r.counters.sent as f64
            }),
            per_fleet(
                "fleetstorm_heartbeats_missed_total",
                "Heartbeats never sent: the device was still busy with its previous one",
                Counter,
                Heartbeats,
                &|r, _| r.counters.missed as f64,
            ),
            per_fleet("fleetstorm_retries_total", "Retries sent", Counter, Unit::Retries, &|r, _| {
                r.counters.retries as f64
            }),
            per_fleet(
                "fleetstorm_heartbeats_late_total",
                "Heartbeats sent after their intended time, held back by their busy device or a full pool",
                Counter,
                Heartbeats,
                &|r, _| r.counters.late as f64,
            ),
            per_fleet(
                "fleetstorm_heartbeats_waited_total",
                "Heartbeats that waited for a pooled connection",
                Counter,
                Heartbeats,
                &|r, _| r.counters.waited as f64,
            ),
        ];
        let mut ended = Vec::new();
        for (r, p) in fleets() {
            for (class, n) in r.counters.classes.iter() {
                ended.push(self.point(&[("fleet", &p.name), ("outcome", class.as_str())], Value::Number(*n as f64)));
            }
        }
        families.push(Family {
            name: "fleetstorm_heartbeats_completed_total",
            help: "Heartbeats ended, by outcome class (ok, rejected, auth, throttled, server_error, other_status, timeout, connect, tls, io, protocol)",
            kind: Counter,
            unit: Heartbeats,
            points: ended,
        });
        // What idle sessions did (a session transport's; HTTP's idle
        // connections do nothing): the family appears once one is counted.
        if fleets().any(|(r, _)| !r.counters.sessions.is_empty()) {
            let mut events = Vec::new();
            for (r, p) in fleets() {
                let s = &r.counters.sessions;
                for (event, n) in [
                    ("keepalive", s.keepalives),
                    ("inbound", s.inbound),
                    ("closed_disconnect", s.closed_by.disconnect),
                    ("closed_end_of_stream", s.closed_by.end_of_stream),
                    ("closed_broken", s.closed_by.broken),
                    ("closed_keepalive_missed", s.closed_by.keepalive_missed),
                    ("ended_offline", s.ended_offline),
                    ("reopened", s.reopened),
                    ("reopen_failed", s.reopen_failed),
                ] {
                    events.push(self.point(&[("fleet", &p.name), ("event", event)], Value::Number(n as f64)));
                }
            }
            families.push(Family {
                name: "fleetstorm_session_events_total",
                help: "What the devices' idle sessions did between heartbeats (keepalive: keep-alives sent; inbound: messages in unasked; closed: sessions the far end closed)",
                kind: Counter,
                unit: Unit::Events,
                points: events,
            });
        }
        for (name, help, pick) in [
            (
                "fleetstorm_latency_seconds",
                "From each heartbeat's intended time to its outcome (coordinated omission corrected)",
                (|r: &Recorder| &r.latency) as fn(&Recorder) -> &hdrhistogram::Histogram<u64>,
            ),
            (
                "fleetstorm_schedule_lag_seconds",
                "The generator's own lateness: from when a heartbeat could go to when the generator got to it",
                |r| &r.schedule_lag,
            ),
            (
                "fleetstorm_connection_wait_seconds",
                "From when the generator got to a heartbeat to when it had a pooled connection (the target's back-pressure)",
                |r| &r.connection_wait,
            ),
        ] {
            let points = fleets()
                .map(|(r, p)| self.point(&[("fleet", &p.name)], Value::Histogram(Buckets::of(pick(r)))))
                .collect();
            families.push(Family { name, help, kind: Kind::Histogram, unit: Seconds, points });
        }
        // Exact percentiles from the HDR histograms (the buckets above only
        // bound them), for the p75/p95 people set SLOs on.
        let mut quantiles = Vec::new();
        for (r, p) in fleets() {
            for (q, text) in QUANTILES {
                let v = if r.latency.is_empty() { 0.0 } else { r.latency.value_at_quantile(q) as f64 / 1e6 };
                quantiles.push(self.point(&[("fleet", &p.name), ("quantile", text)], Value::Number(v)));
            }
        }
        families.push(Family {
            name: "fleetstorm_latency_quantile_seconds",
            help: "Latency percentiles since the start, exact from the HDR histogram",
            kind: Gauge,
            unit: Seconds,
            points: quantiles,
        });
        let elapsed = s.elapsed;
        families.push(per_fleet("fleetstorm_devices", "Devices this process simulates", Gauge, Devices, &|_, p| {
            p.online.devices() as f64
        }));
        families.push(per_fleet(
            "fleetstorm_devices_online",
            "Devices planned online now: past their ramp-up, not silenced by an outage or restart",
            Gauge,
            Devices,
            &|_, p| p.online.at(elapsed) as f64,
        ));
        families.push(Family {
            name: "fleetstorm_in_flight",
            help: "Heartbeats sent and not yet answered",
            kind: Gauge,
            unit: Heartbeats,
            points: vec![self.point(&[], Value::Number(s.in_flight as f64))],
        });
        families.push(Family {
            name: "fleetstorm_elapsed_seconds",
            help: "Time since the run's clock started",
            kind: Gauge,
            unit: Seconds,
            points: vec![self.point(&[], Value::Number(elapsed.as_secs_f64()))],
        });
        families
    }

    /// A point labelled `extra` and the shard.
    fn point(&self, extra: &[(&'static str, &str)], value: Value) -> Point {
        let mut labels: Vec<(&'static str, String)> = extra.iter().map(|(k, v)| (*k, v.to_string())).collect();
        labels.push(("shard", self.shard.clone()));
        Point { labels, value }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};

    use super::*;
    use crate::fleet::FleetEvents;
    use crate::scenario::{self, Format};

    /// Two fleets with a few heartbeats each, a latency spread over the
    /// buckets, and an error.
    fn metrics() -> Arc<LiveMetrics> {
        let text = "name = \"m\"\nduration = \"10s\"\n[target]\nurl = \"builtin\"\n\
                    [[fleets]]\nname = \"a\"\ndevices = 10\ninterval = \"1s\"\n\
                    [[fleets]]\nname = \"b\"\ndevices = 5\ninterval = \"1s\"\n";
        let s = scenario::parse(text, Format::Toml, "t.toml", "t").unwrap();
        let online = s.fleets.iter().map(|f| Online::new(&f.schedule, f.devices, &FleetEvents::default(), None));
        let m = LiveMetrics::new(&s, Some(Shard::parse("1/3").unwrap()), online.collect());
        let mut fleets = vec![Recorder::default(), Recorder::default()];
        for (i, r) in fleets.iter_mut().enumerate() {
            for n in 0..20u64 {
                r.counters.scheduled += 1;
                r.counters.sent += 1;
                let outcome = if n == 3 {
                    crate::stats::Outcome::Failed(crate::stats::Failure::Timeout)
                } else {
                    crate::stats::Outcome::Status(200)
                };
                r.completed(outcome, 300 + n * 40_000 * (i as u64 + 1), 250);
            }
        }
        m.settle(&fleets, Duration::from_secs(4));
        m
    }

    #[test]
    fn prometheus_and_otlp_carry_the_same_metrics_with_the_same_names_and_values() {
        let m = metrics();
        let reading = m.read().unwrap();
        let text = String::from_utf8(prometheus::render(&reading.families)).unwrap();
        let scraped = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        // Prometheus' names and kinds, from the text a scrape reads.
        let mut prom: BTreeMap<String, String> = BTreeMap::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').unwrap();
            prom.insert(name.to_string(), kind.to_string());
        }
        let request = otlp::request(&reading, &otlp::Source { scenario: "m".into() });
        let pushed = &request.resource_metrics[0].scope_metrics[0].metrics;
        let otel: BTreeMap<String, String> = pushed
            .iter()
            .map(|m| {
                let kind = match m.data.as_ref().unwrap() {
                    metric::Data::Sum(s) if s.is_monotonic => "counter",
                    metric::Data::Gauge(_) => "gauge",
                    metric::Data::Histogram(_) => "histogram",
                    other => panic!("{other:?}"),
                };
                (m.name.clone(), kind.to_string())
            })
            .collect();
        assert_eq!(prom, otel);
        assert_eq!(prom.len(), 15);
        // Every counter and gauge sample: the same value under the same labels.
        let labels_of = |kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| -> BTreeMap<String, String> {
            kvs.iter()
                .map(|kv| {
                    let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(v)) =
                        kv.value.as_ref().and_then(|v| v.value.clone())
                    else {
                        panic!("{kv:?}")
                    };
                    (kv.key.clone(), v)
                })
                .collect()
        };
        let mut compared = 0;
        for m in pushed {
            let points = match m.data.as_ref().unwrap() {
                metric::Data::Sum(s) => &s.data_points,
                metric::Data::Gauge(g) => &g.data_points,
                _ => continue,
            };
            for p in points {
                let labels = labels_of(&p.attributes);
                assert_eq!(labels["shard"], "1/3");
                let Some(number_data_point::Value::AsDouble(v)) = p.value else { panic!("{p:?}") };
                let sample = scraped
                    .samples
                    .iter()
                    .find(|s| s.metric == m.name && s.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
                    .unwrap_or_else(|| panic!("{} {labels:?} not scraped", m.name));
                let scraped_value = match sample.value {
                    prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                    ref other => panic!("{other:?}"),
                };
                assert_eq!(scraped_value, v, "{} {labels:?}", m.name);
                compared += 1;
            }
        }
        // 6 counters per fleet, an outcome per class, 6 quantiles per fleet,
        // 2 device gauges per fleet, in flight and elapsed.
        assert_eq!(compared, 2 * (6 + crate::stats::OutcomeClass::COUNT + 6 + 2) + 2);
        let sent: Vec<f64> = scraped
            .samples
            .iter()
            .filter(|s| s.metric == "fleetstorm_heartbeats_sent_total")
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => v,
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(sent, [20.0, 20.0]);
    }

    #[test]
    fn histograms_bucket_the_hdr_samples_as_prometheus_counts_them() {
        let m = metrics();
        let families = m.families();
        let latency = families.iter().find(|f| f.name == "fleetstorm_latency_seconds").unwrap();
        let Value::Histogram(b) = &latency.points[1].value else { panic!() };
        // Fleet b: 300 µs plus multiples of 80 ms, 20 of them.
        assert_eq!(b.count, 20);
        assert_eq!(b.cumulative[1], 1, "one at or under 1 ms");
        assert_eq!(*b.cumulative.last().unwrap(), 20);
        assert!(b.cumulative.windows(2).all(|w| w[0] <= w[1]));
        let (min, max) = b.min_max.unwrap();
        assert!((min - 0.0003).abs() < 1e-6 && (max - 1.5203).abs() < 2e-3, "{min} {max}");
        assert!(m.read().unwrap().at > m.read().unwrap().started);
    }

    #[test]
    fn nothing_is_read_before_the_first_snapshot() {
        let text = "duration = \"1s\"\n[target]\nurl = \"builtin\"\n[[fleets]]\nname = \"a\"\ndevices = 1\ninterval = \"1s\"\n";
        let s = scenario::parse(text, Format::Toml, "t.toml", "t").unwrap();
        let m = LiveMetrics::new(&s, None, Vec::new());
        assert!(m.read().is_none());
    }
}
