//! `fleetstorm sample` end to end, through the built binary.

use std::collections::{HashMap, HashSet};

use fleetstorm::sagemaker_edge::{self, validate};

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
        let hb: sagemaker_edge::SendHeartbeat = serde_json::from_slice(line).unwrap();
        let key = (hb.device_fleet_name.clone(), hb.device_name.clone());
        if (i as u64) < total_devices {
            assert!(first_round.insert(key.clone()), "line {i}: name {key:?} is not unique in its fleet");
        } else {
            // The second round is the same devices, in the same order.
            let first: sagemaker_edge::SendHeartbeat =
                serde_json::from_slice(lines[i - total_devices as usize]).unwrap();
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
    // In-process: the refusals are the command's errors.
    let (code, err) = super::util::execute(&["sample", "scenarios/quickstart.toml", "--fleet", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no fleet named \"nope\""), "{err}");
    let (code, err) = super::util::execute(&["sample", "scenarios/does-not-exist.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read the scenario"), "{err}");
}

#[test]
fn a_model_rollout_shows_in_the_sample_as_one_valid_deployment_result_per_device() {
    // rollout.toml: 4,000 cameras every 20 s; the detector's 3.2 reaches
    // 25% of them between 1m30s and 2m. Seven rounds reach 2m.
    let scenario = fleetstorm::scenario::load(&super::util::root().join("scenarios/rollout.toml")).unwrap();
    let devices = scenario.fleets[0].devices as usize;
    let rounds = 7;
    let count = (devices * rounds).to_string();
    let out = fleetstorm(&["sample", "scenarios/rollout.toml", "--count", &count]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), devices * rounds);

    let version = |hb: &sagemaker_edge::SendHeartbeat| hb.models.as_ref().unwrap()[0].model_version.clone().unwrap();
    let mut reported: HashMap<String, usize> = HashMap::new();
    let mut last_version: HashMap<String, String> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        validate(line).unwrap_or_else(|v| panic!("line {i}: {v}\n{}", String::from_utf8_lossy(line)));
        let hb: sagemaker_edge::SendHeartbeat = serde_json::from_slice(line).unwrap();
        let now = version(&hb);
        let before = last_version.insert(hb.device_name.clone(), now.clone());
        let Some(r) = &hb.deployment_result else {
            assert!(before.is_none() || before.as_ref() == Some(&now), "line {i}: a change went unreported");
            continue;
        };
        // The heartbeat that first carries the new version reports it.
        assert_eq!((before.as_deref(), now.as_str()), (Some("3.1"), "3.2"), "line {i}");
        *reported.entry(hb.device_name.clone()).or_default() += 1;
        assert_eq!(r.deployment_name.as_deref(), Some("detector-3-2"));
        assert_eq!(r.deployment_status.as_deref(), Some("SUCCESS"));
        let m = &r.deployment_models.as_ref().unwrap()[0];
        assert_eq!((m.model_name.as_deref(), m.model_version.as_deref()), (Some("detector"), Some("3.2")));
        assert_eq!(m.status, Some(sagemaker_edge::DeploymentStatus::Success));
        let (start, end) = (r.deployment_start_time.unwrap().0, r.deployment_end_time.unwrap().0);
        let sent = hb.agent_metrics.as_ref().unwrap()[0].timestamp.unwrap().0;
        assert!(start <= end && end <= sent, "line {i}: deployed {start}..{end}, sent {sent}");
    }
    assert_eq!(reported.len(), devices / 4, "exactly the rollout's 25% report it, once each: {reported:?}");
    assert!(reported.values().all(|&n| n == 1));
    let on_new = last_version.values().filter(|v| *v == "3.2").count();
    assert_eq!(on_new, devices / 4, "and they are the devices that run 3.2 at the end");

    // The same seed gives the same devices the same deployments.
    let again = fleetstorm(&["sample", "scenarios/rollout.toml", "--count", &count]);
    let names = |stdout: &[u8]| -> Vec<String> {
        stdout
            .split(|&b| b == b'\n')
            .filter(|l| l.windows(16).any(|w| w == b"DeploymentResult"))
            .map(|l| serde_json::from_slice::<sagemaker_edge::SendHeartbeat>(l).unwrap().device_name)
            .collect()
    };
    assert_eq!(names(&out.stdout), names(&again.stdout));
}

