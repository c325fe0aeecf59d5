//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Tests that load the machine (thousands of connections, a generator run
/// near its limits, capacity searches) take turns: on a 2-core machine, two
/// at once would starve each other's generators, and a generator that falls
/// behind makes a verdict inconclusive. Hold the guard for the test's length.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a `fleetstorm` command in this process (the working directory is
/// the repository root, as [`fleetstorm`] sets it for the binary): how it
/// ended, and what the command line would have said of it on stderr.
pub fn execute(args: &[&str]) -> (u8, String) {
    let argv = std::iter::once("fleetstorm").chain(args.iter().copied());
    match fleetstorm::cli::execute(argv) {
        Ok(()) => (0, String::new()),
        Err(e) => {
            let said = match &e {
                fleetstorm::cli::CliError::Usage(m) | fleetstorm::cli::CliError::Failed(m) => format!("error: {m}"),
                other => other.to_string(),
            };
            (e.code(), said)
        }
    }
}

/// Runs the built `fleetstorm` binary with `args` from the repository root.
pub fn fleetstorm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the fleetstorm binary runs")
}

use bytes::Bytes;
use fleetstorm::server::{self, RunningServer, ServeConfig};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Starts the reference backend in-process on a free loopback port.
pub async fn start_serve(config: ServeConfig) -> RunningServer {
    let config = ServeConfig { addr: "127.0.0.1:0".parse().unwrap(), ..config };
    server::spawn(config).await.expect("serve starts")
}

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request; `Err` when the connection closed without an answer.
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
    Ok((parts.status, parts.headers, bytes))
}

pub async fn post(client: &HttpClient, url: &str, body: impl Into<Bytes>) -> (StatusCode, HeaderMap, Bytes) {
    send(client, Method::POST, url, &[], body).await.expect("an answer")
}

pub async fn get_json(client: &HttpClient, url: &str) -> serde_json::Value {
    let (status, _, body) = send(client, Method::GET, url, &[], Bytes::new()).await.expect("an answer");
    assert_eq!(status, StatusCode::OK, "GET {url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("JSON")
}

/// A valid heartbeat from device `device` of fleet `fleet`.
pub fn heartbeat(fleet: &str, device: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "AgentVersion": "1.20231.0",
        "DeviceFleetName": fleet,
        "DeviceName": device,
        "AgentMetrics": [{"Dimension": "agent", "MetricName": "cpu-utilization", "Timestamp": 1764160000.123, "Value": 12.5}],
        "Models": [{"ModelName": "resnet50", "ModelVersion": "3.1", "LatestInference": 1764160000.1, "LatestSampleTime": 1764159990.0}]
    }))
    .unwrap()
}

