//! An abort condition that did not fire reads as "not triggered", never as
//! a pass of its condition (`pass error_rate > 20%` read as a breach), and
//! is counted apart from the end thresholds, in every output.

use crate::util::{TempDir, fleetstorm};

#[test]
fn abort_conditions_read_as_triggered_or_not_and_are_counted_apart() {
    let dir = TempDir::new("abort-wording");
    let file = dir.write(
        "s.toml",
        "seed = 1\nduration = \"1s\"\n[[fleets]]\nname = \"f\"\ndevices = 10\ninterval = \"200ms\"\n\
         [thresholds]\n\"error_rate\" = \"< 50%\"\n[thresholds.abort]\ngrace = \"10s\"\n\"error_rate\" = \"> 20%\"\n",
    );
    let (md, html) = (dir.path("s.md"), dir.path("s.html"));
    let out = fleetstorm(&["run", &file, "-q", "--summary-md", md.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("thresholds: all 1 passed; 1 abort condition, not triggered"), "{stdout}");
    assert!(stdout.contains("not triggered  abort if error_rate > 20%"), "{stdout}");
    assert!(!stdout.contains("pass  error_rate > 20%"), "{stdout}");
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("**Thresholds:** all 1 passed; 1 abort condition, not triggered."), "{md}");
    assert!(md.contains("| ✅ not triggered | abort if `error_rate > 20%` |"), "{md}");
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("thresholds: all 1 passed; 1 abort condition, not triggered"), "{html}");
    assert!(html.contains(">not triggered</td>"), "{html}");
}
