//! The regression gate behind `fleetstorm compare`: did the current runs
//! get worse than the baseline runs, by more than the allowed margin, and
//! by more than run-to-run noise?
//!
//! Each side is one or more reports (`fleetstorm.report/v3`, or v1 and v2
//! read as v3) of runs of the same scenario. For each metric (paths as in
//! [`crate::gate::metric`]; [`DEFAULT_METRICS`] unless `--metrics` names
//! others) the per-run values of each side are summarized as a [`Sample`]
//! (count, mean, min, max, standard deviation across runs) and the means
//! are compared. The defaults are fitted to MQTT runs: `session_open.p50`,
//! `session_open.p99` and `connects` are compared too when every report
//! opened sessions, and latency is left out (with a warning) when a
//! report's heartbeats were all untimed QoS 0 ones.
//!
//! # Which way is worse
//!
//! [`Metric::better`] says it: for a lower-is-better metric (latencies,
//! error and miss rates) a rise is worse; for a higher-is-better one
//! (`achieved_rate_ratio`, `achieved_rate`, `ok`) a fall is worse. Metrics
//! where neither way is better (`sent`, `offered_rate`, `code.http.CODE`) are
//! shown but never gate.
//!
//! # Exceeding the limit
//!
//! A change *exceeds the limit* when both:
//!
//! - its absolute size is above the metric unit's **floor**, and
//! - its size relative to the baseline mean is above `max_regression`
//!   (default 10%); from a baseline of 0 the relative change is undefined,
//!   so any change above the floor counts as exceeding it.
//!
//! The floors keep changes too small to matter from failing a build,
//! chiefly from a baseline of zero (an error rate going from 0 to 0.01%):
//!
//! | unit | floor | e.g. |
//! |---|---|---|
//! | milliseconds | 0.1 ms | `latency.p99` |
//! | fraction | 0.001 (0.1 percentage point) | `error_rate`, `missed_rate` |
//! | ratio | 0.001 | `achieved_rate_ratio` |
//! | count | 1 | `failed`, `errors.timeout` |
//! | per second | 1/s | `achieved_rate` |
//!
//! A change no larger than its floor is never a regression.
//!
//! # One run per side
//!
//! With one report on each side there is no measure of noise: a change
//! that exceeds the limit in the worse direction is a
//! [`Verdict::Regression`], in the better direction an
//! [`Verdict::Improvement`]; any other change is [`Verdict::WithinLimit`].
//!
//! # Several runs on a side
//!
//! When either side has two or more runs the comparison is noise-aware:
//! Welch's two-sided t-test of the difference of the means, on the per-run
//! values, at `confidence` (default 95%), with the Welch–Satterthwaite
//! degrees of freedom. When one side has a single run its variance is
//! assumed equal to the other side's and the test has that side's `n - 1`
//! degrees of freedom (the single-case test of Crawford and Howell). When
//! neither side varies at all, any difference counts as significant. The
//! Student's t distribution comes from `statrs`.
//!
//! - [`Verdict::Regression`]: significant and exceeds the limit, worse.
//! - [`Verdict::Improvement`]: significant and exceeds the limit, better.
//! - [`Verdict::WithinNoise`]: exceeds the limit but is not significant;
//!   the note gives the p-value and the confidence interval of the
//!   difference, and more runs would tell.
//! - [`Verdict::WithinLimit`]: does not exceed the limit (significant or
//!   not).
//!
//! In both modes [`Verdict::Unchanged`] means identical means and
//! [`Verdict::NotGated`] a change in a metric that has no better direction.
//! Only [`Verdict::Regression`] makes [`Comparison::regressed`] true.
//!
//! # Warnings
//!
//! Reports of different scenarios may be compared, but
//! [`Comparison::render`] says so; it also flags reports of interrupted
//! or aborted runs and runs whose generator fell behind (their latencies
//! understate the backend's).

use std::collections::BTreeSet;
use std::fmt;

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::gate::NoValue;
use crate::gate::metric::{Better, LimitError, Metric, Quantity, Series, Unit, UnknownMetric};
use crate::report::Report;

/// Why runs cannot be compared as asked.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("--metrics: {0}")]
    Metric(#[source] UnknownMetric),
    #[error("--metrics {0:?} names no metric; write e.g. \"latency.p99,error_rate\"")]
    NoMetricNamed(String),
    #[error("--max-regression: {0}")]
    MaxRegression(#[source] LimitError),
    #[error(
        "--max-regression {text:?} would allow a {}% worsening; write a percentage such as {text}% or a fraction such as 0.1",
        trim_number(*value * 100.0, 2)
    )]
    MaxRegressionAbove100 { text: String, value: f64 },
    #[error("no baseline report to compare against")]
    NoBaseline,
    #[error("no current report to compare")]
    NoCurrent,
    #[error("no metric to compare")]
    NoMetric,
    #[error("the maximum regression must be a fraction of at least 0, not {0}")]
    BadMaxRegression(f64),
    #[error("the confidence must be between 0 and 1 (exclusive), not {0}")]
    BadConfidence(f64),
    /// `report` names the side and the report's place on it.
    #[error("{report}: {}", with_path(path, source))]
    NoValue {
        report: String,
        path: String,
        #[source]
        source: NoValue,
    },
    #[error("{report}: {path} is {value}, not a number that can be compared")]
    NotANumber { report: String, path: String, value: f64 },
    #[error("{0}: the values are too large to compare")]
    TooLarge(String),
    #[error("the t distribution with {df} degrees of freedom: {source}")]
    Distribution {
        df: f64,
        #[source]
        source: statrs::distribution::StudentsTError,
    },
}

/// `e` led by the metric's path, unless it says it already.
fn with_path(path: &str, e: &NoValue) -> String {
    let e = e.to_string();
    if e.starts_with(path) { e } else { format!("{path}: {e}") }
}

/// The metrics compared when `--metrics` is not given.
pub const DEFAULT_METRICS: &[&str] = &[
    "latency.p50",
    "latency.p95",
    "latency.p99",
    "latency.p999",
    "connection_wait.p99",
    "error_rate",
    "missed_rate",
    "achieved_rate_ratio",
];

/// The allowed worsening when `--max-regression` is not given.
pub const DEFAULT_MAX_REGRESSION: f64 = 0.10;

/// The confidence of the noise test.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

