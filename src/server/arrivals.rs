//! Device requests by the wall-clock second they arrived in, for `GET
//! /stats`: the rate as the backend saw it, second by second, which a
//! load generator's own figures cannot show (`benches/accuracy.sh` checks
//! each tool's rate against it).
//!
//! One packed word per second, lock-free: the second (its low 32 bits)
//! and its count, in a ring of the last [`SECONDS`] seconds.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many of the latest seconds are kept.
pub const SECONDS: usize = 3600;

pub struct Arrivals {
    ring: Box<[AtomicU64]>,
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals { ring: (0..SECONDS).map(|_| AtomicU64::new(0)).collect() }
    }
}

fn pack(second: u64, count: u64) -> u64 {
    (second & 0xFFFF_FFFF) << 32 | (count & 0xFFFF_FFFF)
}

impl Arrivals {
    /// Counts one request arriving in epoch second `second`.
    pub fn arrived(&self, second: u64) {
        let slot = &self.ring[second as usize % SECONDS];
        let mut word = slot.load(Ordering::Relaxed);
        loop {
            let next = if word >> 32 == second & 0xFFFF_FFFF { word + 1 } else { pack(second, 1) };
            match slot.compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => word = now,
            }
        }
    }

    /// The seconds up to `now` (epoch seconds) that had arrivals, oldest
    /// first, with their counts.
    pub fn seconds(&self, now: u64) -> Vec<(u64, u64)> {
        let first = now.saturating_sub(SECONDS as u64 - 1);
        (first..=now)
            .filter_map(|s| {
                let word = self.ring[s as usize % SECONDS].load(Ordering::Relaxed);
                (word >> 32 == s & 0xFFFF_FFFF && word & 0xFFFF_FFFF > 0).then_some((s, word & 0xFFFF_FFFF))
            })
            .collect()
    }

    pub fn reset(&self) {
        for slot in self.ring.iter() {
            slot.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_counted_by_their_second_and_old_seconds_give_way() {
        let a = Arrivals::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..10_000).for_each(|i| a.arrived(1_700_000_000 + i % 3)));
            }
        });
        let got = a.seconds(1_700_000_002);
        let total: u64 = got.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 40_000, "none lost between threads");
        assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1_700_000_000, 1_700_000_001, 1_700_000_002]);
        // A second one ring later takes its slot over.
        a.arrived(1_700_000_000 + SECONDS as u64);
        let later = a.seconds(1_700_000_000 + SECONDS as u64);
        assert_eq!(later.first(), Some(&(1_700_000_001, 4 * 3_333)));
        assert_eq!(later.last(), Some(&(1_700_000_000 + SECONDS as u64, 1)));
    }
}
