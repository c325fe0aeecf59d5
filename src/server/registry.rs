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
//!
//! Anyone who reaches serve may send heartbeats, so the registry is capped
//! (`--max-devices`, by default sized to the machine: [`default_max_devices`]):
//! past the cap a new device is refused ([`RegistryFull`]) before anything of it is
//! kept, not even its fleet's name, and known devices go on as before. The
//! interned tables are capped too ([`MAX_FLEETS`], [`MAX_INTERNED`]): a
//! fleet costs a map slot in every shard it reaches, so a fleet per device
//! would cost far more than the devices; a device of a new fleet past the
//! cap is refused, and agent versions or model sets past theirs are
//! recorded as not kept.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use serde::Serialize;

use crate::sagemaker_edge;
use crate::sagemaker_edge::validate::Summary;

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
    /// New devices beyond this many are refused.
    max_devices: u64,
    /// Heartbeats of new devices refused for a full registry.
    refused: AtomicU64,
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
            refused: AtomicU64::new(0),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Records an accepted heartbeat received at `now_ms` (epoch ms).
    /// `body` is only parsed when its model set has not been seen before.
    pub fn record(&self, hb: &Summary<'_>, body: &[u8], now_ms: u64) -> Result<(), RegistryFull> {
        if self.refuses(&hb.device_fleet_name, &hb.device_name) {
            return Err(self.refuse());
        }
        let models = if hb.models == 0 { 0 } else { self.model_set_id(hb.models_hash, body) };
        self.record_parts(&hb.device_fleet_name, &hb.device_name, &hb.agent_version, models, now_ms).map(|_| ())
    }

    /// Records an accepted request of another device profile's: its
    /// device, and the fleet and agent version its body named (`-` when
    /// it named none). Returns how many the device has sent.
    pub fn record_device(
        &self,
        fleet: &str,
        device: &str,
        agent_version: &str,
        now_ms: u64,
    ) -> Result<u64, RegistryFull> {
        if self.refuses(fleet, device) {
            return Err(self.refuse());
        }
        self.record_parts(fleet, device, agent_version, 0, now_ms)
    }

    /// The cap of devices tracked.
    pub fn max_devices(&self) -> u64 {
        self.max_devices
    }

    /// Whether a heartbeat of `device` would be refused: the registry is
    /// full and the device is new. Checked before anything of the request
    /// is interned; [`Registry::record_parts`] checks again as it inserts.
    fn refuses(&self, fleet: &str, device: &str) -> bool {
        if self.devices.load(Ordering::Relaxed) < self.max_devices {
            return false;
        }
        let Some(&fleet_id) = self.read_fleets().0.get(fleet) else { return true };
        let shard = lock(&self.shards[self.shard_of(device)]);
        !shard.fleets.get(fleet_id as usize).is_some_and(|devices| devices.contains_key(device))
    }

    fn refuse(&self) -> RegistryFull {
        self.refused.fetch_add(1, Ordering::Relaxed);
        RegistryFull::Devices(self.max_devices)
    }

    fn record_parts(
        &self,
        fleet: &str,
        device: &str,
        agent_version: &str,
        models: u32,
        now_ms: u64,
    ) -> Result<u64, RegistryFull> {
        let Some(fleet_id) = self.fleet_id(fleet) else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(RegistryFull::Fleets(MAX_FLEETS));
        };
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
        } else if self
            .devices
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.max_devices).then_some(n + 1))
            .is_ok()
        {
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
            fleet.devices.fetch_add(1, Ordering::Relaxed);
            1
        } else {
            // Filled up since `refuses` looked.
            drop(shard);
            return Err(self.refuse());
        };
        drop(shard);
        fleet.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(sent)
    }

    /// The number of devices tracked.
    pub fn devices(&self) -> u64 {
        self.devices.load(Ordering::Relaxed)
    }

    /// Heartbeats of new devices refused because the registry was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// One device's record.
    pub fn device(&self, fleet: &str, device: &str) -> Option<DeviceView> {
        let fleet_id = *self.read_fleets().0.get(fleet)?;
        let shard = lock(&self.shards[self.shard_of(device)]);
        let r = *shard.fleets.get(fleet_id as usize)?.get(device)?;
        drop(shard);
        let agent_version = match read(&self.agent_versions).names.get(r.agent_version as usize) {
            Some(name) => name.clone(),
            None => format!("(not kept: serve keeps {MAX_INTERNED} agent versions)"),
        };
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
        self.refused.store(0, Ordering::Relaxed);
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

    /// The fleet's id, made for a new one; `None` past [`MAX_FLEETS`].
    fn fleet_id(&self, name: &str) -> Option<u32> {
        if let Some(&id) = self.read_fleets().0.get(name) {
            return Some(id);
        }
        let mut fleets = self.fleets.write().unwrap_or_else(|p| p.into_inner());
        if let Some(&id) = fleets.0.get(name) {
            return Some(id);
        }
        if fleets.1.len() >= MAX_FLEETS {
            return None;
        }
        let id = fleets.1.len() as u32;
        fleets.0.insert(name.to_string(), id);
        fleets.1.push(std::sync::Arc::new(Fleet {
            name: name.to_string(),
            accepted: AtomicU64::new(0),
            devices: AtomicU64::new(0),
        }));
        Some(id)
    }

    fn agent_version_id(&self, version: &str) -> u32 {
        if let Some(&id) = read(&self.agent_versions).ids.get(version) {
            return id;
        }
        let mut interner = self.agent_versions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(&id) = interner.ids.get(version) {
            return id;
        }
        if interner.names.len() >= MAX_INTERNED {
            return NOT_KEPT;
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
        if read(&self.model_sets).sets.len() >= MAX_INTERNED {
            return NOT_KEPT;
        }
        // First time this set is seen: read the names out of the body.
        let models = serde_json::from_slice::<sagemaker_edge::SendHeartbeat>(body)
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
        if sets.sets.len() >= MAX_INTERNED {
            return NOT_KEPT;
        }
        let id = sets.sets.len() as u32;
        sets.ids.insert(hash, id);
        sets.sets.push(models);
        id
    }
}

/// A heartbeat of a new device refused: the registry holds its most
/// devices (`--max-devices`), or its most fleets and the device's is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryFull {
    Devices(u64),
    Fleets(usize),
}