/// How to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The allowed worsening, relative to the baseline mean (0.1 = 10%).
    pub max_regression: f64,
    /// The metrics compared, in the order shown.
    pub metrics: Vec<Metric>,
    /// The confidence of the t-test when a side has several runs, in (0, 1).
    pub confidence: f64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_regression: DEFAULT_MAX_REGRESSION,
            metrics: DEFAULT_METRICS.iter().map(|p| Metric::parse(p).expect("default metrics are known")).collect(),
            confidence: DEFAULT_CONFIDENCE,
        }
    }
}

impl Options {
    /// From the command line's text: `--max-regression` as a percentage
    /// (`10%`) or a fraction (`0.1`), `--metrics` as metric paths separated
    /// by commas. `None` keeps the default.
    pub fn parse(max_regression: Option<&str>, metrics: Option<&str>) -> Result<Options, CompareError> {
        let mut opts = Options::default();
        if let Some(text) = max_regression {
            opts.max_regression = parse_max_regression(text)?;
        }
        if let Some(text) = metrics {
            let mut list: Vec<Metric> = Vec::new();
            for path in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let metric = Metric::parse(path).map_err(CompareError::Metric)?;
                if !list.contains(&metric) {
                    list.push(metric);
                }
            }
            if list.is_empty() {
                return Err(CompareError::NoMetricNamed(text.to_string()));
            }
            opts.metrics = list;
        }
        Ok(opts)
    }
}

fn parse_max_regression(text: &str) -> Result<f64, CompareError> {
    let value = Unit::Fraction.parse_value(text).map_err(CompareError::MaxRegression)?;
    let t = text.trim();
    // A bare `10` is almost certainly meant as 10%, not 1000%.
    if !t.ends_with('%') && value > 1.0 {
        return Err(CompareError::MaxRegressionAbove100 { text: t.to_string(), value });
    }
    Ok(value)
}

/// One side's values of a metric, one per run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub n: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// The sample standard deviation across runs (n − 1 in the
    /// denominator); 0 for a single run.
    pub stddev: f64,
}

impl Sample {
    fn of(values: &[f64]) -> Sample {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let stddev = if n > 1 {
            (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Sample { n, mean, min, max, stddev }
    }

    fn is_finite(&self) -> bool {
        self.mean.is_finite() && self.min.is_finite() && self.max.is_finite() && self.stddev.is_finite()
    }
}

/// What a metric's change amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Worse by more than the limit (and, with several runs, significantly).
    Regression,
    /// Better by more than the limit (and, with several runs, significantly).
    Improvement,
    /// Beyond the limit, but not distinguishable from run-to-run noise.
    WithinNoise,
    /// Changed by no more than the limit (or no more than the unit's floor).
    WithinLimit,
    /// The same mean on both sides.
    Unchanged,
    /// Changed, in a metric where neither direction is better.
    NotGated,
}

impl Verdict {
    /// As the table shows it.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improvement",
            Verdict::WithinNoise => "within noise",
            Verdict::WithinLimit => "within limit",
            Verdict::Unchanged => "unchanged",
            Verdict::NotGated => "not gated",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// One metric compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The metric path, e.g. `latency.p99`.
    pub metric: String,
    pub unit: Unit,
    pub better: Better,
    pub baseline: Sample,
    pub current: Sample,
    /// `(current − baseline) / baseline` of the means; `None` from a
    /// baseline of 0 to anything else.
    pub change: Option<f64>,
    /// The t-test's two-sided p-value, when a side has several runs.
    pub p_value: Option<f64>,
    /// The confidence interval of `current − baseline` (in the metric's
    /// unit), when a side has several runs.
    pub interval: Option<(f64, f64)>,
    pub verdict: Verdict,
    /// Why, in a few words (p-value, interval, floor); may be empty.
    pub note: String,
}

/// The outcome of `compare`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub rows: Vec<Row>,
    /// Things that make the comparison less trustworthy: different
    /// scenarios, interrupted or aborted runs, a generator that fell behind.
    pub warnings: Vec<String>,
    /// The baseline's scenario name (its first report's).
    pub scenario: String,
    pub baseline_runs: usize,
    pub current_runs: usize,
    pub max_regression: f64,
    pub confidence: f64,
}

