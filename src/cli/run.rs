//! `fleetstorm validate` and `fleetstorm run`, and what they share with
//! the other commands that run scenarios: the seed, the runtime, and the
//! exit code a run's report makes.

use std::io::{self, Write};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::args::{RunArgs, ShardArgs, ValidateArgs};
use super::error::{CliError, EXIT_FAILED, EXIT_GATE, EXIT_INTERRUPTED, EXIT_NOTHING_SUCCEEDED};
use super::live::{self, LiveFlags};
use super::output::{check_outputs, publish, write_output};
use super::signals::{Termination, interrupts};
use crate::report::Report;
use crate::run;
use crate::scenario;

/// The scenario's seed, or a fresh one (printed, so the run can be repeated).
pub(super) fn seed_of(scenario: &scenario::Scenario) -> u64 {
    seed_or_fresh(scenario.seed)
}

/// `seed`, or a fresh one, printed so the command can be repeated: the one
/// fallback of every command that takes a seed. A fresh seed is below
/// 2^63, so it can be written back into a TOML scenario (whose integers
/// are signed 64-bit).
pub(super) fn seed_or_fresh(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(|| {
        let seed = rand::random::<u64>() >> 1;
        eprintln!("note: the scenario sets no seed; using seed {seed} (pass --seed {seed} to repeat)");
        seed
    })
}

/// The runtime a run or a capacity search drives its engine from.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Runtime::new().map_err(|e| CliError::Failed(format!("cannot start the runtime: {e}")))
}

pub(super) fn validate_command(args: &ValidateArgs) -> Result<(), CliError> {
    let scenario = args.plan.load(args.length.duration)?;
    let shard = shard_of(&args.sharding, &scenario)?;
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    let written = validate_to(&mut stdout, &scenario, shard, args.schedule).and_then(|checked| {
        stdout.flush()?;
        Ok(checked)
    });
    match written {
        Ok(checked) => checked,
        // `fleetstorm validate ... | head` closes the pipe early: what was
        // asked for was read; the checks already ran or are moot.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Failed(format!("cannot write to standard output: {e}"))),
    }
}

/// `validate`'s text into `out`: the plan, the schedule preview if asked,
/// the resources. The outer result is the writing's; the inner, the checks'.
fn validate_to(
    out: &mut impl Write,
    scenario: &scenario::Scenario,
    shard: Option<crate::shard::Shard>,
    schedule: Option<usize>,
) -> io::Result<Result<(), CliError>> {
    // One plan for its text and its schedule: under the scenario's seed
    // (a stand-in's for the text when it sets none).
    let plan = run::Plan::of_validate(scenario, shard);
    write!(out, "{}", plan.text_within(run::WALK_BUDGET))?;
    // TLS files and SigV4 credentials are read now, as a run would.
    if let scenario::TargetUrl::Http { host, .. } = &scenario.target.url
        && let Err(e) = run::endpoint_options(&scenario.target, host)
    {
        return Ok(Err(CliError::Usage(e.to_string())));
    }
    if let Some(n) = schedule {
        let Some(seed) = scenario.seed else {
            return Ok(Err(CliError::Usage(
                "--schedule needs a seed: set `seed` in the scenario or pass --seed".into(),
            )));
        };
        writeln!(out, "\nschedule (first {n} intended sends, seed {seed}):")?;
        for send in plan.preview(n) {
            writeln!(out, "{:>14.6} {} {}", send.at_ns as f64 / 1e9, send.fleet, send.device)?;
        }
    }
    Ok(match run::check_resources(scenario, shard, run::predicted_ip(&scenario.target.url)) {
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
            writeln!(
                out,
                "\nresources: up to {} connections; this process may open {} files; {} connections toward the target \
                 at full speed {sources} ({} each)",
                budget.needed,
                budget.open_files,
                budget.capacity(),
                budget.per_address
            )?;
            Ok(())
        }
        Err(e) => Err(CliError::Usage(e.to_string())),
    })
}

