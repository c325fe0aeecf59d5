//! `fleetstorm run` and `fleetstorm validate`: from a checked scenario to a
//! plan, resources checked, the engine run against the target, and a report.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::{self, EngineSettings, FleetRuntime, Live};
use crate::fleet::{FleetEvents, Online};
use crate::gate::ThresholdResult;
use crate::report::{Aborted, Report, Stats};
use crate::scenario::{Scenario, TargetUrl};
use crate::server::{self, ServeConfig};
use crate::shard::Shard;
use crate::stats::{Percentiles, Recorder};
use crate::transport::settings::{ConnectionMode, HttpVersion};
use crate::transport::{Endpoint, EndpointOptions, Http};

/// Command-line overrides of a scenario.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub target: Option<String>,
    pub duration: Option<Duration>,
    pub seed: Option<u64>,
    /// Multiplies every fleet's rate (divides every interval).
    pub rate_scale: Option<f64>,
    /// Multiplies every fleet's device count.
    pub devices_scale: Option<f64>,
}

/// Why a run could not happen or complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario or the plan is impossible (exit code 2).
    #[error("{0}")]
    Invalid(String),
    /// The run itself failed (exit code 1).
    #[error("{0}")]
    Failed(String),
    /// `--start-at` passed before the devices were ready: nothing was sent
    /// (exit code 4).
    #[error("{0}")]
    NotReady(String),
}

/// Applies command-line overrides; the result is checked as the file is.
pub fn apply_overrides(mut s: Scenario, o: &Overrides) -> Result<Scenario, RunError> {
    if let Some(t) = &o.target {
        let (url, path) = TargetUrl::split(t).map_err(|e| RunError::Invalid(format!("--target: {e}")))?;
        s.target.url = url;
        // A URL with a path names the heartbeat's path too.
        if let Some(path) = path {
            s.target.path = path;
        }
    }
    if let Some(d) = o.duration {
        if d.is_zero() {
            return Err(RunError::Invalid("--duration must be above 0".into()));
        }
        s.duration = d;
    }
    if o.seed.is_some() {
        s.seed = o.seed;
    }
    for (flag, v) in [("--rate-scale", o.rate_scale), ("--devices-scale", o.devices_scale)] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            return Err(RunError::Invalid(format!("{flag} must be a number above 0, not {v}")));
        }
    }
    for f in &mut s.fleets {
        if let Some(scale) = o.devices_scale {
            // Keep each device's interval (and so scale the fleet's rate).
            // A count the scale makes is checked as one in the file is
            // (`as` saturates: no wrap-around).
            let devices = (f.devices as f64 * scale).round() as u64;
            crate::scenario::check_devices(devices).map_err(|e| {
                RunError::Invalid(format!("--devices-scale {scale}: fleet {:?} ({} devices): {e}", f.name(), f.devices))
            })?;
            f.devices = devices;
            f.device_name
                .check_for(f.devices)
                .map_err(|e| RunError::Invalid(format!("--devices-scale {scale}: fleet {:?}: {e}", f.name())))?;
        }
        if let Some(scale) = o.rate_scale {
            let interval = Duration::from_secs_f64(f.schedule.interval.as_secs_f64() / scale);
            if interval < Duration::from_millis(1) {
                return Err(RunError::Invalid(format!(
                    "--rate-scale {scale}: fleet {:?}'s interval would be below 1ms",
                    f.name()
                )));
            }
            f.schedule.interval = interval;
        }
    }
    s.scaled =
        crate::scenario::Scaled { devices: o.devices_scale.or(s.scaled.devices), rate: o.rate_scale.or(s.scaled.rate) };
    Ok(s)
}

/// Connections a run needs at most, and what the machine allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionBudget {
    pub needed: u64,
    /// Open files the process may have (soft limit, after raising it).
    pub open_files: u64,
    /// Connections one source address is planned to carry toward the
    /// target at full speed ([`crate::transport::ports::PortRange::per_address`]).
    pub per_address: u64,
    /// Where the connections leave from.
    pub sources: Sources,
}

impl ConnectionBudget {
    /// Connections toward the target the sources carry at full speed.
    pub fn capacity(&self) -> u64 {
        self.per_address * self.sources.addresses.len().max(1) as u64
    }
}

