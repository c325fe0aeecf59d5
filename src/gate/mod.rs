//! Gates: thresholds on a run's metrics, checked at the end (exit code 3
//! when one fails) or during the run to abort it early.
//!
//! ```toml
//! [thresholds]
//! "latency.p99" = "< 250ms"
//! "error_rate" = "< 0.1%"
//! "fleets.factory-east.latency.p99" = "< 200ms"
//! [thresholds.abort]          # checked about every second, after `grace`
//! grace = "10s"
//! "error_rate" = "> 20%"
//! ```
//!
//! A condition is an operator (`<`, `<=`, `>`, `>=`, `==`, `!=`) and a
//! limit in the metric's unit ([`metric::Unit`]). End thresholds must hold;
//! an abort threshold fires when its condition *becomes true*. Metric paths
//! come from the catalogue in [`metric`]; an unknown one is an error when
//! the scenario is read, never a silent pass.

pub mod metric;

use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

pub use metric::{Better, LimitError, Metric, Unit, UnknownMetric};

/// A threshold that cannot be checked as written; the message starts with
/// the metric's path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error(transparent)]
    UnknownMetric(#[from] UnknownMetric),
    #[error(
        "{path}: the condition {condition:?} has no operator; write one of <, <=, >, >=, ==, != \
         and a limit, e.g. {}",
        unit.example()
    )]
    NoOperator { path: String, condition: String, unit: Unit },
    #[error("{path}: {source} (the metric is in {}: e.g. {})", unit_name(*unit), unit.example())]
    BadLimit {
        path: String,
        #[source]
        source: LimitError,
        unit: Unit,
    },
    /// The answer is known before any run (see `Threshold::check_possible`).
    #[error(
        "{path}: the condition {condition:?} is {} whatever the run does: {path} is {range}{hint}; \
         give a limit inside that range",
        if *always { "always true" } else { "never true" }
    )]
    Foregone { path: String, condition: String, always: bool, range: String, hint: String },
}

/// Why a report has no value for a metric: the outcome of its threshold
/// then says so, and fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoValue {
    #[error("the report has no fleet {name:?} (its fleets: {})", fleets.join(", "))]
    NoFleet { name: String, fleets: Vec<String> },
    #[error("{path}: the report has no device freshness")]
    NoFreshness { path: String },
    #[error("{path}: no session was opened (sessions are a session protocol's, such as MQTT's)")]
    NoSessions { path: String },
    #[error(
        "{path}: no heartbeat was timed: its {unacknowledged} were acknowledged by nothing (MQTT QoS 0: written, with \
         nothing to time them to); gate on errors or sent, or publish at QoS 1"
    )]
    Untimed { path: String, unacknowledged: u64 },
    #[error("{path}: the generator's verdict is known at the end of the run only")]
    AtEndOnly { path: String },
    #[error("{path}: no fleet was observed end to end (an MQTT 5 fleet's [fleets.mqtt] observe = true)")]
    NoDelivery { path: String },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
            Op::Eq => actual == limit,
            Op::Ne => actual != limit,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// One checked threshold: a metric, an operator and a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    pub op: Op,
    /// In the metric's unit (ms for times, a fraction for shares).
    pub limit: f64,
    /// The condition as written, e.g. `< 250ms`.
    pub condition: String,
}

impl Threshold {
    /// Reads `condition` (e.g. `< 250ms`) for the metric at `path`.
    pub fn parse(path: &str, condition: &str) -> Result<Threshold, ThresholdError> {
        let metric = Metric::parse(path)?;
        let t = condition.trim();
        let unit = metric.unit();
        let (op, rest) = [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("!=", Op::Ne), ("<", Op::Lt), (">", Op::Gt)]
            .iter()
            .find_map(|(s, op)| t.strip_prefix(s).map(|rest| (*op, rest)))
            .ok_or_else(|| ThresholdError::NoOperator {
                path: path.to_string(),
                condition: condition.to_string(),
                unit,
            })?;
        let limit = unit.parse_value(rest).map_err(|source| ThresholdError::BadLimit {
            path: path.to_string(),
            source,
            unit,
        })?;
        let threshold = Threshold { metric, op, limit, condition: t.to_string() };
        threshold.check_possible(path)?;
        Ok(threshold)
    }

