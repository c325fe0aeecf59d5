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

/// Every exit code with what it means: the one list the man page's
/// closing section ([`exit_codes_sentence`]) and the guide's reference
/// page (`docs/guide/exit-codes.md`, [`exit_codes_page`], checked current
/// by a test) are rendered from.
pub const EXIT_CODES: &[(u8, &str)] = &[
    (0, "success"),
    (EXIT_FAILED, "the command itself failed: I/O (an output not written), network, the machine's resources"),
    (EXIT_USAGE, "bad usage or an invalid scenario"),
    (EXIT_GATE, "a threshold or comparison gate failed; `capacity`: no rate tried met the SLO"),
    (EXIT_NOT_READY, "`run --start-at`: the instant passed before the devices were ready (nothing was sent)"),
    (
        EXIT_NOTHING_SUCCEEDED,
        "`run`: not one heartbeat succeeded (the target is down, refuses every connection, or answers every \
         heartbeat with an error), whatever the thresholds",
    ),
    (EXIT_INTERRUPTED, "`run`, `capacity`: interrupted by Ctrl-C or SIGTERM; the report of what ran was written"),
    (
        EXIT_INCONCLUSIVE,
        "`capacity`: inconclusive (a step's generator fell behind, its pool was too small, or a step could not run)",
    ),
    (
        EXIT_ABANDONED,
        "`run`, `capacity`: stopped by a second Ctrl-C (the report of what was merged so far was written)",
    ),
];

/// The exit codes as one paragraph (the man page's closing section).
pub fn exit_codes_sentence() -> String {
    let codes: Vec<String> =
        EXIT_CODES.iter().map(|(code, meaning)| format!("{code} {}", meaning.replace('`', ""))).collect();
    format!("Exit codes: {}.", codes.join("; "))
}

/// The guide's reference page of the exit codes, in Markdown.
pub fn exit_codes_page() -> String {
    let mut page = String::from(
        "# Exit codes\n\n<!-- Rendered from src/cli/error.rs's EXIT_CODES by a test \
         (cli::error::tests::the_guide_s_exit_codes_are_the_code_s); \
         FLEETSTORM_BLESS=1 cargo test --lib exit_codes rewrites it. -->\n\n| code | meaning |\n|---|---|\n",
    );
    for (code, meaning) in EXIT_CODES {
        page.push_str(&format!("| {code} | {meaning} |\n"));
    }
    page
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The guide's page is the code's list, rendered: a code added or
    /// reworded here and not there fails this test
    /// (`FLEETSTORM_BLESS=1` rewrites the page).
    #[test]
    fn the_guide_s_exit_codes_are_the_code_s() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/guide/exit-codes.md");
        let page = exit_codes_page();
        if std::env::var_os("FLEETSTORM_BLESS").is_some() {
            std::fs::write(&path, &page).unwrap();
        }
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written, page, "docs/guide/exit-codes.md is not the code's list: FLEETSTORM_BLESS=1 rewrites it");
        let codes: Vec<u8> = EXIT_CODES.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7, 130], "each code once, in order");
        assert!(exit_codes_sentence().starts_with("Exit codes: 0 success; 1 the command itself failed"));
    }
}
