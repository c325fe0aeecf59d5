//! Scenario files: the model, parsing from TOML or JSON, and checks with
//! precise errors.
//!
//! Parsing and checking happen in one pass: every type deserialized from
//! the file checks its own value as it is read (a weight that is negative, a
//! template that yields an invalid name, 0 devices), so serde's position
//! tracking points at the offending place. [`load`] then turns whatever went
//! wrong into a [`ScenarioError`] that names the file, the line and column,
//! the key path (via `serde_path_to_error`) and what was expected, with the
//! offending line quoted.

pub mod capacity;
mod error;
pub mod settings;

use std::path::Path;

use serde::Deserialize;

pub use error::ScenarioError;
use error::Step;
pub use settings::{Header, Target, TargetUrl};

use crate::units::{DurationValue, Rate, Share};
use std::time::Duration;

use crate::device::profile::{self, MetricSpec, ModelSpec, Weighted};
use crate::device::{DeviceNames, FleetGenerator, NameTemplate, Profile};
use crate::fleet::{Arrival, Event, EventKind, RetryPolicy, RolloutTarget, Schedule, StartMode};
use crate::gate::Thresholds;
use capacity::CapacitySettings;

/// The most devices a single fleet may have.
pub const MAX_DEVICES_PER_FLEET: u64 = 10_000_000;

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    /// Seed for every random choice; `None` asks for a fresh one per run.
    pub seed: Option<u64>,
    /// How long a run lasts (scheduling stops then; in-flight heartbeats
    /// get up to the target's timeout to finish).
    pub duration: Duration,
    pub target: Target,
    pub fleets: Vec<Fleet>,
    /// Gates checked at the end of a run, and during it to abort.
    pub thresholds: Thresholds,
    /// Results also broken down by these (cohorts).
    pub breakdown: Vec<Breakdown>,
    /// How `fleetstorm capacity` searches, and the SLO it holds loads to.
    pub capacity: Option<CapacitySettings>,
    /// How the command line scaled the file's fleets (reports say so).
    pub scaled: Scaled,
    /// SHA-256 of the scenario's text as written, in hex: its
    /// `${env:NAME}` placeholders, never their values.
    pub written: String,
    /// The text it was read from, so that a check made after parsing (a
    /// run's resources) places what it finds as the parse-time checks do.
    pub source: Source,
}

/// A scenario's text as read, with its origin and format, and each
/// fleet's device count as the file gives it (before the command line or
/// a capacity step scales it). Shared, not copied, by the scenario's clones.
#[derive(Clone)]
pub struct Source {
    origin: std::sync::Arc<str>,
    text: std::sync::Arc<str>,
    format: Format,
    devices: std::sync::Arc<[u64]>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("origin", &self.origin).field("format", &self.format).finish_non_exhaustive()
    }
}

impl Source {
    /// Fleet `i`'s device count as the file gives it.
    pub fn devices(&self, i: usize) -> Option<u64> {
        self.devices.get(i).copied()
    }
}

/// Scales applied to a scenario's fleets from the command line
/// (`--devices-scale`, `--rate-scale`); `None` where not scaled.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scaled {
    /// Every fleet's device count multiplied by this.
    pub devices: Option<f64>,
    /// Every fleet's rate multiplied by this (intervals divided).
    pub rate: Option<f64>,
}

impl Scaled {
    pub fn is_scaled(&self) -> bool {
        self.devices.is_some() || self.rate.is_some()
    }
}

impl Scenario {
    /// The protocol the run speaks to its target: the URL's, or, for the
    /// built-in backend (which listens for either), its first fleet's.
    pub fn protocol(&self) -> crate::transport::Protocol {
        match (&self.target.url, self.fleets.first()) {
            (TargetUrl::Builtin, Some(f)) => {
                f.profile.protocols().first().copied().unwrap_or(self.target.url.protocol())
            }
            (url, _) => url.protocol(),
        }
    }

    /// A problem found after parsing with fleet `fleet`'s `key` (e.g.
    /// `devices`), placed at that key's value in the file, or at the
    /// fleet's table when the file does not have the key (a count its
    /// identities file gave).
    pub fn error_at_fleet(&self, fleet: usize, key: &str, message: &str) -> ScenarioError {
        let at = [Step::Key("fleets".into()), Step::Index(fleet), Step::Key(key.into())];
        self.error_at(&at, message)
    }

    /// A problem found after parsing with `[target]`'s `key`, placed as
    /// [`Scenario::error_at_fleet`] places a fleet's.
    pub fn error_at_target(&self, key: &str, message: &str) -> ScenarioError {
        self.error_at(&[Step::Key("target".into()), Step::Key(key.into())], message)
    }

    fn error_at(&self, at: &[Step], message: &str) -> ScenarioError {
        let Source { origin, text, format, .. } = &self.source;
        ScenarioError::at_key(origin, text, *format, at, message)
    }

    /// A hash of the scenario as run (file and overrides, seed included):
    /// the same for every shard of one distributed run, and different for
    /// another scenario. SHA-256, in hex, of the text as written (never a
    /// value read from the environment: shards given their own tokens
    /// still merge, and no secret can be guessed from a published hash)
    /// and of what the command line changed (target, duration, scales).
    pub fn hash(&self, seed: u64) -> String {
        let Scenario { written, target, duration, scaled, .. } = self;
        let (url, path) = (&target.url, &target.path);
        sha256_hex(format!("{written}\n{url}{path}\n{duration:?}\n{scaled:?}\nseed={seed}").as_bytes())
    }
}

