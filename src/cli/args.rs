//! The command line's flags: the clap definitions of every command, and
//! the parsers of their values. Read by the commands' modules beside it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::error::CliError;
use crate::run;
use crate::scenario;
use crate::server::Latency;
use crate::units::parse_duration;

#[derive(Parser)]
#[command(name = "fleetstorm", version = env!("FLEETSTORM_VERSION"), about = "Load generator and fleet simulator for SendHeartbeat backends")]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand)]
pub(super) enum Command {
    /// Print example heartbeats exactly as they would be sent (NDJSON).
    Sample {
        /// The scenario file (.toml or .json), or - to read it from standard input.
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
    Run(Box<RunArgs>),
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
    /// Print a shell completion script: `source <(fleetstorm completions
    /// bash)`, or save it where your shell looks (see the README).
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page fleetstorm(1) (`fleetstorm man | man -l -`), or
    /// write it and one page per command into a directory.
    Man {
        /// Write fleetstorm.1 and fleetstorm-COMMAND.1 here (created if
        /// missing), e.g. ~/.local/share/man/man1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Args)]
pub(super) struct MergeArgs {
    /// The shards' JSON reports.
    #[arg(required = true)]
    pub(super) shards: Vec<PathBuf>,
    /// Write the merged JSON report here (atomically).
    #[arg(short, long)]
    pub(super) out: Option<PathBuf>,
    #[command(flatten)]
    pub(super) renders: RenderArgs,
}

#[derive(Args)]
pub(super) struct CapacityArgs {
    #[command(flatten)]
    pub(super) plan: PlanArgs,
    /// Write the capacity report (JSON) here (atomically).
    #[arg(short, long)]
    pub(super) out: Option<PathBuf>,
    /// Write the capacity report as HTML, with its plots, here.
    #[arg(long)]
    pub(super) html: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(short, long)]
    pub(super) quiet: bool,
    /// Generator threads for every step (default: as `run` chooses per step).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(super) threads: Option<u16>,
    /// Serve a live web dashboard of the search at http://ADDR/: each
    /// step's run and the steps so far (PORT alone binds 127.0.0.1).
    #[arg(long, value_name = "ADDR", value_parser = parse_dashboard_addr)]
    pub(super) dashboard: Option<SocketAddr>,
    /// Allow --dashboard on an address other than loopback (refused
    /// otherwise: anyone who reaches it reads the search and its report).
    #[arg(long)]
    pub(super) allow_remote_pages: bool,
}

#[derive(Args)]
pub(super) struct CompareArgs {
    /// BASELINE.json CURRENT.json (or use --baseline and --current).
    #[arg(num_args = 0..=2, conflicts_with_all = ["baseline", "current"])]
    pub(super) reports: Vec<PathBuf>,
    /// Baseline reports (several runs make the comparison noise-aware).
    #[arg(long, num_args = 1.., requires = "current")]
    pub(super) baseline: Vec<PathBuf>,
    /// Current reports.
    #[arg(long, num_args = 1.., requires = "baseline")]
    pub(super) current: Vec<PathBuf>,
    /// The largest worsening tolerated, relative to the baseline (default 10%).
    #[arg(long, allow_hyphen_values = true)]
    pub(super) max_regression: Option<String>,
    /// Metrics to compare, comma-separated (default: latency.p50,latency.p95,latency.p99,
    /// latency.p999,connection_wait.p99,error_rate,missed_rate,achieved_rate_ratio).
    #[arg(long)]
    pub(super) metrics: Option<String>,
}

/// The scenario and the overrides every command that loads one uses.
#[derive(Args)]
pub(super) struct PlanArgs {
    /// The scenario file (.toml or .json), or - to read it from standard input.
    pub(super) scenario: PathBuf,
    /// Target URL (overrides the scenario's): "builtin" or http://host:port.
    #[arg(short, long)]
    pub(super) target: Option<String>,
    /// Seed for every random choice (overrides the scenario's).
    #[arg(long, allow_negative_numbers = true)]
    pub(super) seed: Option<u64>,
    /// Multiply every fleet's rate (2 halves every interval).
    #[arg(long, allow_negative_numbers = true)]
    pub(super) rate_scale: Option<f64>,
    /// Multiply every fleet's device count (intervals kept).
    #[arg(long, allow_negative_numbers = true)]
    pub(super) devices_scale: Option<f64>,
}

/// The run length: for `run` and `validate` (a capacity search sets its
/// steps' own).
#[derive(Args)]
pub(super) struct DurationArg {
    /// Run length (overrides the scenario's), e.g. 30s or 5m.
    #[arg(short, long, value_parser = parse_duration)]
    pub(super) duration: Option<Duration>,
}

#[derive(Args)]
pub(super) struct ValidateArgs {
    #[command(flatten)]
    pub(super) plan: PlanArgs,
    #[command(flatten)]
    pub(super) length: DurationArg,
    /// Also print the first N intended sends (seconds since the start,
    /// fleet, device), exactly as a run with this seed would aim them.
    #[arg(long, value_name = "N")]
    pub(super) schedule: Option<usize>,
    #[command(flatten)]
    pub(super) sharding: ShardArgs,
}

#[derive(Args)]
pub(super) struct RunArgs {
    #[command(flatten)]
    pub(super) plan: PlanArgs,
    #[command(flatten)]
    pub(super) length: DurationArg,
    /// Write the JSON report here (atomically).
    #[arg(short, long)]
    pub(super) out: Option<PathBuf>,
    #[command(flatten)]
    pub(super) renders: RenderArgs,
    /// Write per-second latency histograms here, as an HdrHistogram interval log.
    #[arg(long)]
    pub(super) hlog: Option<PathBuf>,
    /// No live progress on stderr.
    #[arg(short, long)]
    pub(super) quiet: bool,
    /// Generator threads (default: one per 75,000 heartbeats/s of offered
    /// load over plain HTTP/1.1, fewer heartbeats per thread over TLS,
    /// HTTP/2, SigV4 or a connection per request; at most one per core,
    /// and one core left to a target on this machine).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(super) threads: Option<u16>,
    #[command(flatten)]
    pub(super) sharding: ShardArgs,
    /// Build every device, then start the clock at this instant: RFC 3339
    /// (2026-11-26T20:00:00Z) or Unix seconds. If it passes before the
    /// devices are ready, nothing is sent and the exit code is 4.
    #[arg(long, value_parser = parse_start_at)]
    pub(super) start_at: Option<std::time::SystemTime>,
    /// Serve live Prometheus metrics of the run at http://ADDR/metrics
    /// (e.g. 127.0.0.1:9091; port 0 picks one, printed on stderr).
    #[arg(long)]
    pub(super) metrics_addr: Option<SocketAddr>,
    /// After the run, keep serving its final totals at /metrics until they
    /// have been scraped once, for at most this long (0s: stop with the
    /// run). A little over a usual scrape interval by default.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub(super) metrics_linger: Duration,
    /// Serve a live web dashboard of the run at http://ADDR/ (PORT alone
    /// binds 127.0.0.1; port 0 picks one, printed on stderr); at the end it
    /// shows the final report.
    #[arg(long, value_name = "ADDR", value_parser = parse_dashboard_addr)]
    pub(super) dashboard: Option<SocketAddr>,
    /// Allow --dashboard and --metrics-addr on an address other than
    /// loopback (refused otherwise: anyone who reaches them reads the run
    /// and its report).
    #[arg(long)]
    pub(super) allow_remote_pages: bool,
    #[command(flatten)]
    pub(super) otlp: OtlpArgs,
}

/// OpenTelemetry export of the live metrics.
#[derive(Args)]
pub(super) struct OtlpArgs {
    /// Push the live metrics (the same as /metrics) over OTLP/HTTP in
    /// protobuf to URL, every --otlp-interval and once at the end with the
    /// report's totals; a URL without a path gets /v1/metrics, e.g.
    /// http://127.0.0.1:4318.
    #[arg(long, value_name = "URL")]
    pub(super) otlp_endpoint: Option<crate::live_metrics::otlp::OtlpEndpoint>,
    /// A header every push carries, NAME=VALUE (repeatable), e.g.
    /// authorization=Bearer TOKEN. A credential is better given by
    /// --otlp-headers-file or OTEL_EXPORTER_OTLP_HEADERS, which no process
    /// list shows.
    #[arg(long, value_name = "NAME=VALUE", requires = "otlp_endpoint")]
    pub(super) otlp_header: Vec<crate::live_metrics::otlp::OtlpHeader>,
    /// Headers every push carries, from a file of NAME=VALUE lines (as a
    /// mounted Secret gives them). With --otlp-endpoint, the headers of
    /// OTEL_EXPORTER_OTLP_HEADERS and OTEL_EXPORTER_OTLP_METRICS_HEADERS
    /// (name=value,name=value) are carried too.
    #[arg(long, value_name = "FILE", requires = "otlp_endpoint")]
    pub(super) otlp_headers_file: Option<PathBuf>,
    /// Time between pushes while the run goes (at least 100ms).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_push_interval)]
    pub(super) otlp_interval: Duration,
    /// PEM CA certificates to trust for an https:// endpoint instead of
    /// the platform's roots.
    #[arg(long, value_name = "FILE", requires = "otlp_endpoint")]
    pub(super) otlp_ca: Option<PathBuf>,
}

impl OtlpArgs {
    /// The export asked for, if any, with its headers from the flags, the
    /// file and the OpenTelemetry variables (in that order).
    pub(super) fn settings(&self) -> Result<Option<crate::live_metrics::otlp::OtlpSettings>, String> {
        use crate::live_metrics::otlp;
        let Some(endpoint) = self.otlp_endpoint.clone() else { return Ok(None) };
        let mut headers = self.otlp_header.clone();
        if let Some(file) = &self.otlp_headers_file {
            headers.extend(otlp::headers_from_file(file).map_err(|e| format!("--otlp-headers-file {e}"))?);
        }
        for variable in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"] {
            if let Ok(list) = std::env::var(variable) {
                headers.extend(otlp::headers_from_list(&list, variable)?);
            }
        }
        Ok(Some(otlp::OtlpSettings { endpoint, headers, interval: self.otlp_interval, ca: self.otlp_ca.clone() }))
    }
}

fn parse_push_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) {
        return Err(format!("{text}: pushes at least 100ms apart"));
    }
    Ok(d)
}

