//! A report's value of each metric of the gate catalogue, and thresholds
//! checked against it. The catalogue ([`crate::gate`]) names the metrics,
//! their units and which way is better, below the report; their values are
//! read here, next to the statistics that hold them.

use super::verdict::PoolLimit;
use super::{DeliveryStats, Report, Stats};
use crate::gate::metric::{Quantile, Quantity, Series};
use crate::gate::{Metric, NoValue, Threshold, ThresholdResult, Thresholds};
use crate::stats::Percentiles;

impl Report {
    /// `m`'s value in this report; an error when it has no such fleet or
    /// lacks what the metric needs.
    pub fn metric(&self, m: &Metric) -> Result<f64, NoValue> {
        let flag = |set: bool| if set { 1.0 } else { 0.0 };
        match m.quantity() {
            Quantity::GeneratorFellBehind => return Ok(flag(!self.generator.kept_up)),
            Quantity::PoolLimited => {
                let limit = self.generator.pool.as_ref().map(|p| p.limit);
                return Ok(flag(matches!(limit, Some(PoolLimit::Pool | PoolLimit::Bursts))));
            }
            Quantity::Percentile(Series::Delivery, q) => return Ok(quantile(&self.delivery_of(m)?.latency_ms, q)),
            Quantity::Delivered => return Ok(self.delivery_of(m)?.delivered as f64),
            Quantity::DeliveryLost => return Ok(self.delivery_of(m)?.lost as f64),
            Quantity::DeliveryDuplicates => return Ok(self.delivery_of(m)?.duplicates as f64),
            _ => {}
        }
        let stats = match &m.fleet {
            None => &self.totals,
            Some(name) => self.fleets.iter().find(|f| f.name.as_deref() == Some(name.as_str())).ok_or_else(|| {
                NoValue::NoFleet {
                    name: name.clone(),
                    fleets: self.fleets.iter().filter_map(|f| f.name.clone()).collect(),
                }
            })?,
        };
        stats.metric(m)
    }

    /// The end-to-end delivery `m` is about: its fleet's, or every
    /// observed fleet's added (histograms merged).
    fn delivery_of(&self, m: &Metric) -> Result<DeliveryStats, NoValue> {
        let none = || NoValue::NoDelivery { path: m.path.clone() };
        if let Some(name) = &m.fleet {
            return self.delivery.iter().find(|d| d.fleet == *name).cloned().ok_or_else(none);
        }
        match &self.delivery[..] {
            [] => Err(none()),
            [one] => Ok(one.clone()),
            all => {
                let mut sum = crate::stats::Delivery::default();
                for d in all {
                    sum.expected += d.expected;
                    sum.delivered += d.delivered;
                    sum.duplicates += d.duplicates;
                    if let Ok(h) = crate::stats::decode_histogram(&d.histogram) {
                        let _ = sum.latency.add(&h);
                    }
                }
                Ok(DeliveryStats::of("all", &sum))
            }
        }
    }

    /// Checks `t` against the finished run.
    pub fn check(&self, t: &Threshold, abort: bool) -> ThresholdResult {
        t.judge(self.metric(&t.metric), abort)
    }

    /// Every threshold of `thresholds` checked against the finished run.
    pub fn check_all(&self, thresholds: &Thresholds) -> Vec<ThresholdResult> {
        thresholds.all().map(|(t, abort)| self.check(t, abort)).collect()
    }
}

