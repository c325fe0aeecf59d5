//! Faults the reference backend can act out: added latency, injected error
//! statuses, dropped connections, a limited capacity and a stall; for MQTT
//! sessions also refused CONNECTs, a connect rate limit and sessions
//! dropped at once.
//!
//! Over MQTT the HTTP faults act where their meaning carries over:
//! `latency` before each PUBACK, `drop_rate` closes the session instead
//! of acknowledging a message, `stall` holds messages, the capacity queue
//! (`workers`, `service_time`, `queue_limit`) serves them, a message
//! beyond `queue_limit` closing its session (MQTT 3.1.1 has no negative
//! PUBACK; an MQTT 5 session gets DISCONNECT 0x89, server busy, first).
//! `error_rate` leaves MQTT alone;
//! `connack_refuse_rate` is its counterpart at CONNECT.
//!
//! [`Faults`] is the configuration, set from flags at start and replaced
//! whole by `POST /faults` (absent members are off, so `{}` clears every
//! fault). The server keeps it with its runtime state ([`ActiveFaults`]) in
//! a `watch` channel: each request reads the current value without a lock
//! held across awaits, and a stalled request wakes when the faults change.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use rand::RngExt;
use rand_distr::{Distribution, LogNormal, Normal};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::time::Instant;

use crate::units::{format_duration, parse_duration, serde_duration};

/// The injected faults. Probabilities are in `[0, 1]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Latency added before answering each heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// Share of heartbeats answered with `error_status` instead.
    pub error_rate: f64,
    /// The status of injected errors: 500, or 503 and 429 (both with
    /// `Retry-After`), or any other 4xx/5xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_status: Option<u16>,
    /// Share of heartbeats whose connection is closed without an answer.
    pub drop_rate: f64,
    /// Capacity: this many workers, each taking `service_time` per
    /// heartbeat (an M/D/c queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", with = "serde_duration::option")]
    pub service_time: Option<Duration>,
    /// Heartbeats waiting for a worker beyond this many get 503 at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_limit: Option<u32>,
    /// Hold every heartbeat this long before answering (released early
    /// when the faults change).
    #[serde(skip_serializing_if = "Option::is_none", with = "serde_duration::option")]
    pub stall: Option<Duration>,
    /// MQTT: share of CONNECTs refused with CONNACK `connack_code`.
    #[serde(skip_serializing_if = "is_zero")]
    pub connack_refuse_rate: f64,
    /// MQTT: the CONNACK return code of refused CONNECTs and of those
    /// beyond `connect_rate`: 1 to 5 (3, server unavailable, by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connack_code: Option<u8>,
    /// MQTT: CONNECTs accepted per second at most (a token bucket holding
    /// a second's worth); those beyond are refused with `connack_code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_rate: Option<f64>,
    /// MQTT: share of the sessions open when these faults are set that
    /// are closed at once (1 drops them all); later sessions are left be.
    #[serde(skip_serializing_if = "is_zero")]
    pub drop_sessions: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// The default CONNACK return code of refused sessions: server unavailable.
pub const DEFAULT_CONNACK_CODE: u8 = 3;

/// The default status of injected errors.
pub const DEFAULT_ERROR_STATUS: u16 = 500;

impl Faults {
    /// Checks the settings together; the message names the setting.
    pub fn check(&self) -> Result<(), String> {
        for (name, p) in [
            ("error_rate", self.error_rate),
            ("drop_rate", self.drop_rate),
            ("connack_refuse_rate", self.connack_refuse_rate),
            ("drop_sessions", self.drop_sessions),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} is {p}; it must be between 0 and 1"));
            }
        }
        if let Some(status) = self.error_status
            && !(400..=599).contains(&status)
        {
            return Err(format!("error_status is {status}; it must be a 4xx or 5xx status"));
        }
        match (self.workers, self.service_time) {
            (Some(0), _) => return Err("workers is 0; it must be at least 1".into()),
            (Some(_), None) => return Err("workers needs service_time (e.g. --service-time 2ms)".into()),
            (None, Some(_)) => return Err("service_time needs workers (e.g. --workers 4)".into()),
            _ => {}
        }
        if self.queue_limit.is_some() && self.workers.is_none() {
            return Err("queue_limit needs workers and service_time".into());
        }
        if let Some(latency) = &self.latency {
            latency.check()?;
        }
        if let Some(code) = self.connack_code
            && !(1..=5).contains(&code)
        {
            return Err(format!("connack_code is {code}; MQTT 3.1.1 refuses a session with 1 to 5"));
        }
        if let Some(rate) = self.connect_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!("connect_rate is {rate}; it must be above 0 (CONNECTs per second)"));
        }
        Ok(())
    }

    pub fn error_status(&self) -> u16 {
        self.error_status.unwrap_or(DEFAULT_ERROR_STATUS)
    }

    pub fn connack_code(&self) -> u8 {
        self.connack_code.unwrap_or(DEFAULT_CONNACK_CODE)
    }
}

