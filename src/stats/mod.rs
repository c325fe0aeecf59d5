//! What a run records: counters and HDR histograms, kept per worker and
//! per fleet, merged by addition.
//!
//! Each engine worker owns a [`Recorder`] per fleet and records into it with
//! no lock and no allocation; every flush it hands the recorder's contents
//! over (swapping in an empty one) and the aggregator adds them into the
//! run's totals and per-second timeline. Histograms are `hdrhistogram`
//! histograms of microseconds, from 1 µs to 1 h at 3 significant figures;
//! `Histogram::add` merges them exactly, which is what lets sharded runs
//! merge their reports later.

pub mod outcome;
pub mod timeline;

pub use outcome::{ClassCounts, Code, Failure, Outcome, OutcomeClass, PerClass, http_class, mqtt_class};

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The largest value a histogram holds: one hour, in microseconds.
pub const MAX_MICROS: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static histogram bounds")
}

/// What an observer saw of a fleet's messages end to end (an MQTT fleet's
/// `observe`): each delivered message timed from its intended time.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The messages the broker took: acknowledged (QoS 1) or written
    /// (QoS 0). Those not delivered were lost.
    pub expected: u64,
    /// Messages delivered, each counted once.
    pub delivered: u64,
    /// Deliveries of a message already delivered.
    pub duplicates: u64,
    /// Messages on the fleet's topics that were not this run's (another
    /// process's, or not fleetstorm's).
    pub foreign: u64,
    /// The observer's session broke before the end: what was not seen
    /// may not be lost.
    pub broken: bool,
    /// Intended time to delivery (µs).
    pub latency: Histogram<u64>,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery { expected: 0, delivered: 0, duplicates: 0, foreign: 0, broken: false, latency: new_histogram() }
    }
}

impl Delivery {
    /// What was taken and never delivered.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }
}

/// Records `micros` into `h`, clamped into the histogram's range.
#[inline]
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    // Cannot fail once clamped into the bounds given at creation.
    let _ = h.record(micros.clamp(1, MAX_MICROS));
}

/// Counters of one fleet (or of a whole run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Heartbeats whose intended time came during the run.
    pub scheduled: u64,
    pub sent: u64,
    /// Scheduled but never sent: the slot passed while the device was busy.
    pub missed: u64,
    /// Sent heartbeats by outcome class.
    pub classes: ClassCounts,
    /// Answers by their protocol's code (the HTTP status).
    pub codes: BTreeMap<Code, u64>,
    /// Retries sent (attempts beyond each heartbeat's first).
    pub retries: u64,
    /// Heartbeats that succeeded after at least one retry.
    pub recovered: u64,
    /// Connections opened (TCP, and TLS on https targets).
    pub connects: u64,
    /// Heartbeats sent after their intended time because their device was
    /// still busy with the previous one or they waited for a pooled
    /// connection (the generator's own lateness is schedule lag, not this).
    pub late: u64,
    /// Heartbeats that waited for a pooled connection.
    pub waited: u64,
    /// Heartbeats whose retry was still waiting for its time when the run
    /// ended: sent, but neither ok nor failed (their outcome is unknown).
    pub retry_pending: u64,
    /// Ok heartbeats the protocol acknowledges nothing of (MQTT's QoS 0):
    /// written, with no latency.
    pub unacknowledged: u64,
    /// What the devices' idle sessions did (a session transport's; all
    /// zero for HTTP).
    pub sessions: SessionCounts,
}

/// What a fleet's idle sessions did between heartbeats, as the engine
/// saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionCounts {
    /// Keep-alives sent between heartbeats.
    pub keepalives: u64,
    /// Messages that came in unasked (late acknowledgements, commands).
    pub inbound: u64,
    /// Sessions that ended while idle (their far end closed them, or
    /// stopped answering).
    pub closed: u64,
    /// Why they ended (adds up to `closed`).
    #[serde(default)]
    pub closed_by: ClosedBy,
    /// Sessions their devices ended as they went silent (an outage, a
    /// restart): dropped, or with a DISCONNECT, as the fleet says.
    #[serde(default)]
    pub ended_offline: u64,
    /// Lost sessions their devices reopened at once, after their
    /// reconnect delay (each also a connect).
    #[serde(default)]
    pub reopened: u64,
    /// Such reopenings that failed (each followed by another, after a
    /// longer delay).
    #[serde(default)]
    pub reopen_failed: u64,
}

