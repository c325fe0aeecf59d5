//! The metric catalogue: every quantity of a report that thresholds,
//! `compare` and capacity SLOs may name, its unit, and which way is better.
//!
//! A metric path is `NAME` (the whole run) or `fleets.FLEET.NAME` (one
//! fleet). Names:
//!
//! | name | unit |
//! |---|---|
//! | `latency.{p50,p75,p90,p95,p99,p999,max,mean}` (also `service_time.*`, `schedule_lag.*`, `connection_wait.*`, `lateness.*`) | ms |
//! | `scheduled`, `sent`, `missed`, `ok`, `failed` | count |
//! | `late` (sent after their intended time: busy device, full pool), `waited` (for a pooled connection), `retry_pending` (a retry still due at the end) | count |
//! | `late_rate` (late / sent) | fraction |
//! | `errors.CLASS` (`rejected`, `auth`, `throttled`, `server_error`, `other_status`, `timeout`, `connect`, `tls`, `io`, `protocol`) | count |
//! | `errors.http_4xx` (= `rejected` + `auth` + `throttled`), `errors.http_5xx` (= `server_error`): HTTP aliases, the class names before v3 reports | count |
//! | `code.PROTOCOL.CODE` (answers with that code: `code.http.503`), `status.CODE` (the HTTP status: `code.http.CODE`) | count |
//! | `error_rate` (failed / (ok + failed)), `missed_rate` (missed / scheduled) | fraction |
//! | `retries`, `recovered` (succeeded after a retry) | count |
//! | `connects` (connections or sessions opened, reopenings included) | count |
//! | `retry_rate` (retries / sent: the load retries added) | fraction |
//! | `offered_rate`, `achieved_rate` | per second |
//! | `achieved_rate_ratio` (achieved / offered) | ratio |
//! | `freshness.stale_devices`, `freshness.never_ok` | count |
//! | `freshness.stale_share` (stale / devices due) | fraction |
//! | `freshness.max_gap.{p50,p75,p90,p95,p99,p999,max,mean}` | ms |
//! | `generator.fell_behind` (1 when the generator's verdict is "fell behind": its numbers understate the backend), `generator.pool_limited` (1 when heartbeats queued for a pool too small, or in bursts: the client, not the backend, limited the run) | 0 or 1, the whole run only, at the end |

use std::fmt;

use crate::stats::{Code, OutcomeClass};
use crate::units::UnitError;

/// A metric path that is not in the catalogue; the message lists it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown metric {path:?}; known metrics are {} (each also as fleets.FLEET.NAME)", catalogue().join(", "))]
pub struct UnknownMetric {
    pub path: String,
}

/// A limit that does not read in its metric's unit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    #[error("{text:?} has no unit; write a time such as 250ms or 1s")]
    NoUnit { text: String },
    #[error(transparent)]
    Duration(#[from] UnitError),
    #[error("{text:?} is not a number or a percentage such as 0.1%")]
    NotAShare { text: String },
    #[error("{text:?} is not a number")]
    NotANumber { text: String },
    #[error("{text:?} is not a rate such as 500/s")]
    NotARate { text: String },
    #[error("{text:?} is negative; no {unit:?} metric is")]
    Negative { text: String, unit: Unit },
}

/// What a metric's numbers measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds; limits are written as durations (`250ms`, `1s`).
    Millis,
    /// A share of something, shown as a percentage; `0.1%` or `0.001`.
    Fraction,
    /// A plain ratio, shown as a number; `0.99` or `99%`.
    Ratio,
    /// A whole number of events or devices.
    Count,
    /// Events per second; `500/s` or `500`.
    PerSecond,
}

