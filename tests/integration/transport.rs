//! The transport end to end on loopback: HTTPS verified against a test CA,
//! mutual TLS accepted with the right client certificate and refused
//! without, HTTP/2 over TLS and h2c (serve counts the protocol), a bearer
//! token from the environment reaching serve (and nowhere else).

use fleetstorm::report::Report;
use fleetstorm::scenario::{self, Format};
use fleetstorm::server::ServeConfig;
use tokio_util::sync::CancellationToken;

use super::pki::Pki;
use super::run::schema_check;
use super::util::{TempDir, fleetstorm, start_serve};

async fn run(text: &str) -> Report {
    let s = scenario::parse(text, Format::Toml, "tls.toml", "tls").unwrap_or_else(|e| panic!("{e}"));
    fleetstorm::run::execute(&s, 1, CancellationToken::new(), |_| {}).await.unwrap()
}

fn scenario_text(url: &str, target: &str, devices: u64) -> String {
    format!(
        "seed = 1\nduration = \"2s\"\n[target]\nurl = \"{url}\"\n{target}\n[[fleets]]\nname = \"t\"\ndevices = {devices}\ninterval = \"500ms\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_against_a_test_ca_and_mutual_tls() {
    let pki = Pki::new("pki-https");
    // Plain HTTPS, verified against the test CA.
    let server = start_serve(ServeConfig { tls: Some(pki.serve_tls(false)), ..ServeConfig::default() }).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let report = run(&scenario_text(&url, &format!("tls = {{ ca = \"{}\" }}", pki.path("ca.pem")), 20)).await;
    let stats = server.shared.stats_json();
    server.shutdown().await;
    let t = &report.totals;
    assert!(t.ok >= 70 && t.failed == 0, "{t:?}\n{:?}", report.first_errors);
    assert_eq!(stats["tls"]["handshakes"].as_u64(), Some(t.connects), "{stats}");
    assert_eq!(stats["protocols"]["HTTP/1.1"].as_u64(), Some(t.ok));
    let handshake = t.tls_handshake_ms.expect("handshakes measured");
    assert!(handshake.p50 > 0.0 && handshake.max < 2000.0, "{handshake:?}");
    let tls = report.scenario.target.tls.as_ref().map(ToString::to_string);
    assert_eq!(tls.as_deref(), Some(format!("CA file {}", pki.path("ca.pem")).as_str()));
    schema_check(&serde_json::to_value(&report).unwrap());

    // Mutual TLS: accepted with the client certificate...
    let server = start_serve(ServeConfig { tls: Some(pki.serve_tls(true)), ..ServeConfig::default() }).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let with_cert = format!(
        "tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}",
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let report = run(&scenario_text(&url, &with_cert, 10)).await;
    assert!(report.totals.ok >= 30 && report.totals.failed == 0, "{:?}", report.first_errors);
    // ...refused without it: every heartbeat fails as `tls`, with one clear message.
    let report = run(&scenario_text(&url, &format!("tls = {{ ca = \"{}\" }}", pki.path("ca.pem")), 10)).await;
    let stats = server.shared.stats_json();
    server.shutdown().await;
    let t = &report.totals;
    assert_eq!(t.ok, 0);
    assert_eq!(t.errors["tls"], t.failed, "{:?} {:?}", t.errors, report.first_errors);
    let e = &report.first_errors["tls"];
    assert!(e.contains("the server requires a client certificate: set tls.cert and tls.key"), "{e}");
    assert!(stats["tls"]["failures"].as_u64() > Some(0));

    // insecure = true accepts a certificate it cannot verify, and the summary says so.
    let server = start_serve(ServeConfig { tls: Some(pki.serve_tls(false)), ..ServeConfig::default() }).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let report = run(&scenario_text(&url, "tls = { insecure = true }", 5)).await;
    assert!(report.totals.ok > 0 && report.totals.failed == 0);
    assert!(report.summary().contains("WARNING: tls.insecure"), "{}", report.summary());
    // A server certificate from another CA is refused as `tls`.
    let report = run(&scenario_text(&url, &format!("tls = {{ ca = \"{}\" }}", pki.path("other-ca.pem")), 5)).await;
    server.shutdown().await;
    assert_eq!(report.totals.errors["tls"], report.totals.failed);
    assert!(
        report.first_errors["tls"].contains("is not signed by a CA fleetstorm trusts"),
        "{:?}",
        report.first_errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_and_h2c_multiplex_a_small_pool() {
    let pki = Pki::new("pki-h2");
    let server = start_serve(ServeConfig { tls: Some(pki.serve_tls(false)), ..ServeConfig::default() }).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let target = format!("http = \"2\"\nconnections = {{ pool = 2 }}\ntls = {{ ca = \"{}\" }}", pki.path("ca.pem"));
    let report = run(&scenario_text(&url, &target, 200)).await;
    let stats = server.shared.stats_json();
    server.shutdown().await;
    let t = &report.totals;
    assert!(t.ok >= 700 && t.failed == 0, "{t:?} {:?}", report.first_errors);
    assert_eq!(stats["protocols"]["HTTP/2"].as_u64(), Some(t.ok), "{stats}");
    assert_eq!(stats["protocols"]["HTTP/1.1"].as_u64(), Some(0));
    assert!(t.connects <= 2 * 2, "a pool of 2 per run shares streams: {} connections", t.connects);
    assert_eq!(report.scenario.target.http.as_deref(), Some("HTTP/2"));

    // h2c: HTTP/2 with prior knowledge on a plain connection.
    let server = start_serve(ServeConfig::default()).await;
    let report = run(&scenario_text(&server.url(), "http = \"2\"\nconnections = \"per-device\"", 20)).await;
    let stats = server.shared.stats_json();
    server.shutdown().await;
    assert!(report.totals.ok >= 70 && report.totals.failed == 0);
    assert_eq!(stats["protocols"]["HTTP/2"].as_u64(), Some(report.totals.ok), "{stats}");
}

#[test]
fn a_bearer_token_from_the_environment_reaches_serve_and_nothing_else() {
    let (mut serve, url) = super::util::spawn_serve(&["--require-bearer", "tok-5ecr3t"]);
    let dir = TempDir::new("bearer");
    let path = dir.write(
        "bearer.toml",
        &scenario_text(&url, "headers = { authorization = \"Bearer ${env:FLEETSTORM_TEST_TOKEN}\" }", 10),
    );
    let json = dir.path("r.json");
    let html = dir.path("r.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", &path, "--quiet", "--out", json.to_str().unwrap(), "--html", html.to_str().unwrap()])
        .env("FLEETSTORM_TEST_TOKEN", "tok-5ecr3t")
        .output()
        .unwrap();
    // The wrong token is refused: the check is real.
    let wrong = std::process::Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", &path, "--quiet"])
        .env("FLEETSTORM_TEST_TOKEN", "wrong")
        .output()
        .unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let report = Report::load(&json).unwrap();
    assert!(report.totals.ok >= 30 && report.totals.failed == 0);
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("401: "), "{}", String::from_utf8_lossy(&wrong.stdout));
    // The secret appears in no output.
    for text in [
        stdout.to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        std::fs::read_to_string(&json).unwrap(),
        std::fs::read_to_string(&html).unwrap(),
    ] {
        assert!(!text.contains("tok-5ecr3t"), "the token leaked");
    }
    assert_eq!(report.scenario.target.headers["authorization"], "Bearer ${env:FLEETSTORM_TEST_TOKEN}");
}

#[test]
fn https_target_files_are_checked_before_the_run() {
    let dir = TempDir::new("tls-files");
    let path =
        dir.write("bad.toml", &scenario_text("https://127.0.0.1:1", "tls = { ca = \"/nonexistent/ca.pem\" }", 1));
    for command in ["run", "validate"] {
        let out = fleetstorm(&[command, &path]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("tls.ca /nonexistent/ca.pem"), "{command}: {err}");
    }
    let path = dir.write("bad2.toml", &scenario_text("http://127.0.0.1:1", "tls = { insecure = true }", 1));
    let out = fleetstorm(&["validate", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("need an https:// or mqtts:// url"));
}

/// Runs a 2 s scenario with SigV4 against the botocore verifier, with
/// `secret` as fleetstorm's secret key; returns the verifier's counts and
/// the run's report.
fn sigv4_run(secret: &str) -> Option<(serde_json::Value, Report)> {
    use std::io::{BufRead, Read, Write};
    use std::process::{Command, Stdio};
    let available = Command::new("python3").args(["-c", "import botocore"]).output().is_ok_and(|o| o.status.success());
    if !available {
        assert!(std::env::var_os("CI").is_none(), "botocore is required in CI (pip install boto3)");
        eprintln!("SKIPPED: botocore is not installed; CI runs this test");
        return None;
    }
    let key = "AKIDFLEETSTORMTEST";
    let right = "fleetstorm/test/secret+KEY";
    let mut verifier = Command::new("python3")
        .arg(super::util::root().join("tests/interop/sigv4_server.py"))
        .args([key, right, "eu-west-1", "sagemaker"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(verifier.stdout.take().unwrap());
    let mut port = String::new();
    stdout.read_line(&mut port).unwrap();
    let dir = TempDir::new(&format!("sigv4-{}", secret.len()));
    let path = dir.write(
        "sigv4.toml",
        &scenario_text(&format!("http://127.0.0.1:{}", port.trim()), "sigv4 = { region = \"eu-west-1\" }", 10),
    );
    let json = dir.path("r.json");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", &path, "--quiet", "--out", json.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    verifier.stdin.take().unwrap().write_all(b"").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let _ = verifier.wait();
    let report = Report::load(&json).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    for text in [String::from_utf8_lossy(&out.stdout).to_string(), std::fs::read_to_string(&json).unwrap()] {
        assert!(!text.contains(secret), "the secret key leaked");
    }
    Some((serde_json::from_str(rest.trim()).unwrap(), report))
}

#[test]
fn sigv4_signatures_verify_with_botocore_and_a_wrong_key_is_caught() {
    let Some((counts, report)) = sigv4_run("fleetstorm/test/secret+KEY") else { return };
    assert!(counts["valid"].as_u64() >= Some(30), "{counts}");
    assert_eq!(counts["invalid"].as_u64(), Some(0), "{counts}");
    assert_eq!(report.totals.ok, counts["valid"].as_u64().unwrap());
    assert_eq!(report.scenario.target.sigv4.as_deref(), Some("sagemaker/eu-west-1"));

    let Some((counts, report)) = sigv4_run("not-the-secret") else { return };
    assert_eq!(counts["valid"].as_u64(), Some(0), "{counts}");
    assert_eq!(counts["reasons"]["signature mismatch"].as_u64(), counts["invalid"].as_u64(), "{counts}");
    assert_eq!(report.totals.errors["auth"], report.totals.sent, "every request refused with 403");
}

#[test]
fn source_addresses_lift_the_port_ceiling_in_a_network_namespace() {
    let namespaces = std::process::Command::new("unshare").args(["-n", "true"]).status().is_ok_and(|s| s.success());
    if !namespaces {
        assert!(std::env::var_os("CI").is_none(), "CI must allow `unshare -n` (root in the CI container)");
        eprintln!("SKIPPED: cannot create a network namespace here (unshare -n)");
        return;
    }
    let dir = TempDir::new("sources");
    let out = std::process::Command::new("unshare")
        .args(["-n", "bash"])
        .arg(super::util::root().join("tests/interop/source_addresses.sh"))
        .arg(env!("CARGO_BIN_EXE_fleetstorm"))
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Pinned to one source address: 3,000 connections cannot fit its
    // 500 (half the 1,000 ports).
    assert_eq!(r["validate_exit"], 2, "{r}");
    let refusal = r["refusal"].as_str().unwrap();
    assert!(
        refusal.contains("3000 concurrent connections") && refusal.contains("one source address carries 500"),
        "{refusal}"
    );
    assert!(refusal.contains("source_addresses") && refusal.contains("(6 addresses"), "{refusal}");
    // None given, toward loopback: spread over 127.0.0.1-6, all 3,000 held at once.
    assert_eq!(r["established_most"], 3000, "{r}");
    assert_eq!(r["distinct_sources"], 6, "{r}");
    assert_eq!(r["spread"], true, "{r}");
    assert_eq!(r["report_sources"].as_array().map(Vec::len), Some(6), "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["connects"], 3000, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard orders whole tests, each on its own runtime: nothing on this
// runtime waits for it.
#[allow(clippy::await_holding_lock)]
async fn eighteen_thousand_per_device_connections_on_loopback() {
    // serve and fleetstorm in separate processes: each holds one end of
    // every connection, under this machine's 20,000 open files per process.
    // Past one address's share of local ports (half the range), the
    // connections spread over 127.0.0.1 and .2 by themselves.
    let _turn = super::util::heavy();
    let (mut serve, url) = super::util::spawn_serve(&[]);
    let dir = TempDir::new("eighteen-k");
    let path = dir.write(
        "wide.toml",
        &format!(
            "seed = 4\nduration = \"12s\"\n[target]\nurl = \"{url}\"\nconnections = \"per-device\"\ntimeout = \"5s\"\n\
             [[fleets]]\nname = \"wide\"\ndevices = 18000\ninterval = \"10s\"\n"
        ),
    );
    let json = dir.path("r.json");
    let mut run = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", &path, "--quiet", "--out", json.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let c = super::util::client();
    let mut most = 0;
    let status = loop {
        tokio::select! {
            status = run.wait() => break status.unwrap(),
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                let stats = super::util::get_json(&c, &format!("{url}/stats")).await;
                // Less the one this poll uses.
                most = most.max(stats["connections"]["open"].as_u64().unwrap_or(0).saturating_sub(1));
            }
        }
    };
    let accepted = super::util::get_json(&c, &format!("{url}/stats")).await["accepted"].as_u64();
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(status.success());
    let report = Report::load(&json).unwrap();
    let t = &report.totals;
    assert_eq!(t.failed, 0, "no time-outs, nothing refused: {:?} {:?}", t.errors, report.first_errors);
    assert_eq!(t.connects, 18_000, "one connection per device, kept");
    assert_eq!(accepted, Some(t.ok), "serve accepted what the report counts ok");
    assert_eq!(most, 18_000, "serve held every device's connection at once");
    let target = &report.scenario.target;
    assert!(target.sources_spread, "{target:?}");
    assert_eq!(target.source_addresses, ["127.0.0.1", "127.0.0.2"]);
}

/// Makes a self-signed certificate as most people do for a staging
/// backend, with the openssl command line: `subject` and `san` as given.
fn openssl_self_signed(dir: &TempDir, name: &str, subject: &str, san: &str) -> Option<(String, String)> {
    let (cert, key) = (dir.path(&format!("{name}.pem")), dir.path(&format!("{name}.key")));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", subject, "-addext", &format!("subjectAltName={san}")])
        .output();
    match made {
        Ok(out) if out.status.success() => {
            Some((cert.to_str().unwrap().to_string(), key.to_str().unwrap().to_string()))
        }
        _ => {
            assert!(std::env::var_os("CI").is_none(), "openssl is needed (Debian's openssl package)");
            eprintln!("SKIPPED: openssl not available");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_given_as_the_ca_is_trusted_as_curl_trusts_it() {
    let dir = TempDir::new("tls-self-signed");
    let Some((cert, key)) = openssl_self_signed(&dir, "staging", "/CN=127.0.0.1", "IP:127.0.0.1") else { return };
    let tls = fleetstorm::server::ServeTls { cert: cert.clone().into(), key: key.into(), client_ca: None };
    let server = start_serve(ServeConfig { tls: Some(tls), ..ServeConfig::default() }).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    for http in ["HTTP/1.1", "HTTP/2"] {
        let target = format!("tls = {{ ca = \"{cert}\" }}\nhttp = \"{}\"", if http == "HTTP/2" { "2" } else { "1.1" });
        let report = run(&scenario_text(&url, &target, 10)).await;
        let t = &report.totals;
        assert!(t.ok >= 30 && t.failed == 0, "{http}: {t:?} {:?}", report.first_errors);
    }
    let stats = server.shared.stats_json();
    assert!(stats["protocols"]["HTTP/2"].as_u64() > Some(0) && stats["protocols"]["HTTP/1.1"].as_u64() > Some(0));
    // Trusting it is no blank cheque: the name is still checked.
    let report =
        run(&scenario_text(&url, &format!("tls = {{ ca = \"{cert}\", server_name = \"ingest.internal\" }}"), 5)).await;
    assert_eq!((report.totals.ok, report.totals.errors["tls"]), (0, report.totals.failed));
    let e = &report.first_errors["tls"];
    assert!(e.contains("is not for the name fleetstorm connected to ingest.internal: it is for 127.0.0.1"), "{e}");
    assert!(e.contains("subject \"CN=127.0.0.1\", issuer \"CN=127.0.0.1\""), "{e}");
    assert_eq!(report.summary().matches("first tls error").count(), 1);
    // Another self-signed certificate as tls.ca: the server's own is a CA
    // certificate nobody vouches for, and the sentence says what to give.
    let Some((unrelated, _)) = openssl_self_signed(&dir, "unrelated", "/CN=unrelated", "IP:127.0.0.1") else { return };
    let report = run(&scenario_text(&url, &format!("tls = {{ ca = \"{unrelated}\" }}"), 5)).await;
    assert_eq!(report.totals.ok, 0);
    let e = &report.first_errors["tls"];
    assert!(e.contains("is a CA certificate the server presents as its own: if it is self-signed, give that same certificate as tls.ca"), "{e}");
    server.shutdown().await;

    // A self-signed certificate for another name, served at 127.0.0.1:
    // refused with the name-mismatch sentence.
    let Some((other, other_key)) = openssl_self_signed(&dir, "wrong", "/CN=localhost", "DNS:localhost") else { return };
    let tls = fleetstorm::server::ServeTls { cert: other.clone().into(), key: other_key.into(), client_ca: None };
    let server = start_serve(ServeConfig { tls: Some(tls), ..ServeConfig::default() }).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let report = run(&scenario_text(&url, &format!("tls = {{ ca = \"{other}\" }}"), 5)).await;
    server.shutdown().await;
    assert_eq!(report.totals.ok, 0);
    let e = &report.first_errors["tls"];
    assert!(e.contains("is not for the name fleetstorm connected to 127.0.0.1: it is for localhost"), "{e}");
}
