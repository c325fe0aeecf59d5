//! One engine worker: a single task that owns a share of the devices, their
//! schedules and connections, dispatches their heartbeats at the intended
//! times and records what happened, with no shared state on the way.
//!
//! The worker sleeps until the earliest intended time in its timer heap,
//! dispatches every heartbeat that is due (a device whose previous
//! heartbeat is still in flight keeps the new one pending; if its next
//! intended time comes first, the pending one is *missed*), and polls the
//! exchanges in flight as one `FuturesUnordered`. Every `flush_every` it
//! hands what it recorded to the aggregator and starts afresh.
//!
//! Its state, by concern: the devices and their timers (here), their
//! connections ([`connections`]: checkout, checkin, waiting), heartbeats
//! held for a retry ([`retries`]), what is recorded until the next flush
//! ([`records`]), the wake-up clock ([`alarm`]), the thread's CPU
//! demand ([`demand`]) and, for a transport whose sessions have idle work,
//! the waits on idle sessions ([`sessions`]). A heartbeat is given up
//! (missed) in one place, [`Worker::miss`].
//!
//! A transport with sessions ([`Transport::sessions`]) has each device's
//! session opened by the worker, with the device's identity
//! ([`FleetWire::identity`], built only then), before the exchange that
//! needs one ([`Worker::send`]); the rest of the worker is the same for
//! every transport.
//!
//! Times are nanoseconds since the run's start. The worker wakes at most
//! once per millisecond and then also sends what falls due before its
//! next wake-up could come, so a heartbeat goes at most 1 ms early and
//! (with the timerfd) not late unless the generator is behind; that
//! lateness is schedule lag, which is recorded. With tokio's timer (1 ms
//! ticks) wake-ups are late by up to a tick, which shows up as lag.

