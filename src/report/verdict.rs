//! The report's verdicts on the run's own accuracy: whether the generator
//! kept up, and, with a pool, why heartbeats waited for a connection.

use serde::{Deserialize, Serialize};

use crate::stats::{Percentiles, Recorder};

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

/// What the pool verdict is judged from: a run's (or a fleet's) totals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolLoad {
    pub offered_rate: f64,
    /// Heartbeats that waited for a connection.
    pub waited: u64,
    pub connection_wait_p99_ms: f64,
    pub service_time_p50_ms: f64,
    pub service_time_mean_ms: f64,
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

/// The generator's health from the run's schedule lag p99, and the pool
/// verdict when there is one.
pub(crate) fn generator_health(
    lag_p99: f64,
    busiest_thread: Option<f64>,
    pool: Option<PoolVerdict>,
) -> GeneratorHealth {
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
    pub fn judge(connections: u64, totals: &PoolLoad, light_load_p50_ms: Option<f64>) -> PoolVerdict {
        let wait_p99 = totals.connection_wait_p99_ms;
        let service_p50 = totals.service_time_p50_ms;
        let needed = (totals.offered_rate * totals.service_time_mean_ms / 1000.0).ceil().max(1.0) as u64;
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
pub(crate) fn light_load_p50(r: &Recorder) -> Option<f64> {
    (!r.light_service_time.is_empty()).then(|| Percentiles::of(&r.light_service_time).p50)
}
