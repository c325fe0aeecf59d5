//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the built `fleetstorm` binary with `args` from the repository root.
pub fn fleetstorm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the fleetstorm binary runs")
}
