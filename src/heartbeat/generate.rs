//! The randomized, realistic heartbeat generator.
//!
//! A [`Device`] is the compact state of one virtual device: its random
//! stream, its agent version, the models it has deployed and the current
//! value of each metric. [`Device::write_next`] advances that state by one
//! heartbeat and appends the JSON body to a caller's buffer.
//!
//! Realism, per the contract's "What a realistic device sends":
//! - names are rendered from the fleet's template, so they are stable and
//!   unique within the fleet;
//! - every timestamp is at most the `now` the caller passes, and a device's
//!   timestamps never decrease from one heartbeat to the next, even if the
//!   caller's clock does;
//! - metric values are bounded random walks, rounded to the metric's
//!   decimals;
//! - the agent version and the deployed models (and their versions) are
//!   drawn once per device from the fleet's weighted mixes.
//!
//! Determinism: a device's random stream is seeded from the scenario seed,
//! the fleet's name and the device index, so the same seed gives the same
//! devices and values (only timestamps follow the clock).
//!
//! Cost: the body is serialized straight from the device state through a
//! borrowed view (`HeartbeatView`), with no intermediate wire struct and no
//! allocation once the caller's buffers have grown.

use rand::rngs::Xoshiro128PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};

use super::profile::{MetricSpec, Profile};
use super::template::NameTemplate;

/// A fleet's heartbeat source: its profile, its device names and a key that
/// separates its devices' random streams from other fleets'.
#[derive(Debug, Clone)]
pub struct FleetGenerator {
    pub profile: Profile,
    pub names: NameTemplate,
    key: u64,
}

/// How far back a model's latest inference may lie from the heartbeat time.
const INFERENCE_LAG_MS: u64 = 2_000;
/// The probability that a model captured a new sample since the last heartbeat.
const SAMPLE_PROBABILITY: f64 = 0.2;

impl FleetGenerator {
    pub fn new(profile: Profile, names: NameTemplate, seed: u64) -> Self {
        let key = mix(seed ^ mix(fnv1a(profile.fleet_name.as_bytes())));
        FleetGenerator { profile, names, key }
    }

    /// Creates device `index` in its initial state.
    pub fn device(&self, index: u64) -> Device {
        let mut rng = Xoshiro128PlusPlus::seed_from_u64(mix(self.key ^ mix(index)));
        let p = &self.profile;
        let agent_version = p.agent_versions.pick(rng.random());
        let mut models = Vec::new();
        for (i, spec) in p.models.iter().enumerate() {
            // Draw both numbers whatever the outcome, so one model's share
            // does not shift the next model's draws.
            let (deployed, version) = (rng.random::<f64>(), rng.random());
            if deployed < spec.share {
                models.push(DeployedModel {
                    spec: i as u16,
                    version: spec.versions.pick(version),
                    latest_inference_ms: 0,
                    latest_sample_ms: 0,
                });
            }
        }
        let metric_specs =
            p.agent_metrics.iter().chain(models.iter().flat_map(|m| p.models[usize::from(m.spec)].metrics.iter()));
        let values = metric_specs.map(|m| round(rng.random_range_inclusive(m.min, m.max), m.decimals)).collect();
        Device { index, rng, agent_version, last_ms: 0, models: models.into_boxed_slice(), values }
    }

    /// Appends device `index`'s name to `out`.
    pub fn device_name(&self, index: u64, out: &mut String) {
        self.names.render(index, out);
    }
}

/// One virtual device's state between heartbeats.
#[derive(Debug, Clone)]
pub struct Device {
    index: u64,
    rng: Xoshiro128PlusPlus,
    agent_version: u16,
    /// The timestamp of the last heartbeat, in epoch milliseconds.
    last_ms: u64,
    models: Box<[DeployedModel]>,
    /// Current metric values: the agent metrics, then each deployed model's.
    values: Box<[f64]>,
}

#[derive(Debug, Clone)]
struct DeployedModel {
    /// Index into the profile's models.
    spec: u16,
    /// Index into that model's versions.
    version: u16,
    latest_inference_ms: u64,
    latest_sample_ms: u64,
}

/// Reusable buffers for [`Device::write_next`].
#[derive(Debug, Default)]
pub struct Scratch {
    name: String,
}

