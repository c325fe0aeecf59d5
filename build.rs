//! Records the commit the binary is built from, for `fleetstorm --version`:
//! a figure is only as good as knowing
//! which code made it. A crate installed from its package has no git
//! checkout, but `cargo package` wrote the commit it was packed from into
//! `.cargo_vcs_info.json`; that is read first.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit `cargo package` recorded, if this is a packaged crate.
fn packaged_commit() -> Option<String> {
    let info = std::fs::read_to_string(".cargo_vcs_info.json").ok()?;
    let at = info.find("\"sha1\"")?;
    let rest = &info[at + 6..];
    let start = rest.find('"')? + 1;
    let sha: String = rest[start..].chars().take_while(char::is_ascii_hexdigit).collect();
    (sha.len() >= 12).then(|| sha[..12].to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(c) = packaged_commit() {
        println!("cargo:rustc-env=FLEETSTORM_VERSION={} (commit {c})", env!("CARGO_PKG_VERSION"));
        return;
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = PathBuf::from(dir);
        // A new commit or checkout moves HEAD or the branch it names; a
        // staged change moves the index.
        // (Only files that exist: cargo reruns for a missing one every time.)
        let mut watched = vec![dir.join("HEAD"), dir.join("index"), dir.join("packed-refs")];
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(dir.join(reference));
        }
        for f in watched.iter().filter(|f| f.exists()) {
            println!("cargo:rerun-if-changed={}", f.display());
        }
    }
    let version = env!("CARGO_PKG_VERSION");
    let long = match commit {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            format!("{version} (commit {c}{})", if dirty { ", modified" } else { "" })
        }
        None => format!("{version} (built outside a git checkout)"),
    };
    println!("cargo:rustc-env=FLEETSTORM_VERSION={long}");
}
