//! A run's plan ([`Plan`]): a checked scenario under a seed, for a shard,
//! its fleets made into what the engine runs once, then handed to all
//! who need them: the text `validate` prints (per fleet, the heartbeats a
//! run with the seed schedules, walked with the engine's own schedule
//! steps; their rates; the connections), the first intended sends, the
//! devices online the live outputs show, and the run itself.

use std::fmt::Write as _;
use std::sync::Arc;

use super::fleets::fleet_runtimes;
use super::resources::connections_needed;
use crate::engine::FleetRuntime;
use crate::scenario::Scenario;
use crate::shard::{OwnedDevices, Shard};
use crate::transport::settings::ConnectionMode;

/// Heartbeats walked at most to count a plan's exactly. Measured on the
/// 2-core box (release build, one thread, 800,000 devices for 60 s): 44
/// million jittered heartbeats in 0.25 s, Poisson ones in 0.5 s, Poisson
/// with an outage and a surge in 0.95 s; so an exact count takes about a
/// second at most, and beyond the budget the plan is estimated.
pub const WALK_BUDGET: u64 = 50_000_000;

/// A scenario ready to run under `seed`, for `shard` (all devices if
/// `None`): its fleets as the engine runs them, built once.
#[derive(Debug, Clone)]
pub struct Plan<'s> {
    pub scenario: &'s Scenario,
    pub seed: u64,
    pub shard: Option<Shard>,
    fleets: Arc<[FleetRuntime]>,
}

/// The seed a plan of a scenario without one is counted with: a run draws
/// one at random, so counts that depend on it are for a stand-in (and say
/// so).
pub const STAND_IN_SEED: u64 = 0;

impl<'s> Plan<'s> {
    pub fn new(scenario: &'s Scenario, seed: u64, shard: Option<Shard>) -> Plan<'s> {
        Plan { scenario, seed, shard, fleets: fleet_runtimes(scenario, seed).into() }
    }

    /// The plan `validate` shows: under the scenario's seed, or
    /// [`STAND_IN_SEED`] when it sets none.
    pub fn of_validate(scenario: &'s Scenario, shard: Option<Shard>) -> Plan<'s> {
        Plan::new(scenario, scenario.seed.unwrap_or(STAND_IN_SEED), shard)
    }

    /// The fleets as the engine runs them.
    pub fn fleets(&self) -> &Arc<[FleetRuntime]> {
        &self.fleets
    }
}

/// How a plan's heartbeat counts were made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Counted {
    /// Every device's schedule walked: exactly what a run with the seed schedules.
    Exact,
    /// Every `stride`-th device's schedule walked (1 in `stride`), scaled up.
    Sampled { stride: u64 },
    /// From the rates alone (a single device's schedule is beyond the budget).
    Rates,
}

/// The heartbeats a run schedules, per fleet: exact when walking every
/// device's schedule fits the budget, an estimate otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// Per fleet, in file order (whole numbers when exact).
    pub fleets: Vec<f64>,
    /// Per fleet.
    pub counted: Vec<Counted>,
}

impl Expected {
    pub fn total(&self) -> f64 {
        self.fleets.iter().sum()
    }

    pub fn exact(&self) -> bool {
        self.counted.iter().all(|c| *c == Counted::Exact)
    }
}

/// The global index of each fleet's first device.
pub(super) fn first_indices(s: &Scenario) -> Vec<u64> {
    s.fleets
        .iter()
        .scan(0u64, |next, f| {
            let first = *next;
            *next += f.devices;
            Some(first)
        })
        .collect()
}

