//! The reference backend's counters: plain atomics for `GET /stats`, and a
//! Prometheus registry (the `prometheus` crate, whose counters and
//! histograms are lock-free) for `GET /metrics`.
//!
//! Counters for the statuses the server actually produces are resolved once
//! at start, so the request path does no label lookup. MQTT sessions are
//! counted apart ([`MqttCounts`]); their messages also count in
//! `accepted`, `rejected`, the arrivals and the served times, which are
//! the backend's account of its device messages whatever the protocol.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Statuses `serve` answers with, whose counters are pre-resolved.
const KNOWN_STATUSES: [u16; 15] = [200, 400, 401, 403, 404, 405, 408, 413, 415, 429, 500, 502, 503, 504, 507];

pub struct Metrics {
    registry: Registry,
    by_status: IntCounterVec,
    known: Vec<(u16, IntCounter)>,
    duration: Histogram,
    devices: IntGauge,
    connections_open_gauge: IntGauge,
    dropped_counter: IntCounter,

    /// Heartbeats answered 200.
    pub accepted: AtomicU64,
    /// Heartbeats answered 400 (invalid).
    pub rejected: AtomicU64,
    /// Heartbeats answered with an injected error status.
    pub injected_errors: AtomicU64,
    /// Heartbeats whose connection was dropped on purpose.
    pub dropped: AtomicU64,
    /// Heartbeats refused for a full capacity queue (503).
    pub shed: AtomicU64,
    pub unauthorized: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    /// Heartbeat requests by HTTP version.
    pub http1_requests: AtomicU64,
    pub http2_requests: AtomicU64,
    /// TLS handshakes completed, and failed (untrusted client certificate,
    /// none when one is required, garbage).
    pub tls_handshakes: AtomicU64,
    pub tls_failures: AtomicU64,
    /// Connections closed on accept: `max_connections` were open.
    pub refused_connections: AtomicU64,
    /// Device requests being answered now (a gauge: a reset keeps it), for
    /// whoever must know that a request has reached serve.
    pub in_flight: AtomicU64,
    /// Device requests by the second they arrived in.
    pub arrivals: super::arrivals::Arrivals,
    /// How long each device request took in serve, exactly.
    pub served: super::served::ServedTimes,
    /// MQTT sessions and their packets.
    pub mqtt: MqttCounts,
}

/// What serve's MQTT listener saw: sessions opened and refused (by CONNACK
/// return code), messages, and why sessions ended.
pub struct MqttCounts {
    /// TCP connections open now, and accepted in all.
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    /// Sessions let in (CONNACK 0).
    pub sessions: AtomicU64,
    /// CONNECTs refused, by CONNACK return code (index 1 to 5).
    pub refused: [AtomicU64; 6],
    /// PUBLISH packets received, at QoS 0 and 1.
    pub received_qos0: AtomicU64,
    pub received_qos1: AtomicU64,
    /// PUBACKs sent.
    pub acked: AtomicU64,
    /// Messages refused (wrong topic, bad body, another device's): their
    /// session was closed.
    pub rejected: AtomicU64,
    /// Sessions closed: for a bad or out-of-place packet (QoS 2 included),
    /// for silence beyond 1.5 times their keep-alive, or for no CONNECT in
    /// time.
    pub protocol_errors: AtomicU64,
    pub keepalive_expired: AtomicU64,
    pub connect_timeouts: AtomicU64,
    /// Sessions closed on purpose: `drop_rate` or `drop_sessions`.
    pub dropped_sessions: AtomicU64,
    /// Sessions ended by a newer one of the same client id.
    pub taken_over: AtomicU64,
    pub pings: AtomicU64,
    pub subscribes: AtomicU64,
    /// Why the first refused message was refused (a client sees only its
    /// session closed).
    first_rejection: std::sync::Mutex<Option<String>>,
    /// The Prometheus view of the same.
    connacks: [IntCounter; 6],
    publishes: [IntCounter; 3],
    sessions_open: IntGauge,
}