/// The source addresses a run's connections leave from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sources {
    /// Empty: the system's choice of one.
    pub addresses: Vec<IpAddr>,
    /// Spread over loopback addresses by fleetstorm (none were given).
    pub spread: bool,
}

/// The source addresses of a run toward `target_ip`: the scenario's
/// `source_addresses`; or, toward an IPv4 loopback target whose
/// per-device connections exceed one address's share of the ports,
/// 127.0.0.1 to 127.0.0.N, as many as they need (every address of 127/8 is
/// this machine's, and each has a port range of its own).
pub fn plan_sources(s: &Scenario, target_ip: Option<IpAddr>, needed: u64, per_address: u64) -> Sources {
    if !s.target.source_addresses.is_empty() {
        return Sources { addresses: s.target.source_addresses.clone(), spread: false };
    }
    let loopback_v4 = matches!(target_ip, Some(IpAddr::V4(ip)) if ip.is_loopback());
    if loopback_v4 && !matches!(s.target.connections, ConnectionMode::Pool(_)) && needed > per_address {
        let n = needed.div_ceil(per_address.max(1)).min(254) as u8;
        return Sources { addresses: (1..=n).map(|i| IpAddr::from([127, 0, 0, i])).collect(), spread: true };
    }
    Sources::default()
}

/// The target's address as far as it is known without a lookup: the
/// built-in backend's, a literal address, or `localhost` (taken as
/// 127.0.0.1 here; a run checks again once it has resolved it).
pub fn predicted_ip(url: &TargetUrl) -> Option<IpAddr> {
    match url {
        TargetUrl::Builtin => Some(IpAddr::from([127, 0, 0, 1])),
        TargetUrl::Http { host, .. } if host.eq_ignore_ascii_case("localhost") => Some(IpAddr::from([127, 0, 0, 1])),
        TargetUrl::Http { host, .. } => host.parse().ok(),
    }
}

/// Connections needed by `s` at most, by mode.
pub fn connections_needed(s: &Scenario, shard: Option<Shard>) -> u64 {
    let all: u64 = s.fleets.iter().map(|f| f.devices).sum();
    // A shard has every count-th device (the first ones one more).
    let devices = shard.map_or(all, |sh| all.div_ceil(u64::from(sh.count)));
    match s.target.connections {
        ConnectionMode::PerDevice => devices,
        ConnectionMode::Pool(n) => u64::from(n).min(devices),
        // At most one per device in flight.
        ConnectionMode::NewPerRequest => devices,
    }
}

/// Raises the open-files limit as far as allowed and checks that the plan
/// (of one shard, if given) fits it and the local ports toward the target
/// (at `target_ip`, when known), choosing the source addresses.
pub fn check_resources(
    s: &Scenario,
    shard: Option<Shard>,
    target_ip: Option<IpAddr>,
) -> Result<ConnectionBudget, RunError> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let open_files = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024);
    let per_address = crate::transport::ports::PortRange::of_this_machine().per_address();
    let needed = connections_needed(s, shard);
    // The built-in backend holds the other end of each connection in this process.
    let files_per_connection = if s.target.url == TargetUrl::Builtin { 2 } else { 1 };
    let budget =
        ConnectionBudget { needed, open_files, per_address, sources: plan_sources(s, target_ip, needed, per_address) };
    let reserve = 200;
    if needed * files_per_connection + reserve > open_files {
        return Err(RunError::Invalid(format!(
            "the plan needs up to {needed} connections ({} open files{}) but this process may open {open_files} files; \
             raise the hard limit (ulimit -Hn), split the devices over shards (--shard I/N, one process each), lower \
             the device count, or use connections = {{ pool = N }}",
            needed * files_per_connection + reserve,
            if files_per_connection == 2 { ", both ends with the built-in backend" } else { "" }
        )));
    }
    // Each local address has its own port range toward the target.
    let sources = budget.sources.addresses.len().max(1) as u64;
    if s.target.connections == ConnectionMode::PerDevice && needed > budget.capacity() {
        let wanted = needed.div_ceil(per_address.max(1));
        return Err(RunError::Invalid(if sources == 1 {
            format!(
                "the plan needs {needed} concurrent connections to one address, but one source address carries \
                 {per_address} at full speed (half this machine's local port range, so that each connection can be \
                 opened again while its old port waits out TIME_WAIT); add target.source_addresses ({wanted} \
                 addresses, e.g. \"10.0.0.10-10.0.0.{}\" assigned to this machine; toward a loopback target \
                 fleetstorm spreads over 127.0.0.x by itself), split the devices over shards (--shard I/N), or use \
                 connections = {{ pool = N }}",
                9 + wanted
            )
        } else {
            format!(
                "the plan needs {needed} concurrent connections but {sources} source addresses × {per_address} \
                 connections each carry {}; add source addresses (at least {wanted}), split the devices over shards \
                 (--shard I/N), or use connections = {{ pool = N }}",
                budget.capacity(),
            )
        }));
    }
    Ok(budget)
}

