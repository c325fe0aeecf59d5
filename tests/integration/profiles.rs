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

/// `report` without its encoded histograms (anywhere in it).
fn without_histograms(mut report: serde_json::Value) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("histograms");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut report);
    report
}

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
        assert_eq!(t["errors"]["auth"].as_u64(), Some(refused), "{}: {t}", d.profile);
        assert_eq!(t["codes"]["http"]["401"].as_u64(), Some(refused), "{}: {t}", d.profile);
        assert_eq!(ok + refused, sent, "{}: {t}", d.profile);
        // 3 s at 2/s per device: a quarter of the devices are refused, give
        // or take the heartbeats in flight at the end.
        assert!(ok >= 20 && refused >= 6, "{}: ok {ok}, refused {refused}", d.profile);
        let share = refused as f64 / sent as f64;
        assert!((0.15..=0.35).contains(&share), "{}: {share}", d.profile);
        // serve knows the devices by their names in the file, in the fleet
        // their bodies name.
        assert_eq!(stats["devices"].as_u64(), Some((DEVICES - WRONG) as u64), "{}: {stats}", d.profile);
        assert!(stats["fleets"]["plant"]["accepted"].as_u64() == Some(ok), "{}: {stats}", d.profile);
        // The credentials appear in no output. (Searched for outside the
        // encoded histograms: base64 holds any three characters, "pw4"
        // among them, by chance.)
        let text = without_histograms(report.clone()).to_string();
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
    let cases: [(&str, Fleets); 6] = [
        ("thingsboard", &[("water-meters", "thingsboard", 200)]),
        ("hono", &[("env-sensors", "hono", 202)]),
        ("azure-iot-hub", &[("line-cameras", "azure-iot-hub", 204)]),
        ("aws-iot-shadow", &[("pumps", "aws-iot-shadow", 200)]),
        ("custom", &[("trackers", "custom", 201)]),
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
        // The shadow example signs with the environment's AWS credentials.
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
            .args(["run", &file, "--duration", "3s", "--quiet", "--out", out.to_str().unwrap()])
            .current_dir(super::util::root())
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "example/secret")
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert_eq!(run.status.code(), Some(0), "{name}: {stdout}{}", String::from_utf8_lossy(&run.stderr));
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let t = &report["totals"];
        assert!(t["sent"].as_u64() > Some(50) && t["ok"] == t["sent"] && t["failed"] == 0, "{name}: {t}");
        for (i, (fleet, profile, status)) in fleets.iter().enumerate() {
            let summary = &report["scenario"]["fleets"][i];
            assert_eq!((summary["name"].as_str(), summary["profile"].as_str()), (Some(*fleet), Some(*profile)));
            let f = &report["fleets"][i];
            assert_eq!(f["codes"]["http"][status.to_string()], f["sent"], "{name}/{fleet}: {f}");
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

#[test]
fn boto3_s_iot_data_client_updates_a_shadow_on_serve_and_serve_checks_its_signature() {
    let (key, secret) = ("AKIDSHADOWTEST", "shadow/test+SECRET");
    let (mut serve, url) = super::util::spawn_serve_with(
        "127.0.0.1:0",
        &["--profile", "aws-iot-shadow", "--sigv4-verify"],
        &[("AWS_ACCESS_KEY_ID", key), ("AWS_SECRET_ACCESS_KEY", secret)],
    );
    let answers = interop("shadow_boto3.py", &[&url, key, secret], &["boto3"]);
    let stats = super::util::get_json_blocking(&format!("{url}/stats"));
    let _ = serve.kill();
    let _ = serve.wait();
    let Some(answers) = answers else { return };
    assert_eq!(answers["ok"]["status"], 200, "{answers}");
    assert_eq!(answers["ok"]["payload"]["state"]["reported"]["color"], "red", "{answers}");
    assert_eq!(answers["ok"]["payload"]["version"], 1);
    assert_eq!(answers["again"]["payload"]["version"], 2, "the version counts the thing's updates");
    assert_eq!(
        (answers["wrong_key"]["status"].as_u64(), answers["wrong_key"]["code"].as_str()),
        (Some(403), Some("ForbiddenException"))
    );
    assert_eq!(
        (answers["no_state"]["status"].as_u64(), answers["no_state"]["code"].as_str()),
        (Some(400), Some("InvalidRequestException"))
    );
    assert_eq!((stats["accepted"].as_u64(), stats["unauthorized"].as_u64()), (Some(2), Some(1)), "{stats}");
}

#[test]
fn shadow_requests_fleetstorm_signs_verify_with_botocore_and_on_serve() {
    use std::io::{BufRead, Read, Write};
    let (key, secret) = ("AKIDSHADOWTEST", "shadow/test+SECRET");
    let dir = super::util::TempDir::new("shadow-sigv4");
    let scenario = |url: &str| {
        format!(
            "seed = 4\nduration = \"2s\"\n[target]\nurl = \"{url}\"\nsigv4 = {{ region = \"eu-west-1\", service = \"iotdata\" }}\n\
             [[fleets]]\nname = \"pumps\"\nprofile = \"aws-iot-shadow\"\ndevices = 20\ndevice_name = \"pump-{{index}}\"\ninterval = \"500ms\"\n"
        )
    };
    let run_with = |text: &str, name: &str, secret: &str| -> serde_json::Value {
        let file = dir.write(&format!("{name}.toml"), text);
        let out = dir.path(&format!("{name}.json"));
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
            .args(["run", &file, "--quiet", "--out", out.to_str().unwrap()])
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .unwrap();
        serde_json::from_slice(&std::fs::read(&out).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&o.stderr)))
    };
    let run = |text: &str, name: &str| run_with(text, name, secret);
    // botocore's signer checks every request (tests/interop/sigv4_server.py).
    if super::util::interop_available(&["botocore"]) {
        let mut verifier = std::process::Command::new("python3")
            .arg(super::util::root().join("tests/interop/sigv4_server.py"))
            .args([key, secret, "eu-west-1", "iotdata"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(verifier.stdout.take().unwrap());
        let mut port = String::new();
        stdout.read_line(&mut port).unwrap();
        let report = run(&scenario(&format!("http://127.0.0.1:{}", port.trim())), "botocore");
        verifier.stdin.take().unwrap().write_all(b"").unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let _ = verifier.wait();
        let counts: serde_json::Value = serde_json::from_str(rest.trim()).unwrap();
        assert!(counts["valid"].as_u64() >= Some(20) && counts["invalid"] == 0, "{counts}");
        assert_eq!(report["totals"]["ok"], counts["valid"]);
    }
    // The built-in backend verifies them with the run's own credentials.
    let report = run(&scenario("builtin"), "builtin");
    let t = &report["totals"];
    assert!(t["ok"].as_u64() >= Some(20) && t["ok"] == t["sent"], "{t}");
    assert_eq!(t["codes"]["http"]["200"], t["sent"]);
    // serve --sigv4-verify accepts what the run counts ok, refuses a run
    // signed with another secret, and the run counts each refusal a 403.
    let (mut serve, url) = super::util::spawn_serve_with(
        "127.0.0.1:0",
        &["--profile", "aws-iot-shadow", "--sigv4-verify"],
        &[("AWS_ACCESS_KEY_ID", key), ("AWS_SECRET_ACCESS_KEY", secret)],
    );
    let right = run(&scenario(&url), "right-secret");
    let accepted = super::util::get_json_blocking(&format!("{url}/stats"))["accepted"].as_u64();
    let wrong = run_with(&scenario(&url), "wrong-secret", "not the secret");
    let stats = super::util::get_json_blocking(&format!("{url}/stats"));
    let _ = serve.kill();
    let _ = serve.wait();
    let t = &right["totals"];
    assert!(t["ok"].as_u64() >= Some(20) && t["ok"] == t["sent"] && accepted == t["ok"].as_u64(), "{t}");
    let t = &wrong["totals"];
    assert!(t["sent"].as_u64() >= Some(20) && t["codes"]["http"]["403"] == t["sent"], "{t}");
    assert_eq!(
        (t["errors"]["auth"].as_u64(), stats["unauthorized"].as_u64()),
        (t["sent"].as_u64(), t["sent"].as_u64())
    );
    assert_eq!(stats["accepted"].as_u64(), accepted, "nothing more accepted: {stats}");
    // A shadow fleet without a credential is refused before it runs.
    let file = dir.write(
        "none.toml",
        &scenario("builtin").replace("sigv4 = { region = \"eu-west-1\", service = \"iotdata\" }\n", ""),
    );
    let (code, err) = super::util::execute(&["validate", &file]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("fleets[0].profile") && err.contains("aws-iot-shadow requests need a credential"), "{err}");
    let file =
        dir.write("sagemaker.toml", &scenario("builtin").replace("service = \"iotdata\"", "service = \"sagemaker\""));
    let (_, err) = super::util::execute(&["validate", &file]);
    assert!(err.contains("signed with the signing name \"iotdata\", not \"sagemaker\""), "{err}");
}

#[test]
fn a_run_of_mixed_profiles_gates_shards_merges_and_searches_capacity_per_fleet() {
    // Four fleets, four wires, one serve: each fleet's report, gate and
    // shard share are its own, and the merged shards add up to what serve
    // accepted from each fleet.
    let _turn = super::util::heavy();
    let dir = super::util::TempDir::new("profiles-mixed");
    let (mut serve, url) =
        super::util::spawn_serve(&["--profile", "thingsboard", "--profile", "hono", "--profile", "azure-iot-hub"]);
    let fleets =
        [("edge", "sagemaker-edge"), ("meters", "thingsboard"), ("sensors", "hono"), ("cameras", "azure-iot-hub")];
    let mut text = format!(
        "name = \"mixed\"\nseed = 12\nduration = \"3s\"\n[target]\nurl = \"{url}\"\nconnections = {{ pool = 8 }}\n"
    );
    for (name, profile) in fleets {
        text.push_str(&format!(
            "[[fleets]]\nname = \"{name}\"\nprofile = \"{profile}\"\ndevices = 40\ndevice_name = \"{name}-{{index:03}}\"\ninterval = \"1s\"\n"
        ));
    }
    text.push_str("[thresholds]\n\"fleets.meters.error_rate\" = \"== 0%\"\n\"fleets.cameras.sent\" = \"< 10\"\n");
    let file = dir.write("mixed.toml", &text);
    // Two shard processes, one start instant; serve forgets a try in which
    // a shard was not ready.
    let paths: Vec<String> =
        (0..2).map(|i| dir.path(&format!("shard-{i}.json")).to_str().unwrap().to_string()).collect();
    let runs: Vec<Vec<String>> = paths
        .iter()
        .enumerate()
        .map(|(i, out)| {
            ["run", &file, "--quiet", "--out", out, "--shard", &format!("{i}/2")].map(String::from).to_vec()
        })
        .collect();
    let outs = super::util::run_started_together(&runs, || {
        super::util::post_json_blocking(&format!("{url}/stats/reset"), "{}");
    });
    for out in outs {
        // The cameras' gate fails on purpose: exit 3, with a report.
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let stats = super::util::get_json_blocking(&format!("{url}/stats"));
    let _ = serve.kill();
    let _ = serve.wait();
    let merged = dir.path("merged.json").to_str().unwrap().to_string();
    let out = super::util::fleetstorm(&["merge", "--out", &merged, &paths[0], &paths[1]]);
    assert_eq!(out.status.code(), Some(3), "the merged gates: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
    let shard = |i: usize| -> serde_json::Value { serde_json::from_slice(&std::fs::read(&paths[i]).unwrap()).unwrap() };
    for (i, (name, profile)) in fleets.iter().enumerate() {
        assert_eq!(report["scenario"]["fleets"][i]["profile"], *profile);
        let f = &report["fleets"][i];
        assert_eq!(f["name"], *name);
        let sent = f["sent"].as_u64().unwrap();
        assert_eq!(
            Some(sent),
            shard(0)["fleets"][i]["sent"].as_u64().zip(shard(1)["fleets"][i]["sent"].as_u64()).map(|(a, b)| a + b)
        );
        assert!(sent >= 40 && f["ok"] == f["sent"], "{name}: {f}");
        // serve counted each fleet by the name its bodies carry.
        assert_eq!(stats["fleets"][name]["accepted"], f["ok"], "{name}: {stats}");
        assert_eq!(stats["fleets"][name]["devices"], 40, "{name}: {stats}");
    }
    let gates: Vec<(&str, bool)> = report["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["metric"].as_str().unwrap(), t["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(gates, [("fleets.meters.error_rate", true), ("fleets.cameras.sent", false)]);

    // Capacity: the mix scaled step by step against the built-in backend,
    // which answers every profile.
    let text = text
        .replace(&format!("url = \"{url}\""), "url = \"builtin\"")
        .split("[thresholds]")
        .next()
        .unwrap()
        .to_string()
        + "[capacity]\nslo = { \"error_rate\" = \"< 1%\" }\nstart_rate = \"200/s\"\nmax_rate = \"400/s\"\nstep_duration = \"1s\"\nwarmup = \"500ms\"\n";
    let file = dir.write("capacity.toml", &text);
    let out_json = dir.path("capacity.json");
    let run = super::util::fleetstorm(&["capacity", &file, "--quiet", "--out", out_json.to_str().unwrap()]);
    let capacity: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_json).unwrap())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&run.stderr)));
    // Every step the generator kept up with was good: no wire fails a
    // step. (On a busy machine a step may be the generator's, and the
    // answer inconclusive: that is the honest one.)
    let steps = capacity["steps"].as_array().unwrap();
    for s in steps.iter().filter(|s| s["generator_kept_up"] == true) {
        assert!(s["verdict"] == "good" && s["error_rate"] == 0.0, "{s}");
    }
    if capacity["limit"] != "generator" {
        assert_eq!(capacity["verdict"], "max_rate_reached", "{capacity}");
    }
}

