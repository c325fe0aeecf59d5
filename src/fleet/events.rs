//! Fleet events: what fleets do together on a backend's worst days,
//! acted out deterministically from the seed.
//!
//! - **outage**: a share of the fleet goes silent at `at` for `duration`
//!   (no heartbeats, connections lost), then comes back: `synchronized`
//!   (every device at the same instant), `staggered` (uniformly at random
//!   over `recover_over`, one interval by default) or `ramp` (linearly over
//!   `recover_over`).
//! - **restart**: a share of the devices reboot, spread linearly over
//!   `over` from `at`: each is silent for `downtime`, then sends a first
//!   heartbeat at once (on a new connection) and keeps a new phase.
//! - **rollout**: a share of the devices switch agent version (or one
//!   model's version), spread linearly over `over` from `at`.
//! - **surge**: a share of the devices heartbeat every `interval` instead
//!   of their own, from `at` (phases spread over one new interval) for
//!   `duration`.
//!
//! Which devices an event touches is exact and reproducible: `k =
//! round(share · devices)` devices, chosen by a permutation of the device
//! indices drawn from the seed (`rank = (a · index + b) mod devices`,
//! `a` coprime with the count); the devices of rank below `k` are
//! affected, and their rank also orders them in spreads and ramps.
//!
//! A device's schedule with events is still pure arithmetic on its own
//! random stream: [`FleetEvents::first`] and [`FleetEvents::advance`] give
//! the times, and every window is known in advance, so a worker never has
//! to revisit a timer it has set.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::clock::DeviceClock;
use super::schedule::Schedule;
use crate::device::generate::mix;
use crate::device::{Device, Profile};
use crate::units::{DurationValue, Share};

/// How silenced devices come back after an outage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Recovery {
    /// All at the same instant.
    Synchronized,
    /// Uniformly at random over this long.
    Staggered(Duration),
    /// Linearly, in rank order, over this long.
    Ramp(Duration),
}

/// What a rollout changes.
#[derive(Debug, Clone, PartialEq)]
pub enum RolloutTarget {
    AgentVersion(String),
    ModelVersion { model: String, version: String },
}

/// What an event does.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Outage { duration: Duration, recover: Recovery },
    Restart { over: Duration, downtime: Duration },
    Rollout { over: Duration, target: RolloutTarget },
    Surge { duration: Duration, interval: Duration },
}

/// One event of a fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: Duration,
    /// The share of the fleet it touches.
    pub share: f64,
    pub kind: EventKind,
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Outage { .. } => "outage",
            EventKind::Restart { .. } => "restart",
            EventKind::Rollout { .. } => "rollout",
            EventKind::Surge { .. } => "surge",
        }
    }
}

impl Event {
    /// When the event's effects end (recoveries included).
    pub fn end(&self) -> Duration {
        match &self.kind {
            EventKind::Outage { duration, recover } => {
                self.at
                    + *duration
                    + match recover {
                        Recovery::Synchronized => Duration::ZERO,
                        Recovery::Staggered(d) | Recovery::Ramp(d) => *d,
                    }
            }
            EventKind::Restart { over, downtime } => self.at + *over + *downtime,
            EventKind::Rollout { over, .. } => self.at + *over,
            EventKind::Surge { duration, .. } => self.at + *duration,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = crate::units::format_duration(self.at);
        let share = self.share * 100.0;
        let d = crate::units::format_duration;
        match &self.kind {
            EventKind::Outage { duration, recover } => {
                let recover = match recover {
                    Recovery::Synchronized => "all at once".to_string(),
                    // Zero stands for the fleet's interval (see `FleetEvents::new`).
                    Recovery::Staggered(o) if o.is_zero() => "staggered over one interval".to_string(),
                    Recovery::Staggered(o) => format!("staggered over {}", d(*o)),
                    Recovery::Ramp(o) => format!("ramping over {}", d(*o)),
                };
                write!(f, "at {at}: outage of {share}% for {}, back {recover}", d(*duration))
            }
            EventKind::Restart { over, downtime } => {
                write!(f, "at {at}: {share}% restart over {}, each down {}", d(*over), d(*downtime))
            }
            EventKind::Rollout { over, target } => {
                let to = match target {
                    RolloutTarget::AgentVersion(v) => format!("agent {v}"),
                    RolloutTarget::ModelVersion { model, version } => format!("{model} {version}"),
                };
                write!(f, "at {at}: rollout of {to} to {share}% over {}", d(*over))
            }
            EventKind::Surge { duration, interval } => {
                write!(f, "at {at}: {share}% surge to one heartbeat every {} for {}", d(*interval), d(*duration))
            }
        }
    }
}

// ------------------------------------------------------------ file format

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: DurationValue,
    kind: String,
    share: Option<Share>,
    duration: Option<DurationValue>,
    recover: Option<String>,
    recover_over: Option<DurationValue>,
    over: Option<DurationValue>,
    downtime: Option<DurationValue>,
    agent_version: Option<String>,
    model: Option<String>,
    version: Option<String>,
    interval: Option<DurationValue>,
}

