//! MQTT fleets against mosquitto, a broker nobody here wrote (Debian's
//! `mosquitto`, started per test on a loopback port with a config of the
//! test's own, `set_tcp_nodelay true`): what fleetstorm counts as
//! acknowledged is what an independent subscriber (`mosquitto_sub`)
//! received, device by device; a wrong password is refused in its class,
//! with its CONNACK code.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fleetstorm::report::Report;

use super::util::{Running, TempDir, fleetstorm};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// Whether mosquitto and its clients are installed. `.ci/run` installs
/// them: under CI (`CI` set) a missing one fails the test; elsewhere the
/// test is skipped, loudly, as the other interop tests are.
fn mosquitto_available() -> bool {
    let found = |program: &str| {
        std::path::Path::new(program).is_file()
            || Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .output()
                .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> =
        [MOSQUITTO, "mosquitto_sub", "mosquitto_passwd", "stdbuf"].into_iter().filter(|p| !found(p)).collect();
    if !missing.is_empty() {
        assert!(std::env::var_os("CI").is_none(), "{missing:?} must be installed in CI (.ci/run)");
        eprintln!("SKIPPED: missing {missing:?} (apt-get install mosquitto mosquitto-clients; CI runs this test)");
    }
    missing.is_empty()
}

/// A mosquitto of the test's own, on a loopback port it found free.
struct Mosquitto {
    _process: Running,
    port: u16,
}

impl Mosquitto {
    /// Starts mosquitto with `extra` config lines in `dir`; it has
    /// started once it says it is running. Its port is below the
    /// machine's ephemeral range (32768 and up here), so that no outgoing
    /// connection takes it while it is restarted ([`Mosquitto::restart`]);
    /// a port taken between finding it free and mosquitto binding it is
    /// tried again with another.
    fn start(dir: &TempDir, extra: &str) -> Mosquitto {
        let mut pick = std::process::id() as u64 * 7919
            + std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
        for _ in 0..20 {
            pick = pick.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let port = 20_000 + (pick >> 33) as u16 % 12_000;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            if let Some(started) = Mosquitto::start_at(dir, port, extra) {
                return started;
            }
        }
        panic!("mosquitto found no free port in twenty tries");
    }

    /// Kills this mosquitto (SIGKILL: its sessions end with no DISCONNECT)
    /// and starts another on the same port with the same config.
    fn restart(&mut self, dir: &TempDir, extra: &str) {
        let _ = self._process.0.kill();
        let _ = self._process.0.wait();
        *self = Mosquitto::start_at(dir, self.port, extra).expect("mosquitto restarts on its port");
    }

    /// mosquitto on `port`, once it says it is running; `None` if the port
    /// is in use.
    fn start_at(dir: &TempDir, port: u16, extra: &str) -> Option<Mosquitto> {
        {
            let conf = dir.write(
                "mosquitto.conf",
                &format!(
                    "listener {port} 127.0.0.1\nset_tcp_nodelay true\nmax_queued_messages 0\npersistence false\n\
                     log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n{extra}\n"
                ),
            );
            let mut child = Command::new(MOSQUITTO)
                .args(["-c", &conf])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let mut said = Vec::new();
            let mut running = false;
            for line in lines.by_ref().map_while(Result::ok) {
                running = line.contains(" running");
                said.push(line);
                if running {
                    break;
                }
            }
            if running {
                // Its log read on, so that it never blocks on a full pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return Some(Mosquitto { _process: Running(child), port });
            }
            let _ = child.wait();
            assert!(said.iter().any(|l| l.contains("in use")), "mosquitto did not start: {said:?}");
        }
        None
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The URL of its TLS listener (a config that makes one).
    fn tls_url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port)
    }
}

/// `mosquitto_sub` on every device's topic (QoS 1), counting what it
/// receives per topic, once it has its subscription.
struct Subscriber {
    _process: Running,
    received: mpsc::Receiver<String>,
}

impl Subscriber {
    fn start(broker: &Mosquitto, topic: &str) -> Subscriber {
        Subscriber::start_as(broker, topic, &[])
    }

