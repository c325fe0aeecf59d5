//! `fleetstorm sample`: heartbeats as they would be sent, as NDJSON (an
//! MQTT fleet's each after its `PUBLISH` line).

use std::io::{self, Write};

use super::error::CliError;
use crate::sample::{self, SampleError, SampleOptions};
use crate::scenario;

pub(super) fn sample_command(path: &std::path::Path, opts: SampleOptions) -> Result<(), CliError> {
    let scenario = match scenario::load(path) {
        Ok(s) => s,
        Err(e) => return Err(CliError::Usage(e.to_string())),
    };
    let seed = super::run::seed_or_fresh(opts.seed.or(scenario.seed));
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match sample::write_samples(&scenario, &opts, seed, &mut out) {
        Ok(()) => Ok(()),
        // `fleetstorm sample ... | head` closes the pipe early: that is success.
        Err(SampleError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e @ SampleError::UnknownFleet(..)) => Err(CliError::Usage(e.to_string())),
        Err(e) => {
            let _ = out.flush();
            Err(CliError::Failed(e.to_string()))
        }
    }
}
