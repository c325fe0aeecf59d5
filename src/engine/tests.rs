//! The engine under tokio's paused clock, against a fake transport that
//! notes when each heartbeat was handed to it: schedules, accounting and
//! connection limits, deterministically and in no wall time.

use super::*;
use crate::device::{FleetGenerator, NameTemplate};
use crate::fleet::{Arrival, Schedule, StartMode};
use crate::stats::SessionCounts;
use crate::transport::testing::Fake;
use hdrhistogram::Histogram;

fn fleet(devices: u64, schedule: Schedule) -> FleetRuntime {
    let generator = crate::device::plain_generator();
    FleetRuntime { key: 1, ..FleetRuntime::new(generator, schedule, devices, schedule.interval * 3) }
}

fn every(interval: Duration) -> Schedule {
    Schedule::every(interval)
}

/// Settings for a paused-clock run: two workers on one runtime, tokio's timer.
fn paused(seconds: u64, connections: ConnectionMode, seed: u64) -> EngineSettings {
    EngineSettings {
        duration: Duration::from_secs(seconds),
        connections,
        workers: 2,
        seed,
        precise_timer: false,
        thread_per_worker: false,
        keep_second_histograms: false,
        cohorts: false,
        measure_after: Duration::ZERO,
        shard: None,
        start_at: None,
        drain: Duration::from_secs(1),
        abandon: None,
        live_freshness: false,
    }
}

async fn run_fake(fake: &Fake, fleets: Vec<FleetRuntime>, seconds: u64, connections: ConnectionMode) -> RunOutput {
    let settings = paused(seconds, connections, 3);
    run(vec![Arc::new(fake.clone())], fleets, settings, CancellationToken::new(), |_| {}).await
}

/// Calls per second of the run, from the fake's notes.
fn per_second(fake: &Fake, t0: Instant, seconds: u64) -> Vec<usize> {
    let mut counts = vec![0; seconds as usize];
    for t in fake.call_times().iter() {
        let s = (*t - t0).as_secs() as usize;
        if s < counts.len() {
            counts[s] += 1;
        }
    }
    counts
}

fn assert_accounting(out: &RunOutput) {
    for f in &out.fleets {
        let c = &f.counters;
        assert_eq!(c.scheduled, c.sent + c.missed, "scheduled = sent + missed");
        assert_eq!(c.sent, c.ok() + c.failed() + c.retry_pending, "sent = ok + failed + retry pending");
        assert_eq!(c.sent, f.schedule_lag.len(), "one schedule lag per send");
        assert_eq!(c.sent, f.connection_wait.len(), "one connection wait per send");
        assert_eq!(c.late, f.lateness.len(), "one lateness per late heartbeat");
    }
}

