//! The live metrics pushed over OTLP/HTTP in protobuf (`fleetstorm run
//! --otlp-endpoint URL`), for the teams whose dashboards read OpenTelemetry
//! rather than Prometheus scrapes.
//!
//! Every push carries every series, cumulative since the run's start (as
//! Prometheus counters are), so a push that fails is made good by the next
//! one and the receiver needs no state to add shards up. A push goes every
//! interval from its own task, reading the latest snapshot the progress
//! callback left ([`LiveMetrics`]): the engine's hot path never waits on a
//! collector. The last push, once the run has ended, carries the totals
//! the report is made of.
//!
//! The messages are `opentelemetry-proto`'s; each push is one POST on a
//! fresh connection (one every few seconds needs no pool), over TLS for
//! `https://` with the platform's roots or `--otlp-ca`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tokio_util::sync::CancellationToken;

use super::{BUCKETS_S, Family, Kind, LiveMetrics, Point, Reading, Value};
use crate::transport::http::settings::HttpVersion;
use crate::transport::settings::TlsSettings;
use crate::transport::tls::{self, TlsClient};

/// The path OTLP/HTTP receivers take metrics on, added to an endpoint
/// given without one (as `OTEL_EXPORTER_OTLP_ENDPOINT` is).
pub const METRICS_PATH: &str = "/v1/metrics";

/// How long a push may take before it counts as failed.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the final push keeps trying a receiver that is away: long
/// enough for a collector's restart, short enough not to hold a CI job.
const FINAL_BUDGET: Duration = Duration::from_secs(5);

/// Where pushes go: an `http://` or `https://` URL, its path
/// [`METRICS_PATH`] when given none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint {
    pub uri: Uri,
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// What is wrong with an `--otlp-*` setting.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("{0:?} is not a URL: {1}")]
    NotUrl(String, http::uri::InvalidUri),
    #[error("{0:?}: OTLP/HTTP goes to an http:// or https:// URL")]
    Scheme(String),
    #[error("{0:?}: no host")]
    NoHost(String),
    #[error("{0:?} is not NAME=VALUE (e.g. authorization=Bearer TOKEN)")]
    NotHeader(String),
    #[error("{0:?}: {1:?} is not a header name")]
    HeaderName(String, String),
    #[error("{0:?}: the value is not a valid header value")]
    HeaderValue(String),
    #[error("--otlp-ca given for an http:// endpoint (TLS is for https://)")]
    CaWithoutTls,
    #[error("--otlp-endpoint {endpoint}: {source}")]
    Tls {
        endpoint: String,
        #[source]
        source: tls::TlsError,
    },
}

impl std::str::FromStr for OtlpEndpoint {
    type Err = OtlpError;

    fn from_str(text: &str) -> Result<OtlpEndpoint, OtlpError> {
        let given: Uri = text.trim().parse().map_err(|e| OtlpError::NotUrl(text.to_string(), e))?;
        let tls = match given.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(OtlpError::Scheme(text.to_string())),
        };
        let host = given.host().filter(|h| !h.is_empty()).ok_or_else(|| OtlpError::NoHost(text.to_string()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = given.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path_and_query = match given.path_and_query() {
            Some(p) if p.path() != "/" => p.as_str().to_string(),
            Some(p) => format!("{METRICS_PATH}{}", p.query().map(|q| format!("?{q}")).unwrap_or_default()),
            None => METRICS_PATH.to_string(),
        };
        let mut parts = given.into_parts();
        parts.path_and_query = Some(path_and_query.parse().map_err(|e| OtlpError::NotUrl(text.to_string(), e))?);
        let uri = Uri::from_parts(parts).map_err(|_| OtlpError::Scheme(text.to_string()))?;
        Ok(OtlpEndpoint { uri, tls, host, port })
    }
}

impl std::fmt::Display for OtlpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.uri)
    }
}

/// A header every push carries, `NAME=VALUE` on the command line (as in
/// `OTEL_EXPORTER_OTLP_HEADERS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl std::str::FromStr for OtlpHeader {
    type Err = OtlpError;

    fn from_str(text: &str) -> Result<OtlpHeader, OtlpError> {
        let (name, value) = text.split_once('=').ok_or_else(|| OtlpError::NotHeader(text.to_string()))?;
        let name = HeaderName::try_from(name.trim())
            .map_err(|_| OtlpError::HeaderName(text.to_string(), name.trim().to_string()))?;
        let value = HeaderValue::try_from(value.trim()).map_err(|_| OtlpError::HeaderValue(text.to_string()))?;
        Ok(OtlpHeader { name, value })
    }
}

