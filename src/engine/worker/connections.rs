//! A worker's connections, behind one type for every mode: each device's
//! own (`per-device`), none kept (`new-per-request`), the worker's share
//! of a pool of kept HTTP/1 connections, or of shared HTTP/2 ones.
//!
//! An exchange [`checkout`](Connections::checkout)s what it goes on: an
//! open connection to use, a new one to open, a wait for a pooled one, or
//! a later trip (new connections are opened at most
//! [`MAX_CONNECTS_PER_TRIP`] per trip round the worker's loop, so that a
//! reconnect storm does not hold the schedule); when it ends, it
//! [`checkin`](Connections::checkin)s what it has left.

use std::collections::VecDeque;

use super::due::{MAX_CONNECTS_PER_TRIP, Waiter};
use crate::transport::Transport;
use crate::transport::settings::ConnectionMode;

/// What an exchange goes on.
#[derive(Debug)]
pub(super) enum Checkout<C> {
    /// An open connection (the device's, an idle pooled one, or a share
    /// of a live HTTP/2 one).
    Use(C),
    /// None: the exchange opens one.
    Open,
    /// The pool is full: wait for a connection to come back.
    Wait,
    /// A new connection is needed and this trip's turns are used up: the
    /// next trip (a pool's opening place is kept for it).
    Later,
}

/// One device's own connection (per-device mode).
#[derive(Debug)]
struct DeviceConn<C> {
    conn: Option<C>,
    /// Not to be used again (the device came back from a silence): closed
    /// when the device next connects, so that a whole fleet's closes are
    /// spread as its connects are.
    stale: bool,
    /// Exchanges out on shares of its session (one that carries several
    /// heartbeats at once).
    shares: u16,
}

/// A worker's connections and the heartbeats waiting for one.
pub(super) struct Connections<C> {
    mode: ConnectionMode,
    /// Shared HTTP/2 connections (a pool's connections carry several
    /// exchanges at once).
    multiplexed: bool,
    /// This worker's share of the pool.
    pool_size: u32,
    /// Per-device mode: each device's, by slot.
    devices: Vec<DeviceConn<C>>,
    /// Pool mode: idle connections (HTTP/2: the live, shared ones).
    idle: Vec<C>,
    /// Pool mode: connections open (HTTP/2: being opened).
    open: u32,
    /// HTTP/2 pools: which shared connection the next exchange takes.
    next_shared: usize,
    /// Heartbeats waiting for a pooled connection, in order.
    pub(super) waiting: VecDeque<Waiter>,
    /// Heartbeats waiting for their turn to connect, in order.
    pub(super) connect_queue: VecDeque<Waiter>,
    /// New connections begun this trip.
    connects_this_trip: u32,
}

impl<C> Connections<C> {
    pub(super) fn new(mode: ConnectionMode, multiplexed: bool, pool_size: u32) -> Connections<C> {
        Connections {
            mode,
            multiplexed,
            pool_size,
            devices: Vec::new(),
            idle: Vec::new(),
            open: 0,
            next_shared: 0,
            waiting: VecDeque::new(),
            connect_queue: VecDeque::new(),
            connects_this_trip: 0,
        }
    }

    /// Room for one more device (its slot is the count so far).
    pub(super) fn add_device(&mut self) {
        if self.mode == ConnectionMode::PerDevice {
            self.devices.push(DeviceConn { conn: None, stale: false, shares: 0 });
        }
    }

    /// A pool's connection opened before the start.
    pub(super) fn preopened(&mut self, conn: C) {
        // A kept HTTP/1 connection counts as open; a shared HTTP/2 one is
        // simply live.
        if !self.multiplexed {
            self.open += 1;
        }
        self.idle.push(conn);
    }

    /// Device `slot`'s connection is not to be used again.
    pub(super) fn mark_stale(&mut self, slot: u32) {
        if let Some(d) = self.devices.get_mut(slot as usize) {
            d.stale = true;
        }
    }

    /// Whether device `slot` has a connection in its place (per-device mode).
    pub(super) fn has_conn(&self, slot: u32) -> bool {
        self.devices.get(slot as usize).is_some_and(|d| d.conn.is_some())
    }

    /// Device `slot`'s open connection, out of its place for an idle wait
    /// (per-device mode; none if it is stale: its next heartbeat replaces
    /// it). It comes back with [`Connections::checkin`].
    pub(super) fn take_idle(&mut self, slot: u32) -> Option<C> {
        let d = self.devices.get_mut(slot as usize)?;
        if d.stale { None } else { d.conn.take() }
    }

