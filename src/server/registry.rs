//! The reference backend's device registry: per (fleet, device), the
//! heartbeats accepted, first and last seen, the last agent version, the
//! current models and the largest gap between two heartbeats (the fleet's
//! "freshness", which a heartbeat backend exists to watch).
//!
//! Layout, for a million devices in well under 300 MB:
//! - devices are spread over [`SHARDS`] shards by a hash of their name, each
//!   a `std::sync::Mutex` held only for one map lookup (never across an
//!   await), so two heartbeats rarely contend;
//! - within a shard, one map per fleet keyed by the device name (a
//!   `Box<str>`), so a lookup borrows the name from the request;
//! - a record is 32 bytes: counters, times, and two small ids into interned
//!   tables (agent versions; model sets, keyed by the validator's hash of the
//!   models' names and versions, so the list is parsed out of a body only the
//!   first time that set is seen).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use serde::Serialize;

use crate::heartbeat::validate::Summary;
use crate::heartbeat::wire;

/// How many shards the registry splits devices into.
pub const SHARDS: usize = 64;

/// One device's record.
#[derive(Debug, Clone, Copy)]
struct Record {
    heartbeats: u32,
    agent_version: u32,
    first_seen_ms: u64,
    last_seen_ms: u64,
    max_gap_ms: u32,
    models: u32,
}

/// A device as `GET /devices/{fleet}/{device}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceView {
    pub fleet: String,
    pub device: String,
    pub heartbeats: u64,
    /// Epoch milliseconds of the first and last accepted heartbeat.
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// The largest gap between two consecutive heartbeats, in ms.
    pub max_gap_ms: u64,
    pub agent_version: String,
    pub models: Vec<ModelView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelView {
    pub name: String,
    pub version: String,
}

/// One fleet's totals, for `GET /stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetView {
    pub accepted: u64,
    pub devices: u64,
    /// The largest gap between two heartbeats of any device of the fleet.
    pub max_gap_ms: u64,
}

struct Fleet {
    name: String,
    accepted: AtomicU64,
    devices: AtomicU64,
}

/// Fleet ids by name, and the fleets by id.
type Fleets = (HashMap<String, u32>, Vec<std::sync::Arc<Fleet>>);

#[derive(Default)]
struct Shard {
    /// Indexed by fleet id.
    fleets: Vec<HashMap<Box<str>, Record>>,
}

#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

#[derive(Default)]
struct ModelSets {
    ids: HashMap<u64, u32>,
    sets: Vec<Vec<ModelView>>,
}

/// The registry of every device that sent an accepted heartbeat.
pub struct Registry {
    shards: Box<[Mutex<Shard>]>,
    fleets: RwLock<Fleets>,
    agent_versions: RwLock<Interner>,
    model_sets: RwLock<ModelSets>,
    devices: AtomicU64,
    /// Devices beyond this many are counted but not tracked.
    max_devices: u64,
    untracked: AtomicU64,
    hasher: std::hash::RandomState,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a shard cannot leave a record half-written
    // (records are plain values), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    pub fn new(max_devices: u64) -> Self {
        let mut model_sets = ModelSets::default();
        model_sets.sets.push(Vec::new());
        model_sets.ids.insert(EMPTY_MODELS, 0);
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            fleets: RwLock::new((HashMap::new(), Vec::new())),
            agent_versions: RwLock::new(Interner::default()),
            model_sets: RwLock::new(model_sets),
            devices: AtomicU64::new(0),
            max_devices,
            untracked: AtomicU64::new(0),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Records an accepted heartbeat received at `now_ms` (epoch ms).
    /// `body` is only parsed when its model set has not been seen before.
    pub fn record(&self, hb: &Summary<'_>, body: &[u8], now_ms: u64) {
        let models = if hb.models == 0 { 0 } else { self.model_set_id(hb.models_hash, body) };
        self.record_parts(&hb.device_fleet_name, &hb.device_name, &hb.agent_version, models, now_ms);
    }

    /// Records an accepted request of another device profile's: its
    /// device, and the fleet and agent version its body named (`-` when
    /// it named none). Returns how many the device has sent (0 when it
    /// is beyond the devices tracked).
    pub fn record_device(&self, fleet: &str, device: &str, agent_version: &str, now_ms: u64) -> u64 {
        self.record_parts(fleet, device, agent_version, 0, now_ms)
    }