#[derive(Args)]
pub(super) struct ShardArgs {
    /// Run only shard INDEX of COUNT (devices whose global index is INDEX
    /// modulo COUNT), e.g. 0/4; the report is for `fleetstorm merge`.
    #[arg(long, value_parser = crate::shard::Shard::parse, conflicts_with = "shards")]
    pub(super) shard: Option<crate::shard::Shard>,
    /// The shard count of an Indexed Job: the index comes from
    /// JOB_COMPLETION_INDEX (or set FLEETSTORM_SHARDS instead of this flag).
    #[arg(long)]
    pub(super) shards: Option<u32>,
}

impl ShardArgs {
    pub(super) fn shard(&self) -> Result<Option<crate::shard::Shard>, crate::shard::ShardError> {
        match self.shard {
            Some(s) => Ok(Some(s)),
            None => crate::shard::Shard::from_environment(self.shards, |k| std::env::var(k).ok()),
        }
    }
}

/// A dashboard's address: `HOST:PORT`, or a port alone on loopback.
pub(super) fn parse_dashboard_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| {
        format!("{text:?} is not an address to listen on: give PORT (on 127.0.0.1) or IP:PORT, e.g. 127.0.0.1:8089")
    })
}

pub(super) fn parse_start_at(text: &str) -> Result<std::time::SystemTime, String> {
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
pub(super) struct RenderArgs {
    /// A self-contained HTML report with plots.
    #[arg(long)]
    pub(super) html: Option<PathBuf>,
    /// A Markdown summary (for a CI job summary).
    #[arg(long)]
    pub(super) summary_md: Option<PathBuf>,
    /// JUnit XML: one test case per threshold.
    #[arg(long)]
    pub(super) junit: Option<PathBuf>,
}

#[derive(Args)]
pub(super) struct ReportArgs {
    /// A report written by `run --out`.
    pub(super) report: PathBuf,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub(super) format: ReportFormat,
    #[command(flatten)]
    pub(super) renders: RenderArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum ReportFormat {
    /// The terminal summary.
    Text,
    /// The report itself.
    Json,
}

impl PlanArgs {
    pub(super) fn overrides(&self, duration: Option<Duration>) -> run::Overrides {
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
    pub(super) fn load(&self, duration: Option<Duration>) -> Result<scenario::Scenario, CliError> {
        let loaded = scenario::load(&self.scenario).map_err(|e| CliError::Usage(e.to_string()))?;
        run::apply_overrides(loaded, &self.overrides(duration)).map_err(|e| CliError::Usage(e.to_string()))
    }
}

#[derive(Args)]
pub(super) struct ServeArgs {
    /// Address to listen on, HOST:PORT (a name such as localhost, or an
    /// address; loopback unless you say otherwise; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen_addr)]
    pub(super) addr: SocketAddr,
    /// The credential of the control endpoints (POST /faults, POST
    /// /stats/reset): `Authorization: Bearer TOKEN` (401 otherwise). Without
    /// it, the heartbeats' credential guards them. Any user of the machine
    /// sees a flag's value in the process list: prefer --admin-token-file or
    /// the FLEETSTORM_ADMIN_TOKEN environment variable.
    #[arg(long, value_name = "TOKEN")]
    pub(super) admin_token: Option<String>,
    /// --admin-token's TOKEN from this file (surrounding whitespace
    /// trimmed), e.g. a mounted Kubernetes Secret.
    #[arg(long, value_name = "FILE", conflicts_with = "admin_token")]
    pub(super) admin_token_file: Option<PathBuf>,
    /// Guard the read endpoints (GET /stats, /metrics, /faults, /devices/...)
    /// with the control credential too.
    #[arg(long)]
    pub(super) protect_reads: bool,
    /// Allow control endpoints without a credential on an address other
    /// than loopback (refused otherwise: anyone reaching the port could
    /// change how serve answers).
    #[arg(long)]
    pub(super) allow_open_control: bool,
    /// Added latency: 50ms, uniform:10ms..50ms, normal:20ms,5ms or lognormal:20ms,0.5.
    #[arg(long)]
    pub(super) latency: Option<Latency>,
    /// Share of heartbeats answered with --error-status (0 to 1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub(super) error_rate: f64,
    /// Status of injected errors (503 and 429 carry Retry-After).
    #[arg(long)]
    pub(super) error_status: Option<u16>,
    /// Share of heartbeats whose connection is closed without an answer (0 to 1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub(super) drop_rate: f64,
    /// Capacity: this many workers...
    #[arg(long)]
    pub(super) workers: Option<u32>,
    /// ...each taking this long per heartbeat (an M/D/c queue).
    #[arg(long, value_parser = parse_duration)]
    pub(super) service_time: Option<Duration>,
    /// Heartbeats waiting for a worker beyond this many get 503.
    #[arg(long)]
    pub(super) queue_limit: Option<u32>,
    /// Hold every heartbeat this long before answering (cleared by POST /faults).
    #[arg(long, value_parser = parse_duration)]
    pub(super) stall: Option<Duration>,
    /// Require `Authorization: Bearer TOKEN` on heartbeats (401 otherwise).
    /// Also from --require-bearer-file or FLEETSTORM_REQUIRE_BEARER, which
    /// the process list does not show.
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["require_header", "require_header_file"])]
    pub(super) require_bearer: Option<String>,
    /// --require-bearer's TOKEN from this file (surrounding whitespace trimmed).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["require_bearer", "require_header", "require_header_file"])]
    pub(super) require_bearer_file: Option<PathBuf>,
    /// Require a header NAME=VALUE on heartbeats (401 otherwise). Also from
    /// --require-header-file or FLEETSTORM_REQUIRE_HEADER.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_header)]
    pub(super) require_header: Option<(http::HeaderName, http::HeaderValue)>,
    /// --require-header's NAME=VALUE from this file (surrounding whitespace trimmed).
    #[arg(long, value_name = "FILE", conflicts_with = "require_header")]
    pub(super) require_header_file: Option<PathBuf>,
    /// Close HTTP/1 connections whose next request head takes longer than
    /// this (hyper counts kept-alive waiting too: this is the keep-alive timeout).
    #[arg(long, value_parser = parse_duration, default_value = "75s")]
    pub(super) header_timeout: Duration,
    /// Answer 408 when a request body takes longer than this.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub(super) body_timeout: Duration,
    /// Close connections idle (no bytes, no request in flight) this long.
    #[arg(long, value_parser = parse_duration, default_value = "75s")]
    pub(super) idle_timeout: Duration,
    /// Track at most this many devices: a heartbeat from a new device
    /// beyond them gets 507 (known devices go on). Default: as many as a
    /// quarter of the machine's available memory holds (at least 100,000).
    #[arg(long, value_name = "N")]
    pub(super) max_devices: Option<u64>,
    /// Connections beyond this many open at once are closed on accept.
    #[arg(long, default_value_t = 100_000)]
    pub(super) max_connections: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub(super) threads: Option<usize>,
    /// Serve HTTPS with this certificate chain (PEM); HTTP/2 or HTTP/1.1 by ALPN.
    #[arg(long, requires = "tls_key")]
    pub(super) tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub(super) tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, requires = "tls_cert")]
    pub(super) client_ca: Option<PathBuf>,
    /// Also answer this device profile's paths (thingsboard, hono,
    /// azure-iot-hub, aws-iot-shadow), as that service does, or its MQTT
    /// sessions (mqtt, see --mqtt); repeat for several. SendHeartbeat is
    /// always answered.
    #[arg(long = "profile", value_name = "NAME", value_parser = parse_profile)]
    pub(super) profiles: Vec<crate::wire::ProfileName>,
    /// Let in only the devices of this identities file (CSV or JSON Lines)
    /// on PROFILE's paths, checking their credentials; PROFILE= may be left
    /// out when one --profile is given. Without one, a profile lets in the
    /// devices that follow its rule (each credential is the device's name).
    #[arg(long = "identities", value_name = "[PROFILE=]FILE")]
    pub(super) identities: Vec<String>,
    /// Verify the SigV4 signatures of aws-iot-shadow requests with the AWS
    /// credentials of the environment (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY); without it, serve only checks that a request
    /// carries a SigV4 header for the iotdata service.
    #[arg(long)]
    pub(super) sigv4_verify: bool,
    /// Answer the device profiles of this scenario's fleets as the
    /// built-in backend does for it: their custom templates, their MQTT
    /// topics, and only the devices of their identities files.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["profiles", "identities"])]
    pub(super) scenario: Option<PathBuf>,
    /// Also listen for MQTT 3.1.1 and 5 sessions of the mqtt profile at HOST:PORT
    /// (loopback unless you say otherwise, as --addr; port 0 picks a free
    /// port; the address is printed on stderr). Each session's CONNECT is
    /// checked under the profile's rule (--identities mqtt=FILE: known
    /// devices with their username and password), each PUBLISH against its
    /// topic and body; a bad one closes its session in 3.1.1 and gets a
    /// negative PUBACK in MQTT 5. Without this flag,
    /// --profile mqtt (or an mqtt fleet in --scenario) listens on
    /// 127.0.0.1:1883.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_listen_addr)]
    pub(super) mqtt: Option<SocketAddr>,
    /// The topic each MQTT device publishes its heartbeats to: {device} is
    /// its client id (a scenario's fleets give theirs).
    #[arg(long, value_name = "TEMPLATE", default_value = crate::wire::mqtt::DEFAULT_TOPIC, conflicts_with = "scenario")]
    pub(super) mqtt_topic: String,
}

