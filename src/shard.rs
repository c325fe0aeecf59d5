//! Shards: one scenario run as N identical processes, each sending for a
//! fixed subset of the devices, whose reports `fleetstorm merge` adds up.
//!
//! A device's global index counts across fleets in file order (fleet 0's
//! devices first). Shard I of N owns the devices whose global index is
//! I modulo N; every device keeps the clock, schedule and bodies it has in
//! a single-process run with the same seed, so the shards' schedules
//! together are exactly the single run's. (`Scenario::hash`, of the
//! scenario as run, lets `merge` refuse reports of different scenarios.)

use std::fmt;

use serde::{Deserialize, Serialize};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// The most shards one scenario may be split into.
pub const MAX_SHARDS: u32 = 100_000;

/// A shard that is not one of a run's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("{0:?} is not a shard; write INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4")]
    Unreadable(String),
    #[error("{text:?}: {source}")]
    Written {
        text: String,
        #[source]
        source: Box<ShardError>,
    },
    #[error("the shard count must be from 1 to {MAX_SHARDS}")]
    Count,
    #[error("shard index {index} is not below the shard count {count}")]
    Index { index: u32, count: u32 },
    #[error("FLEETSTORM_SHARDS={0:?} is not a shard count")]
    EnvironmentCount(String),
    #[error(
        "a shard count is given but JOB_COMPLETION_INDEX is not set: pass --shard INDEX/COUNT, or run as an \
         Indexed Job"
    )]
    NoJobIndex,
    #[error("JOB_COMPLETION_INDEX={0:?} is not a shard index")]
    JobIndex(String),
}

impl Shard {
    /// Reads `I/N`, e.g. `3/8`.
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let bad = || ShardError::Unreadable(text.to_string());
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count).map_err(|e| ShardError::Written { text: text.to_string(), source: Box::new(e) })
    }

    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 || count > MAX_SHARDS {
            return Err(ShardError::Count);
        }
        if index >= count {
            return Err(ShardError::Index { index, count });
        }
        Ok(Shard { index, count })
    }

    /// The shard of an indexed job: its index from `JOB_COMPLETION_INDEX`
    /// (Kubernetes sets it in each pod of an Indexed Job), the count from
    /// `shards` (`--shards`) or else `FLEETSTORM_SHARDS`. `None` when
    /// neither count is given.
    pub fn from_environment(
        shards: Option<u32>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Shard>, ShardError> {
        let count = match shards {
            Some(n) => n,
            None => match env("FLEETSTORM_SHARDS") {
                Some(v) => v.trim().parse().map_err(|_| ShardError::EnvironmentCount(v))?,
                None => return Ok(None),
            },
        };
        let index = env("JOB_COMPLETION_INDEX").ok_or(ShardError::NoJobIndex)?;
        let index: u32 = index.trim().parse().map_err(|_| ShardError::JobIndex(index))?;
        Shard::new(index, count).map(Some)
    }

    /// Whether this shard sends for the device with this global index.
    pub fn owns(&self, global_index: u64) -> bool {
        global_index % u64::from(self.count) == u64::from(self.index)
    }

    /// How many of the `devices` global indices from `offset` on this
    /// shard owns.
    pub fn owned_in(&self, offset: u64, devices: u64) -> u64 {
        let (i, n) = (u64::from(self.index), u64::from(self.count));
        // Indices below `x` that are ≡ i (mod n).
        let below = |x: u64| if x > i { (x - i).div_ceil(n) } else { 0 };
        below(offset + devices) - below(offset)
    }
}

/// The devices of one fleet that a process sends for: every device without
/// a shard, else the shard's, as local indices in ascending order (an
/// arithmetic progression: the first owned index, then every `step`-th).
/// The engine, the schedule preview, the plan and the resources check all
/// take a fleet's devices from here, so they cannot disagree on which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedDevices {
    /// The first local index owned (meaningless when `count` is 0).
    pub first: u64,
    pub step: u64,
    pub count: u64,
}

