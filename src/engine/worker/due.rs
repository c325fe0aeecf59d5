//! What a worker's parts hand each other: a heartbeat ready to go, one
//! waiting for a connection, and how many connections one trip may open.
//! A leaf, so that the worker and its connection, retry and session parts
//! share these without using each other in a loop.

/// A heartbeat (or one of its retries) ready to go.
#[derive(Debug, Clone, Copy)]
pub(super) struct Due {
    pub(super) slot: u32,
    pub(super) intended_ns: u64,
    /// When it could go: its intended time, when its device became free,
    /// or (a retry) when its wait ended.
    pub(super) eligible_ns: u64,
    /// 0 for the first attempt, n for retry n.
    pub(super) attempt: u8,
}

/// A heartbeat waiting for a pooled connection (or for its turn to open
/// one).
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiter {
    pub(super) due: Due,
    /// When the generator got to it and found it could not go.
    pub(super) queued_ns: u64,
}

/// The most exchanges on a new connection a worker starts per trip round
/// its loop. Opening a connection costs the worker's thread tens of
/// microseconds (the socket, its port, the handshake on loopback): 15,000
/// devices reconnecting at one instant cost it half a second, during
/// which the schedule of devices already connected stood still (their lag
/// p99 218 ms). Past this many per trip the rest wait their turn (their
/// wait is the generator's lateness: schedule lag), and each trip's
/// connection work stays a few milliseconds.
pub(crate) const MAX_CONNECTS_PER_TRIP: u32 = 256;
