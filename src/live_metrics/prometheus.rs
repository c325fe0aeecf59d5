//! The live metrics in Prometheus' text format, and the `/metrics` page
//! that serves them (`fleetstorm run --metrics-addr`).

use std::net::SocketAddr;
use std::sync::Arc;

use ::prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use ::prometheus::{Encoder, TextEncoder};
use hyper::StatusCode;

use super::{BUCKETS_S, Buckets, Family, Kind, LiveMetrics, Point, Value};
use crate::pages::{OnWritten, Pages, page, serve_pages};

/// `families` in Prometheus' text format.
pub fn render(families: &[Family]) -> Vec<u8> {
    let families: Vec<MetricFamily> = families.iter().map(family).collect();
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail.
    let _ = TextEncoder::new().encode(&families, &mut out);
    out
}

fn family(f: &Family) -> MetricFamily {
    let mut out = MetricFamily::default();
    out.set_name(f.name.to_string());
    out.set_help(f.help.to_string());
    out.set_field_type(match f.kind {
        Kind::Counter => MetricType::COUNTER,
        Kind::Gauge => MetricType::GAUGE,
        Kind::Histogram => MetricType::HISTOGRAM,
    });
    out.set_metric(f.points.iter().map(|p| metric(f.kind, p)).collect());
    out
}

fn metric(kind: Kind, point: &Point) -> Metric {
    let labels = point
        .labels
        .iter()
        .map(|(name, value)| {
            let mut l = LabelPair::default();
            l.set_name(name.to_string());
            l.set_value(value.clone());
            l
        })
        .collect();
    let mut m = Metric::from_label(labels);
    match (&point.value, kind) {
        (Value::Number(v), Kind::Counter) => {
            let mut c = Counter::default();
            c.set_value(*v);
            m.set_counter(c);
        }
        (Value::Number(v), _) => {
            let mut g = Gauge::default();
            g.set_value(*v);
            m.set_gauge(g);
        }
        (Value::Histogram(b), _) => m.set_histogram(histogram(b)),
    }
    m
}

fn histogram(b: &Buckets) -> Histogram {
    let mut out = Histogram::default();
    out.set_sample_count(b.count);
    out.set_sample_sum(b.sum);
    out.set_bucket(
        BUCKETS_S
            .iter()
            .zip(&b.cumulative)
            .map(|(le, n)| {
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(*le);
                bucket.set_cumulative_count(*n);
                bucket
            })
            .collect(),
    );
    out
}

/// Serves `GET /metrics` on `addr` until [`Pages::close`]; a scrape of the
/// final totals, once written, is told to `metrics`
/// ([`LiveMetrics::final_scrape`]).
pub async fn serve(addr: SocketAddr, metrics: Arc<LiveMetrics>) -> std::io::Result<Pages> {
    serve_pages(addr, move |req| {
        if req.uri().path() != "/metrics" {
            return page(StatusCode::NOT_FOUND, "text/plain", b"try /metrics\n".to_vec());
        }
        let (families, settled) = metrics.scrape();
        let mut answer = page(StatusCode::OK, "text/plain; version=0.0.4", render(&families));
        if settled {
            let metrics = metrics.clone();
            answer.extensions_mut().insert(OnWritten(Arc::new(move || metrics.final_totals_scraped())));
        }
        answer
    })
    .await
}
