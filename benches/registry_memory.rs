//! Memory of the reference backend's device registry: records 1,000,000
//! distinct devices (4 fleets, realistic names, 2 agent versions, a few
//! model sets) and prints the resident-set growth.
//!
//! Run: `cargo bench --bench registry_memory` (prints one line; not a
//! criterion benchmark, since what it measures is memory).

use std::time::Instant;

use fleetstorm::sagemaker_edge::validate::inspect;
use fleetstorm::server::Registry;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    const DEVICES: u64 = 1_000_000;
    let fleets = ["factory-east", "factory-west", "cold-chain-sensors", "retail-cameras"];
    let registry = Registry::new(10_000_000);
    let before = rss_kib();
    let started = Instant::now();
    let mut body = Vec::with_capacity(512);
    for i in 0..DEVICES {
        let fleet = fleets[(i % 4) as usize];
        let version = if i % 10 == 0 { "1.20240.1" } else { "1.20231.0" };
        let model_version = ["3.1", "3.2", "3.3"][(i % 3) as usize];
        body.clear();
        body.extend_from_slice(
            format!(
                r#"{{"AgentVersion":"{version}","DeviceFleetName":"{fleet}","DeviceName":"cam-{i:07}","Models":[{{"ModelName":"defect-detector","ModelVersion":"{model_version}","LatestInference":1764160000.1}}]}}"#
            )
            .as_bytes(),
        );
        let summary = inspect(&body).expect("valid body");
        registry.record(&summary, &body, 1_764_160_000_000 + i).expect("under the cap");
    }
    let elapsed = started.elapsed();
    let after = rss_kib();
    assert_eq!(registry.devices(), DEVICES);
    let grown = after.saturating_sub(before) as f64 * 1024.0;
    println!(
        "registry: {DEVICES} devices, RSS +{:.1} MiB ({:.0} bytes/device), recorded in {:.2?} ({:.0} records/s)",
        grown / 1048576.0,
        grown / DEVICES as f64,
        elapsed,
        DEVICES as f64 / elapsed.as_secs_f64()
    );
}