impl OwnedDevices {
    /// `shard`'s devices (all, without one) of a fleet of `devices` whose
    /// device 0 has global index `first_global`.
    pub fn of(shard: Option<Shard>, first_global: u64, devices: u64) -> OwnedDevices {
        match shard {
            None => OwnedDevices { first: 0, step: 1, count: devices },
            Some(sh) => {
                let n = u64::from(sh.count);
                let first = (u64::from(sh.index) + n - first_global % n) % n;
                OwnedDevices { first, step: n, count: sh.owned_in(first_global, devices) }
            }
        }
    }

    /// The local index of the `q`-th owned device.
    pub fn nth(&self, q: u64) -> u64 {
        self.first + q * self.step
    }

    /// The owned local indices, in ascending order.
    pub fn indices(self) -> impl Iterator<Item = u64> {
        (0..self.count).map(move |q| self.nth(q))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_owns_every_count_th_device_across_fleets() {
        for count in [1u32, 3, 7] {
            let mut total = 0;
            for index in 0..count {
                let shard = Shard { index, count };
                let (a, b) = (shard.owned_in(0, 10), shard.owned_in(10, 25));
                let by_hand = |from: u64, to: u64| (from..to).filter(|g| shard.owns(*g)).count() as u64;
                assert_eq!((a, b), (by_hand(0, 10), by_hand(10, 35)));
                total += a + b;
            }
            assert_eq!(total, 35);
        }
    }

    #[test]
    fn owned_devices_are_the_ones_a_shard_owns() {
        for count in [1u32, 2, 3, 7] {
            for index in 0..count {
                let shard = Shard { index, count };
                for (first_global, devices) in [(0, 0), (0, 10), (10, 25), (3, 1), (6, 2)] {
                    let owned: Vec<u64> = OwnedDevices::of(Some(shard), first_global, devices).indices().collect();
                    let by_hand: Vec<u64> = (0..devices).filter(|i| shard.owns(first_global + i)).collect();
                    assert_eq!(owned, by_hand, "{shard} of {devices} from {first_global}");
                }
            }
        }
        let all = OwnedDevices::of(None, 5, 4);
        assert_eq!(all.indices().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn shards_read_and_refuse_as_written() {
        assert_eq!(Shard::parse("3/8"), Ok(Shard { index: 3, count: 8 }));
        assert_eq!(Shard::parse(" 0 / 1 "), Ok(Shard { index: 0, count: 1 }));
        for bad in ["8/8", "1/0", "x/2", "2", "-1/3", "1/100001"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let e = Shard::parse("8/8").unwrap_err();
        assert_eq!(e.to_string(), "\"8/8\": shard index 8 is not below the shard count 8");
        assert!(matches!(e, ShardError::Written { source, .. } if *source == ShardError::Index { index: 8, count: 8 }));
    }

    #[test]
    fn an_indexed_job_gives_its_shard_through_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(Shard::from_environment(None, env(&[])), Ok(None));
        let job = env(&[("JOB_COMPLETION_INDEX", "2"), ("FLEETSTORM_SHARDS", "4")]);
        assert_eq!(Shard::from_environment(None, job), Ok(Some(Shard { index: 2, count: 4 })));
        assert_eq!(Shard::from_environment(Some(3), job), Ok(Some(Shard { index: 2, count: 3 })));
        let no_index = Shard::from_environment(Some(3), env(&[])).unwrap_err();
        assert_eq!(no_index, ShardError::NoJobIndex);
        assert!(no_index.to_string().contains("JOB_COMPLETION_INDEX"), "{no_index}");
        assert!(Shard::from_environment(Some(2), env(&[("JOB_COMPLETION_INDEX", "2")])).is_err());
    }

    #[test]
    fn every_device_has_exactly_one_shard() {
        for count in [1, 3, 7, 64] {
            for g in 0..1_000u64 {
                let owners = (0..count).filter(|&i| Shard { index: i, count }.owns(g)).count();
                assert_eq!(owners, 1, "device {g} of {count} shards");
            }
        }
    }
}
