//! Where the files a user names go, without ever destroying what a path
//! points at.
//!
//! An output flag names a path; what it points at decides how it is
//! written ([`Destination`]):
//!
//! - `-`: standard output (at most one output may take it);
//! - a regular file, or a path that does not exist yet: replaced whole or
//!   not at all (a temporary file in the same directory, synced, then
//!   renamed over it);
//! - a symlink: resolved, and its final target replaced the same way, so
//!   the link stays a link;
//! - a character device, FIFO or socket (`/dev/stdout`, `/dev/null`, a
//!   named pipe): written through, never renamed over;
//! - a directory: an error, before anything runs.
//!
//! [`Outputs::check`] resolves every output a command was given before it
//! starts: it refuses directories, unwritable places, two outputs naming
//! the same file (after resolving links) and an output that is the
//! scenario file itself.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::args::RenderArgs;
use super::error::CliError;
use crate::report::Report;
use crate::report::paint::Paint;

/// How one output is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `-`: standard output.
    Stdout,
    /// A regular file or a new one, at this resolved path: replaced
    /// atomically.
    Replace(PathBuf),
    /// A device, FIFO or socket, at this resolved path: written through.
    WriteThrough(PathBuf),
}

/// One output a user named, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The flag that named it, for messages (`--out`).
    pub flag: &'static str,
    /// As the user wrote it.
    pub given: PathBuf,
    pub destination: Destination,
}

