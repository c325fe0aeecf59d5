//! `fleetstorm sample` end to end, through the built binary.

use std::collections::{HashMap, HashSet};

use fleetstorm::heartbeat::{validate, wire};

use super::util::fleetstorm;

#[test]
fn quickstart_sample_prints_5000_valid_lines() {
    let out = fleetstorm(&["sample", "scenarios/quickstart.toml", "--count", "5000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 5000);
    let scenario = fleetstorm::scenario::load(&super::util::root().join("scenarios/quickstart.toml")).unwrap();
    let total_devices: u64 = scenario.fleets.iter().map(|f| f.devices).sum();
    assert!(total_devices < 5000, "the sample wraps round to second heartbeats");

    let mut first_round: HashSet<(String, String)> = HashSet::new();
    let mut last_ts: HashMap<(String, String), f64> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        validate(line).unwrap_or_else(|v| panic!("line {i}: {v}"));
        let hb: wire::SendHeartbeat = serde_json::from_slice(line).unwrap();
        let key = (hb.device_fleet_name.clone(), hb.device_name.clone());
        if (i as u64) < total_devices {
            assert!(first_round.insert(key.clone()), "line {i}: name {key:?} is not unique in its fleet");
        } else {
            // The second round is the same devices, in the same order.
            let first: wire::SendHeartbeat = serde_json::from_slice(lines[i - total_devices as usize]).unwrap();
            assert_eq!(first.device_name, hb.device_name);
        }
        let ts = hb.agent_metrics.as_ref().unwrap()[0].timestamp.unwrap().0;
        let previous = last_ts.insert(key, ts).unwrap_or(0.0);
        assert!(ts >= previous, "line {i}: timestamp went back from {previous} to {ts}");
    }
    assert_eq!(first_round.len() as u64, total_devices);
}

#[test]
fn sample_is_deterministic_apart_from_timestamps() {
    let strip = |out: Vec<u8>| {
        let text = String::from_utf8(out).unwrap();
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for m in v["AgentMetrics"].as_array_mut().unwrap() {
                    m["Timestamp"] = 0.into();
                }
                v["Models"] = serde_json::Value::Null;
                v.to_string()
            })
            .collect::<Vec<_>>()
    };
    let a = fleetstorm(&["sample", "scenarios/quickstart.toml", "--count", "50", "--fleet", "cold-chain-sensors"]);
    let b = fleetstorm(&["sample", "scenarios/quickstart.toml", "--count", "50", "--fleet", "cold-chain-sensors"]);
    assert!(a.status.success());
    assert_eq!(strip(a.stdout.clone()), strip(b.stdout));
    assert!(
        String::from_utf8(a.stdout.clone())
            .unwrap()
            .lines()
            .all(|l| l.contains("\"DeviceFleetName\":\"cold-chain-sensors\""))
    );
    let c = fleetstorm(&[
        "sample",
        "scenarios/quickstart.toml",
        "--count",
        "50",
        "--fleet",
        "cold-chain-sensors",
        "--seed",
        "8",
    ]);
    assert_ne!(strip(a.stdout), strip(c.stdout));
}

#[test]
fn sample_errors_exit_2_with_a_message() {
    let out = fleetstorm(&["sample", "scenarios/quickstart.toml", "--fleet", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no fleet named \"nope\""));
    let out = fleetstorm(&["sample", "scenarios/does-not-exist.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the scenario"));
}
