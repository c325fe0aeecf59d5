//! Idle sessions, for a transport that has idle work
//! ([`Transport::idles`]: MQTT's keep-alives, what its broker pushes).
//!
//! Between two of a device's heartbeats its session (per-device
//! connections only) is out of [`super::Connections`], waited on with
//! [`Transport::idle`] until the device's next intended time (less the
//! most a wake-up sends early, [`super::MIN_WAKE_SPACING_NS`], with the
//! precise timer); the worker polls those waits where it polls its
//! exchanges. Each wait ends with what happened ([`Idle`]), which is
//! counted; after a keep-alive or an inbound message the session is
//! waited on again, otherwise it goes back to the device's place (none if
//! the far end closed it: the next heartbeat opens one, with the device's
//! identity). A heartbeat that finds its device's session out calls it
//! back ([`HandBack`]: the wait's own timer is coarser than the worker's)
//! and waits for it, as one waits for a pooled connection (connection
//! wait): only as long as the transport takes to hand it back.
//!
//! For HTTP (no idle work) none of this is made: no per-device state, no
//! wait, no poll.

use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use super::due::Waiter;
use crate::stats::{Failure, Outcome, SessionCounts};
use crate::transport::{Closed, Connected, HandBack, HandBackCall, Identity, Idle, Transport};

/// Counts what ended a wait on an idle session.
pub(super) fn count(counts: &mut SessionCounts, what: &Ended) {
    match what {
        Ended::Idle(Idle::Keepalive) => counts.keepalives += 1,
        Ended::Idle(Idle::Inbound) => counts.inbound += 1,
        Ended::Idle(Idle::Closed(why)) => {
            counts.closed += 1;
            let by = &mut counts.closed_by;
            match why {
                Closed::Disconnect(reason) => {
                    by.disconnect += 1;
                    if let Some(code) = reason {
                        *by.disconnect_reasons.entry(code.to_string()).or_default() += 1;
                    }
                }
                Closed::EndOfStream => by.end_of_stream += 1,
                Closed::Broken => by.broken += 1,
                Closed::KeepaliveMissed => by.keepalive_missed += 1,
            }
        }
        Ended::Idle(Idle::Until) => {}
        Ended::Reopened(_) => counts.reopened += 1,
        Ended::NotReopened(_) => counts.reopen_failed += 1,
    }
}

/// What brought a device's session back to the worker.
#[derive(Debug)]
pub(super) enum Ended {
    /// A wait on it while idle ended.
    Idle(Idle),
    /// It was lost, and the device opened a new one ([`Reconnect`]).
    ///
    /// [`Reconnect`]: crate::transport::Reconnect
    Reopened(Connected),
    /// It was lost, and the device's opening of a new one failed so.
    NotReopened(Outcome),
}

/// One device's session, as its idle waits see it.
#[derive(Debug, Default)]
struct Place {
    /// The device's next intended time (ns since the start), as last planned.
    next_ns: u64,
    /// When the device goes silent before it (an outage, a restart): its
    /// session ends then.
    silent_from_ns: Option<u64>,
    /// Its session is out, being waited on.
    out: bool,
    /// A heartbeat that came while the session was out: it goes when the
    /// session is back.
    held: Option<Waiter>,
    /// The call that ends the wait on the session, while it is out.
    call: Option<HandBackCall>,
    /// While the device reopens its lost session: when its opening
    /// begins (ns since the start).
    reopen_at_ns: Option<u64>,
    /// Openings that failed since its session was last open (its
    /// reconnect delay doubles with each).
    failures: u32,
    /// Why a heartbeat that comes while the device waits to reopen has no
    /// session: its last opening's refusal, or the session's loss.
    lost: Option<Outcome>,
}

/// A wait on an idle session that ended.
pub(super) struct Idled<C> {
    pub slot: u32,
    /// The session, unless the far end closed it.
    pub conn: Option<C>,
    pub what: Ended,
    /// The wait's end (ns since the start): the device's next heartbeat.
    pub until_ns: u64,
}

type Waits<C> = FuturesUnordered<Pin<Box<dyn Future<Output = Idled<C>> + Send>>>;

/// A worker's idle sessions.
pub(super) struct Sessions<C> {
    /// Whether idle sessions are waited on at all: a transport with idle
    /// work, per-device connections.
    enabled: bool,
    /// By slot, when enabled.
    places: Vec<Place>,
    /// The waits under way.
    pub(super) waits: Waits<C>,
}

