//! What a run needs of the machine, checked before it starts: open files,
//! and local ports toward the target (and the source addresses that give
//! them).

use std::net::IpAddr;

use super::error::RunError;
use crate::scenario::{Scenario, TargetUrl};
use crate::shard::{OwnedDevices, Shard};
use crate::transport::settings::ConnectionMode;

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
        TargetUrl::Http { host, .. } | TargetUrl::Mqtt { host, .. } if host.eq_ignore_ascii_case("localhost") => {
            Some(IpAddr::from([127, 0, 0, 1]))
        }
        TargetUrl::Http { host, .. } | TargetUrl::Mqtt { host, .. } => host.parse().ok(),
    }
}

/// Connections needed by `s` at most, by mode.
pub fn connections_needed(s: &Scenario, shard: Option<Shard>) -> u64 {
    let all: u64 = s.fleets.iter().map(|f| f.devices).sum();
    let devices = OwnedDevices::of(shard, 0, all).count;
    match s.target.connections {
        ConnectionMode::PerDevice => devices,
        ConnectionMode::Pool(n) => u64::from(n).min(devices),
        // At most one per device in flight.
        ConnectionMode::NewPerRequest => devices,
    }
}

/// What the machine allows a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open files the process may have (its soft limit).
    pub open_files: u64,
    /// See [`ConnectionBudget::per_address`].
    pub per_address: u64,
}

impl Limits {
    /// This process's, once it has raised its open-files limit as far as
    /// it may (the soft limit to the hard one).
    pub fn of_this_process() -> Limits {
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        Limits {
            open_files: rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024),
            per_address: crate::transport::ports::PortRange::of_this_machine().per_address(),
        }
    }
}

/// Open files kept free of connections (the scenario's files, outputs,
/// listeners, the runtime's own).
const RESERVE_FILES: u64 = 200;

/// Raises the open-files limit as far as allowed and checks that the plan
/// (of one shard, if given) fits it and the local ports toward the target
/// (at `target_ip`, when known), choosing the source addresses.
pub fn check_resources(
    s: &Scenario,
    shard: Option<Shard>,
    target_ip: Option<IpAddr>,
) -> Result<ConnectionBudget, RunError> {
    check_within(s, shard, target_ip, Limits::of_this_process())
}

