//! Outputs never destroy what they point at, end to end: standard output
//! by `-` or by name, symlinks, FIFOs; an output on the scenario file or
//! two outputs on one file are refused before any traffic.

use std::os::unix::fs::FileTypeExt;
use std::process::{Command, Stdio};

use super::util::{TempDir, fleetstorm};

/// A one-second scenario against the built-in backend.
fn scenario(dir: &TempDir) -> String {
    dir.write(
        "small.toml",
        "seed = 3\nduration = \"1s\"\n[target]\nurl = \"builtin\"\n[[fleets]]\nname = \"f\"\ndevices = 20\ninterval = \"500ms\"\n",
    )
}

fn report_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", String::from_utf8_lossy(bytes)))
}

#[test]
fn the_report_goes_to_standard_output_by_dash_or_by_name_and_the_device_stays() {
    let dir = TempDir::new("outputs-stdout");
    let file = scenario(&dir);
    for out in ["-", "/dev/stdout"] {
        let run = fleetstorm(&["run", &file, "--quiet", "--out", out]);
        assert_eq!(run.status.code(), Some(0), "{out}: {}", String::from_utf8_lossy(&run.stderr));
        // Standard output holds the report alone; the summary went to stderr.
        let report = report_json(&run.stdout);
        assert_eq!(report["schema"], "fleetstorm.report/v3");
        assert_eq!(report["totals"]["scheduled"], 40);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains("fleetstorm run \"small\""), "the summary is on stderr: {stderr}");
    }
    // /dev/stdout is still the link it was, not a file renamed over it.
    assert!(std::fs::symlink_metadata("/dev/stdout").unwrap().file_type().is_symlink());
    // Standard output redirected to a file: that file gets the report,
    // written through (the same inode), not replaced.
    let redirected = dir.path("redirected.json");
    let target = std::fs::File::create(&redirected).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", &file, "--quiet", "--out", "/dev/stdout"])
        .stdout(target)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(report_json(&std::fs::read(&redirected).unwrap())["totals"]["scheduled"], 40);
}

#[test]
fn a_symlinked_output_keeps_its_link_and_its_target_gets_the_report() {
    let dir = TempDir::new("outputs-link");
    let file = scenario(&dir);
    let real = dir.path("real.json");
    std::fs::write(&real, "old").unwrap();
    let link = dir.path("latest.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let html_link = dir.path("latest.html");
    std::os::unix::fs::symlink("real.html", &html_link).unwrap();
    let run =
        fleetstorm(&["run", &file, "--quiet", "--out", link.to_str().unwrap(), "--html", html_link.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
    assert_eq!(report_json(&std::fs::read(&real).unwrap())["totals"]["scheduled"], 40);
    assert!(std::fs::symlink_metadata(&html_link).unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(dir.path("real.html")).unwrap().contains("<html"), "a dangling link's target made");
}

#[test]
fn a_fifo_output_is_written_through() {
    let dir = TempDir::new("outputs-fifo");
    let file = scenario(&dir);
    let fifo = dir.path("report.pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::read(reader_path).unwrap());
    let run = fleetstorm(&["run", &file, "--quiet", "--out", fifo.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let got = reader.join().unwrap();
    assert_eq!(report_json(&got)["totals"]["scheduled"], 40);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
}

#[test]
fn outputs_on_the_scenario_on_one_file_or_on_a_directory_are_refused_before_any_traffic() {
    let dir = TempDir::new("outputs-refused");
    let file = scenario(&dir);
    let x = dir.path("x.json");
    let x = x.to_str().unwrap();
    let alias = dir.path("alias.toml");
    std::os::unix::fs::symlink(&file, &alias).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--out", &file], "is the scenario file"),
        (vec!["--html", alias.to_str().unwrap()], "is the scenario file"),
        (vec!["--out", x, "--html", x], "--out and --html both write to"),
        (vec!["--out", "-", "--junit", "-"], "both write to standard output"),
        (vec!["--out", "/tmp"], "it is a directory"),
    ];
    let before = std::fs::read_to_string(&file).unwrap();
    for (flags, message) in cases {
        let mut args = vec!["run", file.as_str(), "--quiet"];
        args.extend(&flags);
        let run = fleetstorm(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
        // Refused before the run: no summary (a run prints one).
        assert!(run.stdout.is_empty(), "{flags:?}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before, "the scenario is untouched");
    assert!(!std::path::Path::new(x).exists());
}

#[test]
fn a_second_interrupt_writes_what_was_merged_so_far_and_exits_130() {
    use std::io::BufRead;
    // Every heartbeat stalls for 30 s (timeout 20 s): after the first
    // Ctrl-C the run would wait for them; the second gives up at once.
    let (mut serve, url) = super::util::spawn_serve(&["--stall", "30s"]);
    let dir = TempDir::new("outputs-abandon");
    let file = dir.write(
        "stalled.toml",
        &format!(
            "seed = 1\nduration = \"60s\"\n[target]\nurl = \"{url}\"\ntimeout = \"20s\"\n\
             [[fleets]]\nname = \"f\"\ndevices = 50\ninterval = \"1s\"\n"
        ),
    );
    let out = dir.path("abandoned.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["run", &file, "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    for line in stderr.lines().map_while(Result::ok) {
        // The first progress line: the run is under way.
        if line.contains("| online") && !text.contains("stopping") {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        if line.starts_with("stopping: finishing heartbeats in flight") {
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        text.push_str(&line);
        text.push('\n');
    }
    let status = child.wait().unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("stopping at once: writing what was merged so far"), "{text}");
    let report = fleetstorm::report::Report::load(&out).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(report.interrupted);
    assert!(report.totals.scheduled > 0 && report.totals.sent > 0, "{:?}", report.totals);
}
