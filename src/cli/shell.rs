//! What a shell and `man` need of the command line, generated from the
//! same clap definitions the commands parse with ([`args`](super::args)),
//! so they cannot drift from the flags: `fleetstorm completions SHELL`
//! and `fleetstorm man`, both on standard output.

use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use super::args::Cli;
use super::error::{CliError, EXIT_FAILED};

/// Prints the completion script of `shell`.
pub(super) fn completions_command(shell: Shell) -> Result<(), CliError> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "fleetstorm", &mut script);
    emit(&script)
}

/// Prints the man page fleetstorm(1) (the commands and the exit codes),
/// or writes it and a page per command (fleetstorm-run(1), ..., each with
/// its flags) into `dir`.
pub(super) fn man_command(dir: Option<&Path>) -> Result<(), CliError> {
    let cmd = Cli::command().after_long_help(super::error::exit_codes_sentence()).disable_help_subcommand(true);
    let Some(dir) = dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut page)
            .map_err(|e| CliError::Failed(format!("cannot render the man page: {e}")))?;
        return emit(&page);
    };
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::Usage(format!("--dir {}: not a directory", dir.display())));
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| clap_mangen::generate_to(cmd, dir))
        .map_err(|e| CliError::Failed(format!("cannot write the man pages into {}: {e}", dir.display())))
}

fn emit(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).map_err(|_| CliError::Said(EXIT_FAILED))
}