/// A rough figure of a fleet's heartbeats from its rates, ramp-up, first
/// heartbeats, surges and outages: what decides whether to walk, and the
/// last resort when even one device's schedule is too long to walk.
fn rough_heartbeats(f: &crate::scenario::Fleet, devices: u64, secs: f64) -> f64 {
    use crate::fleet::EventKind;
    use crate::fleet::{Arrival, StartMode};
    let d = devices as f64;
    let per_s = 1.0 / f.schedule.interval.as_secs_f64();
    let ramp = f.schedule.ramp_up.as_secs_f64();
    let first = if f.schedule.arrival == Arrival::Poisson { 1.0 } else { 0.5 };
    let mut n = if ramp > 0.0 {
        let online = (secs / ramp).min(1.0);
        d * online * (first + (secs - ramp.min(secs) / 2.0) * per_s)
    } else if f.schedule.start == StartMode::Synchronized && f.schedule.arrival == Arrival::Periodic {
        d * (secs * per_s).ceil()
    } else {
        d * secs * per_s
    };
    for e in &f.events {
        let at = e.at.as_secs_f64();
        let within = |dur: f64| dur.min((secs - at).max(0.0));
        match &e.kind {
            EventKind::Surge { duration, interval } => {
                n += e.share * d * within(duration.as_secs_f64()) * (1.0 / interval.as_secs_f64() - per_s);
            }
            EventKind::Outage { duration, .. } => n -= e.share * d * within(duration.as_secs_f64()) * per_s,
            _ => {}
        }
    }
    n.max(0.0)
}

/// The heartbeats a run of `s` under `seed` schedules (of one shard's
/// devices, if given), per fleet: every device's schedule walked with the
/// very steps the engine's workers take ([`FleetEvents::sends_before`])
/// when that is at most `budget` heartbeats, so the count is the run's
/// `scheduled` exactly; otherwise estimated from a sample of the devices.
/// Retries are not part of the schedule.
pub fn expected_heartbeats(s: &Scenario, seed: u64, shard: Option<Shard>, budget: u64) -> Expected {
    Plan::new(s, seed, shard).expected(budget)
}

impl Plan<'_> {
    /// The heartbeats this plan's run schedules, per fleet, walking at
    /// most `budget` of them ([`expected_heartbeats`]).
    pub fn expected(&self, budget: u64) -> Expected {
        let (s, seed, shard, fleets) = (self.scenario, self.seed, self.shard, &self.fleets);
        let end = s.duration.as_nanos() as u64;
        let secs = s.duration.as_secs_f64();
        let firsts = first_indices(s);
        let owned: Vec<OwnedDevices> =
            s.fleets.iter().zip(&firsts).map(|(f, &first)| OwnedDevices::of(shard, first, f.devices)).collect();
        let rough: Vec<f64> = s.fleets.iter().zip(&owned).map(|(f, o)| rough_heartbeats(f, o.count, secs)).collect();
        // Walks device number `q` of the owned ones, within `limit`.
        let walk = |fleet: &FleetRuntime, owned: OwnedDevices, q: u64, limit: u64| {
            let index = owned.nth(q);
            let mut clock = crate::fleet::DeviceClock::new(seed, fleet.key, index);
            fleet.events.sends_before(&mut clock, &fleet.schedule, fleet.devices, index, end, limit)
        };
        // Exactly, when the rough figure leaves room and the walk keeps within the budget.
        if rough.iter().sum::<f64>() <= budget as f64 {
            let mut left = budget;
            let mut counts = Vec::with_capacity(fleets.len());
            'fleets: for (fleet, &o) in fleets.iter().zip(&owned) {
                let mut n = 0u64;
                for q in 0..o.count {
                    let sends = walk(fleet, o, q, left.saturating_add(1));
                    if sends > left {
                        break 'fleets;
                    }
                    left -= sends;
                    n += sends;
                }
                counts.push(n as f64);
            }
            if counts.len() == fleets.len() {
                return Expected { counted: vec![Counted::Exact; counts.len()], fleets: counts };
            }
        }
        // Otherwise each fleet from evenly spread devices (ramp-ups go by
        // index, so every phase of the ramp is sampled), within its part of
        // the budget.
        let share = (budget / (2 * fleets.len().max(1) as u64)).max(1);
        let mut out = Expected { fleets: Vec::new(), counted: Vec::new() };
        for ((fleet, &o), &rough) in fleets.iter().zip(&owned).zip(&rough) {
            let devices = o.count;
            if devices == 0 {
                out.fleets.push(0.0);
                out.counted.push(Counted::Exact);
                continue;
            }
            // 1 device in `stride`, as many as the rough figure says fit; a
            // sample that walks beyond its share is halved, at most 3 times
            // (so at most 4 shares are walked in all).
            let per_device = (rough / devices as f64).max(1.0);
            let mut stride = devices.div_ceil(((share as f64 / per_device) as u64).clamp(1, devices));
            let mut tries = 0;
            let sampled = loop {
                tries += 1;
                let mut left = share;
                let mut sample = Some((0u64, 0u64));
                for q in (0..devices).step_by(usize::try_from(stride).unwrap_or(usize::MAX)) {
                    let sends = walk(fleet, o, q, left.saturating_add(1));
                    if sends > left {
                        sample = None;
                        break;
                    }
                    left -= sends;
                    sample = sample.map(|(n, k)| (n + sends, k + 1));
                }
                match sample {
                    Some(found) => break Some(found),
                    // Even one device's schedule is beyond the share.
                    None if stride >= devices || tries == 4 => break None,
                    None => stride = (stride * 2).min(devices),
                }
            };
            let (n, counted) = match sampled {
                Some((n, _)) if stride == 1 => (n as f64, Counted::Exact),
                Some((n, k)) => (n as f64 * devices as f64 / k as f64, Counted::Sampled { stride }),
                None => (rough, Counted::Rates),
            };
            out.fleets.push(n);
            out.counted.push(counted);
        }
        out
    }
}