/// The default time a restarting device is down.
pub const DEFAULT_DOWNTIME: Duration = Duration::from_secs(10);

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Event::try_from(RawEvent::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RawEvent> for Event {
    type Error = String;

    fn try_from(raw: RawEvent) -> Result<Event, String> {
        let kind_name = raw.kind.as_str();
        if raw.version.is_some() && kind_name != "rollout" {
            return Err(format!("{kind_name}: version does not apply to a {kind_name} event"));
        }
        let positive = |name: &str, v: Option<DurationValue>| -> Result<Duration, String> {
            match v {
                Some(DurationValue(d)) if !d.is_zero() => Ok(d),
                Some(_) => Err(format!("{kind_name}: {name} must be above 0")),
                None => Err(format!("{kind_name}: give its {name}, e.g. {name} = \"30s\"")),
            }
        };
        let unused = |names: &[(&str, bool)]| -> Result<(), String> {
            match names.iter().find(|(_, given)| *given) {
                Some((name, _)) => Err(format!("{kind_name}: {name} does not apply to a {kind_name} event")),
                None => Ok(()),
            }
        };
        let kind = match kind_name {
            "outage" => {
                unused(&[
                    ("over", raw.over.is_some()),
                    ("downtime", raw.downtime.is_some()),
                    ("interval", raw.interval.is_some()),
                    ("agent_version", raw.agent_version.is_some()),
                    ("model", raw.model.is_some()),
                ])?;
                let duration = positive("duration", raw.duration)?;
                let over = raw.recover_over.map(|d| d.0);
                let recover = match (raw.recover.as_deref().unwrap_or("synchronized"), over) {
                    ("synchronized", None) => Recovery::Synchronized,
                    ("synchronized", Some(_)) => {
                        return Err("outage: recover_over does not apply to a synchronized recovery".into());
                    }
                    // Zero means one interval of the fleet, filled in by the fleet.
                    ("staggered", over) => Recovery::Staggered(over.unwrap_or(Duration::ZERO)),
                    ("ramp", Some(o)) if !o.is_zero() => Recovery::Ramp(o),
                    ("ramp", _) => return Err("outage: a ramp recovery needs recover_over, e.g. \"30s\"".into()),
                    (other, _) => {
                        return Err(format!(
                            "outage: recover is {other:?}; write \"synchronized\", \"staggered\" or \"ramp\""
                        ));
                    }
                };
                EventKind::Outage { duration, recover }
            }
            "restart" => {
                unused(&[
                    ("duration", raw.duration.is_some()),
                    ("recover", raw.recover.is_some()),
                    ("recover_over", raw.recover_over.is_some()),
                    ("interval", raw.interval.is_some()),
                    ("agent_version", raw.agent_version.is_some()),
                    ("model", raw.model.is_some()),
                ])?;
                let downtime = match raw.downtime {
                    None => DEFAULT_DOWNTIME,
                    Some(d) => d.0,
                };
                EventKind::Restart { over: raw.over.map_or(Duration::ZERO, |d| d.0), downtime }
            }
            "rollout" => {
                unused(&[
                    ("duration", raw.duration.is_some()),
                    ("recover", raw.recover.is_some()),
                    ("recover_over", raw.recover_over.is_some()),
                    ("downtime", raw.downtime.is_some()),
                    ("interval", raw.interval.is_some()),
                ])?;
                let check = |v: &str| {
                    crate::sagemaker_edge::rules::VERSION
                        .check(v)
                        .map_err(|f| format!("rollout: {v:?} is not a valid version: {f}"))
                };
                let target = match (raw.agent_version, raw.model, raw.version) {
                    (Some(v), None, None) => {
                        check(&v)?;
                        RolloutTarget::AgentVersion(v)
                    }
                    (None, Some(model), Some(version)) => {
                        check(&version)?;
                        RolloutTarget::ModelVersion { model, version }
                    }
                    (None, Some(_), None) => {
                        return Err("rollout: give the model's new version, e.g. version = \"3.2\"".into());
                    }
                    (None, None, _) => {
                        return Err("rollout: give agent_version = \"…\", or model = \"…\" and version = \"…\"".into());
                    }
                    _ => return Err("rollout: give agent_version, or model and version, not both".into()),
                };
                EventKind::Rollout { over: raw.over.map_or(Duration::ZERO, |d| d.0), target }
            }
            "surge" => {
                unused(&[
                    ("over", raw.over.is_some()),
                    ("recover", raw.recover.is_some()),
                    ("recover_over", raw.recover_over.is_some()),
                    ("downtime", raw.downtime.is_some()),
                    ("agent_version", raw.agent_version.is_some()),
                    ("model", raw.model.is_some()),
                ])?;
                let duration = positive("duration", raw.duration)?;
                let interval = positive("interval", raw.interval)?;
                if interval < Duration::from_millis(1) {
                    return Err("surge: the interval must be at least 1ms".into());
                }
                EventKind::Surge { duration, interval }
            }
            other => {
                return Err(format!("kind is {other:?}; write \"outage\", \"restart\", \"rollout\" or \"surge\""));
            }
        };
        let share = match raw.share {
            Some(Share(s)) if s > 0.0 => s,
            Some(_) => return Err(format!("{kind_name}: a share of 0% touches no device")),
            None => 1.0,
        };
        Ok(Event { at: raw.at.0, share, kind })
    }
}

/// An event of a fleet that cannot be run: which (its index in the file)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub event: usize,
    pub message: String,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Checks a fleet's events against each other and the run: events of the
/// same kind must not overlap (a device cannot be silenced, or surged, or
/// rolled out twice at once) and every event must start within the run.
pub fn check(events: &[Event], run: Duration) -> Result<(), EventError> {
    let error = |event: usize, message: String| Err(EventError { event, message });
    for (i, e) in events.iter().enumerate() {
        if e.at >= run {
            return error(
                i,
                format!(
                    "events[{i}] ({}) starts at {}, but the run lasts {}",
                    e.kind.name(),
                    crate::units::format_duration(e.at),
                    crate::units::format_duration(run)
                ),
            );
        }
        let silences = |k: &EventKind| matches!(k, EventKind::Outage { .. } | EventKind::Restart { .. });
        let rollout_target = |k: &EventKind| match k {
            EventKind::Rollout { target: RolloutTarget::AgentVersion(_), .. } => Some(String::new()),
            EventKind::Rollout { target: RolloutTarget::ModelVersion { model, .. }, .. } => Some(model.clone()),
            _ => None,
        };
        for (j, f) in events[..i].iter().enumerate() {
            let same = (silences(&e.kind) && silences(&f.kind))
                || (matches!(e.kind, EventKind::Surge { .. }) && matches!(f.kind, EventKind::Surge { .. }))
                || (rollout_target(&e.kind).is_some() && rollout_target(&e.kind) == rollout_target(&f.kind));
            // Windows [at, end] that touch count as overlapping: a device
            // recovering at the instant the next event begins is ambiguous.
            if same && e.at <= f.end() && f.at <= e.end() {
                return error(
                    i,
                    format!(
                        "events[{i}] ({e}) overlaps events[{j}] ({f}); events of one kind must not overlap \
                     (move one to start after {})",
                        crate::units::format_duration(f.end())
                    ),
                );
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------ schedules

/// The devices an event touches: those whose rank in a seeded permutation
/// is below `k`.
#[derive(Debug, Clone)]
struct Selection {
    devices: u64,
    k: u64,
    a: u64,
    b: u64,
}

impl Selection {
    fn new(devices: u64, share: f64, key: u64) -> Selection {
        let n = devices.max(1);
        let k = ((share * n as f64).round() as u64).min(n);
        let mut a = (mix(key) % n).max(1);
        while gcd(a, n) != 1 {
            a = a % n + 1;
        }
        Selection { devices: n, k, a, b: mix(key ^ 0x5eed) % n }
    }

    /// The device's rank, if it is among the affected.
    fn rank(&self, index: u64) -> Option<u64> {
        let r = ((u128::from(self.a) * u128::from(index) + u128::from(self.b)) % u128::from(self.devices)) as u64;
        (r < self.k).then_some(r)
    }

    /// The affected devices, in rank order: (rank, index), the permutation
    /// inverted (`index = (rank - b) · a⁻¹ mod devices`).
    fn affected(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let n = i128::from(self.devices);
        // a is coprime with n: its inverse modulo n, by Euclid.
        let (mut r0, mut r1, mut s0, mut s1) = (n, i128::from(self.a), 0i128, 1i128);
        while r1 != 0 {
            let q = r0 / r1;
            (r0, r1) = (r1, r0 - q * r1);
            (s0, s1) = (s1, s0 - q * s1);
        }
        let inverse = s0.rem_euclid(n);
        (0..self.k).map(move |rank| {
            (rank, ((i128::from(rank) - i128::from(self.b)).rem_euclid(n) * inverse).rem_euclid(n) as u64)
        })
    }

    /// `span` spread linearly over the affected devices in rank order.
    fn spread(&self, rank: u64, span: Duration) -> u64 {
        ((span.as_nanos() * u128::from(rank)) / u128::from(self.k.max(1))) as u64
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A fleet's events, ready for its devices' schedules.
#[derive(Debug, Clone, Default)]
pub struct FleetEvents {
    events: Vec<(Event, Selection)>,
    key: u64,
}

/// A device's next heartbeat: when, and whether it comes back from silence
/// (so it starts on a new connection), and then when that silence began
/// (the device went offline: its session, if it has one, ends then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub at_ns: u64,
    pub resumed: bool,
    pub silent_from: Option<u64>,
}

/// A silence window of one device: silent from `start`, back at `resume`.
pub(super) struct Silence {
    pub(super) start: u64,
    pub(super) resume: u64,
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

impl FleetEvents {
    /// `events` for a fleet of `devices`, with `interval` standing in for
    /// a staggered recovery's default span; `key` comes from the seed.
    pub fn new(events: &[Event], devices: u64, interval: Duration, key: u64) -> FleetEvents {
        let mut events: Vec<(Event, Selection)> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut e = e.clone();
                if let EventKind::Outage { recover: Recovery::Staggered(over), .. } = &mut e.kind
                    && over.is_zero()
                {
                    *over = interval;
                }
                let selection = Selection::new(devices, e.share, mix(key ^ (i as u64 + 1).wrapping_mul(0xa076_1d64)));
                (e, selection)
            })
            .collect();
        // In time order, so a device meets its silences in turn.
        events.sort_by_key(|(e, _)| e.at);
        FleetEvents { events, key }
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Every silence window of every device an outage or restart touches,
    /// with the device's index (a device's windows never overlap: events
    /// that silence must not, see [`check`]).
    pub(super) fn all_silences(&self) -> impl Iterator<Item = (u64, Silence)> + '_ {
        self.events.iter().flat_map(move |(e, sel)| {
            sel.affected().filter_map(move |(rank, index)| self.silence(e, sel, rank, index).map(|s| (index, s)))
        })
    }

    /// Device `index`'s silence windows, from each outage or restart that
    /// touches it.
    fn silences(&self, index: u64) -> impl Iterator<Item = Silence> + '_ {
        self.events.iter().filter_map(move |(e, sel)| self.silence(e, sel, sel.rank(index)?, index))
    }

    /// The silence event `e` puts device `index` (of rank `rank` in `sel`)
    /// through, if it silences.
    fn silence(&self, e: &Event, sel: &Selection, rank: u64, index: u64) -> Option<Silence> {
        let at = ns(e.at);
        match &e.kind {
            EventKind::Outage { duration, recover } => {
                let end = at + ns(*duration);
                let resume = end
                    + match recover {
                        Recovery::Synchronized => 0,
                        Recovery::Ramp(over) => sel.spread(rank, *over),
                        Recovery::Staggered(over) => {
                            let u = (mix(self.key ^ index ^ at) >> 11) as f64 / (1u64 << 53) as f64;
                            (ns(*over) as f64 * u) as u64
                        }
                    };
                Some(Silence { start: at, resume })
            }
            EventKind::Restart { over, downtime } => {
                let start = at + sel.spread(rank, *over);
                Some(Silence { start, resume: start + ns(*downtime) })
            }
            _ => None,
        }
    }

    /// Device `index`'s surge: (first surged heartbeat, end, interval).
    fn surge(&self, index: u64) -> Option<(u64, u64, Duration)> {
        self.events.iter().find_map(|(e, sel)| match &e.kind {
            EventKind::Surge { duration, interval } => {
                let rank = sel.rank(index)?;
                Some((ns(e.at) + sel.spread(rank, *interval), ns(e.at + *duration), *interval))
            }
            _ => None,
        })
    }

    /// Applies silences to a heartbeat planned at `planned` after one at
    /// `prev` (or none): a silence that begins in (prev, planned] moves it
    /// to the silence's end.
    fn silenced(&self, index: u64, prev: Option<u64>, planned: u64) -> Step {
        let mut step = Step { at_ns: planned, resumed: false, silent_from: None };
        for s in self.silences(index) {
            let began = prev.is_none_or(|p| s.start > p) && s.start <= step.at_ns;
            let inside = s.start <= step.at_ns && step.at_ns < s.resume;
            if began || inside {
                let from = prev.map_or(s.start, |p| s.start.max(p));
                step = Step { at_ns: s.resume, resumed: true, silent_from: step.silent_from.or(Some(from)) };
            }
        }
        step
    }

    /// Device `index`'s first heartbeat.
    pub fn first(&self, clock: &mut DeviceClock, s: &Schedule, devices: u64, index: u64) -> Step {
        let planned = clock.first_ns(s, devices, index);
        if self.is_empty() {
            return Step { at_ns: planned, resumed: false, silent_from: None };
        }
        let planned = match self.surge(index) {
            // Online from the start (no ramp-up), a device whose first
            // heartbeat falls in its surge joins the surge at its slot; one
            // still to come online during a ramp-up surges from then on.
            Some((first, end, _)) if s.ramp_up.is_zero() && first < planned && planned < end => first,
            _ => planned,
        };
        self.silenced(index, None, planned)
    }

    /// Device `index`'s next heartbeat after one intended at `prev`.
    pub fn advance(&self, clock: &mut DeviceClock, s: &Schedule, index: u64, prev: u64) -> Step {
        if self.is_empty() {
            return Step { at_ns: prev + clock.gap_ns(s), resumed: false, silent_from: None };
        }
        let surge = self.surge(index);
        let planned = match surge {
            // Surging: the surge's interval.
            Some((first, end, interval)) if first <= prev && prev < end => {
                prev + clock.gap_ns(&Schedule { interval, ..*s })
            }
            _ => {
                let next = prev + clock.gap_ns(s);
                match surge {
                    // The surge begins before the next heartbeat: join it.
                    Some((first, _, _)) if prev < first && first < next => first,
                    _ => next,
                }
            }
        };
        self.silenced(index, Some(prev), planned)
    }

    /// How many heartbeats device `index` is scheduled to send before
    /// `end_ns` (at most `limit`): its first, then each next one, exactly
    /// as a worker steps it ([`FleetEvents::first`], [`FleetEvents::advance`]).
    pub fn sends_before(
        &self,
        clock: &mut DeviceClock,
        s: &Schedule,
        devices: u64,
        index: u64,
        end_ns: u64,
        limit: u64,
    ) -> u64 {
        let mut sends = 0;
        let mut step = self.first(clock, s, devices, index);
        while step.at_ns < end_ns && sends < limit {
            sends += 1;
            step = self.advance(clock, s, index, step.at_ns);
        }
        sends
    }

    /// The rollouts device `index` has taken by `at_ns`, in time order,
    /// each only if no later one it has taken changes the same thing (its
    /// agent version, or the same model's version): what it runs at `at_ns`.
    pub fn rollouts_by(&self, index: u64, at_ns: u64) -> impl Iterator<Item = &RolloutTarget> + '_ {
        self.events.iter().enumerate().filter_map(move |(i, event)| {
            let target = rollout_taken(event, index, at_ns)?;
            let superseded = self.events[i + 1..]
                .iter()
                .filter_map(|later| rollout_taken(later, index, at_ns))
                .any(|later| later.same_subject(target));
            (!superseded).then_some(target)
        })
    }

    /// Switches `device` to the versions this fleet's rollouts have brought
    /// it by `at_ns` (versions the profile lacks are ignored; the scenario
    /// adds every rolled-out version to its mixes). A model version that
    /// changes is a deployment, which the device's next heartbeat reports.
    pub fn apply_rollouts(&self, profile: &Profile, device: &mut Device, at_ns: u64) {
        for target in self.rollouts_by(device.index(), at_ns) {
            match target {
                RolloutTarget::AgentVersion(v) => {
                    if let Some(i) = profile.agent_versions.index_of(v) {
                        device.set_agent_version(i);
                    }
                }
                RolloutTarget::ModelVersion { model, version } => {
                    if let Some(m) = profile.models.iter().position(|m| &m.name == model)
                        && let Some(v) = profile.models[m].versions.index_of(version)
                    {
                        device.set_model_version(m as u16, v);
                    }
                }
            }
        }
    }
}

/// What `event` rolls out, if it is a rollout that has reached device
/// `index` by `at_ns`.
fn rollout_taken(event: &(Event, Selection), index: u64, at_ns: u64) -> Option<&RolloutTarget> {
    match &event.0.kind {
        EventKind::Rollout { over, target } => {
            let rank = event.1.rank(index)?;
            (ns(event.0.at) + event.1.spread(rank, *over) <= at_ns).then_some(target)
        }
        _ => None,
    }
}

impl RolloutTarget {
    /// Whether `self` and `other` change the same thing: the agent
    /// version, or the same model's version.
    pub fn same_subject(&self, other: &RolloutTarget) -> bool {
        match (self, other) {
            (RolloutTarget::AgentVersion(_), RolloutTarget::AgentVersion(_)) => true,
            (RolloutTarget::ModelVersion { model: a, .. }, RolloutTarget::ModelVersion { model: b, .. }) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(interval: Duration) -> Schedule {
        Schedule::every(interval)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Every intended time of `devices` devices before `end`, per device.
    fn times(events: &[Event], devices: u64, s: &Schedule, end: u64) -> Vec<Vec<Step>> {
        let fe = FleetEvents::new(events, devices, s.interval, 99);
        (0..devices)
            .map(|i| {
                let mut clock = DeviceClock::new(1, 2, i);
                let mut out = Vec::new();
                let mut step = fe.first(&mut clock, s, devices, i);
                while step.at_ns < end {
                    out.push(step);
                    step = fe.advance(&mut clock, s, i, step.at_ns);
                }
                out
            })
            .collect()
    }

    #[test]
    fn selections_are_exact_and_spread() {
        for (n, share) in [(1000, 0.3), (7, 0.5), (1, 1.0), (10_000, 0.0001)] {
            let sel = Selection::new(n, share, 42);
            let ranks: Vec<u64> = (0..n).filter_map(|i| sel.rank(i)).collect();
            assert_eq!(ranks.len() as u64, (share * n as f64).round() as u64, "{n} {share}");
            let mut sorted = ranks.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), ranks.len(), "ranks are distinct");
            // Inverted: rank r's device has rank r.
            for (r, index) in sel.affected() {
                assert_eq!(sel.rank(index), Some(r), "{n} {share}");
            }
        }
    }

    #[test]
    fn an_outage_silences_its_share_and_a_synchronized_recovery_is_one_instant() {
        let outage = Event {
            at: secs(60),
            share: 0.3,
            kind: EventKind::Outage { duration: secs(45), recover: Recovery::Synchronized },
        };
        let s = every(secs(10));
        let all = times(&[outage], 1000, &s, 200_000_000_000);
        let (start, end) = (60_000_000_000, 105_000_000_000);
        let silenced: Vec<&Vec<Step>> =
            all.iter().filter(|t| !t.iter().any(|x| (start..end).contains(&x.at_ns))).collect();
        assert_eq!(silenced.len(), 300, "exactly 30% send nothing during the outage");
        for t in &silenced {
            let back = t.iter().find(|x| x.at_ns >= end).unwrap();
            assert_eq!(back.at_ns, end, "every silenced device is back at the same instant");
            assert!(back.resumed);
        }
        // The others keep their 10 s beat throughout.
        let others = all.iter().filter(|t| t.iter().any(|x| (start..end).contains(&x.at_ns))).count();
        assert_eq!(others, 700);
    }

    #[test]
    fn restarts_come_back_after_their_downtime_with_a_new_phase() {
        let restart =
            Event { at: secs(30), share: 1.0, kind: EventKind::Restart { over: secs(10), downtime: secs(5) } };
        let s = every(secs(60));
        let all = times(&[restart], 100, &s, 120_000_000_000);
        let mut backs: Vec<u64> = all.iter().map(|t| t.iter().find(|x| x.resumed).unwrap().at_ns).collect();
        backs.sort();
        assert_eq!(backs[0], 35_000_000_000, "the first reboots at 30 s and is back 5 s later");
        assert_eq!(*backs.last().unwrap(), 35_000_000_000 + 9_900_000_000, "spread over 10 s");
        for t in &all {
            let i = t.iter().position(|x| x.resumed).unwrap();
            if let Some(next) = t.get(i + 1) {
                assert_eq!(next.at_ns - t[i].at_ns, 60_000_000_000, "a new phase from the reboot");
            }
        }
    }

    #[test]
    fn a_surge_changes_the_rate_of_its_share_for_its_duration() {
        let surge =
            Event { at: secs(20), share: 0.5, kind: EventKind::Surge { duration: secs(10), interval: secs(1) } };
        let s = every(secs(10));
        let all = times(&[surge], 200, &s, 60_000_000_000);
        let count = |from: u64, to: u64| {
            all.iter().flatten().filter(|x| (from * 1_000_000_000..to * 1_000_000_000).contains(&x.at_ns)).count()
        };
        assert_eq!(count(0, 20), 400, "200 devices every 10 s");
        // During the surge: 100 devices every 1 s (900 in 9 s) and about
        // 90 from the 100 others at their 10 s beat.
        assert!((980..=1000).contains(&count(21, 30)), "{}", count(21, 30));
        assert!((190..=300).contains(&count(40, 50)), "back to the old rate after a burst: {}", count(40, 50));
    }

    #[test]
    fn a_device_coming_online_during_a_surge_sends_nothing_before_it_is_online() {
        let surge =
            Event { at: secs(1), share: 1.0, kind: EventKind::Surge { duration: secs(8), interval: secs(1) / 10 } };
        let s = Schedule { ramp_up: secs(10), ..every(secs(5)) };
        for (i, t) in times(&[surge], 100, &s, 20_000_000_000).iter().enumerate() {
            let online = crate::fleet::online_ns(&s, 100, i as u64);
            assert_eq!(t[0].at_ns, online, "device {i}: its first heartbeat as it comes online");
            // Online within the surge: it surges from then on (its next
            // heartbeat at its surge slot, within one surge interval).
            if (1_000_000_000..8_000_000_000).contains(&online) {
                assert!(t[1].at_ns - t[0].at_ns <= 100_000_000, "device {i}: {:?}", &t[..2]);
            }
        }
    }

    #[test]
    fn rollouts_progress_at_the_planned_pace() {
        let target = RolloutTarget::AgentVersion("2.0.0".into());
        let rollout = Event { at: secs(10), share: 0.5, kind: EventKind::Rollout { over: secs(20), target } };
        let fe = FleetEvents::new(&[rollout], 1000, secs(1), 5);
        let switched = |t: u64| (0..1000).filter(|&i| fe.rollouts_by(i, t * 1_000_000_000).next().is_some()).count();
        // Device of rank r switches at 10 s + 20 s · r / 500.
        assert_eq!([switched(9), switched(10), switched(20), switched(30), switched(100)], [0, 1, 251, 500, 500]);
    }

    #[test]
    fn successive_model_rollouts_are_each_one_deployment() {
        use crate::device::{FleetGenerator, ModelSpec, NameTemplate, Profile, Scratch, Weighted};
        use crate::sagemaker_edge;
        let rollout = |at, version: &str| Event {
            at: secs(at),
            share: 1.0,
            kind: EventKind::Rollout {
                over: Duration::ZERO,
                target: RolloutTarget::ModelVersion { model: "detector".into(), version: version.into() },
            },
        };
        let versions = Weighted::new([("3.1", 1.0), ("3.2", 0.0), ("3.3", 0.0)].map(|(v, w)| (v.to_string(), w)));
        let profile = Profile {
            fleet_name: "f".into(),
            agent_versions: Weighted::single("1.0"),
            agent_metrics: Vec::new(),
            models: vec![ModelSpec {
                name: "detector".into(),
                versions: versions.unwrap(),
                share: 1.0,
                metrics: Vec::new(),
                deployment_results: 1.0,
            }],
        };
        let generator = FleetGenerator::new(profile, NameTemplate::parse("d{index}").unwrap(), 1);
        let fe = FleetEvents::new(&[rollout(10, "3.2"), rollout(30, "3.3")], 1, secs(5), 3);
        let mut device = generator.device(0);
        let mut reported = Vec::new();
        for t in (0..60).step_by(5) {
            fe.apply_rollouts(&generator.profile, &mut device, t * 1_000_000_000);
            let mut body = Vec::new();
            device.write_next(&generator, 1_000_000 + t * 1000, &mut Scratch::default(), &mut body);
            crate::sagemaker_edge::validate(&body).unwrap();
            let hb: sagemaker_edge::SendHeartbeat = serde_json::from_slice(&body).unwrap();
            let runs = hb.models.unwrap()[0].model_version.clone().unwrap();
            if let Some(r) = hb.deployment_result {
                let to = r.deployment_models.unwrap()[0].model_version.clone().unwrap();
                assert_eq!(to, runs);
                reported.push((t, to));
            }
        }
        // The later rollout supersedes the earlier one, rather than both
        // being applied again (a change back and forth) at every heartbeat.
        assert_eq!(reported, [(10, "3.2".to_string()), (30, "3.3".to_string())]);
    }

    #[test]
    fn overlapping_and_impossible_events_are_refused() {
        let outage = |at, d| Event {
            at: secs(at),
            share: 0.5,
            kind: EventKind::Outage { duration: secs(d), recover: Recovery::Synchronized },
        };
        let restart = Event { at: secs(50), share: 0.1, kind: EventKind::Restart { over: secs(0), downtime: secs(5) } };
        assert!(check(&[outage(10, 30), outage(60, 10)], secs(120)).is_ok());
        assert!(check(&[outage(10, 30), restart.clone()], secs(120)).is_ok());
        let e = check(&[outage(10, 50), restart], secs(120)).unwrap_err();
        assert_eq!(e.event, 1);
        let e = e.message;
        assert!(e.contains("events[1]") && e.contains("overlaps events[0]") && e.contains("after 1m"), "{e}");
        let e = check(&[outage(300, 10)], secs(120)).unwrap_err();
        assert_eq!(e.event, 0);
        assert!(e.message.contains("starts at 5m, but the run lasts 2m"), "{e}");
    }
}