/// SHA-256 of `bytes`, in hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What results may be broken down by, beyond fleets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breakdown {
    AgentVersion,
}

/// The run length when a scenario gives none.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);
/// The heartbeat period when a fleet gives neither `interval` nor `rate`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// One fleet of identical-looking devices.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub devices: u64,
    pub schedule: Schedule,
    /// Its devices' names: a template, or the rows of its `identities`
    /// file (which then also give their credentials).
    pub device_name: DeviceNames,
    /// What its devices' bodies hold (agent versions, metrics, models);
    /// `content.fleet_name` is the fleet's name.
    pub content: Profile,
    /// A device whose largest gap without a successful heartbeat exceeds
    /// this is stale; `None` means three intervals.
    pub stale_after: Option<Duration>,
    /// Outages, restarts, rollouts and surges, in file order.
    pub events: Vec<Event>,
    /// How its devices retry failed heartbeats (`None`: they do not).
    pub retry: Option<RetryPolicy>,
    /// Its device profile: what its devices speak (the scenario's `profile`).
    pub profile: crate::wire::ProfileName,
    /// The identities file as the scenario names it, if any.
    pub identities: Option<std::path::PathBuf>,
    /// A `custom` fleet's templates, compiled (see [`crate::wire::custom`]).
    pub custom: Option<std::sync::Arc<crate::wire::custom::CustomWire>>,
    /// Its `[fleets.custom]` table as written, compiled once the
    /// identities are read.
    custom_spec: Option<crate::wire::custom::CustomSpec>,
    /// `[fleets.mqtt]` as written, until checked into `mqtt`.
    mqtt_spec: Option<crate::wire::mqtt::MqttSpec>,
    /// An `mqtt` fleet's topic, QoS and retain (`[fleets.mqtt]`, checked).
    pub mqtt: Option<std::sync::Arc<crate::wire::mqtt::MqttWire>>,
}

impl Fleet {
    /// What its devices speak, as the engine runs it: its device profile
    /// with its credentials, sending to `host` (an Azure SAS token names
    /// it).
    pub fn wire(&self, names: &crate::device::DeviceNames, host: &str) -> crate::wire::FleetWire {
        match &self.mqtt {
            Some(mqtt) => crate::wire::FleetWire::Mqtt(mqtt.clone()),
            None => crate::wire::FleetWire::new(self.profile, names, host, self.custom.as_ref()),
        }
    }
}

/// Why a fleet cannot be scaled as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScaleError {
    /// The count is one the file could not hold either.
    #[error("{0}")]
    Devices(String),
    /// The fleet's `device_name` (or identities file) cannot name that
    /// many devices.
    #[error("{0}")]
    Names(#[source] crate::device::names::NamesError),
    /// Its devices would beat more often than once a millisecond.
    #[error("the interval would be {:.3} ms, below 1 ms", seconds * 1000.0)]
    IntervalTooShort { seconds: f64 },
    /// Or so rarely that the interval is no duration at all.
    #[error("the interval would be {seconds:e} s, beyond any duration")]
    IntervalTooLong { seconds: f64 },
}

impl Fleet {
    pub fn name(&self) -> &str {
        &self.content.fleet_name
    }

    /// The fleet's device count times `factor`, rounded (saturating).
    pub fn scaled_devices(&self, factor: f64) -> u64 {
        (self.devices as f64 * factor).round() as u64
    }

    /// Gives the fleet `devices` devices, each keeping its interval (so the
    /// fleet's rate scales with them). The count is checked as one in the
    /// file is: the one rule for `--devices-scale` and capacity steps.
    pub fn set_devices(&mut self, devices: u64) -> Result<(), ScaleError> {
        check_devices(devices).map_err(ScaleError::Devices)?;
        self.device_name.check_for(devices).map_err(ScaleError::Names)?;
        self.devices = devices;
        Ok(())
    }

    /// Divides the fleet's interval by `factor` (so its rate is `factor`
    /// times as high), down to 1 ms: the one rule for `--rate-scale` and
    /// capacity steps scaled by rate.
    pub fn scale_rate(&mut self, factor: f64) -> Result<(), ScaleError> {
        let seconds = self.schedule.interval.as_secs_f64() / factor;
        if seconds < 0.001 {
            return Err(ScaleError::IntervalTooShort { seconds });
        }
        self.schedule.interval =
            Duration::try_from_secs_f64(seconds).map_err(|_| ScaleError::IntervalTooLong { seconds })?;
        Ok(())
    }

    /// The staleness bound: as written, or three intervals.
    pub fn stale_after(&self) -> Duration {
        self.stale_after.unwrap_or(self.schedule.interval * 3)
    }

    /// The heartbeat generator for this fleet under `seed`.
    pub fn generator(&self, seed: u64) -> FleetGenerator {
        FleetGenerator::new(self.content.clone(), self.device_name.clone(), seed)
    }
}

/// The file formats a scenario may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// The format named by a file's extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// The format of scenario text with no file name to go by (standard
    /// input): JSON if it starts with `{`, TOML otherwise (a TOML scenario
    /// starts with a key, a table header or a comment, never a brace).
    pub fn sniff(text: &str) -> Format {
        if text.trim_start().starts_with('{') { Format::Json } else { Format::Toml }
    }
}