/// Whether a fleet's schedule depends on the seed: Poisson arrivals,
/// jitter and events are drawn from it; a periodic beat is not.
fn schedule_depends_on_seed(f: &crate::scenario::Fleet) -> bool {
    f.schedule.arrival == crate::fleet::Arrival::Poisson || f.schedule.jitter > 0.0 || !f.events.is_empty()
}

/// The plan `validate` prints, for one shard's devices if given.
pub fn plan_text(s: &Scenario, shard: Option<Shard>) -> String {
    Plan::of_validate(s, shard).text_within(WALK_BUDGET)
}

/// [`plan_text`], walking at most `budget` heartbeats to count them.
pub fn plan_text_within(s: &Scenario, shard: Option<Shard>, budget: u64) -> String {
    Plan::of_validate(s, shard).text_within(budget)
}

impl Plan<'_> {
    /// The plan's text (what `validate` prints), walking at most `budget`
    /// heartbeats to count them.
    pub fn text_within(&self, budget: u64) -> String {
        let (s, shard) = (self.scenario, self.shard);
        let mut out = String::new();
        let secs = s.duration.as_secs_f64();
        let _ = writeln!(
            out,
            "scenario \"{}\": {} fleet(s), duration {}",
            s.name,
            s.fleets.len(),
            crate::units::format_duration(s.duration)
        );
        let _ = writeln!(
            out,
            "target {} (timeout {}, connections {})",
            crate::wire::destination(&s.target.url.to_string(), &s.target.path, s.fleets.iter().map(|f| f.profile)),
            crate::units::format_duration(s.target.timeout),
            s.target.connections
        );
        if let Some(sh) = shard {
            let _ = writeln!(out, "shard {sh}: this shard's devices, heartbeats and connections only");
        }
        let expected = self.expected(budget);
        let _ = writeln!(
            out,
            "\n{:<24} {:>9} {:>11} {:>10} {:>10} {:>12} {:>12}",
            "fleet", "devices", "interval", "steady/s", "average/s", "heartbeats", "connections"
        );
        let count = |n: f64, counted: bool| if counted { format!("{n:.0}") } else { format!("≈{n:.0}") };
        let firsts = first_indices(s);
        let (mut total_rate, mut total_devices) = (0.0, 0);
        for ((f, &first), (&n, &how)) in s.fleets.iter().zip(&firsts).zip(expected.fleets.iter().zip(&expected.counted))
        {
            let devices = OwnedDevices::of(shard, first, f.devices).count;
            let rate = f.schedule.rate(devices);
            total_rate += rate;
            total_devices += devices;
            let conns = match s.target.connections {
                ConnectionMode::PerDevice | ConnectionMode::NewPerRequest => devices.to_string(),
                ConnectionMode::Pool(_) => "shared".into(),
            };
            let _ = writeln!(
                out,
                "{:<24} {:>9} {:>11} {:>10.1} {:>10.1} {:>12} {:>12}",
                f.name(),
                devices,
                crate::units::format_duration(f.schedule.interval),
                rate,
                n / secs,
                count(n, how == Counted::Exact),
                conns
            );
        }
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>11} {:>10.1} {:>10.1} {:>12} {:>12}",
            "TOTAL",
            total_devices,
            "",
            total_rate,
            expected.total() / secs,
            count(expected.total(), expected.exact()),
            connections_needed(s, shard)
        );
        let _ = writeln!(
            out,
            "\nsteady/s: every device online (devices / interval)\naverage/s: heartbeats / duration, the average over \
         the whole run, ramp-up and each device's first heartbeat included"
        );
        let _ = write!(out, "{}", self.mqtt_text(&expected));
        let seeded = match s.seed {
            Some(seed) => format!("seed {seed}"),
            None => format!("seed {STAND_IN_SEED}"),
        };
        if expected.exact() {
            let _ = writeln!(
                out,
                "heartbeats: exactly those a run with {seeded} schedules (every device's schedule walked; retries \
             come on top)"
            );
        } else {
            for (f, how) in s.fleets.iter().zip(&expected.counted) {
                let why = match how {
                    Counted::Exact => continue,
                    Counted::Sampled { stride } => format!("from 1 device in {stride}, each schedule walked"),
                    Counted::Rates => "from the rates (one device's schedule is too long to walk)".to_string(),
                };
                let _ = writeln!(out, "≈ {}: estimated {why}", f.name());
            }
            let _ = writeln!(
                out,
                "≈: estimated; walking every schedule exactly would go beyond {} heartbeats (lower --duration or \
             --devices-scale, or --shard, to get an exact count)",
                crate::units::thousands(budget)
            );
        }
        if s.seed.is_none() {
            let depends: Vec<&str> =
                s.fleets.iter().filter(|f| schedule_depends_on_seed(f)).map(|f| f.name()).collect();
            if !depends.is_empty() {
                let _ = writeln!(
                    out,
                    "the scenario sets no seed: a run draws one at random, and the heartbeats of {} (Poisson \
                 arrivals, jitter or events) depend on it; these are for seed {STAND_IN_SEED} (set `seed` or pass \
                 --seed N to fix them)",
                    depends.join(", ")
                );
            }
        }
        for f in &s.fleets {
            if f.events.is_empty() && f.retry.is_none() {
                continue;
            }
            let _ = writeln!(out, "\nfleet {}:", f.name());
            for e in &f.events {
                let late = if e.at >= s.duration { " (after the end of this run: not acted out)" } else { "" };
                let _ = writeln!(out, "  {e}{late}");
            }
            if let Some(r) = &f.retry {
                let _ = writeln!(out, "  retries: {r}");
            }
        }
        if !s.thresholds.is_empty() {
            let _ = writeln!(out, "\nthresholds (exit code 3 if one fails):");
            for t in &s.thresholds.end {
                let _ = writeln!(out, "  {}", t.expr());
            }
            for t in &s.thresholds.abort {
                let _ = writeln!(
                    out,
                    "  abort if {} (checked after {})",
                    t.expr(),
                    crate::units::format_duration(s.thresholds.abort_grace)
                );
            }
        }
        let _ = match s.thresholds.stop_when_nothing_succeeds {
            Some(d) => writeln!(
                out,
                "\nstops early (exit code 5) if, {} into the run, heartbeats have failed and none has succeeded",
                crate::units::format_duration(d)
            ),
            None => {
                writeln!(
                    out,
                    "\nruns its whole duration even if nothing succeeds (stop_when_nothing_succeeds = \"off\")"
                )
            }
        };
        out
    }
}

