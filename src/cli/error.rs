//! How a command ends when it does not succeed, and the exit code that
//! says so: one type, mapped to the process's exit code in one place
//! ([`super::run`]).

use crate::report::paint::Paint;
use crate::run::{RunError, RunErrorKind};

/// The command itself failed: I/O (an output not written), network, the
/// machine's resources.
pub const EXIT_FAILED: u8 = 1;
/// Bad usage or an invalid scenario.
pub const EXIT_USAGE: u8 = 2;
/// A threshold or comparison gate failed; `capacity`: no rate met the SLO.
pub const EXIT_GATE: u8 = 3;
/// `--start-at` passed before the shard was ready: nothing was sent.
pub const EXIT_NOT_READY: u8 = 4;
/// A run in which not one heartbeat succeeded (the target is down, refuses
/// every connection, or answers every heartbeat with an error).
pub const EXIT_NOTHING_SUCCEEDED: u8 = 5;
/// Interrupted (Ctrl-C, SIGTERM): the report, of what ran, was written.
pub const EXIT_INTERRUPTED: u8 = 6;
/// `capacity`: the search ended without an answer (a step's generator fell
/// behind, its pool was too small, or a step could not run).
pub const EXIT_INCONCLUSIVE: u8 = 7;
/// A second interrupt: what was merged so far was written (128 + SIGINT).
pub const EXIT_ABANDONED: u8 = 130;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad usage or an invalid scenario (exit code 2), said as `error: ...`.
    #[error("{0}")]
    Usage(String),
    /// The command could not do its work (exit code 1), said as `error: ...`.
    #[error("{0}")]
    Failed(String),
    /// The command did its work, and its outcome is not a success (a gate,
    /// an interrupted run...): `message` says so, as is.
    #[error("{message}")]
    Verdict { code: u8, message: String },
    /// The command said everything already (a failed write, a comparison's
    /// table): only the exit code is left.
    #[error("exit code {0}")]
    Said(u8),
    /// clap's: bad flags (exit code 2), or `--help` and `--version` (0).
    #[error("{0}")]
    Clap(#[from] clap::Error),
}

impl CliError {
    /// A second Ctrl-C stopped the command after it wrote what it could.
    pub fn abandoned() -> CliError {
        CliError::Verdict {
            code: EXIT_ABANDONED,
            message: format!("stopped by a second interrupt: exit code {EXIT_ABANDONED}"),
        }
    }

    /// The process's exit code.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Failed(_) => EXIT_FAILED,
            CliError::Verdict { code, .. } | CliError::Said(code) => *code,
            CliError::Clap(e) => u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE),
        }
    }

    /// Says it on the standard streams, as the command line does.
    pub fn print(&self) {
        match self {
            CliError::Usage(m) | CliError::Failed(m) => eprintln!("error: {m}"),
            CliError::Verdict { message, .. } => eprintln!("{}", Paint::for_stderr().bad(message)),
            CliError::Said(_) => {}
            CliError::Clap(e) => {
                let _ = e.print();
            }
        }
    }
}

impl From<RunError> for CliError {
    fn from(e: RunError) -> CliError {
        match e.kind() {
            RunErrorKind::Invalid => CliError::Usage(e.to_string()),
            RunErrorKind::Failed => CliError::Failed(e.to_string()),
            RunErrorKind::NotReady => {
                CliError::Verdict { code: EXIT_NOT_READY, message: format!("error: {e}: exit code {EXIT_NOT_READY}") }
            }
        }
    }
}
