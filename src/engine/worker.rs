//! One engine worker: a single task that owns a share of the devices, their
//! schedules and connections, dispatches their heartbeats at the intended
//! times and records what happened, with no shared state on the way.
//!
//! The worker sleeps until the earliest intended time in its timer heap,
//! dispatches every heartbeat that is due (a device whose previous
//! heartbeat is still in flight keeps the new one pending; if its next
//! intended time comes first, the pending one is *missed*), and polls the
//! exchanges in flight as one `FuturesUnordered`. Connections live in the
//! worker: a device's own (per-device mode), the worker's share of a pool,
//! or none (a new connection per heartbeat). Every `flush_every` it hands
//! its per-fleet recorders to the aggregator and starts afresh.
//!
//! Times are nanoseconds since the run's start; the timer's granularity
//! (1 ms in tokio) shows up as schedule lag, which is recorded.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fleet::Schedule;
use crate::fleet::{DeviceClock, FleetEvents, RetryPolicy, RolloutTarget};
use crate::heartbeat::{Device, FleetGenerator, Scratch};
use crate::stats::timeline::SecondPart;
use crate::stats::{Freshness, Outcome, Recorder};
use crate::transport::settings::ConnectionMode;
use crate::transport::{Exchange, Transport};
use rand::rngs::Xoshiro128PlusPlus;
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;

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
    /// The worker has a thread of its own: measure how much of the time it
    /// wanted the CPU ([`Demand`]).
    pub measure_demand: bool,
}

/// How much of the time a worker's thread wanted a CPU: running, or
/// runnable and waiting for one (Linux's `/proc/thread-self/schedstat`).
/// An open-model generator needs idle time to be on time: a thread that
/// always has work takes answers late, so the service times, connection
/// waits and latencies it measures include its own queueing, whatever its
/// schedule lag says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Nanoseconds the thread ran or waited to run.
    pub wanted_ns: u64,
    /// Nanoseconds of wall-clock time they are out of.
    pub wall_ns: u64,
}

impl Demand {
    pub fn add(&mut self, other: Demand) {
        self.wanted_ns += other.wanted_ns;
        self.wall_ns += other.wall_ns;
    }

    /// The share of the time the thread wanted a CPU (0 with no time).
    pub fn share(&self) -> f64 {
        if self.wall_ns == 0 { 0.0 } else { self.wanted_ns as f64 / self.wall_ns as f64 }
    }

    /// This thread's time on and waiting for a CPU so far, in ns.
    fn read_thread() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        let (running, waiting) = (fields.next()??, fields.next()??);
        Some(running + waiting)
    }
}

struct Slot<C> {
    fleet: u16,
    device: Device,
    clock: DeviceClock,
    busy: bool,
    /// An intended time that came while the device was busy.
    pending_ns: Option<u64>,
    conn: Option<C>,
    /// Freshness, in ms since the start: the last success (or the first
    /// intended time, before any), and the largest gap so far.
    last_ok_ms: u32,
    max_gap_ms: u32,
    ever_ok: bool,
    /// The next heartbeat comes back from a silence: on a new connection.
    resumed: bool,
    /// Its connection is not to be used again (it came back from a
    /// silence): closed when the device next connects, so that a whole
    /// fleet's closes are spread as its connects are.
    stale: bool,
}

/// A heartbeat between a failed attempt and its retry (if the run ends
/// first, its outcome is unknown: counted as retry-pending).
struct Held {
    /// The retry's number (1 for the first).
    attempt: u8,
    intended_ns: u64,
}

/// A heartbeat (or one of its retries) ready to go.
#[derive(Debug, Clone, Copy)]
struct Due {
    slot: u32,
    intended_ns: u64,
    /// When it could go: its intended time, when its device became free,
    /// or (a retry) when its wait ended.
    eligible_ns: u64,
    /// 0 for the first attempt, n for retry n.
    attempt: u8,
}

/// A heartbeat waiting for a pooled connection.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    due: Due,
    /// When the generator got to it and found no connection free.
    queued_ns: u64,
}

struct Done<C> {
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
    exchange: Exchange<C>,
}