/// Headers as the OpenTelemetry variables write them
/// (`OTEL_EXPORTER_OTLP_HEADERS`): `name=value` pairs separated by commas,
/// values percent-encoded. `origin` names the list in errors, which name
/// the entry by its place and never show a value.
pub fn headers_from_list(list: &str, origin: &str) -> Result<Vec<OtlpHeader>, String> {
    let entries = list.split(',').map(str::trim).filter(|e| !e.is_empty());
    entries
        .enumerate()
        .map(|(i, entry)| {
            let decoded = percent_encoding::percent_decode_str(entry).decode_utf8_lossy();
            header_entry(&decoded).map_err(|e| format!("{origin}, entry {}: {e}", i + 1))
        })
        .collect()
}

/// Headers from a file of `NAME=VALUE` lines (blank lines and lines
/// starting with `#` skipped), as a Kubernetes Secret mounts them.
pub fn headers_from_file(path: &std::path::Path) -> Result<Vec<OtlpHeader>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
    let lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let headers = lines
        .map(|(i, line)| header_entry(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    if headers.is_empty() {
        return Err(format!("{}: no NAME=VALUE line", path.display()));
    }
    Ok(headers)
}

/// One `NAME=VALUE`; the error names the header, never its value.
fn header_entry(entry: &str) -> Result<OtlpHeader, String> {
    let Some((name, value)) = entry.split_once('=') else {
        return Err("not NAME=VALUE".to_string());
    };
    let name = HeaderName::try_from(name.trim()).map_err(|_| "not a header name before the =".to_string())?;
    let value = HeaderValue::try_from(value.trim()).map_err(|_| format!("{name}: not a valid header value"))?;
    Ok(OtlpHeader { name, value })
}

/// Everything a run's export needs.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    pub endpoint: OtlpEndpoint,
    pub headers: Vec<OtlpHeader>,
    /// Between pushes while the run goes.
    pub interval: Duration,
    /// CA certificates to trust instead of the platform's roots.
    pub ca: Option<std::path::PathBuf>,
}

/// Who is pushing: the resource of every push.
#[derive(Debug, Clone)]
pub struct Source {
    pub scenario: String,
}

/// The protobuf request of one reading.
pub fn request(reading: &Reading, source: &Source) -> ExportMetricsServiceRequest {
    let start = unix_nanos(reading.started);
    let at = unix_nanos(reading.at);
    let metrics = reading.families.iter().map(|f| metric(f, start, at)).collect();
    let version = env!("CARGO_PKG_VERSION");
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", "fleetstorm"),
                    attribute("service.version", version),
                    attribute("fleetstorm.scenario", &source.scenario),
                ],
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "fleetstorm".into(),
                    version: version.into(),
                    ..InstrumentationScope::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
        ..KeyValue::default()
    }
}

fn attributes(p: &Point) -> Vec<KeyValue> {
    p.labels.iter().map(|(k, v)| attribute(k, v)).collect()
}