impl Device {
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The agent version this device runs.
    pub fn agent_version<'a>(&self, fleet: &'a FleetGenerator) -> &'a str {
        fleet.profile.agent_versions.name(self.agent_version)
    }

    /// Advances the device by one heartbeat sent at `now_ms` (epoch
    /// milliseconds) and appends its JSON body to `out`.
    pub fn write_next(&mut self, fleet: &FleetGenerator, now_ms: u64, scratch: &mut Scratch, out: &mut Vec<u8>) {
        let ts = now_ms.max(self.last_ms);
        self.last_ms = ts;
        self.advance(&fleet.profile, ts);
        scratch.name.clear();
        fleet.names.render(self.index, &mut scratch.name);
        let view = HeartbeatView { device: self, profile: &fleet.profile, name: &scratch.name, ts };
        // Serializing plain numbers and strings into a Vec cannot fail.
        let _ = view.serialize(&mut serde_json::Serializer::new(out));
    }

    fn advance(&mut self, profile: &Profile, ts: u64) {
        let specs = profile
            .agent_metrics
            .iter()
            .chain(self.models.iter().flat_map(|m| profile.models[usize::from(m.spec)].metrics.iter()));
        for (value, spec) in self.values.iter_mut().zip(specs) {
            *value = walk(*value, spec, self.rng.random());
        }
        for model in self.models.iter_mut() {
            let lag = self.rng.random_range(0..=INFERENCE_LAG_MS);
            model.latest_inference_ms = model.latest_inference_ms.max(ts.saturating_sub(lag));
            if model.latest_sample_ms == 0 || self.rng.random::<f64>() < SAMPLE_PROBABILITY {
                model.latest_sample_ms = model.latest_inference_ms;
            }
        }
    }
}

/// One step of a bounded random walk: a uniform step of at most `walk`,
/// reflected at the bounds, rounded to the metric's decimals.
fn walk(value: f64, spec: &MetricSpec, u: f64) -> f64 {
    let mut next = value + (2.0 * u - 1.0) * spec.walk;
    if next > spec.max {
        next = spec.max - (next - spec.max);
    }
    if next < spec.min {
        next = spec.min + (spec.min - next);
    }
    round(next.clamp(spec.min, spec.max), spec.decimals)
}

fn round(v: f64, decimals: u8) -> f64 {
    let scale = 10f64.powi(i32::from(decimals));
    // `+ 0.0` turns -0.0 into 0.0, so no body says "-0.0".
    (v * scale).round() / scale + 0.0
}

trait UniformInclusive {
    fn random_range_inclusive(&mut self, lo: f64, hi: f64) -> f64;
}

impl<R: RngExt> UniformInclusive for R {
    fn random_range_inclusive(&mut self, lo: f64, hi: f64) -> f64 {
        if lo >= hi { lo } else { lo + self.random::<f64>() * (hi - lo) }
    }
}

/// FNV-1a: a stable hash of a fleet's name (std's hashers are not stable
/// across releases, and the seed must mean the same thing everywhere).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64's finalizer: spreads nearby inputs (device 7, device 8) far apart.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn timestamp(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

// ------------------------------------------------------------------ views
//
// The views serialize members in the same order as the wire structs in
// `wire`, so a generated body round-trips through them byte for byte.

struct HeartbeatView<'a> {
    device: &'a Device,
    profile: &'a Profile,
    name: &'a str,
    ts: u64,
}

impl Serialize for HeartbeatView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.profile;
        let d = self.device;
        let n_agent = p.agent_metrics.len();
        let mut st = s.serialize_struct("SendHeartbeat", 5)?;
        if n_agent > 0 {
            st.serialize_field(
                "AgentMetrics",
                &MetricsView { specs: &p.agent_metrics, values: &d.values[..n_agent], ts: self.ts },
            )?;
        }
        st.serialize_field("AgentVersion", p.agent_versions.name(d.agent_version))?;
        st.serialize_field("DeviceFleetName", &p.fleet_name)?;
        st.serialize_field("DeviceName", self.name)?;
        if !d.models.is_empty() {
            st.serialize_field("Models", &ModelsView { device: d, profile: p, ts: self.ts })?;
        }
        st.end()
    }
}

struct MetricsView<'a> {
    specs: &'a [MetricSpec],
    values: &'a [f64],
    ts: u64,
}

impl Serialize for MetricsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.specs.len()))?;
        for (spec, &value) in self.specs.iter().zip(self.values) {
            seq.serialize_element(&MetricView { spec, value, ts: self.ts })?;
        }
        seq.end()
    }
}

struct MetricView<'a> {
    spec: &'a MetricSpec,
    value: f64,
    ts: u64,
}

impl Serialize for MetricView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("EdgeMetric", 4)?;
        st.serialize_field("Dimension", &self.spec.dimension)?;
        st.serialize_field("MetricName", &self.spec.name)?;
        st.serialize_field("Timestamp", &timestamp(self.ts))?;
        st.serialize_field("Value", &self.value)?;
        st.end()
    }
}

struct ModelsView<'a> {
    device: &'a Device,
    profile: &'a Profile,
    ts: u64,
}

impl Serialize for ModelsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.device;
        let mut seq = s.serialize_seq(Some(d.models.len()))?;
        let mut offset = self.profile.agent_metrics.len();
        for model in d.models.iter() {
            let spec = &self.profile.models[usize::from(model.spec)];
            let n = spec.metrics.len();
            seq.serialize_element(&ModelView {
                model,
                name: &spec.name,
                version: spec.versions.name(model.version),
                metrics: MetricsView { specs: &spec.metrics, values: &d.values[offset..offset + n], ts: self.ts },
            })?;
            offset += n;
        }
        seq.end()
    }
}