/// Why idle sessions ended (a transport's `Closed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClosedBy {
    /// The far end said goodbye (MQTT's DISCONNECT).
    pub disconnect: u64,
    /// Of those, how many gave each MQTT 5 reason code (its number, in
    /// decimal as the report's `codes.mqtt` are).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub disconnect_reasons: BTreeMap<String, u64>,
    /// The far end closed the connection without a word.
    pub end_of_stream: u64,
    /// The connection broke (a reset, a failed write, bytes not of the protocol).
    pub broken: u64,
    /// The far end stopped answering keep-alives.
    pub keepalive_missed: u64,
}

impl ClosedBy {
    pub fn add(&mut self, other: &ClosedBy) {
        self.disconnect += other.disconnect;
        for (code, n) in &other.disconnect_reasons {
            *self.disconnect_reasons.entry(code.clone()).or_default() += n;
        }
        self.end_of_stream += other.end_of_stream;
        self.broken += other.broken;
        self.keepalive_missed += other.keepalive_missed;
    }
}

impl SessionCounts {
    pub fn add(&mut self, other: &SessionCounts) {
        self.keepalives += other.keepalives;
        self.inbound += other.inbound;
        self.closed += other.closed;
        self.closed_by.add(&other.closed_by);
        self.ended_offline += other.ended_offline;
        self.reopened += other.reopened;
        self.reopen_failed += other.reopen_failed;
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == SessionCounts::default()
    }
}

impl Counters {
    pub fn ok(&self) -> u64 {
        self.classes.ok()
    }

    pub fn failed(&self) -> u64 {
        self.classes.failed()
    }

    /// Heartbeats sent whose outcome is known.
    pub fn completed(&self) -> u64 {
        self.classes.total()
    }

    /// Heartbeats sent that ended: with an outcome, or with a retry still
    /// pending at the end. Once a run is over, this is `sent`.
    pub fn ended(&self) -> u64 {
        self.completed() + self.retry_pending
    }

    pub fn add(&mut self, other: &Counters) {
        self.scheduled += other.scheduled;
        self.sent += other.sent;
        self.missed += other.missed;
        self.retries += other.retries;
        self.recovered += other.recovered;
        self.connects += other.connects;
        self.late += other.late;
        self.waited += other.waited;
        self.retry_pending += other.retry_pending;
        self.unacknowledged += other.unacknowledged;
        self.sessions.add(&other.sessions);
        self.classes.add(&other.classes);
        for (code, n) in &other.codes {
            *self.codes.entry(*code).or_default() += n;
        }
    }
}

/// Everything recorded for one fleet over some span of a run.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub counters: Counters,
    /// From each heartbeat's intended time to its outcome (missed
    /// heartbeats at their corrected latency).
    pub latency: Histogram<u64>,
    /// From the actual send to the outcome.
    pub service_time: Histogram<u64>,
    /// The generator's own lateness: from when a heartbeat could be sent
    /// (its intended time, or when its device became free) to when the
    /// generator got to it (timers, CPU). Waiting for a pooled connection
    /// is not in it.
    pub schedule_lag: Histogram<u64>,
    /// From when the generator got to a heartbeat to when it had a
    /// connection to send it on: a full pool's wait, the target's
    /// back-pressure (zero without a pool).
    pub connection_wait: Histogram<u64>,
    /// How late each late heartbeat went (see [`Counters::late`]): from its
    /// intended time to its send.
    pub lateness: Histogram<u64>,
    /// Pool mode: the service time of exchanges sent while at most half the
    /// worker's pool was busy, the backend under light load from this
    /// generator; what the pool verdict compares the service time with.
    pub light_service_time: Histogram<u64>,
    /// TLS handshakes of the connections opened.
    pub tls_handshake: Histogram<u64>,
    /// Sessions opened (a session transport's): from the connect to the
    /// far end's acceptance (MQTT's CONNACK).
    pub session_open: Histogram<u64>,
    /// HTTP status counts in a flat array, so the hot path does not touch
    /// the map; folded into `counters.codes` by [`Recorder::take`].
    status_array: Box<[u64; 600]>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            counters: Counters::default(),
            latency: new_histogram(),
            service_time: new_histogram(),
            schedule_lag: new_histogram(),
            connection_wait: new_histogram(),
            lateness: new_histogram(),
            light_service_time: new_histogram(),
            tls_handshake: new_histogram(),
            session_open: new_histogram(),
            status_array: Box::new([0; 600]),
        }
    }
}

impl Recorder {
    /// A heartbeat's intended time came.
    #[inline]
    pub fn scheduled(&mut self) {
        self.counters.scheduled += 1;
    }

    /// A heartbeat was sent: the generator got to it `lag_us` after it
    /// could have gone, and it then waited `wait_us` for a connection.
    #[inline]
    pub fn sent(&mut self, lag_us: u64, wait_us: u64) {
        self.counters.sent += 1;
        record(&mut self.schedule_lag, lag_us);
        record(&mut self.connection_wait, wait_us);
        if wait_us > 0 {
            self.counters.waited += 1;
        }
    }