    fn record_parts(&self, fleet: &str, device: &str, agent_version: &str, models: u32, now_ms: u64) -> u64 {
        let fleet_id = self.fleet_id(fleet);
        let agent_version = self.agent_version_id(agent_version);
        let shard = self.shard_of(device);
        let mut shard = lock(&self.shards[shard]);
        if shard.fleets.len() <= fleet_id as usize {
            shard.fleets.resize_with(fleet_id as usize + 1, HashMap::new);
        }
        let devices = &mut shard.fleets[fleet_id as usize];
        let fleet = self.fleet(fleet_id);
        let sent = if let Some(r) = devices.get_mut(device) {
            let gap = now_ms.saturating_sub(r.last_seen_ms);
            r.max_gap_ms = r.max_gap_ms.max(u32::try_from(gap).unwrap_or(u32::MAX));
            r.last_seen_ms = r.last_seen_ms.max(now_ms);
            r.heartbeats = r.heartbeats.saturating_add(1);
            r.agent_version = agent_version;
            r.models = models;
            u64::from(r.heartbeats)
        } else if self.devices.load(Ordering::Relaxed) < self.max_devices {
            devices.insert(
                device.into(),
                Record {
                    heartbeats: 1,
                    agent_version,
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                    max_gap_ms: 0,
                    models,
                },
            );
            self.devices.fetch_add(1, Ordering::Relaxed);
            fleet.devices.fetch_add(1, Ordering::Relaxed);
            1
        } else {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            0
        };
        drop(shard);
        fleet.accepted.fetch_add(1, Ordering::Relaxed);
        sent
    }

    /// The number of devices tracked.
    pub fn devices(&self) -> u64 {
        self.devices.load(Ordering::Relaxed)
    }

    /// Accepted heartbeats of devices that could not be tracked because
    /// the registry was full.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// One device's record.
    pub fn device(&self, fleet: &str, device: &str) -> Option<DeviceView> {
        let fleet_id = *self.read_fleets().0.get(fleet)?;
        let shard = lock(&self.shards[self.shard_of(device)]);
        let r = *shard.fleets.get(fleet_id as usize)?.get(device)?;
        drop(shard);
        let agent_version = read(&self.agent_versions).names.get(r.agent_version as usize).cloned().unwrap_or_default();
        let models = read(&self.model_sets).sets.get(r.models as usize).cloned().unwrap_or_default();
        Some(DeviceView {
            fleet: fleet.to_string(),
            device: device.to_string(),
            heartbeats: u64::from(r.heartbeats),
            first_seen_ms: r.first_seen_ms,
            last_seen_ms: r.last_seen_ms,
            max_gap_ms: u64::from(r.max_gap_ms),
            agent_version,
            models,
        })
    }

    /// Every fleet's totals, by name. Scans all records for the gaps.
    pub fn fleets(&self) -> Vec<(String, FleetView)> {
        let fleets: Vec<_> = self.read_fleets().1.clone();
        let mut max_gap = vec![0u64; fleets.len()];
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for (id, devices) in shard.fleets.iter().enumerate() {
                let gap = devices.values().map(|r| u64::from(r.max_gap_ms)).max().unwrap_or(0);
                max_gap[id] = max_gap[id].max(gap);
            }
        }
        fleets
            .iter()
            .zip(max_gap)
            .map(|(f, max_gap_ms)| {
                let view = FleetView {
                    accepted: f.accepted.load(Ordering::Relaxed),
                    devices: f.devices.load(Ordering::Relaxed),
                    max_gap_ms,
                };
                (f.name.clone(), view)
            })
            .collect()
    }

    /// Forgets every device and fleet.
    pub fn reset(&self) {
        for shard in self.shards.iter() {
            lock(shard).fleets.clear();
        }
        // Fleet ids stay valid (shards index by them), so fleets keep their
        // slots with zeroed counters.
        for f in self.read_fleets().1.iter() {
            f.accepted.store(0, Ordering::Relaxed);
            f.devices.store(0, Ordering::Relaxed);
        }
        self.devices.store(0, Ordering::Relaxed);
        self.untracked.store(0, Ordering::Relaxed);
    }

    fn shard_of(&self, device: &str) -> usize {
        (self.hasher.hash_one(device) as usize) % SHARDS
    }

    fn read_fleets(&self) -> std::sync::RwLockReadGuard<'_, Fleets> {
        read(&self.fleets)
    }

    fn fleet(&self, id: u32) -> std::sync::Arc<Fleet> {
        self.read_fleets().1[id as usize].clone()
    }

    fn fleet_id(&self, name: &str) -> u32 {
        if let Some(&id) = self.read_fleets().0.get(name) {
            return id;
        }
        let mut fleets = self.fleets.write().unwrap_or_else(|p| p.into_inner());
        if let Some(&id) = fleets.0.get(name) {
            return id;
        }
        let id = fleets.1.len() as u32;
        fleets.0.insert(name.to_string(), id);
        fleets.1.push(std::sync::Arc::new(Fleet {
            name: name.to_string(),
            accepted: AtomicU64::new(0),
            devices: AtomicU64::new(0),
        }));
        id
    }

    fn agent_version_id(&self, version: &str) -> u32 {
        if let Some(&id) = read(&self.agent_versions).ids.get(version) {
            return id;
        }
        let mut interner = self.agent_versions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(&id) = interner.ids.get(version) {
            return id;
        }
        let id = interner.names.len() as u32;
        interner.ids.insert(version.to_string(), id);
        interner.names.push(version.to_string());
        id
    }

    fn model_set_id(&self, hash: u64, body: &[u8]) -> u32 {
        if let Some(&id) = read(&self.model_sets).ids.get(&hash) {
            return id;
        }
        // First time this set is seen: read the names out of the body.
        let models = serde_json::from_slice::<wire::SendHeartbeat>(body)
            .ok()
            .and_then(|hb| hb.models)
            .unwrap_or_default()
            .into_iter()
            .map(|m| ModelView { name: m.model_name.unwrap_or_default(), version: m.model_version.unwrap_or_default() })
            .collect();
        let mut sets = self.model_sets.write().unwrap_or_else(|p| p.into_inner());
        if let Some(&id) = sets.ids.get(&hash) {
            return id;
        }
        let id = sets.sets.len() as u32;
        sets.ids.insert(hash, id);
        sets.sets.push(models);
        id
    }
}

