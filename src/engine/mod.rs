//! The scenario engine: runs fleets of virtual devices against a transport
//! and gathers what they recorded.
//!
//! # Data flow
//!
//! ```text
//!  devices, round-robin ──▶ worker 0 ─┐  Flush every 250 ms (per-fleet
//!                           worker 1 ─┤  Recorders, swapped out: no lock,
//!                           ...       ─┘  no per-request message)
//!                                     ▼
//!                               aggregator (this task): run totals per fleet,
//!                               per-second timeline, live view for progress
//! ```
//!
//! Workers are tasks on the multi-threaded runtime, one per core by
//! default; each owns its devices outright (see [`worker`]). The aggregator
//! (`aggregate`) adds their flushes into the run's [`Recorder`]s and a
//! timeline of one entry per second; this task feeds it and calls the
//! progress callback after each round of flushes. The run ends when every worker has sent its last flush: at the
//! end of the schedule plus the time in-flight heartbeats need (bounded by
//! the transport's timeout), or sooner after `cancel`.

mod aggregate;
pub mod worker;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::shard::OwnedDevices;
pub use crate::stats::timeline::{Second, SecondPart};
use crate::stats::{Freshness, Recorder};
use crate::transport::Transport;
use crate::transport::settings::ConnectionMode;
use aggregate::Aggregator;
pub use worker::{Demand, FleetRuntime, Flush, WorkerSettings};

/// How often workers hand over what they recorded.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// How to run the engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub duration: Duration,
    pub connections: ConnectionMode,
    pub workers: usize,
    pub seed: u64,
    /// See [`WorkerSettings::precise_timer`].
    pub precise_timer: bool,
    /// Run each worker on its own thread with its own single-threaded
    /// runtime, so a worker and its connections never wake each other
    /// across threads. Off under tokio's paused clock (one runtime).
    pub thread_per_worker: bool,
    /// Keep each second's latency histogram (compressed) in the timeline,
    /// for an HdrHistogram interval log.
    pub keep_second_histograms: bool,
    /// Record per fleet and agent version as well (cohorts).
    pub cohorts: bool,
    /// A warm-up: what happens before this instant goes to the timeline
    /// but not into the totals, and the scheduling window the totals cover
    /// (`RunOutput::scheduled_for`) starts here.
    pub measure_after: Duration,
    /// Send only for this shard's devices.
    pub shard: Option<crate::shard::Shard>,
    /// Start the clock at this instant (a synchronized start of shards).
    pub start_at: Option<SystemTime>,
    /// After the end, heartbeats queued for a pooled connection may still
    /// go this long (the target's timeout).
    pub drain: Duration,
    /// Cancelled to give up at once (a second Ctrl-C): the run returns what
    /// was merged so far, marked interrupted, without waiting for the
    /// workers' last flushes.
    pub abandon: Option<CancellationToken>,
    /// Give the live display each fleet's freshness so far
    /// ([`Live::freshness`]), about once a second: every worker walks its
    /// devices for it.
    pub live_freshness: bool,
}

/// What the live display sees after each round of flushes.
#[derive(Debug)]
pub struct Live<'a> {
    pub elapsed: Duration,
    pub duration: Duration,
    /// Totals per fleet so far.
    pub fleets: &'a [Recorder],
    pub timeline: &'a [Second],
    pub in_flight: usize,
    /// Each fleet's freshness so far (each device's largest gap, an open
    /// one running to now), when asked for ([`EngineSettings::live_freshness`]):
    /// the latest walk of each worker that has walked its devices, summed.
    pub freshness: Option<&'a [Freshness]>,
}

/// Everything a run recorded.
#[derive(Debug)]
pub struct RunOutput {
    pub started_at: SystemTime,
    /// From the call to every device built and scheduled.
    pub startup: Duration,
    /// From the start to the last worker's last flush.
    pub elapsed: Duration,
    /// The scheduling window actually run (shorter than planned when cancelled).
    pub scheduled_for: Duration,
    /// The time sending took, over the same window: `scheduled_for`, or
    /// longer when heartbeats queued for a pooled connection went after
    /// the end (the pool's queue drained).
    pub sending_for: Duration,
    pub interrupted: bool,
    pub fleets: Vec<Recorder>,
    /// How fresh each fleet's devices stayed.
    pub freshness: Vec<Freshness>,
    /// Per fleet, per agent version (index in the fleet's mix): what each
    /// cohort recorded, when asked for; `None` for versions never seen.
    pub cohorts: Vec<Vec<Option<Recorder>>>,
    pub timeline: Vec<Second>,
    /// With a start instant: how late the clock started after it.
    pub start_lag: Option<Duration>,
    /// With a start instant that passed before the devices were ready: by
    /// how much (nothing was sent).
    pub not_ready_by: Option<Duration>,
    /// Per worker thread, how much of the measured time it wanted a CPU
    /// (empty when not measured: workers sharing one runtime).
    pub demand: Vec<Demand>,
}