/// How many of `sessions` have opened within `secs` at `rate` a second.
pub fn sessions_opened_within(sessions: u64, rate: f64, secs: f64) -> u64 {
    if rate <= 0.0 {
        return 0;
    }
    ((secs * rate).floor() as u64).min(sessions)
}

impl Plan<'_> {
    /// The MQTT part of the plan: per MQTT fleet its sessions (one per
    /// device, each its own connection), topic, QoS and retain, messages
    /// a second; then the target's session settings (keep-alive,
    /// reconnect policy, connect rate and how long opening every session
    /// takes at it), the sockets they need, and the listener for
    /// builtin. Empty for a run without MQTT fleets. A connect rate too
    /// low for every session to open within the run is a warning, with
    /// how many will have opened by the end.
    fn mqtt_text(&self, expected: &Expected) -> String {
        use crate::scenario::TargetUrl;
        let (s, shard) = (self.scenario, self.shard);
        let mut out = String::new();
        let secs = s.duration.as_secs_f64();
        let firsts = first_indices(s);
        let mut sessions = 0u64;
        let mut first_interval = std::time::Duration::ZERO;
        for (((f, &first), runtime), &n) in s.fleets.iter().zip(&firsts).zip(self.fleets.iter()).zip(&expected.fleets) {
            if f.profile != crate::wire::ProfileName::Mqtt {
                continue;
            }
            let owned = OwnedDevices::of(shard, first, f.devices);
            if sessions == 0 {
                let _ =
                    writeln!(out, "\nMQTT {} sessions: one per device, each its own connection", s.target.mqtt.version);
            }
            sessions += owned.count;
            first_interval = first_interval.max(f.schedule.interval.max(f.schedule.ramp_up));
            let wire = f.mqtt.as_deref().cloned().unwrap_or_default();
            let mut device = String::new();
            if owned.count > 0 {
                runtime.generator.names.render(owned.nth(0), &mut device);
            }
            let _ = writeln!(
                out,
                "  fleet {}: {} sessions (client id: the device's name); topic {} (first device {}: {}), QoS {}, \
                 retain {}; {:.1} messages/s steady, {:.1} on average",
                f.name(),
                owned.count,
                wire.template(),
                device,
                wire.topic(&device),
                wire.qos.level(),
                if wire.retain { "on" } else { "off" },
                f.schedule.rate(owned.count),
                n / secs,
            );
            if let Some(answers) = wire.response_template() {
                let _ = writeln!(
                    out,
                    "    each message asks for an answer on {answers} (MQTT 5's Response Topic, which each session \
                     subscribes to when it opens) and is timed to it"
                );
            }
        }
        if sessions == 0 {
            return out;
        }
        let m = &s.target.mqtt;
        let _ = writeln!(
            out,
            "  keep-alive {} (a PINGREQ when a session is idle that long); clean start {}{}",
            crate::units::format_duration(m.keep_alive),
            if m.clean_start { "on" } else { "off" },
            if m.session_expiry.is_zero() {
                String::new()
            } else {
                format!(
                    "; the broker keeps a session {} after it ends",
                    crate::units::format_duration(m.session_expiry)
                )
            }
        );
        let _ = match &m.reconnect {
            Some(r) => writeln!(
                out,
                "  reconnect: a lost session is reopened after {}, the delay doubling up to {}",
                crate::units::format_duration(r.first),
                crate::units::format_duration(r.max)
            ),
            None => writeln!(out, "  reconnect: off; a lost session is reopened at its device's next heartbeat"),
        };
        let _ = writeln!(
            out,
            "  in flight: up to {} of a device's messages await their acknowledgement at once{}; one due while \
             they do waits (late), and is missed if its next comes first (a fleet with retries: one at a time)",
            m.in_flight,
            if m.version == crate::transport::mqtt::MqttVersion::V5 {
                ", at most the broker's Receive Maximum (its CONNACK)"
            } else {
                ""
            }
        );
        match m.connect_rate {
            Some(rate) => {
                let takes = std::time::Duration::from_secs_f64(sessions as f64 / rate);
                let _ = writeln!(
                    out,
                    "  connect rate: at most {rate}/s, first openings and reopenings alike; opening all {sessions} \
                     sessions takes {}",
                    crate::units::format_duration(takes)
                );
                let opened = sessions_opened_within(sessions, rate, secs);
                if opened < sessions {
                    let _ = writeln!(
                        out,
                        "  warning: at {rate}/s only {opened} of the {sessions} devices will have opened their \
                         session by the end of the run ({}); raise connect_rate or lengthen the run",
                        crate::units::format_duration(s.duration)
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "  connect rate: none set; sessions open as devices need them, over the first interval ({})",
                    crate::units::format_duration(first_interval)
                );
            }
        }
        let builtin = s.target.url == TargetUrl::Builtin;
        let _ = writeln!(
            out,
            "  sockets: one per session, {sessions} file descriptors{} and {sessions} source ports",
            if builtin { " (twice that with the built-in backend's ends in this process)" } else { "" }
        );
        if builtin {
            let _ = writeln!(out, "  builtin: serve's MQTT listener, started in-process on a loopback port");
        }
        out
    }
}

