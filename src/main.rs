//! The `fleetstorm` command line: flags in, library calls out, exit codes.
//!
//! Exit codes: 0 success; 1 the command itself failed (I/O, network);
//! 2 bad usage or an invalid scenario; 3 a threshold or comparison gate
//! failed; 4 a shard was not ready at `--start-at`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fleetstorm::capacity;
use fleetstorm::output::{Output, Outputs};
use fleetstorm::report::Report;
use fleetstorm::run::{self, RunError};
use fleetstorm::sample::{self, SampleError, SampleOptions};
use fleetstorm::scenario;
use fleetstorm::server::{self, Auth, Faults, Latency, ServeConfig};
use fleetstorm::units::parse_duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "fleetstorm", version, about = "Load generator and fleet simulator for SendHeartbeat backends")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print example heartbeats exactly as they would be sent (NDJSON).
    Sample {
        /// The scenario file (.toml or .json).
        scenario: PathBuf,
        /// How many heartbeats to print.
        #[arg(long, default_value_t = 10)]
        count: u64,
        /// Only this fleet.
        #[arg(long)]
        fleet: Option<String>,
        /// Seed for the random choices (overrides the scenario's).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run the reference heartbeat backend (strict validation, device
    /// registry, /stats, /metrics, injectable faults).
    Serve(Box<ServeArgs>),
    /// Run a scenario: fleets of virtual devices against the target; live
    /// progress, a summary, and a JSON report.
    Run(RunArgs),
    /// Check a scenario and print its plan without sending anything.
    Validate(ValidateArgs),
    /// Render a saved report again: text or JSON on stdout, HTML,
    /// Markdown, JUnit files.
    Report(ReportArgs),
    /// Compare runs against a baseline: a regression gate (exit code 3),
    /// noise-aware when given several runs per side.
    Compare(CompareArgs),
    /// Find the highest load the target carries within the scenario's SLO
    /// ([capacity] section), and say it in devices. Exit code 0 with an
    /// answer, 3 when no rate tried met the SLO, 1 when inconclusive (the
    /// generator fell behind) or interrupted.
    Capacity(CapacityArgs),
    /// Add up the reports of a run's shards (0..N-1, each once, one
    /// scenario) into the report of the whole run, thresholds checked
    /// again (exit code 3 if one fails).
    Merge(MergeArgs),
}

#[derive(Args)]
struct MergeArgs {
    /// The shards' JSON reports.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Write the merged JSON report here (atomically).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    renders: RenderArgs,
}

