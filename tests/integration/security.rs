//! Security: planted secrets (a header from the environment, SigV4 keys)
//! appear in no output; outputs that cannot be written stop a run before
//! it starts; serve and the built-in target stay on loopback and cap what
//! a client may hold.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fleetstorm::server::ServeConfig;

use super::util::{TempDir, client, fleetstorm, spawn_serve, start_serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn planted_secrets_appear_in_no_output() {
    let header_secret = "hdr-PLANTED-5ecret-7f3a";
    let sigv4_secret = "sigv4/PLANTED+secret/KEY";
    let (mut serve, url) =
        spawn_serve(&["--require-header", &format!("x-api-key={header_secret}"), "--error-rate", "0.2"]);
    let dir = TempDir::new("secrets");
    let scenario = dir.write(
        "s.toml",
        &format!(
            "seed = 9\nduration = \"2s\"\n[target]\nurl = \"{url}\"\nheaders = {{ x-api-key = \"${{env:PLANTED_KEY}}\" }}\n\
             sigv4 = {{ region = \"us-east-2\" }}\n[[fleets]]\nname = \"s\"\ndevices = 20\ninterval = \"500ms\"\n\
             [thresholds]\n\"error_rate\" = \"< 1%\"\n"
        ),
    );
    let outputs = ["r.json", "r.html", "r.md", "r.xml", "r.hlog"].map(|f| dir.path(f));
    let s = |i: usize| outputs[i].to_str().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args([
            "run",
            &scenario,
            "--out",
            &s(0),
            "--html",
            &s(1),
            "--summary-md",
            &s(2),
            "--junit",
            &s(3),
            "--hlog",
            &s(4),
        ])
        .env("PLANTED_KEY", header_secret)
        .env("AWS_ACCESS_KEY_ID", "AKIDPLANTED")
        .env("AWS_SECRET_ACCESS_KEY", sigv4_secret)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    // The header reached serve (else 401s) and the run is gated by its threshold.
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let mut texts =
        vec![String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string()];
    texts.extend(outputs.iter().map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).to_string()));
    assert!(texts[2].contains("${env:PLANTED_KEY}"), "the report shows the placeholder");
    for (i, text) in texts.iter().enumerate() {
        for secret in [header_secret, sigv4_secret] {
            assert!(!text.contains(secret), "output {i} leaks a secret");
        }
    }
    // And the report's summary of the target says how requests are signed, not with what.
    assert!(texts[2].contains("sagemaker/us-east-2") && !texts[2].contains("AKIDPLANTED"));
}