    /// A new trip round the worker's loop: new connections may begin again.
    pub(super) fn new_trip(&mut self) {
        self.connects_this_trip = 0;
    }

    /// Whether a new connection may begin this trip (and counts it).
    fn connect_turn(&mut self) -> bool {
        let turn = self.connects_this_trip < MAX_CONNECTS_PER_TRIP;
        self.connects_this_trip += u32::from(turn);
        turn
    }

    /// A turn to connect for device `slot`, waiting in the connect queue
    /// (its pool place, if any, is kept already): `false` while this
    /// trip's turns are used up.
    pub(super) fn take_connect_turn(&mut self, slot: u32) -> bool {
        if !self.connect_turn() {
            return false;
        }
        if let Some(d) = self.devices.get_mut(slot as usize) {
            // Its stale connection, if any, is closed now.
            d.conn = None;
            d.stale = false;
        }
        true
    }

    /// What device `slot`'s next exchange goes on.
    pub(super) fn checkout<T: Transport<Conn = C>>(&mut self, slot: u32, transport: &T) -> Checkout<C> {
        match self.mode {
            ConnectionMode::PerDevice => {
                let d = &mut self.devices[slot as usize];
                if let Some(c) = &d.conn
                    && !d.stale
                    && !transport.is_closed(c)
                {
                    // A session that carries several heartbeats at once
                    // stays in its place: each goes on a share of it.
                    if transport.window(c) > 1
                        && let Some(share) = transport.share(c)
                    {
                        d.shares += 1;
                        return Checkout::Use(share);
                    }
                    return d.conn.take().map_or(Checkout::Open, Checkout::Use);
                }
                if self.connects_this_trip >= MAX_CONNECTS_PER_TRIP {
                    return Checkout::Later;
                }
                self.connects_this_trip += 1;
                // A stale connection is closed here, one connect at a time.
                d.conn = None;
                d.stale = false;
                Checkout::Open
            }
            ConnectionMode::NewPerRequest => {
                if self.connect_turn() {
                    Checkout::Open
                } else {
                    Checkout::Later
                }
            }
            ConnectionMode::Pool(_) if self.multiplexed => {
                // HTTP/2: up to pool_size connections, each shared by every
                // exchange in flight, taken in turn.
                self.idle.retain(|c| !transport.is_closed(c));
                if self.idle.len() as u32 + self.open < self.pool_size {
                    self.open += 1;
                    if self.connect_turn() { Checkout::Open } else { Checkout::Later }
                } else if self.idle.is_empty() {
                    Checkout::Wait
                } else {
                    self.next_shared = self.next_shared.wrapping_add(1);
                    transport
                        .share(&self.idle[self.next_shared % self.idle.len()])
                        .map_or(Checkout::Open, Checkout::Use)
                }
            }
            ConnectionMode::Pool(_) => match self.idle.pop() {
                Some(c) => Checkout::Use(c),
                None if self.open < self.pool_size => {
                    self.open += 1;
                    if self.connect_turn() { Checkout::Open } else { Checkout::Later }
                }
                None => Checkout::Wait,
            },
        }
    }

    /// What an exchange on device `slot` left: its connection if still
    /// usable, and whether it went on a new one. Whether the exchange
    /// lost its connection: the first to end of those a broken shared
    /// session carried says so, once.
    pub(super) fn checkin<T: Transport<Conn = C>>(
        &mut self,
        slot: u32,
        conn: Option<C>,
        fresh: bool,
        transport: &T,
    ) -> bool {
        match self.mode {
            // A device's exchange took its connection out of its place (or
            // had none, or went on a share of it): one to go on with goes
            // back to an empty place. With none, a broken session in the
            // place leaves it; a live one stays (the device reopened it
            // meanwhile).
            ConnectionMode::PerDevice => {
                let d = &mut self.devices[slot as usize];
                // A share of its session, unless it opened one of its own.
                let share = d.shares > 0 && !fresh;
                d.shares -= u16::from(share);
                match (conn, &d.conn) {
                    (Some(c), None) => {
                        d.conn = Some(c);
                        false
                    }
                    (Some(_), Some(_)) => false,
                    // A share whose session another exchange saw end.
                    (None, None) => !share,
                    (None, Some(c)) if transport.is_closed(c) => {
                        d.conn = None;
                        true
                    }
                    (None, Some(_)) => false,
                }
            }
            ConnectionMode::NewPerRequest => conn.is_none(),
            ConnectionMode::Pool(_) if self.multiplexed => {
                // A shared handle is just dropped; a new connection joins the pool.
                let lost = conn.is_none();
                if fresh {
                    self.open -= 1;
                    if let Some(c) = conn {
                        self.idle.push(c);
                    }
                }
                lost
            }
            ConnectionMode::Pool(_) => match conn {
                Some(c) => {
                    self.idle.push(c);
                    false
                }
                None => {
                    self.open -= 1;
                    true
                }
            },
        }
    }