#[derive(Args)]
struct CapacityArgs {
    #[command(flatten)]
    plan: PlanArgs,
    /// Write the capacity report (JSON) here (atomically).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the capacity report as HTML, with its plots, here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Generator threads for every step (default: as `run` chooses per step).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

#[derive(Args)]
struct CompareArgs {
    /// BASELINE.json CURRENT.json (or use --baseline and --current).
    #[arg(num_args = 0..=2, conflicts_with_all = ["baseline", "current"])]
    reports: Vec<PathBuf>,
    /// Baseline reports (several runs make the comparison noise-aware).
    #[arg(long, num_args = 1.., requires = "current")]
    baseline: Vec<PathBuf>,
    /// Current reports.
    #[arg(long, num_args = 1.., requires = "baseline")]
    current: Vec<PathBuf>,
    /// The largest worsening tolerated, relative to the baseline (default 10%).
    #[arg(long, allow_hyphen_values = true)]
    max_regression: Option<String>,
    /// Metrics to compare, comma-separated (default: latency.p50,latency.p95,latency.p99,
    /// latency.p999,connection_wait.p99,error_rate,missed_rate,achieved_rate_ratio).
    #[arg(long)]
    metrics: Option<String>,
}

/// The scenario and the overrides every command that loads one uses.
#[derive(Args)]
struct PlanArgs {
    /// The scenario file (.toml or .json).
    scenario: PathBuf,
    /// Target URL (overrides the scenario's): "builtin" or http://host:port.
    #[arg(long)]
    target: Option<String>,
    /// Seed for every random choice (overrides the scenario's).
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Multiply every fleet's rate (2 halves every interval).
    #[arg(long, allow_negative_numbers = true)]
    rate_scale: Option<f64>,
    /// Multiply every fleet's device count (intervals kept).
    #[arg(long, allow_negative_numbers = true)]
    devices_scale: Option<f64>,
}

/// The run length: for `run` and `validate` (a capacity search sets its
/// steps' own).
#[derive(Args)]
struct DurationArg {
    /// Run length (overrides the scenario's), e.g. 30s or 5m.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

#[derive(Args)]
struct ValidateArgs {
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    length: DurationArg,
    /// Also print the first N intended sends (seconds since the start,
    /// fleet, device), exactly as a run with this seed would aim them.
    #[arg(long, value_name = "N")]
    schedule: Option<usize>,
    #[command(flatten)]
    sharding: ShardArgs,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    length: DurationArg,
    /// Write the JSON report here (atomically).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    renders: RenderArgs,
    /// Write per-second latency histograms here, as an HdrHistogram interval log.
    #[arg(long)]
    hlog: Option<PathBuf>,
    /// No live progress on stderr.
    #[arg(long)]
    quiet: bool,
    /// Generator threads (default: one per 75,000 heartbeats/s of offered
    /// load over plain HTTP/1.1, fewer heartbeats per thread over TLS,
    /// HTTP/2, SigV4 or a connection per request; at most one per core,
    /// and one core left to a target on this machine).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    #[command(flatten)]
    sharding: ShardArgs,
    /// Build every device, then start the clock at this instant: RFC 3339
    /// (2026-11-26T20:00:00Z) or Unix seconds. If it passes before the
    /// devices are ready, nothing is sent and the exit code is 4.
    #[arg(long, value_parser = parse_start_at)]
    start_at: Option<std::time::SystemTime>,
    /// Serve live Prometheus metrics of the run at http://ADDR/metrics
    /// (e.g. 127.0.0.1:9091; port 0 picks one, printed on stderr).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

#[derive(Args)]
struct ShardArgs {
    /// Run only shard INDEX of COUNT (devices whose global index is INDEX
    /// modulo COUNT), e.g. 0/4; the report is for `fleetstorm merge`.
    #[arg(long, value_parser = fleetstorm::shard::Shard::parse, conflicts_with = "shards")]
    shard: Option<fleetstorm::shard::Shard>,
    /// The shard count of an Indexed Job: the index comes from
    /// JOB_COMPLETION_INDEX (or set FLEETSTORM_SHARDS instead of this flag).
    #[arg(long)]
    shards: Option<u32>,
}

impl ShardArgs {
    fn shard(&self) -> Result<Option<fleetstorm::shard::Shard>, String> {
        match self.shard {
            Some(s) => Ok(Some(s)),
            None => fleetstorm::shard::Shard::from_environment(self.shards, |k| std::env::var(k).ok()),
        }
    }
}

fn parse_start_at(text: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(secs) = text.trim().parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(std::time::UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    humantime::parse_rfc3339_weak(text.trim())
        .map_err(|e| format!("{text:?} is neither RFC 3339 (2026-11-26T20:00:00Z) nor Unix seconds: {e}"))
}

/// Renderings of a report, each written atomically.
#[derive(Args)]
struct RenderArgs {
    /// A self-contained HTML report with plots.
    #[arg(long)]
    html: Option<PathBuf>,
    /// A Markdown summary (for a CI job summary).
    #[arg(long)]
    summary_md: Option<PathBuf>,
    /// JUnit XML: one test case per threshold.
    #[arg(long)]
    junit: Option<PathBuf>,
}

impl RenderArgs {
    /// The renderings asked for, with their flags.
    fn given(&self) -> [(&'static str, Option<&std::path::Path>); 3] {
        [
            ("--html", self.html.as_deref()),
            ("--summary-md", self.summary_md.as_deref()),
            ("--junit", self.junit.as_deref()),
        ]
    }

    /// Writes every rendering asked for; false (with the error printed) if one failed.
    fn write(outputs: &Outputs, report: &Report) -> bool {
        type Render = fn(&Report) -> String;
        let renders: [(&str, Render); 3] = [
            ("--html", fleetstorm::report::html::render),
            ("--summary-md", fleetstorm::report::markdown::render),
            ("--junit", fleetstorm::report::junit::render),
        ];
        let mut ok = true;
        for (flag, render) in renders {
            if let Some(output) = outputs.get(flag) {
                ok &= write_output(output, render(report).as_bytes());
            }
        }
        ok
    }
}

/// Resolves and checks every output a command was given, before it does
/// any work (exit code 2 otherwise): writable, no two on one file, none on
/// the scenario it reads.
fn check_outputs<'a>(
    given: impl IntoIterator<Item = (&'static str, Option<&'a std::path::Path>)>,
    scenario: Option<&std::path::Path>,
) -> Result<Outputs, ExitCode> {
    Outputs::check(given, scenario).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// Prints text meant for people: on stdout, or on stderr when an output
/// takes stdout (so that stdout stays machine-readable).
fn say(outputs: &Outputs, text: &str) {
    if outputs.uses_stdout() {
        eprint!("{text}");
    } else {
        print!("{text}");
        let _ = io::stdout().flush();
    }
}

/// A finished report out: its summary, then the JSON and every rendering
/// asked for; false (errors printed) if an output was not written.
fn publish(report: &Report, outputs: &Outputs) -> bool {
    say(outputs, &report.summary());
    let written = outputs.get("--out").is_none_or(|o| write_json(o, report));
    RenderArgs::write(outputs, report) && written
}

/// The scenario's seed, or a fresh one (printed, so the run can be repeated).
fn seed_of(scenario: &scenario::Scenario) -> u64 {
    scenario.seed.unwrap_or_else(|| {
        let seed = rand::random::<u64>() >> 1;
        eprintln!("note: the scenario sets no seed; using seed {seed} (pass --seed {seed} to repeat)");
        seed
    })
}

/// The runtime a run or a capacity search drives its engine from.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        ExitCode::from(EXIT_FAILED)
    })
}

/// Writes `value` as pretty JSON; false (with the error printed) if it failed.
fn write_json(output: &Output, value: &impl serde::Serialize) -> bool {
    match serde_json::to_vec_pretty(value) {
        Ok(mut json) => {
            json.push(b'\n');
            write_output(output, &json)
        }
        Err(e) => {
            eprintln!("error: cannot encode {}: {e}", output.given.display());
            false
        }
    }
}

/// Writes one output (see `fleetstorm::output`); false (with the error
/// printed) on failure.
fn write_output(output: &Output, bytes: &[u8]) -> bool {
    match output.write(bytes) {
        Ok(()) => {
            if !output.is_stdout() {
                eprintln!("wrote {}", output.given.display());
            }
            true
        }
        Err(e) => {
            eprintln!("error: cannot write {} {}: {e}", output.flag, output.given.display());
            false
        }
    }
}

#[derive(Args)]
struct ReportArgs {
    /// A report written by `run --out`.
    report: PathBuf,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    #[command(flatten)]
    renders: RenderArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    /// The terminal summary.
    Text,
    /// The report itself.
    Json,
}

impl PlanArgs {
    fn overrides(&self, duration: Option<Duration>) -> run::Overrides {
        run::Overrides {
            target: self.target.clone(),
            duration,
            seed: self.seed,
            rate_scale: self.rate_scale,
            devices_scale: self.devices_scale,
        }
    }