/// Heartbeats walked at most to count a plan's exactly. Measured on the
/// 2-core box (release build, one thread, 800,000 devices for 60 s): 44
/// million jittered heartbeats in 0.25 s, Poisson ones in 0.5 s, Poisson
/// with an outage and a surge in 0.95 s; so an exact count takes about a
/// second at most, and beyond the budget the plan is estimated.
pub const WALK_BUDGET: u64 = 50_000_000;

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
fn first_indices(s: &Scenario) -> Vec<u64> {
    s.fleets
        .iter()
        .scan(0u64, |next, f| {
            let first = *next;
            *next += f.devices;
            Some(first)
        })
        .collect()
}

/// A fleet's devices in this process (`shard`'s, or all), in index order.
fn owned_devices(devices: u64, first: u64, shard: Option<Shard>) -> (u64, u64, u64) {
    // (first owned index, step, how many)
    match shard {
        None => (0, 1, devices),
        Some(sh) => {
            let n = u64::from(sh.count);
            let start = (u64::from(sh.index) + n - first % n) % n;
            (start, n, sh.owned_in(first, devices))
        }
    }
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
    let fleets = fleet_runtimes(s, seed);
    let end = s.duration.as_nanos() as u64;
    let secs = s.duration.as_secs_f64();
    let firsts = first_indices(s);
    let owned: Vec<(u64, u64, u64)> =
        s.fleets.iter().zip(&firsts).map(|(f, &first)| owned_devices(f.devices, first, shard)).collect();
    let rough: Vec<f64> = s.fleets.iter().zip(&owned).map(|(f, o)| rough_heartbeats(f, o.2, secs)).collect();
    // Walks device number `q` of the owned ones, within `limit`.
    let walk = |fleet: &FleetRuntime, (start, step, _): (u64, u64, u64), q: u64, limit: u64| {
        let index = start + q * step;
        let mut clock = crate::fleet::DeviceClock::new(seed, fleet.key, index);
        fleet.events.sends_before(&mut clock, &fleet.schedule, fleet.devices, index, end, limit)
    };
    // Exactly, when the rough figure leaves room and the walk keeps within the budget.
    if rough.iter().sum::<f64>() <= budget as f64 {
        let mut left = budget;
        let mut counts = Vec::with_capacity(fleets.len());
        'fleets: for (fleet, &o) in fleets.iter().zip(&owned) {
            let mut n = 0u64;
            for q in 0..o.2 {
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
        let devices = o.2;
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

/// Whether a fleet's schedule depends on the seed: Poisson arrivals,
/// jitter and events are drawn from it; a periodic beat is not.
fn schedule_depends_on_seed(f: &crate::scenario::Fleet) -> bool {
    f.schedule.arrival == crate::fleet::Arrival::Poisson || f.schedule.jitter > 0.0 || !f.events.is_empty()
}

/// The plan `validate` prints, for one shard's devices if given.
pub fn plan_text(s: &Scenario, shard: Option<Shard>) -> String {
    plan_text_within(s, shard, WALK_BUDGET)
}

/// [`plan_text`], walking at most `budget` heartbeats to count them.
pub fn plan_text_within(s: &Scenario, shard: Option<Shard>, budget: u64) -> String {
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
        "target {}{} (timeout {}, connections {})",
        s.target.url,
        s.target.path,
        crate::units::format_duration(s.target.timeout),
        s.target.connections
    );
    if let Some(sh) = shard {
        let _ = writeln!(out, "shard {sh}: this shard's devices, heartbeats and connections only");
    }
    // A run without a seed draws one: the counts are then for a stand-in.
    const STAND_IN_SEED: u64 = 0;
    let seed = s.seed.unwrap_or(STAND_IN_SEED);
    let expected = expected_heartbeats(s, seed, shard, budget);
    let _ = writeln!(
        out,
        "\n{:<24} {:>9} {:>11} {:>10} {:>10} {:>12} {:>12}",
        "fleet", "devices", "interval", "steady/s", "average/s", "heartbeats", "connections"
    );
    let count = |n: f64, counted: bool| if counted { format!("{n:.0}") } else { format!("≈{n:.0}") };
    let firsts = first_indices(s);
    let (mut total_rate, mut total_devices) = (0.0, 0);
    for ((f, &first), (&n, &how)) in s.fleets.iter().zip(&firsts).zip(expected.fleets.iter().zip(&expected.counted)) {
        let devices = owned_devices(f.devices, first, shard).2;
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
        let depends: Vec<&str> = s.fleets.iter().filter(|f| schedule_depends_on_seed(f)).map(|f| f.name()).collect();
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
    out
}

/// Each fleet's devices online over a run of `scenario` under `seed` (of
/// one shard's devices, if given): the one count the progress line and
/// `/metrics` show.
pub fn online_devices(scenario: &Scenario, seed: u64, shard: Option<Shard>) -> Vec<Online> {
    let firsts = first_indices(scenario);
    fleet_runtimes(scenario, seed)
        .iter()
        .zip(firsts)
        .map(|(f, first)| Online::new(&f.schedule, f.devices, &f.events, shard.map(|sh| (sh, first))))
        .collect()
}

/// The fleets of a scenario as the engine runs them under `seed`.
pub fn fleet_runtimes(scenario: &Scenario, seed: u64) -> Vec<FleetRuntime> {
    scenario
        .fleets
        .iter()
        .map(|f| {
            let generator = f.generator(seed);
            let key = generator.key();
            FleetRuntime {
                events: FleetEvents::new(&f.events, f.devices, f.schedule.interval, key),
                retry: f.retry,
                ..FleetRuntime::new(generator, f.schedule, f.devices, f.stale_after())
            }
        })
        .collect()
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
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let fleets = fleet_runtimes(scenario, seed);
    let end = scenario.duration.as_nanos() as u64;
    let mut clocks = Vec::new();
    let mut heap = BinaryHeap::new();
    let mut global = 0u64;
    for (f, fleet) in fleets.iter().enumerate() {
        for index in 0..fleet.devices {
            global += 1;
            if shard.is_some_and(|s| !s.owns(global - 1)) {
                continue;
            }
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

/// The transport options a target asks for: TLS (its files read now),
/// SigV4 (its credentials found now), HTTP version, source addresses.
pub fn endpoint_options(t: &crate::scenario::Target, host: &str) -> Result<EndpointOptions, RunError> {
    let tls = match &t.url {
        TargetUrl::Http { tls: true, .. } => {
            Some(crate::transport::tls::client(&t.tls, host, t.http).map_err(RunError::Invalid)?)
        }
        _ => None,
    };
    let signer = match &t.sigv4 {
        Some(s) => Some(crate::transport::Signer::new(s).map_err(RunError::Invalid)?),
        None => None,
    };
    Ok(EndpointOptions {
        keep_alive: t.connections != ConnectionMode::NewPerRequest,
        http2: t.http == HttpVersion::Http2,
        tls,
        signer,
        sources: t.source_addresses.clone(),
    })
}

/// What a run should keep beyond its report.
#[derive(Debug, Clone, Default)]
pub struct ExecuteOptions {
    /// Keep every second's latency histogram (for `--hlog`).
    pub keep_second_histograms: bool,
    /// Generator threads; by default [`default_threads`].
    pub threads: Option<usize>,
    /// Run this long before measuring: the report's totals cover the rest
    /// of the run (its timeline, all of it).
    pub warmup: Duration,
    /// Run only this shard's devices; the report says which shard it is.
    pub shard: Option<Shard>,
    /// Start the clock at this instant, once every device is built; fail
    /// with [`RunError::NotReady`] if it passes first.
    pub start_at: Option<std::time::SystemTime>,
    /// Cancelled to give up at once (a second Ctrl-C): the report is of
    /// what was merged so far, marked interrupted.
    pub abandon: Option<CancellationToken>,
}

/// Heartbeats per second one generator thread is given, over kept-alive
/// plain HTTP/1.1 connections (the lean client, [`crate::transport::h1`]).
/// Threads cost wake-ups and hand-offs, and against a target on the same
/// small machine they take its cores: with nginx on the same two cores,
/// one thread kept up with 80,000/s (about 9 µs of CPU per heartbeat) where
/// two fell behind at 90,000/s.
const RATE_PER_THREAD: f64 = 75_000.0;

/// The same over hyper's connections (TLS, HTTP/2) or with SigV4 signing:
/// what these were given before the lean client, half of the 25,000/s a
/// thread then carried over hyper's plain HTTP/1.1.
const RATE_PER_THREAD_HYPER: f64 = 12_500.0;

/// How many generator threads a scenario gets unless told: enough for its
/// offered rate (75,000/s per thread, less per thread when every heartbeat
/// costs more: TLS, HTTP/2, a new connection each), at most one per core.
/// Fleets with events (surges, synchronized returns) get every core, since
/// their peaks are far above their average. A target on this machine keeps
/// a core for itself: generator threads that take its cores slow it down
/// and fall behind themselves.
pub fn default_threads(scenario: &Scenario) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cores = if scenario.target.url.is_local() { (cores - 1).max(1) } else { cores };
    if scenario.fleets.iter().any(|f| !f.events.is_empty()) {
        return cores;
    }
    let t = &scenario.target;
    let mut per_thread = RATE_PER_THREAD;
    if matches!(t.url, TargetUrl::Http { tls: true, .. }) || t.http == HttpVersion::Http2 || t.sigv4.is_some() {
        per_thread = RATE_PER_THREAD_HYPER;
    }
    if t.connections == ConnectionMode::NewPerRequest {
        per_thread /= 10.0;
    }
    let rate: f64 = scenario.fleets.iter().map(|f| f.schedule.rate(f.devices)).sum();
    ((rate / per_thread).ceil() as usize).clamp(1, cores)
}

/// A finished run: its report, and what else was asked for.
#[derive(Debug)]
pub struct Executed {
    pub report: Report,
    /// Each timeline entry's (start second, width, latency histogram
    /// (V2 + DEFLATE)), when kept.
    pub second_histograms: Vec<(u64, u64, Option<Vec<u8>>)>,
}

/// Runs a checked scenario and builds its report, with its thresholds
/// checked. `cancel` stops it early (Ctrl-C); an abort threshold that
/// fires cancels it too. `progress` is called a few times a second.
pub async fn execute(
    scenario: &Scenario,
    seed: u64,
    cancel: CancellationToken,
    progress: impl FnMut(&Live<'_>),
) -> Result<Report, RunError> {
    Ok(execute_with(scenario, seed, cancel, ExecuteOptions::default(), progress).await?.report)
}

/// [`execute`], keeping what `options` asks for.
pub async fn execute_with(
    scenario: &Scenario,
    seed: u64,
    cancel: CancellationToken,
    options: ExecuteOptions,
    mut progress: impl FnMut(&Live<'_>),
) -> Result<Executed, RunError> {
    check_resources(scenario, options.shard, predicted_ip(&scenario.target.url))?;
    let max_interval = scenario.fleets.iter().map(|f| f.schedule.interval).max().unwrap_or_default();
    let mut builtin = None;
    let (addr, host) = match &scenario.target.url {
        TargetUrl::Builtin => {
            // Keep-alive must outlast the longest heartbeat period, or
            // devices would race the server's idle close.
            let keep = (max_interval * 2 + Duration::from_secs(5)).max(Duration::from_secs(75));
            let config = ServeConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                header_timeout: keep,
                idle_timeout: keep,
                ..ServeConfig::default()
            };
            let running = server::spawn(config)
                .await
                .map_err(|e| RunError::Failed(format!("cannot start the built-in backend: {e}")))?;
            let addr = running.addr;
            builtin = Some(running);
            (addr, "127.0.0.1".to_string())
        }
        TargetUrl::Http { host, port, .. } => {
            let addr = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|e| RunError::Failed(format!("cannot resolve {host}: {e}")))?
                .next()
                .ok_or_else(|| RunError::Failed(format!("{host} resolves to no address")))?;
            (addr, host.clone())
        }
    };
    let target_url = match &scenario.target.url {
        TargetUrl::Builtin => format!("builtin (http://{addr})"),
        other => other.to_string(),
    };
    // Now that the address is known: the sources toward it, checked again.
    let budget = check_resources(scenario, options.shard, Some(addr.ip()))?;
    let t = &scenario.target;
    let endpoint = Endpoint::new(
        addr,
        &host,
        &t.path,
        t.headers.iter().map(|h| (h.name.clone(), h.value.clone())),
        t.timeout,
        EndpointOptions { sources: budget.sources.addresses.clone(), ..endpoint_options(t, &host)? },
    )
    .map_err(RunError::Invalid)?;
    let transport = Http::new(endpoint);
    let endpoint = transport.endpoint().clone();
    let fleets = fleet_runtimes(scenario, seed);
    let workers = options.threads.unwrap_or_else(|| default_threads(scenario));
    let settings = EngineSettings {
        duration: scenario.duration,
        connections: t.connections,
        workers,
        seed,
        precise_timer: true,
        thread_per_worker: true,
        keep_second_histograms: options.keep_second_histograms,
        cohorts: scenario.breakdown.contains(&crate::scenario::Breakdown::AgentVersion),
        measure_after: options.warmup,
        shard: options.shard,
        start_at: options.start_at,
        drain: t.timeout,
        abandon: options.abandon.clone(),
    };
    let mut watch = AbortWatch::new(scenario, cancel.clone());
    let mut output = engine::run(transport, fleets, settings, cancel, |live| {
        watch.observe(live);
        progress(live);
    })
    .await;
    let abandoned = options.abandon.as_ref().is_some_and(CancellationToken::is_cancelled);
    let backend = match builtin {
        Some(server) => {
            let stats = server.shared.stats_json();
            // Given up on: no waiting for its connections to close.
            if !abandoned {
                server.shutdown().await;
            }
            Some(stats)
        }
        None => None,
    };
    if let Some(late) = output.not_ready_by {
        return Err(RunError::NotReady(format!(
            "not ready at the start instant: the devices were built {:.3} s after it; nothing was sent \
             (start later, or give the shard more CPU)",
            late.as_secs_f64()
        )));
    }
    let mut report = Report::new(scenario, seed, &target_url, &output, backend);
    if let (Some(at), Some(lag)) = (options.start_at, output.start_lag) {
        report.start = Some(crate::report::StartInfo {
            at: humantime::format_rfc3339_millis(at).to_string(),
            lag_ms: lag.as_secs_f64() * 1000.0,
        });
    }
    report.shard = options.shard.map(|s| crate::report::ShardInfo {
        index: s.index,
        count: s.count,
        scenario_hash: scenario.hash(seed),
    });
    report.first_errors = endpoint.first_errors();
    if budget.sources.spread {
        let t = &mut report.scenario.target;
        t.source_addresses = budget.sources.addresses.iter().map(IpAddr::to_string).collect();
        t.sources_spread = true;
    }
    report.thresholds = scenario
        .thresholds
        .all()
        .map(|(t, abort)| match watch.fired.as_ref().filter(|(fired, _)| abort && fired.expr == t.expr()) {
            Some((_, result)) => result.clone(),
            None => report.check(t, abort),
        })
        .collect();
    report.aborted = watch.fired.map(|(aborted, _)| aborted);
    let second_histograms = output.timeline.iter_mut().map(|s| (s.start_s, s.width_s, s.histogram.take())).collect();
    Ok(Executed { report, second_histograms })
}

/// Checks abort thresholds during a run, about once a second after the
/// grace period, and cancels the run when one fires.
struct AbortWatch<'s> {
    scenario: &'s Scenario,
    cancel: CancellationToken,
    last_check: Option<Duration>,
    fired: Option<(Aborted, ThresholdResult)>,
}

impl<'s> AbortWatch<'s> {
    fn new(scenario: &'s Scenario, cancel: CancellationToken) -> Self {
        AbortWatch { scenario, cancel, last_check: None, fired: None }
    }

    fn observe(&mut self, live: &Live<'_>) {
        let t = &self.scenario.thresholds;
        if t.abort.is_empty() || self.fired.is_some() || live.elapsed < t.abort_grace {
            return;
        }
        if self.last_check.is_some_and(|at| live.elapsed < at + Duration::from_secs(1)) {
            return;
        }
        self.last_check = Some(live.elapsed);
        let seconds = live.elapsed.min(live.duration).as_secs_f64();
        let mut all = Recorder::default();
        live.fleets.iter().for_each(|f| all.add(f));
        for threshold in &t.abort {
            let stats = match &threshold.metric.fleet {
                None => Stats::live(None, &all, seconds),
                Some(name) => match self.scenario.fleets.iter().position(|f| f.name() == name) {
                    Some(i) => Stats::live(Some(name.clone()), &live.fleets[i], seconds),
                    None => continue,
                },
            };
            let result = stats.check(threshold, true);
            if !result.ok {
                let aborted =
                    Aborted { expr: result.expr.clone(), actual_text: result.actual_text.clone(), at_s: seconds };
                self.fired = Some((aborted, result));
                self.cancel.cancel();
                return;
            }
        }
    }
}

/// Live progress on stderr: an indicatif line on a terminal, a plain status
/// line every 5 s otherwise, nothing when quiet.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last_plain: Option<std::time::Instant>,
    /// Each fleet's devices online ([`online_devices`]).
    online: Vec<Online>,
}

impl Progress {
    /// `online`: each fleet's devices as this process runs them ([`online_devices`]).
    pub fn new(scenario: &Scenario, quiet: bool, online: Vec<Online>) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let bar = indicatif::ProgressBar::new(scenario.duration.as_millis() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:24} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Progress { bar, plain: !quiet && !terminal, last_plain: None, online }
    }

    /// Draws one update.
    pub fn update(&mut self, live: &Live<'_>) {
        if self.bar.is_none() && !self.plain {
            return;
        }
        if self.plain && self.last_plain.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
            return;
        }
        let elapsed = live.elapsed.min(live.duration);
        let online: u64 = self.online.iter().map(|o| o.at(elapsed)).sum();
        let total: u64 = self.online.iter().map(Online::devices).sum();
        let mut all = Recorder::default();
        for f in live.fleets {
            all.add(f);
        }
        // The last whole second of the timeline, for the rates.
        let last = live.timeline.len().checked_sub(2).and_then(|i| live.timeline.get(i));
        let (offered, achieved) = last.map_or((0, 0), |s| (s.scheduled, s.sent));
        let c = &all.counters;
        let line = format!(
            "{:.0}/{:.0}s | online {online}/{total} | offered {offered}/s achieved {achieved}/s | ok {} failed {} missed {} | p99 {:.1} ms | in flight {}",
            elapsed.as_secs_f64(),
            live.duration.as_secs_f64(),
            c.ok(),
            c.failed(),
            c.missed,
            Percentiles::of(&all.latency).p99,
            live.in_flight
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(elapsed.as_millis() as u64);
                bar.set_message(line);
            }
            None => {
                eprintln!("{line}");
                self.last_plain = Some(std::time::Instant::now());
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{self, Format};

    fn threads(url: &str, devices: u64, extra: &str) -> usize {
        let text = format!(
            "[target]\nurl = \"{url}\"\n{extra}\n[[fleets]]\nname = \"f\"\ndevices = {devices}\ninterval = \"1s\"\n"
        );
        default_threads(&scenario::parse(&text, Format::Toml, "t.toml", "t").unwrap())
    }

    #[test]
    fn threads_follow_the_rate_and_leave_a_local_target_a_core() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let local_cores = (cores - 1).max(1);
        // One thread carries 75,000/s on the lean client.
        assert_eq!(threads("http://10.0.0.1:80", 70_000, ""), 1);
        assert_eq!(threads("http://10.0.0.1:80", 1_000_000, ""), cores.min(14));
        // A target on this machine keeps a core.
        assert_eq!(threads("http://127.0.0.1:80", 1_000_000, ""), local_cores);
        assert_eq!(threads("builtin", 1_000_000, ""), local_cores);
        // TLS costs more per heartbeat: fewer heartbeats per thread.
        assert_eq!(threads("https://10.0.0.1:443", 20_000, ""), 2.min(cores));
        assert_eq!(threads("http://10.0.0.1:80", 20_000, "connections = \"new-per-request\""), 3.min(cores));
    }
}