mod alarm;
mod connections;
mod demand;
mod due;
mod opening;
mod records;
mod retries;
mod sessions;
mod timers;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::rngs::Xoshiro128PlusPlus;
use rand::{RngExt, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::device::{Device, FleetGenerator, Scratch};
use crate::fleet::{DeviceClock, FleetEvents, RetryPolicy, Schedule};
use crate::stats::timeline::SecondPart;
use crate::stats::{Freshness, Recorder};
use crate::transport::settings::ConnectionMode;
use crate::transport::{Exchange, Identity, Idle, Transport};
use crate::wire::FleetWire;
use alarm::Alarm;
use connections::{Checkout, Connections};
pub use demand::Demand;
#[cfg(test)]
pub(crate) use due::MAX_CONNECTS_PER_TRIP;
use due::{Due, Waiter};
use opening::OpeningPace;
use records::{Records, Whose};
use retries::Retries;
use sessions::{Ended, Idled, Sessions};
pub use timers::Timers;

/// A fleet as the workers run it.
#[derive(Debug, Clone)]
pub struct FleetRuntime {
    pub generator: FleetGenerator,
    pub schedule: Schedule,
    pub devices: u64,
    /// Separates this fleet's schedule streams from other fleets'.
    pub key: u64,
    /// A device whose largest gap without a success exceeds this is stale.
    pub stale_after: Duration,
    /// Outages, restarts, rollouts and surges.
    pub events: FleetEvents,
    /// How devices retry failed heartbeats.
    pub retry: Option<RetryPolicy>,
    /// What its devices speak.
    pub wire: FleetWire,
    /// Which of the run's transports its devices use: an index into the
    /// targets [`crate::engine::run`] is given (0 when there is one).
    pub target: usize,
}

impl FleetRuntime {
    /// A fleet with no events and no retries.
    pub fn new(generator: FleetGenerator, schedule: Schedule, devices: u64, stale_after: Duration) -> Self {
        FleetRuntime {
            key: generator.key(),
            generator,
            schedule,
            devices,
            stale_after,
            events: FleetEvents::default(),
            retry: None,
            wire: FleetWire::default(),
            target: 0,
        }
    }
}

/// What a worker hands the aggregator.
pub struct Flush {
    pub worker: usize,
    /// When the flush was made, in ns since the start.
    pub at_ns: u64,
    /// What each fleet recorded since the previous flush.
    pub fleets: Vec<Recorder>,
    pub in_flight: usize,
    /// When the worker last sent a heartbeat's first attempt, in ns since
    /// the start (0 before any).
    pub last_sent_ns: u64,
    /// The worker's last flush: it has stopped.
    pub last: bool,
    /// Everything in it happened during the warm-up (before
    /// `WorkerSettings::measure_from_ns`).
    pub warmup: bool,
    /// With the last flush: how fresh each fleet's devices stayed.
    pub freshness: Option<Vec<Freshness>>,
    /// About once a second when asked for
    /// ([`WorkerSettings::live_freshness`]): the same, as the devices stand
    /// now (a device's open gap runs to now).
    pub live_freshness: Option<Vec<Freshness>>,
    /// Per fleet, per agent version (when broken down): what each recorded.
    pub cohorts: Vec<Vec<Option<Recorder>>>,
    /// How much the worker's thread wanted a CPU since the previous flush
    /// (when measured).
    pub demand: Option<Demand>,
    /// What happened in each second of the run since the previous flush,
    /// each event counted in the second it happened in.
    pub seconds: Vec<SecondPart>,
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The run's start; replaced by the instant received on `go`.
    pub start: Instant,
    /// No heartbeat is scheduled at or after this time (ns since start).
    pub end_ns: u64,
    pub connections: ConnectionMode,
    /// This worker's share of the pool, in pool mode.
    pub pool_size: u32,
    pub seed: u64,
    pub flush_every: Duration,
    /// Wake for due heartbeats with a timerfd (microsecond precision)
    /// rather than tokio's timer, whose 1 ms ticks add up to a millisecond
    /// of schedule lag. Off under tokio's paused clock, which it cannot see.
    pub precise_timer: bool,
    /// Record per fleet and agent version as well.
    pub cohorts: bool,
    /// The warm-up's end (ns since the start): the worker flushes as it
    /// passes, so that no flush holds both warm-up and measured events.
    pub measure_from_ns: u64,
    /// How long after the end heartbeats queued for a pooled connection
    /// may still go (the target's timeout); those left then are missed.
    pub drain: Duration,
    /// Open the pool's connections before reporting ready (a synchronized
    /// start). Per-device connections are still opened by each device at
    /// its first heartbeat, as in any run.
    pub preconnect: bool,
    /// Walk the devices about once a second for their freshness so far
    /// ([`Flush::live_freshness`]), for a live view: a walk over every
    /// device, so only when someone is looking.
    pub live_freshness: bool,
    /// The worker has a thread of its own: measure how much of the time it
    /// wanted the CPU ([`Demand`]).
    pub measure_demand: bool,
    /// This worker's share of a target's connect rate (one over the
    /// workers times the shards).
    pub opening_share: f64,
}

/// One device, as its worker keeps it.
struct Slot {
    fleet: u16,
    device: Device,
    clock: DeviceClock,
    /// Its heartbeats taken on and not yet ended: in flight, or held (for
    /// a connection, its session, its turn to connect, a retry). At most
    /// its session's window ([`Worker::has_room`]): 1 but for an MQTT
    /// session that carries several messages at once.
    held: u16,
    /// An intended time that came while the device had no room for it.
    pending_ns: Option<u64>,
    /// Freshness, in ms since the start: the last success (or the first
    /// intended time, before any), and the largest gap so far.
    last_ok_ms: u32,
    max_gap_ms: u32,
    ever_ok: bool,
    /// The next heartbeat comes back from a silence: on a new connection.
    resumed: bool,
}

/// What a heartbeat's exchange was, for its end.
#[derive(Debug, Clone, Copy)]
struct Sent {
    slot: u32,
    intended_ns: u64,
    sent_ns: u64,
    /// Stamped when the exchange ended, not when the worker got to it.
    done_ns: u64,
    /// 0 for the first attempt, n for retry n.
    attempt: u8,
    /// Sent without a connection: the exchange opened one (or tried to).
    fresh: bool,
    /// Pool mode: sent while at most half the worker's pool was busy.
    light: bool,
}

/// A heartbeat's exchange that ended (or got as far as opening its
/// device's session).
struct Done<C> {
    sent: Sent,
    progress: Progress<C>,
}

/// How far a heartbeat's exchange got.
enum Progress<C> {
    Ended(Exchange<C>),
    /// It opened its device's session, one that carries several
    /// heartbeats at once, and goes on ([`Worker::opened`]).
    Opened(Opened<C>),
}

/// A device's session opened by one of its heartbeats' exchanges, which
/// goes on (`rest`) on a share of it.
struct Opened<C> {
    conn: C,
    connected: crate::transport::Connected,
    rest: Pin<Box<dyn Future<Output = Exchange<C>> + Send>>,
}

type InFlight<C> = FuturesUnordered<Pin<Box<dyn Future<Output = Done<C>> + Send>>>;

/// The loop's own progress: where scheduling stands, for wake-ups, the
/// freshness of the devices and the time sending took.
#[derive(Debug, Default)]
struct Pace {
    stopping: bool,
    /// When the worker last dispatched (ns since start).
    last_wake_ns: u64,
    /// When scheduling stopped (ns since start).
    stopped_ns: u64,
    /// When the last first attempt was sent (ns since start): past the end
    /// when a pool's queue drained.
    last_sent_ns: u64,
    /// The thread's CPU demand and the instant at the previous flush.
    demand_mark: Option<(u64, Instant)>,
}

/// A pass over the devices for their freshness so far, one chunk per
/// flush ([`WorkerSettings::live_freshness`]).
#[derive(Default)]
struct LiveWalk {
    /// The next slot to walk in the pass under way.
    next: usize,
    /// What the pass under way has added up; `None` between passes.
    partial: Option<Vec<Freshness>>,
    /// When the last pass started (ns since start): one a second at most.
    started_ns: Option<u64>,
}

/// Devices walked per flush for the live freshness: about 0.05 ms of the
/// worker's loop. A whole pass over a million devices in one flush held
/// the loop about 2.4 ms, the schedule lag p99 of such a run (0.07 ms
/// without it), and chunks of 50,000 still showed as 0.3 ms; a pass over a
/// million devices takes 50 flushes, 12.5 s (BENCHMARKS.md).
const LIVE_WALK_CHUNK: usize = 20_000;

struct Worker<T: Transport> {
    id: usize,
    /// Each fleet's transport (its target's), by fleet index.
    transports: Box<[Arc<T>]>,
    fleets: Arc<[FleetRuntime]>,
    settings: WorkerSettings,
    /// The devices, by slot, and when each is due next.
    slots: Vec<Slot>,
    timers: Timers,
    conns: Connections<T::Conn>,
    /// Idle sessions being waited on (a transport with idle work only).
    sessions: Sessions<T::Conn>,
    /// Each fleet's pace of session openings, if its target has a connect
    /// rate ([`opening`]).
    openings: Vec<Option<OpeningPace>>,
    retries: Retries,
    records: Records,
    in_flight: InFlight<T::Conn>,
    pace: Pace,
    live_walk: LiveWalk,
    /// Each body is built here, then copied out.
    scratch: Scratch,
    body: Vec<u8>,
    /// Draws retry jitter.
    rng: Xoshiro128PlusPlus,
}

/// The most completions a worker takes in one trip before it looks at the
/// schedule again.
const MAX_COMPLETIONS_PER_TRIP: usize = 256;

/// The least time between two wake-ups of a worker. Waking costs a trip
/// through the kernel's scheduler (two context switches on these VMs); at
/// 10,000 heartbeats/s, waking for each one cost 74 µs of CPU per
/// heartbeat, waking at most once per millisecond (and dispatching all that
/// is due) 30 µs. Sparse schedules still wake exactly on time (timerfd).
const MIN_WAKE_SPACING_NS: u64 = 1_000_000;

/// How a worker learns when the run starts: it reports `ready` once its
/// devices are built, then waits for the start instant on `go`, so that
/// building a million devices does not eat into the schedule.
pub struct StartSignal {
    pub ready: mpsc::UnboundedSender<()>,
    pub go: tokio::sync::watch::Receiver<Option<Instant>>,
}

/// Runs one worker over `devices` (pairs of fleet index and device index)
/// until the end of the schedule or `cancel`, then waits for its exchanges
/// in flight and sends its last flush.
#[allow(clippy::too_many_arguments)]
pub async fn run_worker<T: Transport>(
    id: usize,
    transports: Box<[Arc<T>]>,
    fleets: Arc<[FleetRuntime]>,
    devices: Vec<(u16, u64)>,
    settings: WorkerSettings,
    mut start: StartSignal,
    cancel: CancellationToken,
    out: mpsc::UnboundedSender<Flush>,
) {
    let versions = settings.cohorts.then(|| fleets.iter().map(|f| f.generator.profile.agent_versions.len()).collect());
    let mut w = Worker {
        id,
        // A pool serves one target (the scenario refuses a pool over several).
        conns: Connections::new(settings.connections, transports.iter().any(|t| t.multiplexed()), settings.pool_size),
        sessions: Sessions::new(
            transports.iter().any(|t| t.idles()) && settings.connections == ConnectionMode::PerDevice,
        ),
        openings: (0..fleets.len())
            .map(|f| {
                let sharing = fleets.iter().filter(|g| g.target == fleets[f].target).count() as f64;
                transports[f].connect_rate().map(|rate| OpeningPace::new(rate * settings.opening_share / sharing))
            })
            .collect(),
        retries: Retries::default(),
        records: Records::new(fleets.len(), versions, settings.measure_from_ns == 0),
        slots: Vec::with_capacity(devices.len()),
        timers: Timers::with_capacity(devices.len()),
        in_flight: FuturesUnordered::new(),
        pace: Pace::default(),
        live_walk: LiveWalk::default(),
        scratch: Scratch::default(),
        body: Vec::with_capacity(2048),
        rng: Xoshiro128PlusPlus::seed_from_u64(settings.seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        transports,
        fleets,
        settings,
    };
    for (fleet, index) in devices {
        let f = &w.fleets[usize::from(fleet)];
        let mut clock = DeviceClock::new(w.settings.seed, f.key, index);
        let first = f.events.first(&mut clock, &f.schedule, f.devices, index);
        let slot = w.slots.len() as u32;
        w.slots.push(Slot {
            fleet,
            device: f.generator.device(index),
            clock,
            held: 0,
            pending_ns: None,
            last_ok_ms: millis(first.at_ns),
            max_gap_ms: 0,
            ever_ok: false,
            resumed: first.resumed,
        });
        w.conns.add_device();
        w.sessions.add_device();
        if first.at_ns < w.settings.end_ns {
            w.timers.push(first.at_ns, slot);
        }
    }
    if w.settings.preconnect {
        w.preconnect().await;
    }
    let _ = start.ready.send(());
    match start.go.wait_for(Option::is_some).await.map(|s| *s) {
        Ok(Some(at)) => w.settings.start = at,
        // The run was abandoned before it started.
        _ => return,
    }
    if w.settings.measure_demand {
        w.pace.demand_mark = Demand::read_thread().map(|ns| (ns, Instant::now()));
    }
    w.run(cancel, &out).await;
    w.end_sessions().await;
}

/// How long a worker gives its devices' sessions to say goodbye at the
/// end of a run.
const GOODBYE_WITHIN: Duration = Duration::from_secs(1);

impl<T: Transport> Worker<T> {
    /// Opens this worker's share of the pool, all at once. Each connection
    /// counts as opened (with its TLS handshake) as one an exchange opens
    /// does: a synchronized run's pool carries its heartbeats as any
    /// pool's. The pool serves all the worker's fleets; its connections
    /// are counted in its first device's fleet.
    async fn preconnect(&mut self) {
        if !matches!(self.settings.connections, ConnectionMode::Pool(_)) {
            return;
        }
        // A pool's connections are no device's: no identity. A pool serves
        // one target: every fleet's is the same.
        let Some(transport) = self.transports.first() else { return };
        let opening: FuturesUnordered<_> =
            (0..self.settings.pool_size).map(|_| transport.connect(Identity::default())).collect();
        let opened: Vec<Result<_, _>> = opening.collect().await;
        for (conn, connected) in opened.into_iter().flatten() {
            self.conns.preopened(conn);
            let tls_us = connected.tls_handshake.map(|d| d.as_micros() as u64);
            let session_us = connected.session.map(|d| d.as_micros() as u64);
            let who = if self.slots.is_empty() { Whose { fleet: 0, version: 0 } } else { self.whose(0) };
            self.records.record(who, |r| r.connected(tls_us, session_us));
        }
    }

    fn now_ns(&self) -> u64 {
        self.settings.start.elapsed().as_nanos() as u64
    }

    /// The run is over: each device's session (a session transport's)
    /// ends with the protocol's goodbye (MQTT's DISCONNECT, so that no
    /// broker publishes a Will for a fleet that simply stopped), those out
    /// on idle waits called back first; all within [`GOODBYE_WITHIN`].
    async fn end_sessions(&mut self) {
        if !self.sessions.enabled() {
            return;
        }
        let deadline = tokio::time::sleep(GOODBYE_WITHIN);
        tokio::pin!(deadline);
        self.sessions.call_all_back();
        let mut closing = FuturesUnordered::new();
        loop {
            tokio::select! {
                () = &mut deadline => break,
                back = self.sessions.waits.next() => match back {
                    Some(Idled { slot, conn: Some(conn), .. }) => {
                        let fleet = usize::from(self.slots[slot as usize].fleet);
                        closing.push(self.transports[fleet].close(conn, true));
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
        for slot in 0..self.slots.len() as u32 {
            if let Some(conn) = self.conns.take_idle(slot) {
                let fleet = usize::from(self.slots[slot as usize].fleet);
                closing.push(self.transports[fleet].close(conn, true));
            }
        }
        let all = async { while closing.next().await.is_some() {} };
        let _ = tokio::time::timeout_at(tokio::time::Instant::now() + GOODBYE_WITHIN, all).await;
    }

    async fn run(&mut self, cancel: CancellationToken, out: &mpsc::UnboundedSender<Flush>) {
        let every = self.settings.flush_every;
        let mut flush = tokio::time::interval_at(self.settings.start + every, every);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = self.settings.start + Duration::from_nanos(self.settings.end_ns);
        let drained = end + self.settings.drain;
        let mut alarm = Alarm::new(self.settings.precise_timer);
        // Made once: a fresh timer or cancellation future on every trip
        // round the loop (one per completion) cost a timer-wheel insertion
        // and removal each.
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        let ended = tokio::time::sleep_until(end);
        tokio::pin!(ended);
        let drain_ended = tokio::time::sleep_until(drained);
        tokio::pin!(drain_ended);
        let idles = self.sessions.enabled();
        loop {
            let mut next_due = match (self.timers.next_due(), self.retries.next_due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if self.pace.stopping {
                next_due = None;
            }
            // Heartbeats waiting for their turn to connect go next trip.
            if !self.conns.connect_queue.is_empty() {
                next_due = Some(0);
            }
            // Those waiting for their turn to open a session, at it.
            for pace in self.openings.iter().flatten().filter(|p| !p.waiting.is_empty()) {
                next_due = Some(next_due.map_or(pace.next_ns(), |n| n.min(pace.next_ns())));
            }
            let scheduling = next_due.is_some();
            let paced = self.openings.iter().flatten().any(|p| !p.waiting.is_empty());
            if self.pace.stopping && self.in_flight.is_empty() && self.conns.connect_queue.is_empty() && !paced {
                // Nothing in flight will free a connection for them now.
                self.miss_queued();
                break;
            }
            let spaced = next_due.unwrap_or(0).max(self.pace.last_wake_ns + MIN_WAKE_SPACING_NS);
            let wake = self.settings.start + Duration::from_nanos(spaced);
            tokio::select! {
                biased;
                () = &mut cancelled, if !self.pace.stopping => {
                    self.end_warmup(out);
                    self.stop();
                    self.miss_queued();
                }
                () = &mut ended, if !self.pace.stopping => {
                    // Heartbeats intended before the end but not yet
                    // dispatched (same timer tick) still go.
                    self.end_warmup(out);
                    self.dispatch_due();
                    self.stop();
                }
                () = &mut drain_ended, if self.pace.stopping && !self.conns.waiting.is_empty() => {
                    self.miss_queued();
                }
                Some(done) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.end_warmup(out);
                    self.complete(done);
                    // Those that ended meanwhile too, without a trip round
                    // the loop each, up to a bound: answers that keep
                    // coming (a reconnect storm's) must not hold the
                    // schedule...
                    for _ in 0..MAX_COMPLETIONS_PER_TRIP {
                        match self.in_flight.next().now_or_never() {
                            Some(Some(done)) => self.complete(done),
                            _ => break,
                        }
                    }
                    // ...which goes on as soon as it is due.
                    if scheduling && self.now_ns() >= spaced {
                        self.dispatch_due();
                    }
                }
                // Idle sessions (never for a transport without idle work):
                // before dispatching, so that a session whose wait ends at
                // its device's heartbeat is back for it.
                Some(idled) = self.sessions.waits.next(), if idles && !self.sessions.waits.is_empty() => {
                    self.end_warmup(out);
                    self.idled(idled);
                }
                // Before dispatching: a heartbeat due at a flush's instant
                // (a second's boundary) belongs to the next period.
                _ = flush.tick() => self.flush(out, false),
                () = alarm.ring_at(wake), if scheduling => {
                    self.end_warmup(out);
                    self.dispatch_due();
                }
            }
        }
        self.flush(out, true);
    }

    /// Device `slot`'s place in the records.
    fn whose(&self, slot: u32) -> Whose {
        let s = &self.slots[slot as usize];
        Whose { fleet: usize::from(s.fleet), version: usize::from(s.device.agent_version()) }
    }

    fn record(&mut self, slot: u32, what: impl Fn(&mut Recorder)) {
        let who = self.whose(slot);
        self.records.record(who, what);
    }

    /// Gives up device `slot`'s heartbeat intended at `intended_ns`, at
    /// `now`: missed, at the latency it had then. Every way a heartbeat is
    /// given up comes here: its slot passed while the device was busy, the
    /// run stopped with it pending, or it was still queued for a
    /// connection when waiting ended.
    fn miss(&mut self, slot: u32, intended_ns: u64, now: u64) {
        let who = self.whose(slot);
        self.records.missed(who, micros(now.saturating_sub(intended_ns)), now);
    }

    /// Stops scheduling: heartbeats still pending will never be sent.
    /// Heartbeats queued for a pooled connection were due before the stop:
    /// they still go as connections free up, for up to `drain` after the
    /// end, unless the run was cancelled ([`Worker::miss_queued`]). Retries
    /// not yet sent end with their outcome unknown (retry pending).
    fn stop(&mut self) {
        self.pace.stopping = true;
        self.timers.clear();
        let now = self.now_ns().min(self.settings.end_ns);
        self.pace.stopped_ns = now;
        for i in 0..self.slots.len() {
            if let Some(p) = self.slots[i].pending_ns.take() {
                self.miss(i as u32, p, now);
            }
        }
        let queued = std::mem::take(&mut self.conns.waiting);
        for waiter in queued {
            if waiter.due.attempt == 0 {
                self.conns.waiting.push_back(waiter);
            } else if self.retries.release(waiter.due.slot) {
                self.let_go(waiter.due.slot);
                self.record(waiter.due.slot, Recorder::retry_pending);
            }
        }
        // Heartbeats waiting for their device's idle session: given up as
        // those pending are (a retry's outcome unknown).
        for waiter in self.sessions.release_held() {
            let slot = waiter.due.slot;
            self.let_go(slot);
            if waiter.due.attempt == 0 {
                self.miss(slot, waiter.due.intended_ns, now);
            } else if self.retries.release(slot) {
                self.record(slot, Recorder::retry_pending);
            }
        }
        // Retries not yet due: their heartbeats' outcomes are unknown
        // (neither ok nor failed), counted apart.
        for slot in self.retries.release_all() {
            self.let_go(slot);
            self.record(slot, Recorder::retry_pending);
        }
    }

    /// Heartbeats still queued for a pooled connection (or for their turn
    /// to connect) will not be sent: missed.
    fn miss_queued(&mut self) {
        let now = self.now_ns().min(self.settings.end_ns);
        let connect_queue = std::mem::take(&mut self.conns.connect_queue);
        self.conns.waiting.extend(connect_queue);
        for pace in self.openings.iter_mut().flatten() {
            self.conns.waiting.extend(pace.waiting.drain(..));
        }
        while let Some(Waiter { due, .. }) = self.conns.waiting.pop_front() {
            self.let_go(due.slot);
            if due.attempt == 0 {
                self.miss(due.slot, due.intended_ns, now);
            } else if self.retries.release(due.slot) {
                self.record(due.slot, Recorder::retry_pending);
            }
        }
    }

    fn dispatch_due(&mut self) {
        let now = self.now_ns();
        self.pace.last_wake_ns = now;
        // A new trip: those waiting for their turn to connect first.
        self.conns.new_trip();
        while let Some(waiter) = self.conns.connect_queue.front().copied() {
            if !self.conns.take_connect_turn(waiter.due.slot) {
                break;
            }
            self.conns.connect_queue.pop_front();
            self.open(Waiter { due: waiter.due, queued_ns: now }, now);
        }
        // Then those whose turn to open a session has come (they waited
        // for the target's connect rate: connection wait).
        for fleet in 0..self.openings.len() {
            while let Some(pace) = self.openings[fleet].as_mut()
                && pace.open_now(now)
                && let Some(waiter) = pace.waiting.pop_front()
            {
                pace.take(now);
                self.send(waiter.due, None, waiter.queued_ns, now);
            }
        }
        if self.pace.stopping {
            return;
        }
        let until = self.dispatch_until(now);
        while let Some((t, slot)) = self.timers.pop_due(until) {
            let s = &mut self.slots[slot as usize];
            let f = &self.fleets[usize::from(s.fleet)];
            let next = f.events.advance(&mut s.clock, &f.schedule, s.device.index(), t);
            if next.at_ns < self.settings.end_ns {
                self.timers.push(next.at_ns, slot);
            }
            if self.transports[usize::from(s.fleet)].idles() {
                self.sessions.plan(slot, next.at_ns, next.silent_from);
            }
            if !f.events.is_empty() {
                // Rollouts due by this heartbeat change what it carries.
                f.events.apply_rollouts(&f.generator.profile, &mut s.device, t);
            }
            // Coming back from a silence (outage, reboot): a new connection.
            if std::mem::replace(&mut s.resumed, next.resumed) {
                self.conns.mark_stale(slot);
            }
            let room = self.has_room(slot);
            self.record(slot, Recorder::scheduled);
            self.records.second(t).scheduled += 1;
            if !room {
                // The previous pending heartbeat's slot has passed unsent.
                if let Some(old) = self.slots[slot as usize].pending_ns.replace(t) {
                    self.miss(slot, old, now);
                }
            } else {
                self.start(Due { slot, intended_ns: t, eligible_ns: t, attempt: 0 }, now);
            }
        }
        while let Some(due) = self.retries.pop_due(now) {
            self.start(due, now);
        }
    }

    /// The latest intended time dispatched on a wake-up at `now`. Wake-ups
    /// are at least [`MIN_WAKE_SPACING_NS`] apart, so dispatching only what
    /// is due by `now` would leave a heartbeat up to that long behind its
    /// time (half of it on average, at 2,000/s: schedule lag and latency
    /// that are the generator's, not the target's). Instead a wake-up also
    /// sends what falls due before the next one could come: heartbeats go
    /// at most that much early, and the next wake-up, exactly on its time
    /// (timerfd), finds the next one due. A heartbeat sent early is timed
    /// from when it went ([`Worker::complete`]); its lag is none.
    ///
    /// Never across a second (the timeline's and the flushes' periods), the
    /// warm-up's end, or with tokio's coarse timer, whose wake-ups are late
    /// by up to a tick anyway (and the paused clock's tests exact).
    fn dispatch_until(&self, now: u64) -> u64 {
        if !self.settings.precise_timer {
            return now;
        }
        let next_second = (now / 1_000_000_000 + 1) * 1_000_000_000;
        let mut until = (now + MIN_WAKE_SPACING_NS).min(next_second - 1);
        if now < self.settings.measure_from_ns {
            until = until.min(self.settings.measure_from_ns - 1);
        }
        until.max(now)
    }

    /// Sends `due` now if a connection can be had; or queues it for a
    /// pooled connection, or for its turn to open one.
    fn start(&mut self, due: Due, now: u64) {
        if due.attempt == 0 {
            // Taken on (a retry is still its first attempt's).
            self.slots[due.slot as usize].held += 1;
        }
        let transport = &*self.transports[usize::from(self.slots[due.slot as usize].fleet)];
        if transport.idles() && self.sessions.is_out(due.slot) {
            if let Some(why) = self.sessions.backing_off(due.slot, now) {
                // Its device lost its session and waits to reopen it: the
                // heartbeat has none to go on, for the reason it was lost.
                // (As one whose opening failed: it had no session.)
                self.track(due, std::future::ready(Progress::Ended(Exchange::ended(why))), now, now, true, false);
                return;
            }
            // Its session is out on an idle wait (called back now), or
            // being reopened: it goes when that is back.
            self.sessions.hold(due.slot, Waiter { due, queued_ns: now });
            return;
        }
        match self.conns.checkout(due.slot, transport) {
            Checkout::Use(conn) => self.send(due, Some(conn), now, now),
            Checkout::Open => self.open(Waiter { due, queued_ns: now }, now),
            Checkout::Wait => self.conns.waiting.push_back(Waiter { due, queued_ns: now }),
            Checkout::Later => self.conns.connect_queue.push_back(Waiter { due, queued_ns: now }),
        }
    }

    /// Gives the first heartbeat waiting for a pooled connection one, if
    /// one can be had now.
    fn resume_waiter(&mut self, now: u64) -> bool {
        let Some(waiter) = self.conns.waiting.front().copied() else { return false };
        let transport = &*self.transports[usize::from(self.slots[waiter.due.slot as usize].fleet)];
        match self.conns.checkout(waiter.due.slot, transport) {
            Checkout::Use(conn) => {
                self.conns.waiting.pop_front();
                self.send(waiter.due, Some(conn), waiter.queued_ns, now);
                true
            }
            Checkout::Open => {
                self.conns.waiting.pop_front();
                self.send(waiter.due, None, waiter.queued_ns, now);
                true
            }
            Checkout::Later => {
                // A pool's place is kept for it: its turn to connect is next trip.
                self.conns.waiting.pop_front();
                self.conns.connect_queue.push_back(Waiter { due: waiter.due, queued_ns: waiter.queued_ns });
                true
            }
            Checkout::Wait => false,
        }
    }

    /// Sends `due` on `conn` (a new connection if `None`). The generator
    /// got to it at `reached` (it waited for a connection since then, if
    /// that is before `now`).
    fn send(&mut self, due: Due, conn: Option<T::Conn>, reached: u64, now: u64) {
        // Pool mode: how busy the pool was (other exchanges on it).
        let light = self.conns.light();
        let fresh = conn.is_none();
        let s = &mut self.slots[due.slot as usize];
        let fleet = &self.fleets[usize::from(s.fleet)];
        let transport = &self.transports[usize::from(s.fleet)];
        let mut outgoing =
            fleet.wire.next_heartbeat(&fleet.generator, &mut s.device, wall_ms(), &mut self.scratch, &mut self.body);
        if outgoing.wants_stamp() {
            // An observed message carries its intended time on the wall
            // clock (its observer's), not the run's own.
            let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            outgoing.stamp((since_epoch.as_nanos() as u64).saturating_sub(now.saturating_sub(due.intended_ns)));
        }
        if transport.sessions() && fresh {
            // A session is its device's: opened with the device's identity
            // (built only now), and then the heartbeat goes on it.
            let identity = fleet.wire.identity(&fleet.generator, s.device.index());
            let opening = transport.connect(identity);
            let transport = transport.clone();
            let exchange = async move {
                match opening.await {
                    Ok((conn, connected)) => {
                        // A session that carries several heartbeats at once
                        // goes to its device's place as soon as it is open,
                        // for the device's next ones; this one goes on a
                        // share of it.
                        if transport.window(&conn) > 1
                            && let Some(share) = transport.share(&conn)
                        {
                            let rest = Box::pin(transport.exchange(Some(share), outgoing));
                            return Progress::Opened(Opened { conn, connected, rest });
                        }
                        let exchange = transport.exchange(Some(conn), outgoing).await;
                        Progress::Ended(Exchange { connected: Some(connected), ..exchange })
                    }
                    Err(refused) => Progress::Ended(Exchange::ended(refused)),
                }
            };
            self.track(due, exchange, reached, now, fresh, light);
        } else {
            let exchange = transport.exchange(conn, outgoing).map(Progress::Ended);
            self.track(due, exchange, reached, now, fresh, light);
        }
    }

    /// Records `due` as sent at `now` (reached at `reached`) and keeps its
    /// `exchange` in flight.
    #[inline]
    fn track(
        &mut self,
        due: Due,
        exchange: impl Future<Output = Progress<T::Conn>> + Send + 'static,
        reached: u64,
        now: u64,
        fresh: bool,
        light: bool,
    ) {
        let Due { slot, intended_ns: intended, eligible_ns: eligible, attempt } = due;
        if attempt == 0 {
            let lag = micros(reached.saturating_sub(eligible));
            let wait = micros(now.saturating_sub(reached));
            self.record(slot, |r| r.sent(lag, wait));
            // Held back by its busy device or by a full pool (not by the
            // generator): late, by this much.
            if eligible > intended || now > reached {
                let late = micros(now.saturating_sub(intended));
                self.record(slot, |r| r.late(late));
            }
            self.records.second(now).sent += 1;
            self.pace.last_sent_ns = self.pace.last_sent_ns.max(now);
        } else {
            // Sent: from now on its outcome comes with the exchange, not
            // from what was held (a run that stops now must not count both).
            self.retries.release(slot);
            self.record(slot, Recorder::retried);
            self.records.second(now).retries += 1;
        }
        self.keep(Due { slot, intended_ns: intended, eligible_ns: eligible, attempt }, now, fresh, light, exchange);
    }

    /// Keeps `due`'s exchange, sent at `sent_ns`, in flight until it ends
    /// (or opens its device's session: [`Progress::Opened`]).
    fn keep(
        &mut self,
        due: Due,
        sent_ns: u64,
        fresh: bool,
        light: bool,
        exchange: impl Future<Output = Progress<T::Conn>> + Send + 'static,
    ) {
        let Due { slot, intended_ns, attempt, .. } = due;
        let start = self.settings.start;
        self.in_flight.push(Box::pin(async move {
            let progress = exchange.await;
            // When the answer arrived (the kernel's stamp), not when this
            // thread got round to reading it; never before it was sent.
            let read_ns = start.elapsed().as_nanos() as u64;
            let answered_at = match &progress {
                Progress::Ended(exchange) => exchange.answered_at,
                Progress::Opened(_) => None,
            };
            let done_ns = answered_at.map_or(read_ns, |at| {
                (at.saturating_duration_since(start.into_std()).as_nanos() as u64).max(sent_ns).min(read_ns)
            });
            Done { sent: Sent { slot, intended_ns, sent_ns, done_ns, attempt, fresh, light }, progress }
        }));
    }

    /// A heartbeat's exchange opened its device's session, one that
    /// carries several heartbeats at once: the session is counted and goes
    /// to its device's place now, the heartbeat goes on in flight on a
    /// share of it, and one that waited for room goes too.
    fn opened(&mut self, done: Sent, opened: Opened<T::Conn>) {
        let now = self.now_ns();
        let Opened { conn, connected, rest } = opened;
        let slot = done.slot;
        let tls_us = connected.tls_handshake.map(|d| d.as_micros() as u64);
        let session_us = connected.session.map(|d| d.as_micros() as u64);
        self.record(slot, |r| r.connected(tls_us, session_us));
        self.records.second(now).sessions_opened += 1;
        self.sessions.failures(slot, true);
        let fleet = usize::from(self.slots[slot as usize].fleet);
        self.conns.checkin(slot, Some(conn), true, &*self.transports[fleet]);
        self.conns.lend(slot);
        let due = Due { slot, intended_ns: done.intended_ns, eligible_ns: done.intended_ns, attempt: done.attempt };
        // Counted with its session's opening now: not again when it ends.
        self.keep(due, done.sent_ns, false, done.light, rest.map(Progress::Ended));
        self.fill(slot, now);
    }

    /// Sends device `slot`'s pending heartbeat if it has room for it now
    /// (its session came back, or opened, with room in its window).
    fn fill(&mut self, slot: u32, now: u64) {
        if !self.pace.stopping
            && self.has_room(slot)
            && let Some(pending) = self.slots[slot as usize].pending_ns.take()
        {
            self.start(Due { slot, intended_ns: pending, eligible_ns: now.max(pending), attempt: 0 }, now);
        }
    }

    fn complete(&mut self, done: Done<T::Conn>) {
        let now = self.now_ns();
        let Done { sent, progress } = done;
        let mut exchange = match progress {
            Progress::Ended(exchange) => exchange,
            Progress::Opened(opened) => return self.opened(sent, opened),
        };
        let Sent { slot, intended_ns, sent_ns, done_ns, attempt, fresh, light } = sent;
        if let Some(c) = exchange.connected {
            let tls_us = c.tls_handshake.map(|d| d.as_micros() as u64);
            let session_us = c.session.map(|d| d.as_micros() as u64);
            self.record(slot, |r| r.connected(tls_us, session_us));
        }
        let fleet = usize::from(self.slots[slot as usize].fleet);
        // What counts as success is the fleet's profile's to say.
        exchange.outcome = self.fleets[fleet].wire.judge(exchange.outcome);
        // From its intended time, or from when it went if that was earlier
        // ([`Worker::dispatch_until`]).
        let latency_us = micros(done_ns.saturating_sub(intended_ns.min(sent_ns)));
        let service_us = micros(done_ns.saturating_sub(sent_ns));
        if light {
            self.record(slot, |r| r.light_service(service_us));
        }
        let retry = self.fleets[fleet].retry.filter(|p| attempt < p.max && RetryPolicy::retries(exchange.outcome));
        // The run has stopped: a retry would not go, so the heartbeat's
        // outcome is unknown (counted apart, neither ok nor failed).
        let (retry, pending) = if self.pace.stopping { (None, retry.is_some()) } else { (retry, false) };
        if exchange.outcome.is_ok() {
            let s = &mut self.slots[slot as usize];
            let done_ms = millis(done_ns);
            s.max_gap_ms = s.max_gap_ms.max(done_ms.saturating_sub(s.last_ok_ms));
            s.last_ok_ms = done_ms;
            s.ever_ok = true;
        }
        let outcome = exchange.outcome;
        match retry {
            Some(policy) => {
                // The device keeps the heartbeat and tries again later.
                let next = attempt + 1;
                let wait = policy.delay(next, self.rng.random(), exchange.retry_after);
                self.retries.hold(slot, next, intended_ns, now + wait.as_nanos() as u64);
            }
            None if pending => {
                self.retries.release(slot);
                self.record(slot, Recorder::retry_pending);
            }
            None => {
                self.retries.release(slot);
                let who = self.whose(slot);
                self.records.ended(who, outcome, latency_us, service_us, done_ns);
                if attempt > 0 && outcome.is_ok() {
                    self.record(slot, Recorder::recovered);
                }
            }
        }
        let transport = &*self.transports[fleet];
        let lost = self.conns.checkin(slot, exchange.conn, fresh, transport);
        if self.sessions.enabled() {
            // Sessions open over time: this one opened, or ended (it went
            // on its device's session, or opened one, and lost it).
            let opened = exchange.connected.is_some();
            let second = self.records.second(now);
            second.sessions_opened += u64::from(opened);
            second.sessions_ended += u64::from(lost && (opened || !fresh));
            if exchange.connected.is_some() && !lost {
                self.sessions.failures(slot, true);
            } else if lost && !self.sessions.is_out(slot) && !self.conns.has_conn(slot) {
                // Its session broke, or could not be opened: the device
                // reopens it, at once if its transport's devices do.
                self.sessions.lost(slot, outcome);
                if fresh {
                    self.sessions.failures(slot, false);
                }
                self.reopen(slot, now);
            }
        }
        if matches!(self.settings.connections, ConnectionMode::Pool(_)) {
            // Queued heartbeats go even after the end: they were due before
            // it. A multiplexed pool may take several at once.
            if self.conns.multiplexed() {
                while self.resume_waiter(now) {}
            } else {
                self.resume_waiter(now);
            }
        }
        if retry.is_some() {
            return; // still busy with this heartbeat
        }
        self.let_go(slot);
        let s = &mut self.slots[slot as usize];
        if let Some(pending) = s.pending_ns.take() {
            if self.pace.stopping {
                self.miss(slot, pending, now);
            } else {
                self.start(Due { slot, intended_ns: pending, eligible_ns: now.max(pending), attempt: 0 }, now);
            }
        }
        if self.transports[usize::from(self.slots[slot as usize].fleet)].idles() {
            self.park(slot);
        }
    }

    /// Whether device `slot` may take on another heartbeat now: it holds
    /// none, or it holds fewer than its session's window (an MQTT session
    /// with an in-flight window, open and in its place; one at a time for
    /// a fleet that retries, whose held retry is the device's).
    fn has_room(&self, slot: u32) -> bool {
        let s = &self.slots[slot as usize];
        if s.held == 0 {
            return true;
        }
        let fleet = usize::from(s.fleet);
        self.fleets[fleet].retry.is_none()
            && !self.sessions.is_out(slot)
            && self.conns.window(slot, &*self.transports[fleet]) > s.held
    }

    /// One of device `slot`'s heartbeats ended (or was given up).
    fn let_go(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        debug_assert!(s.held > 0, "device {slot} let go of a heartbeat it did not hold");
        s.held = s.held.saturating_sub(1);
    }

    /// Device `slot`, free until its next heartbeat, has its session (if
    /// it has one) waited on meanwhile ([`sessions`]).
    fn park(&mut self, slot: u32) {
        if !self.sessions.enabled() || self.pace.stopping || self.slots[slot as usize].held > 0 {
            return;
        }
        let Some(conn) = self.conns.take_idle(slot) else { return };
        if self.sessions.silent_from_ns(slot).is_some_and(|at| at <= self.now_ns()) {
            self.end_offline(slot, conn);
            return;
        }
        let until_ns = self.idle_until(slot);
        let transport = &*self.transports[usize::from(self.slots[slot as usize].fleet)];
        self.sessions.wait(transport, slot, conn, self.settings.start, until_ns);
    }

    /// Device `slot` went silent (an outage, a restart): it ends its
    /// session as its fleet says a device does when it goes offline
    /// (dropped, or with a goodbye first: MQTT's DISCONNECT, which tells
    /// the broker not to publish its Will). Its next heartbeat, when it
    /// comes back, opens a new one.
    fn end_offline(&mut self, slot: u32, conn: T::Conn) {
        let fleet = usize::from(self.slots[slot as usize].fleet);
        self.sessions.went_silent(slot);
        let now = self.now_ns();
        self.records.second(now).sessions_ended += 1;
        self.record(slot, |r| r.counters.sessions.ended_offline += 1);
        let goodbye = self.fleets[fleet].wire.says_goodbye_offline();
        tokio::spawn(self.transports[fleet].close(conn, goodbye));
    }

    /// When a wait on device `slot`'s idle session ends at the latest: at
    /// its next heartbeat (or the end), less the most a wake-up sends
    /// early ([`Worker::dispatch_until`]) and the most the wait's own
    /// (tokio's, millisecond) timer may be late, so that the session is
    /// back for it. Should it still be out, the heartbeat calls it back
    /// ([`Sessions::hold`]).
    fn idle_until(&self, slot: u32) -> u64 {
        let early = if self.settings.precise_timer { 3 * MIN_WAKE_SPACING_NS } else { 0 };
        let next = self.sessions.next_ns(slot).min(self.settings.end_ns).saturating_sub(early);
        // Or when the device goes silent, if it does first.
        self.sessions.silent_from_ns(slot).map_or(next, |silent| next.min(silent))
    }

    /// A wait on an idle session ended: counted; the session waited on
    /// again after a keep-alive or an inbound message (while its device
    /// has time and nothing waits for it), or back in its device's place
    /// (none, if the far end closed it), and the heartbeat held for it
    /// sent.
    fn idled(&mut self, idled: Idled<T::Conn>) {
        let Idled { slot, conn, what, until_ns } = idled;
        let fleet = usize::from(self.slots[slot as usize].fleet);
        let now = self.now_ns();
        self.record(slot, |r| sessions::count(&mut r.counters.sessions, &what));
        match what {
            Ended::Idle(what) => {
                let again = matches!(what, Idle::Keepalive | Idle::Inbound)
                    && !self.pace.stopping
                    && !self.sessions.is_held(slot)
                    && now < until_ns;
                match conn {
                    Some(conn) if again => {
                        self.sessions.wait(&*self.transports[fleet], slot, conn, self.settings.start, until_ns);
                    }
                    // Its device has gone silent meanwhile (the wait's
                    // end, or a keep-alive at that instant).
                    Some(conn)
                        if !self.sessions.is_held(slot)
                            && self.sessions.silent_from_ns(slot).is_some_and(|at| at <= now) =>
                    {
                        self.sessions.back(slot);
                        self.end_offline(slot, conn);
                    }
                    conn => {
                        let closed = conn.is_none();
                        if closed {
                            self.records.second(now).sessions_ended += 1;
                        }
                        let held = self.sessions.back(slot);
                        self.conns.checkin(slot, conn, false, &*self.transports[fleet]);
                        match held {
                            Some(waiter) => {
                                self.resume_held(waiter, now);
                                self.fill(slot, now);
                            }
                            None if closed => {
                                self.sessions.lost(slot, crate::stats::Outcome::Failed(crate::stats::Failure::Connect));
                                self.reopen(slot, now);
                            }
                            None => {}
                        }
                    }
                }
            }
            Ended::Reopened(connected) => {
                self.records.second(now).sessions_opened += 1;
                let tls_us = connected.tls_handshake.map(|d| d.as_micros() as u64);
                let session_us = connected.session.map(|d| d.as_micros() as u64);
                self.record(slot, |r| r.connected(tls_us, session_us));
                self.sessions.failures(slot, true);
                let held = self.sessions.back(slot);
                self.conns.checkin(slot, conn, false, &*self.transports[fleet]);
                match held {
                    Some(waiter) => {
                        self.resume_held(waiter, now);
                        self.fill(slot, now);
                    }
                    None => self.park(slot),
                }
            }
            Ended::NotReopened(refused) => {
                self.sessions.lost(slot, refused);
                let held = self.sessions.back(slot);
                self.reopen(slot, now);
                if let Some(waiter) = held {
                    // It waited for this opening: its outcome is the refusal.
                    self.track(
                        waiter.due,
                        std::future::ready(Progress::Ended(Exchange::ended(refused))),
                        waiter.queued_ns,
                        now,
                        true,
                        false,
                    );
                }
            }
        }
    }

    /// Device `slot` lost its session (or could not open one): if its
    /// transport's devices reopen at once ([`crate::transport::Reconnect`]),
    /// it opens a new one after its reconnect delay, doubled for each
    /// opening that failed since it was last open; otherwise its next
    /// heartbeat opens one.
    fn reopen(&mut self, slot: u32, now: u64) {
        let fleet = usize::from(self.slots[slot as usize].fleet);
        let Some(policy) = self.transports[fleet].reconnect() else { return };
        if self.pace.stopping || self.sessions.is_out(slot) {
            return;
        }
        let failures = self.sessions.failures(slot, false);
        let mut at_ns = now + policy.delay(failures, self.rng.random()).as_nanos() as u64;
        if let Some(pace) = self.openings[fleet].as_mut() {
            // At its delay, or at its turn if that is later.
            at_ns = pace.take(at_ns);
        }
        if at_ns >= self.settings.end_ns {
            return;
        }
        let s = &self.slots[slot as usize];
        let f = &self.fleets[fleet];
        let identity = f.wire.identity(&f.generator, s.device.index());
        self.sessions.reopen(&*self.transports[fleet], slot, identity, self.settings.start, at_ns);
    }

    /// Sends a heartbeat that waited for its device's session (or queues
    /// it for its turn to connect, if the session is gone).
    fn resume_held(&mut self, waiter: Waiter, now: u64) {
        let transport = &*self.transports[usize::from(self.slots[waiter.due.slot as usize].fleet)];
        match self.conns.checkout(waiter.due.slot, transport) {
            Checkout::Use(conn) => self.send(waiter.due, Some(conn), waiter.queued_ns, now),
            Checkout::Open => self.open(waiter, now),
            Checkout::Later => self.conns.connect_queue.push_back(waiter),
            Checkout::Wait => self.conns.waiting.push_back(waiter),
        }
    }

    /// Sends a heartbeat that opens its connection, at its fleet's pace of
    /// openings if it has one: now if its turn has come, else it waits
    /// for its turn (connection wait, from `waiter.queued_ns`).
    fn open(&mut self, waiter: Waiter, now: u64) {
        let fleet = usize::from(self.slots[waiter.due.slot as usize].fleet);
        if let Some(pace) = self.openings[fleet].as_mut() {
            if !pace.open_now(now) || !pace.waiting.is_empty() {
                pace.waiting.push_back(waiter);
                return;
            }
            pace.take(now);
        }
        self.send(waiter.due, None, waiter.queued_ns, now);
    }

    /// At the first event past the warm-up: hands over what the warm-up
    /// recorded, so that it is kept apart.
    fn end_warmup(&mut self, out: &mpsc::UnboundedSender<Flush>) {
        if !self.records.measuring && self.now_ns() >= self.settings.measure_from_ns {
            self.flush(out, false);
        }
    }

    fn flush(&mut self, out: &mpsc::UnboundedSender<Flush>, last: bool) {
        let warmup = !self.records.measuring;
        if self.now_ns() >= self.settings.measure_from_ns {
            self.records.measuring = true;
        }
        let (fleets, cohorts, seconds) = self.records.take();
        let freshness = last.then(|| self.freshness());
        let live_freshness = if self.settings.live_freshness && !last { self.walk_live() } else { None };
        let demand = self.pace.demand_mark.and_then(|(before, at)| {
            let now = Demand::read_thread()?;
            let instant = Instant::now();
            self.pace.demand_mark = Some((now, instant));
            Some(Demand { wanted_ns: now.saturating_sub(before), wall_ns: (instant - at).as_nanos() as u64 })
        });
        let _ = out.send(Flush {
            worker: self.id,
            at_ns: self.now_ns(),
            fleets,
            in_flight: self.in_flight.len(),
            last_sent_ns: self.pace.last_sent_ns,
            last,
            warmup,
            freshness,
            live_freshness,
            cohorts,
            demand,
            seconds,
        });
    }

    /// Each fleet's freshness over the devices that were due before
    /// scheduling stopped; a device's open gap runs to that moment.
    fn freshness(&self) -> Vec<Freshness> {
        let mut out: Vec<Freshness> = self.fleets.iter().map(|_| Freshness::default()).collect();
        add_freshness(&self.slots, &self.fleets, millis(self.pace.stopped_ns), &mut out);
        out
    }

    /// The next chunk of the live freshness pass: each chunk's open gaps
    /// run to now; a finished pass is returned.
    fn walk_live(&mut self) -> Option<Vec<Freshness>> {
        let now_ns = self.now_ns();
        let walk = &mut self.live_walk;
        if walk.partial.is_none() {
            if walk.started_ns.is_some_and(|at| now_ns < at + 1_000_000_000) {
                return None;
            }
            walk.started_ns = Some(now_ns);
            walk.next = 0;
            walk.partial = Some(self.fleets.iter().map(|_| Freshness::default()).collect());
        }
        let until = if self.pace.stopping { self.pace.stopped_ns.min(now_ns) } else { now_ns };
        let end = (walk.next + LIVE_WALK_CHUNK).min(self.slots.len());
        if let Some(partial) = walk.partial.as_mut() {
            add_freshness(&self.slots[walk.next..end], &self.fleets, millis(until), partial);
        }
        walk.next = end;
        if end == self.slots.len() { walk.partial.take() } else { None }
    }
}

/// Adds the freshness of `slots` (those due before `end_ms`, a device's
/// open gap running to it) to `out`, by fleet.
fn add_freshness(slots: &[Slot], fleets: &[FleetRuntime], end_ms: u32, out: &mut [Freshness]) {
    for s in slots {
        if s.last_ok_ms >= end_ms && !s.ever_ok {
            continue; // never due
        }
        let fleet = usize::from(s.fleet);
        let gap_ms = s.max_gap_ms.max(end_ms.saturating_sub(s.last_ok_ms));
        let stale_after_us = fleets[fleet].stale_after.as_micros() as u64;
        out[fleet].device(u64::from(gap_ms) * 1000, stale_after_us, s.ever_ok);
    }
}

/// Milliseconds since the start, as freshness keeps them (49 days at most).
fn millis(ns: u64) -> u32 {
    u32::try_from(ns / 1_000_000).unwrap_or(u32::MAX)
}

fn micros(ns: u64) -> u64 {
    ns / 1_000
}

fn wall_ms() -> u64 {
    crate::units::now_ms()
}

#[cfg(test)]
mod tests {
    //! One worker driven directly ([`run_worker`]) under tokio's paused
    //! clock, against a transport that answers after a fixed delay: when a
    //! heartbeat is sent late, when it is given up, and what a stop does to
    //! those queued, to the millisecond.

    use super::*;
    use crate::fleet::StartMode;
    use crate::transport::testing::Fake;

    fn fleet(devices: u64, schedule: Schedule) -> FleetRuntime {
        let generator = crate::device::plain_generator();
        FleetRuntime::new(generator, schedule, devices, schedule.interval * 3)
    }

    fn settings(end: Duration, connections: ConnectionMode, pool_size: u32) -> WorkerSettings {
        WorkerSettings {
            start: Instant::now(),
            end_ns: end.as_nanos() as u64,
            connections,
            pool_size,
            seed: 1,
            flush_every: Duration::from_secs(1),
            precise_timer: false,
            cohorts: false,
            measure_from_ns: 0,
            drain: Duration::from_secs(1),
            preconnect: false,
            live_freshness: false,
            measure_demand: false,
            opening_share: 1.0,
        }
    }

    /// Runs one worker over every device of `fleet` until it stops (or
    /// `cancel_after`), and adds up what it flushed.
    async fn drive(
        delay: Duration,
        fleet: FleetRuntime,
        settings: WorkerSettings,
        cancel_after: Option<Duration>,
    ) -> Recorder {
        let devices = (0..fleet.devices).map(|i| (0u16, i)).collect();
        let (ready, mut ready_rx) = mpsc::unbounded_channel();
        let (go_tx, go) = tokio::sync::watch::channel(None);
        let (out, mut flushes) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let fleets: Arc<[FleetRuntime]> = vec![fleet].into();
        let worker = tokio::spawn(run_worker(
            0,
            vec![Arc::new(Fake { delay, ..Fake::default() })].into(),
            fleets,
            devices,
            settings,
            StartSignal { ready, go },
            cancel.clone(),
            out,
        ));
        ready_rx.recv().await.expect("the worker reports ready");
        let start = Instant::now();
        go_tx.send(Some(start)).unwrap();
        if let Some(after) = cancel_after {
            tokio::time::sleep_until(start + after).await;
            cancel.cancel();
        }
        worker.await.unwrap();
        let mut total = Recorder::default();
        while let Ok(flush) = flushes.try_recv() {
            total.add(&flush.fleets[0]);
        }
        total
    }

    fn ms(us: u64) -> u64 {
        (us + 500) / 1000
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_device_sends_its_latest_slot_late_and_misses_the_slots_that_pass() {
        // Every 100 ms, answered after 230 ms, for 1 s. The device is busy
        // 0–230: the slot at 100 waits, the one at 200 replaces it (100 is
        // missed, 100 ms after it was intended) and goes at 230, 30 ms
        // late; and so on: 400 goes at 460, 600 at 690, 900 at 920.
        let r = drive(
            Duration::from_millis(230),
            fleet(1, Schedule::every(Duration::from_millis(100))),
            settings(Duration::from_secs(1), ConnectionMode::PerDevice, 0),
            None,
        )
        .await;
        let c = &r.counters;
        assert_eq!((c.scheduled, c.sent, c.missed, c.late), (10, 5, 5, 4));
        assert_eq!(c.ok(), 5, "the last, sent at 920 ms, is answered after the end");
        // tokio's timer rounds each sleep up to its next millisecond tick:
        // a millisecond or two more per answer.
        let (least, most) = (ms(r.lateness.min()), ms(r.lateness.max()));
        assert!((20..=22).contains(&least) && (90..=92).contains(&most), "late by 30, 60, 90, 20 ms: {least}..{most}");
        // Each missed heartbeat counts at the latency it had when the next
        // slot took its place: 100 ms.
        assert_eq!(r.latency.count_between(99_000, 101_000), 5, "{:?}", r.latency);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_misses_the_heartbeats_queued_for_the_pool_and_lets_the_one_in_flight_finish() {
        // Three devices at once through one pooled connection answered
        // after 500 ms, cancelled at 100 ms: one in flight, two queued.
        let schedule = Schedule { start: StartMode::Synchronized, ..Schedule::every(Duration::from_secs(10)) };
        let r = drive(
            Duration::from_millis(500),
            fleet(3, schedule),
            settings(Duration::from_secs(5), ConnectionMode::Pool(1), 1),
            Some(Duration::from_millis(100)),
        )
        .await;
        let c = &r.counters;
        assert_eq!((c.scheduled, c.sent, c.missed, c.ok()), (3, 1, 2, 1));
        assert_eq!(r.latency.count_between(99_000, 101_000), 2, "missed at the cancel, 100 ms after their time");
        assert_eq!(r.latency.count_between(499_000, 501_000), 1, "the one sent, answered at 500 ms");
    }
}