/// [`check_resources`] against `limits` (a test's, or this process's).
pub fn check_within(
    s: &Scenario,
    shard: Option<Shard>,
    target_ip: Option<IpAddr>,
    limits: Limits,
) -> Result<ConnectionBudget, RunError> {
    let Limits { open_files, per_address } = limits;
    let needed = connections_needed(s, shard);
    // The built-in backend holds the other end of each connection in this process.
    let files_per_connection = if s.target.url == TargetUrl::Builtin { 2 } else { 1 };
    let budget =
        ConnectionBudget { needed, open_files, per_address, sources: plan_sources(s, target_ip, needed, per_address) };
    if needed * files_per_connection + RESERVE_FILES > open_files {
        return Err(RunError::Plan(too_many_files(s, shard, needed, files_per_connection, open_files)));
    }
    // Each local address has its own port range toward the target.
    let sources = budget.sources.addresses.len().max(1) as u64;
    if s.target.connections == ConnectionMode::PerDevice && needed > budget.capacity() {
        let wanted = needed.div_ceil(per_address.max(1));
        return Err(RunError::Plan(if sources == 1 {
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

/// The refusal of a plan that needs more open files than `open_files`,
/// placed in the scenario as its other errors are: at the `devices` of the
/// fleet that needs the most (saying what each fleet needs), or at the
/// target's `connections` when a pool sets the count. The file's line is
/// quoted under it unless a count was scaled (`--devices-scale`, a
/// capacity step: the line then says another number, and a capacity
/// step's reason is one line of a table).
fn too_many_files(s: &Scenario, shard: Option<Shard>, needed: u64, per_connection: u64, open_files: u64) -> String {
    let files = needed * per_connection + RESERVE_FILES;
    let mut message = format!(
        "the plan needs up to {needed} connections ({files} open files{}) but this process may open {open_files} files",
        if per_connection == 2 { ", both ends with the built-in backend" } else { "" }
    );
    let mqtt = s.protocol() == crate::transport::Protocol::Mqtt;
    let raise = "raise the open-file limit (ulimit -n; past the hard limit, ulimit -Hn as root, or LimitNOFILE for \
                 a service)";
    let shards = "shard the devices across processes (--shard I/N, one process each)";
    let (located, scaled) = if let ConnectionMode::Pool(n) = s.target.connections {
        message.push_str(&format!(": a pool of {n}; use a smaller pool, {raise}, or {shards}"));
        (s.error_at_target("connections", &message), false)
    } else {
        // Each fleet's devices in this process (its shard's share).
        let mut first = 0;
        let owned: Vec<u64> = s
            .fleets
            .iter()
            .map(|f| {
                let n = OwnedDevices::of(shard, first, f.devices).count;
                first += f.devices;
                n
            })
            .collect();
        let largest = (0..owned.len()).max_by_key(|&i| (owned[i], std::cmp::Reverse(i))).unwrap_or(0);
        let what = if mqtt { "sessions" } else { "connections" };
        let share = shard.map(|sh| format!(" in shard {sh}")).unwrap_or_default();
        let scaled = s.fleets.iter().enumerate().any(|(i, f)| s.source.devices(i).is_some_and(|n| n != f.devices));
        let each: Vec<String> = s
            .fleets
            .iter()
            .zip(&owned)
            .enumerate()
            .map(|(i, (f, n))| {
                let from = match s.source.devices(i) {
                    Some(written) if written != f.devices => format!(" (devices = {written}, scaled)"),
                    _ => String::new(),
                };
                if i == 0 {
                    format!("fleet {:?} needs {n} {what}{share}{from}", f.name())
                } else {
                    format!("fleet {:?} {n}{from}", f.name())
                }
            })
            .collect();
        let pool = if mqtt { "" } else { ", or use connections = { pool = N }" };
        message.push_str(&format!(
            ": {} (one per device); run fewer devices (devices), {raise}, or {shards}{pool}",
            each.join(", ")
        ));
        (s.error_at_fleet(largest, "devices", &message), scaled)
    };
    let said = located.to_string();
    if scaled {
        // The first line: the place and the message, without the quote.
        said.split('\n').next().unwrap_or_default().to_string()
    } else {
        said
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{self, Format};

    /// Limits of a test, whatever this machine's.
    const SMALL: Limits = Limits { open_files: 256, per_address: 28_000 };

    fn refusal(text: &str, format: Format, shard: Option<Shard>) -> String {
        let s = scenario::parse(text, format, "fleets.toml", "t").unwrap();
        match check_within(&s, shard, predicted_ip(&s.target.url), SMALL) {
            Err(RunError::Plan(said)) => said,
            other => panic!("not refused: {other:?}"),
        }
    }

    const MQTT: &str = "name = \"files\"\n[target]\nurl = \"builtin\"\n\
                        [[fleets]]\nname = \"meters\"\ndevices = 12\nprofile = \"mqtt\"\n\
                        [[fleets]]\nname = \"tags\"\ndevices  =  300\nprofile = \"mqtt\"\n";

    #[test]
    fn the_open_files_refusal_is_placed_at_the_largest_fleet_s_devices() {
        let said = refusal(MQTT, Format::Toml, None);
        let mut lines = said.lines();
        let first = lines.next().unwrap();
        assert!(
            first.starts_with("fleets.toml:10:13: fleets[1].devices: the plan needs up to 312 connections"),
            "{said}"
        );
        for part in [
            "(824 open files, both ends with the built-in backend) but this process may open 256 files",
            "fleet \"meters\" needs 12 sessions, fleet \"tags\" 300 (one per device);",
            "run fewer devices (devices)",
            "ulimit -n",
            "--shard I/N",
        ] {
            assert!(first.contains(part), "{part:?} in {said}");
        }
        assert!(!first.contains("pool"), "an MQTT fleet has no pool: {said}");
        // The line quoted, the value marked, as every scenario error is.
        assert_eq!(lines.collect::<Vec<_>>(), ["   |", "10 | devices  =  300", "   |             ^"], "{said}");
    }

    #[test]
    fn a_shard_s_share_is_what_it_needs_and_json_is_placed_too() {
        let json = "{\"target\": {\"url\": \"builtin\"},\n \"fleets\": [\n  {\"name\": \"a\", \"devices\": 40},\n  \
                    {\"name\": \"b\",\n   \"devices\": 400}]}\n";
        let said = refusal(json, Format::Json, Some(Shard::parse("0/2").unwrap()));
        assert!(
            said.starts_with("fleets.toml:5:15: fleets[1].devices: the plan needs up to 220 connections"),
            "{said}"
        );
        assert!(
            said.contains("fleet \"a\" needs 20 connections in shard 0/2, fleet \"b\" 200 (one per device);"),
            "{said}"
        );
        assert!(said.contains("or use connections = { pool = N }"), "HTTP connections may be pooled: {said}");
    }

    #[test]
    fn a_scaled_count_is_said_on_one_line() {
        let mut s = scenario::parse(MQTT, Format::Toml, "fleets.toml", "t").unwrap();
        s.fleets[0].set_devices(120).unwrap();
        let Err(RunError::Plan(said)) = check_within(&s, None, None, SMALL) else { panic!("not refused") };
        assert!(!said.contains('\n'), "{said}");
        assert!(said.starts_with("fleets.toml:10:13: fleets[1].devices: "), "{said}");
        assert!(
            said.contains(
                "fleet \"meters\" needs 120 sessions (devices = 12, scaled), fleet \"tags\" 300 (one per device);"
            ),
            "{said}"
        );
    }

    #[test]
    fn a_pool_too_large_is_placed_at_the_target_s_connections() {
        let text = "[target]\nurl = \"http://127.0.0.1:9\"\nconnections = { pool = 900 }\n\
                    [[fleets]]\nname = \"a\"\ndevices = 1000\n";
        let said = refusal(text, Format::Toml, None);
        assert!(
            said.starts_with("fleets.toml:3:15: target.connections: the plan needs up to 900 connections"),
            "{said}"
        );
        assert!(said.contains("a pool of 900; use a smaller pool"), "{said}");
    }

    #[test]
    fn a_plan_within_the_limits_passes() {
        let s = scenario::parse(&MQTT.replace("300", "10"), Format::Toml, "fleets.toml", "t").unwrap();
        let budget = check_within(&s, None, None, SMALL).unwrap();
        assert_eq!((budget.needed, budget.open_files), (22, 256));
    }
}