fn metric(f: &Family, start: u64, at: u64) -> Metric {
    let number = |p: &Point, v: f64| NumberDataPoint {
        attributes: attributes(p),
        start_time_unix_nano: start,
        time_unix_nano: at,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..NumberDataPoint::default()
    };
    let numbers = || {
        f.points
            .iter()
            .filter_map(|p| match p.value {
                Value::Number(v) => Some(number(p, v)),
                Value::Histogram(_) => None,
            })
            .collect()
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    let data = match f.kind {
        Kind::Counter => {
            metric::Data::Sum(Sum { data_points: numbers(), aggregation_temporality: cumulative, is_monotonic: true })
        }
        Kind::Gauge => metric::Data::Gauge(Gauge { data_points: numbers() }),
        Kind::Histogram => metric::Data::Histogram(Histogram {
            data_points: f
                .points
                .iter()
                .filter_map(|p| match &p.value {
                    Value::Histogram(b) => Some(HistogramDataPoint {
                        attributes: attributes(p),
                        start_time_unix_nano: start,
                        time_unix_nano: at,
                        count: b.count,
                        sum: Some(b.sum),
                        // OTLP counts each bucket on its own, and one more
                        // above the last bound.
                        bucket_counts: b
                            .cumulative
                            .iter()
                            .chain([&b.count])
                            .scan(0, |below, &upto| {
                                let n = upto.saturating_sub(*below);
                                *below = upto.max(*below);
                                Some(n)
                            })
                            .collect(),
                        explicit_bounds: BUCKETS_S.to_vec(),
                        min: b.min_max.map(|(min, _)| min),
                        max: b.min_max.map(|(_, max)| max),
                        ..HistogramDataPoint::default()
                    }),
                    Value::Number(_) => None,
                })
                .collect(),
            aggregation_temporality: cumulative,
        }),
    };
    Metric {
        name: f.name.to_string(),
        description: f.help.to_string(),
        unit: f.unit.ucum().to_string(),
        data: Some(data),
        ..Metric::default()
    }
}

/// Why one push did not land.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot make the request: {0}")]
    Request(#[from] http::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the receiver answered {status}{}", if .body.is_empty() { String::new() } else { format!(": {}", .body) })]
    Refused { status: http::StatusCode, body: String },
    #[error("the receiver rejected {rejected} data points: {message}")]
    Partial { rejected: i64, message: String },
}

impl PushError {
    /// Worth trying again, as the OTLP specification says: throttling,
    /// an unavailable receiver, a connection that did not happen.
    fn retryable(&self) -> bool {
        match self {
            PushError::Connect(_) | PushError::Timeout(_) | PushError::Http(_) => true,
            PushError::Refused { status, .. } => matches!(status.as_u16(), 429 | 502 | 503 | 504),
            PushError::Tls(_) | PushError::Request(_) | PushError::Partial { .. } => false,
        }
    }
}

/// What came of a run's pushes.
#[derive(Debug, Default, Clone)]
pub struct PushLog {
    pub pushed: u64,
    pub failed: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Whether the final push, with the report's totals, landed.
    pub final_pushed: bool,
}

/// A client of one endpoint.
struct Pusher {
    settings: OtlpSettings,
    tls: Option<TlsClient>,
    source: Source,
}

impl Pusher {
    fn new(settings: OtlpSettings, source: Source) -> Result<Pusher, OtlpError> {
        let endpoint = &settings.endpoint;
        let tls = match (endpoint.tls, &settings.ca) {
            (false, Some(_)) => return Err(OtlpError::CaWithoutTls),
            (false, None) => None,
            (true, ca) => {
                let tls_settings = TlsSettings { ca: ca.clone(), ..TlsSettings::default() };
                let client = tls::client(&tls_settings, &endpoint.host, HttpVersion::Http1.alpn())
                    .map_err(|source| OtlpError::Tls { endpoint: endpoint.to_string(), source })?;
                Some(client)
            }
        };
        Ok(Pusher { settings, tls, source })
    }

    /// One push of `reading`, within `timeout`.
    async fn push(&self, reading: &Reading, timeout: Duration) -> Result<(), PushError> {
        let body = Bytes::from(request(reading, &self.source).encode_to_vec());
        match tokio::time::timeout(timeout, self.post(body)).await {
            Ok(result) => result,
            Err(_) => Err(PushError::Timeout(timeout)),
        }
    }

    async fn post(&self, body: Bytes) -> Result<(), PushError> {
        let e = &self.settings.endpoint;
        let tcp = tokio::net::TcpStream::connect((e.host.as_str(), e.port)).await.map_err(PushError::Connect)?;
        let _ = tcp.set_nodelay(true);
        // Origin form: the path, as to a server (not a proxy).
        let path = e.uri.path_and_query().map_or(METRICS_PATH, |p| p.as_str());
        let mut request = http::Request::post(path)
            .header(http::header::HOST, authority(e))
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(http::header::USER_AGENT, concat!("fleetstorm/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))?;
        for h in &self.settings.headers {
            request.headers_mut().append(h.name.clone(), h.value.clone());
        }
        let response = match &self.tls {
            None => send(TokioIo::new(tcp), request).await?,
            Some(tls) => {
                let stream = tls.connector.connect(tls.server_name.clone(), tcp).await.map_err(|err| {
                    PushError::Tls(match tls::rustls_error(&err) {
                        Some(refused) => tls::explain(refused),
                        None => err.to_string(),
                    })
                })?;
                send(TokioIo::new(stream), request).await?
            }
        };
        let status = response.status();
        let bytes =
            Limited::new(response.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            let body = if text.chars().all(|c| !c.is_control() || c.is_whitespace()) {
                text.trim().chars().take(200).collect()
            } else {
                format!("({} bytes)", bytes.len())
            };
            return Err(PushError::Refused { status, body });
        }
        // A receiver that took part of the push says so in the answer.
        if let Ok(answer) = ExportMetricsServiceResponse::decode(bytes)
            && let Some(partial) = answer.partial_success.filter(|p| p.rejected_data_points > 0)
        {
            return Err(PushError::Partial { rejected: partial.rejected_data_points, message: partial.error_message });
        }
        Ok(())
    }
}

fn authority(e: &OtlpEndpoint) -> String {
    let host = if e.host.contains(':') { format!("[{}]", e.host) } else { e.host.clone() };
    match (e.tls, e.port) {
        (false, 80) | (true, 443) => host,
        (_, port) => format!("{host}:{port}"),
    }
}

async fn send<I>(io: I, request: http::Request<Full<Bytes>>) -> Result<http::Response<hyper::body::Incoming>, PushError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender.send_request(request).await?)
}

/// A run's export: pushes every interval until [`Exporter::finish`].
pub struct Exporter {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<(Pusher, PushLog)>,
    metrics: Arc<LiveMetrics>,
}

impl Exporter {
    /// Starts pushing `metrics` as `settings` say; an error is a setting
    /// that cannot work (a CA file that does not read), found before the run.
    pub fn start(settings: OtlpSettings, source: Source, metrics: Arc<LiveMetrics>) -> Result<Exporter, OtlpError> {
        let pusher = Pusher::new(settings, source)?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(periodic(pusher, metrics.clone(), stop.clone()));
        Ok(Exporter { stop, task, metrics })
    }

    /// Stops the periodic pushes and makes the final one, from what the
    /// metrics were last settled with; tries again on a retryable failure
    /// for [`FINAL_BUDGET`]. `abandoned`: the user wants out now; no final push.
    pub async fn finish(self, abandoned: bool) -> PushLog {
        self.stop.cancel();
        let Ok((pusher, mut log)) = self.task.await else { return PushLog::default() };
        if abandoned {
            log.last_error.get_or_insert_with(|| "the run was abandoned".into());
            return log;
        }
        let Some(reading) = self.metrics.read() else { return log };
        let give_up = tokio::time::Instant::now() + FINAL_BUDGET;
        let mut pause = Duration::from_millis(250);
        loop {
            let left = give_up.saturating_duration_since(tokio::time::Instant::now());
            match pusher.push(&reading, left.max(Duration::from_millis(100))).await {
                Ok(()) => {
                    log.pushed += 1;
                    log.final_pushed = true;
                    return log;
                }
                Err(e) => {
                    log.failed += 1;
                    let again = e.retryable() && tokio::time::Instant::now() + pause < give_up;
                    log.last_error = Some(e.to_string());
                    if !again {
                        return log;
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
}

/// Pushes the latest reading every interval until `stop`; says the first
/// failure of a kind on stderr as it happens (the run goes on).
async fn periodic(pusher: Pusher, metrics: Arc<LiveMetrics>, stop: CancellationToken) -> (Pusher, PushLog) {
    let interval = pusher.settings.interval;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut log = PushLog::default();
    let mut said = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let Some(reading) = metrics.read() else { continue };
        // A slow receiver delays the next push rather than failing this one.
        match pusher.push(&reading, PUSH_TIMEOUT).await {
            Ok(()) => log.pushed += 1,
            Err(e) => {
                log.failed += 1;
                if !said {
                    eprintln!("warning: OTLP push to {} failed: {e} (the run goes on)", pusher.settings.endpoint);
                    said = true;
                }
                log.last_error = Some(e.to_string());
            }
        }
    }
    (pusher, log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live_metrics::{Buckets, Unit};

    #[test]
    fn an_endpoint_without_a_path_gets_the_metrics_path() {
        let e: OtlpEndpoint = "http://127.0.0.1:4318".parse().unwrap();
        assert_eq!(e.uri.to_string(), "http://127.0.0.1:4318/v1/metrics");
        assert_eq!((e.host.as_str(), e.port, e.tls), ("127.0.0.1", 4318, false));
        let e: OtlpEndpoint = "https://collector.example/".parse().unwrap();
        assert_eq!((e.uri.to_string().as_str(), e.port, e.tls), ("https://collector.example/v1/metrics", 443, true));
        let e: OtlpEndpoint = "http://[::1]:9/otlp/v1/metrics?tenant=a".parse().unwrap();
        assert_eq!(e.uri.path_and_query().unwrap().as_str(), "/otlp/v1/metrics?tenant=a");
        assert_eq!((e.host.as_str(), authority(&e).as_str()), ("::1", "[::1]:9"));
    }

    #[test]
    fn bad_endpoints_and_headers_say_what_is_wrong() {
        let err = |s: &str| s.parse::<OtlpEndpoint>().unwrap_err().to_string();
        assert!(err("grpc://127.0.0.1:4317").contains("http:// or https://"), "{}", err("grpc://127.0.0.1:4317"));
        assert!(err("127.0.0.1:4318").contains("http:// or https://"));
        assert!(err("http://exa mple").contains("not a URL"));
        let herr = |s: &str| s.parse::<OtlpHeader>().unwrap_err().to_string();
        assert!(herr("authorization: Bearer x").contains("NAME=VALUE"));
        assert!(herr("bad name=x").contains("\"bad name\" is not a header name"), "{}", herr("bad name=x"));
        let h: OtlpHeader = "Authorization = Bearer a=b".parse().unwrap();
        assert_eq!((h.name.as_str(), h.value.to_str().unwrap()), ("authorization", "Bearer a=b"));
    }

    fn reading(families: Vec<Family>) -> Reading {
        let started = UNIX_EPOCH + Duration::from_secs(1_000);
        Reading { families, started, at: started + Duration::from_secs(5) }
    }

    #[test]
    fn counters_are_cumulative_monotonic_sums_and_histograms_count_each_bucket_once() {
        let point = |value| Point { labels: vec![("fleet", "a".into()), ("shard", "0/1".into())], value };
        let mut cumulative = vec![0u64; BUCKETS_S.len()];
        cumulative[3..].iter_mut().for_each(|n| *n = 7); // 7 at or under 5 ms
        cumulative[10..].iter_mut().for_each(|n| *n = 9); // 2 more under 1 s
        let families = vec![
            Family {
                name: "fleetstorm_heartbeats_sent_total",
                help: "h",
                kind: Kind::Counter,
                unit: Unit::Heartbeats,
                points: vec![point(Value::Number(12.0))],
            },
            Family {
                name: "fleetstorm_latency_seconds",
                help: "h",
                kind: Kind::Histogram,
                unit: Unit::Seconds,
                points: vec![point(Value::Histogram(Buckets {
                    count: 10,
                    sum: 2.5,
                    cumulative,
                    min_max: Some((0.004, 70.0)),
                }))],
            },
        ];
        let r = request(&reading(families), &Source { scenario: "s".into() });
        let metrics = &r.resource_metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else { panic!("{:?}", metrics[0]) };
        assert!(sum.is_monotonic && sum.aggregation_temporality == AggregationTemporality::Cumulative as i32);
        let p = &sum.data_points[0];
        assert_eq!(p.value, Some(number_data_point::Value::AsDouble(12.0)));
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (1_000_000_000_000, 1_005_000_000_000));
        assert_eq!(p.attributes.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(), ["fleet", "shard"]);
        assert_eq!(metrics[0].unit, "{heartbeat}");
        let Some(metric::Data::Histogram(h)) = &metrics[1].data else { panic!("{:?}", metrics[1]) };
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, BUCKETS_S);
        assert_eq!(p.bucket_counts.len(), BUCKETS_S.len() + 1);
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 10);
        assert_eq!((p.bucket_counts[3], p.bucket_counts[10], p.bucket_counts[16]), (7, 2, 1));
        assert_eq!((p.min, p.max, p.sum), (Some(0.004), Some(70.0), Some(2.5)));
        // What goes on the wire decodes to the same message.
        let decoded = ExportMetricsServiceRequest::decode(Bytes::from(r.encode_to_vec())).unwrap();
        assert_eq!(decoded, r);
    }
}