/// The most fleets the registry keeps.
pub const MAX_FLEETS: usize = 10_000;
/// The most distinct agent versions, and model sets, it keeps; later ones
/// are recorded as [`NOT_KEPT`].
pub const MAX_INTERNED: usize = 10_000;
/// The id of an agent version or model set past [`MAX_INTERNED`].
const NOT_KEPT: u32 = u32::MAX;

/// What one device's record costs, in bytes, for sizing the default cap:
/// `benches/registry_memory` measures 145 with 11-character names; names
/// may have 63 (and a profile's device more), so this leaves room.
pub const BYTES_PER_DEVICE: u64 = 256;

/// The fewest devices the default cap allows, on however small a machine.
pub const MIN_DEFAULT_DEVICES: u64 = 100_000;

/// The default cap for a machine with `available` bytes of memory free (its
/// `MemAvailable`): as many devices as a quarter of it holds, at least
/// [`MIN_DEFAULT_DEVICES`]; one million when the memory is unknown.
pub fn max_devices_for(available: Option<u64>) -> u64 {
    match available {
        Some(bytes) => (bytes / 4 / BYTES_PER_DEVICE).max(MIN_DEFAULT_DEVICES),
        None => 1_000_000,
    }
}

/// The default cap on this machine: from `MemAvailable` (`/proc/meminfo`),
/// or what the process's cgroup (v2) still allows if that is less, as in
/// a container with a memory limit.
pub fn default_max_devices() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024);
    let cgroup = |file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{file}")).ok().and_then(|t| t.trim().parse::<u64>().ok())
    };
    // `memory.max` is "max" (no limit) outside a limited cgroup.
    let allowed = cgroup("memory.max").map(|max| max.saturating_sub(cgroup("memory.current").unwrap_or(0)));
    let available = match (available, allowed) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    max_devices_for(available)
}