/// The `result` label of `fleetstorm_serve_mqtt_publishes_total`.
#[derive(Debug, Clone, Copy)]
pub enum Published {
    Acked = 0,
    /// A valid QoS 0 message (nothing to acknowledge).
    Taken = 1,
    Rejected = 2,
}

impl MqttCounts {
    fn new(registry: &Registry) -> Self {
        let connacks = IntCounterVec::new(
            Opts::new("fleetstorm_serve_mqtt_connacks_total", "MQTT CONNACKs sent, by return code"),
            &["code"],
        )
        .expect("static metric definition");
        let publishes = IntCounterVec::new(
            Opts::new("fleetstorm_serve_mqtt_publishes_total", "MQTT messages received, by what became of them"),
            &["result"],
        )
        .expect("static metric definition");
        let sessions_open =
            IntGauge::new("fleetstorm_serve_mqtt_sessions_open", "Open MQTT connections").expect("static metric");
        for c in [
            Box::new(connacks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(publishes.clone()),
            Box::new(sessions_open.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        MqttCounts {
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            refused: Default::default(),
            received_qos0: AtomicU64::new(0),
            received_qos1: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            keepalive_expired: AtomicU64::new(0),
            connect_timeouts: AtomicU64::new(0),
            dropped_sessions: AtomicU64::new(0),
            taken_over: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            subscribes: AtomicU64::new(0),
            first_rejection: std::sync::Mutex::new(None),
            connacks: std::array::from_fn(|code| connacks.with_label_values(&[&code.to_string()])),
            publishes: ["acked", "taken", "rejected"].map(|r| publishes.with_label_values(&[r])),
            sessions_open,
        }
    }

    /// Counts a CONNACK with return `code` (0 to 5).
    pub fn connack(&self, code: u8) {
        let code = usize::from(code.min(5));
        if code == 0 {
            self.sessions.fetch_add(1, Ordering::Relaxed);
        } else {
            self.refused[code].fetch_add(1, Ordering::Relaxed);
        }
        self.connacks[code].inc();
    }

    pub fn published(&self, what: Published) {
        match what {
            Published::Acked => self.acked.fetch_add(1, Ordering::Relaxed),
            Published::Rejected => self.rejected.fetch_add(1, Ordering::Relaxed),
            Published::Taken => 0,
        };
        self.publishes[what as usize].inc();
    }

    /// Keeps `why` if it is the first refusal since the start (or a reset).
    pub fn first_rejection(&self, why: String) {
        let mut first = self.first_rejection.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(why);
    }

    /// The `mqtt` member of `GET /stats`.
    pub fn json(&self) -> serde_json::Value {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let refused: serde_json::Map<_, _> = (1..6)
            .filter(|&code| load(&self.refused[code]) > 0)
            .map(|code| (code.to_string(), serde_json::json!(load(&self.refused[code]))))
            .collect();
        serde_json::json!({
            "connections": {"open": load(&self.connections_open), "total": load(&self.connections_total)},
            "sessions": load(&self.sessions),
            "refused": refused,
            "received": {"qos0": load(&self.received_qos0), "qos1": load(&self.received_qos1)},
            "acked": load(&self.acked),
            "rejected": load(&self.rejected),
            "closed": {
                "protocol_error": load(&self.protocol_errors),
                "keepalive": load(&self.keepalive_expired),
                "no_connect": load(&self.connect_timeouts),
                "dropped": load(&self.dropped_sessions),
                "taken_over": load(&self.taken_over),
            },
            "pings": load(&self.pings),
            "subscribes": load(&self.subscribes),
            "first_rejection": self.first_rejection.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        })
    }

    fn reset(&self) {
        let counters = [
            &self.sessions,
            &self.received_qos0,
            &self.received_qos1,
            &self.acked,
            &self.rejected,
            &self.protocol_errors,
            &self.keepalive_expired,
            &self.connect_timeouts,
            &self.dropped_sessions,
            &self.taken_over,
            &self.pings,
            &self.subscribes,
        ];
        for a in counters.into_iter().chain(self.refused.iter()) {
            a.store(0, Ordering::Relaxed);
        }
        for c in self.connacks.iter().chain(self.publishes.iter()) {
            c.reset();
        }
        *self.first_rejection.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let by_status = IntCounterVec::new(
            Opts::new("fleetstorm_serve_requests_total", "HTTP requests answered, by status"),
            &["status"],
        )
        .expect("static metric definition");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "fleetstorm_serve_heartbeat_duration_seconds",
                "Time from a heartbeat's headers to its answer, injected faults included",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18).expect("static buckets")),
        )
        .expect("static metric definition");
        let devices = IntGauge::new("fleetstorm_serve_devices", "Devices in the registry").expect("static metric");
        let connections_open_gauge =
            IntGauge::new("fleetstorm_serve_connections_open", "Open client connections").expect("static metric");
        let dropped_counter =
            IntCounter::new("fleetstorm_serve_dropped_total", "Heartbeats whose connection was dropped on purpose")
                .expect("static metric");
        for c in [
            Box::new(by_status.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(devices.clone()),
            Box::new(connections_open_gauge.clone()),
            Box::new(dropped_counter.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        let mqtt = MqttCounts::new(&registry);
        let known = KNOWN_STATUSES.iter().map(|&s| (s, by_status.with_label_values(&[&s.to_string()]))).collect();
        Metrics {
            registry,
            by_status,
            known,
            duration,
            devices,
            connections_open_gauge,
            dropped_counter,
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            injected_errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            http1_requests: AtomicU64::new(0),
            http2_requests: AtomicU64::new(0),
            tls_handshakes: AtomicU64::new(0),
            tls_failures: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            arrivals: super::arrivals::Arrivals::default(),
            served: super::served::ServedTimes::default(),
            mqtt,
        }
    }

    /// Counts one answered request.
    pub fn answered(&self, status: u16) {
        match self.known.iter().find(|(s, _)| *s == status) {
            Some((_, c)) => c.inc(),
            None => self.by_status.with_label_values(&[&status.to_string()]).inc(),
        }
    }

    pub fn heartbeat_took(&self, d: Duration) {
        self.duration.observe(d.as_secs_f64());
        self.served.served(d);
    }

    pub fn dropped_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_counter.inc();
    }

    /// Requests answered so far, by status.
    pub fn statuses(&self) -> Vec<(u16, u64)> {
        let mut out = Vec::new();
        for family in prometheus::core::Collector::collect(&self.by_status) {
            for m in family.get_metric() {
                let status = m.get_label().first().and_then(|l| l.value().parse().ok());
                let n = m.get_counter().get_value() as u64;
                if let (Some(status), true) = (status, n > 0) {
                    out.push((status, n));
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// The Prometheus text exposition.
    pub fn render(&self, devices: u64) -> Vec<u8> {
        self.devices.set(i64::try_from(devices).unwrap_or(i64::MAX));
        self.connections_open_gauge.set(self.connections_open.load(Ordering::Relaxed) as i64);
        self.mqtt.sessions_open.set(self.mqtt.connections_open.load(Ordering::Relaxed) as i64);
        let mut out = Vec::new();
        // Encoding gathered metrics into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    /// Zeroes the request counters (`POST /stats/reset`); connection
    /// counts describe the present and are kept.
    pub fn reset(&self) {
        self.arrivals.reset();
        self.served.reset();
        for a in [&self.accepted, &self.rejected, &self.injected_errors, &self.dropped, &self.shed, &self.unauthorized]
        {
            a.store(0, Ordering::Relaxed);
        }
        for (_, c) in &self.known {
            c.reset();
        }
        self.mqtt.reset();
        // Counters for other statuses are removed (the known ones stay
        // registered: the request path holds them).
        for (status, _) in self.statuses() {
            if !KNOWN_STATUSES.contains(&status) {
                let _ = self.by_status.remove_label_values(&[&status.to_string()]);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
