//! The `fleetstorm` command line: flags in, library calls out, exit codes.
//!
//! Exit codes: 0 success; 1 the command itself failed (I/O, network);
//! 2 bad usage or an invalid scenario; 3 a threshold or comparison gate failed.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleetstorm::sample::{self, SampleError, SampleOptions};
use fleetstorm::scenario;

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
}

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sample { scenario, count, fleet, seed } => {
            sample_command(&scenario, SampleOptions { count, fleet, seed })
        }
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