    /// The scenario with the overrides (and `duration`) applied, or the
    /// exit code of the error.
    fn load(&self, duration: Option<Duration>) -> Result<scenario::Scenario, ExitCode> {
        let loaded = scenario::load(&self.scenario).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        })?;
        run::apply_overrides(loaded, &self.overrides(duration)).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        })
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on, HOST:PORT (a name such as localhost, or an
    /// address; loopback unless you say otherwise; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen_addr)]
    addr: SocketAddr,
    /// The credential of the control endpoints (POST /faults, POST
    /// /stats/reset): `Authorization: Bearer TOKEN` (401 otherwise). Without
    /// it, the heartbeats' credential guards them.
    #[arg(long, value_name = "TOKEN")]
    admin_token: Option<String>,
    /// Guard the read endpoints (GET /stats, /metrics, /faults, /devices/...)
    /// with the control credential too.
    #[arg(long)]
    protect_reads: bool,
    /// Allow control endpoints without a credential on an address other
    /// than loopback (refused otherwise: anyone reaching the port could
    /// change how serve answers).
    #[arg(long)]
    allow_open_control: bool,
    /// Added latency: 50ms, uniform:10ms..50ms, normal:20ms,5ms or lognormal:20ms,0.5.
    #[arg(long)]
    latency: Option<Latency>,
    /// Share of heartbeats answered with --error-status (0 to 1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    error_rate: f64,
    /// Status of injected errors (503 and 429 carry Retry-After).
    #[arg(long)]
    error_status: Option<u16>,
    /// Share of heartbeats whose connection is closed without an answer (0 to 1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    drop_rate: f64,
    /// Capacity: this many workers...
    #[arg(long)]
    workers: Option<u32>,
    /// ...each taking this long per heartbeat (an M/D/c queue).
    #[arg(long, value_parser = parse_duration)]
    service_time: Option<Duration>,
    /// Heartbeats waiting for a worker beyond this many get 503.
    #[arg(long)]
    queue_limit: Option<u32>,
    /// Hold every heartbeat this long before answering (cleared by POST /faults).
    #[arg(long, value_parser = parse_duration)]
    stall: Option<Duration>,
    /// Require `Authorization: Bearer TOKEN` on heartbeats (401 otherwise).
    #[arg(long, conflicts_with = "require_header")]
    require_bearer: Option<String>,
    /// Require a header NAME=VALUE on heartbeats (401 otherwise).
    #[arg(long, value_parser = parse_header)]
    require_header: Option<(http::HeaderName, http::HeaderValue)>,
    /// Close HTTP/1 connections whose next request head takes longer than
    /// this (hyper counts kept-alive waiting too: this is the keep-alive timeout).
    #[arg(long, value_parser = parse_duration, default_value = "75s")]
    header_timeout: Duration,
    /// Answer 408 when a request body takes longer than this.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    body_timeout: Duration,
    /// Close connections idle (no bytes, no request in flight) this long.
    #[arg(long, value_parser = parse_duration, default_value = "75s")]
    idle_timeout: Duration,
    /// Devices beyond this many are counted but not tracked.
    #[arg(long, default_value_t = 10_000_000)]
    max_devices: u64,
    /// Connections beyond this many open at once are closed on accept.
    #[arg(long, default_value_t = 100_000)]
    max_connections: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Serve HTTPS with this certificate chain (PEM); HTTP/2 or HTTP/1.1 by ALPN.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
}