/// Each worker's devices (fleet index, device index): round-robin over
/// the workers, so each has a slice of every fleet and of every phase; a
/// shard's only (by global index, across fleets).
fn device_shares(fleets: &[FleetRuntime], shard: Option<crate::shard::Shard>, workers: usize) -> Vec<Vec<(u16, u64)>> {
    let mut shares: Vec<Vec<(u16, u64)>> = vec![Vec::new(); workers];
    let mut n = 0usize;
    let mut first_global = 0u64;
    for (f, fleet) in fleets.iter().enumerate() {
        for index in OwnedDevices::of(shard, first_global, fleet.devices).indices() {
            shares[n % workers].push((f as u16, index));
            n += 1;
        }
        first_global += fleet.devices;
    }
    shares
}

/// Worker `w`'s share of a pool of connections (none without a pool).
fn pool_share(connections: ConnectionMode, workers: usize, w: usize) -> u32 {
    match connections {
        ConnectionMode::Pool(size) => {
            let size = size as usize;
            (size / workers + usize::from(w < size % workers)).max(1) as u32
        }
        _ => 0,
    }
}

impl RunOutput {
    /// A run whose start instant passed by `late` while its devices were
    /// being built: nothing sent.
    fn not_ready(fleets: usize, startup: Duration, late: Duration) -> RunOutput {
        RunOutput {
            started_at: SystemTime::now(),
            startup,
            elapsed: Duration::ZERO,
            scheduled_for: Duration::ZERO,
            sending_for: Duration::ZERO,
            interrupted: true,
            fleets: vec![Recorder::default(); fleets],
            freshness: vec![Freshness::default(); fleets],
            cohorts: Vec::new(),
            timeline: Vec::new(),
            start_lag: None,
            not_ready_by: Some(late),
            demand: Vec::new(),
        }
    }
}

/// Runs `task` on a new thread with its own current-thread runtime; if the
/// thread or the runtime cannot be had, on the caller's runtime instead.
fn spawn_on_own_thread(id: usize, task: impl Future<Output = ()> + Send + 'static) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    match runtime {
        Ok(rt) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new().name(format!("fleetstorm-worker-{id}")).spawn(move || {
                if let Ok(task) = rx.recv() {
                    rt.block_on(task);
                }
            });
            match spawned {
                Ok(_) => {
                    let _ = tx.send(task);
                }
                Err(_) => {
                    tokio::spawn(task);
                }
            }
        }
        Err(_) => {
            tokio::spawn(task);
        }
    }
}

