//! The `fleetstorm` binary: the command line lives in the library
//! (`fleetstorm::cli`), so that tests can run every command in-process.

fn main() -> std::process::ExitCode {
    fleetstorm::cli::main()
}