#[tokio::test(start_paused = true)]
async fn a_warm_up_is_in_the_timeline_but_not_in_the_totals() {
    let fake = Fake::default();
    let settings =
        EngineSettings { measure_after: Duration::from_millis(1_900), ..paused(5, ConnectionMode::PerDevice, 3) };
    let fleets = vec![fleet(1_000, every(Duration::from_secs(1)))];
    let out = run(vec![Arc::new(fake.clone())], fleets, settings, CancellationToken::new(), |_| {}).await;
    // Measured from 1.9 s: the heartbeats intended in the last 3.1 s.
    assert_eq!(out.scheduled_for, Duration::from_millis(3_100));
    let c = &out.fleets[0].counters;
    assert!((3_095..=3_105).contains(&c.scheduled), "{c:?}");
    assert_eq!(c.sent, c.ok() + c.failed());
    let all: u64 = out.timeline.iter().map(|s| s.scheduled).sum();
    assert_eq!(all, 5_000, "the timeline keeps the warm-up");
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_devices_at_one_second_send_ten_thousand_per_second() {
    let fake = Fake::default();
    let t0 = Instant::now();
    let out = run_fake(&fake, vec![fleet(10_000, every(Duration::from_secs(1)))], 5, ConnectionMode::PerDevice).await;
    for (s, n) in per_second(&fake, t0, 5).iter().enumerate() {
        assert!((9_900..=10_100).contains(n), "second {s}: {n} sends");
    }
    for (s, second) in out.timeline.iter().take(5).enumerate() {
        assert!((9_900..=10_100).contains(&second.scheduled), "timeline second {s}: {}", second.scheduled);
    }
    let c = &out.fleets[0].counters;
    assert_eq!((c.scheduled, c.sent, c.missed, c.ok()), (50_000, 50_000, 0, 50_000));
    assert_accounting(&out);
    // Staggered phases: every 100 ms slice of the first second gets a tenth.
    let calls = fake.call_times();
    let mut slices = [0; 10];
    for t in calls.iter().filter(|t| (**t - t0) < Duration::from_secs(1)) {
        slices[((*t - t0).as_millis() / 100) as usize] += 1;
    }
    assert!(slices.iter().all(|n| (990..=1010).contains(n)), "{slices:?}");
}

#[tokio::test(start_paused = true)]
async fn synchronized_devices_all_send_at_once() {
    let fake = Fake::default();
    let t0 = Instant::now();
    let schedule = Schedule { start: StartMode::Synchronized, ..every(Duration::from_secs(1)) };
    run_fake(&fake, vec![fleet(1_000, schedule)], 3, ConnectionMode::PerDevice).await;
    let calls = fake.call_times();
    let at = |ms: u128| calls.iter().filter(|t| (**t - t0).as_millis() / 10 == ms / 10).count();
    assert_eq!((at(0), at(1000), at(2000)), (1000, 1000, 1000), "a thundering herd each second");
}

#[tokio::test(start_paused = true)]
async fn ramp_up_is_linear() {
    let fake = Fake::default();
    let t0 = Instant::now();
    let schedule = Schedule { ramp_up: Duration::from_secs(10), ..every(Duration::from_secs(100)) };
    run_fake(&fake, vec![fleet(1_000, schedule)], 10, ConnectionMode::PerDevice).await;
    assert_eq!(per_second(&fake, t0, 10), vec![100; 10], "a tenth of the fleet comes online each second");
}

#[tokio::test(start_paused = true)]
async fn a_slow_backend_shows_as_latency_and_missed_heartbeats() {
    // Every exchange takes 2.5 s against a 1 s period.
    let fake = Fake { delay: Duration::from_millis(2500), ..Fake::default() };
    let out = run_fake(&fake, vec![fleet(100, every(Duration::from_secs(1)))], 10, ConnectionMode::PerDevice).await;
    assert_accounting(&out);
    let r = &out.fleets[0];
    assert_eq!(r.counters.scheduled, 1000);
    assert!(r.counters.missed >= 300, "slots passed while busy are missed: {}", r.counters.missed);
    // Latency from the intended time includes the wait behind the
    // previous heartbeat; service time does not.
    assert!(r.latency.value_at_quantile(0.99) >= 3_000_000, "p99 {}", r.latency.value_at_quantile(0.99));
    assert!(r.service_time.max() < 2_600_000);
    // The generator itself kept to the schedule.
    assert!(r.schedule_lag.value_at_quantile(0.99) <= 2_000);
    // Every second was closed: percentiles fixed, histograms freed.
    assert!(out.timeline.iter().all(|s| s.latency.is_none()));
    // Nothing ends before 2.5 s; from then on every second's p99 shows the wait.
    assert_eq!(out.timeline[1].p99_ms, 0.0, "no outcome in second 1");
    assert!(out.timeline[2..10].iter().all(|s| s.p99_ms >= 1_000.0), "{:?}", out.timeline);
    let (sent, ok): (u64, u64) =
        out.timeline.iter().map(|s| (s.sent, s.ok)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert_eq!((sent, ok), (r.counters.sent, r.counters.ok()), "the timeline adds up to the totals");
}

#[tokio::test(start_paused = true)]
async fn heartbeats_queued_for_the_pool_at_the_end_still_go_within_the_drain() {
    // 10 devices due together every second, one connection, 50 ms per
    // answer: at 2.0 s ten queue up, and the run ends at 2.1 s with
    // seven still queued.
    let schedule = Schedule { start: crate::fleet::StartMode::Synchronized, ..every(Duration::from_secs(1)) };
    for (drain, sent) in [(Duration::from_secs(1), 30), (Duration::from_millis(120), 25)] {
        let fake = Fake { delay: Duration::from_millis(50), ..Fake::default() };
        let settings = EngineSettings {
            duration: Duration::from_millis(2_100),
            drain,
            workers: 1,
            ..paused(3, ConnectionMode::Pool(1), 3)
        };
        let out =
            run(vec![Arc::new(fake.clone())], vec![fleet(10, schedule)], settings, CancellationToken::new(), |_| {})
                .await;
        assert_accounting(&out);
        let c = &out.fleets[0].counters;
        assert_eq!((c.scheduled, c.sent, c.missed), (30, sent, 30 - sent), "drain {drain:?}: {c:?}");
        // Sending ran past the end while the queue drained: the
        // sending time is the window plus that.
        let last_send = Duration::from_millis(2_000 + 50 * (sent - 21));
        assert_eq!(out.sending_for, last_send, "drain {drain:?}");
        assert_eq!(out.scheduled_for, Duration::from_millis(2_100));
    }
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_pooled_connection_is_connection_wait_and_lateness_not_schedule_lag() {
    // 10 devices due together every second, one connection, 50 ms per
    // answer: the n-th of each second waits n × 50 ms for the connection.
    let schedule = Schedule { start: crate::fleet::StartMode::Synchronized, ..every(Duration::from_secs(1)) };
    let fake = Fake { delay: Duration::from_millis(50), ..Fake::default() };
    let settings = EngineSettings { workers: 1, ..paused(3, ConnectionMode::Pool(1), 3) };
    let out =
        run(vec![Arc::new(fake.clone())], vec![fleet(10, schedule)], settings, CancellationToken::new(), |_| {}).await;
    assert_accounting(&out);
    let r = &out.fleets[0];
    let c = &r.counters;
    assert_eq!((c.sent, c.missed, c.waited, c.late), (30, 0, 27, 27), "{c:?}");
    // Within tokio's 1 ms timer tick (the paused clock has no timerfd).
    assert!(r.schedule_lag.max() <= 1_001, "the generator was on time: lag max {} µs", r.schedule_lag.max());
    // Waits of 50, 100, ... 450 ms, three seconds over.
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    assert!((449.0..=451.0).contains(&ms(&r.connection_wait, 1.0)), "{}", ms(&r.connection_wait, 1.0));
    assert!((249.0..=251.0).contains(&ms(&r.lateness, 0.5)), "{}", ms(&r.lateness, 0.5));
    assert!(r.connection_wait.value_at_quantile(0.1) <= 1, "the first of each second did not wait");
    // Pool mode: the first of each second went with nothing else busy.
    assert_eq!(r.light_service_time.len(), 30, "one connection: always at most half busy");
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_storm_waits_its_turn_and_connected_devices_keep_their_schedule() {
    use crate::fleet::{Event, EventKind, Recovery};
    // 2,000 devices come back from an outage at one instant, each on a
    // new connection; 100 others, connected all along, beat every 100 ms.
    // Opening a connection costs the worker 20 µs (free, the storm's
    // cost could never show): all 2,000 at once would hold the
    // schedule 40 ms.
    let connect_cost = Duration::from_micros(20);
    let outage = Event {
        at: Duration::from_secs(2),
        share: 1.0,
        kind: EventKind::Outage { duration: Duration::from_secs(2), recover: Recovery::Synchronized },
    };
    let storm = with_events(fleet(2_000, every(Duration::from_secs(1))), &[outage]);
    let steady = FleetRuntime { key: 2, ..fleet(100, every(Duration::from_millis(100))) };
    let fake = Fake { connect_cost, ..Fake::default() };
    let settings = EngineSettings { workers: 1, ..paused(6, ConnectionMode::PerDevice, 3) };
    let out = run(vec![Arc::new(fake.clone())], vec![storm, steady], settings, CancellationToken::new(), |_| {}).await;
    assert_accounting(&out);
    let (storm, steady) = (&out.fleets[0], &out.fleets[1]);
    assert_eq!(fake.connects(), 2 * 2_000 + 100, "the storm connected anew");
    // The connected devices kept to the schedule through the storm:
    // late by at most one trip's connects (and tokio's 1 ms timer tick:
    // the paused clock has no timerfd).
    let trip = connect_cost * worker::MAX_CONNECTS_PER_TRIP;
    let bound = (Duration::from_millis(1) + trip).as_micros() as u64 + 1;
    assert!(steady.schedule_lag.max() <= bound, "steady lag max {} µs, bound {bound} µs", steady.schedule_lag.max());
    assert_eq!(steady.counters.sent, 6_000);
    // The storm's new connections went MAX_CONNECTS_PER_TRIP per trip,
    // a trip at most each millisecond (its connects take longer): its
    // last waited for about 2,000 / 256 trips' connects.
    let trips = 2_000u64.div_ceil(u64::from(worker::MAX_CONNECTS_PER_TRIP));
    let (least, most) = (trip.as_micros() as u64, (Duration::from_millis(1) + trip).as_micros() as u64);
    let last = storm.schedule_lag.max();
    assert!(
        ((trips - 2) * least..=(trips + 1) * most).contains(&last),
        "storm lag max {last} µs for {trips} trips of {least} to {most} µs"
    );
    assert_eq!(storm.counters.sent, 2_000 * 4, "every heartbeat outside the outage went");
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_held_back_by_its_busy_device_is_late_by_that_much() {
    // One device every second, answers after 1.2 s: each heartbeat goes
    // when the previous ends, 0.2 s later each time.
    let fake = Fake { delay: Duration::from_millis(1_200), ..Fake::default() };
    let settings = EngineSettings { workers: 1, ..paused(5, ConnectionMode::PerDevice, 3) };
    let schedule = Schedule { start: crate::fleet::StartMode::Synchronized, ..every(Duration::from_secs(1)) };
    let out =
        run(vec![Arc::new(fake.clone())], vec![fleet(1, schedule)], settings, CancellationToken::new(), |_| {}).await;
    assert_accounting(&out);
    let r = &out.fleets[0];
    assert_eq!((r.counters.sent, r.counters.late, r.counters.waited), (5, 4, 0), "{:?}", r.counters);
    let lateness: Vec<u64> =
        r.lateness.iter_recorded().map(|v| r.lateness.lowest_equivalent(v.value_iterated_to()) / 1000).collect();
    assert_eq!(lateness, [200, 400, 600, 800], "ms late");
    assert!(r.schedule_lag.max() <= 1_001, "not the generator's lateness: {} µs", r.schedule_lag.max());
}

#[tokio::test(start_paused = true)]
async fn retries_still_due_at_the_end_are_pending_not_failed() {
    use crate::fleet::retry::{Backoff, Jitter, RetryPolicy};
    let policy = RetryPolicy {
        max: 3,
        backoff: Backoff::Constant,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(1),
        jitter: Jitter::None,
    };
    // Every attempt fails at once; attempts 1 s apart, so a heartbeat
    // intended at t ends failed at t + 3 s, if that is not after the
    // end (a retry due at the end's instant still goes). One heartbeat
    // per device, one intended every 0.5 s: 15 by 7 s.
    let t = Fake::answering(|_| 503);
    let f = FleetRuntime { retry: Some(policy), ..fleet(20, every(Duration::from_secs(10))) };
    let out = run_scripted(&t, vec![f], 10, 3, false).await;
    assert_accounting(&out);
    let c = &out.fleets[0].counters;
    assert_eq!((c.sent, c.failed(), c.retry_pending), (20, 15, 5), "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pool_never_holds_more_than_its_connections() {
    let fake = Fake { delay: Duration::from_millis(100), ..Fake::default() };
    let out = run_fake(&fake, vec![fleet(200, every(Duration::from_secs(1)))], 5, ConnectionMode::Pool(4)).await;
    assert_accounting(&out);
    assert!(fake.most_concurrent() <= 4);
    // 4 connections at 100 ms each carry 40/s (for the 5 s run and the
    // 1 s drain of the queue after it): most of the 200/s waits and misses.
    let c = &out.fleets[0].counters;
    assert!(c.ok() <= (5 + 1) * 40 + 4 && c.missed > 0, "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn cancelling_stops_scheduling_and_still_accounts_for_everything() {
    let fake = Fake { delay: Duration::from_millis(300), ..Fake::default() };
    let cancel = CancellationToken::new();
    let settings = paused(60, ConnectionMode::PerDevice, 1);
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        stopper.cancel();
    });
    let t0 = Instant::now();
    let out =
        run(vec![Arc::new(fake.clone())], vec![fleet(100, every(Duration::from_secs(1)))], settings, cancel, |_| {})
            .await;
    assert!(out.interrupted);
    assert!(Instant::now() - t0 < Duration::from_secs(3), "stopped within a second of the cancel");
    assert_accounting(&out);
    let c = &out.fleets[0].counters;
    assert!((250..=300).contains(&c.scheduled), "{c:?}");
}

fn with_events(mut f: FleetRuntime, events: &[crate::fleet::Event]) -> FleetRuntime {
    f.events = crate::fleet::FleetEvents::new(events, f.devices, f.schedule.interval, 77);
    f
}

async fn run_scripted(t: &Fake, fleets: Vec<FleetRuntime>, seconds: u64, seed: u64, cohorts: bool) -> RunOutput {
    let settings = EngineSettings { cohorts, ..paused(seconds, ConnectionMode::PerDevice, seed) };
    run(vec![Arc::new(t.clone())], fleets, settings, CancellationToken::new(), |_| {}).await
}

#[tokio::test(start_paused = true)]
async fn an_outage_silences_exactly_its_share_and_they_all_come_back_in_one_millisecond() {
    use crate::fleet::{Event, EventKind, Recovery};
    let t = Fake::answering(|_| 200);
    let outage = Event {
        at: Duration::from_secs(30),
        share: 0.3,
        kind: EventKind::Outage { duration: Duration::from_secs(45), recover: Recovery::Synchronized },
    };
    let t0 = Instant::now();
    let f = with_events(fleet(1000, every(Duration::from_secs(10))), &[outage]);
    let out = run_scripted(&t, vec![f], 120, 3, false).await;
    let by_device = t.times_by_device(t0);
    assert_eq!(by_device.len(), 1000);
    let silent: Vec<&Vec<u128>> =
        by_device.values().filter(|ts| !ts.iter().any(|ms| (30_000..75_000).contains(ms))).collect();
    assert_eq!(silent.len(), 300, "exactly 30% silent from 30 s to 75 s");
    let backs: Vec<u128> = silent.iter().map(|ts| *ts.iter().find(|ms| **ms >= 75_000).unwrap()).collect();
    assert!(backs.iter().all(|ms| *ms == 75_000), "all back within the same millisecond: {:?}", &backs[..5]);
    // Freshness: the silenced devices, and only they, went stale (3 intervals = 30 s).
    assert_eq!(out.freshness[0].stale, 300);
    assert_eq!(out.freshness[0].devices, 1000);
    assert_accounting(&out);
}

#[tokio::test(start_paused = true)]
async fn live_freshness_follows_the_silenced_devices_going_stale() {
    use crate::fleet::{Event, EventKind, Recovery};
    let outage = Event {
        at: Duration::from_secs(30),
        share: 0.3,
        kind: EventKind::Outage { duration: Duration::from_secs(45), recover: Recovery::Synchronized },
    };
    let fleets = || vec![with_events(fleet(1000, every(Duration::from_secs(10))), std::slice::from_ref(&outage))];
    let settings = EngineSettings { live_freshness: true, ..paused(100, ConnectionMode::PerDevice, 3) };
    let mut seen: Vec<(Duration, u64, u64)> = Vec::new();
    let t = Fake::answering(|_| 200);
    let out = run(vec![Arc::new(t.clone())], fleets(), settings, CancellationToken::new(), |live| {
        if let Some(f) = live.freshness {
            seen.push((live.elapsed, f[0].stale, f[0].devices));
        }
    })
    .await;
    assert!(seen.len() > 150, "about once a second from each of two workers: {}", seen.len());
    // Silent from 30 s, their last success up to an interval (10 s)
    // before, stale past 3 intervals (30 s): none before 50 s, all 300
    // from 60 s; a largest gap never shrinks.
    for (at, stale, devices) in &seen {
        if *at < Duration::from_secs(50) {
            assert_eq!(*stale, 0, "at {at:?}");
        }
        if *at > Duration::from_secs(62) {
            assert_eq!((*stale, *devices), (300, 1000), "at {at:?}");
        }
    }
    assert!(seen.windows(2).all(|w| w[1].1 >= w[0].1), "stale never falls");
    assert_eq!(out.freshness[0].stale, 300);
    // Not asked for: no walks.
    let mut any = false;
    let settings = paused(5, ConnectionMode::PerDevice, 3);
    run(vec![Arc::new(t.clone())], fleets(), settings, CancellationToken::new(), |live| {
        any |= live.freshness.is_some()
    })
    .await;
    assert!(!any);
}

#[tokio::test(start_paused = true)]
async fn a_rollout_switches_versions_at_the_planned_pace_and_cohorts_follow() {
    use crate::fleet::{Event, EventKind, RolloutTarget};
    let t = Fake::answering(|_| 200);
    let rollout = Event {
        at: Duration::from_secs(10),
        share: 0.5,
        kind: EventKind::Rollout { over: Duration::from_secs(20), target: RolloutTarget::AgentVersion("2.0".into()) },
    };
    let mut f = fleet(1000, every(Duration::from_secs(1)));
    f.generator.profile.agent_versions.ensure("2.0");
    let f = FleetRuntime {
        generator: FleetGenerator::new(f.generator.profile.clone(), NameTemplate::parse("d-{index}").unwrap(), 1),
        ..with_events(f, &[rollout])
    };
    let t0 = Instant::now();
    let out = run_scripted(&t, vec![f], 40, 3, true).await;
    // Devices on 2.0 in each second.
    let on_new = |second: u64| {
        let calls = t.calls();
        calls
            .iter()
            .filter(|c| (c.at - t0).as_secs() == second && c.version == "2.0")
            .map(|c| c.device.clone())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    assert_eq!(on_new(5), 0);
    for second in [15u64, 20, 25] {
        // Rank r switches at 10 s + 20 s · r / 500; a device heartbeats once a second.
        let expected = 500 * (second - 10) / 20;
        let n = on_new(second) as u64;
        assert!(n.abs_diff(expected) <= 30, "second {second}: {n} devices on 2.0, planned about {expected}");
    }
    assert_eq!(on_new(35), 500, "half the fleet, exactly, after the rollout");
    // Cohorts add up to the fleet and split by version.
    let cohorts = &out.cohorts[0];
    let sent: Vec<u64> = cohorts.iter().map(|c| c.as_ref().map_or(0, |r| r.counters.sent)).collect();
    assert_eq!(sent.iter().sum::<u64>(), out.fleets[0].counters.sent);
    assert!(sent[0] > sent[1] && sent[1] > 5000, "{sent:?}");
}

#[tokio::test(start_paused = true)]
async fn a_surge_changes_its_share_s_rate_for_its_duration() {
    use crate::fleet::{Event, EventKind};
    let t = Fake::answering(|_| 200);
    let surge = Event {
        at: Duration::from_secs(20),
        share: 0.5,
        kind: EventKind::Surge { duration: Duration::from_secs(10), interval: Duration::from_secs(1) },
    };
    let t0 = Instant::now();
    let f = with_events(fleet(200, every(Duration::from_secs(10))), &[surge]);
    run_scripted(&t, vec![f], 50, 3, false).await;
    let mut per_second = vec![0; 50];
    for c in t.calls() {
        per_second[(c.at - t0).as_secs() as usize] += 1;
    }
    assert!(per_second[..20].iter().all(|n| *n == 20), "20/s before: {per_second:?}");
    assert!(per_second[21..30].iter().all(|n| (105..=115).contains(n)), "about 110/s during: {per_second:?}");
    let after: usize = per_second[40..50].iter().sum();
    assert_eq!(after, 200, "back to one per device per 10 s: {per_second:?}");
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_schedule() {
    use crate::fleet::{Event, EventKind, Recovery};
    let outage = Event {
        at: Duration::from_secs(5),
        share: 0.4,
        kind: EventKind::Outage { duration: Duration::from_secs(5), recover: Recovery::Staggered(Duration::ZERO) },
    };
    let outage = &outage;
    let schedule = |seed: u64| async move {
        let t = Fake::answering(|_| 200);
        let t0 = Instant::now();
        let poisson = Schedule { arrival: Arrival::Poisson, ..every(Duration::from_secs(2)) };
        let f = with_events(fleet(300, poisson), std::slice::from_ref(outage));
        run_scripted(&t, vec![f], 20, seed, false).await;
        t.times_by_device(t0)
    };
    let (a, b, c) = (schedule(9).await, schedule(9).await, schedule(10).await);
    assert_eq!(a, b, "same seed, same schedule");
    assert_ne!(a, c, "another seed, another schedule");
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_up_to_max_and_count_separately() {
    use crate::fleet::retry::{Backoff, Jitter, RetryPolicy};
    let policy = RetryPolicy {
        max: 3,
        backoff: Backoff::Exponential,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(30),
        jitter: Jitter::None,
    };
    // Every attempt fails: each heartbeat is tried 4 times, 1, 2 and 4 s apart.
    let t = Fake::answering(|_| 503);
    let t0 = Instant::now();
    // Five devices, first sends 12 s apart: every retry falls within the minute.
    let f = FleetRuntime { retry: Some(policy), ..fleet(5, every(Duration::from_secs(60))) };
    let out = run_scripted(&t, vec![f], 60, 3, false).await;
    for (device, times) in t.times_by_device(t0) {
        let gaps: Vec<u128> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [1000, 2000, 4000], "{device}: {times:?}");
    }
    let c = &out.fleets[0].counters;
    assert_eq!((c.sent, c.retries, c.failed(), c.recovered), (5, 15, 5, 0));
    assert_accounting(&out);

    // The third attempt succeeds: recovered, latency from the first intended time.
    let t = Fake::answering(|n| if n % 3 == 0 { 200 } else { 503 });
    let full = RetryPolicy { jitter: Jitter::Full, ..policy };
    let f = FleetRuntime { retry: Some(full), ..fleet(5, every(Duration::from_secs(60))) };
    let out = run_scripted(&t, vec![f], 60, 3, false).await;
    let c = &out.fleets[0].counters;
    assert_eq!((c.sent, c.retries, c.ok(), c.recovered), (5, 10, 5, 5));
    assert!(out.fleets[0].latency.min() > 0, "latency counts the failed attempts and waits");
    // Full jitter: each wait is at most the exponential one.
    for (_, times) in t.times_by_device(t0) {
        assert!(times.windows(2).zip([1000, 2000]).all(|(w, cap)| w[1] - w[0] <= cap), "{times:?}");
    }
}

/// An answer read 30 ms after it arrived (the generator's thread was
/// busy) is timed when it arrived; one stamped before its heartbeat was
/// sent (a clock step) when it was sent, never earlier.
#[tokio::test(start_paused = true)]
async fn answers_are_timed_when_they_arrived_not_when_they_were_read() {
    let t = Fake {
        delay: Duration::from_millis(50),
        arrived_early: Some(Duration::from_millis(30)),
        ..Fake::answering(|_| 200)
    };
    let out = run_scripted(&t, vec![fleet(20, every(Duration::from_secs(1)))], 10, 3, false).await;
    let r = &out.fleets[0];
    assert!(r.counters.ok() >= 180, "{:?}", r.counters);
    // Tokio's 1 ms timer ticks: within 2 ms of the 20 ms the answer took.
    let (lo, hi) = (r.service_time.min(), r.service_time.max());
    assert!((19_000..=22_000).contains(&lo) && (19_000..=22_000).contains(&hi), "service {lo}..{hi} µs");
    assert!(r.latency.max() <= 23_000, "latency max {} µs", r.latency.max());
    assert_accounting(&out);

    let t = Fake {
        delay: Duration::from_millis(5),
        arrived_early: Some(Duration::from_secs(3)),
        ..Fake::answering(|_| 200)
    };
    let out = run_scripted(&t, vec![fleet(20, every(Duration::from_secs(1)))], 10, 3, false).await;
    let r = &out.fleets[0];
    assert!(r.service_time.max() <= 1_000, "a stamp before the send counts as the send: {} µs", r.service_time.max());
    assert_accounting(&out);
}

#[tokio::test(start_paused = true)]
async fn a_run_that_ends_mid_retry_counts_each_heartbeat_once() {
    use crate::fleet::retry::{Backoff, Jitter, RetryPolicy};
    let policy = RetryPolicy {
        max: 5,
        backoff: Backoff::Constant,
        base: Duration::from_millis(130),
        cap: Duration::from_secs(1),
        jitter: Jitter::Full,
    };
    // Slow failures: at the end, some retries are in flight, some waiting.
    let t = Fake { delay: Duration::from_millis(170), ..Fake::answering(|_| 503) };
    let f = FleetRuntime { retry: Some(policy), ..fleet(97, every(Duration::from_millis(700))) };
    let out = run_scripted(&t, vec![f], 3, 5, false).await;
    assert_accounting(&out);
    let c = &out.fleets[0].counters;
    let attempts = t.calls().len() as u64;
    assert_eq!(c.sent + c.retries, attempts, "{c:?}");
    // Every heartbeat failed once, or ended with a retry still to go.
    assert_eq!(c.failed() + c.retry_pending, c.sent, "{c:?}");
    assert!(c.retry_pending > 0 && c.failed() > 0, "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn a_cancel_before_the_first_heartbeat_still_marks_the_run_interrupted() {
    let fake = Fake::default();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let settings = paused(60, ConnectionMode::PerDevice, 3);
    for _ in 0..20 {
        let out = run(
            vec![Arc::new(fake.clone())],
            vec![fleet(10, every(Duration::from_secs(1)))],
            settings.clone(),
            cancel.clone(),
            |_| {},
        )
        .await;
        assert!(out.interrupted, "cancelled before it began: interrupted");
        assert!(out.scheduled_for < Duration::from_secs(1));
    }
}

#[tokio::test(start_paused = true)]
async fn a_transport_without_sessions_is_given_no_identity_and_no_idle_wait() {
    // As HTTP: the exchange opens its own connection; the worker builds no
    // identity and waits on nothing between heartbeats (the fake's `idle`
    // would panic).
    let fake = Fake::default();
    let out = run_fake(&fake, vec![fleet(10, every(Duration::from_secs(1)))], 5, ConnectionMode::PerDevice).await;
    assert_accounting(&out);
    assert_eq!(out.fleets[0].counters.sent, 50);
    assert!(fake.identities().is_empty() && fake.opened_sessions().is_empty());
    assert_eq!(out.fleets[0].counters.sessions, SessionCounts::default());
}

/// The seam a session protocol plugs into, driven through the same worker
/// code HTTP's exchanges go through: a fake transport shaped like MQTT
/// (`transport::testing`, with a session script), four devices every 10 s
/// for a minute. Each device's session opens with its identity (20 ms to
/// connect); d-0's second message is acknowledged after 12 s, past its
/// exchange's 1 s timeout and after its third message's acknowledgement
/// (out of order, arriving on the idle session); keep-alives fall due
/// every 4 s between heartbeats; the far end closes d-1's first session
/// 15 s after it opened, and d-1's next heartbeat opens a new one with its
/// identity again. No protocol-specific code runs outside the fake.
#[tokio::test(start_paused = true)]
async fn a_session_transport_opens_each_device_s_session_with_its_identity_keeps_it_alive_and_reopens_it() {
    use crate::transport::testing::SessionScript;
    let script = SessionScript {
        keepalive: Duration::from_secs(4),
        ack: |device, n| if (device, n) == ("d-0", 2) { Duration::from_secs(12) } else { Duration::from_millis(50) },
        close: |device, n| ((device, n) == ("d-1", 1)).then_some(Duration::from_secs(15)),
        ..SessionScript::default()
    };
    let fake = Fake { connect_delay: Duration::from_millis(20), ..Fake::with_sessions(script) };
    let settings = paused(60, ConnectionMode::PerDevice, 3);
    let out = run(
        vec![Arc::new(fake.clone())],
        vec![fleet(4, every(Duration::from_secs(10)))],
        settings,
        CancellationToken::new(),
        |_| {},
    )
    .await;

    // The report's counts: every heartbeat sent, one failed (the late
    // acknowledgement's), each connect counted (d-1's twice).
    assert_accounting(&out);
    let c = &out.fleets[0].counters;
    assert_eq!((c.scheduled, c.sent, c.missed, c.ok(), c.failed()), (24, 24, 0, 23, 1), "{c:?}");
    assert_eq!((c.connects, fake.connects()), (5, 5), "four sessions and d-1's second");

    let sessions = fake.opened_sessions();
    let mut by_device: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for s in sessions.values() {
        by_device.entry(s.identity.device.clone()).or_default().push(s.number);
    }
    let expected: Vec<(&str, Vec<u32>)> =
        vec![("d-0", vec![1]), ("d-1", vec![1, 2]), ("d-2", vec![1]), ("d-3", vec![1])];
    let by_device: Vec<(&str, Vec<u32>)> = by_device.iter().map(|(d, n)| (d.as_str(), n.clone())).collect();
    assert_eq!(by_device, expected, "each device's sessions, opened with its own name");
    // Every message went on its own device's session (the fake checks each).
    for call in fake.calls() {
        assert_eq!(sessions[&call.conn].identity.device, call.device);
    }

    // d-0: message 2's acknowledgement came after message 3's, inbound.
    let d0 = sessions.values().find(|s| s.identity.device == "d-0").unwrap();
    assert_eq!(d0.acked, [1, 3, 2, 4, 5, 6], "acknowledged out of order");
    assert_eq!(d0.inbound.len(), 1);
    assert!(d0.inbound[0] > d0.messages[2] && d0.inbound[0] < d0.messages[3]);

    // Keep-alives between heartbeats: two in each 10 s gap of a session
    // (at 4 and 8 s after its message); the engine counted each one.
    for s in sessions.values() {
        for gap in s.messages.windows(2) {
            let n = s.keepalives.iter().filter(|k| **k > gap[0] && **k < gap[1]).count();
            assert_eq!(
                n, 2,
                "{} session {}: keep-alives between {gap:?}: {:?}",
                s.identity.device, s.number, s.keepalives
            );
        }
    }
    let keepalives: usize = sessions.values().map(|s| s.keepalives.len()).sum();
    assert!(keepalives >= 4 * 2 * 5 - 2, "{keepalives}");
    let counted = out.fleets[0].counters.sessions.clone();
    assert_eq!(
        counted,
        SessionCounts {
            keepalives: keepalives as u64,
            inbound: 1,
            closed: 1,
            closed_by: crate::stats::ClosedBy { disconnect: 1, ..Default::default() },
            ..SessionCounts::default()
        }
    );

    // d-1: closed by the far end 15 s after it opened (between two
    // heartbeats), reopened with its identity at its next heartbeat.
    let d1: Vec<&crate::transport::testing::Session> =
        sessions.values().filter(|s| s.identity.device == "d-1").collect();
    assert!(d1[0].closed && !d1[1].closed);
    assert_eq!(d1[0].messages.len() + d1[1].messages.len(), 6);
    assert_eq!(d1[1].identity, d1[0].identity, "the same identity again");
    // Two heartbeats after the first (20 ms to connect each time; tokio's
    // 1 ms timer ticks).
    let reopened = (d1[1].opened_at - d1[0].opened_at).as_millis();
    assert!((19_999..=20_001).contains(&reopened), "reopened {reopened} ms after the first opened");
    assert!(d1[0].messages.len() == 2 && d1[1].opened_at > d1[0].messages[1] + Duration::from_secs(5));
}

/// A heartbeat that finds its device's session still out on an idle wait
/// (the transport handed it back 30 ms late) waits for it, as one waits
/// for a pooled connection: sent late on the same session, none lost.
#[tokio::test(start_paused = true)]
async fn a_heartbeat_that_finds_its_session_out_on_an_idle_wait_waits_for_it() {
    use crate::transport::testing::SessionScript;
    let script = SessionScript {
        keepalive: Duration::from_secs(60),
        ack: |_, _| Duration::from_millis(5),
        overstay: Duration::from_millis(30),
        handback: None,
        ..SessionScript::default()
    };
    let fake = Fake::with_sessions(script);
    let settings = EngineSettings { workers: 1, ..paused(5, ConnectionMode::PerDevice, 3) };
    let out = run(
        vec![Arc::new(fake.clone())],
        vec![fleet(3, every(Duration::from_secs(1)))],
        settings,
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_accounting(&out);
    let r = &out.fleets[0];
    let c = &r.counters;
    assert_eq!((c.scheduled, c.sent, c.missed, c.ok(), c.connects), (15, 15, 0, 15, 3), "{c:?}");
    assert_eq!((c.waited, c.late), (12, 12), "all but each device's first waited for its session");
    let ms = |v: u64| (v + 500) / 1000;
    assert_eq!(ms(r.connection_wait.max()), 30);
    assert_eq!(fake.opened_sessions().len(), 3, "each device kept its one session");
}

/// The same, with a transport that hears the worker's call for its
/// session ([`crate::transport::HandBack`]): its own timer is as late, but
/// a heartbeat that finds the session out calls it back and goes at once,
/// so none waits and none is late.
#[tokio::test(start_paused = true)]
async fn a_heartbeat_calls_its_idle_session_back_and_goes_at_once() {
    use crate::transport::testing::SessionScript;
    let script = SessionScript {
        keepalive: Duration::from_secs(60),
        ack: |_, _| Duration::from_millis(5),
        overstay: Duration::from_millis(30),
        ..SessionScript::default()
    };
    let fake = Fake::with_sessions(script);
    let settings = EngineSettings { workers: 1, ..paused(5, ConnectionMode::PerDevice, 3) };
    let out = run(
        vec![Arc::new(fake.clone())],
        vec![fleet(3, every(Duration::from_secs(1)))],
        settings,
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_accounting(&out);
    let r = &out.fleets[0];
    let c = &r.counters;
    assert_eq!((c.scheduled, c.sent, c.missed, c.ok(), c.connects), (15, 15, 0, 15, 3), "{c:?}");
    assert_eq!((c.waited, c.late), (0, 0), "no heartbeat waited for its session: {c:?}");
    assert_eq!(r.connection_wait.max(), 1, "the histogram's floor, 1 µs: no wait");
    assert_eq!(fake.opened_sessions().len(), 3, "each device kept its one session");
}

/// A device whose session the far end closed reopens it at once, after
/// its reconnect delay, not at its next heartbeat, as a device's client
/// library does. Here every first session is closed 4.5 s after it opened,
/// inside a window (4 s to 12 s) in which the far end refuses openings
/// ("server unavailable", a restarting broker's): each refused opening
/// doubles the device's delay (1 s, up to 4 s, from its upper half), and
/// a heartbeat due meanwhile fails at once, for the reason the session is
/// gone, without an opening of its own. The first opening after the
/// window succeeds and carries the rest.
#[tokio::test(start_paused = true)]
async fn a_lost_session_is_reopened_after_its_reconnect_delay_which_doubles_while_refused() {
    use crate::stats::{Code, OutcomeClass};
    use crate::transport::Reconnect;
    use crate::transport::testing::SessionScript;
    let script = SessionScript {
        keepalive: Duration::from_secs(60),
        ack: |_, _| Duration::from_millis(5),
        close: |_, n| (n == 1).then_some(Duration::from_millis(4_500)),
        reconnect: Some(Reconnect { first: Duration::from_secs(1), max: Duration::from_secs(4) }),
        down: Some((Duration::from_secs(4), Duration::from_secs(12))),
        ..SessionScript::default()
    };
    let fake = Fake::with_sessions(script);
    let out = run(
        vec![Arc::new(fake.clone())],
        vec![fleet(2, every(Duration::from_secs(2)))],
        paused(30, ConnectionMode::PerDevice, 9),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_accounting(&out);
    let c = &out.fleets[0].counters;
    let s = &c.sessions;
    assert_eq!((c.scheduled, c.sent, c.missed), (30, 30, 0), "{c:?}");
    assert_eq!((s.closed, s.reopened), (2, 2), "each device's session closed once, reopened once: {s:?}");
    assert_eq!(c.connects, 4, "two openings by heartbeats, two reopenings");
    // Every opening after the first was a reopening, none a heartbeat's.
    assert_eq!(fake.identities().len() as u64, 2 + s.reopened + s.reopen_failed);
    let sessions = fake.opened_sessions();
    for device in ["d-0", "d-1"] {
        let mine: Vec<_> = sessions.values().filter(|x| x.identity.device.ends_with(device)).collect();
        assert_eq!(mine.len(), 2, "{device}: two sessions");
        let first_closed = mine[0].opened_at + Duration::from_millis(4_500);
        let reopened = mine[1].opened_at.duration_since(fake.epoch);
        // The first opening after the window, within its delay's ceiling.
        assert!(reopened >= Duration::from_secs(12) && reopened < Duration::from_secs(16), "{device}: {reopened:?}");
        // Refused at least at +0.5-1 s, +1-2 s, +2-4 s of the close (from 4.5-6.5 s) before 12 s.
        assert!(mine[1].opened_at > first_closed + Duration::from_millis(3_500), "{device}");
    }
    // Refused openings: at least two per device before the window ended
    // (delays of at most 1, 2 and 4 s from a close before 6.5 s).
    assert!(s.reopen_failed >= 4, "{s:?}");
    // Heartbeats due while a device had no session failed at once: for the
    // refusal (server unavailable, code 3) or, before the first refusal,
    // for the lost session (connect); the rest went on a session and were
    // acknowledged.
    let failed = c.failed();
    assert!(failed >= 4, "at least two heartbeats per device between 6.5 s and 12 s: {c:?}");
    assert_eq!(c.classes[OutcomeClass::ServerError] + c.classes[OutcomeClass::Connect], failed, "{c:?}");
    assert_eq!(c.codes.get(&Code::Mqtt(3)).copied().unwrap_or(0), c.classes[OutcomeClass::ServerError]);
    let on_sessions: usize = sessions.values().map(|x| x.messages.len()).sum();
    assert_eq!(on_sessions as u64, c.ok(), "every ok heartbeat went on a session, every failed one on none");
}

/// A target's connect rate paces every session opening: ten devices whose
/// first heartbeats all fall in the first second open their sessions at
/// most five a second, each at its turn; a heartbeat that waited for its
/// turn counts the wait as connection wait, and none is lost.
#[tokio::test(start_paused = true)]
async fn sessions_open_at_the_target_s_connect_rate_and_heartbeats_wait_their_turn() {
    use crate::transport::testing::SessionScript;
    let script = SessionScript {
        keepalive: Duration::from_secs(60),
        ack: |_, _| Duration::from_millis(5),
        connect_rate: Some(5.0),
        ..SessionScript::default()
    };
    let fake = Fake::with_sessions(script);
    let settings = EngineSettings { workers: 1, ..paused(5, ConnectionMode::PerDevice, 4) };
    let out = run(
        vec![Arc::new(fake.clone())],
        vec![fleet(10, every(Duration::from_secs(1)))],
        settings,
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_accounting(&out);
    let r = &out.fleets[0];
    let c = &r.counters;
    assert_eq!((c.scheduled, c.sent, c.missed, c.connects), (50, 50, 0, 10), "{c:?}");
    let mut opened: Vec<Duration> = fake.opened_sessions().values().map(|s| s.opened_at - fake.epoch).collect();
    opened.sort();
    for pair in opened.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(200), "five a second at most: {opened:?}");
    }
    // The last of ten opened at its turn, 1.8 s in (no sooner).
    assert!(opened[9] >= Duration::from_millis(1_800) && opened[9] < Duration::from_millis(2_000), "{opened:?}");
    assert!(c.waited >= 5, "those whose turn came after their heartbeat waited: {c:?}");
    assert!(r.connection_wait.max() >= 800_000, "up to about 0.8 s or more: {}", r.connection_wait.max());
    assert_eq!(c.ok() + c.failed(), 50);
}

/// A device that goes silent (an outage) ends its session as it does, not
/// at its next heartbeat: dropped by default (a broker would publish its
/// Will), with a goodbye first when its fleet says `offline =
/// "disconnect"`; it sends no keep-alive while silent, and comes back on a
/// new session, which is not a reopening.
#[tokio::test(start_paused = true)]
async fn a_device_that_goes_silent_ends_its_session_then_as_its_fleet_says() {
    use crate::fleet::{Event, EventKind, Recovery};
    use crate::transport::testing::SessionScript;
    use crate::wire::mqtt::{MqttSpec, MqttWire};
    let script = SessionScript {
        keepalive: Duration::from_secs(1),
        ack: |_, _| Duration::from_millis(5),
        reconnect: Some(crate::transport::Reconnect { first: Duration::from_secs(1), max: Duration::from_secs(2) }),
        ..SessionScript::default()
    };
    let outage = Event {
        at: Duration::from_secs(10),
        share: 1.0,
        kind: EventKind::Outage { duration: Duration::from_secs(6), recover: Recovery::Synchronized },
    };
    for goodbye in [false, true] {
        let fake = Fake::with_sessions(script);
        let mut f = with_events(fleet(4, every(Duration::from_secs(2))), std::slice::from_ref(&outage));
        if goodbye {
            let spec: MqttSpec = toml::from_str("offline = \"disconnect\"").unwrap();
            f.wire = crate::wire::FleetWire::Mqtt(Arc::new(MqttWire::compile(&spec).unwrap()));
        }
        let settings = EngineSettings { workers: 1, ..paused(30, ConnectionMode::PerDevice, 5) };
        let out = run(vec![Arc::new(fake.clone())], vec![f], settings, CancellationToken::new(), |_| {}).await;
        assert_accounting(&out);
        let c = &out.fleets[0].counters;
        assert_eq!((c.sessions.ended_offline, c.sessions.reopened, c.connects), (4, 0, 8), "{goodbye}: {c:?}");
        assert_eq!(c.failed(), 0, "{c:?}");
        let sessions = fake.opened_sessions();
        let silent_from = fake.epoch + Duration::from_secs(10);
        for first in sessions.values().filter(|s| s.number == 1) {
            let (at, said) = first.ended.expect("ended by its device");
            assert_eq!((at, said), (silent_from, goodbye), "{}: as the silence began", first.identity.device);
            assert!(first.keepalives.iter().all(|k| *k <= silent_from), "no keep-alive while silent");
        }
        for second in sessions.values().filter(|s| s.number == 2) {
            assert_eq!(second.opened_at, fake.epoch + Duration::from_secs(16), "back at the outage's end");
        }
        // Sessions open over time, from the timeline: all four up by 2 s,
        // none from 10 s to 16 s, all four again from 16 s.
        let mut open = 0u64;
        for s in &out.timeline {
            open = (open + s.sessions_opened).saturating_sub(s.sessions_ended);
            let expected = match s.start_s {
                0 => open,
                2..10 | 16.. => 4,
                10..16 => 0,
                _ => open,
            };
            assert_eq!(open, expected, "at {} s", s.start_s);
        }
    }
}

/// A run whose fleets speak different protocols: one fleet's devices over
/// a session transport shaped like MQTT (sessions opened with each
/// device's identity, keep-alives between heartbeats), the other's over
/// one shaped like HTTP (connections opened by the exchange, nothing done
/// while idle), through the same workers. Each fleet's heartbeats go to
/// its own target's transport only, and each is counted in its own fleet.
#[tokio::test(start_paused = true)]
async fn fleets_of_one_run_speak_different_protocols_each_over_its_own_target() {
    use crate::transport::testing::SessionScript;
    let script = SessionScript { keepalive: Duration::from_secs(4), ..SessionScript::default() };
    let sessions = Fake::with_sessions(script);
    let http = Fake { delay: Duration::from_millis(10), ..Fake::default() };
    let mqtt_like = FleetRuntime { target: 1, ..fleet(3, every(Duration::from_secs(10))) };
    let http_like = FleetRuntime { key: 2, ..fleet(5, every(Duration::from_secs(2))) };
    let settings = paused(30, ConnectionMode::PerDevice, 3);
    let targets = vec![Arc::new(http.clone()), Arc::new(sessions.clone())];
    let out = run(targets, vec![http_like, mqtt_like], settings, CancellationToken::new(), |_| {}).await;

    assert_accounting(&out);
    let (h, s) = (&out.fleets[0].counters, &out.fleets[1].counters);
    assert_eq!((h.scheduled, h.sent, h.ok()), (75, 75, 75), "{h:?}");
    assert_eq!((s.scheduled, s.sent, s.ok()), (9, 9, 9), "{s:?}");
    // Each transport carried its own fleet's heartbeats and no other's.
    assert_eq!(http.calls().len(), 75);
    assert_eq!(sessions.calls().len(), 9);
    // Sessions: one per device of the session fleet, opened with its
    // identity; the HTTP fleet's five connections opened by exchanges.
    let opened = sessions.opened_sessions();
    let mut names: Vec<String> = opened.values().map(|s| s.identity.device.clone()).collect();
    names.sort();
    assert_eq!(names, ["d-0", "d-1", "d-2"]);
    assert_eq!((s.connects, sessions.connects()), (3, 3));
    assert_eq!(http.connects(), 5, "one connection per device, opened by its first exchange");
    assert!(http.identities().is_empty(), "no identity built for the HTTP-like target");
    // Keep-alives on the session fleet's idle sessions only.
    assert!(out.fleets[1].counters.sessions.keepalives >= 3 * 2 * 2, "{:?}", out.fleets[1].counters.sessions);
    assert_eq!(out.fleets[0].counters.sessions, SessionCounts::default());
}

/// A session whose opening the far end refuses (a broker's CONNACK with
/// bad credentials) is that heartbeat's outcome, in the class the
/// transport gave it: every heartbeat failed as `auth`, none connected,
/// and each next heartbeat tries to open the session again.
#[tokio::test(start_paused = true)]
async fn a_session_refused_at_its_opening_fails_its_heartbeat_in_the_refusal_s_class() {
    use crate::stats::{Outcome, OutcomeClass};
    use crate::transport::testing::SessionScript;
    let script = SessionScript {
        keepalive: Duration::from_secs(60),
        ack: |_, _| Duration::from_millis(5),
        ..SessionScript::default()
    };
    let refused = Outcome::Answered { class: OutcomeClass::Auth, code: None };
    let fake = Fake { connect_delay: Duration::from_millis(20), refuse: Some(refused), ..Fake::with_sessions(script) };
    let out = run_fake(&fake, vec![fleet(3, every(Duration::from_secs(1)))], 5, ConnectionMode::PerDevice).await;
    assert_accounting(&out);
    let c = &out.fleets[0].counters;
    assert_eq!((c.scheduled, c.sent, c.failed(), c.classes[OutcomeClass::Auth]), (15, 15, 15, 15), "{c:?}");
    assert_eq!((c.connects, fake.connects()), (0, 0));
    assert_eq!(fake.identities().len(), 15, "each heartbeat tried its device's session again");
    assert!(fake.calls().is_empty(), "nothing went on a session that never opened");
}

/// A session with an in-flight window carries that many of its device's
/// messages at once, each on a share of the one session: every message
/// goes at its intended time while the earlier ones await their
/// acknowledgements; a message that finds the window full waits (late),
/// and one whose slot passes meanwhile is missed, as for a busy device.
/// Two devices every second for 12 s, each acknowledgement 3.5 s after
/// its message: four of a device's messages are in flight at once.
#[tokio::test(start_paused = true)]
async fn a_session_s_in_flight_window_carries_that_many_messages_at_once_and_holds_the_rest() {
    use crate::transport::testing::SessionScript;
    let script = |window| SessionScript {
        ack: |_, _| Duration::from_millis(3_500),
        ack_timeout: Duration::from_secs(10),
        window,
        ..SessionScript::default()
    };
    let run_with = |window| async move {
        let fake = Fake::with_sessions(script(window));
        let settings = EngineSettings { drain: Duration::from_secs(5), ..paused(12, ConnectionMode::PerDevice, 7) };
        let fleets = vec![fleet(2, every(Duration::from_secs(1)))];
        let out = run(vec![Arc::new(fake.clone())], fleets, settings, CancellationToken::new(), |_| {}).await;
        assert_accounting(&out);
        (fake, out)
    };

    // A window of 5: nothing waits.
    let (fake, out) = run_with(5).await;
    let c = &out.fleets[0].counters;
    assert_eq!((c.scheduled, c.sent, c.ok(), c.missed, c.late), (24, 24, 24, 0, 0), "{c:?}");
    assert_eq!((c.connects, fake.opened_sessions().len()), (2, 2), "one session a device, shared");
    assert_eq!(fake.most_concurrent(), 8, "four of each device's messages in flight at once");
    for s in fake.opened_sessions().values() {
        assert_eq!(s.messages.len(), 12);
        for pair in s.messages.windows(2) {
            // (The first went once its session was open, a timer tick on.)
            let gap = (pair[1] - pair[0]).abs_diff(Duration::from_secs(1));
            assert!(gap <= Duration::from_millis(1), "each at its intended time: {:?}", s.messages);
        }
    }
    let p50 = out.fleets[0].latency.value_at_quantile(0.5);
    assert!((3_500_000..3_600_000).contains(&p50), "timed to each one's own acknowledgement: {p50} us");

    // A window of 2: the third message finds it full and waits; the
    // fourth's slot passes meanwhile (the third is missed) and it goes
    // late, when the first is acknowledged.
    let (fake, out) = run_with(2).await;
    let c = &out.fleets[0].counters;
    assert!(c.missed > 0 && c.late > 0, "{c:?}");
    assert_eq!(c.sent, c.ok(), "{c:?}");
    assert_eq!(fake.most_concurrent(), 4, "two of each device's at once");
    assert_eq!(fake.opened_sessions().len(), 2);
}

/// A shared session the far end closes with four messages in flight on
/// it: each of the four fails (io), the session is counted as ended once
/// (not once a message), and the device opens a new one at its next
/// heartbeat, with the rest of its messages going on that one.
#[tokio::test(start_paused = true)]
async fn a_shared_session_that_breaks_fails_what_it_carried_and_ends_once() {
    use crate::transport::testing::SessionScript;
    let script = SessionScript {
        ack: |_, _| Duration::from_millis(3_500),
        ack_timeout: Duration::from_secs(10),
        // Closed 5.2 s after it opened: the messages of 2 s to 5 s are in flight.
        close: |_, n| (n == 1).then_some(Duration::from_millis(5_200)),
        window: 5,
        ..SessionScript::default()
    };
    let fake = Fake::with_sessions(script);
    let settings = EngineSettings { workers: 1, ..paused(12, ConnectionMode::PerDevice, 7) };
    let fleets = vec![fleet(1, every(Duration::from_secs(1)))];
    let out = run(vec![Arc::new(fake.clone())], fleets, settings, CancellationToken::new(), |_| {}).await;
    assert_accounting(&out);
    let c = &out.fleets[0].counters;
    assert_eq!((c.sent, c.failed(), c.connects), (12, 4, 2), "{c:?}");
    assert_eq!(c.classes[crate::stats::OutcomeClass::Io], 4, "{c:?}");
    let opened: u64 = out.timeline.iter().map(|s| s.sessions_opened).sum();
    let ended: u64 = out.timeline.iter().map(|s| s.sessions_ended).sum();
    assert_eq!((opened, ended), (2, 1), "the broken session ended once");
    let sessions = fake.opened_sessions();
    let numbers: Vec<(u32, usize, bool)> = sessions.values().map(|s| (s.number, s.messages.len(), s.closed)).collect();
    assert_eq!(numbers, [(1, 6, true), (2, 6, false)], "six on each: the second from the next heartbeat on");
}
