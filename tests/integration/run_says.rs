//! What a run says is what happened: the first answer of each error
//! status comes with what its body said and what to check.

use fleetstorm::report::Report;

use super::util::{TempDir, fleetstorm, spawn_serve};

#[test]
fn a_401_comes_with_what_the_backend_said_and_what_to_check() {
    // serve wants a bearer token; the scenario sends none.
    let (mut serve, url) = spawn_serve(&["--require-bearer", "the-right-token"]);
    let dir = TempDir::new("says-401");
    let scenario = dir.write(
        "s.toml",
        &format!(
            "name = \"no-token\"\nseed = 1\nduration = \"1s\"\n[target]\nurl = \"{url}\"\ntimeout = \"2s\"\n\
             [[fleets]]\nname = \"meters\"\ndevices = 5\ninterval = \"500ms\"\n"
        ),
    );
    let json = dir.path("r.json");
    let run = fleetstorm(&["run", &scenario, "--quiet", "--out", json.to_str().unwrap()]);
    let _ = serve.kill();
    let _ = serve.wait();
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert_eq!(run.status.code(), Some(1), "nothing succeeded: {stdout}{}", String::from_utf8_lossy(&run.stderr));
    let line = stdout.lines().find(|l| l.starts_with("first http_401 error: ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("missing or wrong credentials"), "serve's message: {line}");
    assert!(line.contains("the scenario's headers, the identities file"), "what to check: {line}");
    let report = Report::load(&json).unwrap();
    assert_eq!(report.first_errors.get("http_401").map(String::as_str), line.strip_prefix("first http_401 error: "));
}