    /// Refuses a condition whose answer is known before any run: always
    /// true (an end threshold that can never fail, an abort that would
    /// stop every run) or never true, because the limit lies at or beyond
    /// the edge of the values the metric can take.
    fn check_possible(&self, path: &str) -> Result<(), ThresholdError> {
        let (lo, hi) = self.metric.range();
        let limit = self.limit;
        let (always, never) = match self.op {
            Op::Lt => (limit > hi, limit <= lo),
            Op::Le => (limit >= hi, limit < lo),
            Op::Gt => (limit < lo, limit >= hi),
            Op::Ge => (limit <= lo, limit > hi),
            Op::Eq => (lo == hi && limit == lo, limit < lo || limit > hi),
            Op::Ne => (limit < lo || limit > hi, lo == hi && limit == lo),
        };
        if !(always || never) {
            return Ok(());
        }
        let unit = self.metric.unit();
        let range = if hi.is_finite() {
            format!("from {} to {}", unit.format(lo), unit.format(hi))
        } else {
            format!("{} or more", unit.format(lo))
        };
        let hint = if unit == Unit::Fraction && limit > 1.0 && !self.condition.trim_end().ends_with('%') {
            format!(
                " ({} is {}; a share written without % is a fraction of 1, e.g. 0.05 for 5%)",
                fmt_plain(limit),
                unit.format(limit)
            )
        } else {
            String::new()
        };
        Err(ThresholdError::Foregone { path: path.to_string(), condition: self.condition.clone(), always, range, hint })
    }

    /// The threshold as one expression, `latency.p99 < 250ms`.
    pub fn expr(&self) -> String {
        format!("{} {}", self.metric.path, self.condition)
    }

    /// The threshold's outcome for the metric's `value` (or why there is
    /// none): the report finds the value (`Report::check`).
    pub fn judge(&self, value: Result<f64, NoValue>, abort: bool) -> ThresholdResult {
        let unit = self.metric.unit();
        let (ok, actual, actual_text) = match value {
            // An abort threshold is "ok" while its condition is false.
            Ok(v) => (self.op.holds(v, self.limit) != abort, Some(v), unit.format(v)),
            Err(e) => (false, None, e.to_string()),
        };
        ThresholdResult { expr: self.expr(), metric: self.metric.path.clone(), abort, ok, actual, actual_text }
    }
}

fn fmt_plain(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Millis => "milliseconds",
        Unit::Fraction => "a share",
        Unit::Ratio => "a ratio",
        Unit::Count => "a count",
        Unit::PerSecond => "events per second",
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric.path, self.op.symbol(), self.metric.unit().format(self.limit))
    }
}

/// The outcome of one threshold, as reports carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// `METRIC CONDITION`, as written.
    pub expr: String,
    pub metric: String,
    /// An abort threshold (fires when its condition is true).
    #[serde(default)]
    pub abort: bool,
    /// Passed: an end threshold's condition held, an abort threshold's did not.
    pub ok: bool,
    /// The value in the metric's unit; `null` when it could not be had.
    pub actual: Option<f64>,
    /// The value as people read it, or why there is none.
    pub actual_text: String,
}

impl ThresholdResult {
    /// How it ended, as people read it: an end threshold passes or FAILs;
    /// an abort condition is not triggered or TRIGGERED (its condition is
    /// what would stop the run, so "pass" would read as a breach).
    pub fn outcome(&self) -> &'static str {
        match (self.abort, self.ok) {
            (false, true) => "pass",
            (false, false) => "FAIL",
            (true, true) => "not triggered",
            (true, false) => "TRIGGERED",
        }
    }
}

/// The default wait before abort thresholds are checked.
pub const DEFAULT_ABORT_GRACE: Duration = Duration::from_secs(10);

/// How long a run goes on with nothing succeeding, by default, before it
/// stops ([`Thresholds::stop_when_nothing_succeeds`]).
pub const DEFAULT_STOP_WHEN_NOTHING_SUCCEEDS: Duration = Duration::from_secs(10);

/// A scenario's thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Checked at the end; any failing gives exit code 3.
    pub end: Vec<Threshold>,
    /// Checked during the run; the first to fire stops it (exit code 3).
    pub abort: Vec<Threshold>,
    /// Abort thresholds are not checked before this much of the run.
    pub abort_grace: Duration,
    /// Stop the run when this much of it has passed, heartbeats have
    /// failed and not one has succeeded (a target refusing every
    /// connection need not burn the whole duration): exit code 5.
    /// `None` (`"off"`): never, for a run that starts in an outage.
    pub stop_when_nothing_succeeds: Option<Duration>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            end: Vec::new(),
            abort: Vec::new(),
            abort_grace: Duration::ZERO,
            stop_when_nothing_succeeds: Some(DEFAULT_STOP_WHEN_NOTHING_SUCCEEDS),
        }
    }
}

impl Thresholds {
    pub fn is_empty(&self) -> bool {
        self.end.is_empty() && self.abort.is_empty()
    }