    /// A heartbeat went `late_us` after its intended time, held back by its
    /// busy device or a full pool.
    #[inline]
    pub fn late(&mut self, late_us: u64) {
        self.counters.late += 1;
        record(&mut self.lateness, late_us);
    }

    /// A pooled exchange sent under light load took `service_us`.
    #[inline]
    pub fn light_service(&mut self, service_us: u64) {
        record(&mut self.light_service_time, service_us);
    }

    /// A heartbeat's retry was still waiting when the run ended.
    #[inline]
    pub fn retry_pending(&mut self) {
        self.counters.retry_pending += 1;
    }

    /// A connection was opened, with a TLS handshake of `tls_us` if any,
    /// a session that took `session_us` to open if it is one.
    #[inline]
    pub fn connected(&mut self, tls_us: Option<u64>, session_us: Option<u64>) {
        self.counters.connects += 1;
        if let Some(us) = tls_us {
            record(&mut self.tls_handshake, us);
        }
        if let Some(us) = session_us {
            record(&mut self.session_open, us);
        }
    }

    /// A heartbeat was sent again (a retry).
    #[inline]
    pub fn retried(&mut self) {
        self.counters.retries += 1;
    }

    /// A heartbeat that had been retried succeeded.
    #[inline]
    pub fn recovered(&mut self) {
        self.counters.recovered += 1;
    }

    /// A heartbeat was missed; `latency_us` is its corrected latency.
    #[inline]
    pub fn missed(&mut self, latency_us: u64) {
        self.counters.missed += 1;
        record(&mut self.latency, latency_us);
    }

    /// A sent heartbeat ended.
    #[inline]
    pub fn completed(&mut self, outcome: Outcome, latency_us: u64, service_us: u64) {
        self.counters.classes[outcome.class()] += 1;
        match outcome.code() {
            // HTTP's statuses in an array (the hot path), moved to the map
            // when handed over.
            Some(Code::Http(s)) => match self.status_array.get_mut(usize::from(s)) {
                Some(slot) => *slot += 1,
                None => *self.counters.codes.entry(Code::Http(s)).or_default() += 1,
            },
            Some(code) => *self.counters.codes.entry(code).or_default() += 1,
            None => {}
        }
        if outcome == Outcome::Sent {
            // Nothing to time: no latency, rather than the time to write.
            self.counters.unacknowledged += 1;
            return;
        }
        record(&mut self.latency, latency_us);
        record(&mut self.service_time, service_us);
    }

    /// Hands over what was recorded and starts afresh.
    pub fn take(&mut self) -> Recorder {
        let mut taken = std::mem::take(self);
        for (status, n) in taken.status_array.iter_mut().enumerate() {
            if *n > 0 {
                *taken.counters.codes.entry(Code::Http(status as u16)).or_default() += *n;
                *n = 0;
            }
        }
        taken
    }

    /// Adds another recorder's contents (as returned by `take`).
    pub fn add(&mut self, other: &Recorder) {
        self.counters.add(&other.counters);
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.service_time.add(&other.service_time);
        let _ = self.schedule_lag.add(&other.schedule_lag);
        let _ = self.connection_wait.add(&other.connection_wait);
        let _ = self.lateness.add(&other.lateness);
        let _ = self.light_service_time.add(&other.light_service_time);
        let _ = self.tls_handshake.add(&other.tls_handshake);
        let _ = self.session_open.add(&other.session_open);
    }
}

/// The largest device gap a freshness histogram holds: 30 days, in µs.
pub const MAX_GAP_MICROS: u64 = 30 * 24 * 3_600_000_000;

/// How fresh one fleet's devices stayed: for each device that was due at
/// least once, its largest gap without a successful heartbeat (between two
/// successes, from its first intended time to its first success, and from
/// its last success to the end of the run).
#[derive(Debug, Clone)]
pub struct Freshness {
    /// Devices that were due at least once.
    pub devices: u64,
    /// Devices whose largest gap exceeded the fleet's staleness bound.
    pub stale: u64,
    /// Devices without a single successful heartbeat.
    pub never_ok: u64,
    /// Each device's largest gap, in µs (1 µs to 30 days).
    pub max_gap: Histogram<u64>,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            devices: 0,
            stale: 0,
            never_ok: 0,
            max_gap: Histogram::new_with_bounds(1, MAX_GAP_MICROS, 3).expect("static histogram bounds"),
        }
    }
}

impl Freshness {
    /// Counts one device whose largest gap was `gap_us`.
    pub fn device(&mut self, gap_us: u64, stale_after_us: u64, ever_ok: bool) {
        self.devices += 1;
        self.stale += u64::from(gap_us > stale_after_us);
        self.never_ok += u64::from(!ever_ok);
        let _ = self.max_gap.record(gap_us.clamp(1, MAX_GAP_MICROS));
    }

