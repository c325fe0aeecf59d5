//! How many of a fleet's devices are online at an instant of the run: the
//! one rule behind the live progress line and `/metrics`
//! (`fleetstorm_devices_online`).
//!
//! A device is online from the instant it comes online ([`online_ns`]:
//! its ramp-up share, or 0 without a ramp-up) except while an outage or a
//! restart silences it (from the silence's start until it is back, the
//! same windows its schedule skips). Ramp-up alone is arithmetic; the
//! silences are listed once, for the devices they touch, and summed by the
//! millisecond (as many entries as distinct milliseconds, not devices), so
//! a count is one binary search. Counts are exact at each
//! whole millisecond of the run (an instant in between counts as the
//! millisecond it falls in).

use std::collections::BTreeMap;
use std::time::Duration;

use super::clock::online_ns;
use super::events::FleetEvents;
use super::schedule::Schedule;
use crate::shard::Shard;

const MS: u64 = 1_000_000;

/// A fleet's (or one shard's part of a fleet's) devices online over a run.
#[derive(Debug, Clone, Default)]
pub struct Online {
    /// The fleet's devices (all shards).
    devices: u64,
    ramp_up_ns: u128,
    /// Only this shard's devices, the fleet's device 0 having this global index.
    shard: Option<(Shard, u64)>,
    /// (millisecond, devices silenced from then on, net of those back), by
    /// millisecond: a running sum of the silences' starts and returns.
    silenced: Vec<(u64, i64)>,
}

fn ceil_ms(ns: u64) -> u64 {
    ns.div_ceil(MS)
}

impl Online {
    /// The devices of a fleet of `devices` with this schedule and these
    /// events; of one shard only when `shard` is given (with the global
    /// index of the fleet's first device).
    pub fn new(schedule: &Schedule, devices: u64, events: &FleetEvents, shard: Option<(Shard, u64)>) -> Online {
        // Net change in the devices silenced, by millisecond: as many
        // entries as distinct milliseconds, however many devices.
        let mut changes: BTreeMap<u64, i64> = BTreeMap::new();
        for (index, silence) in events.all_silences() {
            if shard.is_some_and(|(s, first)| !s.owns(first + index)) {
                continue;
            }
            // Silent before it came online changes nothing.
            let start = silence.start.max(online_ns(schedule, devices, index));
            if start < silence.resume {
                // Offline at a whole millisecond m iff start <= m < resume.
                *changes.entry(ceil_ms(start)).or_default() -= 1;
                *changes.entry(ceil_ms(silence.resume)).or_default() += 1;
            }
        }
        let silenced = changes
            .into_iter()
            .scan(0, |sum, (ms, delta)| {
                *sum += delta;
                Some((ms, *sum))
            })
            .collect();
        Online { devices, ramp_up_ns: schedule.ramp_up.as_nanos(), shard, silenced }
    }

    /// The devices counted (this shard's, with a shard).
    pub fn devices(&self) -> u64 {
        self.owned_below(self.devices)
    }

    /// Of the fleet's first `n` devices, those counted.
    fn owned_below(&self, n: u64) -> u64 {
        match self.shard {
            Some((s, first)) => s.owned_in(first, n),
            None => n,
        }
    }

    /// Devices online at `t` since the start of the run.
    pub fn at(&self, t: Duration) -> u64 {
        let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX / MS).min(u64::MAX / MS);
        let t_ns = u128::from(ms * MS);
        // Device i is online from floor(R·i/n) <= t, i.e. i < (t+1)·n/R.
        let ramped = if self.ramp_up_ns == 0 {
            self.devices
        } else {
            let n = u128::from(self.devices);
            ((t_ns + 1) * n).div_ceil(self.ramp_up_ns).min(n) as u64
        };
        let at = self.silenced.partition_point(|c| c.0 <= ms);
        let silenced = at.checked_sub(1).map_or(0, |i| self.silenced[i].1);
        (self.owned_below(ramped) as i64 + silenced).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{DeviceClock, Event, EventKind, Recovery};

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn schedule(ramp_up: Duration) -> Schedule {
        Schedule { ramp_up, ..Schedule::every(secs(1)) }
    }

