//! Each device's own clock: when it comes online, and the random stream
//! that draws its first heartbeat's phase and its gaps from the fleet's
//! [`Schedule`].

use rand::rngs::Xoshiro128PlusPlus;
use rand::{RngExt, SeedableRng};

use super::schedule::{Arrival, Schedule, StartMode};

/// When device `index` of `devices` comes online: at `R·index/devices`
/// with a ramp-up `R` (and sends its first heartbeat then), at 0 without.
pub fn online_ns(s: &Schedule, devices: u64, index: u64) -> u64 {
    ((s.ramp_up.as_nanos() * u128::from(index)) / u128::from(devices.max(1))) as u64
}

/// A device's schedule state: its own random stream.
#[derive(Debug, Clone)]
pub struct DeviceClock {
    rng: Xoshiro128PlusPlus,
}

impl DeviceClock {
    /// The clock of device `index`; `fleet_key` separates fleets.
    pub fn new(seed: u64, fleet_key: u64, index: u64) -> Self {
        let mixed = seed ^ fleet_key.rotate_left(17) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5ced_u64;
        DeviceClock { rng: Xoshiro128PlusPlus::seed_from_u64(mixed) }
    }

    /// When device `index` of `devices` sends its first heartbeat.
    pub fn first_ns(&mut self, s: &Schedule, devices: u64, index: u64) -> u64 {
        let interval = s.interval.as_nanos() as u64;
        let share = |span: u64| ((span as u128 * index as u128) / devices.max(1) as u128) as u64;
        if !s.ramp_up.is_zero() {
            return online_ns(s, devices, index);
        }
        match (s.start, s.arrival) {
            (StartMode::Synchronized, _) => 0,
            (StartMode::Staggered, Arrival::Periodic) => share(interval),
            (StartMode::Staggered, Arrival::Poisson) => self.exponential(interval),
        }
    }

    /// The gap to the next heartbeat.
    pub fn gap_ns(&mut self, s: &Schedule) -> u64 {
        let interval = s.interval.as_nanos() as u64;
        match s.arrival {
            Arrival::Periodic if s.jitter == 0.0 => interval,
            Arrival::Periodic => {
                let stretch = 1.0 + s.jitter * (2.0 * self.rng.random::<f64>() - 1.0);
                ((interval as f64) * stretch).max(1.0) as u64
            }
            Arrival::Poisson => self.exponential(interval).max(1),
        }
    }

    fn exponential(&mut self, mean: u64) -> u64 {
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u: f64 = 1.0 - self.rng.random::<f64>();
        (-(u.ln()) * mean as f64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn schedule(start: StartMode, arrival: Arrival, jitter: f64, ramp_up: Duration) -> Schedule {
        Schedule { interval: Duration::from_secs(1), jitter, start, ramp_up, arrival }
    }

    /// Intended sends per simulated second for `devices` devices over `seconds`.
    fn per_second(s: &Schedule, devices: u64, seconds: u64) -> Vec<u64> {
        let end = seconds * 1_000_000_000;
        let mut counts = vec![0; seconds as usize];
        for i in 0..devices {
            let mut clock = DeviceClock::new(7, 1, i);
            let mut t = clock.first_ns(s, devices, i);
            while t < end {
                counts[(t / 1_000_000_000) as usize] += 1;
                t += clock.gap_ns(s);
            }
        }
        counts
    }

    #[test]
    fn staggered_devices_spread_evenly() {
        let s = schedule(StartMode::Staggered, Arrival::Periodic, 0.0, Duration::ZERO);
        assert_eq!(per_second(&s, 10_000, 5), vec![10_000; 5]);
        let mut firsts: Vec<u64> = (0..10).map(|i| DeviceClock::new(7, 1, i).first_ns(&s, 10, i)).collect();
        firsts.sort();
        assert_eq!(firsts, (0..10).map(|i| i * 100_000_000).collect::<Vec<_>>());
    }

    #[test]
    fn jittered_and_poisson_rates_hold_within_a_percent() {
        for (arrival, jitter) in [(Arrival::Periodic, 0.1), (Arrival::Poisson, 0.0)] {
            let s = schedule(StartMode::Staggered, arrival, jitter, Duration::ZERO);
            let counts = per_second(&s, 10_000, 10);
            let total: u64 = counts.iter().sum();
            assert!((99_000..=101_000).contains(&total), "{arrival:?}: {total} in 10 s");
            for c in &counts {
                assert!((9_600..=10_400).contains(c), "{arrival:?}: {counts:?}");
            }
        }
    }

    #[test]
    fn synchronized_devices_all_start_at_once() {
        let s = schedule(StartMode::Synchronized, Arrival::Periodic, 0.0, Duration::ZERO);
        assert!((0..1000).all(|i| DeviceClock::new(1, 2, i).first_ns(&s, 1000, i) == 0));
    }

    #[test]
    fn ramp_up_brings_devices_online_linearly() {
        let s = schedule(StartMode::Staggered, Arrival::Periodic, 0.0, Duration::from_secs(10));
        let online_by = |secs: u64| {
            (0..1000).filter(|&i| DeviceClock::new(1, 2, i).first_ns(&s, 1000, i) < secs * 1_000_000_000).count()
        };
        assert_eq!([online_by(1), online_by(5), online_by(10)], [100, 500, 1000]);
    }

    #[test]
    fn clocks_are_reproducible_per_seed() {
        let s = schedule(StartMode::Staggered, Arrival::Poisson, 0.0, Duration::ZERO);
        let draw = |seed| {
            let mut c = DeviceClock::new(seed, 3, 4);
            (0..5).map(|_| c.gap_ns(&s)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }
}
