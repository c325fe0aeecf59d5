//! The plan `validate` prints matches the run: its expected heartbeats
//! per fleet are the run's `scheduled`, exactly, at a fixed seed; flags a
//! command does not use, and scales beyond a limit, are refused.

use fleetstorm::report::Report;
use fleetstorm::run::{Counted, expected_heartbeats, plan_text_within};
use fleetstorm::scenario::{self, Format};
use fleetstorm::shard::Shard;

use super::run::schema_check;
use super::util::{TempDir, fleetstorm};

/// Ramp-up, Poisson arrivals, jitter, an outage with a staggered
/// recovery, a surge and a restart: every way a schedule departs from
/// devices ÷ interval.
const EVENTFUL: &str = "name = \"eventful\"\nseed = 99\nduration = \"4s\"\n[target]\nurl = \"builtin\"\ntimeout = \"2s\"\n\
    [[fleets]]\nname = \"sensors\"\ndevices = 300\ninterval = \"1s\"\nramp_up = \"2s\"\narrival = \"poisson\"\n\
    [[fleets.events]]\nat = \"1500ms\"\nkind = \"outage\"\nshare = \"30%\"\nduration = \"1s\"\nrecover = \"staggered\"\n\
    [[fleets]]\nname = \"cams\"\ndevices = 200\ninterval = \"2s\"\njitter = \"10%\"\n\
    [[fleets.events]]\nat = \"1s\"\nkind = \"surge\"\nshare = \"50%\"\nduration = \"1s\"\ninterval = \"200ms\"\n\
    [[fleets.events]]\nat = \"2500ms\"\nkind = \"restart\"\nshare = \"20%\"\nover = \"500ms\"\ndowntime = \"300ms\"\n";

/// The heartbeats column of `validate`'s plan: (fleet or TOTAL, count).
fn planned(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("fleet ") || !l.contains("heartbeats"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            // ... heartbeats connections
            (fields[0].to_string(), fields[fields.len() - 2].to_string())
        })
        .collect()
}

/// `validate` and `run` with the same arguments: the plan's heartbeats
/// per fleet and in total are the report's `scheduled`.
fn plan_matches_run(scenario: &str, args: &[&str], dir: &TempDir) {
    let mut validate = vec!["validate", scenario];
    validate.extend_from_slice(args);
    let out = fleetstorm(&validate);
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{plan}{}", String::from_utf8_lossy(&out.stderr));
    assert!(plan.contains("heartbeats: exactly"), "{plan}");
    let rows = planned(&plan);

    let json = dir.path("report.json");
    let mut run = vec!["run", scenario, "--quiet", "--out", json.to_str().unwrap()];
    run.extend_from_slice(args);
    let out = fleetstorm(&run);
    // Thresholds may pass or fail (3); the schedule is what is compared.
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", String::from_utf8_lossy(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    schema_check(&value);
    let report: Report = serde_json::from_value(value).unwrap();
    assert!(!report.interrupted && report.aborted.is_none(), "the whole schedule ran: {:?}", report.aborted);

    let mut from_run: Vec<(String, String)> =
        report.fleets.iter().map(|f| (f.name.clone().unwrap_or_default(), f.scheduled.to_string())).collect();
    from_run.push(("TOTAL".to_string(), report.totals.scheduled.to_string()));
    assert_eq!(rows, from_run, "validate's heartbeats are the run's scheduled, exactly:\n{plan}");
}

#[test]
fn validate_expects_exactly_the_heartbeats_a_run_schedules() {
    let dir = TempDir::new("plan-matches-run");
    // The quickstart: a jittered fleet, and a Poisson one ramping up over
    // 10 s (not finished within this run). Shortened and scaled down.
    plan_matches_run("scenarios/quickstart.toml", &["--seed", "7", "--duration", "4s", "--devices-scale", "0.2"], &dir);
    let eventful = dir.write("eventful.toml", EVENTFUL);
    plan_matches_run(&eventful, &[], &dir);
}