/// An MQTT fleet's messages come out as they go: a `PUBLISH` line with
/// the topic, QoS, retain, client id and user name (the password never
/// shown), then the payload, a valid heartbeat of that device.
#[test]
fn sample_prints_an_mqtt_fleet_s_messages_as_publishes_without_passwords() {
    let dir = super::util::TempDir::new("sample-mqtt");
    let ids = dir.write("ids.csv", "name,username,password\nd-0,u-0,hunter-0\nd-1,u-1,hunter-1\n");
    let file = dir.write(
        "s.toml",
        &format!(
            "seed = 3\n[target]\nurl = \"builtin\"\n[[fleets]]\nname = \"f\"\ndevices = 2\ninterval = \"1s\"\n\
             identities = \"{ids}\"\nprofile = \"mqtt\"\n[fleets.mqtt]\ntopic = \"t/{{device}}/hb\"\nqos = 0\n\
             retain = true\n[[fleets]]\nname = \"g\"\ndevices = 1\ndevice_name = \"g-{{index}}\"\nprofile = \"mqtt\"\n"
        ),
    );
    let out = fleetstorm(&["sample", &file, "--count", "4"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("hunter"), "a password is never shown:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    let expected = [
        "PUBLISH t/d-0/hb qos=0 retain=true client_id=d-0 username=u-0 password=***",
        "PUBLISH t/d-1/hb qos=0 retain=true client_id=d-1 username=u-1 password=***",
        "PUBLISH devices/g-0/telemetry qos=1 retain=false client_id=g-0 username=(none) password=(none)",
        "PUBLISH t/d-0/hb qos=0 retain=true client_id=d-0 username=u-0 password=***",
    ];
    for (i, publish) in expected.iter().enumerate() {
        assert_eq!(lines[2 * i], *publish, "{text}");
        let payload = lines[2 * i + 1].as_bytes();
        validate(payload).unwrap_or_else(|v| panic!("message {i}: {v}"));
        let hb: sagemaker_edge::SendHeartbeat = serde_json::from_slice(payload).unwrap();
        assert_eq!(hb.device_name, publish.split("client_id=").nth(1).unwrap().split(' ').next().unwrap());
    }
}

/// An MQTT 5 message's properties are printed under its PUBLISH line, as
/// they go: its response topic (request/response) and the user property
/// an observed message carries its intended time in.
#[test]
fn sample_prints_an_mqtt_5_message_s_properties() {
    let dir = super::util::TempDir::new("sample-mqtt5");
    let file = dir.write(
        "s.toml",
        "seed = 3\n[target]\nurl = \"mqtt://127.0.0.1:1883\"\n[target.mqtt]\nversion = \"5\"\n[[fleets]]\nname = \"f\"\n\
         devices = 1\ninterval = \"1s\"\ndevice_name = \"d-{index}\"\nprofile = \"mqtt\"\n[fleets.mqtt]\n\
         response_topic = \"answers/{device}\"\nobserve = true\n",
    );
    let out = fleetstorm(&["sample", &file, "--count", "1"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "PUBLISH devices/d-0/telemetry qos=1 retain=false client_id=d-0 username=(none) password=(none)"
    );
    assert!(lines[1].starts_with("  user_property fleetstorm-intended="), "{text}");
    assert!(lines[2].starts_with("  response_topic=answers/d-0 correlation_data="), "{text}");
    validate(lines[3].as_bytes()).unwrap_or_else(|v| panic!("the payload: {v}"));
}