/// A listening address: HOST:PORT, the host a name or an address.
fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut found = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?} is not HOST:PORT (e.g. 127.0.0.1:8080 or localhost:8080): {e}"))?;
    found.next().ok_or_else(|| format!("{text:?} resolves to no address"))
}

fn parse_header(text: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let (name, value) = text.split_once('=').ok_or("write NAME=VALUE, e.g. x-api-key=secret")?;
    let name = http::HeaderName::try_from(name.trim()).map_err(|e| format!("bad header name {name:?}: {e}"))?;
    let value = http::HeaderValue::try_from(value).map_err(|e| format!("bad header value: {e}"))?;
    Ok((name, value))
}

/// A usage error of `subcommand` in clap's words (its usage line and the
/// pointer to --help): exit code 2. For what clap cannot see alone: a flag
/// given that the scenario makes meaningless.
fn usage_error(subcommand: &str, message: &str) -> ExitCode {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    cli.build();
    let error = match cli.find_subcommand_mut(subcommand) {
        Some(command) => command.error(clap::error::ErrorKind::ArgumentConflict, message),
        None => cli.error(clap::error::ErrorKind::ArgumentConflict, message),
    };
    eprint!("{}", error.render());
    ExitCode::from(EXIT_USAGE)
}

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_GATE: u8 = 3;
/// `--start-at` passed before the shard was ready: nothing was sent.
const EXIT_NOT_READY: u8 = 4;
/// A second interrupt: what was merged so far was written (128 + SIGINT).
const EXIT_ABANDONED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sample { scenario, count, fleet, seed } => {
            sample_command(&scenario, SampleOptions { count, fleet, seed })
        }
        Command::Serve(args) => serve_command(*args),
        Command::Run(args) => run_command(args),
        Command::Validate(args) => validate_command(&args),
        Command::Report(args) => report_command(&args),
        Command::Compare(args) => compare_command(&args),
        Command::Capacity(args) => capacity_command(&args),
        Command::Merge(args) => merge_command(&args),
    }
}

