//! What a run says is what happened: the first answer of each error
//! status comes with what its body said and what to check.

use fleetstorm::report::Report;

use super::util::{TempDir, fleetstorm, spawn_serve};

#[test]
fn a_401_comes_with_what_the_backend_said_and_what_to_check() {
    // serve wants a bearer token; the scenario sends none.
    let (mut serve, url) = spawn_serve(&["--require-bearer", "the-right-token"]);
    let dir = TempDir::new("says-401");
    let scenario = dir.write(
        "s.toml",
        &format!(
            "name = \"no-token\"\nseed = 1\nduration = \"1s\"\n[target]\nurl = \"{url}\"\ntimeout = \"2s\"\n\
             [[fleets]]\nname = \"meters\"\ndevices = 5\ninterval = \"500ms\"\n"
        ),
    );
    let json = dir.path("r.json");
    let run = fleetstorm(&["run", &scenario, "--quiet", "--out", json.to_str().unwrap()]);
    let _ = serve.kill();
    let _ = serve.wait();
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert_eq!(run.status.code(), Some(5), "nothing succeeded: {stdout}{}", String::from_utf8_lossy(&run.stderr));
    let line = stdout.lines().find(|l| l.starts_with("first http_401 error: ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("missing or wrong credentials"), "serve's message: {line}");
    assert!(line.contains("the scenario's headers, the identities file"), "what to check: {line}");
    let report = Report::load(&json).unwrap();
    assert_eq!(report.first_errors.get("http_401").map(String::as_str), line.strip_prefix("first http_401 error: "));
}

/// A port on 127.0.0.1 nothing listens on, held for the test's length:
/// bound, never listening, so no other test's server can take it.
fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = closed.local_addr().unwrap().port();
    (closed, port)
}

fn refused_scenario(port: u16, duration: &str, abort: &str) -> String {
    format!(
        "name = \"refused\"\nseed = 2\nduration = \"{duration}\"\n[target]\nurl = \"http://127.0.0.1:{port}\"\n\
         timeout = \"1s\"\n[[fleets]]\nname = \"meters\"\ndevices = 5\ninterval = \"200ms\"\n\
         [[fleets.events]]\nat = \"0s\"\nkind = \"outage\"\nshare = \"40%\"\nduration = \"1s\"\n\
         [thresholds.abort]\n{abort}\n"
    )
}

#[test]
fn a_target_refusing_every_connection_stops_the_run_after_the_grace_and_it_says_why() {
    let (_held, port) = closed_port();
    let dir = TempDir::new("says-refused");
    let scenario = dir.write("s.toml", &refused_scenario(port, "60s", "stop_when_nothing_succeeds = \"1s\""));
    let json = dir.path("r.json");
    let run = fleetstorm(&["run", &scenario, "--quiet", "--out", json.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert_eq!(run.status.code(), Some(5), "the run failed: {stdout}{stderr}");
    let report = Report::load(&json).unwrap();
    super::run::schema_check(&serde_json::to_value(&report).unwrap());
    let stopped = report.stopped.as_ref().unwrap_or_else(|| panic!("not stopped: {stdout}"));
    assert_eq!(stopped.after_s, 1.0);
    // Stopped once the grace had passed, and the run's window ended there,
    // far short of the 60 s planned.
    assert!(stopped.at_s >= 1.0 && report.duration_s < 30.0, "{stopped:?}, ran {} s", report.duration_s);
    assert!(!report.interrupted, "stopped is not interrupted");
    assert_eq!((report.totals.ok, report.totals.errors.get("connect").copied().unwrap_or(0) > 0), (0, true));
    let said = "FAILED: stopped: nothing succeeded in the first 1s";
    assert!(stdout.contains(said), "{stdout}");
    assert!(stderr.contains("the run failed: stopped: nothing succeeded in the first 1s"), "{stderr}");
}

#[test]
fn a_run_that_starts_in_an_outage_is_not_stopped_when_told_so() {
    let (_held, port) = closed_port();
    let dir = TempDir::new("says-outage");
    let scenario = dir.write("s.toml", &refused_scenario(port, "3s", "stop_when_nothing_succeeds = \"off\""));
    let json = dir.path("r.json");
    let run = fleetstorm(&["run", &scenario, "--quiet", "--out", json.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    let report = Report::load(&json).unwrap();
    assert!(report.stopped.is_none() && !report.interrupted, "{stdout}");
    assert_eq!(report.duration_s, 3.0, "ran its whole duration: {stdout}");
    assert!(report.totals.failed > 0 && report.totals.ok == 0, "{stdout}");
    assert!(!stdout.contains("stopped:"), "{stdout}");
}
