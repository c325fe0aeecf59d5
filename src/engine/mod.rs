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
//! adds their flushes into the run's [`Recorder`]s and a timeline of one
//! entry per second, and calls the progress callback after each round of
//! flushes. The run ends when every worker has sent its last flush: at the
//! end of the schedule plus the time in-flight heartbeats need (bounded by
//! the transport's timeout), or sooner after `cancel`.

pub mod worker;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scenario::ConnectionMode;
use crate::stats::{self, Recorder};
use crate::transport::Transport;
pub use worker::{FleetRuntime, Flush, WorkerSettings};

/// How often workers hand over what they recorded.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// How to run the engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub duration: Duration,
    pub connections: ConnectionMode,
    pub workers: usize,
    pub seed: u64,
}

/// One second of a run.
#[derive(Debug, Clone)]
pub struct Second {
    /// Heartbeats whose intended time came in this second.
    pub scheduled: u64,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub missed: u64,
    /// Latency of the heartbeats that ended in this second.
    pub latency: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Second { scheduled: 0, sent: 0, ok: 0, failed: 0, missed: 0, latency: stats::new_histogram() }
    }
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
}

/// Everything a run recorded.
#[derive(Debug)]
pub struct RunOutput {
    pub started_at: SystemTime,
    /// From the start to the last worker's last flush.
    pub elapsed: Duration,
    /// The scheduling window actually run (shorter than planned when cancelled).
    pub scheduled_for: Duration,
    pub interrupted: bool,
    pub fleets: Vec<Recorder>,
    pub timeline: Vec<Second>,
}

/// Runs `fleets` against `transport`, calling `progress` a few times a second.
pub async fn run<T: Transport>(
    transport: T,
    fleets: Vec<FleetRuntime>,
    settings: EngineSettings,
    cancel: CancellationToken,
    mut progress: impl FnMut(&Live<'_>),
) -> RunOutput {
    let workers = settings.workers.max(1);
    let fleets: Arc<[FleetRuntime]> = fleets.into();
    let transport = Arc::new(transport);
    // Devices round-robin over the workers, so each has a slice of every
    // fleet and of every phase.
    let mut shares: Vec<Vec<(u16, u64)>> = vec![Vec::new(); workers];
    let mut n = 0usize;
    for (f, fleet) in fleets.iter().enumerate() {
        for index in 0..fleet.devices {
            shares[n % workers].push((f as u16, index));
            n += 1;
        }
    }
    let pool_share = |w: usize| match settings.connections {
        ConnectionMode::Pool(size) => {
            let size = size as usize;
            (size / workers + usize::from(w < size % workers)).max(1) as u32
        }
        _ => 0,
    };
    let started_at = SystemTime::now();
    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (id, devices) in shares.into_iter().enumerate() {
        let worker_settings = WorkerSettings {
            start,
            end_ns: settings.duration.as_nanos() as u64,
            connections: settings.connections,
            pool_size: pool_share(id),
            seed: settings.seed,
            flush_every: FLUSH_EVERY,
        };
        tokio::spawn(worker::run_worker(
            id,
            transport.clone(),
            fleets.clone(),
            devices,
            worker_settings,
            cancel.clone(),
            tx.clone(),
        ));
    }
    drop(tx);

    let mut totals: Vec<Recorder> = fleets.iter().map(|_| Recorder::default()).collect();
    let mut timeline: Vec<Second> = Vec::new();
    let mut in_flight = vec![0usize; workers];
    let mut running = workers;
    let mut interrupted_at = None;
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
        };
        // A flush covers the 250 ms before it: it belongs to that second.
        let second = (flush.at_ns.saturating_sub(1) / 1_000_000_000) as usize;
        if timeline.len() <= second {
            timeline.resize_with(second + 1, Second::default);
        }
        let s = &mut timeline[second];
        for (total, part) in totals.iter_mut().zip(&flush.fleets) {
            let c = &part.counters;
            s.scheduled += c.scheduled;
            s.sent += c.sent;
            s.ok += c.ok();
            s.failed += c.failed();
            s.missed += c.missed;
            let _ = s.latency.add(&part.latency);
            total.add(part);
        }
        in_flight[flush.worker] = flush.in_flight;
        if flush.last {
            running -= 1;
        }
        // One display update per round (every worker flushes per period).
        if flush.worker == 0 || running == 0 {
            progress(&Live {
                elapsed: start.elapsed(),
                duration: settings.duration,
                fleets: &totals,
                timeline: &timeline,
                in_flight: in_flight.iter().sum(),
            });
        }
    }
    let elapsed = start.elapsed();
    let interrupted = interrupted_at.is_some_and(|t| t < settings.duration);
    RunOutput {
        started_at,
        elapsed,
        scheduled_for: if interrupted {
            interrupted_at.unwrap_or(elapsed).min(settings.duration)
        } else {
            settings.duration
        },
        interrupted,
        fleets: totals,
        timeline,
    }
}