struct ModelView<'a> {
    model: &'a DeployedModel,
    name: &'a str,
    version: &'a str,
    metrics: MetricsView<'a>,
}

impl Serialize for ModelView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Model", 5)?;
        st.serialize_field("LatestInference", &timestamp(self.model.latest_inference_ms))?;
        st.serialize_field("LatestSampleTime", &timestamp(self.model.latest_sample_ms))?;
        if !self.metrics.specs.is_empty() {
            st.serialize_field("ModelMetrics", &self.metrics)?;
        }
        st.serialize_field("ModelName", self.name)?;
        st.serialize_field("ModelVersion", self.version)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::profile::{ModelSpec, Weighted};
    use crate::heartbeat::{validate, wire};

    fn fleet(share: f64) -> FleetGenerator {
        let profile = Profile {
            fleet_name: "factory-east".into(),
            agent_versions: Weighted::new([("1.0".to_string(), 0.5), ("2.0".to_string(), 0.5)]).unwrap(),
            agent_metrics: Profile::default_agent_metrics(),
            models: vec![ModelSpec {
                name: "resnet50".into(),
                versions: Weighted::single("3.1"),
                share,
                metrics: vec![MetricSpec::new("latency-ms", "model/resnet50", 1.0, 50.0)],
            }],
        };
        FleetGenerator::new(profile, NameTemplate::parse("cam-{index:04}").unwrap(), 7)
    }

    fn body(device: &mut Device, fleet: &FleetGenerator, now_ms: u64) -> Vec<u8> {
        let mut out = Vec::new();
        device.write_next(fleet, now_ms, &mut Scratch::default(), &mut out);
        out
    }

    #[test]
    fn bodies_are_valid_and_round_trip() {
        let f = fleet(1.0);
        let mut d = f.device(12);
        let b = body(&mut d, &f, 1_700_000_000_123);
        validate(&b).unwrap();
        let parsed: wire::SendHeartbeat = serde_json::from_slice(&b).unwrap();
        assert_eq!(parsed.device_name, "cam-0012");
        assert_eq!(parsed.device_fleet_name, "factory-east");
        assert_eq!(serde_json::to_vec(&parsed).unwrap(), b);
        let m = &parsed.models.unwrap()[0];
        assert!(m.latest_inference.unwrap().0 <= 1_700_000_000.123);
        assert_eq!(parsed.agent_metrics.unwrap()[0].timestamp, Some(wire::Timestamp(1_700_000_000.123)));
    }

    #[test]
    fn timestamps_never_go_backwards_even_if_the_clock_does() {
        let f = fleet(1.0);
        let mut d = f.device(0);
        let first: wire::SendHeartbeat = serde_json::from_slice(&body(&mut d, &f, 2_000_000)).unwrap();
        let second: wire::SendHeartbeat = serde_json::from_slice(&body(&mut d, &f, 1_000_000)).unwrap();
        let ts = |h: &wire::SendHeartbeat| h.agent_metrics.as_ref().unwrap()[0].timestamp.unwrap().0;
        assert_eq!(ts(&first), 2000.0);
        assert_eq!(ts(&second), 2000.0);
        let inf = |h: &wire::SendHeartbeat| h.models.as_ref().unwrap()[0].latest_inference.unwrap().0;
        assert!(inf(&second) >= inf(&first));
    }

    #[test]
    fn the_same_seed_gives_the_same_device() {
        let f = fleet(0.5);
        let (mut a, mut b) = (f.device(3), f.device(3));
        for t in 0..5 {
            assert_eq!(body(&mut a, &f, 1_000_000 + t), body(&mut b, &f, 1_000_000 + t));
        }
        let other = FleetGenerator::new(f.profile.clone(), f.names.clone(), 8);
        let differs = (0..20).any(|i| body(&mut f.device(i), &f, 1) != body(&mut other.device(i), &other, 1));
        assert!(differs, "another seed gives other values");
    }

    #[test]
    fn walks_stay_in_bounds_and_move_little() {
        let spec = MetricSpec::new("load", "agent", 0.0, 10.0);
        let mut v = 5.0;
        for i in 0..10_000 {
            let next = walk(v, &spec, (i as f64 * 0.618_033_988_75).fract());
            assert!((0.0..=10.0).contains(&next));
            assert!((next - v).abs() <= spec.walk + 0.01);
            v = next;
        }
    }

    #[test]
    fn model_share_is_respected() {
        let f = fleet(0.3);
        let with_model = (0..10_000).filter(|&i| !f.device(i).models.is_empty()).count();
        assert!((2_700..3_300).contains(&with_model), "{with_model} of 10000 devices have the model");
    }
}