impl Unit {
    /// A value of this unit as people read it.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Millis if v >= 1000.0 => format!("{}s", trim(v / 1000.0, 2)),
            Unit::Millis => format!("{}ms", trim(v, 3)),
            Unit::Fraction => format!("{}%", trim(v * 100.0, 3)),
            Unit::Ratio => trim(v, 4),
            Unit::Count => format!("{v:.0}"),
            Unit::PerSecond => format!("{}/s", trim(v, 1)),
        }
    }

    /// How a limit of this unit is written, for error messages.
    pub fn example(self) -> &'static str {
        match self {
            Unit::Millis => "\"< 250ms\"",
            Unit::Fraction => "\"< 0.1%\"",
            Unit::Ratio => "\"> 0.99\"",
            Unit::Count => "\"== 0\"",
            Unit::PerSecond => "\">= 1000/s\"",
        }
    }

    /// Reads a limit written for this unit.
    pub fn parse_value(self, text: &str) -> Result<f64, LimitError> {
        let t = text.trim();
        let number = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
        let text = || t.to_string();
        let value = match self {
            Unit::Millis => {
                if number(t).is_some() {
                    return Err(LimitError::NoUnit { text: text() });
                }
                crate::units::parse_duration(t)?.as_secs_f64() * 1000.0
            }
            Unit::Fraction | Unit::Ratio => match t.strip_suffix('%') {
                Some(p) => number(p).map(|v| v / 100.0),
                None => number(t),
            }
            .ok_or_else(|| LimitError::NotAShare { text: text() })?,
            Unit::Count => number(t).ok_or_else(|| LimitError::NotANumber { text: text() })?,
            Unit::PerSecond => {
                number(t.strip_suffix("/s").unwrap_or(t)).ok_or_else(|| LimitError::NotARate { text: text() })?
            }
        };
        if value < 0.0 {
            return Err(LimitError::Negative { text: text(), unit: self });
        }
        Ok(value)
    }
}

/// A number with at most `decimals` decimals, trailing zeros dropped.
fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// Which way a metric improves, for `compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
    /// Counts of work offered, not of quality.
    Neither,
}

/// A latency-like series (in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    Latency,
    ServiceTime,
    ScheduleLag,
    ConnectionWait,
    Lateness,
    FreshnessGap,
    /// How long opening each device's session took (a session protocol's).
    SessionOpen,
    /// Intended time to delivery to the fleet's observer (`observe`).
    Delivery,
}

/// A percentile (or the max or mean) of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantile {
    P50,
    P75,
    P90,
    P95,
    P99,
    P999,
    Max,
    Mean,
}

/// What a metric is: its value is read from a report's statistics
/// (`crate::report`), the layer above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    Percentile(Series, Quantile),
    Scheduled,
    Sent,
    Missed,
    Ok,
    Failed,
    /// Failures of these classes, added (one class, or an alias's).
    Errors(&'static [OutcomeClass]),
    /// Answers with this code.
    Code(Code),
    ErrorRate,
    MissedRate,
    OfferedRate,
    AchievedRate,
    AchievedRateRatio,
    StaleDevices,
    StaleShare,
    NeverOk,
    Retries,
    RetryRate,
    Recovered,
    Late,
    LateRate,
    Waited,
    RetryPending,
    /// 1 when the generator fell behind, 0 when it kept up.
    GeneratorFellBehind,
    /// 1 when the pool's verdict is a client-side limit (the pool, or
    /// bursts), 0 otherwise.
    PoolLimited,
    /// Connections (or devices' sessions) opened.
    Connects,
    /// Ok heartbeats nothing acknowledged (MQTT QoS 0).
    Unacknowledged,
    /// Idle sessions that ended (the far end closed them, or stopped
    /// answering).
    SessionsClosed,
    /// Lost sessions their devices reopened, and such reopenings that failed.
    SessionsReopened,
    SessionsReopenFailed,
    /// Sessions their devices ended as they went silent.
    SessionsEndedOffline,
    /// Observed messages delivered, lost, and delivered again.
    Delivered,
    DeliveryLost,
    DeliveryDuplicates,
}

/// A metric path, resolved against the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// As written, e.g. `fleets.factory-east.latency.p99`.
    pub path: String,
    /// The fleet it is about, or `None` for the whole run.
    pub fleet: Option<String>,
    quantity: Quantity,
}