/// The model-set hash of a body without models.
const EMPTY_MODELS: u64 = 0;

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sagemaker_edge::validate::inspect;

    fn body(fleet: &str, device: &str, version: &str, models: &[(&str, &str)]) -> Vec<u8> {
        let models: Vec<_> =
            models.iter().map(|(n, v)| serde_json::json!({"ModelName": n, "ModelVersion": v})).collect();
        serde_json::to_vec(&serde_json::json!({
            "AgentVersion": version, "DeviceFleetName": fleet, "DeviceName": device, "Models": models
        }))
        .unwrap()
    }

    fn record(r: &Registry, b: &[u8], now: u64) -> Result<(), RegistryFull> {
        r.record(&inspect(b).unwrap(), b, now)
    }

    #[test]
    fn records_count_gaps_versions_and_models() {
        let r = Registry::new(100);
        record(&r, &body("f1", "d1", "1.0", &[("resnet", "1")]), 1_000).unwrap();
        record(&r, &body("f1", "d1", "1.1", &[("resnet", "2"), ("yolov8", "1")]), 31_000).unwrap();
        record(&r, &body("f1", "d1", "1.1", &[("resnet", "2"), ("yolov8", "1")]), 41_000).unwrap();
        record(&r, &body("f2", "d1", "1.0", &[]), 5_000).unwrap();
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
    fn a_full_registry_refuses_new_devices_and_keeps_the_known_ones() {
        let r = Registry::new(2);
        let refused = (0..5).filter(|i| record(&r, &body("f", &format!("d{i}"), "1", &[]), 1).is_err()).count();
        assert_eq!((r.devices(), r.refused(), refused), (2, 3, 3));
        assert_eq!(record(&r, &body("f", "d1", "1", &[]), 2), Ok(()), "a known device goes on");
        assert_eq!(r.device("f", "d1").unwrap().heartbeats, 2);
        // A new fleet's device is refused before its fleet is kept.
        assert_eq!(record(&r, &body("other", "d9", "1", &[]), 3), Err(RegistryFull::Devices(2)));
        assert_eq!(r.record_device("other2", "d9", "-", 3), Err(RegistryFull::Devices(2)));
        assert!(r.fleets().iter().all(|(name, _)| name == "f"), "{:?}", r.fleets());
        assert_eq!(r.fleets()[0].1.accepted, 3, "refused heartbeats are not accepted ones");
        r.reset();
        assert_eq!((r.refused(), record(&r, &body("f", "d7", "1", &[]), 4)), (0, Ok(())));
    }

    #[test]
    fn fleets_agent_versions_and_model_sets_are_capped_too() {
        let r = Registry::new(u64::MAX);
        for i in 0..MAX_FLEETS {
            r.record_device(&format!("f{i}"), "d", &format!("v{i}"), 1).unwrap();
        }
        assert_eq!(r.record_device("one-more", "d", "-", 1), Err(RegistryFull::Fleets(MAX_FLEETS)));
        assert_eq!(r.refused(), 1);
        // A known fleet's new device goes on; past the versions kept, its
        // version is said not kept.
        assert_eq!(r.record_device("f0", "d2", "v-new", 2), Ok(1));
        assert!(r.device("f0", "d2").unwrap().agent_version.starts_with("(not kept"));
        assert_eq!(r.device("f1", "d").unwrap().agent_version, "v1");
        let mut sets = ModelSets::default();
        sets.sets.resize(MAX_INTERNED, Vec::new());
        *r.model_sets.write().unwrap() = sets;
        record(&r, &body("f0", "d3", "v1", &[("resnet", "1")]), 3).unwrap();
        assert_eq!(r.device("f0", "d3").unwrap().models, vec![]);
    }

    #[test]
    fn the_default_cap_is_a_quarter_of_the_available_memory() {
        assert_eq!(max_devices_for(Some(16 << 30)), (4 << 30) / BYTES_PER_DEVICE);
        assert_eq!(max_devices_for(Some(64 << 20)), MIN_DEFAULT_DEVICES, "a floor on a small machine");
        assert_eq!(max_devices_for(None), 1_000_000);
        assert!(default_max_devices() >= MIN_DEFAULT_DEVICES);
    }
}
