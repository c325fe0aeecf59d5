//! The fault matrix: a target that misbehaves in every way a backend can,
//! and for each the classification fleetstorm must give, a complete
//! (schema-valid) report, and the accounting identity: scheduled = sent +
//! missed, sent = ok + failed + retry pending, failed = the sum over classes.

use std::net::SocketAddr;
use std::time::Duration;

use fleetstorm::report::{Report, Stats};
use fleetstorm::scenario::{self, Format};
use fleetstorm::server::{Faults, ServeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::pki::Pki;
use super::run::schema_check;
use super::util::start_serve;

/// How the fake target misbehaves on every connection.
#[derive(Clone, Copy, Debug)]
enum Misbehave {
    /// Reads the request, never answers.
    Stall,
    /// Reads the request, then resets the connection (RST).
    Reset,
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Starts a valid answer, then closes mid-head.
    Truncated,
    /// Answers a valid 200, one byte every 5 ms.
    Slow,
    /// Answers a valid 200 without `Connection: close`, then closes.
    CloseAfterEach,
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

async fn misbehaving(mode: Misbehave) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                loop {
                    let mut buf = vec![0u8; 64 * 1024];
                    // One request per read is enough here: bodies are small.
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    match mode {
                        Misbehave::Stall => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                        Misbehave::Reset => {
                            // SO_LINGER 0: closing sends a reset. (Deprecated in
                            // tokio because it can block on drop; not with 0.)
                            #[allow(deprecated)]
                            let _ = stream.set_linger(Some(Duration::ZERO));
                            return;
                        }
                        Misbehave::Garbage => {
                            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
                            return;
                        }
                        Misbehave::Truncated => {
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
                            return;
                        }
                        Misbehave::Slow => {
                            for b in OK {
                                if stream.write_all(&[*b]).await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                        Misbehave::CloseAfterEach => {
                            let _ = stream.write_all(OK).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn run(url: &str, extra: &str, seconds: u64) -> Report {
    run_watched(url, extra, seconds, CancellationToken::new(), |_, _| {}).await
}

/// [`run`], cancelled by `cancel`, telling `progress` how many heartbeats
/// succeeded and failed so far (a few times a second).
async fn run_watched(
    url: &str,
    extra: &str,
    seconds: u64,
    cancel: CancellationToken,
    mut progress: impl FnMut(u64, u64),
) -> Report {
    let text = format!(
        "seed = 6\nduration = \"{seconds}s\"\n[target]\nurl = \"{url}\"\ntimeout = \"1s\"\n{extra}\n[[fleets]]\nname = \"m\"\ndevices = 20\ninterval = \"500ms\"\n"
    );
    let s = scenario::parse(&text, Format::Toml, "matrix.toml", "matrix").unwrap_or_else(|e| panic!("{e}"));
    let report = fleetstorm::run::execute(&s, 6, cancel, |live| {
        let ok: u64 = live.fleets.iter().map(|f| f.counters.ok()).sum();
        let ended: u64 = live.fleets.iter().map(|f| f.counters.classes.total()).sum();
        progress(ok, ended - ok);
    })
    .await
    .unwrap();
    schema_check(&serde_json::to_value(&report).unwrap());
    assert_identity(&report.totals);
    report
}

/// A healthy target (a 200 for every request, connections kept alive) on
/// a port the test holds from start to end: while down, the port is bound
/// but not listening, so connections are refused and no other test's
/// server can take it; while up, a second socket listens on it
/// (SO_REUSEADDR on both; Linux lets a socket listen beside others bound
/// to its address, none listening). Going down drops every connection, as
/// a process killed would have them closed.
struct Restartable {
    port: u16,
    _held: tokio::net::TcpSocket,
    up: Option<tokio::task::JoinHandle<()>>,
    /// Requests answered while up, across restarts.
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Restartable {
    /// Down, on a port of its own.
    fn new() -> Restartable {
        let held = tokio::net::TcpSocket::new_v4().unwrap();
        held.set_reuseaddr(true).unwrap();
        held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = held.local_addr().unwrap().port();
        Restartable { port, _held: held, up: None, answered: Default::default() }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        assert!(self.up.is_none());
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 1], self.port))).unwrap();
        let listener = socket.listen(1024).unwrap();
        let answered = self.answered.clone();
        self.up = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let answered = answered.clone();
                connections.spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    // One request per read is enough here: bodies are small.
                    while let Ok(1..) = stream.read(&mut buf).await {
                        if stream.write_all(OK).await.is_err() {
                            return;
                        }
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
            // Dropping the set aborts the connections' tasks, closing them.
        }));
    }

    /// Stops listening and closes every connection.
    async fn stop(&mut self) {
        let up = self.up.take().expect("up");
        up.abort();
        let _ = up.await;
    }
}

fn assert_identity(t: &Stats) {
    assert_eq!(t.scheduled, t.sent + t.missed, "scheduled = sent + missed: {t:?}");
    assert_eq!(t.sent, t.ok + t.failed + t.retry_pending, "sent = ok + failed + retry pending: {t:?}");
    assert_eq!(t.failed, t.errors.values().sum::<u64>(), "failed = the sum over classes: {t:?}");
}

/// Every failure is of `class` (and there are some).
fn all_failed_as(report: &Report, class: &str) {
    let t = &report.totals;
    assert!(t.failed > 0 && t.ok == 0, "{class}: {t:?}");
    assert_eq!(t.errors[class], t.failed, "{class}: {:?} {:?}", t.errors, report.first_errors);
    let class_is: fleetstorm::stats::OutcomeClass = class.parse().unwrap();
    if !class_is.is_answer() {
        assert!(report.first_errors.contains_key(class), "one message for {class}: {:?}", report.first_errors);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_resets_garbage_and_truncation_are_classified() {
    for (mode, class) in [
        (Misbehave::Stall, "timeout"),
        (Misbehave::Reset, "io"),
        (Misbehave::Garbage, "protocol"),
        (Misbehave::Truncated, "protocol"),
    ] {
        let addr = misbehaving(mode).await;
        let report = run(&format!("http://{addr}"), "", 2).await;
        all_failed_as(&report, class);
        let _ = mode;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_and_closing_after_each_answer_still_succeed() {
    // 38 bytes at 5 ms each: about 190 ms per answer, inside the 1 s timeout.
    let addr = misbehaving(Misbehave::Slow).await;
    let report = run(&format!("http://{addr}"), "", 2).await;
    let t = &report.totals;
    assert!(t.ok > 0 && t.failed == 0, "{t:?} {:?}", report.first_errors);
    assert!(t.service_time_ms.p50 > 150.0, "byte by byte shows as service time: {:?}", t.service_time_ms);

    let addr = misbehaving(Misbehave::CloseAfterEach).await;
    let report = run(&format!("http://{addr}"), "", 2).await;
    let t = &report.totals;
    // Each device opens a new connection when its last one was closed; a
    // heartbeat racing the close may fail as io, none in other classes.
    assert!(t.ok as f64 >= 0.8 * t.sent as f64, "{t:?}");
    assert_eq!(t.failed, t.errors["io"], "{:?}", t.errors);
    assert!(t.connects as f64 >= 0.8 * t.ok as f64, "a connection per answer: {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_comes_up_late_or_restarts_is_reconnected_to() {
    use tokio::sync::mpsc::unbounded_channel;
    // Each phase follows what the run has seen so far (the heartbeats
    // that succeeded and failed), not a clock: a busy machine only makes
    // it slower. The run is long enough for any of it and is cancelled
    // once the last phase has been seen.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Refused,
        Answered,
        AnsweredAgain,
    }

    /// Waits until the run has seen `want` (or has ended).
    async fn until(told: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>, want: Seen) {
        while let Some(seen) = told.recv().await {
            if seen == want {
                return;
            }
        }
    }

    // Not listening at the start; comes up once a heartbeat was refused,
    // and the run ends once 20 were answered.
    let mut target = Restartable::new();
    let (tell, mut told) = unbounded_channel();
    let cancel = CancellationToken::new();
    let url = target.url();
    let run = run_watched(&url, "", 60, cancel.clone(), move |ok, failed| {
        let _ = tell.send(if ok >= 20 {
            Seen::Answered
        } else if failed > 0 {
            Seen::Refused
        } else {
            return;
        });
    });
    let phases = async {
        until(&mut told, Seen::Refused).await;
        target.start();
        until(&mut told, Seen::Answered).await;
        cancel.cancel();
    };
    let (report, ()) = tokio::join!(run, phases);
    target.stop().await;
    let t = &report.totals;
    assert!(t.errors["connect"] > 0 && t.ok >= 20, "refused, then answered: {:?} ok {}", t.errors, t.ok);
    assert_eq!(t.failed, t.errors["connect"]);
    assert_eq!(t.ok, target.answered.load(std::sync::atomic::Ordering::Relaxed));

    // Down mid-run (every connection closed) and up again on the same
    // port once a heartbeat was refused.
    let mut target = Restartable::new();
    target.start();
    let (tell, mut told) = unbounded_channel();
    let cancel = CancellationToken::new();
    let mut at_restart = None;
    let url = target.url();
    let run = run_watched(&url, "", 60, cancel.clone(), move |ok, failed| {
        let seen = match at_restart {
            None if failed > 0 => {
                at_restart = Some(ok);
                Seen::Refused
            }
            Some(before) if ok >= before + 20 => Seen::AnsweredAgain,
            _ if ok >= 20 => Seen::Answered,
            _ => return,
        };
        let _ = tell.send(seen);
    });
    let phases = async {
        until(&mut told, Seen::Answered).await;
        target.stop().await;
        until(&mut told, Seen::Refused).await;
        target.start();
        until(&mut told, Seen::AnsweredAgain).await;
        cancel.cancel();
    };
    let (report, ()) = tokio::join!(run, phases);
    target.stop().await;
    let t = &report.totals;
    // Refused while down; a heartbeat in flight when it went down has its
    // answer cut off: io, or protocol when hyper saw the answer end
    // unfinished.
    let down = t.errors["connect"] + t.errors["io"] + t.errors["protocol"];
    assert!(t.errors["connect"] > 0, "the outage shows as connect: {:?}", t.errors);
    assert_eq!(t.failed, down, "{:?}", t.errors);
    // Heartbeats succeed again after the restart: devices reconnected.
    assert!(t.ok >= 40, "{t:?}");
    // (An answer written as the target went down may not have arrived.)
    assert!(t.ok <= target.answered.load(std::sync::atomic::Ordering::Relaxed));
    let last = report.timeline.iter().rev().find(|s| s.sent > 0).unwrap();
    assert!(last.ok > 0, "{:?}", report.timeline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_storms_with_and_without_retries() {
    // Every answer a 503: server_error, nothing else.
    let faults = Faults { error_rate: 1.0, error_status: Some(503), ..Faults::default() };
    let server = start_serve(ServeConfig { faults, ..ServeConfig::default() }).await;
    let report = run(&server.url(), "", 2).await;
    all_failed_as(&report, "server_error");
    server.shutdown().await;
    // 429 with Retry-After: 1, retried up to twice: the wait is honoured,
    // so within 2 s no heartbeat gets both retries.
    let faults = Faults { error_rate: 1.0, error_status: Some(429), ..Faults::default() };
    let server = start_serve(ServeConfig { faults, ..ServeConfig::default() }).await;
    let plain = run(&server.url(), "", 2).await;
    all_failed_as(&plain, "throttled");
    assert_eq!(plain.totals.retries, 0);
    // A generous timeout: on a loaded machine a 1 s one turns slow 429s
    // into timeouts, which are retried at once rather than after Retry-After.
    let text = "seed = 6\nduration = \"2s\"\n[target]\nurl = \"URL\"\ntimeout = \"5s\"\n[[fleets]]\nname = \"m\"\ndevices = 20\ninterval = \"500ms\"\nretry = { max = 2, base = \"10ms\" }\n".replace("URL", &server.url());
    let s = scenario::parse(&text, Format::Toml, "retry.toml", "retry").unwrap();
    let retried = fleetstorm::run::execute(&s, 6, CancellationToken::new(), |_| {}).await.unwrap();
    server.shutdown().await;
    assert_identity(&retried.totals);
    let t = &retried.totals;
    // Honoured, the 1 s wait leaves room for the first retry of every
    // heartbeat (all first sent in the first 500 ms) and for a second only
    // for a heartbeat sent right at the start. Ignored, the 10 ms backoff
    // would give every heartbeat both retries: 2 × sent.
    assert!(t.sent > 0 && t.retries < 2 * t.sent, "Retry-After: 1 s was honoured: {t:?}");
    assert!(t.retries * 4 >= t.sent * 3, "most heartbeats got their first retry within the run: {t:?}");
    assert_eq!(t.errors["throttled"], t.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_faults_are_tls_failures_with_one_clear_message() {
    let pki = Pki::new("pki-matrix");
    let server = start_serve(ServeConfig { tls: Some(pki.serve_tls(false)), ..ServeConfig::default() }).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    // Wrong CA.
    let report = run(&url, &format!("tls = {{ ca = \"{}\" }}", pki.path("other-ca.pem")), 2).await;
    all_failed_as(&report, "tls");
    let e = &report.first_errors["tls"];
    assert!(e.contains("is not signed by a CA fleetstorm trusts") && e.contains("give the CA that signed it"), "{e}");
    assert!(e.contains("subject \"CN=serve\"") && e.contains("issuer \"CN=fleetstorm test CA\""), "{e}");
    // Hostname mismatch: the certificate is for localhost and 127.0.0.1.
    let mismatch = format!("tls = {{ ca = \"{}\", server_name = \"heartbeats.example.com\" }}", pki.path("ca.pem"));
    let report = run(&url, &mismatch, 2).await;
    all_failed_as(&report, "tls");
    let e = &report.first_errors["tls"];
    assert!(
        e.contains(
            "is not for the name fleetstorm connected to heartbeats.example.com: it is for localhost, 127.0.0.1"
        ),
        "{e}"
    );
    server.shutdown().await;
    // Expired certificate.
    let server = start_serve(ServeConfig { tls: Some(pki.serve_tls_expired()), ..ServeConfig::default() }).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let report = run(&url, &format!("tls = {{ ca = \"{}\" }}", pki.path("ca.pem")), 2).await;
    server.shutdown().await;
    all_failed_as(&report, "tls");
    let e = &report.first_errors["tls"];
    assert!(e.contains("expired at") && e.contains("renew it on the server"), "{e}");
    // One message, not a flood: the summary has a single line for it.
    assert_eq!(report.summary().matches("first tls error").count(), 1);
}