impl Comparison {
    /// Whether any metric regressed: the gate fails.
    pub fn regressed(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Regression)
    }

    /// The rows that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.verdict == Verdict::Regression)
    }

    /// Whether the t-test was used (a side has several runs).
    pub fn noise_aware(&self) -> bool {
        self.baseline_runs > 1 || self.current_runs > 1
    }

    /// A text table, one row a metric, then the overall verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let limit = percent(self.max_regression);
        let runs = |n: usize| if n == 1 { "1 run".to_string() } else { format!("{n} runs") };
        out.push_str(&format!(
            "compare {:?}: baseline {} vs current {}; a regression is a worsening beyond {limit}",
            self.scenario,
            runs(self.baseline_runs),
            runs(self.current_runs),
        ));
        if self.noise_aware() {
            out.push_str(&format!(" that is significant at {} confidence (Welch's t-test)", percent(self.confidence)));
            if self.baseline_runs == 1 || self.current_runs == 1 {
                out.push_str("; the single run is assumed to vary like the other side's runs");
            }
        } else {
            out.push_str(" (one run per side: no noise estimate)");
        }
        out.push('\n');
        out.push_str(
            "floors: changes of at most 0.1ms, 0.1 percentage point, 0.001 (ratios), 1 (counts) or 1/s are never regressions\n",
        );
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out.push('\n');

        let header = ["metric", "baseline", "current", "change", "verdict", "note"].map(String::from);
        let mut cells: Vec<[String; 6]> = vec![header];
        for r in &self.rows {
            cells.push([
                r.metric.clone(),
                show_sample(r.unit, &r.baseline),
                show_sample(r.unit, &r.current),
                show_change(r),
                r.verdict.word().to_string(),
                r.note.clone(),
            ]);
        }
        let mut widths = [0usize; 6];
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        for row in &cells {
            let mut line = String::new();
            for (i, (c, w)) in row.iter().zip(widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                // Numbers read best right-aligned, words left-aligned.
                let pad = " ".repeat(w - c.chars().count());
                if (1..=3).contains(&i) {
                    line.push_str(&pad);
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    line.push_str(&pad);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push('\n');

        let regressed: Vec<String> = self.regressions().map(|r| format!("{} ({})", r.metric, show_change(r))).collect();
        if regressed.is_empty() {
            let mut counts: Vec<String> = Vec::new();
            for v in [
                Verdict::Improvement,
                Verdict::WithinNoise,
                Verdict::WithinLimit,
                Verdict::Unchanged,
                Verdict::NotGated,
            ] {
                let n = self.rows.iter().filter(|r| r.verdict == v).count();
                if n > 0 {
                    counts.push(format!("{n} {}", v.word()));
                }
            }
            out.push_str(&format!("result: no regression beyond {limit} ({})\n", counts.join(", ")));
        } else {
            out.push_str(&format!("result: REGRESSION beyond {limit} in {}\n", regressed.join(", ")));
        }
        out
    }
}

/// Compares the current runs against the baseline runs, metric by metric.
///
/// Errors name the side, the report's position on it (1-based, in the
/// order given) and the metric when a report lacks what a metric needs.
pub fn compare(baseline: &[Report], current: &[Report], opts: &Options) -> Result<Comparison, CompareError> {
    if baseline.is_empty() {
        return Err(CompareError::NoBaseline);
    }
    if current.is_empty() {
        return Err(CompareError::NoCurrent);
    }
    if opts.metrics.is_empty() {
        return Err(CompareError::NoMetric);
    }
    if !(opts.max_regression.is_finite() && opts.max_regression >= 0.0) {
        return Err(CompareError::BadMaxRegression(opts.max_regression));
    }
    if !(opts.confidence > 0.0 && opts.confidence < 1.0) {
        return Err(CompareError::BadConfidence(opts.confidence));
    }

    let (metrics, said) = default_metrics_for(opts, baseline, current);
    let mut rows = Vec::with_capacity(metrics.len());
    for metric in &metrics {
        let b = side_values(metric, "baseline", baseline)?;
        let c = side_values(metric, "current", current)?;
        rows.push(judge(metric, &b, &c, opts)?);
    }
    let mut warnings = warnings(baseline, current);
    warnings.extend(said);

    Ok(Comparison {
        rows,
        warnings,
        scenario: baseline[0].scenario.name.clone(),
        baseline_runs: baseline.len(),
        current_runs: current.len(),
        max_regression: opts.max_regression,
        confidence: opts.confidence,
    })
}

/// The metrics compared, and what is said of the choice. The ones asked
/// for with `--metrics`, as asked. The defaults ([`DEFAULT_METRICS`]) are
/// fitted to the reports: when every report on both sides opened sessions
/// (an MQTT run's), `session_open.p50`, `session_open.p99` and `connects`
/// are compared too, and `delivery.p99` and `delivery.lost` when every
/// report observed its fleets end to end; when a report's heartbeats were all untimed (QoS 0:
/// written, with nothing to time them to), latency is left out, as it has
/// none, and a line says so.
fn default_metrics_for(opts: &Options, baseline: &[Report], current: &[Report]) -> (Vec<Metric>, Vec<String>) {
    let mut metrics = opts.metrics.clone();
    let mut said = Vec::new();
    if metrics != Options::default().metrics {
        return (metrics, said);
    }
    let all = || baseline.iter().chain(current);
    if all().any(|r| r.totals.untimed()) {
        metrics.retain(|m| !matches!(m.quantity(), Quantity::Percentile(Series::Latency | Series::ServiceTime, _)));
        said.push(
            "latency is not compared: a report's heartbeats were all published at QoS 0, written with nothing to \
             time them to (unacknowledged), so it has no latency"
                .to_string(),
        );
    }
    if all().all(|r| r.totals.session_open_ms.is_some()) {
        for path in ["session_open.p50", "session_open.p99", "connects"] {
            metrics.push(Metric::parse(path).expect("a known metric"));
        }
    }
    if all().all(|r| !r.delivery.is_empty()) {
        for path in ["delivery.p99", "delivery.lost"] {
            metrics.push(Metric::parse(path).expect("a known metric"));
        }
    }
    (metrics, said)
}

/// How one report is named in messages.
fn which(side: &str, i: usize, of: usize, r: &Report) -> String {
    if of == 1 {
        format!("the {side} report (started {})", r.started_at)
    } else {
        format!("{side} report {} of {of} (started {})", i + 1, r.started_at)
    }
}

fn side_values(metric: &Metric, side: &str, reports: &[Report]) -> Result<Vec<f64>, CompareError> {
    reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let report = || which(side, i, reports.len(), r);
            let path = metric.path.clone();
            let v = r.metric(metric).map_err(|source| CompareError::NoValue {
                report: report(),
                path: path.clone(),
                source,
            })?;
            if !v.is_finite() {
                return Err(CompareError::NotANumber { report: report(), path, value: v });
            }
            Ok(v)
        })
        .collect()
}

/// The unit's floor: changes no larger than this are never regressions.
pub fn floor(unit: Unit) -> f64 {
    match unit {
        Unit::Millis => 0.1,
        Unit::Fraction | Unit::Ratio => 0.001,
        Unit::Count | Unit::PerSecond => 1.0,
    }
}

fn floor_text(unit: Unit) -> &'static str {
    match unit {
        Unit::Millis => "0.1ms",
        Unit::Fraction => "0.1 percentage point",
        Unit::Ratio => "0.001",
        Unit::Count => "1",
        Unit::PerSecond => "1/s",
    }
}

/// The outcome of the t-test.
struct Test {
    p: f64,
    interval: (f64, f64),
    /// Neither side varies: any difference is significant.
    no_spread: bool,
}

/// Welch's two-sided t-test of `current − baseline`; a side with one run
/// borrows the other side's variance.
fn t_test(b: &Sample, c: &Sample, confidence: f64) -> Result<Test, CompareError> {
    let diff = c.mean - b.mean;
    let (nb, nc) = (b.n as f64, c.n as f64);
    let (vb, vc) = match (b.n, c.n) {
        (1, _) => (c.stddev * c.stddev, c.stddev * c.stddev),
        (_, 1) => (b.stddev * b.stddev, b.stddev * b.stddev),
        _ => (b.stddev * b.stddev, c.stddev * c.stddev),
    };
    let (eb, ec) = (vb / nb, vc / nc);
    let se2 = eb + ec;
    if se2 <= 0.0 || !se2.is_finite() {
        let p = if diff == 0.0 { 1.0 } else { 0.0 };
        return Ok(Test { p, interval: (diff, diff), no_spread: true });
    }
    let df = match (b.n, c.n) {
        (1, n) | (n, 1) => (n - 1) as f64,
        _ => se2 * se2 / (eb * eb / (nb - 1.0) + ec * ec / (nc - 1.0)),
    };
    let df = if df.is_finite() && df > 0.0 { df } else { (b.n + c.n).saturating_sub(2).max(1) as f64 };
    let dist = StudentsT::new(0.0, 1.0, df).map_err(|source| CompareError::Distribution { df, source })?;
    let se = se2.sqrt();
    let t = diff / se;
    let p = if t.is_finite() { (2.0 * dist.sf(t.abs())).clamp(0.0, 1.0) } else { 0.0 };
    let q = dist.inverse_cdf(1.0 - (1.0 - confidence) / 2.0);
    let half = if q.is_finite() { q * se } else { f64::INFINITY };
    Ok(Test { p: if p.is_nan() { 1.0 } else { p }, interval: (diff - half, diff + half), no_spread: false })
}