    /// [`Subscriber::start`] with mosquitto_sub's login arguments.
    fn start_as(broker: &Mosquitto, topic: &str, login: &[&str]) -> Subscriber {
        // Line-buffered: its output is read as it comes (a pipe would
        // otherwise hold it until a buffer fills).
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1", "-t", topic, "-F", "%t", "-d"])
            .args(["-i", "fleetstorm-test-subscriber"])
            .args(login)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub runs (apt-get install mosquitto-clients)");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (subscribed_tx, subscribed) = mpsc::channel();
        let (tx, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if line.contains("received SUBACK") {
                    let _ = subscribed_tx.send(());
                } else if !line.starts_with("Client ") && !line.starts_with("Subscribed") {
                    let _ = tx.send(line);
                }
            }
        });
        subscribed.recv_timeout(Duration::from_secs(30)).expect("mosquitto_sub subscribed");
        Subscriber { _process: Running(child), received }
    }

    /// What it received per topic before a message on `marker` (which
    /// the test publishes after what it counts), or within `patience` of
    /// the last one if the marker never comes.
    fn until(&self, marker: &str, patience: Duration) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        while let Ok(topic) = self.received.recv_timeout(patience) {
            if topic == marker {
                break;
            }
            *counts.entry(topic).or_default() += 1;
        }
        counts
    }

    /// What it received per topic, once it has `expected` messages (or, if
    /// they never come, what came within `patience` of the last one).
    fn counts(&self, expected: u64, patience: Duration) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut total = 0;
        while total < expected {
            match self.received.recv_timeout(patience) {
                Ok(topic) => {
                    *counts.entry(topic).or_default() += 1;
                    total += 1;
                }
                Err(_) => break,
            }
        }
        counts
    }
}

fn scenario(url: &str, devices: u64, extra_fleet: &str) -> String {
    format!(
        "name = \"mqtt\"\nseed = 3\nduration = \"10s\"\n[target]\nurl = \"{url}\"\n\
         [[fleets]]\nname = \"sensors\"\ndevices = {devices}\ninterval = \"1s\"\nprofile = \"mqtt\"\n{extra_fleet}\n\
         [fleets.mqtt]\ntopic = \"fleet/{{device}}/hb\"\nqos = 1\n"
    )
}

