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
//!   drawn once per device from the fleet's weighted mixes;
//! - a model whose version changes (a rollout, [`Device::set_model_version`])
//!   is reported once, in the next heartbeat, with a `DeploymentResult`
//!   (for the model's `deployment_results` share of changes): a successful
//!   deployment that began no earlier than the previous heartbeat and ended
//!   no later than this one.
//!
//! Determinism: a device's random stream is seeded from the scenario seed,
//! the fleet's name and the device index, so the same seed gives the same
//! devices and values (only timestamps follow the clock).
//!
//! Cost: everything about a body that does not change from one heartbeat
//! to the next (member names, metric names and dimensions, the fleet name,
//! each agent and model version) is rendered to JSON once per fleet
//! (`Fragments`); a body is then those fragments copied in order, with the
//! timestamps, values and the device name written between them. Numbers go
//! through serde_json's own float formatting, so a body is byte for byte
//! what serializing the [`sagemaker_edge`](crate::sagemaker_edge) types
//! would give (the round-trip property test checks this on 100,000
//! bodies). No allocation once the caller's buffer has grown.

use rand::rngs::Xoshiro128PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use smallvec::SmallVec;

use super::names::DeviceNames;
use super::profile::{MetricSpec, Profile};

/// A fleet's heartbeat source: its profile, its device names and a key that
/// separates its devices' random streams from other fleets'.
#[derive(Debug, Clone)]
pub struct FleetGenerator {
    pub profile: Profile,
    pub names: DeviceNames,
    key: u64,
    fragments: Fragments,
}

/// The JSON of a fleet's bodies that is the same in every heartbeat.
#[derive(Debug, Clone)]
struct Fragments {
    /// `{"Dimension":"…","MetricName":"…","Timestamp":` per agent metric.
    agent_metrics: Vec<Vec<u8>>,
    /// `"AgentVersion":"…","DeviceFleetName":"…","DeviceName":"` per agent version.
    identity: Vec<Vec<u8>>,
    models: Vec<ModelFragments>,
    /// The same for [`Device::write_state`]'s flat object.
    state: StateFragments,
}

/// The keys of a device's state as one flat JSON object (the bodies of the
/// profiles other than SendHeartbeat).
#[derive(Debug, Clone)]
struct StateFragments {
    /// `"agent_version":"…","fleet_name":"…","device_name":"` per agent version.
    identity: Vec<Vec<u8>>,
    /// `,"cpu-utilization":` per agent metric.
    agent_metrics: Vec<Vec<u8>>,
    models: Vec<ModelState>,
}