impl Stats {
    /// `m`'s value in one fleet's (or the run's) statistics (a fleet named
    /// by the metric is the caller's to pick).
    pub fn metric(&self, m: &Metric) -> Result<f64, NoValue> {
        let s = self;
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let freshness = || s.freshness.as_ref().ok_or_else(|| NoValue::NoFreshness { path: m.path.clone() });
        Ok(match m.quantity() {
            Quantity::Percentile(series, q) => {
                if s.untimed() && matches!(series, Series::Latency | Series::ServiceTime) {
                    return Err(NoValue::Untimed { path: m.path.clone(), unacknowledged: s.unacknowledged });
                }
                let p = match series {
                    Series::Latency => &s.latency_ms,
                    Series::ServiceTime => &s.service_time_ms,
                    Series::ScheduleLag => &s.schedule_lag_ms,
                    Series::ConnectionWait => &s.connection_wait_ms,
                    Series::Lateness => &s.lateness_ms,
                    Series::FreshnessGap => &freshness()?.max_gap_ms,
                    Series::SessionOpen => {
                        s.session_open_ms.as_ref().ok_or_else(|| NoValue::NoSessions { path: m.path.clone() })?
                    }
                    // The report's, once the run has ended ([`Report::metric`]).
                    Series::Delivery => return Err(NoValue::AtEndOnly { path: m.path.clone() }),
                };
                quantile(p, q)
            }
            Quantity::Scheduled => s.scheduled as f64,
            Quantity::Sent => s.sent as f64,
            Quantity::Missed => s.missed as f64,
            Quantity::Ok => s.ok as f64,
            Quantity::Failed => s.failed as f64,
            Quantity::Errors(classes) => classes.iter().map(|c| s.errors_of(*c)).sum::<u64>() as f64,
            Quantity::Code(code) => s.answers_with(code) as f64,
            // Over the heartbeats that ended: during a run, those in flight
            // have no outcome yet (at the end, ok + failed = sent).
            Quantity::ErrorRate => s.error_rate(),
            Quantity::MissedRate => ratio(s.missed, s.scheduled),
            Quantity::OfferedRate => s.offered_rate,
            Quantity::AchievedRate => s.achieved_rate,
            Quantity::AchievedRateRatio => {
                if s.offered_rate > 0.0 {
                    s.achieved_rate / s.offered_rate
                } else {
                    1.0
                }
            }
            Quantity::StaleDevices => freshness()?.stale_devices as f64,
            Quantity::StaleShare => {
                let f = freshness()?;
                ratio(f.stale_devices, f.devices)
            }
            Quantity::NeverOk => freshness()?.never_ok as f64,
            Quantity::Retries => s.retries as f64,
            Quantity::RetryRate => ratio(s.retries, s.sent),
            Quantity::Recovered => s.recovered as f64,
            Quantity::Late => s.late as f64,
            Quantity::LateRate => ratio(s.late, s.sent),
            Quantity::Waited => s.waited as f64,
            Quantity::RetryPending => s.retry_pending as f64,
            Quantity::GeneratorFellBehind
            | Quantity::PoolLimited
            | Quantity::Delivered
            | Quantity::DeliveryLost
            | Quantity::DeliveryDuplicates => {
                return Err(NoValue::AtEndOnly { path: m.path.clone() });
            }
            Quantity::Connects => s.connects as f64,
            Quantity::Unacknowledged => s.unacknowledged as f64,
            Quantity::SessionsClosed
            | Quantity::SessionsReopened
            | Quantity::SessionsReopenFailed
            | Quantity::SessionsEndedOffline => {
                // A run of sessions (one was opened) counts them, if only 0s.
                if s.session_open_ms.is_none() {
                    return Err(NoValue::NoSessions { path: m.path.clone() });
                }
                let c = s.sessions.clone().unwrap_or_default();
                (match m.quantity() {
                    Quantity::SessionsClosed => c.closed,
                    Quantity::SessionsReopened => c.reopened,
                    Quantity::SessionsReopenFailed => c.reopen_failed,
                    _ => c.ended_offline,
                }) as f64
            }
        })
    }

    /// Checks `t` against these statistics, during a run.
    pub fn check(&self, t: &Threshold, abort: bool) -> ThresholdResult {
        t.judge(self.metric(&t.metric), abort)
    }
}

fn quantile(p: &Percentiles, q: Quantile) -> f64 {
    match q {
        Quantile::P50 => p.p50,
        Quantile::P75 => p.p75,
        Quantile::P90 => p.p90,
        Quantile::P95 => p.p95,
        Quantile::P99 => p.p99,
        Quantile::P999 => p.p999,
        Quantile::Max => p.max,
        Quantile::Mean => p.mean,
    }
}
