//! A capacity search's step lines on stderr: one as each step starts, one
//! with its figures and verdict as it ends (none when quiet).

use super::output::{LiveOutput, Step};
use crate::engine::Live;

/// The step lines (the search's progress; its steps' runs draw no line).
pub(super) struct StepLines;

impl LiveOutput for StepLines {
    fn observe(&mut self, _live: &Live<'_>) {}

    fn step(&mut self, step: &Step<'_>) {
        match step {
            Step::Starting { step, rate, devices } => {
                eprintln!("step {step}: {rate:.0} heartbeats/s from {} devices ...", crate::units::thousands(*devices))
            }
            Step::Finished(s) => eprintln!(
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
    }
}