impl<C: Send + 'static> Sessions<C> {
    pub(super) fn new(enabled: bool) -> Sessions<C> {
        Sessions { enabled, places: Vec::new(), waits: FuturesUnordered::new() }
    }

    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Room for one more device (its slot is the count so far).
    pub(super) fn add_device(&mut self) {
        if self.enabled {
            self.places.push(Place::default());
        }
    }

    /// Device `slot`'s next heartbeat is intended at `next_ns`; if it
    /// goes silent before, from `silent_from_ns`.
    pub(super) fn plan(&mut self, slot: u32, next_ns: u64, silent_from_ns: Option<u64>) {
        if let Some(p) = self.places.get_mut(slot as usize) {
            p.next_ns = next_ns;
            p.silent_from_ns = silent_from_ns;
        }
    }

    /// The device's next intended time, as last planned.
    pub(super) fn next_ns(&self, slot: u32) -> u64 {
        self.places.get(slot as usize).map_or(0, |p| p.next_ns)
    }

    /// When the device goes silent before its next heartbeat, if it does.
    pub(super) fn silent_from_ns(&self, slot: u32) -> Option<u64> {
        self.places.get(slot as usize).and_then(|p| p.silent_from_ns)
    }

    /// The device's session ended as it went silent: no more to end.
    pub(super) fn went_silent(&mut self, slot: u32) {
        if let Some(p) = self.places.get_mut(slot as usize) {
            p.silent_from_ns = None;
        }
    }

    /// Whether device `slot`'s session is out, being waited on.
    pub(super) fn is_out(&self, slot: u32) -> bool {
        self.places.get(slot as usize).is_some_and(|p| p.out)
    }

    /// Holds `waiter` until device `slot`'s session is back, and calls
    /// the session back (its wait ends at once, [`HandBack`]).
    pub(super) fn hold(&mut self, slot: u32, waiter: Waiter) {
        if let Some(p) = self.places.get_mut(slot as usize) {
            p.held = Some(waiter);
            if let Some(call) = p.call.take() {
                call.call();
            }
        }
    }

    /// Whether a heartbeat waits for device `slot`'s session.
    pub(super) fn is_held(&self, slot: u32) -> bool {
        self.places.get(slot as usize).is_some_and(|p| p.held.is_some())
    }

    /// Calls every session out on an idle wait back (the run ended).
    pub(super) fn call_all_back(&mut self) {
        for p in &mut self.places {
            if let Some(call) = p.call.take() {
                call.call();
            }
        }
    }

    /// Every heartbeat held for a session (the run stops).
    pub(super) fn release_held(&mut self) -> Vec<Waiter> {
        self.places.iter_mut().filter_map(|p| p.held.take()).collect()
    }

    /// Waits on device `slot`'s session `conn` with `transport` until
    /// `until_ns` (ns since `start`).
    pub(super) fn wait<T: Transport<Conn = C>>(
        &mut self,
        transport: &T,
        slot: u32,
        conn: C,
        start: Instant,
        until_ns: u64,
    ) {
        let (call, handback) = HandBack::pair();
        if let Some(p) = self.places.get_mut(slot as usize) {
            p.out = true;
            p.call = Some(call);
        }
        let wait = transport.idle(conn, start + Duration::from_nanos(until_ns), handback);
        self.waits.push(Box::pin(async move {
            let (conn, what) = wait.await;
            Idled { slot, conn, what: Ended::Idle(what), until_ns }
        }));
    }

    /// Device `slot` lost its session: it opens a new one with `identity`
    /// at `at_ns` (ns since `start`). Until then its heartbeats have no
    /// session ([`Sessions::backing_off`]); one that comes while it opens
    /// waits for it.
    pub(super) fn reopen<T: Transport<Conn = C>>(
        &mut self,
        transport: &T,
        slot: u32,
        identity: Identity,
        start: Instant,
        at_ns: u64,
    ) {
        if let Some(p) = self.places.get_mut(slot as usize) {
            p.out = true;
            p.reopen_at_ns = Some(at_ns);
        }
        let opening = transport.connect(identity);
        self.waits.push(Box::pin(async move {
            tokio::time::sleep_until(start + Duration::from_nanos(at_ns)).await;
            match opening.await {
                Ok((conn, connected)) => {
                    Idled { slot, conn: Some(conn), what: Ended::Reopened(connected), until_ns: at_ns }
                }
                Err(outcome) => Idled { slot, conn: None, what: Ended::NotReopened(outcome), until_ns: at_ns },
            }
        }));
    }

    /// If device `slot` waits to reopen its lost session at `now_ns` (its
    /// opening has not begun): why it has none.
    pub(super) fn backing_off(&self, slot: u32, now_ns: u64) -> Option<Outcome> {
        let p = self.places.get(slot as usize)?;
        p.reopen_at_ns.filter(|at| *at > now_ns).map(|_| p.lost.unwrap_or(Outcome::Failed(Failure::Connect)))
    }

    /// Device `slot`'s session was lost so (or its opening refused so).
    pub(super) fn lost(&mut self, slot: u32, why: Outcome) {
        if let Some(p) = self.places.get_mut(slot as usize) {
            p.lost = Some(why);
        }
    }

    /// Openings of device `slot`'s session that failed since it was last
    /// open; `opened` starts the count again, else it counts one more.
    pub(super) fn failures(&mut self, slot: u32, opened: bool) -> u32 {
        let Some(p) = self.places.get_mut(slot as usize) else { return 0 };
        let failures = p.failures;
        p.failures = if opened { 0 } else { failures.saturating_add(1) };
        failures
    }

    /// Device `slot`'s session is back from its wait (or gone): hands over
    /// the heartbeat held for it, if any.
    pub(super) fn back(&mut self, slot: u32) -> Option<Waiter> {
        let p = self.places.get_mut(slot as usize)?;
        p.out = false;
        p.call = None;
        p.reopen_at_ns = None;
        p.held.take()
    }
}
