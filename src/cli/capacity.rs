//! `fleetstorm capacity`: the search, its report and exit code; what it
//! shows as it goes (the step lines, the dashboard) is [`super::live`]'s.

use tokio_util::sync::CancellationToken;

use super::args::{CapacityArgs, usage_error};
use super::error::{CliError, EXIT_FAILED, EXIT_GATE, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED};
use super::live::{self, LiveFlags};
use super::output::{check_outputs, say, write_json, write_output};
use super::run::{runtime, seed_of};
use super::signals::{Termination, interrupts};
use crate::capacity::{self, CapacityVerdict};
use crate::run::RunErrorKind;

pub(super) fn capacity_command(args: &CapacityArgs) -> Result<(), CliError> {
    let scenario = args.plan.load(None)?;
    let Some(settings) = &scenario.capacity else {
        return Err(CliError::Usage(format!(
            "{}: no [capacity] section; add one, e.g.\n  [capacity]\n  slo = {{ \"latency.p99\" = \"< 250ms\", \"error_rate\" = \"< 0.1%\" }}\n  start_rate = \"500/s\"\n  max_rate = \"100000/s\"",
            args.plan.scenario.display()
        )));
    };
    // Each step's device counts follow from its rate: a scale of them
    // would change nothing.
    if args.plan.devices_scale.is_some() && settings.scale == capacity::Scale::Devices {
        return Err(usage_error(
            "capacity",
            "the argument '--devices-scale' has no effect here: with scale = \"devices\" (the [capacity] \
             default) each step's device counts follow from its rate; use scale = \"rate\" to keep more or fewer \
             devices at each rate",
        ));
    }
    let outputs =
        check_outputs([("--out", args.out.as_deref()), ("--html", args.html.as_deref())], Some(&args.plan.scenario))?;
    let seed = seed_of(&scenario);
    let runtime = runtime()?;
    let abandon = CancellationToken::new();
    runtime
        .block_on(async {
            let flags = LiveFlags {
                quiet: args.quiet,
                dashboard: args.dashboard,
                allow_remote_pages: args.allow_remote_pages,
                ..LiveFlags::default()
            };
            let mut live_outputs = live::start(live::Followed::Capacity { scenario: &scenario }, flags).await?;
            let cancel = CancellationToken::new();
            tokio::spawn(interrupts(Termination::install(), cancel.clone(), abandon.clone()));
            let threads = args.threads.map(usize::from);
            let live_freshness = live_outputs.show_freshness();
            let searched =
                crate::capacity::search(&scenario, seed, cancel, Some(abandon.clone()), threads, live_freshness, |p| {
                    live_outputs.search_progress(p)
                })
                .await;
            live_outputs.stopped();
            let report = match searched {
                Ok(r) => r,
                Err(e) if e.kind() == RunErrorKind::Invalid => return Err(CliError::Usage(e.to_string())),
                Err(e) => return Err(CliError::Failed(e.to_string())),
            };
            let html = capacity::html::render(&report);
            live_outputs.ended(&live::Ended { totals: None, verdict: report.answer.clone(), html: &|| html.clone() });
            // The outputs are written before the dashboard lingers.
            say(&outputs, &report.summary());
            let mut written = true;
            if let Some(output) = outputs.get("--out") {
                written &= write_json(output, &report);
            }
            if let Some(output) = outputs.get("--html") {
                written &= write_output(output, html.as_bytes());
            }
            live_outputs.finish(report.verdict == CapacityVerdict::Interrupted, &abandon).await;
            Ok((report, written))
        })
        .and_then(|(report, written)| capacity_end(&report, written, &abandon))
}

/// How a finished search ends the command.
fn capacity_end(report: &capacity::CapacityReport, written: bool, abandon: &CancellationToken) -> Result<(), CliError> {
    if abandon.is_cancelled() {
        return Err(CliError::abandoned());
    }
    if !written {
        return Err(CliError::Said(EXIT_FAILED));
    }
    match report.verdict {
        CapacityVerdict::Found | CapacityVerdict::MaxRateReached => Ok(()),
        CapacityVerdict::BelowStart => Err(CliError::Said(EXIT_GATE)),
        CapacityVerdict::Inconclusive => Err(CliError::Said(EXIT_INCONCLUSIVE)),
        CapacityVerdict::Interrupted => Err(CliError::Said(EXIT_INTERRUPTED)),
    }
}