#[test]
fn planted_device_credentials_appear_in_no_output_for_any_profile() {
    // Fleets of every device profile whose identities hold planted
    // tokens, passwords and keys (and a wrong one each, which serve
    // refuses), a shadow fleet signing with planted AWS keys and a custom
    // one sending a planted key from the environment, against serve with
    // injected errors: no output shows one.
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let dir = TempDir::new("device-secrets");
    let (token, password, key) = ("tbPLANTEDtok3n", "honoPLANTEDpassw0rd", b64("azure PLANTED device key"));
    let wrong = ["tbPLANTEDwrong", "honoPLANTEDwrong"];
    let files = [
        (
            "thingsboard",
            "tb.csv",
            format!("name,token\nm-0,{token}\nm-1,{token}1\n"),
            format!("name,token\nm-0,{token}\nm-1,{}\n", wrong[0]),
        ),
        (
            "hono",
            "hono.csv",
            format!("name,tenant,auth_id,password\ns-0,t1,s0,{password}\ns-1,t1,s1,{password}1\n"),
            format!("name,tenant,auth_id,password\ns-0,t1,s0,{password}\ns-1,t1,s1,{}\n", wrong[1]),
        ),
        (
            "azure-iot-hub",
            "az.csv",
            format!("name,key\nc-0,{key}\nc-1,{key}\n"),
            format!("name,key\nc-0,{key}\nc-1,{}\n", b64("PLANTED wrong")),
        ),
    ];
    // Half the requests get an injected error: each fleet's 20 requests
    // then have both kinds, but for a chance of about 2 in a million each
    // (at 0.2, one run in about 90 had a fleet with no injected error).
    let mut serve_args: Vec<String> = vec!["--error-rate".into(), "0.5".into()];
    let mut fleets = String::new();
    for (profile, file, served, sent) in &files {
        let served = dir.write(&format!("serve-{file}"), served);
        dir.write(file, sent);
        serve_args.extend([
            "--profile".into(),
            profile.to_string(),
            "--identities".into(),
            format!("{profile}={served}"),
        ]);
        fleets.push_str(&format!(
            "[[fleets]]\nname = \"{}\"\nprofile = \"{profile}\"\nidentities = \"{file}\"\ninterval = \"200ms\"\n",
            &file[..file.len() - 4].replace('.', "")
        ));
    }
    serve_args.extend(["--profile".into(), "aws-iot-shadow".into()]);
    fleets.push_str(
        "[[fleets]]\nname = \"pumps\"\nprofile = \"aws-iot-shadow\"\ndevices = 2\ninterval = \"200ms\"\n\
         [[fleets]]\nname = \"trackers\"\nprofile = \"custom\"\ndevices = 2\ninterval = \"200ms\"\n\
         [fleets.custom]\npath = \"/v1/${device.name}\"\nheaders = { x-api-key = \"${env:PLANTED_CUSTOM_KEY}\" }\n\
         body = '{\"d\": ${device.name}}'\n",
    );
    let args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let (mut serve, url) = spawn_serve(&args);
    let scenario = dir.write(
        "s.toml",
        &format!(
            "seed = 9\nduration = \"2s\"\n[target]\nurl = \"{url}\"\nsigv4 = {{ region = \"us-east-2\", service = \"iotdata\" }}\n\
             {fleets}[thresholds]\n\"error_rate\" = \"< 1%\"\n"
        ),
    );
    let outputs = ["r.json", "r.html", "r.md", "r.xml", "r.hlog"].map(|f| dir.path(f));
    let s = |i: usize| outputs[i].to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "AKIDPLANTED")
            .env("AWS_SECRET_ACCESS_KEY", "aws/PLANTED+secret")
            .env_remove("AWS_SESSION_TOKEN")
            .env("PLANTED_CUSTOM_KEY", "customPLANTEDkey")
            .output()
            .unwrap()
    };
    let out = run(&[
        "run",
        &scenario,
        "--out",
        &s(0),
        "--html",
        &s(1),
        "--summary-md",
        &s(2),
        "--junit",
        &s(3),
        "--hlog",
        &s(4),
    ]);
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let report = fleetstorm::report::Report::load(&outputs[0]).unwrap();
    let http = fleetstorm::stats::Code::Http;
    assert!(report.totals.answers_with(http(401)) > 0, "the wrong credentials reached serve");
    assert!(report.totals.ok > 0, "the right ones too");
    let pumps = report.fleets.iter().find(|f| f.name.as_deref() == Some("pumps")).unwrap();
    assert!(pumps.ok > 0, "the shadow requests were signed: {pumps:?}");
    // serve's injected errors act on every profile's requests (the custom
    // fleet's go to paths this serve does not answer: 404).
    let injected = fleetstorm::server::Faults::default().error_status().to_string();
    for f in report.fleets.iter().filter(|f| f.name.as_deref() != Some("trackers")) {
        let answers = f.codes.get("http").and_then(|c| c.get(&injected)).copied();
        assert!(answers > Some(0), "{:?}: {:?}", f.name, f.codes);
    }
    let mut texts = vec![out.stdout, out.stderr];
    texts.extend(outputs.iter().map(|p| std::fs::read(p).unwrap()));
    for command in [&["validate", &scenario][..], &["sample", &scenario, "--count", "30"]] {
        let o = run(command);
        assert!(o.status.success(), "{command:?}");
        texts.extend([o.stdout, o.stderr]);
    }
    for (i, text) in texts.iter().enumerate() {
        let text = String::from_utf8_lossy(text);
        assert!(!text.contains("PLANTED"), "output {i} leaks a credential");
        for secret in [token, password, &key] {
            assert!(!text.contains(secret), "output {i} leaks a credential");
        }
    }
}