pub(super) fn run_command(args: RunArgs) -> Result<(), CliError> {
    let scenario = args.plan.load(args.length.duration)?;
    // Every output must be writable before the run starts, not found out after it.
    let [html, md, junit] = args.renders.given();
    let given = [("--out", args.out.as_deref()), html, md, junit, ("--hlog", args.hlog.as_deref())];
    let outputs = check_outputs(given, Some(&args.plan.scenario))?;
    let shard = shard_of(&args.sharding, &scenario)?;
    let seed = seed_of(&scenario);
    let runtime = runtime()?;
    runtime.block_on(async move {
        let (cancel, abandon) = (CancellationToken::new(), CancellationToken::new());
        tokio::spawn(interrupts(Termination::install(), cancel.clone(), abandon.clone()));
        let flags = LiveFlags {
            quiet: args.quiet,
            dashboard: args.dashboard,
            metrics_addr: args.metrics_addr,
            metrics_linger: args.metrics_linger,
            otlp: args.otlp.settings().map_err(CliError::Usage)?,
            allow_remote_pages: args.allow_remote_pages,
        };
        // The scenario's fleets as the run will run them, built once for
        // the live outputs and the run.
        let plan = run::Plan::new(&scenario, seed, shard);
        let followed = live::Followed::Run { plan: &plan };
        let mut live_outputs = live::start(followed, flags).await?;
        let options = run::ExecuteOptions {
            keep_second_histograms: args.hlog.is_some(),
            threads: args.threads.map(usize::from),
            warmup: Duration::ZERO,
            start_at: args.start_at,
            abandon: Some(abandon.clone()),
            live_freshness: live_outputs.show_freshness(),
        };
        let executed = run::execute_with(&plan, cancel, options, |live| live_outputs.observe(live)).await;
        live_outputs.stopped();
        let run::Executed { report, second_histograms, fleets } = match executed {
            Ok(r) => r,
            Err(e) => return Err(e.into()),
        };
        let verdict = match run_verdict(&report) {
            Ok(()) => "passed".to_string(),
            Err(e) => e.to_string(),
        };
        live_outputs.ended(&live::Ended {
            totals: Some((&fleets, Duration::from_secs_f64(report.elapsed_s))),
            verdict,
            html: &|| crate::report::html::render(&report),
        });
        // Every output is written before anything that may wait (the final
        // push, the lingers): a job killed then has its reports.
        let mut written = publish(&report, &outputs);
        if let Some(output) = outputs.get("--hlog") {
            let started_at =
                humantime::parse_rfc3339(&report.started_at).unwrap_or_else(|_| std::time::SystemTime::now());
            match crate::report::hlog::render(started_at, &second_histograms) {
                Ok(log) => written &= write_output(output, &log),
                Err(e) => {
                    eprintln!("error: cannot build the HdrHistogram log: {e}");
                    written = false;
                }
            }
        }
        live_outputs.finish(report.interrupted, &abandon).await;
        if abandon.is_cancelled() {
            return Err(CliError::abandoned());
        }
        if !written {
            return Err(CliError::Said(EXIT_FAILED));
        }
        run_verdict(&report)
    })
}

/// The shard `sharding` names, if any; refused without the run's seed,
/// by `validate` as by `run`.
fn shard_of(sharding: &ShardArgs, scenario: &scenario::Scenario) -> Result<Option<crate::shard::Shard>, CliError> {
    let shard = sharding.shard().map_err(|e| CliError::Usage(e.to_string()))?;
    if shard.is_some() && scenario.seed.is_none() {
        return Err(CliError::Usage(
            "a shard needs the run's seed, the same in every shard: set `seed` in the scenario or pass --seed".into(),
        ));
    }
    Ok(shard)
}

/// What a finished run's (or merged report's) outcome makes the command:
/// an abort threshold: 3; an interrupted run: 1; a run in which not one
/// heartbeat succeeded: 1, whatever its thresholds; a failing threshold: 3;
/// otherwise a success.
pub(super) fn run_verdict(report: &Report) -> Result<(), CliError> {
    let verdict = |code: u8, message: String| Err(CliError::Verdict { code, message });
    if let Some(a) = &report.aborted {
        return verdict(EXIT_GATE, format!("aborted by the threshold {}: exit code {EXIT_GATE}", a.expr));
    }
    if report.interrupted {
        return verdict(EXIT_INTERRUPTED, format!("the run was interrupted: exit code {EXIT_INTERRUPTED}"));
    }
    if let Some(why) = report.no_success() {
        let code = EXIT_NOTHING_SUCCEEDED;
        return verdict(code, format!("the run failed: {why}: exit code {code}"));
    }
    if !report.thresholds_passed() {
        let failed = report.thresholds.iter().filter(|t| !t.ok).count();
        return verdict(EXIT_GATE, format!("{failed} threshold(s) failed: exit code {EXIT_GATE}"));
    }
    Ok(())
}
