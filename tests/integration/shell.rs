//! The command line as a shell user meets it: completions that load in
//! bash and complete a subcommand, a man page `man` renders, the short
//! flags, a scenario piped on standard input, and colour on a terminal
//! only (never under `NO_COLOR`, never into a pipe).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use fleetstorm::report::Report;

use super::util::{TempDir, fleetstorm, root};

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs the binary with `stdin` written to its standard input.
fn fleetstorm_piped(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the fleetstorm binary runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn bash_completion_loads_and_completes_subcommands_and_flags() {
    let dir = TempDir::new("completions");
    let out = fleetstorm(&["completions", "bash"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let script = dir.path("fleetstorm.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // What bash does on TAB: set the COMP_ variables, call the function
    // `complete -p` names, and offer COMPREPLY.
    let complete = |line: &str| {
        let probe = format!(
            r#"set -e
source '{}'
fn=$(complete -p fleetstorm | sed -E 's/.*-F ([^ ]+).*/\1/')
COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<<"$COMP_LINE"
[[ "$COMP_LINE" == *' ' ]] && COMP_WORDS+=('')
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
"$fn" fleetstorm "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
            script.display()
        );
        let out = Command::new("bash").args(["--norc", "--noprofile", "-c", &probe]).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "bash completion failed for {line:?}: {stderr}");
        stdout.lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(complete("fleetstorm va"), ["validate"]);
    let all = complete("fleetstorm ");
    for sub in ["run", "serve", "capacity", "completions", "man"] {
        assert!(all.iter().any(|w| w == sub), "{sub} offered: {all:?}");
    }
    let flags = complete("fleetstorm run --dur");
    assert_eq!(flags, ["--duration"]);

    // The other shells' scripts name the same commands.
    for shell in ["zsh", "fish"] {
        let out = fleetstorm(&["completions", shell]);
        let (script, _) = text(&out);
        assert!(out.status.success() && script.contains("capacity") && script.contains("duration"), "{shell}");
    }
    let bad = fleetstorm(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn the_man_page_renders_with_every_command_and_the_exit_codes() {
    let dir = TempDir::new("man");
    let out = fleetstorm(&["man"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let page = dir.path("fleetstorm.1");
    std::fs::write(&page, &out.stdout).unwrap();
    let have_man = Command::new("sh").args(["-c", "command -v man"]).output().is_ok_and(|o| o.status.success());
    if !have_man {
        assert!(std::env::var_os("CI").is_none(), "man must be installed in CI (.ci/run)");
        eprintln!("SKIPPED: no man (.ci/run installs man-db)");
        return;
    }
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    let (shown, err) = text(&rendered);
    assert!(rendered.status.success(), "man -l failed: {err}");
    // The formatter's own warnings would mean a malformed page.
    assert!(!err.contains("warning"), "{err}");
    // (man justifies lines: words may stand several spaces apart.)
    let shown = shown.replace(['\u{2010}', '\u{2212}'], "-").split_whitespace().collect::<Vec<_>>().join(" ");
    for word in ["fleetstorm", "capacity", "validate", "completions", "Exit codes", "--version"] {
        assert!(shown.contains(word), "the rendered page has {word:?}:\n{shown}");
    }

    // --dir: the page of every command beside it, with its flags.
    let pages = dir.path("man1");
    let out = fleetstorm(&["man", "--dir", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    for name in ["fleetstorm.1", "fleetstorm-run.1", "fleetstorm-capacity.1", "fleetstorm-serve.1"] {
        assert!(pages.join(name).is_file(), "{name} written");
    }
    let run =
        Command::new("man").arg("-l").arg(pages.join("fleetstorm-run.1")).env("MANPAGER", "cat").output().unwrap();
    let (run_page, err) = text(&run);
    let run_page = run_page.replace(['\u{2010}', '\u{2212}'], "-");
    assert!(run.status.success() && run_page.contains("--duration") && run_page.contains("--out"), "{run_page}{err}");
    let not_dir = fleetstorm(&["man", "--dir", page.to_str().unwrap()]);
    assert_eq!(not_dir.status.code(), Some(2), "a file is not a directory: {:?}", text(&not_dir));
}

/// A one-second run against the built-in backend with one threshold that
/// passes and one that fails, piped in as TOML, with every short flag.
const PIPED: &str = r#"
name = "piped"
seed = 5
duration = "30s"             # -d overrides it
[target]
url = "http://127.0.0.1:1"   # -t overrides it
connections = { pool = 2 }
[[fleets]]
name = "east"
devices = 20
interval = "500ms"
[thresholds]
"error_rate" = "< 50%"
"latency.p50" = "< 1us"
"#;

#[test]
fn a_piped_scenario_runs_with_the_short_flags_and_colour_only_on_a_terminal() {
    let dir = TempDir::new("piped");
    let report_path = dir.path("r.json");
    let report_arg = report_path.to_str().unwrap();
    let out = fleetstorm_piped(&["run", "-", "-t", "builtin", "-d", "1s", "-q", "-o", report_arg], PIPED);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "one threshold fails: {stdout}\n{stderr}");
    let report = Report::load(&report_path).unwrap();
    assert_eq!(report.scenario.name, "piped");
    assert_eq!(report.scenario.planned_duration_s, 1.0, "-d");
    assert!(report.totals.ok > 0 && report.totals.failed == 0, "-t builtin answered");
    assert!(!stderr.contains("sent "), "-q: no progress lines: {stderr}");
    // Into a pipe: the plain text, no escape codes.
    assert!(stdout.contains("  pass  error_rate") && stdout.contains("  FAIL  latency.p50"), "{stdout}");
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'), "no colour into a pipe");

    // `validate -` reads JSON as well.
    let json = r#"{"name": "j", "fleets": [{"name": "f", "devices": 4}]}"#;
    let out = fleetstorm_piped(&["validate", "-", "-d", "2s"], json);
    assert!(out.status.success(), "{:?}", text(&out));
    let empty = fleetstorm_piped(&["validate", "-"], "");
    let (_, said) = text(&empty);
    assert_eq!(empty.status.code(), Some(2));
    assert!(said.contains("<stdin>") && said.contains("empty"), "{said}");

    // On a terminal (script(1) gives the command a pseudo-terminal):
    // pass in green, FAIL in red; NO_COLOR turns it off.
    let on_terminal = |no_color: Option<&str>| {
        let cmd = format!("'{}' report '{report_arg}'", env!("CARGO_BIN_EXE_fleetstorm"));
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]).env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let out = c.output().expect("script(1) runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal(None);
    assert!(coloured.contains("\x1b[32mpass\x1b[0m  error_rate"), "{coloured:?}");
    assert!(coloured.contains("\x1b[1;31mFAIL\x1b[0m  latency.p50"), "{coloured:?}");
    let plain = on_terminal(Some("1"));
    assert!(plain.contains("FAIL  latency.p50") && !plain.contains('\x1b'), "NO_COLOR: {plain:?}");
}