/// A device profile's name, as a scenario writes it.
pub(super) fn parse_profile(text: &str) -> Result<crate::wire::ProfileName, String> {
    use crate::wire::ProfileName;
    ProfileName::ALL.into_iter().find(|p| p.to_string() == text).ok_or_else(|| {
        let names: Vec<String> = ProfileName::ALL.iter().map(ToString::to_string).collect();
        format!("{text:?} is not a device profile (profiles: {})", names.join(", "))
    })
}

/// A listening address: HOST:PORT, the host a name or an address.
pub(super) fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut found = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?} is not HOST:PORT (e.g. 127.0.0.1:8080 or localhost:8080): {e}"))?;
    found.next().ok_or_else(|| format!("{text:?} resolves to no address"))
}

pub(super) fn parse_header(text: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let (name, value) = text.split_once('=').ok_or("write NAME=VALUE, e.g. x-api-key=secret")?;
    let name = http::HeaderName::try_from(name.trim()).map_err(|e| format!("bad header name {name:?}: {e}"))?;
    let value = http::HeaderValue::try_from(value).map_err(|e| format!("bad header value: {e}"))?;
    Ok((name, value))
}

/// A usage error of `subcommand` in clap's words (its usage line and the
/// pointer to --help): exit code 2. For what clap cannot see alone: a flag
/// given that the scenario makes meaningless.
pub(super) fn usage_error(subcommand: &str, message: &str) -> CliError {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    cli.build();
    let error = match cli.find_subcommand_mut(subcommand) {
        Some(command) => command.error(clap::error::ErrorKind::ArgumentConflict, message),
        None => cli.error(clap::error::ErrorKind::ArgumentConflict, message),
    };
    CliError::Clap(error)
}
