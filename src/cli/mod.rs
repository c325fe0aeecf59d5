//! The `fleetstorm` command line, in the library: flags in ([`args`]),
//! the commands (one module each), the output policy ([`output`]), what a
//! run or a capacity search shows as it goes ([`live`]), signals
//! ([`signals`]), and every way a command ends mapped to an exit
//! code in one place ([`error`], [`run`]). `src/main.rs` only calls
//! [`main`]; tests call [`execute`] in-process with any arguments.
//!
//! Exit codes: one list, [`error::EXIT_CODES`], from which the man page
//! and the guide's reference page are rendered.

pub mod args;
mod capacity;
pub mod error;
mod live;
pub mod output;
mod reports;
mod run;
mod sample;
mod serve;
mod shell;
mod signals;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
pub use error::CliError;

/// The command line: parses the process's arguments, runs the command,
/// says how it ended and gives its exit code.
pub fn main() -> ExitCode {
    run(std::env::args_os())
}

/// [`main`] with `args` (the program's name first).
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match execute(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.print();
            ExitCode::from(e.code())
        }
    }
}

/// Runs the command `args` name; `Err` says how it ended when it did not
/// succeed (nothing is printed of it: [`run`] does that).
pub fn execute<I, T>(args: I) -> Result<(), CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    match cli.command {
        Command::Sample { scenario, count, fleet, seed } => {
            sample::sample_command(&scenario, crate::sample::SampleOptions { count, fleet, seed })
        }
        Command::Serve(args) => serve::serve_command(*args),
        Command::Run(args) => run::run_command(*args),
        Command::Validate(args) => run::validate_command(&args),
        Command::Report(args) => reports::report_command(&args),
        Command::Compare(args) => reports::compare_command(&args),
        Command::Capacity(args) => capacity::capacity_command(&args),
        Command::Merge(args) => reports::merge_command(&args),
        Command::Completions { shell } => shell::completions_command(shell),
        Command::Man { dir } => shell::man_command(dir.as_deref()),
    }
}