#[derive(Debug, Clone)]
struct ModelState {
    /// `,"m.version":"v"` per version.
    versions: Vec<Vec<u8>>,
    /// `,"m.latest_inference_ms":`.
    inference: Vec<u8>,
    /// `,"m.metric":` per model metric.
    metrics: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct ModelFragments {
    /// Metric prefixes, as for agent metrics.
    metrics: Vec<Vec<u8>>,
    /// `"ModelName":"…","ModelVersion":"…"}` per version.
    tails: Vec<Vec<u8>>,
    /// Per version, the start of a `DeploymentResult` that brought it:
    /// `"DeploymentName":"…","DeploymentStatus":"SUCCESS","DeploymentStatusMessage":"…","DeploymentStartTime":`.
    deployment_heads: Vec<Vec<u8>>,
    /// Per version, its entry in `DeploymentModels`:
    /// `{"ModelHandle":"…","ModelName":"…","ModelVersion":"…","DesiredState":"DEPLOY","State":"DEPLOY","Status":"SUCCESS"}`.
    deployment_models: Vec<Vec<u8>>,
}

/// `value` as JSON (escaped and quoted).
fn json(value: &(impl Serialize + ?Sized)) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn metric_prefix(m: &MetricSpec) -> Vec<u8> {
    [&b"{\"Dimension\":"[..], &json(&m.dimension), b",\"MetricName\":", &json(&m.name), b",\"Timestamp\":"].concat()
}

/// `,"key":`, the key escaped.
fn member(key: &str) -> Vec<u8> {
    [&b","[..], &json(key), b":"].concat()
}

impl StateFragments {
    fn new(p: &Profile) -> Self {
        let fleet = json(&p.fleet_name);
        StateFragments {
            identity: (0..p.agent_versions.len())
                .map(|i| {
                    let version = json(p.agent_versions.name(i as u16));
                    [&b"\"agent_version\":"[..], &version, b",\"fleet_name\":", &fleet, b",\"device_name\":\""].concat()
                })
                .collect(),
            agent_metrics: p.agent_metrics.iter().map(|m| member(&m.name)).collect(),
            models: p
                .models
                .iter()
                .map(|m| ModelState {
                    versions: (0..m.versions.len())
                        .map(|i| [member(&format!("{}.version", m.name)), json(m.versions.name(i as u16))].concat())
                        .collect(),
                    inference: member(&format!("{}.latest_inference_ms", m.name)),
                    metrics: m.metrics.iter().map(|x| member(&format!("{}.{}", m.name, x.name))).collect(),
                })
                .collect(),
        }
    }
}

impl Fragments {
    fn new(p: &Profile) -> Self {
        let fleet = json(&p.fleet_name);
        Fragments {
            state: StateFragments::new(p),
            agent_metrics: p.agent_metrics.iter().map(metric_prefix).collect(),
            identity: (0..p.agent_versions.len())
                .map(|i| {
                    let version = json(p.agent_versions.name(i as u16));
                    [&b"\"AgentVersion\":"[..], &version, b",\"DeviceFleetName\":", &fleet, b",\"DeviceName\":\""]
                        .concat()
                })
                .collect(),
            models: p
                .models
                .iter()
                .map(|m| {
                    let versions = (0..m.versions.len()).map(|i| m.versions.name(i as u16));
                    let (name, handle) = (json(&m.name), json(&entity_name(&m.name)));
                    ModelFragments {
                        metrics: m.metrics.iter().map(metric_prefix).collect(),
                        tails: versions
                            .clone()
                            .map(|v| [&b"\"ModelName\":"[..], &name, b",\"ModelVersion\":", &json(v), b"}"].concat())
                            .collect(),
                        deployment_heads: versions
                            .clone()
                            .map(|v| {
                                let deployment = json(&entity_name(&format!("{}-{v}", m.name)));
                                let message = json(&format!("deployed {} {v}", m.name));
                                [
                                    &b"\"DeploymentName\":"[..],
                                    &deployment,
                                    b",\"DeploymentStatus\":\"SUCCESS\",\"DeploymentStatusMessage\":",
                                    &message,
                                    b",\"DeploymentStartTime\":",
                                ]
                                .concat()
                            })
                            .collect(),
                        deployment_models: versions
                            .map(|v| {
                                [
                                    &b"{\"ModelHandle\":"[..],
                                    &handle,
                                    b",\"ModelName\":",
                                    &name,
                                    b",\"ModelVersion\":",
                                    &json(v),
                                    b",\"DesiredState\":\"DEPLOY\",\"State\":\"DEPLOY\",\"Status\":\"SUCCESS\"}",
                                ]
                                .concat()
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }
}

/// `text` as an EntityName (`^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`, 1 to 63
/// characters): letters and digits kept, every other run of characters
/// one hyphen, cut to 63 without a hyphen at either end.
fn entity_name(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(63));
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    // Only ASCII went in, so any length is a character boundary.
    out.truncate(63);
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("deployment");
    }
    out
}

/// How far back a model's latest inference may lie from the heartbeat time.
const INFERENCE_LAG_MS: u64 = 2_000;
/// The probability that a model captured a new sample since the last heartbeat.
const SAMPLE_PROBABILITY: f64 = 0.2;
/// The window a deployment reported in a device's first heartbeat lies in
/// (later ones lie between the previous heartbeat and this one).
const FIRST_DEPLOYMENT_WINDOW_MS: u64 = 30_000;

impl FleetGenerator {
    pub fn new(profile: Profile, names: impl Into<DeviceNames>, seed: u64) -> Self {
        let names = names.into();
        let key = mix(seed ^ mix(fnv1a(profile.fleet_name.as_bytes())));
        let fragments = Fragments::new(&profile);
        FleetGenerator { profile, names, key, fragments }
    }

    /// Creates device `index` in its initial state.
    pub fn device(&self, index: u64) -> Device {
        let mut rng = Xoshiro128PlusPlus::seed_from_u64(mix(self.key ^ mix(index)));
        let p = &self.profile;
        let agent_version = p.agent_versions.pick(rng.random());
        let mut models = DeployedModels::new();
        for (i, spec) in p.models.iter().enumerate() {
            // Draw both numbers whatever the outcome, so one model's share
            // does not shift the next model's draws.
            let (deployed, version) = (rng.random::<f64>(), rng.random());
            if deployed < spec.share {
                models.push(DeployedModel {
                    spec: i as u16,
                    version: spec.versions.pick(version),
                    deployed: false,
                    latest_inference_ms: 0,
                    latest_sample_ms: 0,
                });
            }
        }
        let metric_specs =
            p.agent_metrics.iter().chain(models.iter().flat_map(|m| p.models[usize::from(m.spec)].metrics.iter()));
        let values = metric_specs.map(|m| round(rng.random_range_inclusive(m.min, m.max), m.decimals)).collect();
        Device { index, rng, agent_version, deployed: false, sequence: 0, last_ms: 0, models, values }
    }

    /// A stable key of this fleet under this seed, for other per-fleet
    /// random streams (the schedules) to derive from.
    pub fn key(&self) -> u64 {
        self.key
    }
}

/// One virtual device's state between heartbeats.
#[derive(Debug, Clone)]
pub struct Device {
    index: u64,
    rng: Xoshiro128PlusPlus,
    agent_version: u16,
    /// Some model's version changed since the last heartbeat.
    deployed: bool,
    /// Heartbeats made so far (this one's number, once it is made).
    sequence: u32,
    /// The timestamp of the last heartbeat, in epoch milliseconds.
    last_ms: u64,
    models: DeployedModels,
    /// Current metric values: the agent metrics, then each deployed model's.
    values: MetricValues,
}

/// A device's deployed models, inline for the usual one: a million devices
/// would otherwise hold a million small heap blocks (and their allocator
/// headers) for it.
type DeployedModels = SmallVec<[DeployedModel; 1]>;

/// A device's metric values, inline up to the default profile's count
/// (the agent's three and one model's), for the same reason.
type MetricValues = SmallVec<[f64; 4]>;

#[derive(Debug, Clone)]
struct DeployedModel {
    /// Index into the profile's models.
    spec: u16,
    /// Index into that model's versions.
    version: u16,
    /// Its version changed since the last heartbeat, which is to report it.
    deployed: bool,
    latest_inference_ms: u64,
    latest_sample_ms: u64,
}

/// Reusable buffers for [`Device::write_next`].
#[derive(Debug, Default)]
pub struct Scratch {
    timestamp: Vec<u8>,
}

impl Device {
    /// The device's index in its fleet.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The index of its agent version in the fleet's mix.
    pub fn agent_version(&self) -> u16 {
        self.agent_version
    }

    /// Switches its agent version (an index into the fleet's mix).
    pub fn set_agent_version(&mut self, version: u16) {
        self.agent_version = version;
    }

    /// Switches the version of model `model` (an index into the profile's
    /// models), if the device has it deployed. A change (not a switch to
    /// the version it runs) is a deployment, which the next heartbeat
    /// reports (see [`Self::write_next`]).
    pub fn set_model_version(&mut self, model: u16, version: u16) {
        if let Some(m) = self.models.iter_mut().find(|m| m.spec == model)
            && m.version != version
        {
            m.version = version;
            m.deployed = true;
            self.deployed = true;
        }
    }

    /// The index of model `model`'s version (into the profile's models and
    /// that model's versions), if the device has it deployed.
    pub fn model_version(&self, model: u16) -> Option<u16> {
        self.models.iter().find(|m| m.spec == model).map(|m| m.version)
    }

    /// Advances the device by one heartbeat sent at `now_ms` (epoch
    /// milliseconds) and appends its JSON body to `out`.
    ///
    /// If a model's version changed since the previous heartbeat, the body
    /// ends with a `DeploymentResult` for it (for the model's
    /// `deployment_results` share of changes, drawn from the device's
    /// stream): `SUCCESS`, started and ended between the previous
    /// heartbeat (or 30 s before, for a first one) and this one.
    pub fn write_next(&mut self, fleet: &FleetGenerator, now_ms: u64, scratch: &mut Scratch, out: &mut Vec<u8>) {
        let previous_ms = self.last_ms;
        let ts = now_ms.max(previous_ms);
        self.last_ms = ts;
        self.advance(&fleet.profile, ts);
        let f = &fleet.fragments;
        // Every metric of a body carries the same timestamp: format it once.
        scratch.timestamp.clear();
        write_number(timestamp(ts), &mut scratch.timestamp);
        let ts_text = &scratch.timestamp[..];
        let n_agent = f.agent_metrics.len();

        out.push(b'{');
        if n_agent > 0 {
            out.extend_from_slice(b"\"AgentMetrics\":[");
            write_metrics(&f.agent_metrics, &self.values[..n_agent], ts_text, out);
            out.extend_from_slice(b"],");
        }
        out.extend_from_slice(&f.identity[usize::from(self.agent_version)]);
        fleet.names.render_json(self.index, out);
        out.push(b'"');
        if !self.models.is_empty() {
            out.extend_from_slice(b",\"Models\":[");
            let mut offset = n_agent;
            for (k, model) in self.models.iter().enumerate() {
                let mf = &f.models[usize::from(model.spec)];
                if k > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"LatestInference\":");
                write_number(timestamp(model.latest_inference_ms), out);
                out.extend_from_slice(b",\"LatestSampleTime\":");
                write_number(timestamp(model.latest_sample_ms), out);
                out.push(b',');
                let n = mf.metrics.len();
                if n > 0 {
                    out.extend_from_slice(b"\"ModelMetrics\":[");
                    write_metrics(&mf.metrics, &self.values[offset..offset + n], ts_text, out);
                    out.extend_from_slice(b"],");
                    offset += n;
                }
                out.extend_from_slice(&mf.tails[usize::from(model.version)]);
            }
            out.push(b']');
        }
        if self.deployed {
            self.write_deployment(fleet, previous_ms, ts, out);
        }
        out.push(b'}');
    }

    /// Advances the device by one heartbeat sent at `now_ms` (epoch
    /// milliseconds), for a profile that reads its state field by field
    /// (see the accessors below); returns the heartbeat's timestamp, which
    /// never decreases. A rollout shows as the new version.
    pub fn advance_state(&mut self, fleet: &FleetGenerator, now_ms: u64) -> u64 {
        let ts = now_ms.max(self.last_ms);
        self.last_ms = ts;
        self.advance(&fleet.profile, ts);
        if std::mem::replace(&mut self.deployed, false) {
            self.models.iter_mut().for_each(|m| m.deployed = false);
        }
        ts
    }

    /// The number of the latest heartbeat made (1 for the first).
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// The current value of agent metric `i` (an index into the
    /// profile's agent metrics).
    pub fn agent_metric(&self, i: usize) -> f64 {
        self.values[i]
    }

    /// A uniform draw in [0, 1) from the device's own stream (for a
    /// profile's per-heartbeat choices: the same seed gives the same).
    pub fn draw(&mut self) -> f64 {
        self.rng.random()
    }

    /// Advances the device by one heartbeat sent at `now_ms` (epoch
    /// milliseconds) and appends its state to `out` as the members of one
    /// flat JSON object, without the braces:
    /// `"agent_version":"1.0","fleet_name":"f","device_name":"d-1",`
    /// then each agent metric by name, then per deployed model
    /// `"m.version"`, `"m.latest_inference_ms"` and `"m.metric"`. (Metric
    /// and model names have no `_` or `.`, so no key can collide.) Returns
    /// the heartbeat's timestamp, which never decreases, for the profile to
    /// place. The walks, versions and rollouts are those of
    /// [`Self::write_next`]; a rollout shows as the new version.
    pub fn write_state(&mut self, fleet: &FleetGenerator, now_ms: u64, out: &mut Vec<u8>) -> u64 {
        let ts = self.advance_state(fleet, now_ms);
        let f = &fleet.fragments.state;
        out.extend_from_slice(&f.identity[usize::from(self.agent_version)]);
        fleet.names.render_json(self.index, out);
        out.push(b'"');
        let n_agent = f.agent_metrics.len();
        for (key, &value) in f.agent_metrics.iter().zip(&self.values[..n_agent]) {
            out.extend_from_slice(key);
            write_number(value, out);
        }
        let mut offset = n_agent;
        for model in self.models.iter() {
            let m = &f.models[usize::from(model.spec)];
            out.extend_from_slice(&m.versions[usize::from(model.version)]);
            out.extend_from_slice(&m.inference);
            write_integer(model.latest_inference_ms, out);
            for (key, &value) in m.metrics.iter().zip(&self.values[offset..]) {
                out.extend_from_slice(key);
                write_number(value, out);
            }
            offset += m.metrics.len();
        }
        ts
    }

    /// Appends `,"DeploymentResult":{…}` for the models whose version
    /// changed, those of them that report it; clears the changes.
    fn write_deployment(&mut self, fleet: &FleetGenerator, previous_ms: u64, ts: u64, out: &mut Vec<u8>) {
        self.deployed = false;
        let f = &fleet.fragments;
        let mut open = false;
        for k in 0..self.models.len() {
            let model = &mut self.models[k];
            if !std::mem::replace(&mut model.deployed, false) {
                continue;
            }
            let share = fleet.profile.models[usize::from(model.spec)].deployment_results;
            // Draw whatever the share, so that it does not shift later draws.
            let reported = self.rng.random::<f64>() < share;
            if !reported {
                continue;
            }
            let mf = &f.models[usize::from(model.spec)];
            let version = usize::from(model.version);
            if open {
                out.push(b',');
            } else {
                open = true;
                // One deployment, started and ended within the window.
                let window = if previous_ms == 0 { FIRST_DEPLOYMENT_WINDOW_MS } else { ts - previous_ms };
                let from = ts - window.min(ts);
                let (a, b) = (self.rng.random::<f64>(), self.rng.random::<f64>());
                let [start, end] = [a.min(b), a.max(b)].map(|u| (from + (u * window as f64) as u64).min(ts));
                out.extend_from_slice(b",\"DeploymentResult\":{");
                out.extend_from_slice(&mf.deployment_heads[version]);
                write_number(timestamp(start), out);
                out.extend_from_slice(b",\"DeploymentEndTime\":");
                write_number(timestamp(end), out);
                out.extend_from_slice(b",\"DeploymentModels\":[");
            }
            out.extend_from_slice(&mf.deployment_models[version]);
        }
        if open {
            out.extend_from_slice(b"]}");
        }
    }

    fn advance(&mut self, profile: &Profile, ts: u64) {
        self.sequence = self.sequence.wrapping_add(1);
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
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn timestamp(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Appends `[prefix value}, ...]`'s inside: each metric's fragment, the
/// shared timestamp and its value.
fn write_metrics(prefixes: &[Vec<u8>], values: &[f64], ts_text: &[u8], out: &mut Vec<u8>) {
    for (i, (prefix, &value)) in prefixes.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(prefix);
        out.extend_from_slice(ts_text);
        out.extend_from_slice(b",\"Value\":");
        write_number(value, out);
        out.push(b'}');
    }
}

/// Appends `n` in decimal.
pub(crate) fn write_integer(n: u64, out: &mut Vec<u8>) {
    // Writing an integer into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &n);
}

/// Appends `v` exactly as serde_json serializes an `f64`.
fn write_number(v: f64, out: &mut Vec<u8>) {
    // Writing a finite number into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::profile::{ModelSpec, Weighted};
    use crate::device::template::NameTemplate;
    use crate::sagemaker_edge::{self, validate};

    fn fleet(share: f64) -> FleetGenerator {
        let profile = Profile {
            fleet_name: "factory-east".into(),
            agent_versions: Weighted::new([("1.0".to_string(), 0.5), ("2.0".to_string(), 0.5)]).unwrap(),
            agent_metrics: Profile::default_agent_metrics(),
            models: vec![ModelSpec {
                name: "resnet50".into(),
                // 3.2 only comes by a rollout.
                versions: Weighted::new([("3.1".to_string(), 1.0), ("3.2".to_string(), 0.0)]).unwrap(),
                share,
                metrics: vec![MetricSpec::new("latency-ms", "model/resnet50", 1.0, 50.0)],
                deployment_results: 1.0,
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
    fn a_device_of_the_default_shape_holds_its_state_inline() {
        let f = fleet(1.0);
        let d = f.device(3);
        assert_eq!((d.models.len(), d.values.len()), (1, 4));
        assert!(!d.models.spilled() && !d.values.spilled(), "one model and four metrics need no heap block");
        // More than the inline room still works: it spills, and is whole.
        let mut d = d;
        d.values.extend([1.0, 2.0]);
        assert!(d.values.spilled());
        assert_eq!(d.values.len(), 6);
    }

    #[test]
    fn bodies_are_valid_and_round_trip() {
        let f = fleet(1.0);
        let mut d = f.device(12);
        let b = body(&mut d, &f, 1_700_000_000_123);
        validate(&b).unwrap();
        let parsed: sagemaker_edge::SendHeartbeat = serde_json::from_slice(&b).unwrap();
        assert_eq!(parsed.device_name, "cam-0012");
        assert_eq!(parsed.device_fleet_name, "factory-east");
        assert_eq!(serde_json::to_vec(&parsed).unwrap(), b);
        let m = &parsed.models.unwrap()[0];
        assert!(m.latest_inference.unwrap().0 <= 1_700_000_000.123);
        assert_eq!(parsed.agent_metrics.unwrap()[0].timestamp, Some(sagemaker_edge::Timestamp(1_700_000_000.123)));
    }

    #[test]
    fn the_state_object_carries_the_same_walks_as_the_heartbeat_and_a_rollout_as_its_version() {
        let f = fleet(1.0);
        let (mut a, mut b) = (f.device(12), f.device(12));
        for (k, now) in [1_700_000_000_123, 1_700_000_030_000, 1_700_000_029_000].into_iter().enumerate() {
            if k == 2 {
                a.set_model_version(0, 1);
                b.set_model_version(0, 1);
            }
            let hb: sagemaker_edge::SendHeartbeat = serde_json::from_slice(&body(&mut a, &f, now)).unwrap();
            let mut members = Vec::new();
            let ts = b.write_state(&f, now, &mut members);
            assert_eq!(ts, [1_700_000_000_123, 1_700_000_030_000, 1_700_000_030_000][k], "never backwards");
            let text = format!("{{{}}}", String::from_utf8(members).unwrap());
            let state: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
            assert_eq!(state["device_name"], "cam-0012");
            assert_eq!(state["fleet_name"], "factory-east");
            assert_eq!(state["agent_version"], hb.agent_version.as_str());
            for m in hb.agent_metrics.unwrap() {
                assert_eq!(state[m.metric_name.as_deref().unwrap()].as_f64(), m.value, "{text}");
            }
            let model = &hb.models.unwrap()[0];
            assert_eq!(state["resnet50.version"], model.model_version.as_deref().unwrap(), "{text}");
            assert_eq!(state["resnet50.version"], if k == 2 { "3.2" } else { "3.1" });
            let inference = state["resnet50.latest_inference_ms"].as_u64().unwrap();
            assert_eq!(inference as f64 / 1000.0, model.latest_inference.unwrap().0);
            let metric = &model.model_metrics.as_ref().unwrap()[0];
            assert_eq!(state["resnet50.latency-ms"].as_f64(), metric.value);
            assert_eq!(state.len(), 3 + 3 + 3, "{text}");
        }
    }

    #[test]
    fn timestamps_never_go_backwards_even_if_the_clock_does() {
        let f = fleet(1.0);
        let mut d = f.device(0);
        let first: sagemaker_edge::SendHeartbeat = serde_json::from_slice(&body(&mut d, &f, 2_000_000)).unwrap();
        let second: sagemaker_edge::SendHeartbeat = serde_json::from_slice(&body(&mut d, &f, 1_000_000)).unwrap();
        let ts = |h: &sagemaker_edge::SendHeartbeat| h.agent_metrics.as_ref().unwrap()[0].timestamp.unwrap().0;
        assert_eq!(ts(&first), 2000.0);
        assert_eq!(ts(&second), 2000.0);
        let inf = |h: &sagemaker_edge::SendHeartbeat| h.models.as_ref().unwrap()[0].latest_inference.unwrap().0;
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

    fn parsed(b: &[u8]) -> sagemaker_edge::SendHeartbeat {
        validate(b).unwrap_or_else(|v| panic!("{v}\n{}", String::from_utf8_lossy(b)));
        let hb: sagemaker_edge::SendHeartbeat = serde_json::from_slice(b).unwrap();
        assert_eq!(serde_json::to_vec(&hb).unwrap(), b, "byte for byte what the serde types serialize");
        hb
    }

    #[test]
    fn a_model_version_change_is_reported_once_in_the_next_heartbeat() {
        let f = fleet(1.0);
        let mut d = f.device(4);
        let t0 = 1_700_000_000_000;
        assert!(parsed(&body(&mut d, &f, t0)).deployment_result.is_none());
        d.set_model_version(0, 0);
        assert!(parsed(&body(&mut d, &f, t0 + 1)).deployment_result.is_none(), "the version it runs: no change");

        d.set_model_version(0, 1);
        assert_eq!(d.model_version(0), Some(1));
        let t1 = t0 + 20_000;
        let hb = parsed(&body(&mut d, &f, t1));
        assert_eq!(hb.models.as_ref().unwrap()[0].model_version.as_deref(), Some("3.2"));
        let r = hb.deployment_result.expect("the heartbeat after the change reports the deployment");
        assert_eq!(r.deployment_name.as_deref(), Some("resnet50-3-2"));
        assert_eq!(r.deployment_status.as_deref(), Some("SUCCESS"));
        assert_eq!(r.deployment_status_message.as_deref(), Some("deployed resnet50 3.2"));
        let (start, end) = (r.deployment_start_time.unwrap().0, r.deployment_end_time.unwrap().0);
        assert!((t0 + 1) as f64 / 1000.0 <= start, "began after the previous heartbeat: {start}");
        assert!(start <= end && end <= t1 as f64 / 1000.0, "ended by this one: {start}..{end}");
        let models = r.deployment_models.unwrap();
        assert_eq!(models.len(), 1);
        let m = &models[0];
        assert_eq!((m.model_handle.as_deref(), m.model_name.as_deref()), (Some("resnet50"), Some("resnet50")));
        assert_eq!(m.model_version.as_deref(), Some("3.2"));
        assert_eq!(
            (m.desired_state, m.state),
            (Some(sagemaker_edge::ModelState::Deploy), Some(sagemaker_edge::ModelState::Deploy))
        );
        assert_eq!(m.status, Some(sagemaker_edge::DeploymentStatus::Success));

        for k in 1..5 {
            assert!(parsed(&body(&mut d, &f, t1 + k * 20_000)).deployment_result.is_none(), "reported once");
        }
    }

    #[test]
    fn a_change_before_the_first_heartbeat_lies_within_the_window_before_it() {
        let f = fleet(1.0);
        let mut d = f.device(0);
        d.set_model_version(0, 1);
        let t = 1_700_000_000_000u64;
        let r = parsed(&body(&mut d, &f, t)).deployment_result.unwrap();
        let (start, end) = (r.deployment_start_time.unwrap().0, r.deployment_end_time.unwrap().0);
        let from = (t - FIRST_DEPLOYMENT_WINDOW_MS) as f64 / 1000.0;
        assert!(from <= start && start <= end && end <= t as f64 / 1000.0, "{from} {start} {end}");
    }

    #[test]
    fn deployment_results_reports_its_share_of_changes_and_a_device_without_the_model_none() {
        let mut f = fleet(1.0);
        f.profile.models[0].deployment_results = 0.25;
        let reported = (0..2000)
            .filter(|&i| {
                let mut d = f.device(i);
                body(&mut d, &f, 1_000_000);
                d.set_model_version(0, 1);
                parsed(&body(&mut d, &f, 1_010_000)).deployment_result.is_some()
            })
            .count();
        assert!((400..600).contains(&reported), "{reported} of 2000 changes reported at 25%");
        f.profile.models[0].deployment_results = 0.0;
        let mut d = f.device(1);
        d.set_model_version(0, 1);
        assert!(parsed(&body(&mut d, &f, 1_000_000)).deployment_result.is_none());

        let f = fleet(0.0);
        let mut d = f.device(2);
        d.set_model_version(0, 1);
        assert_eq!(d.model_version(0), None);
        assert!(parsed(&body(&mut d, &f, 1_000_000)).deployment_result.is_none());
    }

    #[test]
    fn two_models_changed_at_once_are_one_deployment() {
        let mut f = fleet(1.0);
        let mut second = f.profile.models[0].clone();
        second.name = "ocr-labels".into();
        second.versions = Weighted::new([("a b".to_string(), 1.0), ("c_d.e".to_string(), 0.0)]).unwrap();
        f.profile.models.push(second);
        let f = FleetGenerator::new(f.profile.clone(), f.names.clone(), 3);
        let mut d = f.device(9);
        d.set_model_version(0, 1);
        d.set_model_version(1, 1);
        let r = parsed(&body(&mut d, &f, 1_000_000)).deployment_result.unwrap();
        let versions: Vec<_> = r.deployment_models.unwrap().into_iter().map(|m| m.model_version.unwrap()).collect();
        assert_eq!(versions, ["3.2", "c_d.e"]);
    }

    #[test]
    fn entity_names_are_made_valid() {
        for (text, want) in [
            ("resnet50-3.2", "resnet50-3-2"),
            ("m-1 2__3", "m-1-2-3"),
            ("m-...", "m"),
            ("...", "deployment"),
            ("é", "deployment"),
        ] {
            assert_eq!(entity_name(text), want);
        }
        let long = entity_name(&format!("{}-{}", "a".repeat(62), "b"));
        assert_eq!(long, "a".repeat(62), "cut to 63 without a trailing hyphen");
        for text in ["x", "a-b", &"z9-".repeat(40)] {
            crate::sagemaker_edge::rules::ENTITY_NAME.check(&entity_name(text)).unwrap();
        }
    }

    #[test]
    fn model_share_is_respected() {
        let f = fleet(0.3);
        let with_model = (0..10_000).filter(|&i| !f.device(i).models.is_empty()).count();
        assert!((2_700..3_300).contains(&with_model), "{with_model} of 10000 devices have the model");
    }
}