    /// Every threshold, end ones first.
    pub fn all(&self) -> impl Iterator<Item = (&Threshold, bool)> {
        self.end.iter().map(|t| (t, false)).chain(self.abort.iter().map(|t| (t, true)))
    }

    /// Fleets named by thresholds, with the threshold naming them.
    pub fn fleets_named(&self) -> impl Iterator<Item = (&str, &Threshold)> {
        self.all().filter_map(|(t, _)| t.metric.fleet.as_deref().map(|f| (f, t)))
    }
}

// ------------------------------------------------------------ file format

impl<'de> Deserialize<'de> for Thresholds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ThresholdsVisitor { abort: false })
    }
}

/// Reads `[thresholds]` (or, with `abort`, `[thresholds.abort]`): metric
/// paths to conditions, each checked where it is written.
struct ThresholdsVisitor {
    abort: bool,
}

impl<'de> Visitor<'de> for ThresholdsVisitor {
    type Value = Thresholds;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of metric paths to conditions, e.g. \"latency.p99\" = \"< 250ms\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Thresholds, A::Error> {
        let mut out = Thresholds {
            abort_grace: DEFAULT_ABORT_GRACE,
            stop_when_nothing_succeeds: Some(DEFAULT_STOP_WHEN_NOTHING_SUCCEEDS),
            ..Thresholds::default()
        };
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format!("{key:?} is given twice")));
            }
            seen.push(key.clone());
            match key.as_str() {
                "abort" if !self.abort => {
                    let inner = map.next_value_seed(AbortSeed)?;
                    out.abort = inner.end;
                    out.abort_grace = inner.abort_grace;
                    out.stop_when_nothing_succeeds = inner.stop_when_nothing_succeeds;
                }
                "grace" if self.abort => {
                    let crate::units::DurationValue(g) = map.next_value()?;
                    out.abort_grace = g;
                }
                "stop_when_nothing_succeeds" if self.abort => {
                    let written: String = map.next_value()?;
                    out.stop_when_nothing_succeeds = stop_after(&written).map_err(de::Error::custom)?;
                }
                _ => {
                    let t = map.next_value_seed(ConditionSeed { path: &key, abort: self.abort })?;
                    out.end.push(t);
                }
            }
        }
        Ok(out)
    }
}

/// `stop_when_nothing_succeeds` as written: a duration, or `"off"`.
fn stop_after(written: &str) -> Result<Option<Duration>, String> {
    let hint = "write a duration such as \"10s\", or \"off\" for a run that starts in an outage";
    if written.trim() == "off" {
        return Ok(None);
    }
    match crate::units::parse_duration(written) {
        Ok(d) if !d.is_zero() => Ok(Some(d)),
        Ok(_) => Err(format!("stop_when_nothing_succeeds: {written:?} is no time at all: {hint}")),
        Err(e) => Err(format!("stop_when_nothing_succeeds: {e}: {hint}")),
    }
}

struct AbortSeed;

impl<'de> DeserializeSeed<'de> for AbortSeed {
    type Value = Thresholds;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Thresholds, D::Error> {
        d.deserialize_map(ThresholdsVisitor { abort: true })
    }
}

/// Reads one condition, knowing the metric it is for.
struct ConditionSeed<'k> {
    path: &'k str,
    abort: bool,
}