#[test]
fn expected_heartbeats_count_the_first_ones_shards_add_up_and_estimates_say_so() {
    let quick = scenario::load(std::path::Path::new(&super::util::root().join("scenarios/quickstart.toml"))).unwrap();
    let whole = expected_heartbeats(&quick, 7, None, u64::MAX);
    assert_eq!(whole.counted, [Counted::Exact, Counted::Exact]);
    // 1,000 sensors come online over 10 s, each with a first heartbeat,
    // then one every 30 s on average: about 1,000 · (1 + 15/30), far from
    // 33.3/s · 20 s at full strength less half the ramp (500).
    let sensors = whole.fleets[1];
    assert!((1_400.0..=1_600.0).contains(&sensors), "{sensors}");
    // Shards partition the devices: their counts add up to the whole.
    for count in [2, 3, 7] {
        let parts: Vec<f64> = (0..count)
            .map(|index| expected_heartbeats(&quick, 7, Some(Shard { index, count }), u64::MAX).total())
            .collect();
        assert_eq!(parts.iter().sum::<f64>(), whole.total(), "{count} shards: {parts:?}");
    }
    // Beyond the budget, every fleet is estimated from a sample of its
    // devices, close to the exact count, and the plan marks it.
    let eventful = scenario::parse(EVENTFUL, Format::Toml, "e.toml", "e").unwrap();
    let exact = expected_heartbeats(&eventful, 99, None, u64::MAX);
    let sampled = expected_heartbeats(&eventful, 99, None, 600);
    for (i, (e, s)) in exact.fleets.iter().zip(&sampled.fleets).enumerate() {
        assert!(matches!(sampled.counted[i], Counted::Sampled { stride } if stride > 1), "{:?}", sampled.counted);
        assert!((s / e - 1.0).abs() < 0.15, "fleet {i}: estimated {s}, exactly {e}");
    }
    let plan = plan_text_within(&eventful, None, 600);
    assert!(plan.contains("≈") && plan.contains("estimated from 1 device in"), "{plan}");
    assert!(!plan_text_within(&eventful, None, u64::MAX).contains('≈'));
    // Without a seed, the plan says which counts depend on the one a run draws.
    let unseeded = scenario::parse(&EVENTFUL.replace("seed = 99\n", ""), Format::Toml, "e.toml", "e").unwrap();
    let plan = plan_text_within(&unseeded, None, u64::MAX);
    assert!(plan.contains("sets no seed") && plan.contains("sensors, cams"), "{plan}");
    let periodic = scenario::parse(
        "[[fleets]]\nname = \"steady\"\ndevices = 10\ninterval = \"1s\"\n",
        Format::Toml,
        "p.toml",
        "p",
    )
    .unwrap();
    assert!(!plan_text_within(&periodic, None, u64::MAX).contains("sets no seed"), "a periodic beat needs no seed");
}