fn sample_command(path: &std::path::Path, opts: SampleOptions) -> ExitCode {
    let scenario = match scenario::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let seed = opts.seed.or(scenario.seed).unwrap_or_else(|| {
        let seed = rand::random();
        eprintln!("note: the scenario sets no seed; using seed {seed} (pass --seed {seed} to repeat)");
        seed
    });
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match sample::write_samples(&scenario, &opts, seed, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        // `fleetstorm sample ... | head` closes the pipe early: that is success.
        Err(SampleError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e @ SampleError::UnknownFleet(..)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            let _ = out.flush();
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn serve_command(args: ServeArgs) -> ExitCode {
    if args.error_status.is_some() && args.error_rate == 0.0 {
        return usage_error(
            "serve",
            "the argument '--error-status' has no effect without '--error-rate' above 0 (the share of heartbeats \
             answered with that status)",
        );
    }
    let faults = Faults {
        latency: args.latency,
        error_rate: args.error_rate,
        error_status: args.error_status,
        drop_rate: args.drop_rate,
        workers: args.workers,
        service_time: args.service_time,
        queue_limit: args.queue_limit,
        stall: args.stall,
    };
    if let Err(e) = faults.check() {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let auth = match (args.require_bearer, args.require_header) {
        (Some(token), _) => Some(Auth::Bearer(token)),
        (None, Some((name, value))) => Some(Auth::Header { name, value }),
        (None, None) => None,
    };
    let config = ServeConfig {
        addr: args.addr,
        faults,
        auth,
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        idle_timeout: args.idle_timeout,
        max_devices: args.max_devices,
        max_connections: args.max_connections,
        tls: args.tls_cert.map(|cert| server::ServeTls {
            cert,
            key: args.tls_key.unwrap_or_default(),
            client_ca: args.client_ca,
        }),
        control: server::ControlAccess {
            credential: args.admin_token.map(Auth::Bearer),
            protect_reads: args.protect_reads,
            allow_open: args.allow_open_control,
        },
        ..ServeConfig::default()
    };
    if let Err(e) = config.check_exposure() {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(tls) = &config.tls
        && let Err(e) = tls.acceptor()
    {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    // Every connection is a file; take all the descriptors we may.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(async move {
        let mut termination = Termination::install();
        let server = match server::Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.addr);
                return ExitCode::from(EXIT_FAILED);
            }
        };
        let shared = server.shared();
        match server.local_addr() {
            Ok(addr) => println!("fleetstorm serve listening on {scheme}://{addr}"),
            Err(e) => eprintln!("warning: cannot read the bound address: {e}"),
        }
        let _ = io::stdout().flush();
        server.run(termination.recv()).await;
        println!("{}", shared.stats_json());
        ExitCode::SUCCESS
    })
}

/// SIGINT (Ctrl-C) and SIGTERM, listened to from the moment this is made:
/// installing the handlers eagerly means a signal that arrives early is
/// never met by the default action (death without a report).
struct Termination {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl Termination {
    /// Must be called inside the runtime.
    fn install() -> Self {
        Termination { interrupt: signal(SignalKind::interrupt()).ok(), terminate: signal(SignalKind::terminate()).ok() }
    }

    /// Completes on the next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        async fn next(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = next(&mut self.interrupt) => {}
            () = next(&mut self.terminate) => {}
        }
    }
}