/// The path that names standard input, as in `fleetstorm run -`.
pub const STDIN_PATH: &str = "-";

/// Reads and checks a scenario file; the format follows the extension.
/// The path `-` reads the scenario from standard input instead (the
/// format from its first character; files it names are found from the
/// working directory), so that a generated scenario can be piped in.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    if path == Path::new(STDIN_PATH) {
        return load_stdin(std::io::stdin().lock());
    }
    let origin = path.display().to_string();
    let format = Format::from_path(path)
        .ok_or_else(|| ScenarioError::whole_file(&origin, "unknown scenario format: name the file *.toml or *.json"))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| ScenarioError::whole_file(&origin, &format!("cannot read the scenario: {e}")))?;
    let default_name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("scenario");
    let base = path.parent().unwrap_or(Path::new("."));
    parse_in(&text, format, &origin, default_name, base)
}

/// [`load`] of `-`: the scenario text from `input`, named `<stdin>` in
/// errors and `stdin` when it has no `name`.
pub fn load_stdin(mut input: impl std::io::Read) -> Result<Scenario, ScenarioError> {
    let origin = "<stdin>";
    let mut text = String::new();
    input.read_to_string(&mut text).map_err(|e| {
        ScenarioError::whole_file(origin, &format!("cannot read the scenario from standard input: {e}"))
    })?;
    if text.trim().is_empty() {
        return Err(ScenarioError::whole_file(origin, "standard input held no scenario (it was empty)"));
    }
    parse_in(&text, Format::sniff(&text), origin, "stdin", Path::new(""))
}

/// Parses and checks scenario text. `origin` names it in errors;
/// `default_name` is used when the scenario has no `name`. Files it names
/// (identities) are found from the working directory.
pub fn parse(text: &str, format: Format, origin: &str, default_name: &str) -> Result<Scenario, ScenarioError> {
    parse_in(text, format, origin, default_name, Path::new(""))
}