/// A scratch directory for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fleetstorm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Writes `text` to `file` in the directory and returns its path as a string.
    pub fn write(&self, file: &str, text: &str) -> String {
        let path = self.path(file);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs one of the Python interop checks in `tests/interop` and parses
/// the JSON it prints. `needs` names what it requires (a module, or a
/// program); `.ci/run` installs them all. Outside CI a missing one skips
/// the check loudly (`None`); under CI (`CI` set) it fails the test.
/// Whether the Python modules (or `bin:` programs) in `needs` are there;
/// in CI they must be (`.ci/run` installs them).
pub fn interop_available(needs: &[&str]) -> bool {
    let missing: Vec<&&str> = needs
        .iter()
        .filter(|n| {
            !Command::new("python3").args(["-c", &format!("import {n}")]).output().is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        assert!(std::env::var_os("CI").is_none(), "{missing:?} must be installed in CI (.ci/run)");
        eprintln!("SKIPPED: missing {missing:?} (.ci/run installs them; CI runs this check)");
    }
    missing.is_empty()
}

pub fn interop(script: &str, args: &[&str], needs: &[&str]) -> Option<serde_json::Value> {
    let missing: Vec<&&str> = needs
        .iter()
        .filter(|n| {
            let found = if let Some(program) = n.strip_prefix("bin:") {
                Command::new("sh")
                    .args(["-c", &format!("command -v {program}")])
                    .output()
                    .is_ok_and(|o| o.status.success())
            } else {
                Command::new("python3").args(["-c", &format!("import {n}")]).output().is_ok_and(|o| o.status.success())
            };
            !found
        })
        .collect();
    if !missing.is_empty() {
        assert!(std::env::var_os("CI").is_none(), "{script} needs {missing:?}, which CI must install (.ci/run)");
        eprintln!("SKIPPED {script}: missing {missing:?} (.ci/run installs them; CI runs this check)");
        return None;
    }
    let out = Command::new("python3").arg(root().join("tests/interop").join(script)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{script} printed no JSON ({e})")))
}

/// Starts `fleetstorm serve` as a process with `args`; returns it and its URL.
pub fn spawn_serve(args: &[&str]) -> (std::process::Child, String) {
    spawn_serve_at("127.0.0.1:0", args)
}

/// [`spawn_serve`], listening on `addr`.
pub fn spawn_serve_at(addr: &str, args: &[&str]) -> (std::process::Child, String) {
    spawn_serve_with(addr, args, &[])
}

/// [`spawn_serve_at`], with these environment variables.
pub fn spawn_serve_with(addr: &str, args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["serve", "--addr", addr])
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let url = first.trim().strip_prefix("fleetstorm serve listening on ").expect("the address line").to_string();
    (child, url)
}

/// `GET url` (plain HTTP, loopback) from a synchronous test: the body as
/// JSON.
pub fn get_json_blocking(url: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// `POST url` with a JSON `body` (plain HTTP, loopback) from a synchronous
/// test: the answer's body as JSON.
pub fn post_json_blocking(url: &str, body: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A loopback port nothing listens on, held for as long as the returned
/// socket lives: bound, never listening, so every connection to it is
/// refused and no other test's server can take the port meanwhile (a port
/// bound then released can be, by the time the test connects).
pub fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Runs one `fleetstorm` process per argument list, all given one
/// `--start-at` instant, and returns how each ended. How long a debug
/// build takes to get its devices ready depends on what else loads the
/// machine; a process not ready by the instant exits 4 having sent
/// nothing. Then `again` is called (to forget what the others sent) and
/// they all run again with twice the lead: 2 s first, at most 5 tries.
pub fn run_started_together(runs: &[Vec<String>], mut again: impl FnMut()) -> Vec<Output> {
    let mut lead = std::time::Duration::from_secs(2);
    for _ in 0..5 {
        let at = humantime::format_rfc3339_millis(std::time::SystemTime::now() + lead).to_string();
        let children: Vec<_> = runs
            .iter()
            .map(|args| {
                let mut args = args.clone();
                args.extend(["--start-at".to_string(), at.clone()]);
                std::thread::spawn(move || {
                    Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
                        .args(&args)
                        .current_dir(root())
                        .output()
                        .expect("the fleetstorm binary runs")
                })
            })
            .collect();
        let outputs: Vec<Output> = children.into_iter().map(|c| c.join().unwrap()).collect();
        let late = outputs.iter().any(|o| {
            o.status.code() == Some(4) && String::from_utf8_lossy(&o.stderr).contains("not ready at the start instant")
        });
        if !late {
            return outputs;
        }
        eprintln!("a process was not ready {lead:?} ahead; again with twice the lead");
        again();
        lead *= 2;
    }
    panic!("not every process was ready within {:?} of being started, five times over", lead / 2);
}

/// A child process (a run, a server) killed if the test ends before it did.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The text of `GET /metrics` at `url` (`http://ADDR/metrics`, or
/// `ADDR`), as a scraper asks for it; the answer must be 200.
pub fn metrics_page(url: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches("/metrics");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, text) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    text.to_string()
}