fn judge(metric: &Metric, b: &[f64], c: &[f64], opts: &Options) -> Result<Row, CompareError> {
    let unit = metric.unit();
    let better = metric.better();
    let (bs, cs) = (Sample::of(b), Sample::of(c));
    if !bs.is_finite() || !cs.is_finite() {
        return Err(CompareError::TooLarge(metric.path.clone()));
    }
    let diff = cs.mean - bs.mean;
    let change = if bs.mean != 0.0 {
        Some(diff / bs.mean.abs())
    } else if diff == 0.0 {
        Some(0.0)
    } else {
        None
    };
    let fl = floor(unit);
    // A tiny tolerance so that a change of exactly the floor (0 → 0.001)
    // is not flagged through rounding.
    let below_floor = diff.abs() <= fl * (1.0 + 1e-9);
    let exceeds = !below_floor && change.is_none_or(|ch| ch.abs() > opts.max_regression);
    let worse = match better {
        Better::Lower => diff > 0.0,
        Better::Higher => diff < 0.0,
        Better::Neither => false,
    };

    let mut notes: Vec<String> = Vec::new();
    let noise_aware = bs.n > 1 || cs.n > 1;
    let test = if noise_aware { Some(t_test(&bs, &cs, opts.confidence)?) } else { None };
    let significant = test.as_ref().is_none_or(|t| t.p < 1.0 - opts.confidence);
    if let Some(t) = &test
        && diff != 0.0
    {
        if t.no_spread {
            notes.push("no spread on either side: any difference is significant".into());
        } else {
            notes.push(format!(
                "{}; {} CI of the difference {} … {}",
                show_p(t.p),
                percent(opts.confidence),
                show_delta(unit, t.interval.0),
                show_delta(unit, t.interval.1)
            ));
        }
    }

    let verdict = if diff == 0.0 {
        Verdict::Unchanged
    } else if better == Better::Neither {
        notes.push("neither direction is better".into());
        Verdict::NotGated
    } else if below_floor {
        notes.push(format!("{} is within the {} floor", show_delta(unit, diff), floor_text(unit)));
        Verdict::WithinLimit
    } else if !exceeds {
        Verdict::WithinLimit
    } else if !significant {
        Verdict::WithinNoise
    } else if worse {
        Verdict::Regression
    } else {
        Verdict::Improvement
    };
    if change.is_none() && !below_floor && better != Better::Neither {
        notes.push(format!("from 0: beyond the {} floor", floor_text(unit)));
    }

    Ok(Row {
        metric: metric.path.clone(),
        unit,
        better,
        baseline: bs,
        current: cs,
        change,
        p_value: test.as_ref().map(|t| t.p),
        interval: test.as_ref().map(|t| t.interval),
        verdict,
        note: notes.join("; "),
    })
}

fn warnings(baseline: &[Report], current: &[Report]) -> Vec<String> {
    let mut out = Vec::new();
    let names = |rs: &[Report]| rs.iter().map(|r| r.scenario.name.clone()).collect::<BTreeSet<String>>();
    let (bn, cn) = (names(baseline), names(current));
    if bn.len() > 1 || cn.len() > 1 || bn != cn {
        let list = |s: &BTreeSet<String>| s.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
        out.push(format!(
            "the reports are of different scenarios (baseline: {}; current: {}); the comparison may mean little",
            list(&bn),
            list(&cn)
        ));
    }
    // A generator's change can move what it measures: say so when the
    // sides were made by different fleetstorms (where their reports say).
    let versions = |rs: &[Report]| rs.iter().filter_map(|r| r.fleetstorm_version.clone()).collect::<BTreeSet<String>>();
    let (bv, cv) = (versions(baseline), versions(current));
    if !bv.is_empty() && !cv.is_empty() && bv != cv {
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        out.push(format!(
            "the sides were made by different fleetstorm versions (baseline: {}; current: {}); a difference \
             may be the generator's",
            list(&bv),
            list(&cv)
        ));
    }
    for (side, reports) in [("baseline", baseline), ("current", current)] {
        for (i, r) in reports.iter().enumerate() {
            let mut why: Vec<String> = Vec::new();
            if let Some(a) = &r.aborted {
                why.push(format!("was aborted at {}s by the threshold {:?}", trim_number(a.at_s, 1), a.expr));
            } else if r.interrupted {
                why.push(format!("was interrupted after {}s", trim_number(r.duration_s, 1)));
            }
            if !r.generator.kept_up {
                why.push(format!(
                    "its generator fell behind (schedule lag p99 {}), so its latencies understate the backend's",
                    Unit::Millis.format(r.generator.schedule_lag_p99_ms)
                ));
            }
            if let Some(pool) = r.generator.pool.as_ref().filter(|p| p.limit == crate::report::PoolLimit::Pool) {
                why.push(format!(
                    "its pool of {} connections was too small for the offered rate (it needed {}), so its \
                     latencies understate the backend's",
                    pool.connections, pool.needed_connections
                ));
            }
            if !why.is_empty() {
                out.push(format!("{} {}", which(side, i, reports.len(), r), why.join("; ")));
            }
        }
    }
    out
}

fn trim_number(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

fn percent(fraction: f64) -> String {
    format!("{}%", trim_number(fraction * 100.0, 2))
}

/// A number with four significant digits (but every digit of its integer
/// part), trailing zeros dropped.
fn sig4(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return trim_number(v, 0);
    }
    let magnitude = v.abs().log10().floor() as i64;
    trim_number(v, (3 - magnitude).clamp(0, 4) as usize)
}

/// A value in its unit, to four significant digits (means of several runs
/// have more digits than anyone reads).
fn show_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Millis if v.abs() >= 1000.0 => format!("{}s", sig4(v / 1000.0)),
        Unit::Millis => format!("{}ms", sig4(v)),
        Unit::Fraction => format!("{}%", sig4(v * 100.0)),
        Unit::Ratio | Unit::Count => sig4(v),
        Unit::PerSecond => format!("{}/s", sig4(v)),
    }
}

