//! The scenario's `[capacity]` section: the SLO a load must meet, and how
//! the search steps through loads.

use std::time::Duration;

use serde::Deserialize;

use crate::gate::{Threshold, Thresholds};
use crate::units::{DurationValue, Rate, Share};

/// How the search chooses its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Grow geometrically until the SLO breaks, then bisect between the
    /// last good and the first bad rate.
    #[default]
    StepThenBisect,
    /// Grow geometrically until the SLO breaks, and stop there.
    Steps,
}

/// How a step brings the scenario's fleet mix to its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    /// More devices, each at its fleet's interval (per-device connections
    /// grow with the rate).
    #[default]
    Devices,
    /// The same devices, each beating faster (intervals shortened): the
    /// connection count stays the scenario's.
    Rate,
}

/// A checked `[capacity]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySettings {
    /// Conditions every measured step must meet, as thresholds are written.
    pub slo: Vec<Threshold>,
    /// Heartbeats per second of the first step.
    pub start_rate: f64,
    /// No step goes above this rate.
    pub max_rate: f64,
    /// How long each step is measured.
    pub step_duration: Duration,
    /// How long each step runs before it is measured.
    pub warmup: Duration,
    pub strategy: Strategy,
    pub scale: Scale,
    /// Bisection stops when the first bad rate is within this share above
    /// the last good one.
    pub precision: f64,
    /// Each growing step's rate is the previous one's times this.
    pub growth: f64,
    /// The share of capacity kept free in the devices answer.
    pub headroom: f64,
}

impl CapacitySettings {
    /// The step length by default, and the warm-up for a step length.
    pub const DEFAULT_STEP: Duration = Duration::from_secs(30);

    pub fn default_warmup(step: Duration) -> Duration {
        (step / 5).clamp(Duration::from_secs(1), Duration::from_secs(10))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapacity {
    slo: Option<Thresholds>,
    start_rate: Option<Rate>,
    max_rate: Option<Rate>,
    step_duration: Option<DurationValue>,
    warmup: Option<DurationValue>,
    #[serde(default)]
    strategy: Strategy,
    #[serde(default)]
    scale: Scale,
    precision: Option<Share>,
    growth: Option<f64>,
    headroom: Option<Share>,
}

impl<'de> Deserialize<'de> for CapacitySettings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawCapacity::deserialize(d)?;
        CapacitySettings::try_from(raw).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RawCapacity> for CapacitySettings {
    type Error = String;

    fn try_from(raw: RawCapacity) -> Result<Self, String> {
        let slo = raw.slo.ok_or("slo: give the conditions a step must meet, e.g. slo = { \"latency.p99\" = \"< 250ms\", \"error_rate\" = \"< 0.1%\" }")?;
        if !slo.abort.is_empty() {
            return Err("slo: a capacity SLO has no abort table; write its conditions directly in slo".into());
        }
        if slo.end.is_empty() {
            return Err("slo: give at least one condition, e.g. \"latency.p99\" = \"< 250ms\"".into());
        }
        let start_rate = raw.start_rate.ok_or("start_rate: give the first step's rate, e.g. \"500/s\"")?.0;
        let max_rate = raw.max_rate.ok_or("max_rate: give the highest rate to try, e.g. \"100000/s\"")?.0;
        if max_rate < start_rate {
            return Err(format!(
                "max_rate ({max_rate}/s) is below start_rate ({start_rate}/s): raise max_rate or lower start_rate"
            ));
        }
        let step_duration = raw.step_duration.map_or(Self::DEFAULT_STEP, |d| d.0);
        if step_duration < Duration::from_secs(1) {
            return Err("step_duration: a step must be measured for at least 1s".into());
        }
        let warmup = raw.warmup.map_or_else(|| Self::default_warmup(step_duration), |d| d.0);
        let precision = raw.precision.map_or(0.05, |s| s.0);
        if !(0.001..=0.5).contains(&precision) {
            return Err(format!("precision: {:.1}% is out of range; give between 0.1% and 50%", precision * 100.0));
        }
        let growth = raw.growth.unwrap_or(2.0);
        if !(growth.is_finite() && (1.05..=10.0).contains(&growth)) {
            return Err(format!("growth: {growth} is out of range; give a factor between 1.05 and 10, e.g. 2"));
        }
        let headroom = raw.headroom.map_or(0.3, |s| s.0);
        if headroom >= 1.0 {
            return Err("headroom: keep less than 100% free, e.g. \"30%\"".into());
        }
        Ok(CapacitySettings {
            slo: slo.end,
            start_rate,
            max_rate,
            step_duration,
            warmup,
            strategy: raw.strategy,
            scale: raw.scale,
            precision,
            growth,
            headroom,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CapacitySettings, String> {
        toml::from_str::<CapacitySettings>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_section_reads_with_its_defaults() {
        let c = parse("slo = { \"latency.p99\" = \"< 250ms\", \"error_rate\" = \"< 0.1%\" }\nstart_rate = \"500/s\"\nmax_rate = \"100000/s\"\n").unwrap();
        assert_eq!(c.slo.len(), 2);
        assert_eq!(c.slo[0].expr(), "latency.p99 < 250ms");
        assert_eq!((c.start_rate, c.max_rate), (500.0, 100_000.0));
        assert_eq!(c.step_duration, Duration::from_secs(30));
        assert_eq!(c.warmup, Duration::from_secs(6));
        assert_eq!((c.strategy, c.scale), (Strategy::StepThenBisect, Scale::Devices));
        assert_eq!((c.precision, c.growth, c.headroom), (0.05, 2.0, 0.3));
        let c = parse("slo = { \"latency.p99\" = \"< 1s\" }\nstart_rate = \"60/m\"\nmax_rate = \"10/s\"\nstep_duration = \"3s\"\nstrategy = \"steps\"\nscale = \"rate\"\nprecision = \"10%\"\ngrowth = 1.5\nheadroom = \"20%\"\n").unwrap();
        assert_eq!(
            (c.start_rate, c.warmup, c.strategy, c.scale),
            (1.0, Duration::from_secs(1), Strategy::Steps, Scale::Rate)
        );
        assert_eq!((c.precision, c.growth, c.headroom), (0.1, 1.5, 0.2));
    }

    #[test]
    fn impossible_sections_say_what_to_fix() {
        let base = "start_rate = \"500/s\"\nmax_rate = \"1000/s\"\n";
        let cases = [
            (base.to_string(), "slo: give the conditions"),
            (format!("slo = {{}}\n{base}"), "at least one condition"),
            (format!("slo = {{ \"latency.p42\" = \"< 1s\" }}\n{base}"), "latency.p42"),
            (
                "slo = { \"latency.p99\" = \"< 1s\" }\nstart_rate = \"500/s\"\nmax_rate = \"100/s\"\n".to_string(),
                "below start_rate",
            ),
            (format!("slo = {{ \"latency.p99\" = \"< 1s\" }}\n{base}growth = 1.0\n"), "growth"),
            (format!("slo = {{ \"latency.p99\" = \"< 1s\" }}\n{base}precision = \"90%\"\n"), "precision"),
            (format!("slo = {{ \"latency.p99\" = \"< 1s\" }}\n{base}step_duration = \"100ms\"\n"), "at least 1s"),
            (format!("slo = {{ \"latency.p99\" = \"< 1s\" }}\n{base}strategy = \"random\"\n"), "step-then-bisect"),
            (format!("slo = {{ \"latency.p99\" = \"< 1s\" }}\n{base}speed = 3\n"), "speed"),
        ];
        for (text, expected) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(expected), "{text}\n=> {e}");
        }
    }
}
