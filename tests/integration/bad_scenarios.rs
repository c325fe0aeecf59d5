//! The corpus of broken scenario files in `tests/bad-scenarios`: each one
//! makes `fleetstorm validate` (and `run`) exit 2 with an error that names
//! the file, the line and column, and what to do, as `expect.txt` says
//! (in-process: `fleetstorm::cli::execute`; the messages are the command
//! line's).

use super::util::{execute, root};

#[test]
fn every_broken_scenario_is_refused_with_its_place_and_a_fix() {
    let dir = root().join("tests/bad-scenarios");
    let expect = std::fs::read_to_string(dir.join("expect.txt")).unwrap();
    let cases: Vec<(&str, &str, &str)> = expect
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.splitn(3, " | ");
            (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
        })
        .collect();
    assert!(cases.len() >= 30, "a corpus of at least 30: {}", cases.len());
    let files = std::fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().file_name() != "expect.txt").count();
    assert_eq!(files, cases.len(), "every file has its expectation");
    for (file, place, fix) in cases {
        let path = format!("tests/bad-scenarios/{file}");
        // In this process: each command refuses the file before it does any work.
        for command in ["validate", "run"] {
            let (code, err) = execute(&[command, &path, "--quiet"][..if command == "run" { 3 } else { 2 }]);
            assert_eq!(code, 2, "{command} {file}: {err}");
            let at = if place == "-" { format!("error: {path}: ") } else { format!("error: {path}:{place}: ") };
            assert!(err.starts_with(&at), "{command} {file}: want {at:?}, got {err}");
            assert!(err.contains(fix), "{command} {file}: want {fix:?} in {err}");
            assert!(!err.contains("panicked"), "{file}: {err}");
        }
    }
}
