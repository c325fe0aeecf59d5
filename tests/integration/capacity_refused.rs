//! A capacity step refused before it ran says so: not "the generator fell
//! behind" (it never ran), and what would let it run. The refusal comes
//! from an open-files limit the test sets on the fleetstorm process (soft
//! and hard, so the process cannot raise it), whatever this machine's.

use fleetstorm::capacity::search::StepVerdict;
use fleetstorm::capacity::{CapacityReport, CapacityVerdict, ClientLimit};

use super::util::{TempDir, root};

/// `fleetstorm ARGS` under an open-files limit of `files`.
fn fleetstorm_limited(files: u32, args: &[&str]) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("sh runs")
}

#[test]
fn a_step_refused_before_it_ran_says_so_and_names_what_lets_it_run() {
    let dir = TempDir::new("capacity-refused");
    // 300 per-device connections to the built-in backend (both ends in
    // this process: 800 open files with the reserve) under a limit of 512:
    // the first step is refused before it starts.
    let scenario = dir.write(
        "s.toml",
        "name = \"refused\"\nseed = 5\n[target]\nurl = \"builtin\"\ntimeout = \"2s\"\nconnections = \"per-device\"\n\
         [[fleets]]\nname = \"meters\"\ndevices = 100\ninterval = \"1s\"\n\
         [capacity]\nslo = { \"latency.p99\" = \"< 1s\" }\nstart_rate = \"300/s\"\nmax_rate = \"1000/s\"\n\
         step_duration = \"1s\"\nwarmup = \"1s\"\n",
    );
    let out = dir.path("c.json");
    let run = fleetstorm_limited(512, &["capacity", &scenario, "--quiet", "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    let report = CapacityReport::load(&out)
        .unwrap_or_else(|e| panic!("{e}\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr)));
    assert_eq!((run.status.code(), report.verdict), (Some(7), CapacityVerdict::Inconclusive), "{stdout}");
    assert_eq!(report.limit.as_deref(), Some("resources"), "{stdout}");
    let step = &report.steps[0];
    assert_eq!(
        (report.steps.len(), step.verdict, step.client_limit),
        (1, StepVerdict::Inconclusive, Some(ClientLimit::Resources))
    );
    assert!(
        step.reason.starts_with("not run: refused before it started:") && step.reason.contains("512 files"),
        "{}",
        step.reason
    );
    let answer = &report.answer;
    assert!(!answer.contains("fell behind"), "it never ran: {answer}");
    assert!(answer.contains("the step at 300/s was refused before it ran"), "{answer}");
    for fix in ["scale = \"rate\"", "connections = { pool = N }", "--shard I/N"] {
        assert!(answer.contains(fix), "{fix} in {answer}");
    }
    assert!(stdout.contains(answer.as_str()), "the answer on stdout: {stdout}");
    // Its target is named as every output names it.
    assert!(report.target.starts_with("builtin"), "{}", report.target);
}