/// The model-set hash of a body without models.
const EMPTY_MODELS: u64 = 0;

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::validate::inspect;

    fn body(fleet: &str, device: &str, version: &str, models: &[(&str, &str)]) -> Vec<u8> {
        let models: Vec<_> =
            models.iter().map(|(n, v)| serde_json::json!({"ModelName": n, "ModelVersion": v})).collect();
        serde_json::to_vec(&serde_json::json!({
            "AgentVersion": version, "DeviceFleetName": fleet, "DeviceName": device, "Models": models
        }))
        .unwrap()
    }

    fn record(r: &Registry, b: &[u8], now: u64) {
        r.record(&inspect(b).unwrap(), b, now);
    }

    #[test]
    fn records_count_gaps_versions_and_models() {
        let r = Registry::new(100);
        record(&r, &body("f1", "d1", "1.0", &[("resnet", "1")]), 1_000);
        record(&r, &body("f1", "d1", "1.1", &[("resnet", "2"), ("yolov8", "1")]), 31_000);
        record(&r, &body("f1", "d1", "1.1", &[("resnet", "2"), ("yolov8", "1")]), 41_000);
        record(&r, &body("f2", "d1", "1.0", &[]), 5_000);
        let d = r.device("f1", "d1").unwrap();
        assert_eq!((d.heartbeats, d.first_seen_ms, d.last_seen_ms, d.max_gap_ms), (3, 1_000, 41_000, 30_000));
        assert_eq!(d.agent_version, "1.1");
        assert_eq!(
            d.models,
            vec![
                ModelView { name: "resnet".into(), version: "2".into() },
                ModelView { name: "yolov8".into(), version: "1".into() }
            ]
        );
        assert_eq!(r.device("f2", "d1").unwrap().models, vec![]);
        assert_eq!(r.device("f3", "d1"), None);
        assert_eq!(r.devices(), 2);
        let fleets: HashMap<_, _> = r.fleets().into_iter().collect();
        assert_eq!(fleets["f1"], FleetView { accepted: 3, devices: 1, max_gap_ms: 30_000 });
        assert_eq!(fleets["f2"], FleetView { accepted: 1, devices: 1, max_gap_ms: 0 });
        r.reset();
        assert_eq!(r.devices(), 0);
        assert_eq!(r.device("f1", "d1"), None);
    }

    #[test]
    fn a_full_registry_counts_but_does_not_track() {
        let r = Registry::new(2);
        for i in 0..5 {
            record(&r, &body("f", &format!("d{i}"), "1", &[]), 1);
        }
        assert_eq!((r.devices(), r.untracked()), (2, 3));
    }
}