/// A distribution of added latency, written as `50ms` (fixed),
/// `uniform:10ms..50ms`, `normal:20ms,5ms` (mean, standard deviation) or
/// `lognormal:20ms,0.5` (median, sigma of the underlying normal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    Fixed(Duration),
    Uniform(Duration, Duration),
    Normal { mean: Duration, sd: Duration },
    LogNormal { median: Duration, sigma: f64 },
}

impl Latency {
    fn check(&self) -> Result<(), String> {
        match *self {
            Latency::Uniform(lo, hi) if lo > hi => {
                Err(format!("uniform latency: {} is above {}", format_duration(lo), format_duration(hi)))
            }
            Latency::LogNormal { sigma, .. } if !(sigma.is_finite() && sigma >= 0.0) => {
                Err(format!("lognormal latency: sigma is {sigma}; it must be a finite number at least 0"))
            }
            _ => Ok(()),
        }
    }

    /// Draws one latency (never negative).
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        let secs = match *self {
            Latency::Fixed(d) => return d,
            Latency::Uniform(lo, hi) => {
                if lo == hi {
                    return lo;
                }
                rng.random_range(lo.as_secs_f64()..=hi.as_secs_f64())
            }
            Latency::Normal { mean, sd } => {
                Normal::new(mean.as_secs_f64(), sd.as_secs_f64()).map_or(mean.as_secs_f64(), |n| n.sample(rng))
            }
            Latency::LogNormal { median, sigma } => LogNormal::new(median.as_secs_f64().max(1e-9).ln(), sigma)
                .map_or(median.as_secs_f64(), |l| l.sample(rng)),
        };
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::ZERO)
    }
}

impl FromStr for Latency {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("latency {text:?}: {why}; write 50ms, uniform:10ms..50ms, normal:20ms,5ms or lognormal:20ms,0.5")
        };
        let latency = match text.split_once(':') {
            None => Latency::Fixed(parse_duration(text).map_err(|e| bad(&e.to_string()))?),
            Some(("uniform", range)) => {
                let (lo, hi) = range.split_once("..").ok_or_else(|| bad("a uniform range is LOW..HIGH"))?;
                Latency::Uniform(
                    parse_duration(lo).map_err(|e| bad(&e.to_string()))?,
                    parse_duration(hi).map_err(|e| bad(&e.to_string()))?,
                )
            }
            Some(("normal", params)) => {
                let (mean, sd) = params.split_once(',').ok_or_else(|| bad("normal takes MEAN,SD"))?;
                Latency::Normal {
                    mean: parse_duration(mean).map_err(|e| bad(&e.to_string()))?,
                    sd: parse_duration(sd).map_err(|e| bad(&e.to_string()))?,
                }
            }
            Some(("lognormal", params)) => {
                let (median, sigma) = params.split_once(',').ok_or_else(|| bad("lognormal takes MEDIAN,SIGMA"))?;
                let sigma = sigma.trim().parse::<f64>().map_err(|_| bad("sigma must be a number such as 0.5"))?;
                Latency::LogNormal { median: parse_duration(median).map_err(|e| bad(&e.to_string()))?, sigma }
            }
            Some((kind, _)) => return Err(bad(&format!("unknown distribution {kind:?}"))),
        };
        latency.check().map_err(|e| bad(&e))?;
        Ok(latency)
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |d: &Duration| format_duration(*d).to_string().replace(' ', "");
        match self {
            Latency::Fixed(x) => write!(f, "{}", d(x)),
            Latency::Uniform(lo, hi) => write!(f, "uniform:{}..{}", d(lo), d(hi)),
            Latency::Normal { mean, sd } => write!(f, "normal:{},{}", d(mean), d(sd)),
            Latency::LogNormal { median, sigma } => write!(f, "lognormal:{},{sigma}", d(median)),
        }
    }
}

impl Serialize for Latency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The faults in force and the state they need while running.
#[derive(Debug)]
pub struct ActiveFaults {
    pub faults: Faults,
    /// The capacity queue, when `workers` is set.
    pub capacity: Option<CapacityQueue>,
    /// MQTT CONNECTs' bucket, when `connect_rate` is set.
    pub connects: Option<RateLimit>,
}

impl ActiveFaults {
    pub fn new(faults: Faults) -> Self {
        let capacity = match (faults.workers, faults.service_time) {
            (Some(workers), Some(service)) => Some(CapacityQueue::new(workers, service, faults.queue_limit)),
            _ => None,
        };
        let connects = faults.connect_rate.map(RateLimit::new);
        ActiveFaults { faults, capacity, connects }
    }
}