/// Why an output cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{flag} {path}: it is a directory; name a file in it")]
    Directory { flag: &'static str, path: String },
    #[error("cannot write {path} ({flag}): {source}")]
    NotWritable {
        flag: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{first} and {second} both write to {path}: give each output its own file")]
    Same { first: &'static str, second: &'static str, path: String },
    #[error("{flag} {path} is the scenario file: it would be overwritten; name another file")]
    IsScenario { flag: &'static str, path: String },
}

impl Output {
    /// Resolves the output `flag` names at `given`.
    pub fn resolve(flag: &'static str, given: &Path) -> Result<Output, OutputError> {
        let shown = || given.display().to_string();
        let destination = if given.as_os_str() == "-" || is_our_stdout(given) {
            // `-`, or a name of the file our standard output already is
            // (`/dev/stdout`, `/proc/self/fd/1`, the file it was redirected
            // to): written through it, never renamed over.
            Destination::Stdout
        } else if std::fs::metadata(given).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            // A device, FIFO or socket, found through whatever links lead
            // there (the kernel follows /proc's links; no path may exist
            // for the pipe behind them).
            Destination::WriteThrough(given.to_path_buf())
        } else {
            let real =
                resolve_links(given).map_err(|source| OutputError::NotWritable { flag, path: shown(), source })?;
            match std::fs::metadata(&real) {
                Ok(m) if m.is_dir() => return Err(OutputError::Directory { flag, path: shown() }),
                Ok(m) if m.is_file() => Destination::Replace(real),
                Ok(_) => Destination::WriteThrough(real),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Destination::Replace(real),
                Err(source) => return Err(OutputError::NotWritable { flag, path: shown(), source }),
            }
        };
        Ok(Output { flag, given: given.to_path_buf(), destination })
    }

    /// Whether it goes to standard output.
    pub fn is_stdout(&self) -> bool {
        self.destination == Destination::Stdout
    }

    /// Checks that the output can be written, as [`Output::write`] will,
    /// without touching it: a probe file in a replaced file's directory,
    /// write permission on a device or pipe.
    pub fn check_writable(&self) -> Result<(), OutputError> {
        let fail =
            |source| OutputError::NotWritable { flag: self.flag, path: self.given.display().to_string(), source };
        match &self.destination {
            Destination::Stdout => Ok(()),
            Destination::Replace(real) => {
                // A new file of a random name, created exclusively (never a
                // file or link already there), removed when dropped.
                let probe = tempfile::Builder::new().prefix(".fleetstorm-probe-").tempfile_in(directory_of(real));
                probe.map(drop).map_err(fail)
            }
            Destination::WriteThrough(real) => may_write(real).map_err(fail),
        }
    }

    /// Writes `bytes` to the output (see the module docs for how).
    pub fn write(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.destination {
            Destination::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Destination::Replace(real) => replace_atomically(real, bytes),
            Destination::WriteThrough(real) => {
                let mut f = std::fs::OpenOptions::new().write(true).open(real)?;
                f.write_all(bytes)?;
                f.flush()
            }
        }
    }

    /// What a file's identity is for spotting two names of one file: its
    /// device and inode if it exists, else its resolved path.
    fn identity(&self) -> Option<Identity> {
        match &self.destination {
            Destination::Stdout => Some(Identity::Stdout),
            Destination::Replace(real) => Some(match std::fs::metadata(real) {
                Ok(m) => Identity::Inode(m.dev(), m.ino()),
                Err(_) => Identity::Path(real.clone()),
            }),
            // Devices and pipes may be shared (two outputs to /dev/null).
            Destination::WriteThrough(_) => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Identity {
    Stdout,
    Inode(u64, u64),
    Path(PathBuf),
}

/// Every output of one command, checked together.
#[derive(Debug, Default)]
pub struct Outputs {
    pub list: Vec<Output>,
}

impl Outputs {
    /// Resolves and checks each `(flag, path)` given: each writable, no two
    /// on one file, none on `scenario` (the file the command reads).
    pub fn check<'a>(
        given: impl IntoIterator<Item = (&'static str, Option<&'a Path>)>,
        scenario: Option<&Path>,
    ) -> Result<Outputs, OutputError> {
        let mut list: Vec<Output> = Vec::new();
        for (flag, path) in given {
            let Some(path) = path else { continue };
            let output = Output::resolve(flag, path)?;
            output.check_writable()?;
            if let (Some(scenario), Some(Identity::Inode(dev, ino))) = (scenario, output.identity())
                && std::fs::metadata(scenario).is_ok_and(|m| (m.dev(), m.ino()) == (dev, ino))
            {
                return Err(OutputError::IsScenario { flag, path: path.display().to_string() });
            }
            if let Some(first) = list.iter().find(|o| o.identity().is_some() && o.identity() == output.identity()) {
                let path =
                    if output.is_stdout() { "standard output (-)".to_string() } else { path.display().to_string() };
                return Err(OutputError::Same { first: first.flag, second: flag, path });
            }
            list.push(output);
        }
        Ok(Outputs { list })
    }

    /// The output `flag` names, if given.
    pub fn get(&self, flag: &str) -> Option<&Output> {
        self.list.iter().find(|o| o.flag == flag)
    }

    /// Whether an output takes standard output (the human summary then
    /// goes to standard error, so that standard output stays machine
    /// readable).
    pub fn uses_stdout(&self) -> bool {
        self.list.iter().any(Output::is_stdout)
    }
}

/// Whether `path` names the file this process's standard output is.
fn is_our_stdout(path: &Path) -> bool {
    let Ok(target) = std::fs::metadata(path) else { return false };
    let Ok(stdout) = std::fs::metadata("/proc/self/fd/1") else { return false };
    (target.dev(), target.ino()) == (stdout.dev(), stdout.ino())
}

/// Follows `path`'s symlinks to the file they finally name (which need not
/// exist), as an absolute path whose directory exists.
fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut current = absolute(path)?;
    // A bounded walk: a loop of links is an error, as the kernel's is.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&current)?;
                current = if target.is_absolute() { target } else { directory_of(&current).join(target) };
            }
            Ok(_) => return std::fs::canonicalize(&current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A new file: its directory must exist (resolved itself).
                let dir = std::fs::canonicalize(directory_of(&current))?;
                let name = current.file_name().ok_or_else(|| io::Error::other("no file name"))?;
                return Ok(dir.join(name));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

fn absolute(path: &Path) -> io::Result<PathBuf> {
    if path.is_absolute() { Ok(path.to_path_buf()) } else { Ok(std::env::current_dir()?.join(path)) }
}

fn directory_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Whether this process may write `path` (a device or pipe), asked of the
/// kernel without opening it: opening a FIFO with no reader would block.
fn may_write(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's length.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Writes `bytes` to the regular file `real` whole or not at all: into a
/// temporary file in the same directory, synced, then renamed over it. The
/// temporary file has a random name and is created exclusively (a file or
/// symlink planted at a guessable name is never followed or truncated),
/// and is removed if anything fails. A file that existed keeps its mode,
/// and its owner where this process may give it.
fn replace_atomically(real: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let file_name = real.file_name().and_then(|n| n.to_str()).unwrap_or("output");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.tmp-"))
        // A new file's mode as `File::create` gives it (the umask applies).
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(directory_of(real))?;
    if let Ok(m) = std::fs::metadata(real) {
        tmp.as_file().set_permissions(m.permissions())?;
        // Giving a file away takes privilege: where this process lacks it,
        // the file is written as its own, as any editor would.
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid()));
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(real).map(drop).map_err(|e| e.error)
}

// ---------------------------------------------- writing a command's outputs

impl RenderArgs {
    /// The renderings asked for, with their flags.
    pub(super) fn given(&self) -> [(&'static str, Option<&std::path::Path>); 3] {
        [
            ("--html", self.html.as_deref()),
            ("--summary-md", self.summary_md.as_deref()),
            ("--junit", self.junit.as_deref()),
        ]
    }

    /// Writes every rendering asked for; false (with the error printed) if one failed.
    pub(super) fn write(outputs: &Outputs, report: &Report) -> bool {
        type Render = fn(&Report) -> String;
        let renders: [(&str, Render); 3] = [
            ("--html", crate::report::html::render),
            ("--summary-md", crate::report::markdown::render),
            ("--junit", crate::report::junit::render),
        ];
        let mut ok = true;
        for (flag, render) in renders {
            if let Some(output) = outputs.get(flag) {
                ok &= write_output(output, render(report).as_bytes());
            }
        }
        ok
    }
}

/// Resolves and checks every output a command was given, before it does
/// any work (exit code 2 otherwise): writable, no two on one file, none on
/// the scenario it reads.
pub(super) fn check_outputs<'a>(
    given: impl IntoIterator<Item = (&'static str, Option<&'a std::path::Path>)>,
    scenario: Option<&std::path::Path>,
) -> Result<Outputs, CliError> {
    Outputs::check(given, scenario).map_err(|e| CliError::Usage(e.to_string()))
}

/// The colours for text [`say`] prints: of the stream it goes to.
pub(super) fn say_paint(outputs: &Outputs) -> Paint {
    if outputs.uses_stdout() { Paint::for_stderr() } else { Paint::for_stdout() }
}

/// Prints text meant for people: on stdout, or on stderr when an output
/// takes stdout (so that stdout stays machine-readable).
pub(super) fn say(outputs: &Outputs, text: &str) {
    if outputs.uses_stdout() {
        eprint!("{text}");
    } else {
        print!("{text}");
        let _ = io::stdout().flush();
    }
}

/// A finished report out: its summary, then the JSON and every rendering
/// asked for; false (errors printed) if an output was not written.
pub(super) fn publish(report: &Report, outputs: &Outputs) -> bool {
    say(outputs, &report.summary_painted(say_paint(outputs)));
    let written = outputs.get("--out").is_none_or(|o| write_json(o, report));
    RenderArgs::write(outputs, report) && written
}

/// Writes `value` as pretty JSON; false (with the error printed) if it failed.
pub(super) fn write_json(output: &Output, value: &impl serde::Serialize) -> bool {
    match serde_json::to_vec_pretty(value) {
        Ok(mut json) => {
            json.push(b'\n');
            write_output(output, &json)
        }
        Err(e) => {
            eprintln!("error: cannot encode {}: {e}", output.given.display());
            false
        }
    }
}

/// Writes one output (see `crate::output`); false (with the error
/// printed) on failure.
pub(super) fn write_output(output: &Output, bytes: &[u8]) -> bool {
    match output.write(bytes) {
        Ok(()) => {
            if !output.is_stdout() {
                eprintln!("wrote {}", output.given.display());
            }
            true
        }
        Err(e) => {
            eprintln!("error: cannot write {} {}: {e}", output.flag, output.given.display());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fleetstorm-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_symlink_keeps_being_a_link_and_its_target_gets_the_bytes() {
        let d = dir("link");
        let target = d.join("real.json");
        std::fs::write(&target, "old").unwrap();
        let link = d.join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        let out = Output::resolve("--out", &link).unwrap();
        assert_eq!(out.destination, Destination::Replace(std::fs::canonicalize(&target).unwrap()));
        out.write(b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        // A dangling link: its target is created.
        let dangling = d.join("dangling.json");
        std::os::unix::fs::symlink(d.join("made.json"), &dangling).unwrap();
        Output::resolve("--out", &dangling).unwrap().write(b"made").unwrap();
        assert_eq!(std::fs::read_to_string(d.join("made.json")).unwrap(), "made");
        assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The temporary and probe files have names nobody can guess and are
    /// created exclusively: links planted at the names they used to have
    /// (`.NAME.tmp-PID`, `.fleetstorm-probe-PID`) are neither followed nor
    /// truncated. The file replaced keeps its mode and its owner.
    #[test]
    fn a_planted_link_is_never_followed_and_the_replaced_file_keeps_mode_and_owner() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = dir("planted");
        let victim = d.join("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        let pid = std::process::id();
        for name in [format!(".report.json.tmp-{pid}"), format!(".fleetstorm-probe-{pid}")] {
            std::os::unix::fs::symlink(&victim, d.join(name)).unwrap();
        }
        let report = d.join("report.json");
        std::fs::write(&report, "old").unwrap();
        std::fs::set_permissions(&report, std::fs::Permissions::from_mode(0o640)).unwrap();
        // Owned by someone else, where this test may give it away (as root).
        let other = std::os::unix::fs::chown(&report, Some(4242), Some(4243)).is_ok();
        let out = Output::resolve("--out", &report).unwrap();
        out.check_writable().unwrap();
        out.write(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&report).unwrap(), "new");
        let m = std::fs::metadata(&report).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o640);
        if other {
            assert_eq!((m.uid(), m.gid()), (4242, 4243));
        }
        // Nothing of the writing is left behind: the two planted links only.
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 4, "{left:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn devices_are_written_through_and_directories_refused() {
        // /dev/zero: a character device that discards writes, and (unlike
        // /dev/null) never this test's own standard output.
        let zero = Output::resolve("--html", Path::new("/dev/zero")).unwrap();
        assert_eq!(zero.destination, Destination::WriteThrough(PathBuf::from("/dev/zero")));
        zero.check_writable().unwrap();
        zero.write(b"discarded").unwrap();
        assert!(std::fs::metadata("/dev/zero").unwrap().file_type().is_char_device());
        let e = Output::resolve("--out", &std::env::temp_dir()).unwrap_err();
        assert!(matches!(e, OutputError::Directory { .. }), "{e}");
        assert!(Output::resolve("--out", Path::new("-")).unwrap().is_stdout());
    }

    #[test]
    fn two_outputs_on_one_file_or_on_the_scenario_are_refused() {
        let d = dir("same");
        let scenario = d.join("s.toml");
        std::fs::write(&scenario, "x").unwrap();
        std::os::unix::fs::symlink("s.toml", d.join("alias.json")).unwrap();
        let e = Outputs::check([("--out", Some(d.join("alias.json").as_path()))], Some(&scenario)).unwrap_err();
        assert!(matches!(e, OutputError::IsScenario { .. }), "{e}");
        let x = d.join("x.json");
        let e = Outputs::check([("--out", Some(x.as_path())), ("--html", Some(x.as_path()))], None).unwrap_err();
        assert!(e.to_string().contains("--out and --html both write to"), "{e}");
        let e = Outputs::check([("--out", Some(Path::new("-"))), ("--junit", Some(Path::new("-")))], None).unwrap_err();
        assert!(e.to_string().contains("standard output"), "{e}");
        // Two outputs to one device are harmless.
        let zero = Path::new("/dev/zero");
        assert!(Outputs::check([("--out", Some(zero)), ("--html", Some(zero))], None).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}