fn validate_command(args: &ValidateArgs) -> ExitCode {
    let scenario = match args.plan.load(args.length.duration) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let shard = match args.sharding.shard() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    print!("{}", run::plan_text(&scenario, shard));
    // TLS files and SigV4 credentials are read now, as a run would.
    if let scenario::TargetUrl::Http { host, .. } = &scenario.target.url
        && let Err(e) = run::endpoint_options(&scenario.target, host)
    {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(n) = args.schedule {
        let Some(seed) = scenario.seed else {
            eprintln!("error: --schedule needs a seed: set `seed` in the scenario or pass --seed");
            return ExitCode::from(EXIT_USAGE);
        };
        println!("\nschedule (first {n} intended sends, seed {seed}):");
        let mut stdout = io::BufWriter::new(io::stdout().lock());
        for send in run::schedule_preview(&scenario, seed, n, shard) {
            let _ = writeln!(stdout, "{:>14.6} {} {}", send.at_ns as f64 / 1e9, send.fleet, send.device);
        }
        let _ = stdout.flush();
    }
    match run::check_resources(&scenario, shard, run::predicted_ip(&scenario.target.url)) {
        Ok(budget) => {
            let sources = match budget.sources.addresses.as_slice() {
                [] => "from one source address".to_string(),
                [one] => format!("from {one}"),
                [first, .., last] if budget.sources.spread => format!(
                    "from {} source addresses, {first} to {last} (spread over loopback by fleetstorm)",
                    budget.sources.addresses.len()
                ),
                many => format!("from {} source addresses", many.len()),
            };
            println!(
                "\nresources: up to {} connections; this process may open {} files; {} connections toward the target \
                 at full speed {sources} ({} each)",
                budget.needed,
                budget.open_files,
                budget.capacity(),
                budget.per_address
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run_command(args: RunArgs) -> ExitCode {
    let scenario = match args.plan.load(args.length.duration) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Every output must be writable before the run starts, not found out after it.
    let [html, md, junit] = args.renders.given();
    let given = [("--out", args.out.as_deref()), html, md, junit, ("--hlog", args.hlog.as_deref())];
    let outputs = match check_outputs(given, Some(&args.plan.scenario)) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let shard = match args.sharding.shard() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if shard.is_some() && scenario.seed.is_none() {
        eprintln!(
            "error: a shard needs the run's seed, the same in every shard: set `seed` in the scenario or pass --seed"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let seed = seed_of(&scenario);
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let (cancel, abandon) = (CancellationToken::new(), CancellationToken::new());
        tokio::spawn(interrupts(Termination::install(), cancel.clone(), abandon.clone()));
        // One count of the devices online, for the progress line and /metrics.
        let online = if args.quiet && args.metrics_addr.is_none() {
            Vec::new()
        } else {
            run::online_devices(&scenario, seed, shard)
        };
        let mut progress = run::Progress::new(&scenario, args.quiet, online.clone());
        let options = run::ExecuteOptions {
            keep_second_histograms: args.hlog.is_some(),
            threads: args.threads.map(usize::from),
            warmup: Duration::ZERO,
            shard,
            start_at: args.start_at,
            abandon: Some(abandon.clone()),
        };
        let metrics = args.metrics_addr.map(|_| fleetstorm::live_metrics::LiveMetrics::new(&scenario, shard, online));
        let stop_metrics = tokio_util::sync::CancellationToken::new();
        if let (Some(addr), Some(m)) = (args.metrics_addr, &metrics) {
            match fleetstorm::live_metrics::serve(addr, m.clone(), stop_metrics.clone()).await {
                Ok(bound) => eprintln!("metrics: http://{bound}/metrics"),
                Err(e) => {
                    eprintln!("error: cannot serve metrics on {addr}: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
        let executed = run::execute_with(&scenario, seed, cancel, options, |live| {
            progress.update(live);
            if let Some(m) = &metrics {
                m.update(live);
            }
        })
        .await;
        stop_metrics.cancel();
        progress.finish();
        let run::Executed { report, second_histograms } = match executed {
            Ok(r) => r,
            Err(e @ RunError::Invalid(_)) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
            Err(e @ RunError::Failed(_)) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
            Err(e @ RunError::NotReady(_)) => {
                eprintln!("error: {e}: exit code {EXIT_NOT_READY}");
                return ExitCode::from(EXIT_NOT_READY);
            }
        };
        let mut written = publish(&report, &outputs);
        if let Some(output) = outputs.get("--hlog") {
            let started_at =
                humantime::parse_rfc3339(&report.started_at).unwrap_or_else(|_| std::time::SystemTime::now());
            match fleetstorm::report::hlog::render(started_at, &second_histograms) {
                Ok(log) => written &= write_output(output, &log),
                Err(e) => {
                    eprintln!("error: cannot build the HdrHistogram log: {e}");
                    written = false;
                }
            }
        }
        if abandoned(&abandon) {
            return ExitCode::from(EXIT_ABANDONED);
        }
        if !written {
            return ExitCode::from(EXIT_FAILED);
        }
        run_exit_code(&report)
    })
}

/// After a second Ctrl-C: the command wrote what it could and exits 130.
fn abandoned(abandon: &CancellationToken) -> bool {
    if abandon.is_cancelled() {
        eprintln!("stopped by a second interrupt: exit code {EXIT_ABANDONED}");
    }
    abandon.is_cancelled()
}

fn capacity_command(args: &CapacityArgs) -> ExitCode {
    let scenario = match args.plan.load(None) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Some(settings) = &scenario.capacity else {
        eprintln!(
            "error: {}: no [capacity] section; add one, e.g.\n  [capacity]\n  slo = {{ \"latency.p99\" = \"< 250ms\", \"error_rate\" = \"< 0.1%\" }}\n  start_rate = \"500/s\"\n  max_rate = \"100000/s\"",
            args.plan.scenario.display()
        );
        return ExitCode::from(EXIT_USAGE);
    };
    // Each step's device counts follow from its rate: a scale of them
    // would change nothing.
    if args.plan.devices_scale.is_some() && settings.scale == capacity::Scale::Devices {
        return usage_error(
            "capacity",
            "the argument '--devices-scale' has no effect here: with scale = \"devices\" (the [capacity] \
             default) each step's device counts follow from its rate; use scale = \"rate\" to keep more or fewer \
             devices at each rate",
        );
    }
    let outputs = match check_outputs(
        [("--out", args.out.as_deref()), ("--html", args.html.as_deref())],
        Some(&args.plan.scenario),
    ) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let seed = seed_of(&scenario);
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let quiet = args.quiet;
    let abandon = CancellationToken::new();
    let searched = runtime.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(interrupts(Termination::install(), cancel.clone(), abandon.clone()));
        let threads = args.threads.map(usize::from);
        fleetstorm::capacity::search(&scenario, seed, cancel, Some(abandon.clone()), threads, |p| {
            if quiet {
                return;
            }
            match p {
                capacity::Progress::Starting { step, rate, devices } => eprintln!(
                    "step {step}: {rate:.0} heartbeats/s from {} devices ...",
                    fleetstorm::units::thousands(devices)
                ),
                capacity::Progress::Finished(s) => eprintln!(
                    "step {}: offered {:.0}/s, achieved {:.0}/s, p99 {:.2} ms, errors {:.2}%: {} ({})",
                    s.step,
                    s.offered_rate,
                    s.achieved_rate,
                    s.p99_ms,
                    s.error_rate * 100.0,
                    s.verdict,
                    s.reason
                ),
            }
        })
        .await
    });
    let report = match searched {
        Ok(r) => r,
        Err(e @ RunError::Invalid(_)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e @ (RunError::Failed(_) | RunError::NotReady(_))) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    say(&outputs, &report.summary());
    let mut written = true;
    if let Some(output) = outputs.get("--out") {
        written &= write_json(output, &report);
    }
    if let Some(output) = outputs.get("--html") {
        written &= write_output(output, capacity::html::render(&report).as_bytes());
    }
    if abandoned(&abandon) {
        return ExitCode::from(EXIT_ABANDONED);
    }
    if !written {
        return ExitCode::from(EXIT_FAILED);
    }
    match report.verdict.as_str() {
        "found" | "max_rate_reached" => ExitCode::SUCCESS,
        "below_start" => ExitCode::from(EXIT_GATE),
        _ => ExitCode::from(EXIT_FAILED),
    }
}

/// An abort threshold: 3; an interrupted run: 1; a run in which not one
/// heartbeat succeeded: 1, whatever its thresholds; a failing threshold: 3;
/// otherwise 0.
fn run_exit_code(report: &Report) -> ExitCode {
    if let Some(a) = &report.aborted {
        eprintln!("aborted by the threshold {}: exit code {EXIT_GATE}", a.expr);
        return ExitCode::from(EXIT_GATE);
    }
    if report.interrupted {
        eprintln!("the run was interrupted: exit code {EXIT_FAILED}");
        return ExitCode::from(EXIT_FAILED);
    }
    if let Some(why) = report.no_success() {
        eprintln!("the run failed: {why}: exit code {EXIT_FAILED}");
        return ExitCode::from(EXIT_FAILED);
    }
    if !report.thresholds_passed() {
        let failed = report.thresholds.iter().filter(|t| !t.ok).count();
        eprintln!("{failed} threshold(s) failed: exit code {EXIT_GATE}");
        return ExitCode::from(EXIT_GATE);
    }
    ExitCode::SUCCESS
}

fn compare_command(args: &CompareArgs) -> ExitCode {
    let (baseline, current) = match args.reports.as_slice() {
        [b, c] => (std::slice::from_ref(b), std::slice::from_ref(c)),
        [] if !args.baseline.is_empty() => (args.baseline.as_slice(), args.current.as_slice()),
        _ => {
            eprintln!("error: give BASELINE.json CURRENT.json, or --baseline FILES... --current FILES...");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let load = |paths: &[PathBuf]| paths.iter().map(|p| Report::load(p)).collect::<Result<Vec<_>, _>>();
    let compared = fleetstorm::compare::Options::parse(args.max_regression.as_deref(), args.metrics.as_deref())
        .and_then(|options| fleetstorm::compare::compare(&load(baseline)?, &load(current)?, &options));
    match compared {
        Ok(comparison) => {
            print!("{}", comparison.render());
            if comparison.regressed() { ExitCode::from(EXIT_GATE) } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn merge_command(args: &MergeArgs) -> ExitCode {
    use fleetstorm::report::merge::{ShardReport, merge};
    let mut shards = Vec::with_capacity(args.shards.len());
    for path in &args.shards {
        match Report::load(path) {
            Ok(report) => shards.push(ShardReport { origin: path.display().to_string(), report }),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let [html, md, junit] = args.renders.given();
    let outputs = match check_outputs([("--out", args.out.as_deref()), html, md, junit], None) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let report = match merge(&shards) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot merge: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for warning in report.merged.iter().flat_map(|m| &m.warnings) {
        eprintln!("warning: {warning}");
    }
    if !publish(&report, &outputs) {
        return ExitCode::from(EXIT_FAILED);
    }
    run_exit_code(&report)
}

fn report_command(args: &ReportArgs) -> ExitCode {
    // The report itself goes to stdout: a rendering may not take it too.
    let [html, md, junit] = args.renders.given();
    let outputs = match check_outputs([("--format", Some(std::path::Path::new("-"))), html, md, junit], None) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let report = match Report::load(&args.report) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let text = match args.format {
        ReportFormat::Text => report.summary(),
        ReportFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(j) => j + "\n",
            Err(e) => {
                eprintln!("error: cannot encode the report: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        },
    };
    let mut stdout = io::stdout().lock();
    if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        return ExitCode::from(EXIT_FAILED);
    }
    if RenderArgs::write(&outputs, &report) { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) }
}

/// Ctrl-C and SIGTERM, as `run` and `capacity` take them. The first stops
/// cleanly (`cancel`: heartbeats in flight finish, the report is
/// complete). The second gives up on them (`abandon`): the report of what
/// was merged so far is written, marked interrupted, and the command exits
/// 130. A third, or 5 s without the report written, exits at once.
async fn interrupts(mut termination: Termination, cancel: CancellationToken, abandon: CancellationToken) {
    termination.recv().await;
    eprintln!("\nstopping: finishing heartbeats in flight (press Ctrl-C again to stop at once)");
    cancel.cancel();
    termination.recv().await;
    eprintln!("stopping at once: writing what was merged so far (press Ctrl-C again to exit without it)");
    abandon.cancel();
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(5));
        eprintln!("exiting at once: the report was not written within 5 s");
        std::process::exit(i32::from(EXIT_ABANDONED));
    });
    termination.recv().await;
    eprintln!("exiting at once");
    std::process::exit(i32::from(EXIT_ABANDONED));
}
