//! Micro-benchmarks for the generator's per-heartbeat work, beside
//! `heartbeat.rs` (building and validating bodies):
//!
//! - **schedule tick**: what a worker does to find the next due device and
//!   plan its following heartbeat: pop the earliest of 100,000 devices from
//!   the worker's own timer structure (`engine::worker::Timers`), advance
//!   its clock (plain, jittered Poisson, and with fleet events to
//!   consult), push it back;
//! - **recording**: one heartbeat's accounting in a fleet's recorder
//!   (scheduled, sent with its lag, completed with latency and service
//!   time: three HDR histogram records), and merging a busy second's
//!   recorder into a run's, as the aggregator does once a second per worker;
//! - **outcome classification**: mapping statuses and failures to report
//!   classes;
//! - **answer reading**: the lean HTTP/1.1 client reading an answer to its
//!   end (nginx's `return 200` answer, and a chunked one), from memory, so
//!   that only the parsing is measured.
//!
//! Run with `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fleetstorm::engine::worker::Timers;
use fleetstorm::fleet::{Arrival, Schedule};
use fleetstorm::fleet::{DeviceClock, Event, EventKind, FleetEvents, Recovery};
use fleetstorm::stats::{Failure, Outcome, Recorder};

const DEVICES: u64 = 100_000;

/// A worker's timers over `DEVICES` devices, with their clocks.
struct Devices {
    timers: Timers,
    clocks: Vec<DeviceClock>,
    schedule: Schedule,
    events: FleetEvents,
}

impl Devices {
    fn new(schedule: Schedule, events: FleetEvents) -> Devices {
        let mut clocks: Vec<DeviceClock> = (0..DEVICES).map(|i| DeviceClock::new(1, 7, i)).collect();
        let mut timers = Timers::with_capacity(DEVICES as usize);
        for (i, c) in clocks.iter_mut().enumerate() {
            timers.push(events.first(c, &schedule, DEVICES, i as u64).at_ns, i as u32);
        }
        Devices { timers, clocks, schedule, events }
    }

    /// One tick: the earliest device goes, and is planned again.
    fn tick(&mut self) -> u64 {
        let (at, slot) = self.timers.pop_due(u64::MAX).expect("never empty");
        let next = self.events.advance(&mut self.clocks[slot as usize], &self.schedule, u64::from(slot), at);
        self.timers.push(next.at_ns, slot);
        at
    }
}

fn schedule_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("schedule_tick");
    group.throughput(Throughput::Elements(1));
    let periodic = Schedule::every(Duration::from_secs(10));
    let poisson = Schedule { jitter: 0.1, arrival: Arrival::Poisson, ..periodic };
    let events = [
        Event {
            at: Duration::from_secs(60),
            share: 0.3,
            kind: EventKind::Outage { duration: Duration::from_secs(45), recover: Recovery::Synchronized },
        },
        Event {
            at: Duration::from_secs(300),
            share: 0.5,
            kind: EventKind::Surge { duration: Duration::from_secs(60), interval: Duration::from_secs(1) },
        },
    ];
    let cases = [
        ("periodic", periodic, FleetEvents::default()),
        ("poisson_jitter", poisson, FleetEvents::default()),
        ("outage_and_surge", periodic, FleetEvents::new(&events, DEVICES, periodic.interval, 7)),
    ];
    for (name, schedule, events) in cases {
        let mut timers = Devices::new(schedule, events);
        group.bench_function(name, |b| b.iter(|| black_box(timers.tick())));
    }
    group.finish();
}

/// Statuses and failures in the proportions of a bad day.
fn outcomes() -> Vec<Outcome> {
    let mut v = Vec::new();
    for i in 0..1000u32 {
        v.push(match i % 50 {
            0 => Outcome::Status(503),
            1 => Outcome::Status(429),
            2 => Outcome::Failed(Failure::Timeout),
            3 => Outcome::Failed(Failure::Io),
            4 => Outcome::Status(302),
            _ => Outcome::Status(200),
        });
    }
    v
}

fn recording(c: &mut Criterion) {
    let mut group = c.benchmark_group("recording");
    group.throughput(Throughput::Elements(1));
    let outcomes = outcomes();
    let mut recorder = Recorder::default();
    let mut i = 0usize;
    group.bench_function("one_heartbeat", |b| {
        b.iter(|| {
            i = (i + 1) % outcomes.len();
            // Latencies spread over three decades, as a loaded backend's are.
            let latency = 200 + (i as u64 * 7919) % 200_000;
            recorder.scheduled();
            recorder.sent(black_box(latency / 100), 0);
            recorder.completed(outcomes[i], latency, latency - latency / 100);
        })
    });
    // A second of 10,000 heartbeats from one worker, merged into the run's.
    let mut second = Recorder::default();
    for (n, outcome) in outcomes.iter().cycle().take(10_000).enumerate() {
        let latency = 200 + (n as u64 * 7919) % 200_000;
        second.scheduled();
        second.sent(latency / 100, 0);
        second.completed(*outcome, latency, latency - latency / 100);
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("merge_a_second_of_10000", |b| {
        b.iter_batched_ref(Recorder::default, |run| run.add(black_box(&second)), BatchSize::SmallInput)
    });
    group.finish();
}

fn classification(c: &mut Criterion) {
    let mut group = c.benchmark_group("outcome");
    let outcomes = outcomes();
    group.throughput(Throughput::Elements(outcomes.len() as u64));
    group.bench_function("classify_1000", |b| {
        b.iter(|| {
            let mut classes = fleetstorm::stats::ClassCounts::default();
            for o in black_box(&outcomes) {
                classes[o.class()] += 1;
            }
            classes
        })
    });
    group.finish();
}

fn answer_reading(c: &mut Criterion) {
    use futures_util::FutureExt;
    let mut group = c.benchmark_group("answer");
    let nginx: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 21:54:46 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
    let chunked: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\n{\"message\":\"overloaded\"}\r\n0\r\n\r\n";
    for (name, answer) in [("nginx_200", nginx), ("chunked_503", chunked)] {
        let mut buf = Vec::with_capacity(4096);
        group.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                let mut io = black_box(answer);
                fleetstorm::transport::http::h1::read_answer(&mut io, &mut buf).now_or_never()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, schedule_tick, recording, classification, answer_reading);
criterion_main!(benches);