#[test]
fn every_acknowledged_heartbeat_is_one_a_subscriber_received_device_by_device() {
    if !mosquitto_available() {
        return;
    }
    let _heavy = super::util::heavy();
    let dir = TempDir::new("mqtt-ok");
    let broker = Mosquitto::start(&dir, "allow_anonymous true");
    let subscriber = Subscriber::start(&broker, "fleet/+/hb");
    let file = dir.write("s.toml", &scenario(&broker.url(), 1_000, "device_name = \"d-{index}\""));
    let out_json = dir.path("r.json").to_str().unwrap().to_string();
    let out = fleetstorm(&["run", &file, "--quiet", "--out", &out_json]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    super::run::schema_check(&json);
    // The target is described as what it is: MQTT, no HTTP version or path.
    let target = &json["scenario"]["target"];
    assert_eq!((target["mqtt"].as_str(), target.get("http"), target.get("path")), (Some("3.1.1"), None, None));
    let report = Report::load(std::path::Path::new(&out_json)).unwrap();
    let t = &report.totals;
    // Ten heartbeats per device (a 1 s beat over 10 s).
    assert_eq!((t.scheduled, t.sent + t.missed, t.ok + t.failed), (10_000, 10_000, t.sent), "{t:?}");
    assert_eq!(t.connects, 1_000, "a session per device");
    let opening = t.session_open_ms.as_ref().expect("each session's opening timed");
    assert!(opening.p50 > 0.0 && opening.p50 <= opening.max, "{opening:?}");
    // The broker passed on every message it took: each acknowledged one,
    // and those whose acknowledgement came after the timeout (a busy
    // machine's), never more than were sent.
    let received = subscriber.counts(t.sent, Duration::from_secs(20));
    let total: u64 = received.values().sum();
    assert!((t.ok..=t.sent).contains(&total), "received {total}: {t:?}");
    assert!(received.values().all(|n| *n <= 10), "no device's message twice");
    // Nothing failed or missed (the usual case): the counts agree exactly,
    // device by device.
    if t.failed == 0 && t.missed == 0 {
        assert_eq!((t.sent, t.ok, total), (10_000, 10_000, 10_000));
        assert_eq!(received.len(), 1_000, "every device's topic");
        for (topic, n) in &received {
            assert_eq!(*n, 10, "{topic}: what the subscriber received of this device's");
        }
    }
    assert!(t.latency_ms.p50 > 0.0 && t.latency_ms.p99 < 2_000.0, "{:?}", t.latency_ms);
}

#[test]
fn a_wrong_password_is_refused_at_connect_in_its_class_with_its_code() {
    if !mosquitto_available() {
        return;
    }
    let dir = TempDir::new("mqtt-auth");
    let passwords = dir.path("passwords");
    let made = Command::new("mosquitto_passwd")
        .args(["-c", "-b", passwords.to_str().unwrap(), "device-1", "right"])
        .output()
        .expect("mosquitto_passwd runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let broker = Mosquitto::start(&dir, &format!("allow_anonymous false\npassword_file {}", passwords.display()));
    let ids = dir.write("ids.csv", "name,username,password\ndevice-1,device-1,wrong\ndevice-2,device-1,wrong\n");
    let file = dir
        .write("s.toml", &scenario(&broker.url(), 0, &format!("identities = \"{ids}\"")).replace("devices = 0\n", ""));
    let out_json = dir.path("r.json").to_str().unwrap().to_string();
    let out = fleetstorm(&["run", &file, "--quiet", "--out", &out_json]);
    // Nothing succeeded: the run says so in its exit code.
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    let report = Report::load(std::path::Path::new(&out_json)).unwrap();
    let t = &report.totals;
    assert!(t.sent > 0 && t.ok == 0 && t.failed == t.sent, "{t:?}");
    assert_eq!(t.errors.get("auth"), Some(&t.failed), "{:?}", t.errors);
    // mosquitto refuses a wrong password with 3.1.1's 5, not authorised.
    assert_eq!(t.codes.get("mqtt").and_then(|c| c.get("5")), Some(&t.failed), "{:?}", t.codes);
    assert_eq!(t.connects, 0);
}

/// The same fleet in MQTT 5 against mosquitto (which speaks it): every
/// PUBACK's reason code is success, the subscriber got each message, the
/// report says MQTT 5; and a wrong password is refused with MQTT 5's
/// reason code, in its class.
#[test]
fn an_mqtt_5_fleet_is_acknowledged_message_by_message_and_refused_with_a_reason_code() {
    if !mosquitto_available() {
        return;
    }
    let _heavy = super::util::heavy();
    let dir = TempDir::new("mqtt-5");
    let passwords = dir.path("passwords");
    let mut made = Command::new("mosquitto_passwd");
    made.args(["-c", "-b", passwords.to_str().unwrap(), "device-1", "right"]);
    assert!(made.output().expect("mosquitto_passwd runs").status.success());
    let broker = Mosquitto::start(&dir, &format!("allow_anonymous false\npassword_file {}", passwords.display()));
    let subscriber = Subscriber::start_as(&broker, "fleet/+/hb", &["-u", "device-1", "-P", "right"]);
    let v5 = "[target.mqtt]\nversion = \"5\"\nsession_expiry = \"10s\"\n";
    let ids = dir.write(
        "ids.csv",
        &(1..=200).fold("name,username,password\n".to_string(), |mut rows, i| {
            rows.push_str(&format!("d-{i},device-1,right\n"));
            rows
        }),
    );
    let text = scenario(&broker.url(), 0, &format!("identities = \"{ids}\"")).replace("devices = 0\n", "");
    let file = dir.write("s.toml", &text.replace("[[fleets]]", &format!("{v5}[[fleets]]")));
    let out_json = dir.path("r.json").to_str().unwrap().to_string();
    let out = fleetstorm(&["run", &file, "--quiet", "--out", &out_json]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    super::run::schema_check(&json);
    assert_eq!(json["scenario"]["target"]["mqtt"].as_str(), Some("5"));
    let t = &Report::load(std::path::Path::new(&out_json)).unwrap().totals;
    assert_eq!((t.scheduled, t.sent + t.missed, t.ok + t.failed, t.connects), (2_000, 2_000, t.sent, 200), "{t:?}");
    let received: u64 = subscriber.counts(t.sent, Duration::from_secs(20)).values().sum();
    assert!((t.ok..=t.sent).contains(&received), "received {received}: {t:?}");
    if t.failed == 0 && t.missed == 0 {
        assert_eq!((t.ok, received), (2_000, 2_000));
    }

    let wrong = dir.write("wrong.csv", "name,username,password\nd-1,device-1,wrong\n");
    let text = scenario(&broker.url(), 0, &format!("identities = \"{wrong}\"")).replace("devices = 0\n", "");
    let file = dir.write("wrong.toml", &text.replace("[[fleets]]", &format!("{v5}[[fleets]]")));
    let out = fleetstorm(&["run", &file, "--quiet", "--out", &out_json]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    let t = &Report::load(std::path::Path::new(&out_json)).unwrap().totals;
    assert!(t.sent > 0 && t.ok == 0 && t.errors.get("auth") == Some(&t.failed), "{t:?}");
    // mosquitto's MQTT 5 code for a wrong password: 0x86 or 0x87, as it
    // reads its password file; either is MQTT 5's, never 3.1.1's 5.
    let mqtt = t.codes.get("mqtt").expect("MQTT codes");
    let refused: u64 = ["134", "135"].iter().filter_map(|c| mqtt.get(*c)).sum();
    assert_eq!(refused, t.failed, "{mqtt:?}");
}

/// End-to-end delivery, measured: each fleet's observer (fleetstorm's
/// own subscriber) times every message from its intended time to its
/// delivery and counts what never came. mosquitto's ACL lets each device
/// write to its own `fleet/{device}/hb` only, so a second fleet's QoS 0
/// messages to `fleet/{device}/x/hb` are taken (QoS 0 has no answer) and
/// dropped: the report says all of them were lost, and none of the
/// first fleet's.
#[test]
fn observed_fleets_count_each_message_delivered_and_each_one_the_broker_dropped() {
    if !mosquitto_available() {
        return;
    }
    let _heavy = super::util::heavy();
    let dir = TempDir::new("mqtt-observe");
    let acl = dir.write("acl", "topic read fleet/#\npattern write fleet/%c/hb\n");
    let broker = Mosquitto::start(&dir, &format!("allow_anonymous true\nacl_file {acl}"));
    let text = format!(
        "name = \"observe\"\nseed = 3\nduration = \"5s\"\n[target]\nurl = \"{}\"\n[target.mqtt]\nversion = \"5\"\n\
         [[fleets]]\nname = \"kept\"\ndevices = 100\ninterval = \"1s\"\nprofile = \"mqtt\"\ndevice_name = \"k-{{index}}\"\n\
         [fleets.mqtt]\ntopic = \"fleet/{{device}}/hb\"\nqos = 1\nobserve = true\n\
         [[fleets]]\nname = \"dropped\"\ndevices = 50\ninterval = \"1s\"\nprofile = \"mqtt\"\ndevice_name = \"x-{{index}}\"\n\
         [fleets.mqtt]\ntopic = \"fleet/{{device}}/x/hb\"\nqos = 0\nobserve = true\n\
         [thresholds]\n\"fleets.kept.delivery.lost\" = \"== 0\"\n\"fleets.kept.delivery.p99\" = \"< 5s\"\n\
         \"fleets.dropped.delivery.lost\" = \"> 0\"\n\"delivery.duplicates\" = \"== 0\"\n",
        broker.url()
    );
    let file = dir.write("s.toml", &text);
    let out_json = dir.path("r.json").to_str().unwrap().to_string();
    let out = fleetstorm(&["run", &file, "--out", &out_json]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    super::run::schema_check(&json);
    let report = Report::load(std::path::Path::new(&out_json)).unwrap();
    let [kept, dropped] = &report.delivery[..] else { panic!("two observed fleets: {:?}", report.delivery) };
    let ok = report.fleets[0].ok;
    assert_eq!((kept.fleet.as_str(), kept.expected), ("kept", ok), "{kept:?}");
    assert!(ok > 0 && kept.delivered == ok && kept.lost == 0 && kept.duplicates == 0, "{kept:?}");
    assert!(kept.latency_ms.p50 > 0.0 && kept.latency_ms.p99 < 5_000.0, "{kept:?}");
    let written = report.fleets[1].unacknowledged;
    assert_eq!((dropped.fleet.as_str(), dropped.expected), ("dropped", written), "{dropped:?}");
    assert!(written > 0 && dropped.delivered == 0 && dropped.lost == written, "{dropped:?}");
    assert!(stdout.contains("fleet dropped: 0 of the") && stdout.contains(&format!("{written} lost")), "{stdout}");
    // The gates read the same counts: each threshold judged on its value.
    let judged: Vec<(&str, bool, Option<f64>)> =
        report.thresholds.iter().map(|t| (t.metric.as_str(), t.ok, t.actual)).collect();
    assert_eq!(
        judged,
        [
            ("fleets.kept.delivery.lost", true, Some(0.0)),
            ("fleets.kept.delivery.p99", true, Some(kept.latency_ms.p99)),
            ("fleets.dropped.delivery.lost", true, Some(written as f64)),
            ("delivery.duplicates", true, Some(0.0)),
        ]
    );
    // Every output shows it: the HTML and Markdown tables, JUnit's properties.
    let (html, md, junit) = (dir.path("r.html"), dir.path("r.md"), dir.path("r.xml"));
    let rendered = fleetstorm(&[
        "report",
        &out_json,
        "--html",
        html.to_str().unwrap(),
        "--summary-md",
        md.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let html = std::fs::read_to_string(html).unwrap();
    let row = format!("<tr><td>dropped</td><td>{written}</td><td>0</td><td><strong>{written}</strong></td>");
    assert!(html.contains("<table id=\"delivery\">") && html.contains(&row), "{html}");
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains(&format!("| kept | {ok} | {ok} | 0 | 0 |")), "{md}");
    let junit = std::fs::read_to_string(junit).unwrap();
    assert!(junit.contains(&format!("<property name=\"delivery.dropped.lost\" value=\"{written}\"/>")), "{junit}");
}

/// A fleet's login without an identities file: every device logs in with
/// the fleet's `username` template and a password from the environment
/// (never in the file); mosquitto's password file lets them in, and the
/// password shows nowhere: not in `sample`, not in the report.
#[test]
fn a_fleet_logs_in_with_a_user_name_template_and_a_password_from_the_environment() {
    if !mosquitto_available() {
        return;
    }
    let dir = TempDir::new("mqtt-login");
    let passwords = dir.path("passwords");
    let mut made = Command::new("mosquitto_passwd");
    made.args(["-c", "-b", passwords.to_str().unwrap(), "fleet-user", "pw-from-env-7"]);
    assert!(made.output().expect("mosquitto_passwd runs").status.success());
    let broker = Mosquitto::start(&dir, &format!("allow_anonymous false\npassword_file {}", passwords.display()));
    let login = "username = \"fleet-user\"\npassword = \"${env:FS_TEST_MQTT_PASSWORD}\"\n";
    let text =
        scenario(&broker.url(), 20, "device_name = \"d-{index}\"").replace("qos = 1\n", &format!("qos = 1\n{login}"));
    let file = dir.write("s.toml", &text.replace("duration = \"10s\"", "duration = \"3s\""));
    let out_json = dir.path("r.json").to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
            .args(args)
            .env("FS_TEST_MQTT_PASSWORD", "pw-from-env-7")
            .output()
            .unwrap()
    };
    let out = run(&["run", &file, "--out", &out_json]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let t = &Report::load(std::path::Path::new(&out_json)).unwrap().totals;
    assert!(t.ok > 0 && t.failed == 0 && t.connects == 20, "{t:?}");
    let sample = run(&["sample", &file, "--count", "1"]);
    let shown = String::from_utf8_lossy(&sample.stdout);
    assert!(
        shown.starts_with("PUBLISH fleet/d-0/hb qos=1 retain=false client_id=d-0 username=fleet-user password=***"),
        "{shown}"
    );
    let report = std::fs::read_to_string(&out_json).unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    for seen in [shown.as_ref(), report.as_str(), said.as_ref()] {
        assert!(!seen.contains("pw-from-env-7"), "the password shows: {seen}");
    }
    // Unset, the run is refused before it starts, saying which variable.
    let unset = fleetstorm(&["validate", &file]);
    assert_eq!(unset.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unset.stderr).contains("FS_TEST_MQTT_PASSWORD is not set"));
}

/// mosquitto killed and restarted while a fleet runs: each device's session
/// ends with no DISCONNECT, and each device reopens it by itself, at once
/// after its reconnect delay (doubling while refused), not at its next
/// heartbeat. Driven by events: the broker is killed once a subscriber has
/// seen every device, and the run interrupted once a subscriber on the new
/// broker has seen every device again. The report shows the storm (every
/// session lost, every device reopened, each reopening a connect, once)
/// and its books balance.
#[test]
fn a_broker_restarted_mid_run_gets_every_device_back_and_the_books_balance() {
    if !mosquitto_available() {
        return;
    }
    let _heavy = super::util::heavy();
    let dir = TempDir::new("mqtt-restart");
    let extra = "allow_anonymous true";
    let mut broker = Mosquitto::start(&dir, extra);
    let devices = 200u64;
    let fleet = "device_name = \"d-{index}\"";
    let text = scenario(&broker.url(), devices, fleet).replace("duration = \"10s\"", "duration = \"5m\"")
        + "[target.mqtt]\nreconnect_delay = \"200ms\"\nreconnect_max = \"1s\"\n"
        + "[thresholds]\n\"sessions.reopened\" = \">= 200\"\n\"sessions.ended_offline\" = \"== 0\"\n";
    let file = dir.write("s.toml", &text);
    let out_json = dir.path("r.json");
    let every_device = |subscriber: &Subscriber| {
        let mut seen = std::collections::BTreeSet::new();
        while (seen.len() as u64) < devices {
            match subscriber.received.recv_timeout(Duration::from_secs(60)) {
                Ok(topic) => {
                    seen.insert(topic);
                }
                Err(_) => panic!("only {} devices were seen", seen.len()),
            }
        }
    };
    let before = Subscriber::start(&broker, "fleet/+/hb");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", &file, "--quiet", "--out", out_json.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = Running(run);
    every_device(&before);
    drop(before);
    broker.restart(&dir, extra);
    let after = Subscriber::start(&broker, "fleet/+/hb");
    every_device(&after);
    Command::new("kill").args(["-INT", &run.0.id().to_string()]).status().unwrap();
    let status = run.0.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(6), "interrupted: {stderr}");
    let report = Report::load(&out_json).unwrap();
    let t = &report.totals;
    assert_eq!((t.scheduled, t.sent), (t.sent + t.missed, t.ok + t.failed + t.retry_pending), "{t:?}");
    let s = t.sessions.clone().expect("the sessions' counts");
    // Every device lost its session, idle (closed) or during a publish
    // (io, or a timeout), and opened a new one by itself: each reopening
    // is a connect, counted once.
    assert!(s.reopened >= devices, "{s:?}");
    assert_eq!(t.connects, devices + s.reopened, "{s:?}");
    let broken = t.errors.get("io").copied().unwrap_or(0) + t.errors.get("timeout").copied().unwrap_or(0);
    assert!(s.closed + broken >= devices, "{s:?} {:?}", t.errors);
    assert!(t.ok > 0 && t.failed > 0, "{t:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Gates on the sessions' counts see the storm.
    let gates: Vec<(&str, bool)> = report.thresholds.iter().map(|r| (r.metric.as_str(), r.ok)).collect();
    assert_eq!(gates, [("sessions.reopened", true), ("sessions.ended_offline", true)], "{:?}", report.thresholds);
    // Sessions open over time: never more than the devices, and all of
    // them again when the run was interrupted (each device had published
    // on its new session by then).
    let open: Vec<u64> = report.timeline.iter().map(|s| s.sessions_open.expect("a session run's timeline")).collect();
    assert!(open.iter().all(|n| *n <= devices) && open.last() == Some(&devices), "{open:?}");
}

/// `mqtts://` against mosquitto's TLS listener with the test PKI, which
/// requires a client certificate: with the CA and the client certificate
/// every session opens (its handshake timed) and every heartbeat is
/// acknowledged; with an unrelated CA every heartbeat fails as `tls`, the
/// first failure saying why; with no client certificate the broker refuses
/// the handshake.
#[test]
fn mqtts_sessions_check_the_broker_against_the_ca_and_show_the_client_certificate() {
    if !mosquitto_available() {
        return;
    }
    let pki = super::pki::Pki::new("mqtt-tls");
    let dir = TempDir::new("mqtt-tls-run");
    let config = format!(
        "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true",
        pki.path("ca.pem"),
        pki.path("server.pem"),
        pki.path("server.key")
    );
    let broker = Mosquitto::start(&dir, &config);
    let run = |name: &str, tls: &str| {
        let text = scenario(&broker.tls_url(), 20, "").replace("duration = \"10s\"", "duration = \"3s\"")
            + &format!("[target.tls]\n{tls}\n");
        let file = dir.write(&format!("{name}.toml"), &text);
        let out_json = dir.path(&format!("{name}.json")).to_str().unwrap().to_string();
        let out = fleetstorm(&["run", &file, "--out", &out_json]);
        (out, Report::load(std::path::Path::new(&out_json)).unwrap())
    };
    let (ca, cert, key, other) =
        (pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"), pki.path("other-ca.pem"));

    let (out, report) = run("good", &format!("ca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\""));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let t = &report.totals;
    assert_eq!((t.scheduled, t.sent, t.ok), (60, 60, 60), "{t:?}");
    assert_eq!(t.connects, 20);
    assert!(t.tls_handshake_ms.as_ref().is_some_and(|h| h.p50 > 0.0), "each session's handshake timed");
    let target = &report.scenario.target;
    assert_eq!(target.tls.as_ref().map(|t| t.to_string()), Some(format!("CA file {ca}, mutual TLS")));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("MQTT 3.1.1, TLS: CA file"), "{summary}");

    let (out, report) = run("other-ca", &format!("ca = \"{other}\"\ncert = \"{cert}\"\nkey = \"{key}\""));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "nothing succeeded: {stderr}");
    let t = &report.totals;
    assert_eq!((t.ok, t.errors.get("tls").copied()), (0, Some(t.failed)), "{:?}", t.errors);
    let why = report.first_errors.get("tls").expect("the first TLS failure, said");
    assert!(why.contains("certificate"), "{why}");

    let (out, report) = run("no-client-cert", &format!("ca = \"{ca}\""));
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    let t = &report.totals;
    assert_eq!(t.ok, 0, "the broker requires a client certificate: {:?}", t.errors);
}

/// QoS 0 has no acknowledgement: its heartbeats are ok once written,
/// counted as unacknowledged, and have no latency; the summary says so
/// rather than print the time to write, and a latency gate says it has
/// nothing to judge.
#[test]
fn qos_0_heartbeats_are_written_untimed_and_a_latency_gate_says_so() {
    if !mosquitto_available() {
        return;
    }
    let dir = TempDir::new("mqtt-qos0");
    let broker = Mosquitto::start(&dir, "allow_anonymous true");
    let text = scenario(&broker.url(), 20, "")
        .replace("duration = \"10s\"", "duration = \"3s\"")
        .replace("qos = 1", "qos = 0")
        + "[thresholds]\n\"latency.p99\" = \"< 1s\"\n";
    let file = dir.write("s.toml", &text);
    let out_json = dir.path("r.json").to_str().unwrap().to_string();
    let out = fleetstorm(&["run", &file, "--out", &out_json]);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "the latency gate fails: {summary}");
    let report = Report::load(std::path::Path::new(&out_json)).unwrap();
    let t = &report.totals;
    assert_eq!((t.sent, t.ok, t.unacknowledged), (60, 60, 60), "{t:?}");
    assert!(t.untimed() && t.series().iter().all(|(what, _)| *what != "latency"));
    assert!(summary.contains("60 of sensors's ok heartbeats were published at QoS 0"), "{summary}");
    assert!(!summary.contains("sensors  latency"), "no latency row: {summary}");
    assert!(summary.contains("no heartbeat was timed"), "{summary}");
}

/// A fleet's Will, as the broker sees it: devices that go silent in an
/// outage drop their sessions (as devices losing power do), so mosquitto
/// publishes each one's Will, once; with `offline = "disconnect"` they say
/// goodbye first and no Will is published. At the run's end every session
/// says goodbye, so no Will comes from a fleet that simply stopped.
/// (`mosquitto_sub` on the Wills' topics is the referee; a marker published
/// after the run ends what it counts.)
#[test]
fn devices_going_offline_drop_their_sessions_and_the_broker_publishes_their_wills() {
    if !mosquitto_available() {
        return;
    }
    let dir = TempDir::new("mqtt-will");
    let broker = Mosquitto::start(&dir, "allow_anonymous true");
    let outage = "[[fleets.events]]\nat = \"2s\"\nkind = \"outage\"\nshare = \"100%\"\nduration = \"2s\"\n";
    for offline in ["drop", "disconnect"] {
        let wills = Subscriber::start(&broker, "fleet/+/status");
        let text = scenario(&broker.url(), 20, &format!("device_name = \"d-{{index}}\"\n{outage}"))
            .replace("duration = \"10s\"", "duration = \"6s\"")
            + &format!(
                "offline = \"{offline}\"\n[fleets.mqtt.will]\ntopic = \"fleet/{{device}}/status\"\npayload = \"gone\"\nqos = 1\n"
            );
        let file = dir.write(&format!("{offline}.toml"), &text);
        let out_json = dir.path(&format!("{offline}.json")).to_str().unwrap().to_string();
        let out = fleetstorm(&["run", &file, "--quiet", "--out", &out_json]);
        assert_eq!(out.status.code(), Some(0), "{offline}: {}", String::from_utf8_lossy(&out.stderr));
        let marked = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &broker.port.to_string(),
                "-q",
                "1",
                "-t",
                "fleet/marker/status",
                "-m",
                ".",
            ])
            .status()
            .unwrap();
        assert!(marked.success());
        let got = wills.until("fleet/marker/status", Duration::from_secs(30));
        let report = Report::load(std::path::Path::new(&out_json)).unwrap();
        let s = report.totals.sessions.expect("sessions counted");
        assert_eq!(s.ended_offline, 20, "{offline}: every device went silent once: {s:?}");
        match offline {
            "drop" => {
                assert_eq!(got.len(), 20, "a Will per device: {got:?}");
                assert!(got.values().all(|n| *n == 1), "each once: {got:?}");
            }
            _ => assert!(got.is_empty(), "goodbyes, so no Will: {got:?}"),
        }
    }
}

/// A broker that stops answering for a while (SIGSTOP, then SIGCONT):
/// each device goes on publishing at its intended times into its
/// in-flight window, as a device's MQTT client does, and every message is
/// acknowledged once the broker is back, timed from its intended time
/// (the stall shows in the latency, not as messages never sent); with a
/// window of one, a device holds its messages back instead, and those
/// whose slots pass meanwhile are missed. Driven by events: the broker
/// is stopped once the subscriber has seen every device (every session
/// open), for 1.5 s, longer than two of a device's intervals.
#[test]
fn a_stalled_broker_gets_each_device_s_messages_at_their_times_within_its_in_flight_window() {
    if !mosquitto_available() {
        return;
    }
    let _heavy = super::util::heavy();
    let dir = TempDir::new("mqtt-window");
    let broker = Mosquitto::start(&dir, "allow_anonymous true");
    let devices = 5usize;
    let run_stalled = |name: &str, window: u16| {
        let subscriber = Subscriber::start(&broker, "fleet/+/hb");
        let text = scenario(&broker.url(), devices as u64, "device_name = \"d-{index}\"")
            .replace("duration = \"10s\"", "duration = \"4s\"")
            .replace("interval = \"1s\"", "interval = \"200ms\"")
            .replace("[target]\n", "[target]\ntimeout = \"20s\"\n")
            + &format!("[target.mqtt]\nin_flight = {window}\n");
        let file = dir.write(&format!("{name}.toml"), &text);
        let out_json = dir.path(&format!("{name}.json"));
        let run = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
            .args(["run", &file, "--quiet", "--out", out_json.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut run = Running(run);
        let mut seen = std::collections::BTreeSet::new();
        let mut received = 0u64;
        while seen.len() < devices {
            let topic = subscriber.received.recv_timeout(Duration::from_secs(60)).expect("every device publishes");
            seen.insert(topic);
            received += 1;
        }
        let pid = broker._process.0.id().to_string();
        assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
        std::thread::sleep(Duration::from_millis(1_500));
        assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
        let status = run.0.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut run.0.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(0), "{stderr}");
        let report = Report::load(&out_json).unwrap();
        let t = report.totals.clone();
        received += subscriber.counts(t.ok.saturating_sub(received), Duration::from_secs(20)).values().sum::<u64>();
        (t, received)
    };

    let (t, received) = run_stalled("window", 20);
    assert_eq!((t.sent, t.missed, t.ok, t.failed), (t.scheduled, 0, t.scheduled, 0), "{t:?}");
    assert_eq!(received, t.ok, "the subscriber got every message once the broker was back");
    assert!(t.latency_ms.max >= 1_400.0, "the stall, from the intended times: {:?}", t.latency_ms);

    let (t, received) = run_stalled("one", 1);
    assert!(t.missed > 0 && t.late > 0, "held back, and missed as slots passed: {t:?}");
    assert_eq!((t.sent + t.missed, t.ok), (t.scheduled, t.sent), "{t:?}");
    assert_eq!(received, t.ok);
}