    pub fn add(&mut self, other: &Freshness) {
        self.devices += other.devices;
        self.stale += other.stale;
        self.never_ok += other.never_ok;
        let _ = self.max_gap.add(&other.max_gap);
    }
}

/// Percentiles of a histogram in milliseconds, as reports show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    /// Absent from reports written before p75 and p95 were kept: filled
    /// from the histogram when the report is read (see `Report::load`).
    #[serde(default = "f64_nan", skip_serializing_if = "is_nan")]
    pub p75: f64,
    pub p90: f64,
    #[serde(default = "f64_nan", skip_serializing_if = "is_nan")]
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Percentiles { p50: 0.0, p75: 0.0, p90: 0.0, p95: 0.0, p99: 0.0, p999: 0.0, max: 0.0, mean: 0.0 };
        }
        Percentiles {
            p50: ms(h.value_at_quantile(0.5)),
            p75: ms(h.value_at_quantile(0.75)),
            p90: ms(h.value_at_quantile(0.9)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

fn f64_nan() -> f64 {
    f64::NAN
}

fn is_nan(v: &f64) -> bool {
    v.is_nan()
}

impl Percentiles {
    /// Whether the percentiles came from a report that predates p75 and p95.
    pub fn lacks_p75_p95(&self) -> bool {
        self.p75.is_nan() || self.p95.is_nan()
    }
}

/// A histogram as base64 of its HdrHistogram V2 + DEFLATE encoding.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(compress_histogram(h))
}

/// A histogram's HdrHistogram V2 + DEFLATE encoding.
pub fn compress_histogram(h: &Histogram<u64>) -> Vec<u8> {
    use hdrhistogram::serialization::Serializer;
    let mut bytes = Vec::new();
    let _ = hdrhistogram::serialization::V2DeflateSerializer::new().serialize(h, &mut bytes);
    bytes
}

/// The inverse of [`compress_histogram`].
pub fn decompress_histogram(bytes: &[u8]) -> Result<Histogram<u64>, HistogramError> {
    Ok(hdrhistogram::serialization::Deserializer::new().deserialize(&mut &bytes[..])?)
}

/// A histogram as a report carries it that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    #[error("not base64: {0}")]
    NotBase64(#[from] base64::DecodeError),
    #[error("not an HdrHistogram V2 encoding: {0:?}")]
    NotHdr(#[from] hdrhistogram::serialization::DeserializeError),
}

/// The inverse of [`encode_histogram`].
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, HistogramError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    decompress_histogram(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorders_add_up_exactly() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for i in 0..100 {
            a.scheduled();
            a.sent(10, 0);
            a.completed(Outcome::Status(200), 1000 + i, 900);
        }
        b.scheduled();
        b.missed(5_000_000);
        b.scheduled();
        b.sent(20, 5);
        b.completed(Outcome::Status(503), 2000, 1900);
        // Another protocol's answer: its code counted as it is.
        b.scheduled();
        b.sent(20, 5);
        b.completed(Outcome::Answered { class: OutcomeClass::Auth, code: Some(Code::Mqtt(5)) }, 900, 800);
        let mut total = Recorder::default();
        total.add(&a.take());
        total.add(&b.take());
        let c = &total.counters;
        assert_eq!((c.scheduled, c.sent, c.missed, c.ok(), c.failed()), (103, 102, 1, 100, 2));
        assert_eq!(c.scheduled, c.sent + c.missed);
        assert_eq!(c.codes, BTreeMap::from([(Code::Http(200), 100), (Code::Http(503), 1), (Code::Mqtt(5), 1)]));
        assert_eq!((c.classes[OutcomeClass::Ok], c.classes[OutcomeClass::ServerError]), (100, 1));
        assert_eq!(c.classes[OutcomeClass::Auth], 1);
        assert_eq!(total.latency.len(), 103);
        assert!(total.latency.max() >= 4_990_000);
        assert_eq!(a.counters, Counters::default(), "take leaves an empty recorder");
    }

    #[test]
    fn histograms_survive_encoding() {
        let mut h = new_histogram();
        for v in [1, 10, 100, 1000, 123_456, MAX_MICROS] {
            record(&mut h, v);
        }
        let back = decode_histogram(&encode_histogram(&h)).unwrap();
        assert_eq!(back, h);
        assert!(matches!(decode_histogram("not base64!"), Err(HistogramError::NotBase64(_))));
        assert!(matches!(decode_histogram("AAAA"), Err(HistogramError::NotHdr(_))));
    }
}
