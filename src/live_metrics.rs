//! Live Prometheus metrics of a run (`fleetstorm run --metrics-addr`):
//! what the engine has recorded so far, per fleet, with latency and
//! schedule lag as Prometheus histograms (bucketed from the run's HDR
//! histograms when scraped), everything labelled with the shard so that a
//! distributed run's shards add up in PromQL (`sum by (fleet)`), and
//! `deploy/grafana/fleetstorm.json` can follow it.
//!
//! The run's progress callback hands each snapshot over ([`LiveMetrics::update`],
//! a few times a second); a scrape renders the latest one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::StatusCode;
use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use tokio_util::sync::CancellationToken;

use crate::engine::Live;
use crate::fleet::Online;
use crate::scenario::Scenario;
use crate::server::pages::{page, serve_pages};
use crate::shard::Shard;
use crate::stats::{CLASSES, Recorder};

/// Upper bounds of the latency and lag buckets, in seconds.
const BUCKETS_S: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

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
}

/// The latest snapshot of a run, as Prometheus metrics.
pub struct LiveMetrics {
    plans: Vec<FleetPlan>,
    shard: String,
    snapshot: Mutex<Snapshot>,
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
        Arc::new(LiveMetrics { plans, shard, snapshot: Mutex::new(Snapshot::default()) })
    }

    /// Takes in the run's latest totals.
    pub fn update(&self, live: &Live<'_>) {
        if let Ok(mut s) = self.snapshot.lock() {
            s.fleets = live.fleets.to_vec();
            s.elapsed = live.elapsed;
            s.in_flight = live.in_flight;
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> Vec<u8> {
        let Ok(s) = self.snapshot.lock() else { return Vec::new() };
        let mut families = Vec::new();
        let per_fleet = |name: &str, help: &str, kind: MetricType, value: &dyn Fn(&Recorder, &FleetPlan) -> f64| {
            let metrics = s
                .fleets
                .iter()
                .zip(&self.plans)
                .map(|(r, p)| number(kind, value(r, p), self.labels(&[("fleet", &p.name)])))
                .collect();
            family(name, help, kind, metrics)
        };
        use MetricType::{COUNTER, GAUGE};
        families.push(per_fleet(
            "fleetstorm_heartbeats_scheduled_total",
            "Heartbeats whose intended time has come",
            COUNTER,
            &|r, _| r.counters.scheduled as f64,
        ));
        families.push(per_fleet("fleetstorm_heartbeats_sent_total", "Heartbeats sent", COUNTER, &|r, _| {
            r.counters.sent as f64
        }));
        families.push(per_fleet(
            "fleetstorm_heartbeats_missed_total",
            "Heartbeats never sent: the device was still busy with its previous one",
            COUNTER,
            &|r, _| r.counters.missed as f64,
        ));
        families
            .push(per_fleet("fleetstorm_retries_total", "Retries sent", COUNTER, &|r, _| r.counters.retries as f64));
        families.push(per_fleet(
            "fleetstorm_heartbeats_late_total",
            "Heartbeats sent after their intended time, held back by their busy device or a full pool",
            COUNTER,
            &|r, _| r.counters.late as f64,
        ));
        families.push(per_fleet(
            "fleetstorm_heartbeats_waited_total",
            "Heartbeats that waited for a pooled connection",
            COUNTER,
            &|r, _| r.counters.waited as f64,
        ));
        let mut ended = Vec::new();
        for (r, p) in s.fleets.iter().zip(&self.plans) {
            for (class, n) in CLASSES.iter().zip(r.counters.classes) {
                ended.push(number(COUNTER, n as f64, self.labels(&[("fleet", &p.name), ("outcome", class)])));
            }
        }
        families.push(family(
            "fleetstorm_heartbeats_completed_total",
            "Heartbeats ended, by outcome class (ok is 2xx)",
            COUNTER,
            ended,
        ));
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
            let metrics = s
                .fleets
                .iter()
                .zip(&self.plans)
                .map(|(r, p)| histogram(pick(r), self.labels(&[("fleet", &p.name)])))
                .collect();
            families.push(family(name, help, MetricType::HISTOGRAM, metrics));
        }
        // Exact percentiles from the HDR histograms (the buckets above only
        // bound them), for the p75/p95 people set SLOs on.
        let mut quantiles = Vec::new();
        for (r, p) in s.fleets.iter().zip(&self.plans) {
            for (q, text) in QUANTILES {
                let v = if r.latency.is_empty() { 0.0 } else { r.latency.value_at_quantile(q) as f64 / 1e6 };
                quantiles.push(number(GAUGE, v, self.labels(&[("fleet", &p.name), ("quantile", text)])));
            }
        }
        families.push(family(
            "fleetstorm_latency_quantile_seconds",
            "Latency percentiles since the start, exact from the HDR histogram",
            GAUGE,
            quantiles,
        ));
        let elapsed = s.elapsed;
        families.push(per_fleet("fleetstorm_devices", "Devices this process simulates", GAUGE, &|_, p| {
            p.online.devices() as f64
        }));
        families.push(per_fleet(
            "fleetstorm_devices_online",
            "Devices planned online now: past their ramp-up, not silenced by an outage or restart",
            GAUGE,
            &|_, p| p.online.at(elapsed) as f64,
        ));
        families.push(family(
            "fleetstorm_in_flight",
            "Heartbeats sent and not yet answered",
            GAUGE,
            vec![number(GAUGE, s.in_flight as f64, self.labels(&[]))],
        ));
        families.push(family(
            "fleetstorm_elapsed_seconds",
            "Time since the run's clock started",
            GAUGE,
            vec![number(GAUGE, elapsed.as_secs_f64(), self.labels(&[]))],
        ));
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&families, &mut out);
        out
    }

    fn labels(&self, extra: &[(&str, &str)]) -> Vec<LabelPair> {
        let mut labels: Vec<LabelPair> = extra.iter().map(|(k, v)| label(k, v)).collect();
        labels.push(label("shard", &self.shard));
        labels
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn number(kind: MetricType, value: f64, labels: Vec<LabelPair>) -> Metric {
    let mut m = Metric::from_label(labels);
    if kind == MetricType::COUNTER {
        let mut c = Counter::default();
        c.set_value(value);
        m.set_counter(c);
    } else {
        let mut g = Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    }
    m
}

/// An HDR histogram (µs) as a Prometheus histogram (s).
/// The latency percentiles served as gauges, with their label values.
const QUANTILES: [(f64, &str); 6] =
    [(0.5, "0.5"), (0.75, "0.75"), (0.9, "0.9"), (0.95, "0.95"), (0.99, "0.99"), (0.999, "0.999")];

fn histogram(h: &hdrhistogram::Histogram<u64>, labels: Vec<LabelPair>) -> Metric {
    let mut out = Histogram::default();
    out.set_sample_count(h.len());
    out.set_sample_sum(h.mean() * h.len() as f64 / 1e6);
    out.set_bucket(
        BUCKETS_S
            .iter()
            .map(|le| {
                let mut b = Bucket::default();
                b.set_upper_bound(*le);
                b.set_cumulative_count(if h.is_empty() { 0 } else { h.count_between(0, (le * 1e6) as u64) });
                b
            })
            .collect(),
    );
    let mut m = Metric::from_label(labels);
    m.set_histogram(out);
    m
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

/// Serves `GET /metrics` on `addr` until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<LiveMetrics>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    serve_pages(addr, stop, move |req| {
        if req.uri().path() == "/metrics" {
            page(StatusCode::OK, "text/plain; version=0.0.4", metrics.render())
        } else {
            page(StatusCode::NOT_FOUND, "text/plain", b"try /metrics\n".to_vec())
        }
    })
    .await
}
