//! serve's MQTT listener from outside: fleetstorm's own MQTT fleets against
//! `builtin`, where serve's counts equal the report's; `fleetstorm serve
//! --mqtt` as a process refusing a fleet's wrong logins with their CONNACK
//! codes; and clients nobody here wrote (paho-mqtt from PyPI, MQTT.js from
//! npm), over MQTT 3.1.1 and MQTT 5, connecting, publishing at QoS 0 and 1,
//! refused with bad credentials (MQTT 5's reason codes 0x86 and 0x87), and
//! over MQTT 5 making a request whose answer comes back on its Response
//! Topic with its Correlation Data. Each serve picks its own port (`--mqtt 127.0.0.1:0`) and
//! says it: no port is given up between finding it and using it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use fleetstorm::report::Report;

use super::util::{Running, TempDir, execute, get_json_blocking, root};

/// `fleetstorm serve --addr 127.0.0.1:0 --mqtt 127.0.0.1:0` with `args`:
/// the process, its HTTP URL (stdout's first line) and its MQTT port
/// (stderr's line).
fn spawn_mqtt_serve(args: &[&str]) -> (Running, String, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["serve", "--addr", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let url = first.trim().strip_prefix("fleetstorm serve listening on ").expect("the address line").to_string();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut port = None;
    let mut said = Vec::new();
    for line in stderr.by_ref().lines().map_while(Result::ok).take(10) {
        if let Some(addr) = line.strip_prefix("fleetstorm serve listening on mqtt://") {
            port = addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
            break;
        }
        said.push(line);
    }
    let port = port.unwrap_or_else(|| panic!("serve said no MQTT address: {said:?}"));
    // Its pipes read on, so that it never blocks on a full one.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (Running(child), url, port)
}

/// The identities of the interop clients' device: dev-1, user-1, secret-1.
const DEV_1: &str = "name,username,password\ndev-1,user-1,secret-1\n";

#[test]
fn an_mqtt_fleet_against_builtin_is_counted_by_serve_as_by_the_report_fleet_by_fleet() {
    let _heavy = super::util::heavy();
    let dir = TempDir::new("mqtt-builtin");
    let scenario = dir.write(
        "s.toml",
        "name = \"mqtt-builtin\"\nseed = 5\nduration = \"6s\"\n[target]\nurl = \"builtin\"\n\
         [[fleets]]\nname = \"acked\"\ndevices = 150\ninterval = \"1s\"\ndevice_name = \"a-{index}\"\n\
         profile = \"mqtt\"\n[fleets.mqtt]\ntopic = \"plant/{device}/hb\"\nqos = 1\n\
         [[fleets]]\nname = \"fired\"\ndevices = 50\ninterval = \"2s\"\ndevice_name = \"f-{index}\"\n\
         profile = \"mqtt\"\n[fleets.mqtt]\ntopic = \"devices/{device}/telemetry\"\nqos = 0\n",
    );
    let out = dir.path("r.json").to_str().unwrap().to_string();
    let (code, said) = execute(&["run", &scenario, "--quiet", "--out", &out]);
    assert_eq!(code, 0, "{said}");
    let report = Report::load(std::path::Path::new(&out)).unwrap();
    let target = &report.scenario.target.url;
    assert!(target.starts_with("builtin (mqtt://127.0.0.1:"), "{target}");
    let t = &report.totals;
    assert_eq!((t.sent + t.missed, t.ok + t.failed), (t.scheduled, t.sent), "{t:?}");
    assert_eq!(t.connects, 200, "a session per device");
    let backend = report.backend.as_ref().expect("builtin's own counts");
    let mqtt = &backend["mqtt"];
    assert_eq!(mqtt["sessions"], 200, "{mqtt}");
    assert_eq!(mqtt["refused"], serde_json::json!({}));
    assert_eq!(mqtt["rejected"], 0, "every message on its device's topic, valid: {mqtt}");
    let fleet = |name: &str| report.fleets.iter().find(|f| f.name.as_deref() == Some(name)).expect("the fleet");
    let (acked, fired) = (fleet("acked"), fleet("fired"));
    let accepted = |name: &str| backend["fleets"][name]["accepted"].as_u64().unwrap_or(0);
    let served = |key: &str| mqtt["received"][key].as_u64().unwrap();
    // What serve took is what was sent, and what it acknowledged is what
    // fleetstorm counted ok; when nothing failed (a busy machine's late
    // PUBACK is a timeout), exactly, fleet by fleet.
    assert!((acked.ok..=acked.sent).contains(&mqtt["acked"].as_u64().unwrap()), "{mqtt}");
    // A QoS 0 message is ok once written, and serve reads what was written
    // before its session ends: all of them, unless a write failed.
    assert!((fired.ok..=fired.sent).contains(&served("qos0")), "{mqtt}");
    if fired.failed == 0 {
        assert_eq!(served("qos0"), fired.sent, "every QoS 0 message written was read: {mqtt}");
        assert_eq!(accepted("fired"), fired.sent);
    }
    if t.failed == 0 {
        assert_eq!((served("qos1"), mqtt["acked"].as_u64().unwrap()), (acked.sent, acked.ok));
        assert_eq!(accepted("acked"), acked.ok);
        assert_eq!(backend["accepted"].as_u64(), Some(t.ok));
        assert_eq!(backend["fleets"]["acked"]["devices"], 150);
        assert_eq!(backend["fleets"]["fired"]["devices"], 50);
        let arrived: u64 =
            backend["arrivals_per_second"].as_array().unwrap().iter().map(|s| s[1].as_u64().unwrap()).sum();
        assert_eq!(arrived, t.sent, "the arrivals, second by second, add up to what was sent");
    }
}

#[test]
fn serve_refuses_a_fleet_s_wrong_logins_at_connect_with_their_codes_and_lets_the_right_ones_in() {
    let dir = TempDir::new("mqtt-logins");
    let known = dir.write("known.csv", "name,username,password\nd-0,u-0,p-0\nd-1,u-1,p-1\nd-2,u-2,p-2\n");
    let (_serve, url, port) = spawn_mqtt_serve(&["--identities", &format!("mqtt={known}")]);
    // d-1 has a wrong password, d-3 is unknown to serve.
    let fleet =
        dir.write("fleet.csv", "name,username,password\nd-0,u-0,p-0\nd-1,u-1,wrong\nd-2,u-2,p-2\nd-3,u-3,p-3\n");
    let scenario = dir.write(
        "s.toml",
        &format!(
            "name = \"mqtt-logins\"\nduration = \"3s\"\n[target]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
             [[fleets]]\nname = \"f\"\ndevices = 4\ninterval = \"1s\"\nidentities = \"{fleet}\"\nprofile = \"mqtt\"\n"
        ),
    );
    let out = dir.path("r.json").to_str().unwrap().to_string();
    let (code, said) = execute(&["run", &scenario, "--quiet", "--out", &out]);
    assert!(code == 0 || code == 3, "{said}");
    let report = Report::load(std::path::Path::new(&out)).unwrap();
    let codes = &report.totals.codes;
    let refused = |code: &str| codes.get("mqtt").and_then(|c| c.get(code)).copied().unwrap_or(0);
    assert!(refused("4") >= 1 && refused("5") >= 1, "bad user name or password, not authorised: {codes:?}");
    let stats = get_json_blocking(&format!("{url}/stats"));
    let mqtt = &stats["mqtt"];
    // Each refusal serve sent is the outcome of one of that device's
    // heartbeats, but for the last one, whose CONNACK the run's end may
    // have cut off.
    for code in ["4", "5"] {
        let sent = mqtt["refused"][code].as_u64().unwrap_or(0);
        assert!((refused(code)..=refused(code) + 1).contains(&sent), "CONNACK {code}: {mqtt} {codes:?}");
    }
    assert_eq!(stats["accepted"].as_u64(), Some(report.totals.ok), "{stats}");
    assert_eq!(stats["devices"], 2, "d-0 and d-2 got in: {stats}");
}

/// Runs MQTT.js's check against serve on `port`, if node and the check's
/// packages are there (`.ci/run` runs `npm ci` in tests/interop/mqttjs):
/// under CI a missing one fails; elsewhere the check is skipped, loudly.
fn mqttjs(port: u16) -> Option<serde_json::Value> {
    let folder = root().join("tests/interop/mqttjs");
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let installed = folder.join("node_modules/mqtt/package.json").is_file();
    if !(node && installed) {
        assert!(std::env::var_os("CI").is_none(), "node and MQTT.js must be installed in CI (.ci/run: npm ci)");
        eprintln!("SKIPPED MQTT.js: node {node}, node_modules/mqtt {installed} (cd {} && npm ci)", folder.display());
        return None;
    }
    let out =
        Command::new("node").arg("check.mjs").args(["127.0.0.1", &port.to_string()]).current_dir(&folder).output();
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "check.mjs failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("check.mjs printed no JSON ({e})")))
}

/// What each interop client finds, over MQTT 3.1.1 and MQTT 5 (`key`
/// names whether a session was let in: paho-mqtt gives the CONNACK's
/// code, MQTT.js whether it is connected): let in, its QoS 1 message
/// acknowledged, refused with 4 and 5 (0x86 and 0x87 over MQTT 5), and
/// over MQTT 5 serve's answer to its request, with its correlation data.
fn expected(key: &str, let_in: serde_json::Value, qos0: Option<bool>) -> serde_json::Value {
    let session = |wrong_password: u8, unknown_device: u8| {
        let mut s = serde_json::json!({
            key: let_in.clone(), "qos1_acked": true, "wrong_password": wrong_password, "unknown_device": unknown_device
        });
        if let Some(sent) = qos0 {
            s["qos0_sent"] = sent.into();
        }
        s
    };
    let mut v5 = session(0x86, 0x87);
    v5["answer"] = serde_json::json!({
        "topic": "replies/dev-1/42", "qos": 1, "correlation": "corr-42", "payload": {"status": "ok"}
    });
    serde_json::json!({"3.1.1": session(4, 5), "5": v5})
}

/// What serve counted of one interop client's sessions, one per version:
/// five messages taken (QoS 0 and 1 in each, and the MQTT 5 request), all
/// acknowledged but QoS 0's, one subscription, four logins refused (MQTT
/// 5's counted under their 3.1.1 codes, 4 and 5).
fn assert_counted(url: &str) {
    let stats = get_json_blocking(&format!("{url}/stats"));
    let mqtt = &stats["mqtt"];
    assert_eq!(mqtt["received"], serde_json::json!({"qos0": 2, "qos1": 3}), "{mqtt}");
    assert_eq!((mqtt["acked"].as_u64(), mqtt["rejected"].as_u64()), (Some(3), Some(0)), "{mqtt}");
    assert_eq!((mqtt["sessions"].as_u64(), mqtt["subscribes"].as_u64()), (Some(2), Some(1)), "{mqtt}");
    assert_eq!(mqtt["refused"], serde_json::json!({"4": 2, "5": 2}), "{mqtt}");
    assert_eq!(stats["devices"], 1, "{stats}");
}

#[test]
fn paho_mqtt_over_3_1_1_and_5_publishes_gets_its_puback_is_refused_with_bad_credentials_and_gets_its_answer() {
    let dir = TempDir::new("mqtt-paho");
    let ids = dir.write("ids.csv", DEV_1);
    let (_serve, url, port) = spawn_mqtt_serve(&["--identities", &format!("mqtt={ids}")]);
    let Some(result) = super::util::interop("mqtt_paho.py", &["127.0.0.1", &port.to_string()], &["paho.mqtt"]) else {
        return;
    };
    assert_eq!(result, expected("connack", 0.into(), Some(true)));
    assert_counted(&url);
}

#[test]
fn mqtt_js_over_3_1_1_and_5_publishes_gets_its_puback_is_refused_with_bad_credentials_and_gets_its_answer() {
    let dir = TempDir::new("mqtt-mqttjs");
    let ids = dir.write("ids.csv", DEV_1);
    let (_serve, url, port) = spawn_mqtt_serve(&["--identities", &format!("mqtt={ids}")]);
    let Some(result) = mqttjs(port) else { return };
    assert_eq!(result, expected("connected", true.into(), None));
    assert_counted(&url);
}

/// `capacity` answers for an MQTT fleet in devices: each step is a fleet
/// of that many devices, each with its own session against builtin's
/// listener (scale = "devices"), and the answer names the devices at the
/// fleet's interval. (What rate this machine reaches is a benchmark's
/// question: here, what each step was and how it is said.)
#[test]
fn capacity_answers_for_an_mqtt_fleet_in_devices_each_step_its_own_sessions() {
    let _heavy = super::util::heavy();
    let dir = TempDir::new("mqtt-capacity");
    let file = dir.write(
        "c.toml",
        "name = \"mqtt-capacity\"\nseed = 3\n[target]\nurl = \"builtin\"\ntimeout = \"2s\"\n\
         [[fleets]]\nname = \"sensors\"\ndevices = 100\ninterval = \"2s\"\nprofile = \"mqtt\"\n\
         [capacity]\nslo = { \"error_rate\" = \"< 1%\" }\nstart_rate = \"50/s\"\nmax_rate = \"200/s\"\n\
         scale = \"devices\"\nstep_duration = \"2s\"\nwarmup = \"1s\"\nprecision = \"50%\"\n",
    );
    let out = dir.path("c.json");
    let (code, said) = execute(&["capacity", &file, "--quiet", "--out", out.to_str().unwrap()]);
    let report: fleetstorm::capacity::CapacityReport =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(report.target.starts_with("builtin (mqtt://127.0.0.1:"), "{}", report.target);
    assert!(!report.steps.is_empty(), "{said}");
    for step in &report.steps {
        // A step's devices are its rate at the fleet's 2 s interval.
        assert_eq!(step.devices as f64, (step.target_rate * 2.0).round(), "{step:?}");
    }
    if let Some(rate) = report.max_sustainable_rate {
        assert_eq!(code, 0, "{said}");
        let devices = report.devices.iter().find(|d| d.interval_s == 2.0).expect("the fleet's interval");
        assert_eq!(devices.devices as f64, (rate * 2.0).floor(), "{:?}", report.devices);
        assert!(report.answer.contains("devices at a 2s interval"), "{}", report.answer);
    }
}

/// fleetstorm's MQTT 5 fleet against serve's MQTT 5 listener, request
/// and response: each session subscribes to its device's answers topic
/// when it opens, each message asks for its answer there and is timed to
/// it; serve answers every one (with its correlation data), and the books
/// of both sides agree.
#[test]
fn an_mqtt_5_fleet_gets_an_answer_to_every_request_from_serve() {
    let _heavy = super::util::heavy();
    let dir = TempDir::new("mqtt5-request");
    let (_serve, url, port) = spawn_mqtt_serve(&[]);
    let scenario = dir.write(
        "s.toml",
        &format!(
            "name = \"mqtt5-request\"\nseed = 5\nduration = \"4s\"\n[target]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
             [target.mqtt]\nversion = \"5\"\n[[fleets]]\nname = \"asking\"\ndevices = 100\ninterval = \"1s\"\n\
             device_name = \"a-{{index}}\"\nprofile = \"mqtt\"\n[fleets.mqtt]\nqos = 1\n\
             response_topic = \"devices/{{device}}/answers\"\n"
        ),
    );
    let out = dir.path("r.json").to_str().unwrap().to_string();
    let (code, said) = execute(&["run", &scenario, "--quiet", "--out", &out]);
    assert_eq!(code, 0, "{said}");
    let report = Report::load(std::path::Path::new(&out)).unwrap();
    assert_eq!(report.scenario.target.mqtt.as_deref(), Some("5"));
    let t = &report.totals;
    assert_eq!((t.scheduled, t.sent + t.missed, t.connects), (400, 400, 100), "{t:?}");
    assert!(t.ok > 0 && t.latency_ms.p50 > 0.0, "{t:?}");
    let stats = get_json_blocking(&format!("{url}/stats"));
    let mqtt = &stats["mqtt"];
    assert_eq!(mqtt["rejected"], 0, "{mqtt}");
    // Each message that came to serve was acknowledged; each one fleetstorm
    // counted ok had its PUBACK and its answer.
    assert!((t.ok..=t.sent).contains(&mqtt["acked"].as_u64().unwrap()), "{mqtt}");
    if t.failed == 0 {
        assert_eq!((t.ok, mqtt["acked"].as_u64()), (400, Some(400)), "{mqtt}");
    }
}