#[test]
fn unwritable_outputs_stop_a_run_before_it_starts() {
    let dir = TempDir::new("unwritable");
    let scenario = dir.write("s.toml", "duration = \"30s\"\n[[fleets]]\nname = \"s\"\ndevices = 5\n");
    for flag in ["--out", "--html", "--summary-md", "--junit", "--hlog"] {
        let started = std::time::Instant::now();
        let out = fleetstorm(&["run", &scenario, "--quiet", flag, "/nonexistent-dir/out.file"]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot write /nonexistent-dir/out.file"), "{flag}: {err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{flag}: refused before the 30 s run");
    }
    let out = fleetstorm(&["run", &scenario, "--quiet", "--out", dir.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("it is a directory"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stays_on_loopback_and_caps_what_clients_hold() {
    assert!(ServeConfig::default().addr.ip().is_loopback(), "serve binds loopback by default");
    let help = fleetstorm(&["serve", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: 127.0.0.1:8080]"));
    // The built-in target listens on loopback only.
    let dir = TempDir::new("builtin-loopback");
    let json = dir.path("r.json");
    let scenario =
        dir.write("s.toml", "duration = \"1s\"\n[[fleets]]\nname = \"s\"\ndevices = 2\ninterval = \"500ms\"\n");
    let out = fleetstorm(&["run", &scenario, "--quiet", "--out", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let report = fleetstorm::report::Report::load(&json).unwrap();
    assert!(report.scenario.target.url.starts_with("builtin (http://127.0.0.1:"), "{}", report.scenario.target.url);

    // Connections beyond the cap are closed on accept; bodies and heads are capped.
    let server = start_serve(ServeConfig { max_connections: 2, ..ServeConfig::default() }).await;
    let (addr, shared) = (server.addr, server.shared.clone());
    let open = || shared.metrics.connections_open.load(Ordering::Relaxed);
    let held: Vec<tokio::net::TcpStream> =
        futures_util::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(addr)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    wait_until("serve holds both connections", || open() == 2).await;
    // A third is closed at once, without an answer: end of stream or a reset.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /stats HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let _ = third.write_all(request.as_bytes()).await; // may already meet the close
    let mut answer = Vec::new();
    match third.read_to_end(&mut answer).await {
        Ok(_) => assert!(answer.is_empty(), "closed without an answer: {}", String::from_utf8_lossy(&answer)),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(shared.metrics.refused_connections.load(Ordering::Relaxed) >= 1);
    drop(held);
    wait_until("serve counts the held connections closed", || open() == 0).await;
    let stats = super::util::get_json(&client(), &format!("{}/stats", server.url())).await;
    assert!(stats["refused_connections"].as_u64() >= Some(1), "{stats}");
    let big = vec![b'x'; fleetstorm::server::MAX_BODY + 1];
    let (status, _, _) = super::util::post(&client(), &format!("{}/SendHeartbeat", server.url()), big).await;
    assert_eq!(status, 413);
    // A head above 64 KiB: 431, or the connection closed while it is
    // still being written (a reset, or a broken pipe).
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let huge = format!("POST /SendHeartbeat HTTP/1.1\r\nHost: {addr}\r\nx-big: {}\r\n\r\n", "h".repeat(100 * 1024));
    let written = stream.write_all(huge.as_bytes()).await;
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    let closed =
        |e: &std::io::Error| matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe);
    assert!(
        answer.starts_with("HTTP/1.1 431") || written.as_ref().is_err_and(closed) || read.as_ref().is_err_and(closed),
        "an oversized head is refused: {written:?} {read:?} {answer}"
    );
    // And serve is still there.
    let stats = super::util::get_json(&client(), &format!("{}/stats", server.url())).await;
    assert!(stats["connections"]["total"].as_u64() > Some(3), "{stats}");
    server.shutdown().await;
}

/// Waits until `done` holds, checking every 5 ms; fails after 30 s (a
/// bound for a broken server, not a synchronisation).
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "still waiting after 30 s: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
