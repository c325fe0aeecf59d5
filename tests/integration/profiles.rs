//! Device profiles against the vendors' own code: what fleetstorm computes
//! for a profile's credentials equals what the vendor's SDK computes for
//! the same inputs.

use fleetstorm::wire::azure::sas_token;

use super::util::interop;

#[test]
fn azure_sas_tokens_equal_the_azure_iot_device_sdk_s() {
    use base64::Engine as _;
    // Keys of several lengths, device ids with characters that need
    // encoding, with and without a policy name, expiries near and far.
    let mut cases = Vec::new();
    for i in 0..24u64 {
        let raw: Vec<u8> = (0..(16 + i * 3)).map(|b| (b * 37 + i * 11) as u8).collect();
        let key = base64::engine::general_purpose::STANDARD.encode(raw);
        let device = ["cam-00042", "meter 7", "a+b/c", "ünï-çødé", "x_y.z~1"][i as usize % 5];
        let uri = format!("hub-{i}.azure-devices.net/devices/{device}");
        let key_name = (i % 3 == 0).then(|| "device".to_string());
        cases.push(
            serde_json::json!({"uri": uri, "key": key, "expiry": 1_700_000_000 + i * 86_399, "key_name": key_name}),
        );
    }
    let arg = serde_json::to_string(&cases).unwrap();
    let Some(theirs) = interop("azure_sas.py", &[&arg], &["azure.iot.device"]) else { return };
    let theirs: Vec<String> = serde_json::from_value(theirs).unwrap();
    assert_eq!(theirs.len(), cases.len());
    for (case, sdk) in cases.iter().zip(&theirs) {
        let ours = sas_token(
            case["uri"].as_str().unwrap(),
            case["key"].as_str().unwrap(),
            case["expiry"].as_u64().unwrap(),
            case["key_name"].as_str(),
        )
        .unwrap();
        assert_eq!(&ours, sdk, "{case}");
    }
}

/// One profile's devices: serve's identities, and the fleet's, in which
/// the first `WRONG` devices carry a credential serve does not know.
struct Devices {
    profile: &'static str,
    header: &'static str,
    row: fn(usize, bool) -> String,
}

const DEVICES: usize = 12;
const WRONG: usize = 3;

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn profiles() -> [Devices; 3] {
    [
        Devices {
            profile: "thingsboard",
            header: "name,token",
            row: |i, right| format!("meter-{i},tok{i}-{}", if right { "A1b2" } else { "wrong" }),
        },
        Devices {
            profile: "hono",
            header: "name,tenant,auth_id,password",
            row: |i, right| {
                format!("sensor-{i},plant-1,auth-{i},{}", if right { format!("pw{i}") } else { "x".into() })
            },
        },
        Devices {
            profile: "azure-iot-hub",
            header: "name,key",
            row: |i, right| format!("cam-{i},{}", b64(&format!("{}-{i}", if right { "device key" } else { "nope" }))),
        },
    ]
}