    #[test]
    fn a_ramp_brings_devices_online_as_their_first_heartbeats_come() {
        for (devices, ramp) in [(1000, Duration::from_secs(10)), (7, Duration::from_millis(1234)), (1, secs(5))] {
            let s = schedule(ramp);
            let online = Online::new(&s, devices, &FleetEvents::default(), None);
            for ms in [0, 1, 9, 10, 617, 1233, 1234, 4999, 5000, 9990, 9999, 10_000, 20_000] {
                let t = Duration::from_millis(ms);
                let by_hand = (0..devices)
                    .filter(|&i| DeviceClock::new(3, 4, i).first_ns(&s, devices, i) <= ms * MS)
                    .count() as u64;
                assert_eq!(online.at(t), by_hand, "{devices} devices over {ramp:?} at {ms} ms");
            }
        }
        let none = Online::new(&schedule(Duration::ZERO), 50, &FleetEvents::default(), None);
        assert_eq!((none.at(Duration::ZERO), none.at(secs(100)), none.devices()), (50, 50, 50));
    }

    #[test]
    fn outages_and_restarts_silence_exactly_their_devices() {
        let s = schedule(secs(10));
        let outage = Event {
            at: secs(20),
            share: 0.3,
            kind: EventKind::Outage { duration: secs(10), recover: Recovery::Synchronized },
        };
        let restart =
            Event { at: secs(40), share: 0.5, kind: EventKind::Restart { over: secs(10), downtime: secs(5) } };
        let events = FleetEvents::new(&[outage, restart], 100, s.interval, 17);
        let online = Online::new(&s, 100, &events, None);
        let at = |ms: u64| online.at(Duration::from_millis(ms));
        // Devices 0..=50 are online by 5 s (device 50 at exactly 5 s).
        assert_eq!([at(0), at(4_999), at(5_000), at(15_000)], [1, 50, 51, 100]);
        // 30 devices silent over [20 s, 30 s).
        assert_eq!([at(19_999), at(20_000), at(29_999), at(30_000)], [100, 70, 70, 100]);
        // Restarts: rank r of 50 down over [40 s + 0.2 s·r, +5 s).
        // At 42 s ranks 0..=10 are down; at 47 s ranks 11..=35.
        assert_eq!([at(42_000), at(47_000), at(55_000)], [89, 75, 100]);
    }

    #[test]
    fn a_recovery_brings_devices_back_over_its_span_and_shards_add_up() {
        let s = schedule(Duration::ZERO);
        for recover in [Recovery::Ramp(secs(10)), Recovery::Staggered(secs(10))] {
            let outage = Event { at: secs(5), share: 0.4, kind: EventKind::Outage { duration: secs(5), recover } };
            let events = FleetEvents::new(&[outage], 1000, s.interval, 5);
            let whole = Online::new(&s, 1000, &events, None);
            let mut last = 600;
            for ms in (10_000..=20_000).step_by(500) {
                let now = whole.at(Duration::from_millis(ms));
                assert!(now >= last && now <= 1000, "{recover:?} at {ms} ms: {now} after {last}");
                last = now;
            }
            assert_eq!(whole.at(Duration::from_millis(9_999)), 600, "{recover:?}: 400 silent to the outage's end");
            assert!(whole.at(secs(10)) <= 601, "{recover:?}: at most the first back at its end");
            assert_eq!(whole.at(secs(20)), 1000, "{recover:?}: all back by the end of the recovery");
            let halfway = whole.at(secs(15));
            assert!((750..=850).contains(&halfway), "{recover:?}: about half of 400 back: {halfway}");
            // Three shards of a fleet whose first device is global index 7.
            for ms in [0, 5_000, 7_500, 12_345, 15_000, 30_000] {
                let t = Duration::from_millis(ms);
                let parts: u64 = (0..3)
                    .map(|index| Online::new(&s, 1000, &events, Some((Shard { index, count: 3 }, 7))).at(t))
                    .sum();
                assert_eq!(parts, whole.at(t), "{recover:?} at {ms} ms");
            }
        }
    }
}