/// [`parse`], with the files the scenario names found from `base` (the
/// scenario file's directory).
pub fn parse_in(
    text: &str,
    format: Format,
    origin: &str,
    default_name: &str,
    base: &Path,
) -> Result<Scenario, ScenarioError> {
    let raw: RawScenario = match format {
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|e| ScenarioError::from_toml(origin, text, None, &e))?;
            serde_path_to_error::deserialize(de)
                .map_err(|e| ScenarioError::from_toml(origin, text, Some(e.path()), e.inner()))?
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let raw = serde_path_to_error::deserialize(&mut de)
                .map_err(|e| ScenarioError::from_json(origin, text, Some(e.path()), e.inner()))?;
            de.end().map_err(|e| ScenarioError::from_json(origin, text, None, &e))?;
            raw
        }
    };
    let mut scenario = Scenario {
        name: raw.name.unwrap_or_else(|| default_name.to_string()),
        seed: raw.seed,
        duration: raw.duration.map_or(DEFAULT_DURATION, |d| d.0),
        target: raw.target.unwrap_or_default(),
        fleets: match raw.fleets {
            Some(f) => f.0,
            None => {
                return Err(ScenarioError::whole_file(
                    origin,
                    "no fleets: add at least one [[fleets]] table with a name and a device count",
                ));
            }
        },
        thresholds: raw.thresholds.unwrap_or_default(),
        breakdown: raw.breakdown,
        capacity: raw.capacity,
        scaled: Scaled::default(),
        written: sha256_hex(text.as_bytes()),
        source: Source { origin: origin.into(), text: text.into(), format, devices: std::sync::Arc::new([]) },
    };
    for (i, f) in scenario.fleets.iter_mut().enumerate() {
        let Some(file) = &f.identities else { continue };
        let at = [Step::Key("fleets".into()), Step::Index(i), Step::Key("identities".into())];
        let ids = read_identities(&base.join(file), f.profile)
            .map_err(|e| ScenarioError::at_key(origin, text, format, &at, &format!("fleet {:?}: {e}", f.name())))?;
        if f.devices == 0 {
            f.devices = ids.len() as u64;
        } else if f.devices > ids.len() as u64 {
            let message = format!(
                "fleet {:?}: devices = {}, but {} lists {}; drop devices (the file sets the count) or list more",
                f.name(),
                f.devices,
                file.display(),
                ids.len()
            );
            return Err(ScenarioError::at_key(origin, text, format, &at, &message));
        }
        f.device_name = DeviceNames::Listed(std::sync::Arc::new(ids));
    }
    // The counts as the file gives them, identities files' included.
    scenario.source.devices = scenario.fleets.iter().map(|f| f.devices).collect();
    for (i, f) in scenario.fleets.iter_mut().enumerate() {
        let Some(spec) = &f.mqtt_spec else { continue };
        let wire = crate::wire::mqtt::MqttWire::compile(spec).map_err(|e| {
            let mut at = vec![Step::Key("fleets".into()), Step::Index(i), Step::Key("mqtt".into())];
            at.extend(e.key.split('.').map(|k| Step::Key(k.into())));
            ScenarioError::at_key(origin, text, format, &at, &format!("fleet {:?}: mqtt: {e}", f.name()))
        })?;
        f.mqtt = Some(std::sync::Arc::new(wire));
    }
    for (i, f) in scenario.fleets.iter_mut().enumerate() {
        let Some(spec) = &f.custom_spec else { continue };
        let env = |name: &str| std::env::var(name).ok();
        let cx = crate::wire::custom::Context {
            fleet: f.name(),
            profile: &f.content,
            identities: f.device_name.identities().map(|a| a.as_ref()),
            env: &env,
        };
        let wire = crate::wire::custom::CustomWire::compile(spec, &cx).map_err(|e| {
            let mut at = vec![Step::Key("fleets".into()), Step::Index(i), Step::Key("custom".into())];
            at.extend(e.place.split('.').map(|k| Step::Key(k.into())));
            ScenarioError::at_key(origin, text, format, &at, &format!("fleet {:?}: {e}", f.name()))
        })?;
        f.custom = Some(std::sync::Arc::new(wire));
    }
    if scenario.protocol() != crate::transport::Protocol::Mqtt
        && scenario.target.mqtt != crate::transport::mqtt::MqttSettings::default()
    {
        let at = [Step::Key("target".into()), Step::Key("mqtt".into())];
        let message = "[target.mqtt] is for MQTT fleets; this run's speak HTTP";
        return Err(ScenarioError::at_key(origin, text, format, &at, message));
    }
    for (i, f) in scenario.fleets.iter().enumerate() {
        let fleet = |rest: &[Step]| [&[Step::Key("fleets".into()), Step::Index(i)][..], rest].concat();
        if let Err(why) = check_protocol(f.profile, scenario.protocol()) {
            let builtin = if scenario.target.url == TargetUrl::Builtin {
                " (the built-in backend speaks its first fleet's protocol: a run's fleets share one)"
            } else {
                ""
            };
            let message = format!("fleet {:?}: {why}{builtin}", f.name());
            return Err(ScenarioError::at_key(origin, text, format, &fleet(&[Step::Key("profile".into())]), &message));
        }
        if f.profile == crate::wire::ProfileName::AwsIotShadow
            && let Err(why) = shadow_credential(&scenario.target)
        {
            let message = format!("fleet {:?}: {why}", f.name());
            return Err(ScenarioError::at_key(origin, text, format, &fleet(&[Step::Key("profile".into())]), &message));
        }
        if let Some(first) = scenario.fleets[..i].iter().position(|g| g.name() == f.name()) {
            return Err(ScenarioError::at_key(
                origin,
                text,
                format,
                &fleet(&[Step::Key("name".into())]),
                &format!(
                    "the fleet name {:?} is already used by fleets[{first}]; fleet names must be unique",
                    f.name()
                ),
            ));
        }
        if let Err(e) = crate::fleet::events::check(&f.events, scenario.duration) {
            return Err(ScenarioError::at_key(
                origin,
                text,
                format,
                &fleet(&[Step::Key("events".into()), Step::Index(e.event)]),
                &format!("fleet {:?}: {e}", f.name()),
            ));
        }
    }
    if scenario.target.mqtt.version == crate::transport::mqtt::MqttVersion::V311
        && let Some(i) = scenario.fleets.iter().position(|f| f.mqtt.as_ref().is_some_and(|m| m.asks_answers()))
    {
        let at =
            [Step::Key("fleets".into()), Step::Index(i), Step::Key("mqtt".into()), Step::Key("response_topic".into())];
        let message = format!(
            "fleet {:?}: response_topic is MQTT 5's (Response Topic and Correlation Data); MQTT 3.1.1 has no way \
             to ask for an answer: write [target.mqtt] version = \"5\", or drop response_topic",
            scenario.fleets[i].name()
        );
        return Err(ScenarioError::at_key(origin, text, format, &at, &message));
    }
    if let Some(i) = scenario.fleets.iter().position(|f| f.mqtt.as_ref().is_some_and(|m| m.observe)) {
        let why = if scenario.target.url == TargetUrl::Builtin {
            Some(
                "the built-in backend takes device messages and routes none to subscribers: observe a broker's (an \
                  mqtt:// or mqtts:// target)",
            )
        } else if scenario.target.mqtt.version == crate::transport::mqtt::MqttVersion::V311 {
            Some(
                "an observed message carries its intended time in an MQTT 5 user property, and 3.1.1 has none (the \
                  payload is the device's own): write [target.mqtt] version = \"5\", or drop observe",
            )
        } else {
            None
        };
        if let Some(why) = why {
            let at =
                [Step::Key("fleets".into()), Step::Index(i), Step::Key("mqtt".into()), Step::Key("observe".into())];
            let message = format!("fleet {:?}: {why}", scenario.fleets[i].name());
            return Err(ScenarioError::at_key(origin, text, format, &at, &message));
        }
    }
    if let Some((i, message)) = shared_client_id(&scenario.fleets) {
        let at = [Step::Key("fleets".into()), Step::Index(i), Step::Key("device_name".into())];
        return Err(ScenarioError::at_key(origin, text, format, &at, &message));
    }
    let slo = scenario.capacity.iter().flat_map(|c| &c.slo).filter_map(|t| t.metric.fleet.as_deref().map(|f| (f, t)));
    let named = scenario.thresholds.fleets_named().map(|n| ("thresholds", n)).chain(slo.map(|n| ("capacity", n)));
    for (section, (fleet, threshold)) in named {
        if !scenario.fleets.iter().any(|f| f.name() == fleet) {
            let names: Vec<&str> = scenario.fleets.iter().map(Fleet::name).collect();
            return Err(ScenarioError::at_text(
                origin,
                text,
                &threshold.metric.path,
                section,
                &format!(
                    "threshold {:?} names the fleet {fleet:?}, which the scenario does not have (its fleets: {})",
                    threshold.metric.path,
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(scenario)
}

/// A device name two fleets of sessions share, if any: the later fleet's
/// index and why it cannot be. A device's name is its MQTT client id, and
/// a broker keeps one session per client id (a second one ends the
/// first), so two devices of one name would take each other's sessions
/// all run long. Names are distinct within a fleet (checked as read);
/// across fleets each name is hashed (8 bytes a device) and only a hash
/// seen before is rendered again to compare.
fn shared_client_id(fleets: &[Fleet]) -> Option<(usize, String)> {
    use std::collections::HashMap;
    use std::hash::{BuildHasher, RandomState};
    let sessions: Vec<usize> = (0..fleets.len())
        .filter(|&i| fleets[i].profile.protocols().contains(&crate::transport::Protocol::Mqtt))
        .collect();
    if sessions.len() < 2 {
        return None;
    }
    let hasher = RandomState::new();
    let mut seen: HashMap<u64, (usize, u64)> = HashMap::new();
    let (mut name, mut other) = (String::new(), String::new());
    for &i in &sessions {
        let f = &fleets[i];
        for index in 0..f.devices {
            name.clear();
            f.device_name.render(index, &mut name);
            let hash = hasher.hash_one(&name);
            match seen.get(&hash) {
                Some(&(j, at)) if j != i => {
                    other.clear();
                    fleets[j].device_name.render(at, &mut other);
                    if other == name {
                        return Some((
                            i,
                            format!(
                                "fleet {:?}: its device {name:?} is also fleet {:?}'s: a device's name is its MQTT \
                                 client id, and a broker keeps one session per client id (the second ends the \
                                 first); give each fleet names of its own (e.g. device_name = \"{}-{{index}}\")",
                                f.name(),
                                fleets[j].name(),
                                f.name()
                            ),
                        ));
                    }
                }
                Some(_) => {}
                None => {
                    seen.insert(hash, (i, index));
                }
            }
        }
    }
    None
}

// ------------------------------------------------------------ file format

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    seed: Option<u64>,
    duration: Option<PositiveDuration>,
    target: Option<Target>,
    fleets: Option<Fleets>,
    thresholds: Option<Thresholds>,
    #[serde(default)]
    breakdown: Vec<Breakdown>,
    capacity: Option<CapacitySettings>,
}

/// A duration that must be above zero.
struct PositiveDuration(Duration);

impl<'de> Deserialize<'de> for PositiveDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let DurationValue(v) = DurationValue::deserialize(d)?;
        if v.is_zero() {
            return Err(serde::de::Error::custom("must be above 0, e.g. \"30s\""));
        }
        Ok(PositiveDuration(v))
    }
}

/// The fleets: at least one. (Their names are checked to be unique once
/// parsed, so that a duplicate is placed at its own fleet.)
#[derive(Deserialize)]
#[serde(try_from = "Vec<Fleet>")]
struct Fleets(Vec<Fleet>);

impl TryFrom<Vec<Fleet>> for Fleets {
    type Error = String;

    fn try_from(fleets: Vec<Fleet>) -> Result<Self, String> {
        if fleets.is_empty() {
            return Err("no fleets: add at least one [[fleets]] table".into());
        }
        Ok(Fleets(fleets))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    #[serde(deserialize_with = "profile::entity_name")]
    name: String,
    devices: Option<DeviceCount>,
    device_name: Option<NameTemplate>,
    /// A CSV or JSON Lines file of the fleet's devices (read once the
    /// scenario is parsed, relative to the scenario's directory).
    identities: Option<std::path::PathBuf>,
    #[serde(default = "default_agent_versions")]
    agent_versions: Weighted,
    agent_metrics: Option<Vec<MetricSpec>>,
    #[serde(default)]
    models: Vec<ModelSpec>,
    interval: Option<PositiveDuration>,
    rate: Option<Rate>,
    jitter: Option<Share>,
    start: Option<StartMode>,
    ramp_up: Option<DurationValue>,
    arrival: Option<Arrival>,
    stale_after: Option<PositiveDuration>,
    #[serde(default)]
    events: Vec<Event>,
    retry: Option<RetryPolicy>,
    /// The device profile (`docs/design/device-profiles.md`).
    #[serde(default)]
    profile: crate::wire::ProfileName,
    /// A custom profile's templates.
    custom: Option<crate::wire::custom::CustomSpec>,
    /// An MQTT profile's topic, QoS and retain.
    mqtt: Option<crate::wire::mqtt::MqttSpec>,
}

fn default_agent_versions() -> Weighted {
    Weighted::single("1.0.0")
}

impl<'de> Deserialize<'de> for Fleet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawFleet::deserialize(d)?;
        Fleet::try_from(raw).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RawFleet> for Fleet {
    type Error = String;

    fn try_from(raw: RawFleet) -> Result<Self, String> {
        let name = raw.name;
        // With identities, the file sets the count (read after parsing;
        // 0 until then).
        let devices = match (raw.devices, &raw.identities) {
            (Some(DeviceCount(n)), _) => n,
            (None, Some(_)) => 0,
            (None, None) => {
                return Err(
                    "missing field `devices` (or give identities = \"FILE\", a file of the fleet's devices)".into()
                );
            }
        };
        match (raw.profile, &raw.custom) {
            (crate::wire::ProfileName::Custom, None) => {
                return Err(format!(
                    "fleet {name:?}: profile = \"custom\" needs a [fleets.custom] table (method, path, headers, body, \
                     success)"
                ));
            }
            (p, Some(_)) if p != crate::wire::ProfileName::Custom => {
                return Err(format!("fleet {name:?}: a [fleets.custom] table is for profile = \"custom\", not {p:?}"));
            }
            _ => {}
        }
        let mqtt_spec = match (raw.profile, &raw.mqtt) {
            // Checked once the file is read, for the error's place.
            (crate::wire::ProfileName::Mqtt, spec) => Some(spec.clone().unwrap_or_default()),
            (p, Some(_)) => {
                return Err(format!("fleet {name:?}: a [fleets.mqtt] table is for profile = \"mqtt\", not \"{p}\""));
            }
            (_, None) => None,
        };
        if raw.identities.is_some() && raw.device_name.is_some() {
            return Err(format!(
                "fleet {name:?}: give device_name or identities, not both (the file names the devices)"
            ));
        }
        let interval = match (raw.interval, raw.rate) {
            (Some(_), Some(_)) => {
                return Err(format!("fleet {name:?}: give interval or rate, not both (rate = devices / interval)"));
            }
            (Some(PositiveDuration(i)), None) => i,
            (None, Some(Rate(r))) => Duration::from_secs_f64(devices as f64 / r),
            (None, None) => DEFAULT_INTERVAL,
        };
        if interval < Duration::from_millis(1) {
            return Err(format!("fleet {name:?}: the interval is {interval:?}; the smallest is 1ms"));
        }
        let jitter = raw.jitter.map_or(0.0, |Share(j)| j);
        if jitter >= 1.0 {
            return Err(format!("fleet {name:?}: jitter must be below 100% (a gap could be 0)"));
        }
        let ramp_up = raw.ramp_up.map_or(Duration::ZERO, |r| r.0);
        if raw.start == Some(StartMode::Synchronized) && !ramp_up.is_zero() {
            return Err(format!(
                "fleet {name:?}: start = \"synchronized\" puts every device at t = 0, which ramp_up contradicts; \
                 drop one of them"
            ));
        }
        let schedule = Schedule {
            interval,
            jitter,
            start: raw.start.unwrap_or(StartMode::Staggered),
            ramp_up,
            arrival: raw.arrival.unwrap_or(Arrival::Periodic),
        };
        let device_name = match raw.device_name {
            Some(t) => t,
            None => NameTemplate::parse(&format!("{name}-{{index}}")).map_err(|e| e.to_string())?,
        };
        device_name
            .check_for(devices)
            .map_err(|e| format!("fleet {name:?}: device_name {:?}: {e}", device_name.as_str()))?;
        let device_name = DeviceNames::Template(device_name);
        let mut profile = Profile {
            fleet_name: name,
            agent_versions: raw.agent_versions,
            agent_metrics: raw.agent_metrics.unwrap_or_else(Profile::default_agent_metrics),
            models: raw.models,
        };
        // Versions that only a rollout brings join the mixes with weight 0.
        for (i, e) in raw.events.iter().enumerate() {
            match &e.kind {
                EventKind::Rollout { target: RolloutTarget::AgentVersion(v), .. } => {
                    profile.agent_versions.ensure(v);
                }
                EventKind::Rollout { target: RolloutTarget::ModelVersion { model, version }, .. } => {
                    let Some(m) = profile.models.iter_mut().find(|m| &m.name == model) else {
                        let names: Vec<&str> = profile.models.iter().map(|m| m.name.as_str()).collect();
                        return Err(format!(
                            "fleet {:?}: events[{i}] rolls out model {model:?}, which the fleet does not run (its models: {})",
                            profile.fleet_name,
                            if names.is_empty() { "none".to_string() } else { names.join(", ") }
                        ));
                    };
                    m.versions.ensure(version);
                }
                _ => {}
            }
        }
        profile.check().map_err(|e| format!("fleet {:?}: {e}", profile.fleet_name))?;
        Ok(Fleet {
            devices,
            schedule,
            device_name,
            content: profile,
            stale_after: raw.stale_after.map(|d| d.0),
            events: raw.events,
            retry: raw.retry,
            profile: raw.profile,
            identities: raw.identities,
            custom: None,
            custom_spec: raw.custom,
            mqtt: None,
            mqtt_spec,
        })
    }
}

/// Whether the target gives shadow requests a credential: SigV4 with the
/// `iotdata` signing name, or a client certificate.
fn shadow_credential(target: &Target) -> Result<(), String> {
    let service = crate::wire::aws_shadow::SIGNING_NAME;
    match (&target.sigv4, &target.tls.cert) {
        (Some(v), _) if v.service != service => Err(format!(
            "aws-iot-shadow requests are signed with the signing name \"{service}\", not {:?}: set \
             target.sigv4.service = \"{service}\"",
            v.service
        )),
        (Some(_), _) | (None, Some(_)) => Ok(()),
        (None, None) => Err(format!(
            "aws-iot-shadow requests need a credential: target.sigv4 = {{ region = \"...\", service = \"{service}\" }} \
             (AWS credentials from the environment), or a client certificate (target.tls.cert and key, mutual TLS)"
        )),
    }
}

/// Refuses a fleet whose profile has no route in the protocol its target
/// speaks (every profile has HTTP's today: the check is the seam a second
/// protocol's targets and profiles meet at).
fn check_protocol(profile: crate::wire::ProfileName, target: crate::transport::Protocol) -> Result<(), String> {
    if profile.protocols().contains(&target) {
        return Ok(());
    }
    let has: Vec<String> = profile.protocols().iter().map(ToString::to_string).collect();
    let hint = match has.first().map(String::as_str) {
        Some("MQTT") => ": give it a broker (target.url = \"mqtt://HOST:PORT\") or the built-in backend (\"builtin\")",
        _ => "",
    };
    Err(format!("the {profile} profile sends over {}, and the target speaks {target}{hint}", has.join(" or ")))
}

/// Reads a fleet's identities file for `profile`: its names by the
/// profile's rule, the profile's credential columns there, and each
/// credential one the profile can send.
fn read_identities(
    path: &Path,
    profile: crate::wire::ProfileName,
) -> Result<crate::identities::Identities, crate::identities::IdentitiesError> {
    let ids = crate::identities::Identities::load(path, |name| profile.check_device_name(name))?;
    ids.require(profile.columns(), &format!("the {profile} profile"))?;
    profile.check_credentials(&ids)?;
    Ok(ids)
}

/// Checks a fleet's device count: the rule for a count in the file and
/// for one a scale gives.
pub fn check_devices(n: u64) -> Result<(), String> {
    if (1..=MAX_DEVICES_PER_FLEET).contains(&n) {
        Ok(())
    } else {
        Err(format!("devices is {n}; it must be from 1 to {MAX_DEVICES_PER_FLEET}"))
    }
}

/// A fleet's device count, checked where it is written.
struct DeviceCount(u64);

impl<'de> Deserialize<'de> for DeviceCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl serde::de::Visitor<'_> for CountVisitor {
            type Value = DeviceCount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a whole number of devices from 1 to {MAX_DEVICES_PER_FLEET}")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<DeviceCount, E> {
                check_devices(n).map(|()| DeviceCount(n)).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<DeviceCount, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("devices is {n}; it must be from 1 to {MAX_DEVICES_PER_FLEET}"))),
                }
            }
        }
        d.deserialize_u64(CountVisitor)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hash_follows_the_scenario_and_the_seed() {
        let parse = |t: &str| crate::scenario::parse(t, crate::scenario::Format::Toml, "s.toml", "s").unwrap();
        let a = parse("[[fleets]]\nname = \"f\"\ndevices = 10\n");
        let b = parse("[[fleets]]\nname = \"f\"\ndevices = 11\n");
        assert_eq!(a.hash(1), a.clone().hash(1));
        assert_ne!(a.hash(1), b.hash(1));
        assert_ne!(a.hash(1), a.hash(2));
        assert_eq!(a.hash(1).len(), 64);
        let mut longer = a.clone();
        longer.duration *= 2;
        assert_ne!(a.hash(1), longer.hash(1), "an override counts");
    }

    #[test]
    fn a_fleet_scales_by_the_rules_a_file_is_read_by() {
        let parse = |t: &str| crate::scenario::parse(t, crate::scenario::Format::Toml, "s.toml", "s").unwrap();
        let s = parse("[[fleets]]\nname = \"f\"\ndevices = 10\ninterval = \"1s\"\n");
        let mut f = s.fleets[0].clone();
        assert_eq!(f.scaled_devices(0.25), 3);
        assert_eq!(f.scaled_devices(1e300), u64::MAX, "saturates");
        f.set_devices(25).unwrap();
        assert_eq!(f.devices, 25);
        let too_many = f.set_devices(u64::MAX).unwrap_err();
        assert!(matches!(too_many, super::ScaleError::Devices(_)), "{too_many}");
        assert!(f.set_devices(0).is_err());
        assert_eq!(f.devices, 25, "a refused count leaves the fleet as it was");

        f.scale_rate(4.0).unwrap();
        assert_eq!(f.schedule.interval, std::time::Duration::from_millis(250));
        let short = f.scale_rate(1000.0).unwrap_err();
        assert_eq!(short.to_string(), "the interval would be 0.250 ms, below 1 ms");
        let long = f.scale_rate(1e-300).unwrap_err();
        assert!(matches!(long, super::ScaleError::IntervalTooLong { .. }), "{long}");
        assert_eq!(f.schedule.interval, std::time::Duration::from_millis(250));

        let mut one = parse("[[fleets]]\nname = \"f\"\ndevices = 1\ndevice_name = \"solo\"\n").fleets[0].clone();
        let unnamed = one.set_devices(2).unwrap_err();
        assert!(matches!(unnamed, super::ScaleError::Names(_)), "{unnamed}");
    }

    #[test]
    fn every_profile_s_fleet_is_checked_against_its_target_s_protocol_and_each_has_http_s() {
        use crate::wire::ProfileName;
        for url in ["http://127.0.0.1:9", "https://127.0.0.1:9"] {
            let protocol = super::TargetUrl::parse(url).unwrap().protocol();
            assert_eq!(protocol, crate::transport::Protocol::Http, "{url}");
            for p in ProfileName::ALL.into_iter().filter(|p| *p != ProfileName::Mqtt) {
                assert_eq!(super::check_protocol(p, protocol), Ok(()), "{p} against {url}");
            }
            let e = super::check_protocol(ProfileName::Mqtt, protocol).unwrap_err();
            assert!(e.contains("sends over MQTT") && e.contains("mqtt://HOST:PORT"), "{e}");
        }
        let mqtt = super::TargetUrl::parse("mqtt://127.0.0.1:9").unwrap().protocol();
        assert_eq!(super::check_protocol(ProfileName::Mqtt, mqtt), Ok(()));
        let e = super::check_protocol(ProfileName::Hono, mqtt).unwrap_err();
        assert!(e.contains("the hono profile sends over HTTP, and the target speaks MQTT"), "{e}");
        // A scenario runs its fleets' check as it is read.
        let text =
            "[target]\nurl = \"http://127.0.0.1:9\"\n[[fleets]]\nname = \"f\"\ndevices = 1\nprofile = \"hono\"\n";
        let read = crate::scenario::parse(text, crate::scenario::Format::Toml, "s.toml", "s").unwrap();
        assert_eq!(read.fleets[0].profile.protocols(), [read.target.url.protocol()]);
        // The built-in backend speaks its first fleet's protocol, and the others must share it.
        let mqtt_fleet = "[[fleets]]\nname = \"m\"\ndevices = 1\nprofile = \"mqtt\"\n";
        let read = crate::scenario::parse(mqtt_fleet, crate::scenario::Format::Toml, "s.toml", "s").unwrap();
        assert_eq!(read.protocol(), crate::transport::Protocol::Mqtt);
        let mixed = format!("{mqtt_fleet}[[fleets]]\nname = \"h\"\ndevices = 1\n");
        let e = crate::scenario::parse(&mixed, crate::scenario::Format::Toml, "s.toml", "s").unwrap_err().to_string();
        assert!(e.contains("target speaks MQTT") && e.contains("its first fleet's protocol"), "{e}");
        // Two fleets of sessions may not share a device name (a client id).
        let twice = format!(
            "{mqtt_fleet}device_name = \"d-{{index}}\"\n[[fleets]]\nname = \"n\"\ndevices = 3\nprofile = \"mqtt\"\ndevice_name = \"d-{{index}}\"\n"
        );
        let e = crate::scenario::parse(&twice, crate::scenario::Format::Toml, "s.toml", "s").unwrap_err().to_string();
        assert!(
            e.contains("s.toml:10:15") && e.contains("fleet \"n\": its device \"d-0\" is also fleet \"m\"'s"),
            "{e}"
        );
        let apart =
            twice.replacen("device_name = \"d-{index}\"\n[[fleets]]", "device_name = \"m-{index}\"\n[[fleets]]", 1);
        assert!(crate::scenario::parse(&apart, crate::scenario::Format::Toml, "s.toml", "s").is_ok());
        // Builtin's MQTT fleets take [target.mqtt]; its HTTP fleets are told it is not theirs.
        let settings = "[target.mqtt]\nkeep_alive = \"30s\"\nconnect_rate = \"50/s\"\n";
        let read =
            crate::scenario::parse(&format!("{settings}{mqtt_fleet}"), crate::scenario::Format::Toml, "s.toml", "s")
                .unwrap();
        assert_eq!(read.target.mqtt.keep_alive, std::time::Duration::from_secs(30));
        let http_fleet = "[[fleets]]\nname = \"h\"\ndevices = 1\n";
        let e =
            crate::scenario::parse(&format!("{settings}{http_fleet}"), crate::scenario::Format::Toml, "s.toml", "s")
                .unwrap_err()
                .to_string();
        assert!(e.contains("s.toml:1:") && e.contains("[target.mqtt] is for MQTT fleets"), "{e}");
    }

    #[test]
    fn a_fleet_speaks_sagemaker_edge_unless_it_names_another_profile() {
        let parse = |t: &str| crate::scenario::parse(t, crate::scenario::Format::Toml, "s.toml", "s");
        let plain = parse("[[fleets]]\nname = \"f\"\ndevices = 1\n").unwrap();
        let named = parse("[[fleets]]\nname = \"f\"\ndevices = 1\nprofile = \"sagemaker-edge\"\n").unwrap();
        assert_eq!(plain.fleets[0].profile, crate::wire::ProfileName::SagemakerEdge);
        assert_eq!(named.fleets[0].profile, crate::wire::ProfileName::SagemakerEdge);
    }

    #[test]
    fn a_scenario_on_standard_input_is_toml_or_json_by_its_first_character() {
        let toml = super::load_stdin("# made by a script\n[[fleets]]\nname = \"f\"\ndevices = 7\n".as_bytes()).unwrap();
        assert_eq!((toml.name.as_str(), toml.fleets[0].devices), ("stdin", 7));
        let json =
            super::load_stdin(" \n{\"name\": \"piped\", \"fleets\": [{\"name\": \"f\", \"devices\": 3}]}".as_bytes())
                .unwrap();
        assert_eq!((json.name.as_str(), json.fleets[0].devices), ("piped", 3));
        let empty = super::load_stdin(" \n".as_bytes()).unwrap_err().to_string();
        assert!(empty.contains("<stdin>") && empty.contains("empty"), "{empty}");
        let bad =
            super::load_stdin("[[fleets]]\nname = \"f\"\ndevices = \"many\"\n".as_bytes()).unwrap_err().to_string();
        assert!(bad.contains("<stdin>") && bad.contains("devices"), "names the input and the field: {bad}");
    }
}