#[test]
fn every_profile_s_devices_send_and_serve_accepts_what_the_report_counts_ok_and_refuses_wrong_credentials() {
    // Each device beats every 500 ms for 3 s against `serve --profile P
    // --identities FILE`; the fleet's file gives WRONG of its devices a
    // credential serve does not know.
    let dir = super::util::TempDir::new("profiles-e2e");
    for d in profiles() {
        let rows = |wrong: usize| -> String {
            let lines: Vec<String> = (0..DEVICES).map(|i| (d.row)(i, i >= wrong)).collect();
            format!("{}\n{}\n", d.header, lines.join("\n"))
        };
        let served = dir.write(&format!("{}-serve.csv", d.profile), &rows(0));
        dir.write(&format!("{}-fleet.csv", d.profile), &rows(WRONG));
        let (mut serve, url) = super::util::spawn_serve(&["--profile", d.profile, "--identities", &served]);
        let scenario = dir.write(
            &format!("{}.toml", d.profile),
            &format!(
                "name = \"{p}\"\nseed = 3\nduration = \"3s\"\n[target]\nurl = \"{url}\"\n\
                 [[fleets]]\nname = \"plant\"\nprofile = \"{p}\"\nidentities = \"{p}-fleet.csv\"\ninterval = \"500ms\"\n",
                p = d.profile
            ),
        );
        let out = dir.path(&format!("{}.json", d.profile));
        let run = super::util::fleetstorm(&["run", &scenario, "--quiet", "--out", out.to_str().unwrap()]);
        let stats: serde_json::Value = super::util::get_json_blocking(&format!("{url}/stats"));
        let _ = serve.kill();
        let _ = serve.wait();
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{}: no report ({e}): {}", d.profile, String::from_utf8_lossy(&run.stderr)));
        let t = &report["totals"];
        let (ok, sent) = (t["ok"].as_u64().unwrap(), t["sent"].as_u64().unwrap());
        let fleet = &report["scenario"]["fleets"][0];
        assert_eq!(fleet["devices"], DEVICES as u64, "{}: the file sets the count", d.profile);
        assert_eq!(fleet["profile"], d.profile);
        // What serve accepted is what the run counted ok; the wrong
        // credentials are refused by serve and counted by class and status.
        assert_eq!(stats["accepted"].as_u64(), Some(ok), "{}: {stats}\n{t}", d.profile);
        let refused = stats["unauthorized"].as_u64().unwrap();
        assert_eq!(t["errors"]["http_4xx"].as_u64(), Some(refused), "{}: {t}", d.profile);
        assert_eq!(t["status_codes"]["401"].as_u64(), Some(refused), "{}: {t}", d.profile);
        assert_eq!(ok + refused, sent, "{}: {t}", d.profile);
        // 3 s at 2/s per device: a quarter of the devices are refused, give
        // or take the heartbeats in flight at the end.
        assert!(ok >= 50 && refused >= 12, "{}: ok {ok}, refused {refused}", d.profile);
        let share = refused as f64 / sent as f64;
        assert!((0.15..=0.35).contains(&share), "{}: {share}", d.profile);
        // serve knows the devices by their names in the file, in the fleet
        // their bodies name.
        assert_eq!(stats["devices"].as_u64(), Some((DEVICES - WRONG) as u64), "{}: {stats}", d.profile);
        assert!(stats["fleets"]["plant"]["accepted"].as_u64() == Some(ok), "{}: {stats}", d.profile);
        // The credentials appear in no output.
        let text = std::fs::read_to_string(&out).unwrap();
        for secret in ["A1b2", "pw4", &b64("device key-4")] {
            assert!(!text.contains(secret), "{}: a credential in the report", d.profile);
        }
    }
}

#[test]
fn each_profile_s_example_scenario_runs_clean_against_the_builtin_backend() {
    // The examples in scenarios/, shortened: the built-in backend answers
    // each fleet's profile and checks each device's credential, so every
    // heartbeat sent is answered with its profile's success status.
    let dir = super::util::TempDir::new("profiles-examples");
    // Per scenario: each fleet's name, profile and success status.
    type Fleets = &'static [(&'static str, &'static str, u16)];
    let cases: [(&str, Fleets); 4] = [
        ("thingsboard", &[("water-meters", "thingsboard", 200)]),
        ("hono", &[("env-sensors", "hono", 202)]),
        ("azure-iot-hub", &[("line-cameras", "azure-iot-hub", 204)]),
        (
            "mixed-profiles",
            &[
                ("edge-gateways", "sagemaker-edge", 200),
                ("meters", "thingsboard", 200),
                ("sensors", "hono", 202),
                ("cameras", "azure-iot-hub", 204),
            ],
        ),
    ];
    for (name, fleets) in cases {
        let out = dir.path(&format!("{name}.json"));
        let file = format!("scenarios/{name}.toml");
        let run =
            super::util::fleetstorm(&["run", &file, "--duration", "3s", "--quiet", "--out", out.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert_eq!(run.status.code(), Some(0), "{name}: {stdout}{}", String::from_utf8_lossy(&run.stderr));
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let t = &report["totals"];
        assert!(t["sent"].as_u64() > Some(100) && t["ok"] == t["sent"] && t["failed"] == 0, "{name}: {t}");
        for (i, (fleet, profile, status)) in fleets.iter().enumerate() {
            let summary = &report["scenario"]["fleets"][i];
            assert_eq!((summary["name"].as_str(), summary["profile"].as_str()), (Some(*fleet), Some(*profile)));
            let f = &report["fleets"][i];
            assert_eq!(f["status_codes"][status.to_string()], f["sent"], "{name}/{fleet}: {f}");
        }
    }
    // sample prints what a profile's devices send: ThingsBoard's shape.
    let sample = super::util::fleetstorm(&["sample", "scenarios/thingsboard.toml", "--count", "3"]);
    let lines: Vec<serde_json::Value> = sample
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["values"]["device_name"], format!("meter-{i:04}"));
        assert!(line["ts"].is_u64() && line["values"]["flow-lpm"].is_f64(), "{line}");
    }
}
