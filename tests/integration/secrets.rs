//! No value read from the environment leaves the machine: not in a body
//! `sample` prints, not in a report, not in the scenario hash that shard
//! reports publish (shards given their own tokens still merge).

use std::process::Command;

use crate::util::{TempDir, root};

/// A value with characters JSON escapes, so that both forms are checked.
const SECRET: &str = "s3cr3t-\"tok\\en\"-42";

#[test]
fn sample_shows_an_environment_value_as_its_placeholder() {
    let dir = TempDir::new("sample-secret");
    let file = dir.write(
        "s.toml",
        "seed = 1\n[target]\nurl = \"builtin\"\n[[fleets]]\nname = \"t\"\ndevices = 3\nprofile = \"custom\"\n\
         [fleets.custom]\nmethod = \"POST\"\npath = \"/p/${device.name}\"\n\
         body = '{\"device\": ${device.name}, \"key\": ${env:FS_SAMPLE_SECRET}}'\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["sample", &file, "--count", "3"])
        .env("FS_SAMPLE_SECRET", SECRET)
        .current_dir(root())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    for line in stdout.lines() {
        assert!(!line.contains("s3cr3t") && !line.contains("tok"), "{line}");
        let body: serde_json::Value = serde_json::from_str(line).expect("still JSON");
        assert_eq!(body["key"], "${env:FS_SAMPLE_SECRET}", "{line}");
    }
}

/// Two shards of one run, each given its own token from the environment,
/// publish the same scenario hash and merge; no report holds a token.
#[test]
fn shards_with_their_own_tokens_merge_and_publish_no_token() {
    let dir = TempDir::new("shard-secret");
    let file = dir.write(
        "s.toml",
        "seed = 5\nduration = \"1s\"\n[target]\nurl = \"builtin\"\n\
         headers = { authorization = \"Bearer ${env:FS_SHARD_TOKEN}\" }\n\
         [[fleets]]\nname = \"f\"\ndevices = 20\ninterval = \"1s\"\n",
    );
    let mut reports = Vec::new();
    for (i, token) in ["pod-0-token-aaaa", "pod-1-token-bbbb"].iter().enumerate() {
        let out = dir.path(&format!("shard-{i}.json")).display().to_string();
        let run = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
            .args(["run", &file, "-q", "--shard", &format!("{i}/2"), "--out", &out])
            .env("FS_SHARD_TOKEN", token)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(!text.contains("token-"), "shard {i}'s report holds its token");
        reports.push(out);
    }
    let hash = |path: &str| {
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        report["shard"]["scenario_hash"].as_str().unwrap().to_string()
    };
    assert_eq!(hash(&reports[0]), hash(&reports[1]));
    let merged = dir.path("merged.json").display().to_string();
    let merge = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(["merge", &reports[0], &reports[1], "--out", &merged])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(merge.status.success(), "{}", String::from_utf8_lossy(&merge.stderr));
}