impl<'de> DeserializeSeed<'de> for ConditionSeed<'_> {
    type Value = Threshold;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Threshold, D::Error> {
        let condition = String::deserialize(d).map_err(|_| {
            de::Error::custom(format!("{}: write the condition as a string, e.g. \"< 250ms\"", self.path))
        })?;
        let t = Threshold::parse(self.path, &condition).map_err(de::Error::custom)?;
        if self.abort && t.metric.known_at_end_only() {
            return Err(de::Error::custom(format!(
                "{}: device freshness and the generator's verdicts are only known at the end of a run, so \
                 they cannot abort one; move it to [thresholds]",
                self.path
            )));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_that_cannot_fail_or_cannot_pass_are_refused() {
        for (path, cond, kind) in [
            ("error_rate", "< 150%", "always true"),
            ("error_rate", "<= 100%", "always true"),
            ("error_rate", "< 5", "always true"),
            ("missed_rate", ">= 0", "always true"),
            ("error_rate", "> 100%", "never true"),
            ("error_rate", "== 2", "never true"),
            ("error_rate", "!= 120%", "always true"),
            ("missed", ">= 0", "always true"),
            ("missed", "< 0", "never true"),
            ("fleets.a.freshness.stale_share", "< 101%", "always true"),
            ("latency.p99", "< 2h", "always true"),
            ("latency.p95", "< 0ms", "never true"),
            ("achieved_rate_ratio", ">= 0", "always true"),
        ] {
            let e = Threshold::parse(path, cond).expect_err(&format!("{path} {cond}"));
            assert!(matches!(e, ThresholdError::Foregone { .. }), "{e:?}");
            let e = e.to_string();
            assert!(e.contains(kind) && e.contains(path) && e.contains("range"), "{path} {cond}: {e}");
        }
        let e = Threshold::parse("error_rate", "< 5").unwrap_err().to_string();
        assert!(e.contains("500%") && e.contains("0.05 for 5%"), "{e}");
        // At the edge but still able to go either way: accepted.
        for (path, cond) in [
            ("error_rate", "< 100%"),
            ("error_rate", "> 0"),
            ("error_rate", "== 0"),
            ("missed", "== 0"),
            ("missed", "< 1"),
            ("latency.p95", "> 0ms"),
            ("achieved_rate_ratio", "> 0.99"),
        ] {
            assert!(Threshold::parse(path, cond).is_ok(), "{path} {cond}");
        }
    }

    #[test]
    fn every_operator_compares_as_written() {
        let cases = [
            ("< 10ms", 9.0, true),
            ("< 10ms", 10.0, false),
            ("<= 10ms", 10.0, true),
            ("> 10ms", 10.0, false),
            (">= 10ms", 10.0, true),
            ("== 10ms", 10.0, true),
            ("!= 10ms", 10.0, false),
            ("!=10ms", 11.0, true),
        ];
        for (cond, actual, holds) in cases {
            let t = Threshold::parse("latency.p99", cond).unwrap();
            assert_eq!(t.op.holds(actual, t.limit), holds, "{cond} with {actual}");
        }
    }

    #[test]
    fn conditions_without_operator_or_unit_are_refused() {
        let e = Threshold::parse("latency.p99", "250ms").unwrap_err();
        assert!(matches!(e, ThresholdError::NoOperator { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("no operator") && e.contains("< 250ms"), "{e}");
        let e = Threshold::parse("latency.p99", "< 250").unwrap_err();
        assert!(matches!(e, ThresholdError::BadLimit { source: LimitError::NoUnit { .. }, .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("no unit") && e.contains("milliseconds"), "{e}");
        let e = Threshold::parse("error_rate", "< lots").unwrap_err().to_string();
        assert!(e.contains("percentage"), "{e}");
        let e = Threshold::parse("latency.p98", "< 1s").unwrap_err();
        assert!(matches!(e, ThresholdError::UnknownMetric(_)), "{e:?}");
        assert!(e.to_string().contains("unknown metric"), "{e}");
    }

    #[test]
    fn tables_read_end_and_abort_thresholds() {
        let text = r#"
            "latency.p99" = "< 250ms"
            "error_rate" = "< 0.1%"
            [abort]
            grace = "5s"
            "error_rate" = "> 20%"
        "#;
        let t: Thresholds = toml::from_str(text).unwrap();
        assert_eq!(t.end.len(), 2);
        assert_eq!(t.end[0].expr(), "latency.p99 < 250ms");
        assert_eq!(t.end[1].limit, 0.001);
        assert_eq!(t.abort.len(), 1);
        assert_eq!(t.abort_grace, Duration::from_secs(5));
        assert_eq!(t.stop_when_nothing_succeeds, Some(DEFAULT_STOP_WHEN_NOTHING_SUCCEEDS), "on by default");
        assert_eq!(Thresholds::default().stop_when_nothing_succeeds, Some(DEFAULT_STOP_WHEN_NOTHING_SUCCEEDS));
        let stop = |v: &str| {
            toml::from_str::<Thresholds>(&format!("[abort]\nstop_when_nothing_succeeds = \"{v}\""))
                .map(|t| t.stop_when_nothing_succeeds)
                .map_err(|e| e.to_string())
        };
        assert_eq!(stop("3s"), Ok(Some(Duration::from_secs(3))));
        assert_eq!(stop("off"), Ok(None));
        for bad in ["0s", "soon"] {
            let e = stop(bad).unwrap_err();
            assert!(e.contains("stop_when_nothing_succeeds") && e.contains("\"off\""), "{bad}: {e}");
        }
        let e = toml::from_str::<Thresholds>("[abort]\n\"freshness.stale_devices\" = \"> 0\"").unwrap_err();
        assert!(e.to_string().contains("only known at the end"), "{e}");
        let e = toml::from_str::<Thresholds>("\"latency.p99\" = 250").unwrap_err();
        assert!(e.to_string().contains("as a string"), "{e}");
    }
}