/// A signed difference in its unit; fractions in percentage points.
fn show_delta(unit: Unit, d: f64) -> String {
    let sign = if d > 0.0 {
        "+"
    } else if d < 0.0 {
        "-"
    } else {
        ""
    };
    let a = d.abs();
    let body = match unit {
        Unit::Fraction => format!("{} pp", sig4(a * 100.0)),
        _ => show_value(unit, a),
    };
    format!("{sign}{body}")
}

fn show_sample(unit: Unit, s: &Sample) -> String {
    match s.n {
        1 => show_value(unit, s.mean),
        _ if s.stddev == 0.0 => format!("{} ± 0", show_value(unit, s.mean)),
        _ => format!("{} ± {}", show_value(unit, s.mean), show_delta(unit, s.stddev).trim_start_matches('+')),
    }
}

fn show_change(r: &Row) -> String {
    match r.change {
        Some(0.0) => "0%".into(),
        Some(c) => format!("{:+.1}%", c * 100.0),
        None => format!("from 0 to {}", show_value(r.unit, r.current.mean)),
    }
}

fn show_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else if p < 0.01 {
        format!("p = {p:.3}")
    } else {
        format!("p = {p:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal report: 10,000 heartbeats sent, all ok, 100/s offered
    /// and achieved, latency p50 10ms and p99 100ms, one fleet `east`.
    fn report() -> Report {
        let percentiles =
            serde_json::json!({"p50": 10.0, "p90": 50.0, "p99": 100.0, "p999": 200.0, "max": 300.0, "mean": 20.0});
        let stats = |name: Option<&str>| {
            let mut s = serde_json::json!({
                "scheduled": 10000, "sent": 10000, "missed": 0, "ok": 10000, "failed": 0,
                "errors": {}, "codes": {"http": {"200": 10000}},
                "offered_rate": 100.0, "achieved_rate": 100.0,
                "latency_ms": percentiles, "service_time_ms": percentiles, "schedule_lag_ms": percentiles,
                "histograms": {"latency": "", "service_time": "", "schedule_lag": ""}
            });
            if let Some(n) = name {
                s["name"] = n.into();
            }
            s
        };
        let value = serde_json::json!({
            "schema": "fleetstorm.report/v1",
            "scenario": {
                "name": "smoke", "seed": 1, "planned_duration_s": 100.0,
                "target": {"url": "http://127.0.0.1:8080", "path": "/", "timeout_ms": 1000.0, "connections": "auto", "headers": {}},
                "fleets": []
            },
            "started_at": "2025-01-01T00:00:00.000Z",
            "duration_s": 100.0, "elapsed_s": 100.1, "startup_s": 0.1,
            "interrupted": false,
            "generator": {"kept_up": true, "schedule_lag_p99_ms": 1.0, "verdict": "kept up"},
            "totals": stats(None),
            "fleets": [stats(Some("east"))],
            "timeline": []
        });
        let mut r: Report = serde_json::from_value(value).expect("a valid report");
        r.upgrade();
        // Without histograms, the v1 fixture's p75 and p95 are taken from its p90.
        for s in std::iter::once(&mut r.totals).chain(r.fleets.iter_mut()) {
            for p in [&mut s.latency_ms, &mut s.service_time_ms, &mut s.schedule_lag_ms] {
                (p.p75, p.p95) = (p.p90, p.p90);
            }
        }
        r
    }

    /// A report with these latency percentiles (ms) and failures (of 10,000 sent).
    fn run(p50: f64, p99: f64, failed: u64) -> Report {
        let mut r = report();
        for s in std::iter::once(&mut r.totals).chain(r.fleets.iter_mut()) {
            s.latency_ms.p50 = p50;
            s.latency_ms.p99 = p99;
            s.failed = failed;
            s.ok = s.sent - failed;
        }
        r
    }

    fn p99_runs(values: &[f64]) -> Vec<Report> {
        values.iter().map(|&v| run(10.0, v, 0)).collect()
    }

    fn only(metrics: &str) -> Options {
        Options::parse(None, Some(metrics)).unwrap()
    }

    fn row<'a>(c: &'a Comparison, metric: &str) -> &'a Row {
        c.rows.iter().find(|r| r.metric == metric).unwrap_or_else(|| panic!("no row {metric}"))
    }

    /// An MQTT run's report: sessions opened (one a device) and timed;
    /// with `untimed`, every heartbeat published at QoS 0.
    fn mqtt_run(open_p99: f64, connects: u64, untimed: bool) -> Report {
        let mut r = report();
        for s in std::iter::once(&mut r.totals).chain(r.fleets.iter_mut()) {
            let mut open = s.latency_ms;
            open.p99 = open_p99;
            s.session_open_ms = Some(open);
            s.connects = connects;
            if untimed {
                s.unacknowledged = s.ok + s.failed;
            }
        }
        r
    }

    #[test]
    fn mqtt_runs_compare_session_opening_and_connects_and_untimed_ones_no_latency() {
        let c = compare(&[mqtt_run(5.0, 100, false)], &[mqtt_run(20.0, 100, false)], &Options::default()).unwrap();
        assert_eq!(row(&c, "session_open.p99").verdict, Verdict::Regression, "{}", c.render());
        assert_eq!(row(&c, "connects").verdict, Verdict::Unchanged);
        assert!(c.rows.iter().any(|r| r.metric == "latency.p99") && c.warnings.is_empty(), "{}", c.render());
        let c = compare(&[mqtt_run(5.0, 100, false)], &[mqtt_run(5.0, 150, false)], &Options::default()).unwrap();
        assert_eq!(row(&c, "connects").verdict, Verdict::Regression, "sessions lost and reopened: {}", c.render());
        // QoS 0 only: no latency to compare (it would be an error), and a line says why.
        let c = compare(&[mqtt_run(5.0, 100, true)], &[mqtt_run(5.0, 100, true)], &Options::default()).unwrap();
        assert!(!c.rows.iter().any(|r| r.metric.starts_with("latency") || r.metric.starts_with("service_time")));
        assert!(c.render().contains("warning: latency is not compared"), "{}", c.render());
        // Without sessions on one side, the defaults are HTTP's; asked for, it is an error.
        let c = compare(&[report()], &[mqtt_run(5.0, 100, false)], &Options::default()).unwrap();
        assert!(!c.rows.iter().any(|r| r.metric.starts_with("session_open") || r.metric == "connects"));
        assert_eq!(c.rows.len(), DEFAULT_METRICS.len());
        assert!(compare(&[report()], &[mqtt_run(5.0, 100, false)], &only("session_open.p99")).is_err());
    }

    /// Runs whose fleets were observed end to end compare their delivery
    /// too: a message lost where none was is a regression.
    #[test]
    fn observed_runs_compare_delivery_latency_and_losses() {
        let observed = |lost: u64| {
            let mut r = mqtt_run(5.0, 100, false);
            let mut d = crate::stats::Delivery { expected: 1_000, delivered: 1_000 - lost, ..Default::default() };
            crate::stats::record(&mut d.latency, 2_000);
            r.delivery = vec![crate::report::DeliveryStats::of("f", &d)];
            r
        };
        let c = compare(&[observed(0)], &[observed(3)], &Options::default()).unwrap();
        assert_eq!(row(&c, "delivery.lost").verdict, Verdict::Regression, "{}", c.render());
        assert_eq!(row(&c, "delivery.p99").verdict, Verdict::Unchanged, "{}", c.render());
        let c = compare(&[mqtt_run(5.0, 100, false)], &[observed(0)], &Options::default()).unwrap();
        assert!(!c.rows.iter().any(|r| r.metric.starts_with("delivery")), "{}", c.render());
    }

    #[test]
    fn single_run_regression() {
        let c = compare(&[run(10.0, 100.0, 0)], &[run(10.0, 130.0, 0)], &Options::default()).unwrap();
        let r = row(&c, "latency.p99");
        assert_eq!(r.verdict, Verdict::Regression);
        assert!((r.change.unwrap() - 0.30).abs() < 1e-12);
        assert_eq!((r.baseline.n, r.baseline.mean, r.current.mean), (1, 100.0, 130.0));
        assert_eq!(r.p_value, None);
        assert_eq!(row(&c, "latency.p50").verdict, Verdict::Unchanged);
        assert_eq!(row(&c, "error_rate").verdict, Verdict::Unchanged);
        assert!(c.regressed());
        assert_eq!(c.regressions().count(), 1);
        let text = c.render();
        for m in DEFAULT_METRICS {
            assert!(text.contains(m), "{m} missing from\n{text}");
        }
        assert!(text.contains("REGRESSION") && text.contains("+30.0%") && text.contains("unchanged"), "{text}");
        assert!(text.contains("result: REGRESSION beyond 10% in latency.p99 (+30.0%)"), "{text}");
        assert!(text.contains("no noise estimate"), "{text}");
    }

    #[test]
    fn single_run_improvement() {
        let c = compare(&[run(10.0, 100.0, 0)], &[run(10.0, 70.0, 0)], &only("latency.p99")).unwrap();
        let r = &c.rows[0];
        assert_eq!(r.verdict, Verdict::Improvement);
        assert!((r.change.unwrap() + 0.30).abs() < 1e-12);
        assert!(!c.regressed());
        let text = c.render();
        assert!(text.contains("improvement") && text.contains("-30.0%"), "{text}");
        assert!(text.contains("result: no regression beyond 10% (1 improvement)"), "{text}");
    }

    #[test]
    fn single_run_within_limit() {
        let c = compare(&[run(10.0, 100.0, 0)], &[run(10.0, 105.0, 0)], &only("latency.p99")).unwrap();
        assert_eq!(c.rows[0].verdict, Verdict::WithinLimit);
        assert!((c.rows[0].change.unwrap() - 0.05).abs() < 1e-12);
        assert!(!c.regressed());
        assert!(c.render().contains("within limit"));
        // The limit is configurable: 5% more is a regression at 4%.
        let opts = Options::parse(Some("4%"), Some("latency.p99")).unwrap();
        let c = compare(&[run(10.0, 100.0, 0)], &[run(10.0, 105.0, 0)], &opts).unwrap();
        assert_eq!(c.rows[0].verdict, Verdict::Regression);
    }

    #[test]
    fn small_absolute_latency_changes_are_under_the_floor() {
        // +50% but only 0.05ms.
        let c = compare(&[run(0.1, 100.0, 0)], &[run(0.15, 100.0, 0)], &only("latency.p50")).unwrap();
        assert_eq!(c.rows[0].verdict, Verdict::WithinLimit);
        assert!(c.rows[0].note.contains("0.1ms floor"), "{}", c.rows[0].note);
    }

    #[test]
    fn error_rate_from_zero_uses_the_floor() {
        // 0 → 1 of 10,000 = 0.01%: within the 0.1 percentage point floor.
        let c = compare(&[run(10.0, 100.0, 0)], &[run(10.0, 100.0, 1)], &only("error_rate")).unwrap();
        let r = &c.rows[0];
        assert_eq!((r.baseline.mean, r.current.mean), (0.0, 0.0001));
        assert_eq!(r.change, None);
        assert_eq!(r.verdict, Verdict::WithinLimit);
        assert!(r.note.contains("floor"), "{}", r.note);
        assert!(!c.regressed());
        // Exactly at the floor (0.1%) is still not flagged.
        let c = compare(&[run(10.0, 100.0, 0)], &[run(10.0, 100.0, 10)], &only("error_rate")).unwrap();
        assert_eq!(c.rows[0].verdict, Verdict::WithinLimit);

        // 0 → 200 of 10,000 = 2%: a regression.
        let c = compare(&[run(10.0, 100.0, 0)], &[run(10.0, 100.0, 200)], &only("error_rate")).unwrap();
        let r = &c.rows[0];
        assert_eq!(r.current.mean, 0.02);
        assert_eq!(r.verdict, Verdict::Regression);
        assert!(r.note.contains("from 0"), "{}", r.note);
        assert!(c.regressed());
        let text = c.render();
        assert!(text.contains("error_rate") && text.contains("from 0 to 2%") && text.contains("REGRESSION"), "{text}");
    }

    #[test]
    fn higher_is_better_regresses_when_it_falls() {
        let mut slow = run(10.0, 100.0, 0);
        slow.totals.achieved_rate = 80.0;
        let c = compare(&[run(10.0, 100.0, 0)], std::slice::from_ref(&slow), &only("achieved_rate_ratio")).unwrap();
        let r = &c.rows[0];
        assert_eq!((r.baseline.mean, r.current.mean), (1.0, 0.8));
        assert!((r.change.unwrap() + 0.2).abs() < 1e-12);
        assert_eq!(r.verdict, Verdict::Regression);
        assert!(c.regressed());
        // The other way round it is an improvement.
        let c = compare(&[slow], &[run(10.0, 100.0, 0)], &only("achieved_rate_ratio")).unwrap();
        assert_eq!(c.rows[0].verdict, Verdict::Improvement);
    }

    #[test]
    fn metrics_with_no_better_direction_never_gate() {
        let mut more = run(10.0, 100.0, 0);
        more.totals.sent = 20000;
        let c = compare(&[run(10.0, 100.0, 0)], &[more], &only("sent")).unwrap();
        assert_eq!(c.rows[0].verdict, Verdict::NotGated);
        assert!(!c.regressed());
        assert!(c.render().contains("not gated"));
    }

    #[test]
    fn multi_run_clear_shift_is_a_regression() {
        let c =
            compare(&p99_runs(&[100.0, 101.0, 99.0]), &p99_runs(&[130.0, 131.0, 129.0]), &only("latency.p99")).unwrap();
        let r = &c.rows[0];
        assert_eq!(r.verdict, Verdict::Regression);
        assert_eq!((r.baseline.n, r.baseline.min, r.baseline.max), (3, 99.0, 101.0));
        assert!((r.baseline.stddev - 1.0).abs() < 1e-12);
        assert!((r.change.unwrap() - 0.30).abs() < 1e-12);
        assert!(r.p_value.unwrap() < 0.001);
        let (lo, hi) = r.interval.unwrap();
        assert!(lo > 25.0 && hi < 35.0 && lo < 30.0 && hi > 30.0, "{lo} {hi}");
        assert!(c.regressed());
        let text = c.render();
        assert!(text.contains("100ms ± 1ms") && text.contains("p < 0.001") && text.contains("Welch"), "{text}");
    }

    #[test]
    fn multi_run_large_spread_is_within_noise() {
        let c =
            compare(&p99_runs(&[80.0, 100.0, 120.0]), &p99_runs(&[95.0, 125.0, 150.0]), &only("latency.p99")).unwrap();
        let r = &c.rows[0];
        assert!(r.change.unwrap() > 0.2);
        assert_eq!(r.verdict, Verdict::WithinNoise);
        let p = r.p_value.unwrap();
        assert!(p > 0.05 && p < 0.5, "{p}");
        let (lo, hi) = r.interval.unwrap();
        assert!(lo < 0.0 && hi > 0.0);
        assert!(!c.regressed());
        let text = c.render();
        assert!(text.contains("within noise") && text.contains("p = 0.") && text.contains("95% CI"), "{text}");
        assert!(text.contains("result: no regression beyond 10% (1 within noise)"), "{text}");
    }

    #[test]
    fn multi_run_significant_but_small_is_within_limit() {
        let c =
            compare(&p99_runs(&[100.0, 100.5, 99.5]), &p99_runs(&[105.0, 105.5, 104.5]), &only("latency.p99")).unwrap();
        let r = &c.rows[0];
        assert!(r.p_value.unwrap() < 0.05);
        assert_eq!(r.verdict, Verdict::WithinLimit);
    }

    #[test]
    fn welch_matches_the_t_distribution() {
        // Equal spreads and sizes: t = d / sqrt(2/3), df = 4; the 97.5%
        // quantile of t(4) is 2.776445, so this shift sits at p = 0.05 and
        // the interval starts at 0.
        let d = 2.776_445 * (2.0_f64 / 3.0).sqrt();
        let c = compare(&p99_runs(&[9.0, 10.0, 11.0]), &p99_runs(&[9.0 + d, 10.0 + d, 11.0 + d]), &only("latency.p99"))
            .unwrap();
        let r = &c.rows[0];
        assert!((r.p_value.unwrap() - 0.05).abs() < 1e-5, "{:?}", r.p_value);
        let (lo, hi) = r.interval.unwrap();
        assert!(lo.abs() < 1e-5 && (hi - 2.0 * d).abs() < 1e-5, "{lo} {hi}");
    }

    #[test]
    fn one_run_against_several_borrows_their_variance() {
        let base = p99_runs(&[100.0, 101.0, 99.0]);
        let c = compare(&base, &p99_runs(&[130.0]), &only("latency.p99")).unwrap();
        let r = &c.rows[0];
        assert_eq!(r.verdict, Verdict::Regression);
        // t = 30 / (1 · sqrt(1 + 1/3)) with 2 degrees of freedom.
        let t: f64 = 30.0 / (4.0_f64 / 3.0).sqrt();
        let expected = 2.0 * StudentsT::new(0.0, 1.0, 2.0).unwrap().sf(t);
        assert!((r.p_value.unwrap() - expected).abs() < 1e-12);
        assert!(c.render().contains("single run is assumed to vary like the other side"));
        // A single run +15% from widely spread baselines is not significant.
        let c = compare(&p99_runs(&[90.0, 100.0, 110.0]), &p99_runs(&[115.0]), &only("latency.p99")).unwrap();
        assert_eq!(c.rows[0].verdict, Verdict::WithinNoise);
    }

    #[test]
    fn no_spread_makes_any_difference_significant() {
        let c =
            compare(&p99_runs(&[100.0, 100.0]), &p99_runs(&[120.0, 120.0]), &only("latency.p99,latency.p50")).unwrap();
        assert_eq!(row(&c, "latency.p99").verdict, Verdict::Regression);
        assert_eq!(row(&c, "latency.p99").p_value, Some(0.0));
        assert!(row(&c, "latency.p99").note.contains("no spread"));
        assert_eq!(row(&c, "latency.p50").verdict, Verdict::Unchanged);
        assert_eq!(row(&c, "latency.p50").p_value, Some(1.0));
    }

    #[test]
    fn a_missing_fleet_is_an_error_naming_the_report_and_metric() {
        let mut west = run(10.0, 100.0, 0);
        west.fleets[0].name = Some("west".into());
        let current = [run(10.0, 100.0, 0), run(10.0, 100.0, 0)];
        let e = compare(&[west.clone()], &current, &only("fleets.west.latency.p99")).unwrap_err();
        assert!(matches!(e, CompareError::NoValue { source: NoValue::NoFleet { .. }, .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("current report 1 of 2") && e.contains("fleets.west.latency.p99"), "{e}");
        assert!(e.contains("no fleet \"west\"") && e.contains("east"), "{e}");
        let e = compare(&current, &[west], &only("fleets.east.latency.p99")).unwrap_err().to_string();
        assert!(e.contains("the current report") && e.contains("\"east\""), "{e}");
        // A fleet both sides have is compared.
        let c = compare(&current, &current, &only("fleets.east.latency.p99")).unwrap();
        assert_eq!(c.rows[0].verdict, Verdict::Unchanged);
    }

    #[test]
    fn a_missing_freshness_is_an_error() {
        let e = compare(&[run(10.0, 100.0, 0)], &[run(10.0, 100.0, 0)], &only("freshness.stale_share")).unwrap_err();
        assert!(matches!(e, CompareError::NoValue { source: NoValue::NoFreshness { .. }, .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("the baseline report") && e.contains("no device freshness"), "{e}");
        assert_eq!(e.matches("freshness.stale_share").count(), 1, "{e}");
    }

    #[test]
    fn a_session_series_without_sessions_is_an_error() {
        let e = compare(&[run(10.0, 100.0, 0)], &[run(10.0, 100.0, 0)], &only("session_open.p99")).unwrap_err();
        assert!(matches!(e, CompareError::NoValue { source: NoValue::NoSessions { .. }, .. }), "{e:?}");
        assert!(e.to_string().contains("no session was opened"), "{e}");
    }

    #[test]
    fn empty_sides_and_bad_options_are_errors() {
        let one = [run(10.0, 100.0, 0)];
        assert!(compare(&[], &one, &Options::default()).unwrap_err().to_string().contains("no baseline report"));
        assert!(compare(&one, &[], &Options::default()).unwrap_err().to_string().contains("no current report"));
        for opts in [
            Options { confidence: 1.0, ..Options::default() },
            Options { confidence: f64::NAN, ..Options::default() },
            Options { max_regression: f64::NAN, ..Options::default() },
            Options { max_regression: -0.1, ..Options::default() },
            Options { metrics: Vec::new(), ..Options::default() },
        ] {
            assert!(compare(&one, &one, &opts).is_err(), "{opts:?}");
        }
    }

    #[test]
    fn options_parse() {
        let d = Options::parse(None, None).unwrap();
        assert_eq!(d.max_regression, 0.10);
        assert_eq!(d.confidence, 0.95);
        assert_eq!(d.metrics.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(), DEFAULT_METRICS);
        assert_eq!(Options::parse(Some("10%"), None).unwrap().max_regression, 0.1);
        assert_eq!(Options::parse(Some("0.25"), None).unwrap().max_regression, 0.25);
        assert_eq!(Options::parse(Some("150%"), None).unwrap().max_regression, 1.5);
        assert_eq!(Options::parse(Some("0"), None).unwrap().max_regression, 0.0);
        let m = Options::parse(None, Some(" latency.p99 , error_rate,latency.p99,")).unwrap().metrics;
        assert_eq!(m.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(), ["latency.p99", "error_rate"]);

        let e = Options::parse(Some("lots"), None).unwrap_err().to_string();
        assert!(e.contains("--max-regression") && e.contains("lots"), "{e}");
        let e = Options::parse(Some("10"), None).unwrap_err();
        assert!(matches!(e, CompareError::MaxRegressionAbove100 { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("10%"), "{e}");
        assert!(Options::parse(Some("-5%"), None).is_err());
        let e = Options::parse(None, Some("latency.p99,latency.p98")).unwrap_err().to_string();
        assert!(e.contains("--metrics") && e.contains("unknown metric \"latency.p98\""), "{e}");
        assert!(Options::parse(None, Some(" , ")).unwrap_err().to_string().contains("names no metric"));
    }

    #[test]
    fn different_scenarios_and_troubled_runs_are_warned_about() {
        let mut other = run(10.0, 100.0, 0);
        other.scenario.name = "soak".into();
        other.interrupted = true;
        other.duration_s = 42.0;
        let mut behind = run(10.0, 100.0, 0);
        behind.generator.kept_up = false;
        behind.generator.schedule_lag_p99_ms = 25.0;
        let c = compare(&[behind], &[other], &only("latency.p99")).unwrap();
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        let text = c.render();
        assert!(text.contains("warning: the reports are of different scenarios"), "{text}");
        assert!(text.contains("\"smoke\"") && text.contains("\"soak\""), "{text}");
        assert!(
            text.contains("warning: the current report (started 2025-01-01T00:00:00.000Z) was interrupted after 42s")
        );
        assert!(text.contains("generator fell behind (schedule lag p99 25ms)"), "{text}");
        assert!(
            compare(&[run(10.0, 100.0, 0)], &[run(10.0, 100.0, 0)], &only("latency.p99")).unwrap().warnings.is_empty()
        );
    }

    #[test]
    fn render_aligns_columns() {
        let c =
            compare(&p99_runs(&[100.0, 101.0, 99.0]), &p99_runs(&[130.0, 131.0, 129.0]), &Options::default()).unwrap();
        let text = c.render();
        let table: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("metric")).take(1 + c.rows.len()).collect();
        assert_eq!(table.len(), 1 + DEFAULT_METRICS.len(), "{text}");
        // The verdict column starts at the same character on every line.
        let at = |l: &str, w: &str| l.find(w).map(|b| l[..b].chars().count());
        let col = at(table[0], "verdict").unwrap();
        for (line, r) in table[1..].iter().zip(&c.rows) {
            assert_eq!(at(line, r.verdict.word()), Some(col), "{text}");
        }
    }

    #[test]
    fn values_show_four_significant_digits() {
        assert_eq!(show_value(Unit::Millis, 123.333_33), "123.3ms");
        assert_eq!(show_value(Unit::Millis, 27.538), "27.54ms");
        assert_eq!(show_value(Unit::Millis, 1500.0), "1.5s");
        assert_eq!(show_value(Unit::Fraction, 0.001_732), "0.1732%");
        assert_eq!(show_value(Unit::Count, 10000.0), "10000");
        assert_eq!(show_delta(Unit::Fraction, -0.02), "-2 pp");
        assert_eq!(show_delta(Unit::PerSecond, 12.0), "+12/s");
    }

    #[test]
    fn odd_values_never_panic() {
        let values = [0.0, 1e-300, 1e300, f64::MAX, f64::MIN_POSITIVE, f64::NAN, f64::INFINITY, -1.0, 5.0];
        for &a in &values {
            for &b in &values {
                for (nb, nc) in [(1, 1), (1, 3), (2, 2), (3, 1)] {
                    let base: Vec<Report> = (0..nb).map(|i| run(a, a * (i + 1) as f64, 0)).collect();
                    let cur: Vec<Report> = (0..nc).map(|_| run(b, b, 0)).collect();
                    if let Ok(c) = compare(&base, &cur, &only("latency.p50,latency.p99")) {
                        let _ = c.render();
                    }
                }
            }
        }
    }
}
