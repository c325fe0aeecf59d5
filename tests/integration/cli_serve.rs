//! `fleetstorm serve` as a process: it prints its address, answers, and on
//! SIGTERM or SIGINT stops accepting, finishes, prints its final stats and
//! exits 0.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::util::{client, get_json, heartbeat, post};

async fn serve_then_signal(signal: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["serve", "--addr", "127.0.0.1:0", "--body-timeout", "120s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let url = first.trim().strip_prefix("fleetstorm serve listening on ").expect("the address line").to_string();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let c = client();
    assert_eq!(post(&c, &format!("{url}/SendHeartbeat"), heartbeat("cli", "d1")).await.0, 200);

    // A request in flight when the signal arrives still gets its answer:
    // its body is held back until serve has stopped accepting.
    let body = heartbeat("cli", "d2");
    let (sent, held) = body.split_at(body.len() / 2);
    let mut in_flight = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("POST /SendHeartbeat HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n", body.len());
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight.write_all(sent).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_json(&c, &format!("{url}/stats")).await["in_flight"] != 1 {
        assert!(Instant::now() < deadline, "serve never had the request in flight");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "serve still accepts 30 s after the signal");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    in_flight.write_all(held).await.unwrap();
    let mut answer = String::new();
    in_flight.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let stats: serde_json::Value = serde_json::from_str(rest.trim()).expect("final stats as JSON");
    assert_eq!(stats["accepted"], 2);
}

#[tokio::test]
async fn sigterm_stops_gracefully() {
    serve_then_signal("-TERM").await;
}

#[tokio::test]
async fn sigint_stops_gracefully() {
    serve_then_signal("-INT").await;
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    for (args, message) in [
        (&["serve", "--error-rate", "1.5"][..], "error_rate is 1.5"),
        (&["serve", "--workers", "4"][..], "workers needs service_time"),
        (&["serve", "--latency", "gamma:1s"][..], "unknown distribution"),
        (&["serve", "--service-time", "fast", "--workers", "1"][..], "not a duration"),
    ] {
        // In this process: each is refused before serve binds anything.
        let (code, err) = super::util::execute(args);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

#[test]
fn beyond_loopback_with_open_control_endpoints_serve_refuses_to_start_and_names_the_fix() {
    // Refused before binding (so no traffic leaves loopback): exit 2.
    let out = super::util::fleetstorm(&["serve", "--addr", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("open to anyone") && err.contains("--admin-token") && err.contains("--allow-open-control"),
        "{err}"
    );
}

#[tokio::test]
async fn serve_listens_on_a_host_name() {
    // `localhost` resolves to a loopback address, so control stays open.
    let (mut child, url) = super::util::spawn_serve_at("localhost:0", &[]);
    let host = url.trim_start_matches("http://");
    let addr: std::net::SocketAddr = host.parse().unwrap_or_else(|e| panic!("{host}: {e}"));
    assert!(addr.ip().is_loopback(), "{addr}");
    let c = super::util::client();
    let stats = super::util::get_json(&c, &format!("{url}/stats")).await;
    assert_eq!(stats["accepted"], 0);
    // A run aimed at it by that name is addressed to loopback: answered.
    let dir = super::util::TempDir::new("localhost-target");
    let file = dir
        .write("s.toml", "seed = 1\nduration = \"1s\"\n[[fleets]]\nname = \"f\"\ndevices = 5\ninterval = \"500ms\"\n");
    let json = dir.path("r.json");
    let target = format!("http://localhost:{}", addr.port());
    let out = tokio::task::spawn_blocking(move || {
        super::util::fleetstorm(&["run", &file, "--quiet", "--target", &target, "--out", json.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = super::util::get_json(&c, &format!("{url}/stats")).await;
    assert!(stats["accepted"].as_u64() > Some(0) && stats["responses"].get("403").is_none(), "{stats}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_target_url_may_carry_the_heartbeat_s_path() {
    let (mut serve, url) = super::util::spawn_serve(&[]);
    let dir = super::util::TempDir::new("url-path");
    let file = dir
        .write("p.toml", "seed = 1\nduration = \"1s\"\n[[fleets]]\nname = \"f\"\ndevices = 10\ninterval = \"500ms\"\n");
    let json = dir.path("p.json");
    let run = |target: &str| {
        super::util::fleetstorm(&["run", &file, "--quiet", "--target", target, "--out", json.to_str().unwrap()])
    };
    let out = run(&format!("{url}/SendHeartbeat"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = fleetstorm::report::Report::load(&json).unwrap();
    assert_eq!((report.scenario.target.path.as_str(), report.totals.failed), ("/SendHeartbeat", 0));
    // Another path reaches serve as given: 404 for every heartbeat.
    let out = run(&format!("{url}/api/v2/heartbeats"));
    assert_eq!(out.status.code(), Some(5), "nothing succeeded");
    let report = fleetstorm::report::Report::load(&json).unwrap();
    assert_eq!(report.scenario.target.path, "/api/v2/heartbeats");
    assert_eq!(report.totals.codes.get("http").and_then(|c| c.get("404")), Some(&report.totals.sent));
    assert_eq!(report.totals.errors["rejected"], report.totals.sent, "a 404 is a rejected message");
    let _ = serve.kill();
    let _ = serve.wait();
    // In the file, the path may be in the url or in path, not both ways.
    let twice = dir.write(
        "twice.toml",
        "[target]\nurl = \"http://127.0.0.1:9/a\"\npath = \"/b\"\n[[fleets]]\nname = \"f\"\ndevices = 1\n",
    );
    let out = super::util::fleetstorm(&["validate", &twice]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the path is given twice"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_run_against_a_full_serve_reports_its_507s() {
    let mut serve = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["serve", "--addr", "127.0.0.1:0", "--max-devices", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(serve.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let url = first.trim().strip_prefix("fleetstorm serve listening on ").expect("the address line").to_string();
    let mut said = String::new();
    BufReader::new(serve.stderr.take().unwrap()).read_line(&mut said).unwrap();
    assert_eq!(said.trim(), "fleetstorm serve: at most 4 devices (--max-devices)");
    let dir = super::util::TempDir::new("full-serve");
    let file = dir
        .write("s.toml", "seed = 1\nduration = \"1s\"\n[[fleets]]\nname = \"f\"\ndevices = 10\ninterval = \"500ms\"\n");
    let json = dir.path("r.json");
    let out = super::util::fleetstorm(&["run", &file, "--quiet", "--target", &url, "--out", json.to_str().unwrap()]);
    let _ = serve.kill();
    let _ = serve.wait();
    let report = fleetstorm::report::Report::load(&json).unwrap();
    let refused = report.totals.answers_with(fleetstorm::stats::Code::Http(507));
    assert!(refused > 0 && report.totals.ok > 0, "{}\n{}", report.summary(), String::from_utf8_lossy(&out.stderr));
    assert_eq!(report.totals.ok + refused, report.totals.sent, "{}", report.summary());
}

/// serve's exit code and stderr for `args` and `env`, which must make it
/// refuse to start (it is killed, and the test fails, after 30 s).
fn serve_refuses(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    // stderr closes when serve exits, or stays open while it serves.
    let reader = std::thread::spawn({
        let mut stderr = child.stderr.take().unwrap();
        move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve {args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    err.push_str(&reader.join().unwrap());
    (status.code(), err)
}

#[test]
fn credentials_given_two_ways_or_empty_are_usage_errors_that_show_no_credential() {
    let dir = super::util::TempDir::new("serve-secret-errors");
    let secret = "PLANTEDs3cret";
    let token = dir.write("token", &format!("{secret}\n"));
    let empty = dir.write("empty", " \n");
    let no_equals = dir.write("no-equals", secret);
    for (args, env, says) in [
        (
            &["--admin-token", secret][..],
            &[("FLEETSTORM_ADMIN_TOKEN", secret)][..],
            "--admin-token and FLEETSTORM_ADMIN_TOKEN are both given",
        ),
        (&["--admin-token", secret, "--admin-token-file", &token][..], &[][..], "cannot be used with"),
        (&["--require-bearer-file", &token], &[("FLEETSTORM_REQUIRE_BEARER", secret)], "--require-bearer-file and"),
        (&["--require-bearer-file", &empty], &[], "is empty"),
        (&["--admin-token-file", "/nonexistent/token"], &[], "--admin-token-file /nonexistent/token: cannot read it"),
        (&[], &[("FLEETSTORM_ADMIN_TOKEN", "")], "FLEETSTORM_ADMIN_TOKEN is empty"),
        (&["--require-header-file", &no_equals], &[], "--require-header-file: write NAME=VALUE"),
        (
            &[],
            &[("FLEETSTORM_REQUIRE_BEARER", secret), ("FLEETSTORM_REQUIRE_HEADER", "x-key=PLANTEDs3cret")],
            "heartbeats take one credential",
        ),
    ] {
        let (code, err) = serve_refuses(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(says), "{args:?} {env:?}: {err}");
        assert!(!err.contains(secret), "{args:?} {env:?}: the message shows the credential: {err}");
    }
}

#[tokio::test]
async fn credentials_from_a_file_or_the_environment_guard_serve_and_stay_out_of_its_argv() {
    use super::util::{send, spawn_serve_with};
    use http::Method;
    let dir = super::util::TempDir::new("serve-secrets");
    let (admin, bearer, key) = ("adminPLANTEDt0ken", "bearerPLANTEDt0ken", "keyPLANTEDvalue");
    let admin_file = dir.write("admin-token", &format!("{admin}\n"));
    let header_file = dir.write("header", &format!("x-api-key={key}\n"));
    let c = client();
    let json = ("content-type", "application/json");
    let admin_header = format!("Bearer {admin}");
    let bearer_header = format!("Bearer {bearer}");
    for (args, env, heartbeat_credential) in [
        (
            vec!["--admin-token-file", admin_file.as_str()],
            vec![("FLEETSTORM_REQUIRE_BEARER", bearer)],
            ("authorization", bearer_header.as_str()),
        ),
        (
            vec!["--require-header-file", header_file.as_str()],
            vec![("FLEETSTORM_ADMIN_TOKEN", admin)],
            ("x-api-key", key),
        ),
    ] {
        let (mut serve, url) = spawn_serve_with("127.0.0.1:0", &args, &env);
        let argv = std::fs::read(format!("/proc/{}/cmdline", serve.id())).unwrap();
        let argv = String::from_utf8_lossy(&argv);
        assert!(![admin, bearer, key].iter().any(|s| argv.contains(s)), "a credential in argv: {argv}");
        let faults = format!("{url}/faults");
        let refused = send(&c, Method::POST, &faults, &[json], "{}").await.unwrap();
        assert_eq!(refused.0, 401, "{args:?}: control without the admin token");
        let allowed = send(&c, Method::POST, &faults, &[json, ("authorization", &admin_header)], "{}").await.unwrap();
        assert_eq!(allowed.0, 200, "{args:?}: control with it");
        let hb = format!("{url}/SendHeartbeat");
        let refused = send(&c, Method::POST, &hb, &[], heartbeat("f", "d")).await.unwrap();
        assert_eq!(refused.0, 401, "{args:?}: a heartbeat without its credential");
        let allowed = send(&c, Method::POST, &hb, &[heartbeat_credential], heartbeat("f", "d")).await.unwrap();
        assert_eq!(allowed.0, 200, "{args:?}: a heartbeat with it");
        let _ = serve.kill();
        let _ = serve.wait();
    }
}
