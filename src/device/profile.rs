//! What a fleet's devices send: the agent versions they run, the agent
//! metrics they report, the models they may have deployed and those models'
//! metrics. The scenario file deserializes straight into these types, and
//! each one checks itself as it is read, so that a mistake is reported at
//! its own place in the file.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::sagemaker_edge::rules::{self, StrRule};

/// Reads a string and checks it against `rule`, naming `what` in the error.
fn checked_string<'de, D: Deserializer<'de>>(d: D, rule: StrRule, what: &str) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    rule.check(&s).map_err(|fault| de::Error::custom(format!("{s:?} is not a valid {what}: {fault}")))?;
    Ok(s)
}

pub(crate) fn entity_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_string(d, rules::ENTITY_NAME, "fleet name (DeviceFleetName)")
}

fn metric_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_string(d, rules::METRIC_NAME, "MetricName")
}

fn model_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_string(d, rules::MODEL_NAME, "ModelName")
}

fn dimension<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked_string(d, rules::DIMENSION, "Dimension").map(Some)
}

/// A weighted choice among versions, read from a table such as
/// `{ "1.20231.0" = 0.9, "1.20240.1" = 0.1 }`. Weights are relative (they
/// need not sum to 1); entries keep the file's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Weighted {
    names: Vec<String>,
    /// Running sums of the weights, for picking with one uniform draw.
    cumulative: Vec<f64>,
}

impl Weighted {
    /// A single choice with all the weight.
    pub fn single(name: &str) -> Self {
        Weighted { names: vec![name.to_string()], cumulative: vec![1.0] }
    }

    /// Builds a mix, checking each name against the version rule and each weight.
    pub fn new(entries: impl IntoIterator<Item = (String, f64)>) -> Result<Self, String> {
        let mut names: Vec<String> = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0.0;
        for (name, weight) in entries {
            rules::VERSION.check(&name).map_err(|f| format!("{name:?} is not a valid version: {f}"))?;
            if names.contains(&name) {
                return Err(format!("version {name:?} is listed twice"));
            }
            if !weight.is_finite() || weight < 0.0 {
                return Err(format!("the weight of {name:?} is {weight}; weights must be finite and at least 0"));
            }
            total += weight;
            names.push(name);
            cumulative.push(total);
        }
        if names.is_empty() {
            return Err("the mix is empty; list at least one version with a weight".into());
        }
        if total <= 0.0 {
            return Err("every weight is 0; at least one must be positive".into());
        }
        Ok(Weighted { names, cumulative })
    }

    /// The entry that a uniform draw `u` in `[0, 1)` selects.
    pub fn pick(&self, u: f64) -> u16 {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let target = u * total;
        let i = self.cumulative.partition_point(|&c| c <= target);
        // `u` < 1 keeps `i` in range; the clamp guards rounding at the top end.
        i.min(self.names.len() - 1) as u16
    }

    /// The index of `name`, added with weight 0 (never drawn) if it is
    /// not in the mix: for versions that only a rollout brings.
    pub fn ensure(&mut self, name: &str) -> u16 {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i as u16;
        }
        self.names.push(name.to_string());
        self.cumulative.push(self.cumulative.last().copied().unwrap_or(0.0));
        (self.names.len() - 1) as u16
    }

    /// The index of `name`, if it is in the mix.
    pub fn index_of(&self, name: &str) -> Option<u16> {
        self.names.iter().position(|n| n == name).map(|i| i as u16)
    }

    pub fn name(&self, i: u16) -> &str {
        &self.names[usize::from(i)]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Each name with its share of the total weight.
    pub fn shares(&self) -> impl Iterator<Item = (&str, f64)> {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let mut previous = 0.0;
        self.names.iter().zip(&self.cumulative).map(move |(n, &c)| {
            let share = (c - previous) / total;
            previous = c;
            (n.as_str(), share)
        })
    }
}