const SERIES: [(&str, Series); 8] = [
    ("latency", Series::Latency),
    ("service_time", Series::ServiceTime),
    ("schedule_lag", Series::ScheduleLag),
    ("connection_wait", Series::ConnectionWait),
    ("lateness", Series::Lateness),
    ("freshness.max_gap", Series::FreshnessGap),
    ("session_open", Series::SessionOpen),
    ("delivery", Series::Delivery),
];
const QUANTILES: [(&str, Quantile); 8] = [
    ("p50", Quantile::P50),
    ("p75", Quantile::P75),
    ("p90", Quantile::P90),
    ("p95", Quantile::P95),
    ("p99", Quantile::P99),
    ("p999", Quantile::P999),
    ("max", Quantile::Max),
    ("mean", Quantile::Mean),
];
const PLAIN: [(&str, Quantity); 31] = [
    ("connects", Quantity::Connects),
    ("unacknowledged", Quantity::Unacknowledged),
    ("sessions.closed", Quantity::SessionsClosed),
    ("sessions.reopened", Quantity::SessionsReopened),
    ("sessions.reopen_failed", Quantity::SessionsReopenFailed),
    ("sessions.ended_offline", Quantity::SessionsEndedOffline),
    ("delivery.delivered", Quantity::Delivered),
    ("delivery.lost", Quantity::DeliveryLost),
    ("delivery.duplicates", Quantity::DeliveryDuplicates),
    ("generator.fell_behind", Quantity::GeneratorFellBehind),
    ("generator.pool_limited", Quantity::PoolLimited),
    ("late", Quantity::Late),
    ("late_rate", Quantity::LateRate),
    ("waited", Quantity::Waited),
    ("retry_pending", Quantity::RetryPending),
    ("retries", Quantity::Retries),
    ("retry_rate", Quantity::RetryRate),
    ("recovered", Quantity::Recovered),
    ("scheduled", Quantity::Scheduled),
    ("sent", Quantity::Sent),
    ("missed", Quantity::Missed),
    ("ok", Quantity::Ok),
    ("failed", Quantity::Failed),
    ("error_rate", Quantity::ErrorRate),
    ("missed_rate", Quantity::MissedRate),
    ("offered_rate", Quantity::OfferedRate),
    ("achieved_rate", Quantity::AchievedRate),
    ("achieved_rate_ratio", Quantity::AchievedRateRatio),
    ("freshness.stale_devices", Quantity::StaleDevices),
    ("freshness.stale_share", Quantity::StaleShare),
    ("freshness.never_ok", Quantity::NeverOk),
];

/// The metric names, for messages and documentation.
pub fn catalogue() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (s, _) in SERIES {
        names.push(format!("{s}.{{p50,p75,p90,p95,p99,p999,max,mean}}"));
    }
    names.extend(PLAIN.iter().map(|(n, _)| n.to_string()));
    let classes: Vec<&str> = OutcomeClass::FAILED.iter().map(|c| c.as_str()).collect();
    names.push(format!("errors.{{{}}}", classes.join(",")));
    names.push("errors.{http_4xx,http_5xx} (HTTP aliases)".into());
    names.push(format!("code.{{{}}}.CODE", Code::PROTOCOLS.join(",")));
    names.push("status.CODE (the HTTP status)".into());
    names
}

impl Metric {
    /// Resolves a metric path; the error says what is known.
    pub fn parse(path: &str) -> Result<Metric, UnknownMetric> {
        let unknown = || UnknownMetric { path: path.to_string() };
        let (fleet, name) = match path.strip_prefix("fleets.") {
            Some(rest) => {
                // Fleet names are entity names, which have no dots.
                let (fleet, name) = rest.split_once('.').ok_or_else(unknown)?;
                if fleet.is_empty() {
                    return Err(unknown());
                }
                (Some(fleet.to_string()), name)
            }
            None => (None, path),
        };
        let quantity = if let Some((_, q)) = PLAIN.iter().find(|(n, _)| *n == name) {
            // The generator's verdicts are the run's, not a fleet's.
            if fleet.is_some() && matches!(q, Quantity::GeneratorFellBehind | Quantity::PoolLimited) {
                return Err(unknown());
            }
            *q
        } else if let Some(class) = name.strip_prefix("errors.") {
            Quantity::Errors(error_classes(class).ok_or_else(unknown)?)
        } else if let Some(code) = name.strip_prefix("status.") {
            Quantity::Code(http_status(code).ok_or_else(unknown)?)
        } else if let Some(code) = name.strip_prefix("code.") {
            let (protocol, code) = code.split_once('.').ok_or_else(unknown)?;
            match protocol {
                "http" => Quantity::Code(http_status(code).ok_or_else(unknown)?),
                "mqtt" => Quantity::Code(Code::parse("mqtt", code).ok_or_else(unknown)?),
                _ => return Err(unknown()),
            }
        } else {
            let (series, quantile) = name.rsplit_once('.').ok_or_else(unknown)?;
            let (_, s) = SERIES.iter().find(|(n, _)| *n == series).ok_or_else(unknown)?;
            let (_, q) = QUANTILES.iter().find(|(n, _)| *n == quantile).ok_or_else(unknown)?;
            Quantity::Percentile(*s, *q)
        };
        Ok(Metric { path: path.to_string(), fleet, quantity })
    }