/// Runs `fleets` against their targets, calling `progress` a few times a
/// second. `targets` holds one transport per target of the run, each
/// fleet's [`FleetRuntime::target`] naming its own: fleets of one run can
/// speak different protocols (`T` then chooses per target, an enum of the
/// transports), and a device's connections are always its target's. A
/// pool serves one target, and a session transport's connections are per
/// device (the scenario refuses the others; here they are bugs).
pub async fn run<T: Transport>(
    targets: Vec<Arc<T>>,
    fleets: impl Into<Arc<[FleetRuntime]>>,
    settings: EngineSettings,
    cancel: CancellationToken,
    mut progress: impl FnMut(&Live<'_>),
) -> RunOutput {
    let workers = settings.workers.max(1);
    let fleets: Arc<[FleetRuntime]> = fleets.into();
    assert!(
        fleets.iter().all(|f| f.target < targets.len()),
        "every fleet's target is one of the run's ({} given)",
        targets.len()
    );
    assert!(!matches!(settings.connections, ConnectionMode::Pool(_)) || targets.len() == 1, "a pool serves one target");
    // A session is its device's (opened with its identity): no pooling, no
    // new session per message (the scenario refuses both).
    assert!(
        settings.connections == ConnectionMode::PerDevice || targets.iter().all(|t| !t.sessions()),
        "a session transport's connections are per device"
    );
    let shares = device_shares(&fleets, settings.shard, workers);
    let setup = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = tokio::sync::watch::channel(None);
    for (id, devices) in shares.into_iter().enumerate() {
        let worker_settings = WorkerSettings {
            start: setup,
            end_ns: settings.duration.as_nanos() as u64,
            connections: settings.connections,
            pool_size: pool_share(settings.connections, workers, id),
            seed: settings.seed,
            flush_every: FLUSH_EVERY,
            precise_timer: settings.precise_timer,
            cohorts: settings.cohorts,
            measure_from_ns: settings.measure_after.as_nanos() as u64,
            preconnect: settings.start_at.is_some(),
            measure_demand: settings.thread_per_worker,
            drain: settings.drain,
            live_freshness: settings.live_freshness,
            opening_share: 1.0 / (workers as f64 * settings.shard.map_or(1.0, |s| f64::from(s.count))),
        };
        let task = worker::run_worker(
            id,
            fleets.iter().map(|f| targets[f.target].clone()).collect(),
            fleets.clone(),
            devices,
            worker_settings,
            worker::StartSignal { ready: ready_tx.clone(), go: go_rx.clone() },
            cancel.clone(),
            tx.clone(),
        );
        if settings.thread_per_worker {
            spawn_on_own_thread(id, task);
        } else {
            tokio::spawn(task);
        }
    }
    drop((tx, ready_tx));
    // Every device is built and scheduled before the clock starts.
    for _ in 0..workers {
        if ready_rx.recv().await.is_none() {
            break;
        }
    }
    let startup = setup.elapsed();
    // A synchronized start: wait for the instant, or give up if it passed
    // while the devices were being built.
    let mut start_lag = None;
    if let Some(at) = settings.start_at {
        match at.duration_since(SystemTime::now()) {
            Ok(wait) => tokio::time::sleep(wait).await,
            Err(late) => {
                drop(go_tx);
                return RunOutput::not_ready(fleets.len(), startup, late.duration());
            }
        }
        start_lag = Some(SystemTime::now().duration_since(at).unwrap_or_default());
    }
    let started_at = SystemTime::now();
    let start = Instant::now();
    let _ = go_tx.send(Some(start));

    let mut figures = Aggregator::new(fleets.len(), workers, settings.duration, settings.keep_second_histograms);
    let mut interrupted_at = None;
    let abandon = settings.abandon.clone().unwrap_or_default();
    loop {
        let flush = tokio::select! {
            flush = rx.recv() => match flush {
                Some(f) => f,
                None => break,
            },
            () = cancel.cancelled(), if interrupted_at.is_none() => {
                interrupted_at = Some(start.elapsed());
                continue;
            }
            // Whatever the workers still hold is lost: what was merged
            // so far is the run's record.
            () = abandon.cancelled() => {
                interrupted_at.get_or_insert(start.elapsed());
                break;
            }
        };
        let round_done = flush.worker == 0;
        figures.absorb(flush);
        // One display update per round (every worker flushes per period).
        if round_done || figures.running == 0 {
            progress(&figures.live(start.elapsed(), settings.duration));
        }
    }
    let (timeline, demand) = figures.finish_timeline();
    let elapsed = start.elapsed();
    // A cancel the loop never saw (the workers stopped on it and their last
    // flushes ended the loop first) still interrupted the run.
    if cancel.is_cancelled() && interrupted_at.is_none() {
        interrupted_at = Some(elapsed.min(settings.duration));
    }
    let interrupted = interrupted_at.is_some_and(|t| t < settings.duration);
    let window_end =
        if interrupted { interrupted_at.unwrap_or(elapsed).min(settings.duration) } else { settings.duration };
    let sent_until = Duration::from_nanos(figures.last_sent_ns);
    RunOutput {
        started_at,
        startup,
        elapsed,
        scheduled_for: window_end.saturating_sub(settings.measure_after),
        sending_for: window_end.max(sent_until).saturating_sub(settings.measure_after),
        interrupted,
        fleets: figures.totals,
        freshness: figures.freshness,
        cohorts: figures.cohorts,
        timeline,
        start_lag,
        not_ready_by: None,
        demand,
    }
}

#[cfg(test)]
mod tests;