impl<'de> Deserialize<'de> for Weighted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MixVisitor;
        impl<'de> Visitor<'de> for MixVisitor {
            type Value = Weighted;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    r#"a table of version = weight, e.g. { "1.2.0" = 0.9, "1.3.0" = 0.1 }, or one version string"#,
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Weighted, E> {
                Weighted::new([(s.to_string(), 1.0)]).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Weighted, A::Error> {
                let mut entries = Vec::new();
                while let Some((name, weight)) = map.next_entry::<String, f64>()? {
                    entries.push((name, weight));
                }
                Weighted::new(entries).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(MixVisitor)
    }
}

/// One metric a device reports: a gauge that walks randomly within bounds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawMetric")]
pub struct MetricSpec {
    pub name: String,
    /// `Dimension` sent with the metric.
    pub dimension: String,
    pub min: f64,
    pub max: f64,
    /// Largest change from one heartbeat to the next.
    pub walk: f64,
    /// Decimal places sent (values are rounded to them).
    pub decimals: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    #[serde(deserialize_with = "metric_name")]
    name: String,
    #[serde(default, deserialize_with = "dimension")]
    dimension: Option<String>,
    min: f64,
    max: f64,
    walk: Option<f64>,
    #[serde(default = "default_decimals")]
    decimals: u8,
}

fn default_decimals() -> u8 {
    2
}

impl TryFrom<RawMetric> for MetricSpec {
    type Error = String;

    fn try_from(raw: RawMetric) -> Result<Self, String> {
        let name = &raw.name;
        if !raw.min.is_finite() || !raw.max.is_finite() {
            return Err(format!("metric {name:?}: min and max must be finite numbers"));
        }
        if raw.min > raw.max {
            return Err(format!("metric {name:?}: min ({}) is greater than max ({})", raw.min, raw.max));
        }
        let walk = raw.walk.unwrap_or((raw.max - raw.min) * 0.05);
        if !walk.is_finite() || walk < 0.0 {
            return Err(format!("metric {name:?}: walk is {walk}; it must be a finite number at least 0"));
        }
        if raw.decimals > 9 {
            return Err(format!("metric {name:?}: decimals is {}; at most 9 are sent", raw.decimals));
        }
        Ok(MetricSpec {
            dimension: raw.dimension.unwrap_or_else(|| "agent".to_string()),
            name: raw.name,
            min: raw.min,
            max: raw.max,
            walk,
            decimals: raw.decimals,
        })
    }
}

impl MetricSpec {
    /// A metric with the default walk (5% of the range) and two decimals.
    pub fn new(name: &str, dimension: &str, min: f64, max: f64) -> Self {
        MetricSpec { name: name.into(), dimension: dimension.into(), min, max, walk: (max - min) * 0.05, decimals: 2 }
    }
}

/// A model that devices of the fleet may have deployed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawModel")]
pub struct ModelSpec {
    pub name: String,
    pub versions: Weighted,
    /// The fraction of devices that have it deployed, in `[0, 1]`.
    pub share: f64,
    pub metrics: Vec<MetricSpec>,
    /// The fraction of its version changes (rollouts) that a device
    /// reports with a `DeploymentResult` in its next heartbeat, in `[0, 1]`.
    pub deployment_results: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    #[serde(deserialize_with = "model_name")]
    name: String,
    versions: Weighted,
    #[serde(default = "one")]
    share: f64,
    #[serde(default)]
    metrics: Vec<RawMetricWithDefaultDimension>,
    #[serde(default = "one")]
    deployment_results: f64,
}

/// A model metric whose dimension defaults to `model/<model name>`.
#[derive(Deserialize)]
#[serde(transparent)]
struct RawMetricWithDefaultDimension(RawMetric);

fn one() -> f64 {
    1.0
}

impl TryFrom<RawModel> for ModelSpec {
    type Error = String;

    fn try_from(raw: RawModel) -> Result<Self, String> {
        let name = raw.name;
        if !(0.0..=1.0).contains(&raw.share) {
            return Err(format!("model {name:?}: share is {}; it must be between 0 and 1", raw.share));
        }
        if !(0.0..=1.0).contains(&raw.deployment_results) {
            return Err(format!(
                "model {name:?}: deployment_results is {}; it must be between 0 and 1 (the share of version \
                 changes reported with a DeploymentResult)",
                raw.deployment_results
            ));
        }
        let mut metrics = Vec::with_capacity(raw.metrics.len());
        for RawMetricWithDefaultDimension(mut m) in raw.metrics {
            m.dimension.get_or_insert_with(|| format!("model/{name}"));
            if metrics.iter().any(|x: &MetricSpec| x.name == m.name) {
                return Err(format!("model {name:?}: metric {:?} is listed twice", m.name));
            }
            metrics.push(MetricSpec::try_from(m)?);
        }
        Ok(ModelSpec {
            name,
            versions: raw.versions,
            share: raw.share,
            metrics,
            deployment_results: raw.deployment_results,
        })
    }
}

/// Everything a fleet's devices send, apart from their names.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub fleet_name: String,
    pub agent_versions: Weighted,
    pub agent_metrics: Vec<MetricSpec>,
    pub models: Vec<ModelSpec>,
}

impl Profile {
    /// The agent metrics a fleet reports when its scenario lists none.
    pub fn default_agent_metrics() -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("cpu-utilization", "agent", 0.0, 100.0),
            MetricSpec::new("memory-utilization", "agent", 0.0, 100.0),
            MetricSpec::new("disk-free-mb", "agent", 0.0, 32768.0),
        ]
    }

    /// Checks what cannot be checked field by field.
    pub fn check(&self) -> Result<(), String> {
        for (i, m) in self.agent_metrics.iter().enumerate() {
            if self.agent_metrics[..i].iter().any(|x| x.name == m.name) {
                return Err(format!("agent metric {:?} is listed twice", m.name));
            }
        }
        for (i, m) in self.models.iter().enumerate() {
            if self.models[..i].iter().any(|x| x.name == m.name) {
                return Err(format!("model {:?} is listed twice", m.name));
            }
        }
        if self.models.len() > usize::from(u16::MAX) {
            return Err(format!("{} models listed; at most {} are supported", self.models.len(), u16::MAX));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_pick_follows_the_weights() {
        let w = Weighted::new([("a".to_string(), 0.9), ("b".to_string(), 0.1), ("c".to_string(), 0.0)]).unwrap();
        assert_eq!(w.pick(0.0), 0);
        assert_eq!(w.pick(0.899), 0);
        assert_eq!(w.pick(0.9), 1);
        assert_eq!(w.pick(0.999_999_999), 1, "a zero weight is never picked");
        let shares: Vec<_> = w.shares().collect();
        assert_eq!(shares.len(), 3);
        assert!((shares[1].1 - 0.1).abs() < 1e-12);
    }

    #[test]
    fn weighted_rejects_bad_mixes() {
        assert!(Weighted::new([("a".to_string(), -1.0)]).unwrap_err().contains("at least 0"));
        assert!(Weighted::new([("a".to_string(), 0.0)]).unwrap_err().contains("every weight is 0"));
        assert!(Weighted::new([("1.0-rc".to_string(), 1.0)]).unwrap_err().contains("not a valid version"));
        assert!(Weighted::new(Vec::new()).unwrap_err().contains("empty"));
        assert!(Weighted::new([("a".to_string(), f64::NAN)]).is_err());
    }
}