    /// The failure classes an `errors.` metric adds (see [`Quantity::Errors`]).
    pub fn error_classes(&self) -> Option<&'static [OutcomeClass]> {
        match self.quantity {
            Quantity::Errors(classes) => Some(classes),
            _ => None,
        }
    }

    pub fn unit(&self) -> Unit {
        match self.quantity {
            Quantity::Percentile(..) => Unit::Millis,
            Quantity::Scheduled
            | Quantity::Sent
            | Quantity::Missed
            | Quantity::Ok
            | Quantity::Failed
            | Quantity::Errors(_)
            | Quantity::Code(_)
            | Quantity::StaleDevices
            | Quantity::NeverOk
            | Quantity::Retries
            | Quantity::Recovered
            | Quantity::Late
            | Quantity::Waited
            | Quantity::RetryPending
            | Quantity::GeneratorFellBehind
            | Quantity::PoolLimited
            | Quantity::Connects
            | Quantity::Unacknowledged
            | Quantity::SessionsClosed
            | Quantity::SessionsReopened
            | Quantity::SessionsReopenFailed
            | Quantity::SessionsEndedOffline
            | Quantity::Delivered
            | Quantity::DeliveryLost
            | Quantity::DeliveryDuplicates => Unit::Count,
            Quantity::ErrorRate
            | Quantity::MissedRate
            | Quantity::StaleShare
            | Quantity::RetryRate
            | Quantity::LateRate => Unit::Fraction,
            Quantity::OfferedRate | Quantity::AchievedRate => Unit::PerSecond,
            Quantity::AchievedRateRatio => Unit::Ratio,
        }
    }

    pub fn better(&self) -> Better {
        match self.quantity {
            Quantity::Ok
            | Quantity::AchievedRate
            | Quantity::AchievedRateRatio
            | Quantity::Recovered
            | Quantity::SessionsReopened
            | Quantity::Delivered => Better::Higher,
            Quantity::Scheduled
            | Quantity::Sent
            | Quantity::OfferedRate
            | Quantity::Code(_)
            | Quantity::Unacknowledged
            | Quantity::SessionsEndedOffline => Better::Neither,
            _ => Better::Lower,
        }
    }

    /// The values the metric can take, `(lowest, highest)`, in its unit:
    /// shares lie between 0 and 1, times within the histograms' range,
    /// everything else is at least 0.
    pub fn range(&self) -> (f64, f64) {
        match self.quantity {
            Quantity::Percentile(Series::FreshnessGap, _) => (0.0, crate::stats::MAX_GAP_MICROS as f64 / 1000.0),
            Quantity::Percentile(..) => (0.0, crate::stats::MAX_MICROS as f64 / 1000.0),
            _ if self.unit() == Unit::Fraction => (0.0, 1.0),
            Quantity::GeneratorFellBehind | Quantity::PoolLimited => (0.0, 1.0),
            _ => (0.0, f64::INFINITY),
        }
    }

    /// Whether the value is only known once the run has ended (device
    /// freshness, the generator's verdicts), so it cannot abort a run.
    pub fn known_at_end_only(&self) -> bool {
        matches!(
            self.quantity,
            Quantity::StaleDevices
                | Quantity::StaleShare
                | Quantity::NeverOk
                | Quantity::Percentile(Series::FreshnessGap, _)
                | Quantity::GeneratorFellBehind
                | Quantity::PoolLimited
                | Quantity::Percentile(Series::Delivery, _)
                | Quantity::Delivered
                | Quantity::DeliveryLost
                | Quantity::DeliveryDuplicates
        )
    }

    /// What the metric measures, for the report to find its value.
    pub fn quantity(&self) -> Quantity {
        self.quantity
    }
}

/// The classes `errors.NAME` adds: a failure class's own name, or an HTTP
/// alias of the names before v3 reports (`http_4xx`: rejected, auth and
/// throttled; `http_5xx`: server_error), so that thresholds written then
/// read the same.
fn error_classes(name: &str) -> Option<&'static [OutcomeClass]> {
    match name {
        "http_4xx" => Some(&[OutcomeClass::Rejected, OutcomeClass::Auth, OutcomeClass::Throttled]),
        "http_5xx" => Some(&[OutcomeClass::ServerError]),
        _ => name.parse::<OutcomeClass>().ok().filter(|c| !c.is_ok()).map(OutcomeClass::alone),
    }
}