    /// Device `slot`'s session, just put in its place, carries the
    /// heartbeat that opened it on a share.
    pub(super) fn lend(&mut self, slot: u32) {
        if let Some(d) = self.devices.get_mut(slot as usize) {
            d.shares += 1;
        }
    }

    /// How many heartbeats device `slot`'s session carries at once
    /// ([`Transport::window`]): 1 without an open one in its place, and in
    /// every mode but per-device.
    pub(super) fn window<T: Transport<Conn = C>>(&self, slot: u32, transport: &T) -> u16 {
        match self.devices.get(slot as usize) {
            Some(DeviceConn { conn: Some(c), stale: false, .. }) if !transport.is_closed(c) => transport.window(c),
            _ => 1,
        }
    }

    /// Pool mode: whether an exchange about to go found at most half the
    /// worker's pool busy with others (the backend under light load from
    /// this generator). Not known for HTTP/2's shared connections.
    pub(super) fn light(&self) -> bool {
        match self.mode {
            ConnectionMode::Pool(_) if !self.multiplexed => {
                let others = self.open.saturating_sub(self.idle.len() as u32 + 1);
                2 * others <= self.pool_size
            }
            _ => false,
        }
    }

    /// Whether a returned connection may have freed a waiter's turn: in a
    /// multiplexed pool several may go at once.
    pub(super) fn multiplexed(&self) -> bool {
        self.multiplexed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::testing::Fake;

    fn per_device(devices: u32) -> Connections<u32> {
        let mut c = Connections::new(ConnectionMode::PerDevice, false, 0);
        (0..devices).for_each(|_| c.add_device());
        c
    }

    #[test]
    fn a_device_uses_its_own_connection_and_a_stale_one_is_replaced() {
        // Its connections are numbers, never closed, not shared.
        let fake = Fake::default();
        let mut c = per_device(2);
        assert!(matches!(c.checkout(0, &fake), Checkout::Open), "none yet: open one");
        c.checkin(0, Some(7), true, &fake);
        assert!(matches!(c.checkout(0, &fake), Checkout::Use(7)));
        c.checkin(0, Some(7), false, &fake);
        c.mark_stale(0);
        assert!(matches!(c.checkout(0, &fake), Checkout::Open), "back from a silence: a new one");
        assert!(matches!(c.checkout(1, &fake), Checkout::Open));
    }

    #[test]
    fn new_connections_go_at_most_so_many_per_trip() {
        // Its connections are numbers, never closed, not shared.
        let fake = Fake::default();
        let devices = MAX_CONNECTS_PER_TRIP + 10;
        let mut c = per_device(devices);
        let opened = (0..devices).filter(|&d| matches!(c.checkout(d, &fake), Checkout::Open)).count();
        assert_eq!(opened as u32, MAX_CONNECTS_PER_TRIP, "the rest wait for a later trip");
        assert!(matches!(c.checkout(devices - 1, &fake), Checkout::Later));
        c.new_trip();
        assert!(matches!(c.checkout(devices - 1, &fake), Checkout::Open));
        // Open connections are used whatever the trip's count.
        c.checkin(3, Some(3), true, &fake);
        assert!(matches!(c.checkout(3, &fake), Checkout::Use(3)));
    }

    #[test]
    fn a_pool_opens_up_to_its_size_then_makes_waiters_and_counts_light_load() {
        // Its connections are numbers, never closed, not shared.
        let fake = Fake::default();
        let mut c: Connections<u32> = Connections::new(ConnectionMode::Pool(2), false, 2);
        assert!(matches!(c.checkout(0, &fake), Checkout::Open));
        assert!(c.light(), "one of two busy, none other");
        assert!(matches!(c.checkout(1, &fake), Checkout::Open));
        assert!(matches!(c.checkout(2, &fake), Checkout::Wait), "both open and busy");
        c.checkin(0, Some(1), true, &fake);
        assert!(matches!(c.checkout(2, &fake), Checkout::Use(1)), "the returned one goes to the next");
        // A connection that broke is no longer open: a new one may be opened.
        c.checkin(2, None, false, &fake);
        assert!(matches!(c.checkout(3, &fake), Checkout::Open));
    }
}
