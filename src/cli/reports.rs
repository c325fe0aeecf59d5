//! The commands that read reports: `report` (render again), `compare`
//! (the regression gate) and `merge` (shards into one run).

use std::io::{self, Write};
use std::path::PathBuf;

use super::args::{CompareArgs, MergeArgs, RenderArgs, ReportArgs, ReportFormat};
use super::error::{CliError, EXIT_FAILED, EXIT_GATE};
use super::output::{check_outputs, publish};
use super::run::run_verdict;
use crate::report::Report;
use crate::report::paint::Paint;

pub(super) fn compare_command(args: &CompareArgs) -> Result<(), CliError> {
    let (baseline, current) = match args.reports.as_slice() {
        [b, c] => (std::slice::from_ref(b), std::slice::from_ref(c)),
        [] if !args.baseline.is_empty() => (args.baseline.as_slice(), args.current.as_slice()),
        _ => {
            return Err(CliError::Usage(
                "give BASELINE.json CURRENT.json, or --baseline FILES... --current FILES...".into(),
            ));
        }
    };
    let usage = |e: &dyn std::fmt::Display| CliError::Usage(e.to_string());
    let load =
        |paths: &[PathBuf]| paths.iter().map(|p| Report::load(p).map_err(|e| usage(&e))).collect::<Result<Vec<_>, _>>();
    let options = crate::compare::Options::parse(args.max_regression.as_deref(), args.metrics.as_deref())
        .map_err(|e| usage(&e))?;
    let (baseline, current): (Vec<Report>, Vec<Report>) = (load(baseline)?, load(current)?);
    let comparison = crate::compare::compare(&baseline, &current, &options).map_err(|e| usage(&e))?;
    print!("{}", comparison.render());
    if comparison.regressed() { Err(CliError::Said(EXIT_GATE)) } else { Ok(()) }
}

pub(super) fn merge_command(args: &MergeArgs) -> Result<(), CliError> {
    use crate::report::merge::{ShardReport, merge};
    let mut shards = Vec::with_capacity(args.shards.len());
    for path in &args.shards {
        match Report::load(path) {
            Ok(report) => shards.push(ShardReport { origin: path.display().to_string(), report }),
            Err(e) => return Err(CliError::Usage(e.to_string())),
        }
    }
    let [html, md, junit] = args.renders.given();
    let outputs = check_outputs([("--out", args.out.as_deref()), html, md, junit], None)?;
    let report = match merge(&shards) {
        Ok(r) => r,
        Err(e) => return Err(CliError::Usage(format!("cannot merge: {e}"))),
    };
    for warning in report.merged.iter().flat_map(|m| &m.warnings) {
        eprintln!("warning: {warning}");
    }
    if !publish(&report, &outputs) {
        return Err(CliError::Said(EXIT_FAILED));
    }
    run_verdict(&report)
}

pub(super) fn report_command(args: &ReportArgs) -> Result<(), CliError> {
    // The report itself goes to stdout: a rendering may not take it too.
    let [html, md, junit] = args.renders.given();
    let outputs = check_outputs([("--format", Some(std::path::Path::new("-"))), html, md, junit], None)?;
    let report = match Report::load(&args.report) {
        Ok(r) => r,
        Err(e) => return Err(CliError::Usage(e.to_string())),
    };
    let text = match args.format {
        ReportFormat::Text => report.summary_painted(Paint::for_stdout()),
        ReportFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(j) => j + "\n",
            Err(e) => return Err(CliError::Failed(format!("cannot encode the report: {e}"))),
        },
    };
    let mut stdout = io::stdout().lock();
    if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        return Err(CliError::Said(EXIT_FAILED));
    }
    if RenderArgs::write(&outputs, &report) { Ok(()) } else { Err(CliError::Said(EXIT_FAILED)) }
}