/// An HTTP status as a metric names it (100 to 599).
fn http_status(code: &str) -> Option<Code> {
    code.parse().ok().filter(|c| (100..=599).contains(c)).map(Code::Http)
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_with_units_and_directions() {
        let cases = [
            ("latency.p99", None, Unit::Millis, Better::Lower),
            ("service_time.mean", None, Unit::Millis, Better::Lower),
            ("fleets.factory-east.latency.p999", Some("factory-east"), Unit::Millis, Better::Lower),
            ("error_rate", None, Unit::Fraction, Better::Lower),
            ("achieved_rate_ratio", None, Unit::Ratio, Better::Higher),
            ("achieved_rate", None, Unit::PerSecond, Better::Higher),
            ("delivery.p99", None, Unit::Millis, Better::Lower),
            ("fleets.f.delivery.lost", Some("f"), Unit::Count, Better::Lower),
            ("delivery.delivered", None, Unit::Count, Better::Higher),
            ("missed", None, Unit::Count, Better::Lower),
            ("errors.timeout", None, Unit::Count, Better::Lower),
            ("status.429", None, Unit::Count, Better::Neither),
            ("code.http.429", None, Unit::Count, Better::Neither),
            ("errors.throttled", None, Unit::Count, Better::Lower),
            ("errors.http_4xx", None, Unit::Count, Better::Lower),
            ("fleets.a.errors.server_error", Some("a"), Unit::Count, Better::Lower),
            ("fleets.a.freshness.stale_devices", Some("a"), Unit::Count, Better::Lower),
            ("freshness.max_gap.p99", None, Unit::Millis, Better::Lower),
        ];
        for (path, fleet, unit, better) in cases {
            let m = Metric::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!((m.fleet.as_deref(), m.unit(), m.better()), (fleet, unit, better), "{path}");
        }
    }

    #[test]
    fn unknown_paths_are_refused_with_the_catalogue() {
        for path in [
            "latency.p98",
            "latency",
            "latencies.p99",
            "errors.ok",
            "errors.dns",
            "status.99",
            "code.http.99",
            "code.http",
            "code.mqtt.256",
            "code.mqtt.-1",
            "code.coap.404",
            "errors.http_3xx",
            "fleets.latency",
            "fleets..latency.p99",
            "",
        ] {
            let e = Metric::parse(path).unwrap_err();
            assert_eq!(e.path, path);
            let e = e.to_string();
            assert!(e.contains("unknown metric") && e.contains("error_rate"), "{path}: {e}");
        }
    }

    #[test]
    fn error_metrics_add_their_classes_and_codes_have_two_spellings() {
        use OutcomeClass::*;
        let classes = |path: &str| Metric::parse(path).unwrap().error_classes();
        assert_eq!(classes("errors.http_4xx"), Some(&[Rejected, Auth, Throttled][..]));
        assert_eq!(classes("errors.http_5xx"), Some(&[ServerError][..]));
        for c in OutcomeClass::FAILED {
            assert_eq!(classes(&format!("errors.{c}")), Some(&[c][..]), "{c}");
        }
        assert_eq!(classes("latency.p99"), None);
        assert_eq!(Metric::parse("status.503").unwrap().quantity(), Quantity::Code(Code::Http(503)));
        assert_eq!(Metric::parse("code.http.503").unwrap().quantity(), Quantity::Code(Code::Http(503)));
        assert_eq!(Metric::parse("code.mqtt.135").unwrap().quantity(), Quantity::Code(Code::Mqtt(0x87)));
        let names = catalogue().join(" ");
        assert!(
            names.contains("server_error") && names.contains("http_4xx") && names.contains("code.{http,mqtt}.CODE")
        );
    }

    #[test]
    fn limits_read_in_their_units() {
        assert_eq!(Unit::Millis.parse_value("250ms"), Ok(250.0));
        assert_eq!(Unit::Millis.parse_value("1s"), Ok(1000.0));
        assert_eq!(Unit::Millis.parse_value("250"), Err(LimitError::NoUnit { text: "250".into() }));
        assert!(matches!(Unit::Millis.parse_value("250 parsecs"), Err(LimitError::Duration(_))));
        assert_eq!(Unit::Fraction.parse_value("0.1%"), Ok(0.001));
        assert_eq!(Unit::Fraction.parse_value("0.2"), Ok(0.2));
        assert_eq!(Unit::Ratio.parse_value("99%"), Ok(0.99));
        assert_eq!(Unit::Count.parse_value("0"), Ok(0.0));
        assert!(Unit::Count.parse_value("none").is_err());
        assert_eq!(Unit::PerSecond.parse_value("500/s"), Ok(500.0));
        assert_eq!(
            Unit::Fraction.parse_value("-1%"),
            Err(LimitError::Negative { text: "-1%".into(), unit: Unit::Fraction })
        );
        assert_eq!(Unit::Millis.format(12.5), "12.5ms");
        assert_eq!(Unit::Fraction.format(0.001), "0.1%");
        assert_eq!(Unit::PerSecond.format(1000.0), "1000/s");
    }
}
