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
        return Err(RunError::Plan(format!(
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