#[test]
fn flags_a_command_does_not_use_are_refused() {
    let dir = TempDir::new("unused-flags");
    let refused = |args: &[&str], flag: &str| {
        let (code, stderr) = super::util::execute(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(flag) && stderr.contains("Usage:"), "{args:?}: {stderr}");
    };
    // A capacity search sets its steps' length itself.
    refused(&["capacity", "scenarios/capacity.toml", "--duration", "1s"], "'--duration'");
    // With scale = "devices", each step's device counts follow from its rate.
    let by_devices = dir.write(
        "c.toml",
        "[target]\nurl = \"http://127.0.0.1:9\"\n[[fleets]]\nname = \"f\"\ndevices = 10\ninterval = \"1s\"\n\
         [capacity]\nslo = { \"latency.p99\" = \"< 1s\" }\nstart_rate = \"10/s\"\nmax_rate = \"20/s\"\n",
    );
    refused(&["capacity", &by_devices, "--devices-scale", "2"], "'--devices-scale'");
    // An error status with no error rate is never answered.
    refused(&["serve", "--addr", "127.0.0.1:0", "--error-status", "503"], "'--error-status'");
    // The flags each command does use are still taken.
    let out = fleetstorm(&["validate", "scenarios/quickstart.toml", "--duration", "1s", "--rate-scale", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("duration 1s"));
}

#[test]
fn a_scale_beyond_a_limit_is_refused_as_the_same_count_in_the_file() {
    let dir = TempDir::new("scale-limits");
    let big = dir.write("big.toml", "[[fleets]]\nname = \"huge\"\ndevices = 9000000\ninterval = \"1h\"\n");
    let out = fleetstorm(&["validate", &big, "--devices-scale", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let limit = "devices is 45000000; it must be from 1 to 10000000";
    assert!(stderr.contains("--devices-scale 5") && stderr.contains("\"huge\"") && stderr.contains(limit), "{stderr}");
    // The same count written in the file: the same words.
    let in_file = dir.write("file.toml", "[[fleets]]\nname = \"huge\"\ndevices = 45000000\ninterval = \"1h\"\n");
    let out = fleetstorm(&["validate", &in_file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(limit));
    // Scaled down to no device at all: refused too, not made one.
    let out = fleetstorm(&["validate", "scenarios/quickstart.toml", "--devices-scale", "0.0001"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("devices is 0; it must be from 1"));
    // A capacity search whose max_rate needs more devices than a fleet may
    // have is refused before its first step.
    let capacity = dir.write(
        "c.toml",
        "[target]\nurl = \"http://127.0.0.1:9\"\n[[fleets]]\nname = \"cams\"\ndevices = 10\ninterval = \"10s\"\n\
         [capacity]\nslo = { \"latency.p99\" = \"< 1s\" }\nstart_rate = \"10/s\"\nmax_rate = \"2000000/s\"\n",
    );
    let out = fleetstorm(&["capacity", &capacity, "--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("devices is 20000000; it must be from 1 to 10000000") && stderr.contains("\"cams\""),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no step ran: {}", String::from_utf8_lossy(&out.stdout));
    // A negative scale gets the same words however it is written.
    for args in [["--rate-scale", "-1"], ["--rate-scale=-1", ""]] {
        let mut all = vec!["validate", "scenarios/quickstart.toml"];
        all.extend(args.iter().filter(|a| !a.is_empty()));
        let out = fleetstorm(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--rate-scale must be a number above 0, not -1"), "{args:?}: {stderr}");
    }
}

#[test]
fn validate_into_a_pipe_closed_early_ends_quietly_with_success() {
    // `fleetstorm validate ... --schedule N | head -1`: the reader goes
    // away after one line; validate must stop writing, not panic.
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["validate", "scenarios/quickstart.toml", "--seed", "1", "--schedule", "200000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "validate printed nothing");
    // The reading end is closed here, as head closes it.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// A shard without the run's seed is refused by `validate` as by `run`:
/// the Kubernetes steps check a shard with `validate --shard`.
#[test]
fn validate_refuses_a_shard_without_a_seed_as_run_does() {
    let dir = TempDir::new("validate-shard-seed");
    let file = dir.write("s.toml", "[target]\nurl = \"builtin\"\n[[fleets]]\nname = \"f\"\ndevices = 10\n");
    for command in ["validate", "run"] {
        let out = fleetstorm(&[command, &file, "--shard", "0/2", "-d", "1s"]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("a shard needs the run's seed"), "{command}");
    }
    let out = fleetstorm(&["validate", &file, "--shard", "0/2", "--seed", "4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A port out of range is refused wherever a target is written, never
/// read as port 80 (a typo would send the load to another service).
#[test]
fn a_target_port_out_of_range_is_refused_in_the_file_and_on_the_command_line() {
    let dir = TempDir::new("target-port");
    let fleet = "[[fleets]]\nname = \"f\"\ndevices = 10\n";
    for port in ["99999", "65536", "0"] {
        let file = dir.write("s.toml", &format!("[target]\nurl = \"http://127.0.0.1:{port}\"\n{fleet}"));
        let out = fleetstorm(&["validate", &file]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{port}: {said}");
        assert!(said.contains(&format!("port {port} is not a port")) && said.contains("s.toml:2:"), "{said}");
        let file = dir.write("ok.toml", &format!("[target]\nurl = \"builtin\"\n{fleet}"));
        for command in ["validate", "run"] {
            let out = fleetstorm(&[command, &file, "-t", &format!("http://127.0.0.1:{port}"), "-d", "1s"]);
            let said = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {port}: {said}");
            assert!(said.contains(&format!("port {port} is not a port")), "{said}");
        }
    }
}

/// Two MQTT fleets against the built-in backend's listener: QoS 1, and
/// QoS 0 retained on a topic of its own.
const MQTT: &str = "name = \"mqtt-plan\"\nseed = 5\nduration = \"3s\"\n[target]\nurl = \"builtin\"\ntimeout = \"2s\"\n\
    [target.mqtt]\nkeep_alive = \"30s\"\n\
    [[fleets]]\nname = \"meters\"\ndevices = 12\ninterval = \"1s\"\njitter = \"10%\"\ndevice_name = \"meter-{index:02}\"\n\
    profile = \"mqtt\"\n[fleets.mqtt]\ntopic = \"plant/{device}/hb\"\nqos = 1\n\
    [[fleets]]\nname = \"tags\"\ndevices = 8\ninterval = \"500ms\"\ndevice_name = \"tag-{index}\"\nprofile = \"mqtt\"\n\
    [fleets.mqtt]\ntopic = \"tags/{device}\"\nqos = 0\nretain = true\n";

/// `validate` plans an MQTT fleet: its sessions, topics, QoS and
/// retain, keep-alive, reconnect policy, connect rate, sockets and the
/// listener; and its heartbeats are a builtin run's `scheduled`.
#[test]
fn validate_plans_an_mqtt_fleet_and_its_heartbeats_are_the_runs() {
    let dir = TempDir::new("plan-mqtt");
    let file = dir.write("mqtt.toml", MQTT);
    let out = fleetstorm(&["validate", &file]);
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{plan}{}", String::from_utf8_lossy(&out.stderr));
    for said in [
        "MQTT 3.1.1 sessions: one per device, each its own connection",
        "fleet meters: 12 sessions (client id: the device's name); topic plant/{device}/hb (first device meter-00: \
         plant/meter-00/hb), QoS 1, retain off; 12.0 messages/s steady",
        "fleet tags: 8 sessions (client id: the device's name); topic tags/{device} (first device tag-0: tags/tag-0), \
         QoS 0, retain on; 16.0 messages/s steady",
        "keep-alive 30s",
        "reconnect: a lost session is reopened after 1s, the delay doubling up to 1m",
        "in flight: up to 20 of a device's messages await their acknowledgement at once; one due while they do \
         waits (late)",
        "connect rate: none set; sessions open as devices need them, over the first interval (1s)",
        "sockets: one per session, 20 file descriptors (twice that with the built-in backend's ends in this \
         process) and 20 source ports",
        "builtin: serve's MQTT listener",
    ] {
        assert!(plan.contains(said), "{said:?} not in:\n{plan}");
    }
    assert!(!plan.contains("warning"), "{plan}");
    plan_matches_run(&file, &[], &dir);
    // An HTTP plan says nothing of sessions.
    let out = fleetstorm(&["validate", "scenarios/quickstart.toml"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("MQTT"));
}

/// A connect rate too low for every session to open within the run is
/// warned of with how many will have opened; sessions beyond the
/// open-file limit are refused, as HTTP's per-device connections are.
#[test]
fn validate_warns_of_a_slow_connect_rate_and_refuses_sessions_beyond_the_open_files() {
    let dir = TempDir::new("plan-mqtt-limits");
    let slow = dir.write("slow.toml", &MQTT.replace("keep_alive = \"30s\"\n", "connect_rate = \"4/s\"\n"));
    let out = fleetstorm(&["validate", &slow]);
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "a warning, not a refusal: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        plan.contains(
            "connect rate: at most 4/s, first openings and reopenings alike; opening all 20 sessions takes 5s"
        ),
        "{plan}"
    );
    assert!(
        plan.contains(
            "warning: at 4/s only 12 of the 20 devices will have opened their session by the end of the run (3s)"
        ),
        "{plan}"
    );
    let fast = dir.write("fast.toml", &MQTT.replace("keep_alive = \"30s\"\n", "connect_rate = \"40/s\"\n"));
    let plan = String::from_utf8_lossy(&fleetstorm(&["validate", &fast]).stdout).to_string();
    assert!(plan.contains("opening all 20 sessions takes 500ms") && !plan.contains("warning"), "{plan}");
    // 300 sessions, both ends in this process, beyond 256 open files.
    // Refused by validate and by run alike, at the largest fleet's devices
    // (line 11, its value at column 11), with what each fleet needs.
    let many = dir.write("many.toml", &MQTT.replace("devices = 12", "devices = 300"));
    for command in ["validate", "run"] {
        let out = std::process::Command::new("sh")
            .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_fleetstorm"), command, &many])
            .current_dir(super::util::root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        let at = format!("error: {many}:11:11: fleets[0].devices: the plan needs up to 308 connections");
        assert!(stderr.contains(&at) && stderr.contains("may open 256 files"), "{command}: {stderr}");
        assert!(
            stderr.contains("fleet \"meters\" needs 300 sessions, fleet \"tags\" 8 (one per device);"),
            "{command}: {stderr}"
        );
        assert!(stderr.contains("11 | devices = 300"), "the line quoted: {stderr}");
    }
}
