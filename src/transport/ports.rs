//! Local ports for new connections, chosen by fleetstorm instead of by the
//! kernel inside `connect()`.
//!
//! Linux searches the ephemeral range for a free port inside `connect()`,
//! on the calling thread: the generator's worker. Toward one destination
//! that search is cheap while the even half of the range lasts and slow
//! after it. Measured here (`benches/connect_ports.sh`, BENCHMARKS.md): 12
//! µs per connection up to 13,500 connections to 127.0.0.1, then 1.2 ms
//! each from 14,000 on, with or without `IP_BIND_ADDRESS_NO_PORT` — 18,000
//! per-device connections froze a worker's schedule for seconds.
//!
//! So each new socket is bound to a port fleetstorm hands out in turn
//! from the ephemeral range (a cursor per source address, shared by the
//! workers, starting at a random place so that processes sharing an
//! address rarely collide). `SO_REUSEADDR` lets one local port serve
//! different destinations, as the kernel's own choice would; a port the
//! kernel refuses (bound by a listener, or its 4-tuple still in
//! `TIME_WAIT`) is skipped. `connect()` then stays at 12 µs through 27,500
//! connections to one address. After [`ATTEMPTS`] refusals in a row it
//! falls back to the kernel's choice.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use tokio::net::{TcpSocket, TcpStream};

/// Ports tried for one connection before the kernel chooses.
pub const ATTEMPTS: usize = 64;

/// The machine's ephemeral port range (`net.ipv4.ip_local_port_range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Linux's default, when the range cannot be read.
    pub const DEFAULT: PortRange = PortRange { first: 32768, last: 60999 };

    /// This machine's range.
    pub fn of_this_machine() -> PortRange {
        Self::read().unwrap_or(Self::DEFAULT)
    }

    fn read() -> Option<PortRange> {
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
        let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
        let (first, last) = (parts.next()??, parts.next()??);
        (first <= last).then_some(PortRange { first, last })
    }

    /// How many ports it holds.
    pub fn len(&self) -> u32 {
        u32::from(self.last - self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The connections one source address is planned to carry toward one
    /// destination: half the range, so that each can be opened again once
    /// while its old port waits out `TIME_WAIT` (a reconnect after an
    /// outage), at the allocator's full speed.
    pub fn per_address(&self) -> u64 {
        u64::from(self.len() / 2)
    }
}

/// One source address and its cursor over the range.
#[derive(Debug)]
struct Source {
    ip: IpAddr,
    cursor: AtomicU32,
}

/// The local addresses and ports new connections leave from.
#[derive(Debug)]
pub struct LocalPorts {
    sources: Vec<Source>,
    next_source: AtomicUsize,
    range: PortRange,
}

impl LocalPorts {
    /// Ports of `range` from each of `sources` in turn (none given: the
    /// unspecified address of `target`'s family, the system's choice of
    /// source address).
    pub fn new(sources: &[IpAddr], target: SocketAddr, range: PortRange) -> LocalPorts {
        let any: IpAddr = if target.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
        let ips = if sources.is_empty() { vec![any] } else { sources.to_vec() };
        LocalPorts {
            sources: ips.into_iter().map(|ip| Source { ip, cursor: AtomicU32::new(rand::random::<u32>()) }).collect(),
            next_source: AtomicUsize::new(0),
            range,
        }
    }

    /// The source addresses connections leave from, as given.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.sources.iter().map(|s| s.ip)
    }

    /// Connects to `target` from the next source address, on a port of its
    /// own (see the module docs). `Err` with the failed step's words.
    pub async fn connect(&self, target: SocketAddr) -> Result<TcpStream, ConnectError> {
        let source = &self.sources[self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len()];
        for _ in 0..ATTEMPTS {
            let offset = source.cursor.fetch_add(1, Ordering::Relaxed) % self.range.len();
            let port = self.range.first + offset as u16;
            let socket = new_socket(target).map_err(ConnectError::Socket)?;
            let _ = socket.set_reuseaddr(true);
            match socket.bind(SocketAddr::new(source.ip, port)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(ConnectError::Bind(source.ip, e)),
            }
            match socket.connect(target).await {
                Ok(stream) => return Ok(stream),
                // This 4-tuple is taken (still in TIME_WAIT): the next port.
                Err(e) if matches!(e.kind(), io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse) => continue,
                Err(e) => return Err(ConnectError::Connect(e)),
            }
        }
        // The range looks full from here: let the kernel search it.
        let socket = new_socket(target).map_err(ConnectError::Socket)?;
        if !source.ip.is_unspecified() {
            socket.bind(SocketAddr::new(source.ip, 0)).map_err(|e| ConnectError::Bind(source.ip, e))?;
        }
        socket.connect(target).await.map_err(ConnectError::Connect)
    }
}

fn new_socket(target: SocketAddr) -> io::Result<TcpSocket> {
    if target.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
}

/// Which step of opening a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot open a socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot bind source address {0}: {1}")]
    Bind(IpAddr, #[source] io::Error),
    #[error("{0}")]
    Connect(#[source] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_get_ports_of_the_range_in_turn_and_skip_taken_ones() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let range = PortRange::of_this_machine();
        let ports = LocalPorts::new(&["127.0.0.1".parse().unwrap()], target, range);
        // A port the cursor is about to hand out, taken by a listener: skipped.
        let next = range.first + (ports.sources[0].cursor.load(Ordering::Relaxed) % range.len()) as u16;
        let squatter = std::net::TcpListener::bind(("127.0.0.1", next));
        let mut seen = Vec::new();
        for _ in 0..5 {
            let s = ports.connect(target).await.unwrap();
            let local = s.local_addr().unwrap();
            assert_eq!(local.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
            assert!((range.first..=range.last).contains(&local.port()), "{local}");
            seen.push(local.port());
            let _ = listener.accept().await.unwrap();
        }
        if squatter.is_ok() {
            assert!(!seen.contains(&next), "the taken port {next} was skipped: {seen:?}");
        }
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "each connection its own port: {seen:?}");
    }

    #[test]
    fn the_plan_keeps_half_the_range_per_address_for_reconnects() {
        assert_eq!(PortRange::DEFAULT.len(), 28_232);
        assert_eq!(PortRange::DEFAULT.per_address(), 14_116);
    }
}