/// A token bucket: `rate` a second, holding a second's worth (at least
/// one), full at first.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    /// Tokens, and when they were counted.
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn new(rate: f64) -> Self {
        let burst = rate.max(1.0);
        RateLimit { rate, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Takes a token at `now`, if there is one.
    pub fn take(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (tokens, at) = *state;
        let tokens = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        let taken = tokens >= 1.0;
        *state = (if taken { tokens - 1.0 } else { tokens }, now);
        taken
    }
}

/// Sleeps for `d` on a timerfd (microsecond precision; tokio's timer rounds
/// up to the next millisecond, which would bias injected latencies by up
/// to 1 ms), or on tokio's timer if no timerfd can be had.
pub(super) async fn precise_sleep(d: Duration) {
    let precise = match tokio_timerfd::Delay::new(std::time::Instant::now() + d) {
        Ok(delay) => delay.await.is_ok(),
        Err(_) => false,
    };
    if !precise {
        tokio::time::sleep(d).await;
    }
}

/// Holds a stalled message for `stall`, or until the faults in `faults`
/// change.
pub(super) async fn wait_out_stall(faults: &tokio::sync::watch::Sender<std::sync::Arc<ActiveFaults>>, stall: Duration) {
    let mut changes = faults.subscribe();
    changes.mark_unchanged();
    tokio::select! {
        _ = tokio::time::sleep(stall) => {}
        _ = changes.changed() => {}
    }
}

/// An M/D/c queue acted out in virtual time: `workers` servers, each taking
/// exactly `service` per request, first come first served.
///
/// Each arrival is given the earliest free worker; it starts when that
/// worker frees up (or now) and finishes `service` later. The handler then
/// sleeps until that absolute finish time. Because finish times are
/// computed, not slept relative to one another, the throughput is exactly
/// `workers / service` whatever the timer's millisecond granularity.
#[derive(Debug)]
pub struct CapacityQueue {
    service: Duration,
    queue_limit: Option<u32>,
    state: Mutex<QueueState>,
}

#[derive(Debug)]
struct QueueState {
    /// When each worker is next free.
    free_at: Vec<Instant>,
    /// Start times of admitted requests that have not started yet, in order
    /// (starts never decrease, since each arrival takes the earliest worker).
    waiting: VecDeque<Instant>,
}

impl CapacityQueue {
    pub fn new(workers: u32, service: Duration, queue_limit: Option<u32>) -> Self {
        let now = Instant::now();
        CapacityQueue {
            service,
            queue_limit,
            state: Mutex::new(QueueState { free_at: vec![now; workers as usize], waiting: VecDeque::new() }),
        }
    }

    /// Admits a request arriving at `now`: its finish time, or `None` when
    /// the queue is full.
    pub fn admit(&self, now: Instant) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while state.waiting.front().is_some_and(|&start| start <= now) {
            state.waiting.pop_front();
        }
        let (worker, &free) = state.free_at.iter().enumerate().min_by_key(|(_, t)| **t)?;
        let start = free.max(now);
        if start > now {
            if self.queue_limit.is_some_and(|limit| state.waiting.len() >= limit as usize) {
                return None;
            }
            state.waiting.push_back(start);
        }
        let finish = start + self.service;
        state.free_at[worker] = finish;
        Some(finish)
    }

    /// Requests admitted but not yet started.
    pub fn queued(&self, now: Instant) -> usize {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.waiting.iter().filter(|&&s| s > now).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_specs_parse_and_print_back() {
        for text in ["50ms", "uniform:10ms..50ms", "normal:20ms,5ms", "lognormal:20ms,0.5"] {
            let l: Latency = text.parse().unwrap();
            assert_eq!(l.to_string(), text);
        }
        assert!("uniform:50ms..10ms".parse::<Latency>().unwrap_err().contains("above"));
        assert!("gamma:1s".parse::<Latency>().unwrap_err().contains("unknown distribution"));
        assert!("normal:20ms".parse::<Latency>().unwrap_err().contains("MEAN,SD"));
    }

    #[test]
    fn samples_follow_the_distribution() {
        let mut rng = rand::rng();
        let uniform: Latency = "uniform:10ms..20ms".parse().unwrap();
        let lognormal: Latency = "lognormal:20ms,0.5".parse().unwrap();
        let mut below_median = 0;
        for _ in 0..10_000 {
            let u = uniform.sample(&mut rng);
            assert!(u >= Duration::from_millis(10) && u <= Duration::from_millis(20));
            if lognormal.sample(&mut rng) < Duration::from_millis(20) {
                below_median += 1;
            }
        }
        assert!((4_500..5_500).contains(&below_median), "the median is the median: {below_median}");
        let normal: Latency = "normal:1ms,10ms".parse().unwrap();
        assert!((0..1000).all(|_| normal.sample(&mut rng) >= Duration::ZERO));
    }

    #[test]
    fn faults_are_checked_together() {
        let ok = Faults { workers: Some(4), service_time: Some(Duration::from_millis(2)), ..Faults::default() };
        assert_eq!(ok.check(), Ok(()));
        let cases = [
            (Faults { error_rate: 1.5, ..Faults::default() }, "error_rate"),
            (Faults { workers: Some(4), ..Faults::default() }, "needs service_time"),
            (Faults { queue_limit: Some(3), ..Faults::default() }, "queue_limit needs"),
            (Faults { error_status: Some(200), ..Faults::default() }, "4xx or 5xx"),
            (Faults { connack_code: Some(0), ..Faults::default() }, "1 to 5"),
            (Faults { connack_refuse_rate: -0.1, ..Faults::default() }, "connack_refuse_rate"),
            (Faults { drop_sessions: 2.0, ..Faults::default() }, "drop_sessions"),
            (Faults { connect_rate: Some(0.0), ..Faults::default() }, "connect_rate"),
        ];
        for (f, msg) in cases {
            assert!(f.check().unwrap_err().contains(msg), "{f:?}");
        }
    }

    #[test]
    fn the_json_form_uses_flag_names_in_snake_case() {
        let f: Faults =
            serde_json::from_str(r#"{"latency": "50ms", "error_rate": 0.05, "error_status": 503}"#).unwrap();
        assert_eq!(f.latency, Some(Latency::Fixed(Duration::from_millis(50))));
        assert_eq!(f.error_status(), 503);
        assert!(serde_json::from_str::<Faults>(r#"{"latncy": "50ms"}"#).is_err());
        let back = serde_json::to_value(&f).unwrap();
        assert_eq!(back["latency"], "50ms");
    }

    #[test]
    fn mqtt_s_faults_are_set_by_name_and_left_out_when_off() {
        let f: Faults = serde_json::from_str(
            r#"{"connack_refuse_rate": 0.5, "connack_code": 5, "connect_rate": 10, "drop_sessions": 1}"#,
        )
        .unwrap();
        assert_eq!(
            (f.connack_refuse_rate, f.connack_code(), f.connect_rate, f.drop_sessions),
            (0.5, 5, Some(10.0), 1.0)
        );
        assert_eq!(f.check(), Ok(()));
        assert!(ActiveFaults::new(f.clone()).connects.is_some(), "the bucket made once");
        let back = serde_json::to_value(&f).unwrap();
        assert_eq!((back["connack_code"].as_u64(), back["drop_sessions"].as_f64()), (Some(5), Some(1.0)));
        let off = serde_json::to_value(Faults::default()).unwrap();
        assert!(off.get("connack_refuse_rate").is_none() && off.get("drop_sessions").is_none(), "{off}");
        assert_eq!(Faults::default().connack_code(), DEFAULT_CONNACK_CODE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_connect_bucket_lets_a_second_s_worth_through_then_its_rate() {
        let limit = RateLimit::new(2.0);
        let t0 = Instant::now();
        assert_eq!((0..3).map(|_| limit.take(t0)).collect::<Vec<_>>(), [true, true, false]);
        assert!(!limit.take(t0 + Duration::from_millis(400)), "0.8 of a token");
        assert!(limit.take(t0 + Duration::from_millis(500)), "one token back after half a second");
        let slow = RateLimit::new(0.5);
        assert!(slow.take(t0) && !slow.take(t0 + Duration::from_secs(1)) && slow.take(t0 + Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_serves_workers_per_service_time() {
        let q = CapacityQueue::new(2, Duration::from_millis(10), Some(3));
        let t0 = Instant::now();
        let finishes: Vec<_> = (0..5).map(|_| q.admit(t0)).collect();
        let ms = |t: Option<Instant>| t.map(|t| (t - t0).as_millis());
        // Two start at once, the next three wait 10, 10 and 20 ms.
        assert_eq!(finishes.iter().map(|&f| ms(f)).collect::<Vec<_>>(), [10, 10, 20, 20, 30].map(Some));
        assert_eq!(q.queued(t0), 3);
        assert_eq!(q.admit(t0), None, "the queue limit of 3 is reached");
        // Once time passes, waiting requests start and room frees up.
        assert_eq!(q.queued(t0 + Duration::from_millis(15)), 1);
        assert_eq!(ms(q.admit(t0 + Duration::from_millis(15))), Some(30), "worker 1 frees up at 20 ms");
    }
}