#[test]
fn a_custom_fleet_s_requests_are_checked_by_serve_from_its_scenario_and_wrong_tokens_refused() {
    // `serve --scenario` answers the custom templates of the scenario it
    // is given, letting in the devices of its identities file; the fleet
    // that runs has WRONG devices whose tokens serve does not know.
    let dir = super::util::TempDir::new("profiles-custom");
    let rows = |wrong: usize| -> String {
        let lines: Vec<String> = (0..DEVICES)
            .map(|i| format!("trk-{i},{}", if i < wrong { "bad".to_string() } else { format!("t0k{i}") }))
            .collect();
        format!("name,token\n{}\n", lines.join("\n"))
    };
    dir.write("served.csv", &rows(0));
    dir.write("fleet.csv", &rows(WRONG));
    let scenario = |url: &str, ids: &str| {
        format!(
            "seed = 5\nduration = \"3s\"\n[target]\nurl = \"{url}\"\n[[fleets]]\nname = \"trackers\"\nprofile = \"custom\"\n\
             identities = \"{ids}\"\ninterval = \"500ms\"\n[fleets.custom]\nmethod = \"PUT\"\n\
             path = \"/v2/assets/${{device.name}}/position\"\nheaders = {{ authorization = \"Bearer ${{identity.token}}\" }}\n\
             body = '{{\"asset\": ${{device.name}}, \"seq\": ${{device.sequence}}, \"at\": ${{now.ms}}}}'\nsuccess = [204]\n"
        )
    };
    let served = dir.write("served.toml", &scenario("builtin", "served.csv"));
    let (mut serve, url) = super::util::spawn_serve(&["--scenario", &served]);
    let file = dir.write("fleet.toml", &scenario(&url, "fleet.csv"));
    let out = dir.path("fleet.json");
    let run = super::util::fleetstorm(&["run", &file, "--quiet", "--out", out.to_str().unwrap()]);
    let stats = super::util::get_json_blocking(&format!("{url}/stats"));
    let _ = serve.kill();
    let _ = serve.wait();
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&run.stderr)));
    let t = &report["totals"];
    let (ok, sent) = (t["ok"].as_u64().unwrap(), t["sent"].as_u64().unwrap());
    let refused = stats["unauthorized"].as_u64().unwrap();
    assert_eq!(stats["accepted"].as_u64(), Some(ok), "{stats}\n{t}");
    assert_eq!(t["codes"]["http"]["204"].as_u64(), Some(ok), "success is the fleet's own status: {t}");
    assert_eq!(
        (t["errors"]["auth"].as_u64(), t["codes"]["http"]["401"].as_u64()),
        (Some(refused), Some(refused)),
        "{t}"
    );
    assert_eq!(ok + refused, sent, "{t}");
    let share = refused as f64 / sent as f64;
    assert!(ok >= 20 && (0.15..=0.35).contains(&share), "ok {ok}, refused {refused} of {sent}");
    assert_eq!(stats["fleets"]["trackers"]["devices"].as_u64(), Some((DEVICES - WRONG) as u64), "{stats}");
    // And a 2xx that is not the fleet's success is a failure: serve
    // answering 204 to a fleet that expects 201.
    let (mut serve, url) = super::util::spawn_serve(&["--scenario", &served]);
    let file = dir.write("201.toml", &scenario(&url, "served.csv").replace("success = [204]", "success = [201]"));
    let out = dir.path("201.json");
    let _ = super::util::fleetstorm(&["run", &file, "--quiet", "--out", out.to_str().unwrap()]);
    let _ = serve.kill();
    let _ = serve.wait();
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let t = &report["totals"];
    assert!(t["sent"].as_u64() > Some(20) && t["ok"] == 0 && t["errors"]["other_status"] == t["sent"], "{t}");
}