/// One intended send of a run's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSend {
    /// Nanoseconds since the start.
    pub at_ns: u64,
    pub fleet: String,
    pub device: String,
}

/// The first `n` intended sends of a run of `scenario` under `seed`, in
/// time order: exactly the times the engine's devices will aim at (the
/// same clocks and events), without sending anything. Retries are not
/// part of the plan; they depend on answers.
pub fn schedule_preview(scenario: &Scenario, seed: u64, n: usize, shard: Option<Shard>) -> Vec<PlannedSend> {
    Plan::new(scenario, seed, shard).preview(n)
}

impl Plan<'_> {
    /// The first `n` intended sends of this plan's run ([`schedule_preview`]).
    pub fn preview(&self, n: usize) -> Vec<PlannedSend> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let (scenario, seed, shard, fleets) = (self.scenario, self.seed, self.shard, &self.fleets);
        let end = scenario.duration.as_nanos() as u64;
        let mut clocks = Vec::new();
        let mut heap = BinaryHeap::new();
        for ((f, fleet), first_global) in fleets.iter().enumerate().zip(first_indices(scenario)) {
            for index in OwnedDevices::of(shard, first_global, fleet.devices).indices() {
                let mut clock = crate::fleet::DeviceClock::new(seed, fleet.key, index);
                let first = fleet.events.first(&mut clock, &fleet.schedule, fleet.devices, index);
                if first.at_ns < end {
                    heap.push(Reverse((first.at_ns, f, index, clocks.len())));
                }
                clocks.push(clock);
            }
        }
        let mut out = Vec::with_capacity(n.min(1 << 20));
        while out.len() < n {
            let Some(Reverse((t, f, index, c))) = heap.pop() else { break };
            let fleet = &fleets[f];
            let mut device = String::new();
            fleet.generator.names.render(index, &mut device);
            out.push(PlannedSend { at_ns: t, fleet: fleet.generator.profile.fleet_name.clone(), device });
            let next = fleet.events.advance(&mut clocks[c], &fleet.schedule, index, t);
            if next.at_ns < end {
                heap.push(Reverse((next.at_ns, f, index, c)));
            }
        }
        out
    }
}