type InFlight<C> = FuturesUnordered<Pin<Box<dyn Future<Output = Done<C>> + Send>>>;

struct Worker<T: Transport> {
    id: usize,
    transport: Arc<T>,
    fleets: Arc<[FleetRuntime]>,
    settings: WorkerSettings,
    slots: Vec<Slot<T::Conn>>,
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    in_flight: InFlight<T::Conn>,
    recorders: Vec<Recorder>,
    /// Pool mode: idle connections (HTTP/2: the live, shared ones),
    /// connections open (HTTP/2: being opened), and heartbeats waiting
    /// for one, in order.
    idle: Vec<T::Conn>,
    open: u32,
    waiting: VecDeque<Waiter>,
    /// HTTP/2 pools: which shared connection the next exchange takes.
    next_shared: usize,
    /// Heartbeats that need a new connection beyond this trip's
    /// [`MAX_CONNECTS_PER_TRIP`], in order.
    connect_queue: VecDeque<Waiter>,
    /// Exchanges on a new connection started this trip.
    connects_this_trip: u32,
    scratch: Scratch,
    body: Vec<u8>,
    stopping: bool,
    /// When the worker last dispatched (ns since start).
    last_wake_ns: u64,
    /// When scheduling stopped (ns since start).
    stopped_ns: u64,
    /// When the last first attempt was sent (ns since start): past the end
    /// when a pool's queue drained.
    last_sent_ns: u64,
    /// Retries waiting for their time, and what they would report.
    retry_timers: BinaryHeap<Reverse<(u64, u32)>>,
    held: HashMap<u32, Held>,
    /// Draws retry jitter.
    rng: Xoshiro128PlusPlus,
    /// Per fleet, per agent version, when broken down.
    cohorts: Vec<Vec<Option<Recorder>>>,
    /// The seconds touched since the last flush.
    seconds: Vec<SecondPart>,
    /// Past the warm-up (what is recorded now is measured).
    measuring: bool,
    /// The thread's CPU demand and the instant at the previous flush.
    demand_mark: Option<(u64, Instant)>,
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
    transport: Arc<T>,
    fleets: Arc<[FleetRuntime]>,
    devices: Vec<(u16, u64)>,
    settings: WorkerSettings,
    mut start: StartSignal,
    cancel: CancellationToken,
    out: mpsc::UnboundedSender<Flush>,
) {
    let settings_seed = settings.seed;
    let measuring_from_start = settings.measure_from_ns == 0;
    let mut w = Worker {
        id,
        recorders: fleets.iter().map(|_| Recorder::default()).collect(),
        slots: Vec::with_capacity(devices.len()),
        timers: BinaryHeap::with_capacity(devices.len()),
        transport,
        fleets,
        settings,
        in_flight: FuturesUnordered::new(),
        idle: Vec::new(),
        open: 0,
        waiting: VecDeque::new(),
        next_shared: 0,
        connect_queue: VecDeque::new(),
        connects_this_trip: 0,
        scratch: Scratch::default(),
        body: Vec::with_capacity(2048),
        stopping: false,
        last_wake_ns: 0,
        stopped_ns: 0,
        last_sent_ns: 0,
        retry_timers: BinaryHeap::new(),
        held: HashMap::new(),
        rng: Xoshiro128PlusPlus::seed_from_u64(settings_seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        cohorts: Vec::new(),
        seconds: Vec::new(),
        measuring: measuring_from_start,
        demand_mark: None,
    };
    if w.settings.cohorts {
        w.cohorts =
            w.fleets.iter().map(|f| (0..f.generator.profile.agent_versions.len()).map(|_| None).collect()).collect();
    }
    for (fleet, index) in devices {
        let f = &w.fleets[usize::from(fleet)];
        let mut clock = DeviceClock::new(w.settings.seed, f.key, index);
        let first = f.events.first(&mut clock, &f.schedule, f.devices, index);
        let slot = w.slots.len() as u32;
        w.slots.push(Slot {
            fleet,
            device: f.generator.device(index),
            clock,
            busy: false,
            pending_ns: None,
            conn: None,
            last_ok_ms: millis(first.at_ns),
            max_gap_ms: 0,
            ever_ok: false,
            resumed: first.resumed,
            stale: false,
        });
        if first.at_ns < w.settings.end_ns {
            w.timers.push(Reverse((first.at_ns, slot)));
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
        w.demand_mark = Demand::read_thread().map(|ns| (ns, Instant::now()));
    }
    w.run(cancel, &out).await;
}

impl<T: Transport> Worker<T> {
    /// Opens this worker's share of the pool, all at once.
    async fn preconnect(&mut self) {
        if !matches!(self.settings.connections, ConnectionMode::Pool(_)) {
            return;
        }
        let opening: FuturesUnordered<_> = (0..self.settings.pool_size).map(|_| self.transport.connect()).collect();
        let opened: Vec<Option<T::Conn>> = opening.collect().await;
        for conn in opened.into_iter().flatten() {
            // A kept HTTP/1 connection counts as open; a shared HTTP/2 one
            // is simply live.
            if !self.transport.multiplexed() {
                self.open += 1;
            }
            self.idle.push(conn);
        }
    }

    fn now_ns(&self) -> u64 {
        self.settings.start.elapsed().as_nanos() as u64
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
        loop {
            let mut next_due = match (self.timers.peek(), self.retry_timers.peek()) {
                (Some(Reverse((a, _))), Some(Reverse((b, _)))) => Some(*a.min(b)),
                (a, b) => a.or(b).map(|Reverse((t, _))| *t),
            };
            if self.stopping {
                next_due = None;
            }
            // Heartbeats waiting for their turn to connect go next trip.
            if !self.connect_queue.is_empty() {
                next_due = Some(0);
            }
            let scheduling = next_due.is_some();
            if self.stopping && self.in_flight.is_empty() && self.connect_queue.is_empty() {
                // Nothing in flight will free a connection for them now.
                self.miss_queued();
                break;
            }
            let spaced = next_due.unwrap_or(0).max(self.last_wake_ns + MIN_WAKE_SPACING_NS);
            let wake = self.settings.start + Duration::from_nanos(spaced);
            tokio::select! {
                biased;
                () = &mut cancelled, if !self.stopping => {
                    self.end_warmup(out);
                    self.stop();
                    self.miss_queued();
                }
                () = &mut ended, if !self.stopping => {
                    // Heartbeats intended before the end but not yet
                    // dispatched (same timer tick) still go.
                    self.end_warmup(out);
                    self.dispatch_due();
                    self.stop();
                }
                () = &mut drain_ended, if self.stopping && !self.waiting.is_empty() => {
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

    /// Stops scheduling: heartbeats still pending will never be sent.
    /// Heartbeats queued for a pooled connection were due before the stop:
    /// they still go as connections free up, for up to `drain` after the
    /// end, unless the run was cancelled ([`Worker::miss_queued`]). Retries
    /// queued end with their last outcome.
    fn stop(&mut self) {
        self.stopping = true;
        self.timers.clear();
        let now = self.now_ns().min(self.settings.end_ns);
        self.stopped_ns = now;
        for i in 0..self.slots.len() {
            if let Some(p) = self.slots[i].pending_ns.take() {
                self.record_missed(i as u32, micros(now.saturating_sub(p)), now);
            }
        }
        let queued = std::mem::take(&mut self.waiting);
        for waiter in queued {
            if waiter.due.attempt == 0 {
                self.waiting.push_back(waiter);
            } else if self.held.remove(&waiter.due.slot).is_some() {
                self.slots[waiter.due.slot as usize].busy = false;
                self.record(waiter.due.slot, Recorder::retry_pending);
            }
        }
        // Retries not yet due: their heartbeats' outcomes are unknown
        // (neither ok nor failed), counted apart.
        self.retry_timers.clear();
        for (slot, _) in std::mem::take(&mut self.held) {
            self.slots[slot as usize].busy = false;
            self.record(slot, Recorder::retry_pending);
        }
    }

    /// Heartbeats still queued for a pooled connection (or for their turn
    /// to connect) will not be sent: missed.
    fn miss_queued(&mut self) {
        let now = self.now_ns().min(self.settings.end_ns);
        let connect_queue = std::mem::take(&mut self.connect_queue);
        self.waiting.extend(connect_queue);
        while let Some(Waiter { due, .. }) = self.waiting.pop_front() {
            self.slots[due.slot as usize].busy = false;
            if due.attempt == 0 {
                self.record_missed(due.slot, micros(now.saturating_sub(due.intended_ns)), now);
            } else if self.held.remove(&due.slot).is_some() {
                self.record(due.slot, Recorder::retry_pending);
            }
        }
    }

    /// The recorders of device `slot`: its fleet's, and its cohort's (its
    /// fleet and current agent version) when results are broken down.
    fn recorders_of(&mut self, slot: u32) -> (&mut Recorder, Option<&mut Recorder>) {
        let s = &self.slots[slot as usize];
        let (fleet, version) = (usize::from(s.fleet), usize::from(s.device.agent_version()));
        let cohort = self
            .cohorts
            .get_mut(fleet)
            .and_then(|v| v.get_mut(version))
            .map(|c| c.get_or_insert_with(Recorder::default));
        (&mut self.recorders[fleet], cohort)
    }

    fn record(&mut self, slot: u32, what: impl Fn(&mut Recorder)) {
        let (fleet, cohort) = self.recorders_of(slot);
        what(fleet);
        if let Some(c) = cohort {
            what(c);
        }
    }

    /// The second of the run that `at_ns` falls in, as this flush period records it.
    fn second(&mut self, at_ns: u64) -> &mut SecondPart {
        let second = at_ns / 1_000_000_000;
        match self.seconds.iter().position(|p| p.second == second) {
            Some(i) => &mut self.seconds[i],
            None => {
                self.seconds.push(SecondPart::new(second));
                self.seconds.last_mut().expect("just pushed")
            }
        }
    }

    fn record_missed(&mut self, slot: u32, latency_us: u64, at_ns: u64) {
        self.record(slot, |r| r.missed(latency_us));
        let s = self.second(at_ns);
        s.missed += 1;
        crate::stats::record(&mut s.latency, latency_us);
    }

    /// Records a heartbeat's final outcome, which came at `at_ns`.
    fn record_end(&mut self, slot: u32, outcome: Outcome, latency_us: u64, service_us: u64, at_ns: u64) {
        self.record(slot, |r| r.completed(outcome, latency_us, service_us));
        let s = self.second(at_ns);
        s.classes[outcome.class()] += 1;
        crate::stats::record(&mut s.latency, latency_us);
    }

    fn dispatch_due(&mut self) {
        let now = self.now_ns();
        self.last_wake_ns = now;
        // A new trip: those waiting for their turn to connect first.
        self.connects_this_trip = 0;
        while self.connects_this_trip < MAX_CONNECTS_PER_TRIP
            && let Some(waiter) = self.connect_queue.pop_front()
        {
            self.send(waiter.due, None, now, now);
        }
        if self.stopping {
            return;
        }
        while let Some(&Reverse((t, slot))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let s = &mut self.slots[slot as usize];
            let f = &self.fleets[usize::from(s.fleet)];
            let next = f.events.advance(&mut s.clock, &f.schedule, s.device.index(), t);
            if next.at_ns < self.settings.end_ns {
                self.timers.push(Reverse((next.at_ns, slot)));
            }
            if !f.events.is_empty() {
                // Rollouts due by this heartbeat change what it carries.
                apply_rollouts(f, &mut s.device, t);
            }
            // Coming back from a silence (outage, reboot): a new connection.
            if std::mem::replace(&mut s.resumed, next.resumed) {
                s.stale = true;
            }
            let busy = s.busy;
            self.record(slot, Recorder::scheduled);
            self.second(t).scheduled += 1;
            if busy {
                // The previous pending heartbeat's slot has passed unsent.
                if let Some(old) = self.slots[slot as usize].pending_ns.replace(t) {
                    self.record_missed(slot, micros(now.saturating_sub(old)), now);
                }
            } else {
                self.start(Due { slot, intended_ns: t, eligible_ns: t, attempt: 0 }, now);
            }
        }
        while let Some(&Reverse((t, slot))) = self.retry_timers.peek() {
            if t > now {
                break;
            }
            self.retry_timers.pop();
            if let Some(h) = self.held.get(&slot) {
                let due = Due { slot, intended_ns: h.intended_ns, eligible_ns: t, attempt: h.attempt };
                self.start(due, now);
            }
        }
    }

    /// Sends `due` now if a connection can be had, or queues it for a
    /// pooled connection.
    fn start(&mut self, due: Due, now: u64) {
        match self.checkout() {
            Some(conn) => self.send(due, conn, now, now),
            None => {
                self.slots[due.slot as usize].busy = true;
                self.waiting.push_back(Waiter { due, queued_ns: now });
            }
        }
    }

    /// Gives the first waiter a connection, if one can be had now.
    fn resume_waiter(&mut self, now: u64) -> bool {
        let Some(waiter) = self.waiting.front().copied() else { return false };
        match self.checkout_pooled() {
            Some(conn) => {
                self.waiting.pop_front();
                self.send(waiter.due, conn, waiter.queued_ns, now);
                true
            }
            None => false,
        }
    }

    /// A connection for the next exchange of a device: `Some(Some(c))` an
    /// open one, `Some(None)` a new one (the exchange opens it), `None`
    /// none now (a full pool: wait).
    fn checkout(&mut self) -> Option<Option<T::Conn>> {
        match self.settings.connections {
            // Per-device connections are taken in `send`, from the slot.
            ConnectionMode::PerDevice | ConnectionMode::NewPerRequest => Some(None),
            ConnectionMode::Pool(_) => self.checkout_pooled(),
        }
    }

    fn checkout_pooled(&mut self) -> Option<Option<T::Conn>> {
        if self.transport.multiplexed() {
            // HTTP/2: up to pool_size connections, each shared by every
            // exchange in flight, taken in turn.
            let transport = &self.transport;
            self.idle.retain(|c| !transport.is_closed(c));
            if self.idle.len() as u32 + self.open < self.settings.pool_size {
                self.open += 1;
                Some(None)
            } else if self.idle.is_empty() {
                None
            } else {
                self.next_shared = self.next_shared.wrapping_add(1);
                Some(self.transport.share(&self.idle[self.next_shared % self.idle.len()]))
            }
        } else {
            match self.idle.pop() {
                Some(c) => Some(Some(c)),
                None if self.open < self.settings.pool_size => {
                    self.open += 1;
                    Some(None)
                }
                None => None,
            }
        }
    }

    /// Sends `due` on `conn` (a new connection if `None`; per-device: the
    /// device's own). The generator got to it at `reached` (it waited for a
    /// connection since then, if that is before `now`).
    fn send(&mut self, due: Due, conn: Option<T::Conn>, reached: u64, now: u64) {
        let Due { slot, intended_ns: intended, eligible_ns: eligible, attempt } = due;
        let per_device = self.settings.connections == ConnectionMode::PerDevice;
        let needs_new = if per_device {
            let s = &self.slots[slot as usize];
            s.conn.is_none() || s.stale
        } else {
            conn.is_none()
        };
        if needs_new {
            if self.connects_this_trip >= MAX_CONNECTS_PER_TRIP {
                // Its turn to connect comes next trip (a pool's opening
                // slot stays counted in `open`).
                self.slots[slot as usize].busy = true;
                self.connect_queue.push_back(Waiter { due, queued_ns: reached });
                return;
            }
            self.connects_this_trip += 1;
        }
        let conn = if per_device {
            let s = &mut self.slots[slot as usize];
            // A stale connection is closed here, one connect at a time.
            let own = s.conn.take();
            if std::mem::take(&mut s.stale) { None } else { own }
        } else {
            conn
        };
        // Pool mode: how busy the pool was (other exchanges on it).
        let light = match self.settings.connections {
            ConnectionMode::Pool(_) if !self.transport.multiplexed() => {
                let others = self.open.saturating_sub(self.idle.len() as u32 + 1);
                2 * others <= self.settings.pool_size
            }
            _ => false,
        };
        let fresh = conn.is_none();
        let s = &mut self.slots[slot as usize];
        s.busy = true;
        let fleet = &self.fleets[usize::from(s.fleet)];
        self.body.clear();
        s.device.write_next(&fleet.generator, wall_ms(), &mut self.scratch, &mut self.body);
        let exchange = self.transport.exchange(conn, Bytes::copy_from_slice(&self.body));
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
            self.second(now).sent += 1;
            self.last_sent_ns = self.last_sent_ns.max(now);
        } else {
            // Sent: from now on its outcome comes with the exchange, not
            // from what was held (a run that stops now must not count both).
            self.held.remove(&slot);
            self.record(slot, Recorder::retried);
            self.second(now).retries += 1;
        }
        let start = self.settings.start;
        self.in_flight.push(Box::pin(async move {
            let exchange = exchange.await;
            let done_ns = start.elapsed().as_nanos() as u64;
            Done { slot, intended_ns: intended, sent_ns: now, done_ns, attempt, fresh, light, exchange }
        }));
    }

    fn complete(&mut self, done: Done<T::Conn>) {
        let now = self.now_ns();
        let Done { slot, intended_ns, sent_ns, done_ns, attempt, fresh, light, exchange } = done;
        if let Some(c) = exchange.connected {
            let tls_us = c.tls_handshake.map(|d| d.as_micros() as u64);
            self.record(slot, |r| r.connected(tls_us));
        }
        let fleet = usize::from(self.slots[slot as usize].fleet);
        let latency_us = micros(done_ns.saturating_sub(intended_ns));
        let service_us = micros(done_ns.saturating_sub(sent_ns));
        if light {
            self.record(slot, |r| r.light_service(service_us));
        }
        let retry = self.fleets[fleet].retry.filter(|p| attempt < p.max && RetryPolicy::retries(exchange.outcome));
        // The run has stopped: a retry would not go, so the heartbeat's
        // outcome is unknown (counted apart, neither ok nor failed).
        let (retry, pending) = if self.stopping { (None, retry.is_some()) } else { (retry, false) };
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
                let held = Held { attempt: attempt + 1, intended_ns };
                let wait = policy.delay(held.attempt, self.rng.random(), exchange.retry_after);
                self.retry_timers.push(Reverse((now + wait.as_nanos() as u64, slot)));
                self.held.insert(slot, held);
            }
            None if pending => {
                self.held.remove(&slot);
                self.record(slot, Recorder::retry_pending);
            }
            None => {
                self.held.remove(&slot);
                self.record_end(slot, outcome, latency_us, service_us, done_ns);
                if attempt > 0 && outcome.is_ok() {
                    self.record(slot, Recorder::recovered);
                }
            }
        }
        match self.settings.connections {
            ConnectionMode::PerDevice => self.slots[slot as usize].conn = exchange.conn,
            ConnectionMode::NewPerRequest => {}
            ConnectionMode::Pool(_) if self.transport.multiplexed() => {
                // A shared handle is just dropped; a new connection joins the pool.
                if fresh {
                    self.open -= 1;
                    if let Some(c) = exchange.conn {
                        self.idle.push(c);
                    }
                }
                while self.resume_waiter(now) {}
            }
            ConnectionMode::Pool(_) => {
                match exchange.conn {
                    Some(c) => self.idle.push(c),
                    None => self.open -= 1,
                }
                // Queued heartbeats go even after the end: they were due before it.
                self.resume_waiter(now);
            }
        }
        if retry.is_some() {
            return; // still busy with this heartbeat
        }
        let s = &mut self.slots[slot as usize];
        s.busy = false;
        if let Some(pending) = s.pending_ns.take() {
            if self.stopping {
                self.record_missed(slot, micros(now.saturating_sub(pending)), now);
            } else {
                self.start(Due { slot, intended_ns: pending, eligible_ns: now.max(pending), attempt: 0 }, now);
            }
        }
    }

    /// At the first event past the warm-up: hands over what the warm-up
    /// recorded, so that it is kept apart.
    fn end_warmup(&mut self, out: &mpsc::UnboundedSender<Flush>) {
        if !self.measuring && self.now_ns() >= self.settings.measure_from_ns {
            self.flush(out, false);
        }
    }

    fn flush(&mut self, out: &mpsc::UnboundedSender<Flush>, last: bool) {
        let warmup = !self.measuring;
        if self.now_ns() >= self.settings.measure_from_ns {
            self.measuring = true;
        }
        let fleets = self.recorders.iter_mut().map(Recorder::take).collect();
        let freshness = last.then(|| self.freshness());
        let demand = self.demand_mark.and_then(|(before, at)| {
            let now = Demand::read_thread()?;
            let instant = Instant::now();
            self.demand_mark = Some((now, instant));
            Some(Demand { wanted_ns: now.saturating_sub(before), wall_ns: (instant - at).as_nanos() as u64 })
        });
        let cohorts = self
            .cohorts
            .iter_mut()
            .map(|versions| versions.iter_mut().map(|c| c.as_mut().map(Recorder::take)).collect())
            .collect();
        let _ = out.send(Flush {
            worker: self.id,
            at_ns: self.now_ns(),
            fleets,
            in_flight: self.in_flight.len(),
            last_sent_ns: self.last_sent_ns,
            last,
            warmup,
            freshness,
            cohorts,
            demand,
            seconds: std::mem::take(&mut self.seconds),
        });
    }

    /// Each fleet's freshness over the devices that were due before
    /// scheduling stopped; a device's open gap runs to that moment.
    fn freshness(&self) -> Vec<Freshness> {
        let mut out: Vec<Freshness> = self.fleets.iter().map(|_| Freshness::default()).collect();
        let end_ms = millis(self.stopped_ns);
        for s in &self.slots {
            if s.last_ok_ms >= end_ms && !s.ever_ok {
                continue; // never due
            }
            let fleet = usize::from(s.fleet);
            let gap_ms = s.max_gap_ms.max(end_ms.saturating_sub(s.last_ok_ms));
            let stale_after_us = self.fleets[fleet].stale_after.as_micros() as u64;
            out[fleet].device(u64::from(gap_ms) * 1000, stale_after_us, s.ever_ok);
        }
        out
    }
}

/// The worker's wake-up for its next due heartbeats: a timerfd
/// (microsecond precision) when asked for and available, tokio's timer
/// otherwise. It is re-armed only when the instant changes: arming a
/// timerfd is a system call, and the loop asks again after every
/// completion.
struct Alarm {
    precise: Option<tokio_timerfd::Delay>,
    coarse: Pin<Box<tokio::time::Sleep>>,
    /// The instant the alarm is set for and has not rung at yet.
    armed: Option<Instant>,
}

impl Alarm {
    fn new(precise: bool) -> Alarm {
        let now = Instant::now();
        Alarm {
            precise: if precise { tokio_timerfd::Delay::new(now.into_std()).ok() } else { None },
            coarse: Box::pin(tokio::time::sleep_until(now)),
            armed: None,
        }
    }

    /// Rings at `at`. Dropped before then, it stays set for `at`.
    async fn ring_at(&mut self, at: Instant) {
        if self.armed != Some(at) {
            match &mut self.precise {
                Some(delay) => delay.reset(at.into_std()),
                None => self.coarse.as_mut().reset(at),
            }
            self.armed = Some(at);
        }
        match &mut self.precise {
            Some(delay) => {
                if delay.await.is_err() {
                    // The timerfd failed: tokio's timer from now on.
                    self.precise = None;
                    self.coarse.as_mut().reset(at);
                    self.coarse.as_mut().await;
                }
            }
            None => self.coarse.as_mut().await,
        }
        self.armed = None;
    }
}

/// Switches `device` to the versions its fleet's rollouts have brought it
/// by `at_ns`.
fn apply_rollouts(fleet: &FleetRuntime, device: &mut crate::heartbeat::Device, at_ns: u64) {
    let profile = &fleet.generator.profile;
    for target in fleet.events.rollouts_by(device.index(), at_ns) {
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
